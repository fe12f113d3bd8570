"""The trainer end to end on tiny generated data: run dir contents, resume equivalence,
determinism of a RecGOAT step, and one-line CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from recgoat_jax.config import make_config
from recgoat_jax.data import synthetic
from recgoat_jax.train.loop import train
from recgoat_jax.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return synthetic.generate(n_users=150, n_items=90, n_interactions=1800,
                              feature_dims={"text": 16, "image": 24}, seed=0,
                              user_feature_dim=8, name="tiny")


def _cfg(model="lightgcn", epochs=6, **extra):
    sets = [f"model.name={model}", "model.dim=16", f"train.epochs={epochs}",
            "train.batch_size=256", "train.lr=0.01", "train.seed=7", "eval.ks=[5,10,20]",
            "train.patience=50", "train.warmup_steps=0"]  # stopping rule: test_stopping.py
    if model == "recgoat":
        sets += ["model.gat.heads=2", "model.knn.k=3", "model.knn.user_k=3",
                 "model.loss.cl_weight=0.05", "model.loss.ot_weight=0.1",
                 "model.ot.paper.batch_items=32",
                 "model.ot.paper.iterations=20"]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return make_config(overrides=sets)


@pytest.mark.slow
def test_run_dir_outputs(tiny, tmp_path):
    res = train(_cfg(epochs=3), run_dir=tmp_path / "run", dataset=tiny, progress=False,
                log=lambda s: None)
    run = tmp_path / "run"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    saved = json.loads((run / "results.json").read_text())
    assert saved["dataset"] == "tiny" and saved["model"] == "lightgcn"
    best = max(rows, key=lambda r: r["valid"]["recall@20"])
    assert saved["best_epoch"] == best["epoch"]
    assert saved["test"] == best["test"] and set(saved["test"]) >= {"recall@20", "ndcg@10"}
    # the best checkpoint's test metrics by user activity: together, the whole test average
    groups = saved["groups"]["test"]
    n = sum(g["n_users"] for g in groups.values())
    assert sum(g["n_users"] * g.get("recall@20", 0.0) for g in groups.values()) / n == \
        pytest.approx(saved["test"]["recall@20"], abs=1e-6)
    assert make_config(run / "config.yaml") == _cfg(epochs=3)
    assert (run / "checkpoints" / "latest").is_dir() and (run / "checkpoints" / "best").is_dir()
    assert res["epochs_run"] == 3


class _Kill(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lightgcn", "recgoat"])
def test_resume_equals_uninterrupted(tiny, tmp_path, model):
    cfg = _cfg(model, epochs=5)
    full = train(cfg, run_dir=tmp_path / "full", dataset=tiny, progress=False, log=lambda s: None)

    def killer(msg):  # dies while logging epoch 2, i.e. after epoch 1's checkpoint
        if msg.startswith("epoch    2"):
            raise _Kill

    with pytest.raises(_Kill):
        train(cfg, run_dir=tmp_path / "cut", dataset=tiny, progress=False, log=killer)
    resumed = train(cfg, run_dir=tmp_path / "cut", resume=True, dataset=tiny, progress=False,
                    log=lambda s: None)
    assert resumed["best_epoch"] == full["best_epoch"]
    for split in ("valid", "test"):
        for k, v in full[split].items():
            assert resumed[split][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (split, k)
    a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in b] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([r["train/loss"] for r in b], [r["train/loss"] for r in a], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"model.ui_encoder": "gat", "model.oat": "reference",
                                        "model.cmcl": "reference", "model.fusion": "concat"}])
def test_recgoat_step_is_deterministic(tiny, extra):
    cfg = _cfg("recgoat", epochs=1, **extra)

    def one_step():
        tr = Trainer(cfg, dataset=tiny)
        state = tr.init_state()
        from recgoat_jax.train.step import zeros_acc
        b = tr.device_batches(tr.sampler.epoch(0))
        acc = zeros_acc(tr.aux_names(state))
        state, acc = tr.step_fn(state, acc, tr.inputs, b, np.int32(0), tr.dropout_key)
        return jax.tree_util.tree_leaves(state.params), float(acc["loss"])

    p1, l1 = one_step()
    p2, l2 = one_step()
    assert l1 == l2 and np.isfinite(l1)
    # BPR of an untrained model sits near log 2; the step must have moved the parameters.
    tr = Trainer(cfg, dataset=tiny)
    p0 = jax.tree_util.tree_leaves(tr.init_state().params)
    assert any(not np.allclose(np.asarray(a), np.asarray(b)) for a, b in zip(p0, p1))
    for x, y in zip(p1, p2):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_batch_rows_fields_and_shapes():
    """The epoch on device is one Batch of [n_steps, B]; row(i) is step i's [B] batch."""
    from recgoat_jax.batch import Batch
    from recgoat_jax.data.sampler import EpochBatches

    ids = np.arange(6, dtype=np.int32).reshape(2, 3)  # 2 steps of B = 3
    epoch = Batch.of(EpochBatches(ids, ids + 10, ids + 20,
                                  np.array([[1, 1, 1], [1, 0, 0]], np.float32)))
    step1 = epoch.row(1)
    assert step1.users.tolist() == [3, 4, 5] and step1.neg.tolist() == [23, 24, 25]
    assert step1.weight.tolist() == [1.0, 0.0, 0.0] and step1.users.dtype == np.int32
    with pytest.raises(TypeError):  # typed fields only: no dict-style reads
        step1["pos"]
    # a pytree: jit sees four arrays; shaped() gives the abstract form of any lead dims
    assert len(jax.tree_util.tree_leaves(epoch)) == 4
    abstract = Batch.shaped(2, 3)
    assert abstract.users.shape == (2, 3) and abstract.weight.dtype == np.float32
    assert jax.jit(lambda b, i: b.row(i).pos.sum())(epoch, 0) == 10 + 11 + 12


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "recgoat_jax.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                               "JAX_PLATFORMS": "cpu"})


