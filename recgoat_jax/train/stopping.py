"""Early stopping: one rule for every model, a pure function of the valid curve.

The rule (train.patience, train.min_epochs, train.warmup_steps):

1. Warm-up. No stop in the first W epochs, W = max(train.min_epochs,
   ceil(train.warmup_steps / steps_per_epoch)). Counting optimizer steps rather than epochs
   scales the warm-up with the data: a small set (few steps per epoch) needs more epochs
   before its valid curve means anything. Why: at a small lr valid recall often peaks after
   one epoch (popularity-like scores), dips for tens of epochs and only then climbs past
   that peak (LightGCN and RecGOAT on the Debian set).
2. Patience, counted from the end of the warm-up: stop once `patience` evaluations at
   epochs >= W have passed without beating the best valid value (strictly greater).
3. Unless still climbing: when the mean of the last h = max(1, patience // 2) evaluations
   exceeds the mean of the h before them by more than CLIMB_TOL x |best|, the curve is
   on its way back up and the run goes on (checked again at every evaluation).

Being a function of the recorded (epoch, value) pairs, it needs no state of its own: a
resumed run re-reads them from metrics.jsonl and stops where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

# "still climbing" needs the recent half-window mean above the one before by this share
# of the best value: a flat, noisy plateau (equal means) stops; a slow climb goes on.
CLIMB_TOL = 1e-3
# a best epoch within this share of the epochs run, when patience stopped the run, is
# reported as a likely warm-up plateau
EARLY_BEST_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class StopRule:
    patience: int  # evaluations after the warm-up without a new best
    warmup_epochs: int  # W: epochs 0 .. W-1 never stop the run

    @classmethod
    def from_config(cls, train_cfg, steps_per_epoch: int) -> "StopRule":
        return cls(patience=train_cfg.patience,
                   warmup_epochs=warmup_epochs(train_cfg.min_epochs, train_cfg.warmup_steps,
                                               steps_per_epoch))


def warmup_epochs(min_epochs: int, warmup_steps: int, steps_per_epoch: int) -> int:
    """W = max(min_epochs, ceil(warmup_steps / steps_per_epoch))."""
    return max(min_epochs, math.ceil(warmup_steps / max(1, steps_per_epoch)))


def best_index(values: Sequence[float]) -> int:
    """Index of the first maximum (a later equal value is not an improvement); -1 if empty."""
    best, at = -math.inf, -1
    for i, v in enumerate(values):
        if v > best:
            best, at = v, i
    return at


def evaluations_without_gain(epochs: Sequence[int], values: Sequence[float],
                             rule: StopRule) -> int:
    """Evaluations at epochs >= W after the best one (rule 2's count)."""
    b = best_index(values)
    return sum(1 for e in epochs[b + 1:] if e >= rule.warmup_epochs)


def climbing(values: Sequence[float], patience: int) -> bool:
    """Rule 3: mean of the last h values > mean of the h before + CLIMB_TOL * |best|."""
    h = max(1, patience // 2)
    if len(values) < 2 * h:
        return False
    recent = sum(values[-h:]) / h
    before = sum(values[-2 * h:-h]) / h
    return recent - before > CLIMB_TOL * abs(max(values))


def stop_reason(epochs: Sequence[int], values: Sequence[float], rule: StopRule) -> str | None:
    """None while the run should go on; else why it stops (one line, no metric name).

    epochs: [n] the evaluated epochs, increasing; values: [n] the valid metric at each."""
    if not values or epochs[-1] + 1 < rule.warmup_epochs:
        return None
    if evaluations_without_gain(epochs, values, rule) < rule.patience:
        return None
    if climbing(values, rule.patience):
        return None
    b = best_index(values)
    return (f"no improvement on {values[b]:.4f} (epoch {epochs[b]}) in {rule.patience} "
            f"evaluations after the {rule.warmup_epochs}-epoch warm-up")


def early_best_warning(best_epoch: int, epochs_run: int, stopped_early: bool,
                       train_cfg) -> str | None:
    """One line when patience stopped a run whose best epoch is in its first 5%: the
    curve may not have left a warm-up plateau. None otherwise."""
    if not stopped_early or best_epoch >= EARLY_BEST_SHARE * epochs_run:
        return None
    return (f"warning: the best valid epoch ({best_epoch}) is in the first "
            f"{EARLY_BEST_SHARE:.0%} of the {epochs_run} epochs run: the run may have stopped "
            f"on a warm-up plateau; try a longer warm-up (--set train.min_epochs="
            f"{max(100, 2 * epochs_run)}), a larger train.patience (now {train_cfg.patience}) "
            f"or a higher train.lr (now {train_cfg.lr:g})")
