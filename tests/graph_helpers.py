"""Shared by the graph model tests (import, not conftest): a small random train graph."""

import jax.numpy as jnp
import numpy as np

from recgoat_jax.data.dataset import CSR
from recgoat_jax.graphs.bipartite import normalized_adjacency


def small_graph(seed=0, n_users=12, n_items=9):
    """(train CSR, normalised adjacency as jnp arrays): each user has 3 random items."""
    rng = np.random.default_rng(seed)
    pairs = {(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 3, replace=False)}
    u, i = np.array(sorted(pairs)).T
    train = CSR.from_pairs(u, i, n_users)
    adj = normalized_adjacency(train, n_users, n_items)
    return train, {k: tuple(jnp.asarray(a) for a in v) for k, v in adj.items()}


def exact_cosine_features(n, d=8, seed=0):
    """[n, d] float32 integer features whose every cosine is exact in float32 on any CPU.

    Each row's squared norm is 1, 4, 16 or 64 (norm a power of two, entries in -3..3), so
    knn's unit rows hold multiples of 1/8 exactly and every cosine is a multiple of 1/64
    with |numerator| <= 64 * d: exact whatever order, blocking or FMA use a BLAS / XLA
    kernel sums the products in. Equal cosines therefore tie EXACTLY (two columns of one
    score row may not come out equal otherwise: a kernel may round one column's dot
    product differently from another's), and a copy scaled by an integer normalises to
    the very same unit row. With values on a 1/64 grid there are many such ties."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        cand = rng.integers(-3, 4, size=(256, d))
        sq = (cand ** 2).sum(axis=1)
        rows += list(cand[np.isin(sq, (1, 4, 16, 64))])
    return np.array(rows[:n], np.float32)
