"""kNN graph inputs (item-item per modality, user-user), built once and cached on disk."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.graphs import knn


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
