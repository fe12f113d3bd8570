"""Memory-based recommenders: item kNN and its blend with a user-text user kNN.

Fitted models (model/base.py FittedModel): nothing learned by gradient. Their score
matrices are model inputs, built once per run from the train split by graphs/inputs.py
(graphs/similarity.py has the math); `fit` is one pass over them (the blend picks its
weight on VALID with the evaluator) and train/fit.py evaluates the result as any model.
`embed` gives user_emb = scores [n_users, n_items] and item_emb = the identity
[n_items, n_items], so the evaluator's inner product is the score itself (one product
by 1.0 per entry: exact) and ranking, masking and ties are the evaluator's.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError, DataError
from recgoat_jax.model.base import Shapes


def score_embeddings(scores, n_items: int):
    """scores [n_users, n_items] -> (user_emb = scores, item_emb = I [n_items, n_items])."""
    return jnp.asarray(scores, jnp.float32), jnp.eye(n_items, dtype=jnp.float32)


@dataclasses.dataclass(frozen=True)
class ItemKNN:
    """score(u, i) = sum over j in train(u) of S[i, j]: inputs["item_knn_scores"]
    (S: the items' cosine, each row's k largest kept, model.k; 0 = all)."""

    n_items: int
    k: int = 0

    needs = ("item_knn_scores",)  # built by graphs/inputs.py (model/base.py)
    pre_epoch = None
    diagnostics = None

    def fit(self, inputs, evaluator) -> tuple[dict, dict]:
        return {}, {"k": self.k}  # the scores are the input itself

    def embed(self, params, inputs):
        return score_embeddings(inputs["item_knn_scores"], self.n_items)


@dataclasses.dataclass(frozen=True)
class Blend:
    """items + w * users, inputs["blend_scores"]: item kNN and user-feature user kNN
    scores, each min-max scaled per user; w from `weights` with the best VALID
    `metric` (ties: the smaller w). params: {"weight": w}."""

    n_items: int
    k: int = 0
    user_k: int = 20
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    metric: str = "recall@20"

    needs = ("blend_scores",)
    pre_epoch = None
    diagnostics = None

    def fit(self, inputs, evaluator) -> tuple[dict, dict]:
        """-> ({"weight": w}, {"weight": w, "valid": {str(w): valid metric}, ...})."""
        valid = {w: evaluator.evaluate(*self.embed({"weight": w}, inputs), "valid")[self.metric]
                 for w in self.weights}
        best = max(self.weights, key=lambda w: (valid[w], -w))
        return {"weight": jnp.float32(best)}, {
            "weight": best, "metric": self.metric, "k": self.k, "user_k": self.user_k,
            "valid": {str(w): v for w, v in valid.items()}}

    def embed(self, params, inputs):
        parts = inputs["blend_scores"]
        return score_embeddings(parts["items"] + params["weight"] * parts["users"],
                                self.n_items)


def build_itemknn(cfg: Config, shapes: Shapes) -> ItemKNN:
    """cfg.model: model/memory_config.py ItemKNNConfig."""
    return ItemKNN(shapes.n_items, cfg.model.k)


def build_blend(cfg: Config, shapes: Shapes) -> Blend:
    """cfg.model: model/memory_config.py BlendConfig; w is chosen on cfg.eval.metric."""
    m = cfg.model
    if not m.weights:
        raise ConfigError("config key 'model.weights': expected at least one weight, got []")
    if shapes.user_feature_dim is None:
        off = "" if cfg.data.user_features else " (data.user_features is false)"
        raise DataError(f"model blend needs user features: no user_feat.npy ([n_users, d] "
                        f"float, one row per user; `recgoat features` writes it) was loaded "
                        f"for dataset {shapes.dataset or cfg.data.dataset!r}{off}")
    return Blend(shapes.n_items, m.k, m.user_k, tuple(m.weights), cfg.eval.metric)
