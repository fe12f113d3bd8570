"""recgoat_jax.sweep: the grid choice on valid, mean +- std, which runs a study starts in
which phase, reuse of finished runs, the report; and one tiny study trained end to end
(workers, reuse on a rerun)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from recgoat_jax.sweep import Data, Row, Study, choose, report, runner

ROOT = Path(__file__).resolve().parents[1]


def _slow_best(valid):
    """The first index of the largest value, by a plain scan over sorted candidates."""
    ran = [(v, -i) for i, v in enumerate(valid) if v is not None]
    return -max(ran)[1] if ran else None


def test_best_point_takes_the_first_largest_and_skips_missing():
    cases = [[0.31, None, 0.35, 0.33], [None, None], [0.2, 0.5, 0.5, 0.1], [0.4], []]
    assert [choose.best_point(c) for c in cases] == [2, None, 1, 0, None]
    assert [choose.best_point(c) for c in cases] == [_slow_best(c) for c in cases]


def test_mean_std_is_the_sample_std():
    got = choose.mean_std([0.30, 0.32, 0.37])
    assert got["mean"] == pytest.approx(0.33)
    # by hand: deviations -0.03, -0.01, 0.04; squares sum 0.0026; / (3 - 1)
    assert got["std"] == pytest.approx(math.sqrt(0.0013))
    assert choose.mean_std([0.5])["std"] == 0.0


def test_bucket_means_average_over_seeds_that_have_the_bucket():
    per_seed = [{"0-4": {"n_users": 3, "recall@20": 0.2}, ">4": {"n_users": 0}},
                {"0-4": {"n_users": 3, "recall@20": 0.4}, ">4": {"n_users": 0}}]
    assert choose.bucket_means(per_seed) == {"0-4": {"n_users": 3,
                                                     "recall@20": pytest.approx(0.3)}}


def _study(**kw) -> Study:
    return Study("t", "T", (
        Row("g", "lightgcn", config="lightgcn.yaml", fixed=("model.dim=8",),
            grid=(("train.lr=0.001",), ("train.lr=0.01",), ("train.lr=0.1",))),
        Row("g_1layer", "lightgcn", parent="g", fixed=("model.n_layers=1",)),
        Row("one", "mf", config="mf.yaml", cost=2),
        Row("t", "mf", config="mf.yaml", build="text")),
        (Data("a", {"main": "dir_a"}),), seeds=(0, 1), **kw)


def _finish(runs: Path, key: str, valid: float | None = None, failed: str | None = None):
    d = runs / key
    d.mkdir(parents=True, exist_ok=True)
    if failed:
        (d / "failed.txt").write_text(failed)
        return
    (d / "results.json").write_text(json.dumps({
        "valid": {"recall@20": valid}, "test": {"recall@20": valid / 2, "ndcg@20": valid / 4},
        "best_epoch": 3, "epochs_run": 5, "epoch_time_s_median": 0.5}))


def test_phases_choose_on_valid_then_run_the_rest_at_the_chosen_point(tmp_path):
    study = _study()
    lookup = runner.lookup_in([tmp_path])
    first = runner.tasks(study, lookup, 1)
    # seed-major; within a seed the costlier row first; the text row has no text build
    assert [t["key"] for t in first] == [
        "a/one/p0_s0", "a/g/p0_s0", "a/g/p1_s0", "a/g/p2_s0", "a/one/p0_s1"]
    assert first[1]["overrides"] == ["data.dataset=dir_a", "model.dim=8", "train.lr=0.001",
                                     "train.seed=0"]
    assert runner.tasks(study, lookup, 2) == []  # nothing chosen yet
    _finish(tmp_path, "a/g/p0_s0", 0.30)
    _finish(tmp_path, "a/g/p1_s0", 0.35)
    _finish(tmp_path, "a/g/p2_s0", failed="diverged")
    _finish(tmp_path, "a/one/p0_s0", 0.2)
    assert [t["key"] for t in runner.tasks(study, lookup, 1)] == ["a/one/p0_s1"]
    second = runner.tasks(study, lookup, 2)
    # seed by seed: every row's seed 0 before any row's seed 1
    assert [t["key"] for t in second] == ["a/g_1layer/p1_s0", "a/g/p1_s1", "a/g_1layer/p1_s1"]
    assert second[0]["overrides"][1:] == ["model.dim=8", "train.lr=0.01", "model.n_layers=1",
                                          "train.seed=0"]


def test_reuse_dirs_count_as_done_and_summary_reads_them(tmp_path):
    other = tmp_path / "other"
    for key, v in (("a/g/p0_s0", 0.30), ("a/g/p1_s0", 0.35), ("a/g/p2_s0", 0.31),
                   ("a/g/p1_s1", 0.33)):
        _finish(other, key, v)
    study = _study(reuse=(str(other),))
    lookup = runner.lookup_in([tmp_path / "runs", *study.reuse])
    assert [t["key"] for t in runner.tasks(study, lookup, 2)] == [
        "a/g_1layer/p1_s0", "a/g_1layer/p1_s1"]
    s = choose.summarise(study, ["a"], lookup)["a"]
    assert set(s) == {"g", "g_1layer"}  # 'one' not run; the ablation: its point is chosen
    assert s["g"]["chosen_point"] == 1 and s["g"]["n_seeds"] == 2
    assert s["g"]["test_recall@20"]["mean"] == pytest.approx((0.35 + 0.33) / 4)
    assert [g["valid"] for g in s["g"]["grid"]] == [0.30, 0.35, 0.31]
    assert s["g_1layer"]["n_seeds"] == 0
    md = report.markdown(study, {"a": s}, {"command": "c", "machine": {"platform": "p"},
                                           "date": "d"})
    assert "| g | model.dim=8, train.lr=0.01 | 2 | 0.3400 +- 0.0141 |" in md
    assert "- g: model.dim=8,train.lr=0.001: 0.3000; model.dim=8,train.lr=0.01: 0.3500" in md


def test_lookup_reads_the_groups_of_results_json_or_an_older_buckets_json(tmp_path):
    groups = {"0-4": {"n_users": 2, "recall@20": 0.5}}
    _finish(tmp_path, "a/g/p0_s0", 0.3)
    res = json.loads((tmp_path / "a/g/p0_s0/results.json").read_text())
    (tmp_path / "a/g/p0_s0/results.json").write_text(json.dumps({**res, "groups": {"test": groups}}))
    _finish(tmp_path, "a/g/p1_s0", 0.3)
    (tmp_path / "a/g/p1_s0/buckets.json").write_text(json.dumps(groups))
    lookup = runner.lookup_in([tmp_path])
    assert lookup("a/g/p0_s0")["buckets"] == lookup("a/g/p1_s0")["buckets"] == groups
    assert lookup("a/g/p2_s0") is None


def test_a_fitted_row_gets_no_training_overrides(tmp_path):
    study = Study("t", "T", (Row("knn", "itemknn", seeds=(None,), common=False),
                             Row("mf", "mf", seeds=(None,))),
                  (Data("a", {"main": "dir_a"}),), common=("train.epochs=3",), groups=True)
    got = {t["row"]: t["overrides"] for t in
           runner.tasks(study, runner.lookup_in([tmp_path]), 1, ["train.patience=5"])}
    assert got == {"knn": ["data.dataset=dir_a"],
                   "mf": ["data.dataset=dir_a", "train.epochs=3", f"{runner.CHECKPOINT}=true",
                          "train.patience=5"]}


def test_a_task_is_claimed_once(tmp_path):
    spec = tmp_path / "tasks.json"
    assert [runner.claim(spec, 0), runner.claim(spec, 0), runner.claim(spec, 1)] == [
        True, False, True]


def test_select_keeps_an_ablations_parent_and_refuses_unknown_rows():
    study = _study()
    assert [r.name for r in study.select(["g_1layer"]).rows] == ["g", "g_1layer"]
    with pytest.raises(ValueError, match="unknown rows"):
        study.select(["nope"])
    with pytest.raises(ValueError, match="parent"):
        Study("x", "X", (Row("a", "mf", parent="b"),), ())


@pytest.mark.slow  # two workers: 5 one-epoch runs and one item kNN on the demo (~40 s)
def test_tiny_study_end_to_end_then_reused(tmp_path, monkeypatch):
    from recgoat_jax import provenance

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))  # the workers'
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    study = Study("tiny", "Tiny", (
        Row("lgcn", "lightgcn", config="lightgcn.yaml",
            grid=(("train.lr=0.001",), ("train.lr=0.01",))),
        Row("mf", "mf", config="mf.yaml"),
        # a fitted model: no training keys, one run; its results.json has the groups
        Row("knn", "itemknn", seeds=(None,), common=False)),
        (Data("demo", {"main": "demo"}),), seeds=(0, 1),
        common=("model.dim=8", "train.epochs=1", "train.batch_size=4096"))
    lines = []
    lookup = runner.sweep(study, tmp_path / "runs", jobs=2, log=lines.append)
    assert lines == [f"phase 1: 5 runs over 2 worker(s) in {tmp_path / 'runs'}",
                     f"phase 2: 1 runs over 2 worker(s) in {tmp_path / 'runs'}"]
    runs = sorted(p.parent.relative_to(tmp_path / "runs").as_posix()
                  for p in (tmp_path / "runs").glob("*/*/*/results.json"))
    summary = choose.summarise(study, ["demo"], lookup)
    i = summary["demo"]["lgcn"]["chosen_point"]
    assert runs == sorted(["demo/lgcn/p0_s0", "demo/lgcn/p1_s0", f"demo/lgcn/p{i}_s1",
                           "demo/mf/p0_s0", "demo/mf/p0_s1", "demo/knn/p0"])
    knn = summary["demo"]["knn"]
    assert knn["n_seeds"] == 1 and set(knn["buckets"]) == {"0-4", "5-6", "7-10", ">10"}
    valid = [g["valid"] for g in summary["demo"]["lgcn"]["grid"]]
    assert i == valid.index(max(valid))
    rep = report.write(tmp_path / "tiny.json", study, summary, provenance.header())
    assert rep["versions"]["jax"] and "commit" in rep and rep["command"]
    assert "| mf | (config's) | 2 |" in (tmp_path / "tiny.md").read_text()
    stamps = {r: (tmp_path / "runs" / r / "results.json").stat().st_mtime_ns for r in runs}
    again = []
    runner.sweep(study, tmp_path / "runs", jobs=2, log=again.append)
    assert again == []  # nothing left to run: every run reused
    assert stamps == {r: (tmp_path / "runs" / r / "results.json").stat().st_mtime_ns
                      for r in runs}
