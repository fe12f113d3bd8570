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
