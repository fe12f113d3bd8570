"""kNN graph builders vs dense NumPy references; blocking invariance; disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from recgoat_jax.graphs import knn

from graph_helpers import exact_cosine_features


def _dense_topk(scores: np.ndarray, k: int, positive_only: bool = False) -> list[tuple[int, int]]:
    """Reference rule: per row, sort by (score desc, index asc), keep k (optionally only > 0)."""
    edges = []
    n = scores.shape[0]
    for i in range(n):
        order = np.lexsort((np.arange(scores.shape[1]), -scores[i]))
        if positive_only:
            order = [j for j in order if scores[i, j] > 0]
        edges += [(i, int(j)) for j in list(order)[:k]]
    return edges


def _finish_ref(edges: list[tuple[int, int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetrise, add self loops, dedupe, sort by (receiver, sender)."""
    s = set()
    for i, j in edges:
        s.add((i, j))
        s.add((j, i))
    s |= {(i, i) for i in range(n)}
    pairs = sorted(s, key=lambda e: (e[1], e[0]))
    return np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32)


def _features_with_ties(n: int = 23, d: int = 5, seed: int = 0) -> np.ndarray:
    """Integer rows with power-of-two norms (graph_helpers.exact_cosine_features): every
    cosine is exact in float32 on any CPU, so equal cosines really tie for every kernel
    and block size; plus duplicates and a rescaled copy."""
    x = exact_cosine_features(n, d, seed)
    for dst, src, scale in ((5, 0, 1.0), (9, 0, 1.0), (12, 3, 3.0), (17, 3, 1.0)):
        if dst < n:
            x[dst] = scale * x[src]  # duplicates (and a rescaled copy): cosine ties
    return x


def _n_boundary_ties(x: np.ndarray, k: int) -> int:
    """Rows whose k-th and (k+1)-th scores (diagonal 0) are equal: the tie rule decides."""
    xn = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    s = xn @ xn.T
    np.fill_diagonal(s, 0.0)
    s = -np.sort(-s, axis=1)
    return int(np.sum(s[:, k - 1] == s[:, k]))


def _dense_item_ref(x: np.ndarray, k: int):
    # norms in float64, rows divided in float32: the documented normalisation
    norms = np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=1)).astype(np.float32)
    xn = x / norms[:, None]
    s = xn @ xn.T
    np.fill_diagonal(s, 0.0)
    return _finish_ref(_dense_topk(s, k), x.shape[0])


@pytest.mark.parametrize("k", [1, 4])
def test_item_knn_matches_dense_reference_and_is_block_invariant(k):
    x = _features_with_ties()
    n = x.shape[0]
    assert _n_boundary_ties(x, k) > 0
    ref_s, ref_r = _dense_item_ref(x, k)
    for block in (3, 7, n, 2048):
        s, r = knn.item_knn(x, k, block=block)
        assert s.dtype == np.int32 and r.dtype == np.int32
        np.testing.assert_array_equal(s, ref_s, err_msg=f"block={block}")
        np.testing.assert_array_equal(r, ref_r, err_msg=f"block={block}")


def test_item_knn_structure():
    x = _features_with_ties()
    n, k = x.shape[0], 3
    s, r = knn.item_knn(x, k, block=4)
    pairs = set(zip(s.tolist(), r.tolist()))
    assert len(pairs) == s.size  # deduplicated
    assert all((j, i) in pairs for i, j in pairs)  # symmetric
    assert all((i, i) in pairs for i in range(n))  # self loops
    key = r.astype(np.int64) * n + s
    assert np.all(np.diff(key) > 0)  # sorted by (receiver, sender)
    # every node keeps at least its k picks (out-degree before symmetrisation)
    indeg = np.bincount(r, minlength=n)
    assert indeg.min() >= k  # k picks (self may be one of them) + the self loop, deduped


