"""The XLA kNN backend (graphs/knn_xla.py) picks the same neighbours as the NumPy one."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.config import make_config
from recgoat_jax.config_checks import KNN_BACKENDS
from recgoat_jax.graphs import inputs, knn, knn_xla

from graph_helpers import exact_cosine_features


def _sets(nbr: np.ndarray) -> np.ndarray:
    return np.sort(nbr, axis=1)


def _features(n: int = 41, d: int = 6, seed: int = 0, ties: bool = False) -> np.ndarray:
    """ties False: generic float rows (no near ties at the k-th place, checked by
    _min_boundary_gap). ties True: integer rows with power-of-two norms
    (graph_helpers.exact_cosine_features), so every cosine is exact in float32 and equal
    cosines tie for NumPy's BLAS and XLA alike, on any CPU; plus duplicates, a rescaled
    copy and a zero row."""
    if not ties:
        return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    x = exact_cosine_features(n, d, seed)
    x[[5, 9, 30]] = x[0]  # four identical rows: cosine ties at 1
    x[12] = 3.0 * x[3]  # a rescaled copy
    x[[20, 21, 22]] = x[7]
    x[33] = 0.0  # a zero row: scores 0 against every row, all tied
    return x


def _boundary_gaps(x: np.ndarray, k: int, keep_self: bool) -> np.ndarray:
    """Per row, k-th minus (k+1)-th largest cosine (float64; the diagonal 0 unless keep_self)."""
    x = x.astype(np.float64)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = xn @ xn.T
    if not keep_self:
        np.fill_diagonal(s, 0.0)
    s = -np.sort(-s, axis=1)
    return s[:, k - 1] - s[:, k]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("keep_self", [False, True])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_xla_matches_numpy(ties, keep_self, k):
    x = _features(ties=ties)
    gaps = _boundary_gaps(x, k, keep_self)
    if ties:
        assert np.sum(gaps == 0) > 0  # exact ties at the k-th place: the rule decides
    else:
        assert gaps.min() > 1e-5  # no kernel's float32 rounding can reorder the k-th place
    ref = _sets(knn.cosine_topk(x, k, block=2048, keep_self=keep_self, backend="numpy"))
    for block in (4, 16, 41, 2048):  # 41 % 4 and 41 % 16 != 0: the shifted last block
        got = knn.cosine_topk(x, k, block=block, keep_self=keep_self, backend="xla")
        assert got.shape == (41, k)
        np.testing.assert_array_equal(_sets(got), ref, err_msg=f"block={block}")


def test_xla_item_knn_graph_equals_numpy():
    x = _features(ties=True)
    for a, b in zip(knn.item_knn(x, 4, block=16, backend="xla"),
                    knn.item_knn(x, 4, block=16, backend="numpy")):
        np.testing.assert_array_equal(a, b)


def test_xla_hand_computed_ties():
    # unit rows a=(1,0), b=(0.6,0.8), then two copies of a, then -a.
    x = np.array([[1, 0], [0.6, 0.8], [1, 0], [1, 0], [-1, 0]], np.float32)
    got = knn.cosine_topk(x, 1, block=2, backend="xla").reshape(-1)
    # row 0: rows 2, 3 score 1 (tie: 2); row 1: 0, 2, 3 score 0.6 (0); row 2: 0, 3 (0);
    # row 3: 0, 2 (0); row 4: its diagonal 0 beats -1 and -0.6 (self, the released rule)
    np.testing.assert_array_equal(got, [2, 0, 0, 0, 4])
    got = _sets(knn.cosine_topk(x, 2, block=3, keep_self=True, backend="xla"))
    # self kept (score 1): rows 0, 2, 3 tie among 0, 2, 3 -> {0, 2}; row 1 {1, 0}; row 4 {4, 1}
    np.testing.assert_array_equal(got, [[0, 2], [0, 1], [0, 2], [0, 2], [1, 4]])


def test_xla_k_at_least_n():
    x = _features(n=6)
    got = knn.cosine_topk(x, 50, block=4, backend="xla")
    np.testing.assert_array_equal(_sets(got), np.tile(np.arange(6), (6, 1)))


def test_backend_validation():
    assert knn.resolve_backend("numpy", 10**6, 4096) == "numpy"
    assert knn.resolve_backend("xla", 10, 2) == "xla"
    big = knn.resolve_backend("auto", 63_001, 4096)
    assert big == "xla"  # every platform: CPU by the measured threshold, GPU/TPU always
    small = knn.resolve_backend("auto", 100, 8)
    assert small == ("numpy" if jax.default_backend() == "cpu" else "xla")
    with pytest.raises(ValueError, match="knn backend"):
        knn.cosine_topk(_features(n=5), 2, backend="gpu")


def test_exact_ties_rule_alone():
    # the tied-block pass, whatever lax.top_k's own tie order: > t all, == t lowest index
    s = jnp.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 5.0, 0.0, 0.0]], jnp.float32)
    got = np.sort(np.asarray(knn_xla._exact_ties(s, jnp.array([[3.0], [0.0]]), 2)), axis=1)
    np.testing.assert_array_equal(got, [[1, 2], [0, 2]])
    got = np.sort(np.asarray(knn_xla._exact_ties(s, jnp.array([[2.0], [0.0]]), 4)), axis=1)
    np.testing.assert_array_equal(got, [[1, 2, 3, 4], [0, 1, 2, 3]])


def test_config_choices_are_the_backends():
    assert KNN_BACKENDS == knn.KNN_BACKENDS
    for model in ("recgoat", "freedom"):  # the models that build kNN graphs
        cfg = make_config(overrides=[f"model.name={model}", "model.knn.backend=xla"])
        assert cfg.model.knn.backend == "xla"


def test_item_knn_input_cache_ignores_the_backend(tmp_path):
    # the graph is the same, so is its cache entry: a numpy-built graph serves an xla run
    ds = SimpleNamespace(item_features={"text": _features(ties=True)})
    cfgs = {b: make_config(overrides=["model.name=recgoat", f"model.knn.backend={b}",
                                      "model.knn.k=3"])
            for b in ("numpy", "xla")}
    first = inputs.item_knn(ds, cfgs["numpy"], str(tmp_path))
    files = sorted(tmp_path.iterdir())
    second = inputs.item_knn(ds, cfgs["xla"], str(tmp_path))
    assert sorted(tmp_path.iterdir()) == files and len(files) == 1
    uncached = inputs.item_knn(ds, cfgs["xla"], None)
    for g in (second, uncached):
        for a, b in zip(first["text"], g["text"]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
