"""The device-resident model inputs a model declares in `needs` (model/base.py), built
once per run from a Dataset, beside the graph code they come from.

One builder per input name, all module-level (no import inside a function):
  adjacency      normalised user-item CSR pair (graphs/bipartite.py)
  ui_edges       user-item graph over U + I nodes as GAT edges (RecGOAT ui_encoder=gat)
  ui_edge_list   train edges in "ui" CSR order (FREEDOM's edge pruning)
  mm_adj         FREEDOM's frozen item-item graph (graphs/mm_adj.py)
  item_knn       {modality: (senders, receivers)} item-item kNN (graphs/knn.py, cached)
  user_knn       (senders, receivers) user-user kNN (graphs/knn.py, cached)
  user_knn_rows  [U, k] each user's nearest other users by user features (cached)
  item_features  {modality: [I, D_m]}; user_features [U, D_u]
  item_knn_scores  [U, I] item kNN scores R S^T (model.k; graphs/similarity.py)
  blend_scores   {"items", "users"}: [U, I] item kNN (model.k) and user-feature user kNN
                 (model.user_k) scores, each min-max scaled per user (the blend's parts)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax.numpy as jnp
import numpy as np

from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.graphs import knn, mm_adj, similarity
from recgoat_jax.graphs.bipartite import edge_list, normalized_adjacency
from recgoat_jax.model.base import Shapes


def shapes_of(dataset: Dataset) -> Shapes:
    """Shapes.of(dataset) (model/base.py), under its former name for callers outside the
    package."""
    return Shapes.of(dataset)


def _edges(pair) -> tuple:
    s, r = pair
    return (jnp.asarray(s, jnp.int32), jnp.asarray(r, jnp.int32))


def adjacency(dataset: Dataset, cfg: Config, cache_dir: str | None) -> dict:
    adj = normalized_adjacency(dataset.train, dataset.n_users, dataset.n_items)
    return {k: tuple(jnp.asarray(a) for a in v) for k, v in adj.items()}


def ui_edges(dataset: Dataset, cfg: Config | None = None, cache_dir: str | None = None):
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


def ui_edge_list(dataset: Dataset, cfg: Config, cache_dir: str | None) -> dict:
    return {k: jnp.asarray(v) for k, v in
            edge_list(dataset.train, dataset.n_users, dataset.n_items).items()}


def item_features(dataset: Dataset, cfg: Config, cache_dir: str | None) -> dict:
    return {m: jnp.asarray(v, jnp.float32) for m, v in dataset.item_features.items()}


def user_features(dataset: Dataset, cfg: Config, cache_dir: str | None):
    return jnp.asarray(dataset.user_features, jnp.float32)


def item_knn(dataset: Dataset, cfg: Config, cache_dir: str | None) -> dict:
    """{modality: (senders, receivers)} of the item-item kNN graph (model.knn.k).
    The cache key leaves out model.knn.backend: the backends build the same graph up to
    near-tied scores a few float32 ulps apart (graphs/knn.py), so either's entry serves."""
    k, backend, out = cfg.model.knn.k, cfg.model.knn.backend, {}
    for name, feats in dataset.item_features.items():
        pair = knn.cached_graph(
            cache_dir, {"kind": "item_knn", "features": np.asarray(feats), "k": k},
            lambda f=feats: knn.item_knn(np.asarray(f, np.float32), k, backend=backend))
        out[name] = _edges(pair)
    return out


def user_knn(dataset: Dataset, cfg: Config, cache_dir: str | None):
    """(senders, receivers) of the user-user kNN graph (model.knn.user_k): from the user
    features when the dataset has them, else from co-interactions."""
    k = cfg.model.knn.user_k
    if dataset.user_features is not None:
        feats = dataset.user_features
        pair = knn.cached_graph(
            cache_dir, {"kind": "user_knn_features", "features": np.asarray(feats), "k": k},
            lambda: knn.user_knn_from_features(np.asarray(feats, np.float32), k,
                                               backend=cfg.model.knn.backend))
    else:
        users, items = dataset.train.to_pairs()
        pair = knn.cached_graph(
            cache_dir, {"kind": "user_knn_interactions", "users": users, "items": items,
                        "n_items": dataset.n_items, "k": k},
            lambda: knn.user_knn_from_interactions(users, items, dataset.n_users,
                                                   dataset.n_items, k))
    return _edges(pair)


