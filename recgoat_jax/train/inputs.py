"""Builds the device-resident inputs a model declares in `needs` (once per run)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.graphs.bipartite import edge_list, normalized_adjacency


def shapes_of(dataset: Dataset, modalities=None) -> dict:
    feats = dict(dataset.item_features)
    return {
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "item_feature_dims": {m: int(v.shape[1]) for m, v in feats.items()},
        "user_feature_dim": None if dataset.user_features is None
        else int(dataset.user_features.shape[1]),
    }


def build_inputs(needs, dataset: Dataset, cfg: Config, cache_dir: str | None = None) -> dict:
    """needs: names from model/base.py. Returns {name: arrays} on the default device."""
    out: dict = {}
    for need in needs:
        if need == "adjacency":
            adj = normalized_adjacency(dataset.train, dataset.n_users, dataset.n_items)
            out[need] = {k: tuple(jnp.asarray(a) for a in v) for k, v in adj.items()}
        elif need == "ui_edges":
            out[need] = ui_edges(dataset)
        elif need == "ui_edge_list":  # FREEDOM's edge pruning
            out[need] = {k: jnp.asarray(v) for k, v in
                         edge_list(dataset.train, dataset.n_users, dataset.n_items).items()}
        elif need == "mm_adj":  # FREEDOM's frozen item-item graph
            from recgoat_jax.train.graph_inputs import mm_adj_input
            out[need] = mm_adj_input(dataset, cfg, cache_dir)
        elif need == "item_features":
            out[need] = {m: jnp.asarray(v, jnp.float32) for m, v in dataset.item_features.items()}
        elif need == "user_features":
            out[need] = jnp.asarray(dataset.user_features, jnp.float32)
        elif need in ("item_knn", "user_knn"):
            from recgoat_jax.train.graph_inputs import knn_inputs
            out[need] = knn_inputs(need, dataset, cfg, cache_dir)
        else:
            raise ValueError(f"unknown model input {need!r}")
    return out


def ui_edges(dataset: Dataset):
    """(senders, receivers) of the user-item graph over U + I nodes, both directions plus
    self loops (what jraph-style GAT needs), sorted by receiver."""
    users, items = dataset.train.to_pairs()
    users = users.astype(np.int64)
    items = items.astype(np.int64) + dataset.n_users
    n = dataset.n_users + dataset.n_items
    loops = np.arange(n, dtype=np.int64)
    s = np.concatenate([users, items, loops])
    r = np.concatenate([items, users, loops])
    order = np.lexsort((s, r))
    return jnp.asarray(s[order], jnp.int32), jnp.asarray(r[order], jnp.int32)
