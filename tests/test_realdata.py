"""experiments/realdata.py: per-activity-bucket metrics and grid choice vs slow references."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import realdata  # noqa: E402

from recgoat_jax.data.dataset import CSR, Dataset  # noqa: E402


def _dataset(rng, n_users=40, n_items=30) -> Dataset:
    tr, te = [], []
    for u in range(n_users):
        items = rng.permutation(n_items)
        n_tr = int(rng.integers(1, 14))  # spans every bucket: <=4, 5-6, 7-10, >10
        tr += [(u, int(i)) for i in items[:n_tr]]
        te += [(u, int(i)) for i in items[n_tr:n_tr + int(rng.integers(0, 3))]]
    def csr(pairs):
        u, i = np.array(pairs).T
        return CSR.from_pairs(u, i, n_users)
    return Dataset("t", n_users, n_items, csr(tr), csr(te), csr(te))


def _slow(ds, ue, ie, lo, hi):
    """Per-user Recall@20 / NDCG@20 by a plain loop, averaged over the bucket."""
    rec, ndcg = [], []
    for u in range(ds.n_users):
        truth = set(ds.test.row(u).tolist())
        n_tr = len(ds.train.row(u))
        if not truth or not lo <= n_tr <= hi:
            continue
        s = ie @ ue[u]
        s[ds.train.row(u)] = -np.inf
        order = sorted(range(ds.n_items), key=lambda i: (-s[i], i))[:20]
        hits = [r for r, i in enumerate(order) if i in truth]
        rec.append(len(hits) / len(truth))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), 20)))
        ndcg.append(sum(1 / math.log2(r + 2) for r in hits) / idcg)
    return len(rec), float(np.mean(rec)), float(np.mean(ndcg))


def test_bucket_metrics_match_a_per_user_loop():
    rng = np.random.default_rng(0)
    ds = _dataset(rng)
    # small integers: every score exact in float32 for any kernel, many exact ties (the
    # loop's order: score desc, then lower item index)
    ue = rng.integers(-3, 4, size=(ds.n_users, 8)).astype(np.float32)
    ie = rng.integers(-3, 4, size=(ds.n_items, 8)).astype(np.float32)
    got = realdata.bucket_metrics(ds, ue, ie)
    assert list(got) == ["0-4", "5-6", "7-10", ">10"]
    for (lo, hi), label in zip(realdata.BUCKETS, got):
        n, r, g = _slow(ds, ue, ie, lo, hi)
        assert got[label]["n_users"] == n > 0
        np.testing.assert_allclose(got[label]["recall@20"], r, rtol=1e-5)
        np.testing.assert_allclose(got[label]["ndcg@20"], g, rtol=1e-5)


def test_choose_takes_the_best_valid_point_and_skips_missing(tmp_path):
    for point, valid in ((0, 0.31), (2, 0.35), (3, 0.33)):
        d = tmp_path / realdata.run_key("ds", "lightgcn", point, 0)
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"valid": {"recall@20": valid}}))
    best, rows = realdata.choose(tmp_path, "ds", "lightgcn")
    assert best == 2
    assert [r["valid_recall@20"] for r in rows] == [0.31, None, 0.35, 0.33, None, None]


def test_move_replaced_runs_moves_only_runs_of_the_old_point(tmp_path, monkeypatch):
    """A run whose config holds the replaced point's values moves to _replaced and is
    listed; a run of the new point under the same key stays."""
    import yaml

    monkeypatch.setattr(realdata, "REPLACED_POINTS",
                        {"recgoat": {2: ["train.lr=0.005", "model.edge_dropout=0.0"]}})

    def run(ds, seed, lr, edge_dropout, valid):
        d = tmp_path / realdata.run_key(ds, "recgoat", 2, seed)
        d.mkdir(parents=True)
        cfg = {"model": {"name": "recgoat", "edge_dropout": edge_dropout},
               "train": {"lr": lr}}
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        (d / "results.json").write_text(json.dumps(
            {"valid": {"recall@20": valid}, "best_epoch": 7, "epochs_run": 100}))
        return d

    old = run("a", 0, 0.005, 0.0, 0.31)
    new = run("b", 0, 0.001, 0.8, 0.35)
    got = realdata.move_replaced_runs(tmp_path)
    assert not old.exists() and new.exists()
    assert (tmp_path / "_replaced" / "a" / "recgoat" / "p2_s0" / "results.json").exists()
    assert got == {"a/recgoat/p2_s0": {"overrides": ["train.lr=0.005", "model.edge_dropout=0.0"],
                                       "valid_recall@20": 0.31, "best_epoch": 7,
                                       "epochs_run": 100}}
    assert realdata.move_replaced_runs(tmp_path) == got  # idempotent


def test_user_text_rows_train_on_their_build_and_only_where_given():
    sets = {"deb": "data/deb", "ml": "data/ml"}
    text = {"deb": "data/deb-ut"}
    assert realdata.data_dir_of("recgoat", "deb", sets, text) == "data/deb"
    assert realdata.data_dir_of("recgoat_user_text", "deb", sets, text) == "data/deb-ut"
    assert realdata.data_dir_of("recgoat_user_template", "deb", sets, text) == "data/deb"
    assert realdata.data_dir_of("recgoat_user_text", "ml", sets, text) is None
    assert realdata.data_dir_of("recgoat_user_template", "ml", sets, text) is None
    keys = {t["key"]: t["data_dir"] for t in realdata._grid_tasks(
        sets, ["recgoat", "recgoat_user_text"], text)}
    n = len(realdata.MODELS["recgoat"][3])
    assert len(realdata.MODELS["recgoat_user_text"][3]) == n  # grids of equal size
    assert len(keys) == 3 * n and keys["deb/recgoat_user_text/p0_s0"] == "data/deb-ut"
    assert not any(k.startswith("ml/recgoat_user_text") for k in keys)


def test_claim_gives_each_task_to_one_worker(tmp_path):
    spec = tmp_path / "tasks-1.json"
    assert realdata.claim(spec, 0) and not realdata.claim(spec, 0)
    assert realdata.claim(spec, 1)


def test_user_text_goal_ratio_and_buckets():
    def row(mean, buckets):
        return {"test_recall@20": {"mean": mean},
                "buckets": {k: {"recall@20": v} for k, v in buckets.items()}}

    rows = {"recgoat_user_text": row(0.72, {"0-4": 0.70, ">10": 0.60}),
            "lightgcn": row(0.65, {"0-4": 0.66, ">10": 0.55}),
            "freedom": row(0.69, {"0-4": 0.69, ">10": 0.61}),
            "blend": row(0.68, {"0-4": 0.68}),
            "recgoat": row(0.70, {})}
    g = realdata.user_text_goal(rows)
    assert g["best_reference"] == "freedom"
    assert math.isclose(g["ratio"], 0.72 / 0.69) and g["ratio"] >= 1.03
    assert g["buckets_below"] == [">10: 0.6000 < freedom 0.6100"] and not g["met"]
    assert g["not_below_recgoat"] and math.isclose(g["ratio_to_recgoat"], 0.72 / 0.70)
    rows["freedom"]["buckets"][">10"]["recall@20"] = 0.59
    assert realdata.user_text_goal(rows)["met"]
    assert realdata.user_text_goal({"lightgcn": rows["lightgcn"]}) is None
