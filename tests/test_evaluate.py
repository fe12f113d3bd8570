"""Tests for recgoat_jax.evaluate: against a slow NumPy reference and hand-computed cases.

Embeddings in the random cases are small integers (or multiples of 1/8), so every score
is exact in float32 whatever the summation order: rankings are deterministic and there
are many exact ties, which exercises the tie rule (lower item index first).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.data.dataset import CSR, Dataset
from recgoat_jax.evaluate import (
    DEFAULT_KS,
    METRICS,
    Evaluator,
    format_table,
    metrics_from_hits,
)
from recgoat_jax.evaluate.blocks import eval_rank_block


# ----------------------------------------------------------------------------- helpers
def _csr(rows: dict[int, list[int]], n_users: int) -> CSR:
    pairs = [(u, i) for u, items in rows.items() for i in items]
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    return CSR.from_pairs(users, items, n_users)


def _random_dataset(rng, n_users, n_items, p=(0.15, 0.05, 0.05)) -> Dataset:
    """Disjoint random train/valid/test per user; some users end up with empty splits."""
    draw = rng.random((n_users, n_items))
    cut = np.cumsum(p)
    train = np.nonzero(draw < cut[0])
    valid = np.nonzero((draw >= cut[0]) & (draw < cut[1]))
    test = np.nonzero((draw >= cut[1]) & (draw < cut[2]))
    mk = lambda uv: CSR.from_pairs(uv[0], uv[1], n_users)  # noqa: E731
    return Dataset("random", n_users, n_items, mk(train), mk(valid), mk(test))


def _int_embs(rng, ds, d, scale=1.0):
    u = rng.integers(-3, 4, (ds.n_users, d)).astype(np.float32) * scale
    i = rng.integers(-3, 4, (ds.n_items, d)).astype(np.float32) * scale
    return u, i


def _slow_rank(ds, u_emb, i_emb, user, mask_train=True):
    """Masked scores and the full ranking (stable argsort on -score: ties -> lower index)."""
    s = u_emb[user].astype(np.float64) @ i_emb.astype(np.float64).T
    if mask_train:
        s[ds.train.row(user)] = -np.inf
    return s, np.argsort(-s, kind="stable")


def _slow_evaluate(ds, u_emb, i_emb, split, ks):
    """Independent reference: per user, loop over ranks."""
    sums = {f"{m}@{k}": 0.0 for m in METRICS for k in ks}
    n_eval = 0
    for user in range(ds.n_users):
        truth = set(ds.split(split).row(user).tolist())
        if not truth:
            continue
        n_eval += 1
        s, order = _slow_rank(ds, u_emb, i_emb, user)
        for k in ks:
            hits, dcg, ap = 0, 0.0, 0.0
            for r, item in enumerate(order[:k], start=1):
                if item in truth and s[item] > -np.inf:
                    hits += 1
                    dcg += 1.0 / math.log2(r + 1)
                    ap += hits / r
            ideal = min(len(truth), k)
            idcg = sum(1.0 / math.log2(r + 1) for r in range(1, ideal + 1))
            sums[f"recall@{k}"] += hits / len(truth)
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"precision@{k}"] += hits / k
            sums[f"map@{k}"] += ap / ideal
            sums[f"hitrate@{k}"] += float(hits > 0)
    return {key: v / max(n_eval, 1) for key, v in sums.items()}


def _assert_metrics(got, want, tol=1e-5):
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=tol), key


# ----------------------------------------------------------------------------- (a) random
CASES = [
    # n_users, n_items, d, batch_users, ks, scale, max_block_mib
    (37, 23, 3, 8, (1, 3, 5, 10), 1.0, None),       # 37 users: not a multiple of the block
    (64, 60, 4, 16, (5, 10, 20, 50), 0.125, None),  # default ks, dyadic scores
    (50, 80, 5, 1000, (2, 7, 20), 1.0, 1e9),        # block larger than n_users
    (41, 30, 2, 5, (30,), 1.0, None),               # K == n_items, tiny d: huge tie groups
    (45, 512, 3, 4096, (10,), 1.0, 0.016),          # block capped by max_block_mib -> 8
]


@pytest.mark.parametrize("case, method", [(c, "rank") for c in range(len(CASES))]
                         + [(0, "topk"), (3, "topk")])   # topk: fewer cases (compile time)
def test_matches_slow_reference(case, method):
    n_users, n_items, d, batch, ks, scale, cap = CASES[case]
    rng = np.random.default_rng(100 + case)
    ds = _random_dataset(rng, n_users, n_items, p=(0.15, 0.05 * 60 / n_items, 0.05 * 60 / n_items))
    u_emb, i_emb = _int_embs(rng, ds, d, scale)
    ev = Evaluator(ds, ks=ks, batch_users=batch, method=method, max_block_mib=cap)
    if cap == 0.016:                                      # 0.016 MiB / (512 * 4 B) = 8 rows
        most = max(ds.valid.row_lengths().max(), ds.test.row_lengths().max())
        assert ev.block == (8 if method == "topk" else max(8, most))  # rank: whole users
    for split in ("valid", "test"):
        want = _slow_evaluate(ds, u_emb, i_emb, split, ks)
        got = ev.evaluate(jnp.asarray(u_emb), i_emb, split)   # jax and numpy inputs
        _assert_metrics(got, want)
        assert all(isinstance(v, float) for v in got.values())


def test_one_compilation_for_all_blocks_and_both_splits():
    rng = np.random.default_rng(7)
    ds = _random_dataset(rng, 53, 31)                  # shapes unique to this test
    u_emb, i_emb = _int_embs(rng, ds, 3)
    ev = Evaluator(ds, ks=(3, 7), batch_users=8)
    assert len(ev._blocks("test")) > 2                 # several blocks
    before = eval_rank_block._cache_size()
    ev.evaluate(u_emb, i_emb, "valid")
    ev.evaluate(u_emb, i_emb, "test")
    ev.evaluate(u_emb * 2, i_emb, "test")
    assert eval_rank_block._cache_size() == before + 1


def test_metrics_from_hits_matches_loop():
    rng = np.random.default_rng(3)
    hits = rng.random((40, 12)) < 0.3
    n_truth = hits.sum(1) + rng.integers(0, 4, 40)     # >= hits, some users 0
    ks = (1, 4, 12)
    fn = jax.jit(metrics_from_hits, static_argnums=2)             # jitted: fast, one compile
    got = {key: np.asarray(v) for key, v in fn(hits, n_truth, ks).items()}
    for b in range(40):
        for k in ks:
            h = hits[b, :k]
            nt = n_truth[b]
            if nt == 0:
                for m in METRICS:
                    assert float(got[f"{m}@{k}"][b]) == 0.0
                continue
            ranks = np.nonzero(h)[0] + 1
            dcg = sum(1 / math.log2(r + 1) for r in ranks)
            idcg = sum(1 / math.log2(r + 1) for r in range(1, min(nt, k) + 1))
            ap = sum((j + 1) / r for j, r in enumerate(ranks))
            want = {"recall": len(ranks) / nt, "ndcg": dcg / idcg, "precision": len(ranks) / k,
                    "map": ap / min(nt, k), "hitrate": float(len(ranks) > 0)}
            for m, v in want.items():
                assert float(got[f"{m}@{k}"][b]) == pytest.approx(v, abs=1e-6), (b, k, m)


# ----------------------------------------------------------------------------- (b) by hand
def _hand_dataset():
    """Scores are given directly: item_emb = identity, so scores = user_emb rows.

    user 0: scores [5, 3, 3, 9, 1, 3]; train {3} (the top score, masked); valid {1};
            test {2, 5}. Ranking: 0, 1, 2, 5, 4 (ties 1 < 2 < 5 by index), 3 masked.
    user 1: scores [1..6]; test {0, 3, 4, 5}: more truth than K; no valid.
    user 2: scores [2, 7, 1, 1, 1, 0]; train {1}; valid {0}; no test (excluded).
    user 3: scores [9..4]; test {0, 2}: hits at ranks 1 and 3; no valid.
    user 4: nothing at all.
    """
    n_users, n_items = 5, 6
    user_emb = np.array([[5, 3, 3, 9, 1, 3],
                         [1, 2, 3, 4, 5, 6],
                         [2, 7, 1, 1, 1, 0],
                         [9, 8, 7, 6, 5, 4],
                         [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    item_emb = np.eye(n_items, dtype=np.float32)
    ds = Dataset("hand", n_users, n_items,
                 train=_csr({0: [3], 2: [1]}, n_users),
                 valid=_csr({0: [1], 2: [0]}, n_users),
                 test=_csr({0: [2, 5], 1: [0, 3, 4, 5], 3: [0, 2]}, n_users))
    return ds, user_emb, item_emb


IDCG2 = 1 + 1 / math.log2(3)                            # 1.6309297535714575
HAND_TEST = {
    # K = 1: top-1 items are 0 (user 0, miss), 5 (user 1, hit), 0 (user 3, hit)
    "recall@1": (0 + 1 / 4 + 1 / 2) / 3,                # 0.25
    "ndcg@1": 2 / 3, "precision@1": 2 / 3, "map@1": 2 / 3, "hitrate@1": 2 / 3,
    # K = 3: user 0 top [0, 1, 2] (valid item 1 NOT masked): one hit at rank 3;
    #        user 1 top [5, 4, 3]: 3 hits of 4 truth; user 3 hits at ranks 1 and 3.
    "recall@3": (1 / 2 + 3 / 4 + 1) / 3,                # 0.75
    "ndcg@3": ((1 / 2) / IDCG2 + 1 + 1.5 / IDCG2) / 3,  # 0.7420981285
    "precision@3": (1 / 3 + 1 + 2 / 3) / 3,             # 2/3
    "map@3": ((1 / 3) / 2 + 1 + (1 + 2 / 3) / 2) / 3,   # 2/3
    "hitrate@3": 1.0,
}
HAND_VALID = {
    # users 0 (truth {1}, rank 2 after masking item 3) and 2 (truth {0}, rank 1)
    "recall@1": 0.5, "ndcg@1": 0.5, "precision@1": 0.5, "map@1": 0.5, "hitrate@1": 0.5,
    "recall@3": 1.0, "ndcg@3": (1 / math.log2(3) + 1) / 2,   # 0.8154648768
    "precision@3": 1 / 3, "map@3": (1 / 2 + 1) / 2, "hitrate@3": 1.0,
}


@pytest.mark.parametrize("method, batch", [("rank", 2), ("rank", 64), ("topk", 2)])
def test_hand_computed(method, batch):
    ds, u_emb, i_emb = _hand_dataset()
    ev = Evaluator(ds, ks=(1, 3), batch_users=batch, method=method)
    assert ev.n_evaluated("test") == 3 and ev.n_evaluated("valid") == 2
    _assert_metrics(ev.evaluate(u_emb, i_emb, "test"), HAND_TEST, tol=1e-6)
    _assert_metrics(ev.evaluate(u_emb, i_emb, "valid"), HAND_VALID, tol=1e-6)
    # the literal values written in the comments
    got = ev.evaluate(u_emb, i_emb, "test")
    assert got["ndcg@3"] == pytest.approx(0.7420981285, abs=1e-6)
    assert got["recall@3"] == pytest.approx(0.75, abs=1e-6)
    assert got["map@3"] == pytest.approx(2 / 3, abs=1e-6)


def test_hand_topk_items():
    ds, u_emb, i_emb = _hand_dataset()
    ev = Evaluator(ds, ks=(1, 3), batch_users=2)
    items, scores = ev.topk(u_emb, i_emb, np.array([0, 2, 0]), k=6)
    np.testing.assert_array_equal(items[0], [0, 1, 2, 5, 4, 3])   # masked item last
    np.testing.assert_array_equal(items[1], [0, 2, 3, 4, 5, 1])
    np.testing.assert_array_equal(items[2], items[0])
    np.testing.assert_array_equal(scores[0], [5, 3, 3, 3, 1, -np.inf])
    items, scores = ev.topk(u_emb, i_emb, np.array([0]), k=3, mask_train=False)
    np.testing.assert_array_equal(items[0], [3, 0, 1])
    assert items.dtype == np.int32 and scores.dtype == np.float32


def test_lax_top_k_prefers_lower_index_on_ties():
    vals, idx = jax.lax.top_k(jnp.array([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0]]), 4)
    np.testing.assert_array_equal(np.asarray(idx), [[1, 2, 4, 5]])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (50, 300)).astype(np.float32)           # massive ties
    _, idx = jax.lax.top_k(jnp.asarray(x), 40)
    np.testing.assert_array_equal(np.asarray(idx), np.argsort(-x, axis=1, kind="stable")[:, :40])


def test_negative_zero_ties_with_zero():
    # -0.0 and +0.0 are one tie group: lower index first, on every path.
    ds = Dataset("z", 1, 4, _csr({}, 1), _csr({}, 1), _csr({0: [1]}, 1))
    u_emb = np.array([[-1.0]], np.float32)
    i_emb = np.array([[0.0], [-0.0], [0.0], [-1.0]], np.float32)   # scores -0, 0, -0, 1
    ev = Evaluator(ds, ks=(2,), batch_users=4)
    assert ev.evaluate(u_emb, i_emb, "test")["recall@2"] == 0.0       # ranking 3, 0, 1, 2
    items, _ = ev.topk(u_emb, i_emb, np.array([0]), k=4)             # lax.top_k path
    np.testing.assert_array_equal(items[0], [3, 0, 1, 2])


# ----------------------------------------------------------------------------- (c) topk
@pytest.mark.parametrize("mask_train", [True, False])
def test_topk_matches_slow_reference(mask_train):
    rng = np.random.default_rng(11)
    ds = _random_dataset(rng, 45, 40, p=(0.3, 0.05, 0.05))
    u_emb, i_emb = _int_embs(rng, ds, 3)
    ev = Evaluator(ds, ks=(5,), batch_users=16)
    users = rng.integers(0, ds.n_users, 37)              # duplicates, not block-aligned
    for k in (1, 40):
        items, scores = ev.topk(u_emb, i_emb, users, k=k, mask_train=mask_train)
        assert items.shape == (37, k) and scores.shape == (37, k)
        for row, user in enumerate(users):
            s, order = _slow_rank(ds, u_emb, i_emb, user, mask_train)
            np.testing.assert_array_equal(items[row], order[:k])
            np.testing.assert_array_equal(scores[row], s[order[:k]].astype(np.float32))


def test_empty_split_gives_zeros():
    ds, u_emb, i_emb = _hand_dataset()
    ds = Dataset("hand", ds.n_users, ds.n_items, ds.train, _csr({}, ds.n_users), ds.test)
    ev = Evaluator(ds, ks=(1, 3))
    assert ev.n_evaluated("valid") == 0
    got = ev.evaluate(u_emb, i_emb, "valid")
    assert len(got) == 10 and set(got.values()) == {0.0}


# ----------------------------------------------------------------------------- misc
def test_format_table_and_errors():
    ds, u_emb, i_emb = _hand_dataset()
    ev = Evaluator(ds, ks=(1, 3), batch_users=64)
    table = format_table(ev.evaluate(u_emb, i_emb, "test"), (1, 3))
    lines = table.splitlines()
    assert lines[0].split() == ["@1", "@3"]
    assert [ln.split()[0] for ln in lines[1:]] == ["Recall", "NDCG", "Precision", "MAP",
                                                    "HitRate"]
    assert lines[1].split()[1:] == ["0.2500", "0.7500"]
    assert len({len(ln) for ln in lines}) == 1           # fixed width
    assert "-" in format_table({}, DEFAULT_KS)
    with pytest.raises(ValueError):
        Evaluator(ds, ks=(10,))                           # K > n_items
    with pytest.raises(ValueError):
        ev.evaluate(u_emb, i_emb, "train")
    with pytest.raises(ValueError):
        ev.evaluate(u_emb[:, :3], i_emb, "test")