@pytest.mark.parametrize("args,expect", [
    (["--set", "model.dimm=3"], "unknown config key 'model.dimm'"),
    (["--set", "model.oat=maybe"], "config key 'model.oat': expected one of paper, reference, none"),
    (["--set", "train.lr=fast"], "config key 'train.lr': expected a number"),
    (["--dataset", "nowhere_ds"], "dataset 'nowhere_ds' not found"),
    (["--config", "missing.yaml"], "missing.yaml: config file not found"),
])
def test_cli_user_errors_are_one_line(args, expect):
    r = _cli(*args)
    assert r.returncode == 2
    # after the status line naming the config file (logging), the error in one line
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("config: ")]
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_recgoat_diagnostics_logged_at_evaluation(tiny, tmp_path):
    """The Lemma 3.3 and reference-OAT values come from the evaluation-time diagnostics
    hook (metrics.jsonl "diagnostics"), not from the differentiated step (train/...)."""
    cfg = _cfg("recgoat", epochs=2, **{"model.oat": "reference", "model.cmcl": "reference",
                                       "model.loss.ot_weight": 0, "run.checkpoint": "false"})
    train(cfg, run_dir=tmp_path / "run", dataset=tiny, progress=False, log=lambda s: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(k for k in row if k.startswith("train/")) == {
            "train/loss", "train/bpr", "train/reg", "train/cmcl"}
        d = row["diagnostics"]
        for m in ("image", "text"):
            assert 0.0 <= d[f"lemma/{m}/lhs"] <= 2.0 and d[f"lemma/{m}/rhs"] > 0
            assert d[f"oat/{m}/plan_mass"] == pytest.approx(1.0, abs=0.5)
            assert {f"oat/{m}/norm_zT", f"oat/{m}/norm_zDelta",
                    f"oat/{m}/plan_marginal_err"} <= set(d)
    assert rows[0]["diagnostics"] != rows[1]["diagnostics"]  # recomputed with new params


def test_min_epochs_defers_early_stopping(tiny, tmp_path):
    # patience 1 alone (no warm-up steps) stops at the first evaluation without a new best
    # (here the curve rises until then, so "still climbing" does not apply); min_epochs 6
    # keeps training to 6 epochs, and the best epoch is still the best valid one.
    rows_of = lambda run: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # no checkpoints, no TensorBoard (tensorboardX imports torch: ~2 s): a fast test
    short = train(_cfg(epochs=8, **{"train.patience": 1, "run.checkpoint": "false",
                                    "run.tensorboard": "false"}),
                  run_dir=tmp_path / "a", dataset=tiny, progress=False, log=lambda s: None)
    rows = rows_of(tmp_path / "a")
    assert short["stopped_early"] and short["epochs_run"] < 6
    # it stopped right after the first evaluation that did not beat the best so far
    vals = [r["valid"]["recall@20"] for r in rows]
    assert vals[-1] <= max(vals[:-1]) and all(b > a for a, b in zip(vals[:-2], vals[1:-1]))
    longer = train(_cfg(epochs=8, **{"train.patience": 1, "train.min_epochs": 6,
                                     "run.checkpoint": "false", "run.tensorboard": "false"}),
                   run_dir=tmp_path / "b", dataset=tiny, progress=False, log=lambda s: None)
    rows = rows_of(tmp_path / "b")
    assert longer["epochs_run"] >= 6 and [r["epoch"] for r in rows][:6] == list(range(6))
    vals = [r["valid"]["recall@20"] for r in rows]
    assert longer["best_epoch"] == int(np.argmax(vals))


@pytest.mark.slow
def test_resume_after_a_kill_between_the_best_and_latest_saves(tiny, tmp_path, monkeypatch):
    """A run killed after save_best(e) and before save_latest(e) resumes from e - 1 and
    trains e again: the stale best of e is dropped (orbax refused to save e twice: 'Checkpoint
    for step e already exists'), and the run ends as an uninterrupted one, its best
    checkpoint at the reported best epoch."""
    from recgoat_jax.train import checkpoint as ckpt_lib

    cfg = _cfg(epochs=5)
    full = train(cfg, run_dir=tmp_path / "full", dataset=tiny, progress=False, log=lambda s: None)
    save_best, save_latest = ckpt_lib.Checkpoints.save_best, ckpt_lib.Checkpoints.save_latest
    saved_best = []

    def record_best(self, epoch, params):
        saved_best.append(epoch)
        save_best(self, epoch, params)

    def die_after_a_best(self, epoch, state, meta):
        if epoch >= 1 and saved_best and saved_best[-1] == epoch:
            raise _Kill
        save_latest(self, epoch, state, meta)

    monkeypatch.setattr(ckpt_lib.Checkpoints, "save_best", record_best)
    monkeypatch.setattr(ckpt_lib.Checkpoints, "save_latest", die_after_a_best)
    with pytest.raises(_Kill):
        train(cfg, run_dir=tmp_path / "cut", dataset=tiny, progress=False, log=lambda s: None)
    monkeypatch.undo()
    killed_at = saved_best[-1]
    ck = ckpt_lib.Checkpoints(tmp_path / "cut")
    assert ck.latest_epoch() == killed_at - 1 and killed_at in ck.best.all_steps()
    ck.close()
    logs = []
    resumed = train(cfg, run_dir=tmp_path / "cut", resume=True, dataset=tiny, progress=False,
                    log=logs.append)
    assert any(f"dropped the best checkpoint of epoch(s) [{killed_at}]" in m for m in logs)
    assert resumed["best_epoch"] == full["best_epoch"]
    for k, v in full["test"].items():
        assert resumed["test"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    ck = ckpt_lib.Checkpoints(tmp_path / "cut")
    assert ck.best.all_steps() == [full["best_epoch"]]
    ck.close()
