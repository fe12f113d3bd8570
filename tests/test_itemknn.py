"""The fitted (memory-based) models itemknn and blend (model/memory.py, their score
inputs graphs/similarity.py, train/fit.py) against independent loops on a tiny hand-made
dataset, and their run through train(), recommend and the CLI.

Scores are sums of cosines: two mathematically equal scores are equal in the float32 the
evaluator ranks (up to a rounding-boundary accident, not a BLAS choice), and the loops
below treat scores equal to 12 decimals as tied (lower item first), as the evaluator does.
"""

import json
import math

import numpy as np
import pytest

from recgoat_jax.config import make_config
from recgoat_jax.data import synthetic
from recgoat_jax.data.dataset import CSR, Dataset
from recgoat_jax.errors import DataError
from recgoat_jax.train.builder import build_run
from recgoat_jax.train.loop import train

TRAIN = {0: [0, 1, 2], 1: [1, 2], 2: [0, 3, 4], 3: [2, 4, 5], 4: [5, 6], 5: [0, 1, 6],
         6: [3], 7: [1, 4, 6], 8: [0, 2, 3, 5]}
VALID = {0: [4], 1: [0], 2: [1], 3: [6], 4: [2], 5: [3], 6: [4], 7: [2], 8: [6]}
TEST = {0: [3, 5], 1: [6], 2: [2], 3: [0], 4: [1, 4], 5: [5], 6: [0, 6], 7: [5], 8: []}
N_USERS, N_ITEMS = 9, 7


def _csr(rows):
    pairs = [(u, i) for u, items in rows.items() for i in items]
    return CSR.from_pairs(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]),
                          N_USERS)


def _dataset(user_features=True) -> Dataset:
    feats = np.random.default_rng(3).normal(size=(N_USERS, 5)) if user_features else None
    return Dataset("hand", N_USERS, N_ITEMS, _csr(TRAIN), _csr(VALID), _csr(TEST),
                   user_features=feats)


# ------------------------------------------------------------------ independent loops
def _top(row: dict, k: int) -> dict:
    """{j: value} -> its k largest (ties: lower j); k <= 0 or >= len + 1: all."""
    if k <= 0 or k >= len(row):
        return row
    keep = sorted(row, key=lambda j: (-row[j], j))[:k]
    return {j: row[j] for j in keep}


def _slow_itemknn(k):
    users_of = {i: {u for u, its in TRAIN.items() if i in its} for i in range(N_ITEMS)}
    sim = {}
    for i in range(N_ITEMS):
        row = {}
        for j in range(N_ITEMS):
            if j != i:
                n = len(users_of[i]) * len(users_of[j])
                row[j] = len(users_of[i] & users_of[j]) / math.sqrt(n) if n else 0.0
        sim[i] = _top(row, k)
    return [[sum(sim[i].get(j, 0.0) for j in TRAIN[u]) for i in range(N_ITEMS)]
            for u in range(N_USERS)]


def _slow_user_text(feats, k):
    unit = [f / np.linalg.norm(f) for f in feats]
    out = []
    for u in range(N_USERS):
        near = _top({v: float(unit[u] @ unit[v]) for v in range(N_USERS) if v != u}, k)
        out.append([sum(w for v, w in near.items() if i in TRAIN[v]) for i in range(N_ITEMS)])
    return out


def _minmax(rows):
    out = []
    for r in rows:
        lo, hi = min(r), max(r)
        out.append([(x - lo) / (hi - lo) if hi > lo else 0.0 for x in r])
    return out


def _slow_recall(scores, split: dict, k: int) -> float:
    """Mean Recall@k over users with truth: train items out, ties to the lower item."""
    vals = []
    for u, truth in split.items():
        if not truth:
            continue
        cand = [i for i in range(N_ITEMS) if i not in TRAIN[u]]
        ranked = sorted(cand, key=lambda i: (-round(scores[u][i], 12), i))[:k]
        vals.append(len(set(ranked) & set(truth)) / len(truth))
    return sum(vals) / len(vals)


# ------------------------------------------------------------------ the models
def _cfg(model, **sets):
    return make_config(overrides=[f"model.name={model}", "eval.ks=[1,3,5]",
                                  "eval.metric=recall@3"] + [f"{k}={v}" for k, v in sets.items()])


def _fit(ds, model, **sets):
    """(setup, params, info): the model built by build_run (inputs included), fitted."""
    setup = build_run(_cfg(model, **sets), ds)
    params, info = setup.model.fit(setup.inputs, setup.evaluator)
    return setup, params, info


@pytest.mark.parametrize("k", [0, 2])
def test_itemknn_recall_equals_a_loop(k):
    setup, params, info = _fit(_dataset(), "itemknn", **{"model.k": k})
    assert params == {} and info == {"k": k}
    user_emb, item_emb = setup.model.embed(params, setup.inputs)
    np.testing.assert_allclose(np.asarray(user_emb) @ np.asarray(item_emb).T, _slow_itemknn(k),
                               rtol=1e-6, atol=1e-7)
    for split, rows in (("valid", VALID), ("test", TEST)):
        got = setup.evaluator.evaluate(user_emb, item_emb, split)
        for kk in (1, 3):
            assert got[f"recall@{kk}"] == pytest.approx(_slow_recall(_slow_itemknn(k), rows, kk),
                                                        abs=1e-6), (split, kk)