def test_item_knn_ties_pick_lower_index():
    # rows 1..4 are identical, row 0 differs: row 0's single neighbour must be row 1.
    x = np.array([[1.0, 0.2], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    s, r = knn.item_knn(x, 1, block=2)
    pairs = set(zip(s.tolist(), r.tolist()))
    assert (1, 0) in pairs and (2, 0) not in pairs  # edge 1 -> 0 from 0's pick, symmetrised
    # row 2's tie among 1, 3, 4 (sim 1) resolves to 1
    assert (1, 2) in pairs and (3, 2) not in pairs and (4, 2) not in pairs


def test_item_knn_k_at_least_n():
    x = _features_with_ties(n=6)
    s, r = knn.item_knn(x, 50)
    assert s.size == 36  # complete graph with self loops


def test_item_knn_rejects_nonfinite():
    x = _features_with_ties()
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn.item_knn(x, 3)


def test_user_knn_from_features_is_item_rule():
    x = _features_with_ties(n=11, d=4, seed=3)
    for a, b in zip(knn.user_knn_from_features(x, 3, block=4), _dense_item_ref(x, 3)):
        np.testing.assert_array_equal(a, b)


def test_user_knn_from_interactions_matches_dense_reference():
    rng = np.random.default_rng(1)
    n_users, n_items, k = 13, 9, 3
    users = rng.integers(0, n_users - 1, size=40)  # the last user has no interactions
    items = rng.integers(0, n_items, size=40)
    users = np.concatenate([users, users[:5]])  # repeated pairs count once
    items = np.concatenate([items, items[:5]])
    dense = np.zeros((n_users, n_items))
    dense[users, items] = 1.0
    counts = dense @ dense.T
    np.fill_diagonal(counts, 0.0)
    ref_s, ref_r = _finish_ref(_dense_topk(counts, k, positive_only=True), n_users)
    for block in (1, 3, 7, n_users, 2048):
        s, r = knn.user_knn_from_interactions(users, items, n_users, n_items, k, block=block)
        np.testing.assert_array_equal(s, ref_s, err_msg=f"block={block}")
        np.testing.assert_array_equal(r, ref_r, err_msg=f"block={block}")
    # the cold user only has its self loop
    assert set(s[r == n_users - 1].tolist()) == {n_users - 1}


def test_cached_graph_hit_and_key_change(tmp_path):
    x = _features_with_ties()
    calls = []

    def build(feats, k):
        def builder():
            calls.append(k)
            return knn.item_knn(feats, k, block=5)

        return builder

    parts = {"kind": "item_knn", "features": x, "k": 4}
    s1, r1 = knn.cached_graph(tmp_path, parts, build(x, 4))
    s2, r2 = knn.cached_graph(tmp_path, dict(parts), build(x, 4))
    assert calls == [4]  # second call is a cache hit
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(r1, r2)
    assert s2.dtype == np.int32 and r2.dtype == np.int32
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".npz") and not files[0].startswith(".tmp")

    x2 = x.copy()
    x2[0, 0] += 1e-3
    assert knn.graph_key({**parts, "features": x2}) != knn.graph_key(parts)
    assert knn.graph_key({**parts, "k": 5}) != knn.graph_key(parts)
    assert knn.graph_key({**parts, "kind": "user_knn"}) != knn.graph_key(parts)
    assert knn.graph_key({**parts, "features": x.astype(np.float64)}) != knn.graph_key(parts)
    knn.cached_graph(tmp_path, {**parts, "features": x2}, build(x2, 4))
    assert calls == [4, 4]

    # a corrupt entry is rebuilt, not trusted
    (tmp_path / files[0]).write_bytes(b"not an npz")
    s3, _ = knn.cached_graph(tmp_path, parts, build(x, 4))
    assert calls == [4, 4, 4]
    np.testing.assert_array_equal(s3, s1)


def test_array_digest_is_block_independent():
    x = np.random.default_rng(2).normal(size=(37, 3))
    assert knn.array_digest(x, block_rows=5) == knn.array_digest(x, block_rows=1000)


def test_topk_rows_does_not_keep_the_score_slab_alive():
    # cosine_topk keeps one [b, k] result per block; a view into the [b, n] argpartition
    # output would keep that whole int64 buffer alive per block (31 GB at 63K items).
    from recgoat_jax.graphs.knn import topk_rows

    scores = np.random.default_rng(0).permutation(8000).reshape(8, 1000).astype(np.float32)
    top = topk_rows(scores, 3)  # distinct scores: one right answer
    assert top.shape == (8, 3)
    assert top.base is None or top.base.size == top.size
    np.testing.assert_array_equal(np.sort(top, axis=1), np.sort(np.argsort(-scores, axis=1)[:, :3], axis=1))


def test_topk_rows_ties_pick_lower_index():
    # the NumPy rule on exact ties (same cases as knn_xla's test_exact_ties_rule_alone)
    from recgoat_jax.graphs.knn import topk_rows

    s = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 5.0, 0.0, 0.0],
                  [4.0, -0.0, 0.0, 0.0, 4.0]], np.float32)  # -0.0 == 0.0: one tie group
    np.testing.assert_array_equal(np.sort(topk_rows(s, 2), axis=1), [[1, 2], [0, 2], [0, 4]])
    np.testing.assert_array_equal(np.sort(topk_rows(s, 4), axis=1),
                                  [[1, 2, 3, 4], [0, 1, 2, 3], [0, 1, 2, 4]])


def test_keep_top_k_sparsifies_rows_off_the_diagonal():
    # the sparsified similarity of the memory-based models: each row's k largest
    # off-diagonal entries, diagonal 0; ties to the lower column; k <= 0 or >= n - 1: all
    from recgoat_jax.graphs.knn import keep_top_k

    s = np.array([[9.0, 1.0, 3.0, 3.0], [2.0, 9.0, 1.0, 0.5], [4.0, 4.0, 9.0, 4.0],
                  [0.0, 1.0, 2.0, 9.0]])
    np.testing.assert_array_equal(keep_top_k(s, 1), [[0, 0, 3, 0], [2, 0, 0, 0], [4, 0, 0, 0],
                                                     [0, 0, 2, 0]])
    np.testing.assert_array_equal(keep_top_k(s, 2), [[0, 0, 3, 3], [2, 0, 1, 0], [4, 4, 0, 0],
                                                     [0, 1, 2, 0]])
    every = s - np.diag(np.diag(s))
    for k in (0, 3, 10):
        np.testing.assert_array_equal(keep_top_k(s, k), every)
    assert s[0, 0] == 9.0  # the input is not changed
