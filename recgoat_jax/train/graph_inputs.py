"""kNN graph inputs (item-item per modality, user-user; FREEDOM's mm_adj), built once and
cached on disk."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.graphs import knn, mm_adj


def _edges(pair) -> tuple:
    s, r = pair
    return (jnp.asarray(s, jnp.int32), jnp.asarray(r, jnp.int32))


def knn_inputs(need: str, dataset: Dataset, cfg: Config, cache_dir: str | None):
    """item_knn -> {modality: (senders, receivers)}; user_knn -> (senders, receivers)."""
    m = cfg.model
    if need == "item_knn":
        out = {}
        for name, feats in dataset.item_features.items():
            pair = knn.cached_graph(
                cache_dir, {"kind": "item_knn", "features": np.asarray(feats), "k": m.knn_k},
                lambda f=feats: knn.item_knn(np.asarray(f, np.float32), m.knn_k))
            out[name] = _edges(pair)
        return out
    if need == "user_knn":
        if dataset.user_features is not None:
            feats = dataset.user_features
            pair = knn.cached_graph(
                cache_dir, {"kind": "user_knn_features", "features": np.asarray(feats),
                            "k": m.user_knn_k},
                lambda: knn.user_knn_from_features(np.asarray(feats, np.float32), m.user_knn_k))
        else:
            users, items = dataset.train.to_pairs()
            pair = knn.cached_graph(
                cache_dir, {"kind": "user_knn_interactions", "users": users, "items": items,
                            "n_items": dataset.n_items, "k": m.user_knn_k},
                lambda: knn.user_knn_from_interactions(users, items, dataset.n_users,
                                                       dataset.n_items, m.user_knn_k))
        return _edges(pair)
    raise ValueError(f"not a kNN input: {need!r}")


def mm_adj_input(dataset: Dataset, cfg: Config, cache_dir: str | None) -> dict:
    """FREEDOM's frozen item-item graph from the raw features (graphs/mm_adj.py) ->
    {"fwd": (data, indices, indptr) of mm_adj [I, I] CSR, "bwd": the same for mm_adj^T}.
    The per-modality neighbour lists are cached (values follow from them)."""
    m = cfg.model
    neighbours = {}
    for name, feats in dataset.item_features.items():
        neighbours[name] = knn.cached_graph(
            cache_dir, {"kind": "freedom_knn_with_self", "features": np.asarray(feats),
                        "k": m.knn_k},
            lambda f=feats: mm_adj.knn_neighbours(np.asarray(f, np.float32), m.knn_k))
    adj = mm_adj.mm_adjacency(neighbours, dataset.n_items, m.mm_image_weight)
    return {k: tuple(jnp.asarray(a) for a in v) for k, v in adj.items()}
