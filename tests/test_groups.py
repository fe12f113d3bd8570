"""Evaluation by user group (evaluate/groups.py, Evaluator users_mask) against an
independent per-user loop on small hand-made data with integer embeddings (exact float32
scores, so the ranking, ties included, is the same on any BLAS)."""

import math

import numpy as np
import pytest

from recgoat_jax.data.dataset import CSR, Dataset
from recgoat_jax.evaluate import Evaluator, activity_groups, bucket_label, group_metrics


def _csr(rows: dict, n_users: int) -> CSR:
    pairs = [(u, i) for u, items in rows.items() for i in items]
    return CSR.from_pairs(np.array([p[0] for p in pairs], np.int64),
                          np.array([p[1] for p in pairs], np.int64), n_users)


def _dataset() -> Dataset:
    """10 users x 14 items; train sizes 0, 1, 2, 4, 5, 6, 7, 10, 11, 3 (every bucket);
    users 2 and 6 have no test items."""
    rng = np.random.default_rng(5)
    n_users, n_items = 10, 14
    sizes = [0, 1, 2, 4, 5, 6, 7, 10, 11, 3]
    train, valid, test = {}, {}, {}
    for u, n in enumerate(sizes):
        perm = rng.permutation(n_items)
        train[u] = perm[:n].tolist()
        rest = perm[n:]
        valid[u] = rest[:1].tolist()
        test[u] = [] if u in (2, 6) else rest[1:1 + 1 + u % 3].tolist()
    return Dataset("hand", n_users, n_items, _csr(train, n_users), _csr(valid, n_users),
                   _csr(test, n_users))


def _slow(ds, u_emb, i_emb, split, k, mask):
    """Recall@k / NDCG@k averaged over the mask's users with truth: a loop per user."""
    rec, ndcg, n = 0.0, 0.0, 0
    for u in range(ds.n_users):
        truth = set(ds.split(split).row(u).tolist())
        if not mask[u] or not truth:
            continue
        n += 1
        s = u_emb[u].astype(np.float64) @ i_emb.astype(np.float64).T
        s[ds.train.row(u)] = -np.inf
        order = np.argsort(-s, kind="stable")[:k]   # ties: lower item index
        hit_ranks = [r for r, i in enumerate(order, 1) if i in truth and s[i] > -np.inf]
        rec += len(hit_ranks) / len(truth)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(truth), k) + 1))
        ndcg += sum(1 / math.log2(r + 1) for r in hit_ranks) / idcg
    return n, (rec / n if n else None), (ndcg / n if n else None)


def test_activity_groups_by_train_items():
    ds = _dataset()
    groups = activity_groups(ds)
    assert list(groups) == ["0-4", "5-6", "7-10", ">10"]
    assert [np.nonzero(m)[0].tolist() for m in groups.values()] == [[0, 1, 2, 3, 9], [4, 5],
                                                                   [6, 7], [8]]
    odd = activity_groups(ds, edges=((2, 2), (3, 10**9)))     # realdata.py's open end
    assert list(odd) == ["2", ">2"] and odd["2"].tolist() == [s == 2 for s in
                                                              ds.train.row_lengths()]
    assert bucket_label(11, None) == ">10" and bucket_label(0, 4) == "0-4"


@pytest.mark.parametrize("method", ["rank", "topk"])
def test_group_metrics_equal_a_slow_loop(method):
    ds = _dataset()
    rng = np.random.default_rng(0)
    u_emb = rng.integers(-3, 4, (ds.n_users, 3)).astype(np.float32)
    i_emb = rng.integers(-3, 4, (ds.n_items, 3)).astype(np.float32)
    ev = Evaluator(ds, ks=(3, 5), batch_users=4, method=method)   # several blocks
    groups = {**activity_groups(ds), "even": np.arange(ds.n_users) % 2 == 0,
              "none": np.zeros(ds.n_users, bool)}
    for split in ("test", "valid"):
        got = group_metrics(ev, u_emb, i_emb, split, groups)
        assert list(got) == list(groups)
        for label, mask in groups.items():
            for k in (3, 5):
                n, rec, ndcg = _slow(ds, u_emb, i_emb, split, k, mask)
                assert got[label]["n_users"] == n, (split, label)
                if n == 0:
                    assert got[label] == {"n_users": 0}
                    continue
                assert got[label][f"recall@{k}"] == pytest.approx(rec, abs=1e-6)
                assert got[label][f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)
    # the activity buckets partition the users: their n-weighted mean is the overall mean
    full = ev.evaluate(u_emb, i_emb, "test")
    by = group_metrics(ev, u_emb, i_emb, "test", activity_groups(ds))
    total = sum(g["n_users"] for g in by.values())
    assert total == ev.n_evaluated("test") == 8
    assert sum(g["n_users"] * g.get("recall@5", 0) for g in by.values()) / total == \
        pytest.approx(full["recall@5"], abs=1e-6)
    # the unmasked path is unchanged by the masked calls before it (separate caches)
    assert ev.evaluate(u_emb, i_emb, "test") == full


def test_users_mask_must_be_bool_per_user():
    ds = _dataset()
    ev = Evaluator(ds, ks=(3,))
    with pytest.raises(ValueError, match="users_mask must be a bool array"):
        ev.evaluate(np.zeros((10, 2)), np.zeros((14, 2)), "test", users_mask=np.ones(10))
    with pytest.raises(ValueError, match="n_users=10"):
        ev.n_evaluated("test", np.ones(9, bool))
