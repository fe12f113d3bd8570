"""The early-stopping rule (train/stopping.py) on hand-made valid curves."""

from types import SimpleNamespace

import numpy as np
import pytest

from recgoat_jax.train.stopping import (StopRule, climbing, early_best_warning,
                                        evaluations_without_gain, stop_reason, warmup_epochs)


def first_stop(values, rule, epochs=None):
    """The epoch at which the rule stops a run with this valid curve (None: never)."""
    epochs = list(range(len(values))) if epochs is None else epochs
    for n in range(1, len(values) + 1):
        if stop_reason(epochs[:n], values[:n], rule) is not None:
            return epochs[n - 1]
    return None


def dip_and_climb():
    """Issue 21's curve: 0.5455 after epoch 0, down to 0.366 at epoch 3, back to 0.5434 at
    epoch 20, past the first peak at epoch 21, up to 0.60 at 40, then a slow decline."""
    v = [0.5455, 0.50, 0.42, 0.366]
    v += list(np.linspace(0.366, 0.5434, 18)[1:])  # epochs 4 .. 20
    v += list(np.linspace(0.5434, 0.60, 21)[1:])  # epochs 21 .. 40
    v += [0.60 - 0.001 * i for i in range(1, 60)]  # epochs 41 .. 99
    return [float(x) for x in v]


def test_warmup_epochs_scale_with_steps_per_epoch():
    assert warmup_epochs(0, 2000, 15) == 134  # ceil(2000 / 15)
    assert warmup_epochs(0, 2000, 20) == 100
    assert warmup_epochs(100, 2000, 58) == 100  # the minimum wins over ceil(2000/58) = 35
    assert warmup_epochs(0, 2000, 5000) == 1
    assert warmup_epochs(0, 0, 15) == 0
    cfg = SimpleNamespace(patience=20, min_epochs=0, warmup_steps=300)
    assert StopRule.from_config(cfg, 7) == StopRule(patience=20, warmup_epochs=43)


def test_dip_and_climb_curve_does_not_stop_on_the_plateau():
    v = dip_and_climb()
    assert v[20] == pytest.approx(0.5434) and v[21] > v[0] and v[40] == pytest.approx(0.60)
    # even with no warm-up at all, rule 3 (still climbing) carries it past epoch 20 ...
    rule = StopRule(patience=20, warmup_epochs=0)
    assert stop_reason(list(range(21)), v[:21], rule) is None
    # ... where patience alone (20 evaluations after epoch 0) would have stopped it
    assert evaluations_without_gain(list(range(21)), v[:21], rule) == 20
    # and it stops 20 evaluations after the real best (epoch 40), on the decline
    assert first_stop(v, rule) == 60
    # with a warm-up it stops at the same place: the best is after the warm-up
    assert first_stop(v, StopRule(patience=20, warmup_epochs=30)) == 60


def test_patience_counts_from_the_end_of_the_warmup():
    # best at epoch 2, then flat: 10 epochs of warm-up, patience 5 -> evaluations at
    # epochs 10, 11, 12, 13, 14 are the 5 without gain: stop at 14
    v = [0.1, 0.2, 0.3] + [0.25] * 30
    assert first_stop(v, StopRule(patience=5, warmup_epochs=10)) == 14
    # without a warm-up: epochs 3 .. 7
    assert first_stop(v, StopRule(patience=5, warmup_epochs=0)) == 7
    # a best after the warm-up counts from the best: best at 12, stop at 17
    v2 = [0.1] * 12 + [0.5] + [0.4] * 20
    assert first_stop(v2, StopRule(patience=5, warmup_epochs=10)) == 17


def test_no_stop_inside_the_warmup_whatever_the_curve():
    v = [0.5] + [0.1] * 40
    assert first_stop(v, StopRule(patience=1, warmup_epochs=30)) == 30
    assert first_stop(v[:30], StopRule(patience=1, warmup_epochs=30)) is None


def test_flat_noisy_plateau_stops():
    # equal half-window means (alternating): not climbing, so plain patience applies
    v = [0.3] + [0.2, 0.28] * 20
    assert first_stop(v, StopRule(patience=4, warmup_epochs=0)) == 4


def test_climbing_compares_half_window_means_with_tolerance():
    # h = 2: mean(last 2) vs mean(2 before), tolerance 1e-3 * best
    assert climbing([0.40, 0.40, 0.41, 0.41], patience=4)  # +0.01 > 0.00041
    assert not climbing([0.40, 0.40, 0.4002, 0.4002], patience=4)  # +0.0002 < 0.0004002
    assert not climbing([0.40, 0.40, 0.41], patience=4)  # fewer than 2h values
    assert climbing([0.2, 0.3], patience=1)  # h = max(1, 0)


def test_ties_are_not_improvements_and_eval_every_counts_evaluations():
    rule = StopRule(patience=3, warmup_epochs=0)
    # a later equal value is not a new best: evaluations 1, 2, 3 are without gain
    assert evaluations_without_gain([0, 1, 2, 3], [0.5, 0.5, 0.4, 0.4], rule) == 3
    # evaluations every 5 epochs: patience counts evaluations, not epochs
    epochs = [4, 9, 14, 19, 24, 29]
    assert first_stop([0.5, 0.4, 0.4, 0.4, 0.4, 0.4], rule, epochs) == 19
    # ... and the warm-up counts epochs: W = 12 leaves epochs 14, 19, 24 to count
    assert first_stop([0.5, 0.4, 0.4, 0.4, 0.4, 0.4],
                      StopRule(patience=3, warmup_epochs=12), epochs) == 24


def test_stop_reason_text():
    r = stop_reason([0, 1, 2], [0.5, 0.4, 0.4], StopRule(patience=2, warmup_epochs=0))
    assert r == "no improvement on 0.5000 (epoch 0) in 2 evaluations after the 0-epoch warm-up"


def test_early_best_warning_only_for_a_patience_stop_with_an_early_best():
    cfg = SimpleNamespace(patience=20, lr=0.001)
    w = early_best_warning(1, 22, True, cfg)
    assert w.startswith("warning: the best valid epoch (1) is in the first 5% of the 22 "
                        "epochs run") and "train.min_epochs=100" in w and "0.001" in w
    assert early_best_warning(1, 22, False, cfg) is None  # ran to train.epochs
    assert early_best_warning(2, 40, True, cfg) is None  # 2 >= 0.05 * 40
