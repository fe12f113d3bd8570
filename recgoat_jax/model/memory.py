"""Memory-based recommenders: item kNN and its blend with a user-text user kNN.

Fitted models (model/base.py FittedModel): no parameters to learn; `fit` builds the
score matrix in one pass from the train split (the blend also picks its weight on VALID
with the evaluator), and train/fit.py evaluates it as any model. Their params are
{"scores": [n_users, n_items] float32}; `embed` gives user_emb = scores and item_emb =
the identity [n_items, n_items], so the evaluator's inner product is the score itself
(exactly: one product by 1.0 per entry) and ranking, masking and ties are the
evaluator's. The math is in model/memory_scores.py.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError, DataError
from recgoat_jax.model import memory_scores as ms


def score_embeddings(scores, n_items: int):
    """scores [n_users, n_items] -> (user_emb = scores, item_emb = I [n_items, n_items])."""
    return jnp.asarray(scores, jnp.float32), jnp.eye(n_items, dtype=jnp.float32)


@dataclasses.dataclass(frozen=True)
class ItemKNN:
    """scores = R @ S^T, S the items' cosine with each row's k largest kept (0: all)."""

    n_items: int
    k: int = 0

    needs = ()  # no device inputs (model/base.py)
    pre_epoch = None
    diagnostics = None

    def fit(self, dataset, evaluator) -> tuple[dict, dict]:
        r = ms.interaction_matrix(dataset.train, dataset.n_items)
        return {"scores": ms.item_knn_scores(r, self.k).astype(np.float32)}, {"k": self.k}

    def embed(self, params, inputs):
        return score_embeddings(params["scores"], self.n_items)


@dataclasses.dataclass(frozen=True)
class Blend:
    """minmax_rows(item kNN) + w * minmax_rows(user kNN on the user features), w from
    `weights` with the best VALID `metric` (ties: the smaller w)."""

    n_items: int
    k: int = 0
    user_k: int = 20
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    metric: str = "recall@20"

    needs = ()
    pre_epoch = None
    diagnostics = None

    def fit(self, dataset, evaluator) -> tuple[dict, dict]:
        """-> ({"scores"}, {"weight": chosen w, "valid": {w: valid metric}, ...})."""
        if dataset.user_features is None:
            raise DataError(f"model blend needs user features: no user_feat.npy ([n_users, d] "
                            f"float, one row per user; `recgoat features` writes it) was "
                            f"loaded for dataset {dataset.name!r}")
        r = ms.interaction_matrix(dataset.train, dataset.n_items)
        items = ms.minmax_rows(ms.item_knn_scores(r, self.k))
        users = ms.minmax_rows(ms.user_knn_scores(r, dataset.user_features, self.user_k))
        valid = {}
        for w in self.weights:
            emb = score_embeddings((items + w * users).astype(np.float32), self.n_items)
            valid[w] = evaluator.evaluate(*emb, "valid")[self.metric]
        best = max(self.weights, key=lambda w: (valid[w], -w))
        info = {"weight": best, "metric": self.metric,
                "valid": {str(w): v for w, v in valid.items()}, "k": self.k,
                "user_k": self.user_k}
        return {"scores": (items + best * users).astype(np.float32)}, info

    def embed(self, params, inputs):
        return score_embeddings(params["scores"], self.n_items)


def build_itemknn(cfg: Config, shapes: dict) -> ItemKNN:
    """cfg.model: model/memory_config.py ItemKNNConfig."""
    return ItemKNN(shapes["n_items"], cfg.model.k)


def build_blend(cfg: Config, shapes: dict) -> Blend:
    """cfg.model: model/memory_config.py BlendConfig; w is chosen on cfg.eval.metric."""
    m = cfg.model
    if not m.weights:
        raise ConfigError("config key 'model.weights': expected at least one weight, got []")
    if shapes.get("user_feature_dim") is None:
        off = "" if cfg.data.user_features else " (data.user_features is false)"
        raise DataError(f"model blend needs user features: no user_feat.npy ([n_users, d] "
                        f"float, one row per user; `recgoat features` writes it) was loaded "
                        f"for dataset {cfg.data.dataset!r}{off}")
    return Blend(shapes["n_items"], m.k, m.user_k, tuple(m.weights), cfg.eval.metric)