def user_knn_rows(dataset: Dataset, cfg: Config, cache_dir: str | None):
    """[n_users, k'] int32: each user's k' = min(model.knn.user_k, n_users) nearest other
    users by cosine of the user features (knn.cosine_topk: self excluded, ties to the
    lower index; order within a row unspecified). RecGOAT's collaborative user branch."""
    k = cfg.model.knn.user_k
    feats = np.asarray(dataset.user_features, np.float32)
    n = feats.shape[0]

    def build():
        nbr = knn.cosine_topk(feats, k, backend=cfg.model.knn.backend)
        return np.repeat(np.arange(n), nbr.shape[1]), nbr.reshape(-1)

    _, r = knn.cached_graph(cache_dir, {"kind": "user_knn_rows", "features": feats, "k": k},
                            build)
    return jnp.asarray(r.reshape(n, -1))


def mm_adj_input(dataset: Dataset, cfg: Config, cache_dir: str | None) -> dict:
    """FREEDOM's frozen item-item graph from the raw features (graphs/mm_adj.py) ->
    {"fwd": (data, indices, indptr) of mm_adj [I, I] CSR, "bwd": the same for mm_adj^T}.
    The per-modality neighbour lists are cached (values follow from them)."""
    m = cfg.model
    neighbours = {}
    for name, feats in dataset.item_features.items():
        neighbours[name] = knn.cached_graph(
            cache_dir, {"kind": "freedom_knn_with_self", "features": np.asarray(feats),
                        "k": m.knn.k},
            lambda f=feats: mm_adj.knn_neighbours(np.asarray(f, np.float32), m.knn.k,
                                                  backend=m.knn.backend))
    adj = mm_adj.mm_adjacency(neighbours, dataset.n_items, m.mm_image_weight)
    return {k: tuple(jnp.asarray(a) for a in v) for k, v in adj.items()}


def item_knn_scores(dataset: Dataset, cfg: Config, cache_dir: str | None):
    """[n_users, n_items] float32: item kNN scores (similarity.item_knn_scores, model.k)."""
    r = similarity.interaction_matrix(dataset.train, dataset.n_items)
    return jnp.asarray(similarity.item_knn_scores(r, cfg.model.k), jnp.float32)


def blend_scores(dataset: Dataset, cfg: Config, cache_dir: str | None) -> dict:
    """{"items": minmax_rows(item kNN scores, model.k), "users": minmax_rows(user kNN
    scores over the user features, model.user_k)}, each [n_users, n_items] float32
    (scaled in float64, then cast)."""
    r = similarity.interaction_matrix(dataset.train, dataset.n_items)
    items = similarity.minmax_rows(similarity.item_knn_scores(r, cfg.model.k))
    users = similarity.minmax_rows(
        similarity.user_knn_scores(r, dataset.user_features, cfg.model.user_k))
    return {"items": jnp.asarray(items, jnp.float32), "users": jnp.asarray(users, jnp.float32)}


BUILDERS: dict[str, Callable] = {
    "adjacency": adjacency,
    "ui_edges": ui_edges,
    "ui_edge_list": ui_edge_list,
    "mm_adj": mm_adj_input,
    "item_features": item_features,
    "user_features": user_features,
    "item_knn": item_knn,
    "user_knn": user_knn,
    "user_knn_rows": user_knn_rows,
    "item_knn_scores": item_knn_scores,
    "blend_scores": blend_scores,
}


def build_inputs(needs, dataset: Dataset, cfg: Config, cache_dir: str | None = None) -> dict:
    """needs: names from BUILDERS. Returns {name: arrays} on the default device."""
    unknown = [n for n in needs if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown model input(s) {unknown}; expected among {sorted(BUILDERS)}")
    return {n: BUILDERS[n](dataset, cfg, cache_dir) for n in needs}


def features_bf16(inputs: dict) -> dict:
    """train.mixed_precision: item/user features stored once in bf16 (bf16 projections)."""
    out = dict(inputs)
    if "item_features" in out:
        out["item_features"] = {m: v.astype(jnp.bfloat16) for m, v in out["item_features"].items()}
    if "user_features" in out:
        out["user_features"] = out["user_features"].astype(jnp.bfloat16)
    return out


def model_inputs(model, dataset: Dataset, cfg: Config) -> dict:
    """What training, evaluation and `recommend` feed `model`: build_inputs of its needs
    (graph caches under <data.root>/.cache), bf16 features under train.mixed_precision."""
    cache = str(Path(cfg.data.root) / ".cache")
    inputs = build_inputs(model.needs, dataset, cfg, cache_dir=cache)
    return features_bf16(inputs) if cfg.train.mixed_precision else inputs