def test_blend_weight_zero_is_itemknn_and_w_is_the_valid_best():
    ds = _dataset()
    weights = (0.0, 0.5, 1.0, 3.0)
    knn, knn_params, _ = _fit(ds, "itemknn")
    zero, zero_params, zero_info = _fit(ds, "blend", **{"model.weights": "[0.0]",
                                                       "model.user_k": 3})
    assert zero_info["weight"] == 0.0
    ev = knn.evaluator
    for split in ("valid", "test"):   # min-max per row keeps each user's order
        assert ev.evaluate(*zero.model.embed(zero_params, zero.inputs), split) == \
            pytest.approx(ev.evaluate(*knn.model.embed(knn_params, knn.inputs), split), abs=1e-7)

    setup, params, info = _fit(ds, "blend", **{"model.weights": list(weights),
                                               "model.user_k": 3})
    co, text = _minmax(_slow_itemknn(0)), _minmax(_slow_user_text(ds.user_features, 3))
    slow = {w: _slow_recall([[a + w * b for a, b in zip(ra, rb)] for ra, rb in zip(co, text)],
                            VALID, 3) for w in weights}
    for w in weights:
        assert info["valid"][str(w)] == pytest.approx(slow[w], abs=1e-6), w
    assert info["weight"] == max(weights, key=lambda w: (info["valid"][str(w)], -w))
    assert slow[info["weight"]] == pytest.approx(max(slow.values()), abs=1e-9)
    assert len(set(slow.values())) > 1  # the grid is not flat: the choice means something
    want = [[a + info["weight"] * b for a, b in zip(ra, rb)] for ra, rb in zip(co, text)]
    user_emb, item_emb = setup.model.embed(params, setup.inputs)
    np.testing.assert_allclose(np.asarray(user_emb) @ np.asarray(item_emb).T, want,
                               rtol=1e-6, atol=1e-6)


def test_blend_without_user_features_is_a_one_line_data_error():
    with pytest.raises(DataError, match=r"needs user features: no user_feat\.npy .* "
                                        r"dataset 'hand'"):
        build_run(_cfg("blend"), _dataset(user_features=False))


# ------------------------------------------------------------------ runs

def test_itemknn_run_writes_the_run_directory(tmp_path):
    ds = _dataset()
    lines = []
    res = train(_cfg("itemknn", **{"model.k": 2}), run_dir=tmp_path / "run", dataset=ds,
                progress=False, log=lambda s: None, out=lines.append)
    run = tmp_path / "run"
    saved = json.loads((run / "results.json").read_text())
    assert saved["fitted"] is True and saved["model"] == "itemknn" and saved["epochs_run"] == 0
    assert saved["test"]["recall@3"] == pytest.approx(_slow_recall(_slow_itemknn(2), TEST, 3),
                                                      abs=1e-6)
    groups = saved["groups"]["test"]
    assert list(groups) == ["0-4", "5-6", "7-10", ">10"]
    assert groups["0-4"]["n_users"] == 8 and groups["5-6"] == {"n_users": 0}
    assert groups["0-4"]["recall@3"] == pytest.approx(saved["test"]["recall@3"], abs=1e-7)
    assert make_config(run / "config.yaml") == _cfg("itemknn", **{"model.k": 2})
    assert not (run / "checkpoints").exists()      # nothing trained, nothing to restore
    assert lines[0].startswith("hand / itemknn: test of the fitted model")
    assert lines[-1] == f"run directory: {run}" and "Recall" in lines[1]
    assert res["test"] == saved["test"]


def test_blend_cli_on_a_dataset_without_user_features(tmp_path, capsys):
    from recgoat_jax.train.cli import main

    data = synthetic.generate(n_users=40, n_items=30, n_interactions=300, seed=0,
                              feature_dims={"text": 4}, name="nouser")
    synthetic.write_mmrec(data, tmp_path / "nouser")
    rc = main(["--model", "blend", "--dataset", str(tmp_path / "nouser"), "-q",
               "--run-dir", str(tmp_path / "run"), "--set", "eval.ks=[5,10,20]"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(err) == 1, err
    assert "model blend needs user features: no user_feat.npy" in err[0]
    assert "Traceback" not in err[0]


def test_recommend_refits_a_fitted_run(tmp_path):
    # no checkpoint: recommend fits the model again; its lists give the run's test recall
    from recgoat_jax.recommend import recommend

    data = synthetic.generate(n_users=60, n_items=40, n_interactions=700, seed=1,
                              feature_dims={"text": 4}, name="small")
    synthetic.write_mmrec(data, tmp_path / "small")
    cfg = make_config(overrides=["model.name=itemknn", f"data.dataset={tmp_path / 'small'}",
                                 "eval.ks=[5]", "eval.metric=recall@5"])
    res = train(cfg, run_dir=tmp_path / "run", progress=False, log=lambda s: None)
    users, items, _ = recommend(tmp_path / "run", k=5)
    lists = dict(zip(users.tolist(), items.tolist()))
    test = {u: set(data.test.row(u).tolist()) for u in range(data.n_users) if data.test.row(u).size}
    recall = np.mean([len(set(lists[u]) & t) / len(t) for u, t in test.items()])
    assert recall == pytest.approx(res["test"]["recall@5"], abs=1e-6)


def test_minmax_rows_by_hand():
    from recgoat_jax.graphs.similarity import minmax_rows

    s = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0], [-2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(minmax_rows(s), [[0, 1, 0.5], [0, 0, 0], [0, 0.5, 1]])
