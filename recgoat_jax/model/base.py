"""What the trainer and evaluator expect of a model (pure functions over pytrees).

Every model (MF, LightGCN, FREEDOM, RecGOAT) is a frozen dataclass built once by its
module's `build(cfg, shapes: Shapes)` (listed in model/configs.py), holding only static
choices; its params are a pytree returned by `init` and passed to every function.

inputs: a dict of device arrays built once by graphs/inputs.py from the model's `needs`
  ("adjacency": (rows, cols, vals) of the normalised user-item graph; "item_features":
  {modality: [n_items, d_m]}; "item_knn": {modality: (senders, receivers)};
  "user_features": [n_users, d_u]; "user_knn": (senders, receivers);
  "ui_edge_list": {"users", "items", "weight", "to_iu": [E]} the train edges in "ui" CSR
  order (graphs/bipartite.py edge_list); "mm_adj": {"fwd": [n_items, n_items] CSR
  (data, indices, indptr), "bwd": its transpose} FREEDOM's frozen item-item graph).
batch: a recgoat_jax.batch.Batch: users, pos, neg [B] int32, weight [B] float32 (0 = padding).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import jax
import jax.numpy as jnp

from recgoat_jax.batch import Batch

Params = Any
Inputs = dict


@dataclasses.dataclass(frozen=True)
class Shapes:
    """What a model's build(cfg, shapes) may know of its dataset: sizes, not data
    (`Shapes.of(dataset)`).

    item_feature_dims: {modality: D_m}, the item feature widths in the dataset's order;
    user_feature_dim: D_u, None without user features; user_feature_source: where the
    user features came from (Dataset.user_feature_source: "user_text",
    "template_profile", "llm_profile"), None when unknown or absent; dataset: its name
    (for error messages).
    """

    n_users: int
    n_items: int
    item_feature_dims: Mapping[str, int] = dataclasses.field(default_factory=dict)
    user_feature_dim: int | None = None
    user_feature_source: str | None = None
    dataset: str = ""

    @classmethod
    def of(cls, dataset) -> Shapes:
        """The shapes of anything with n_users, n_items, item_features {m: [I, D_m]},
        user_features [U, D_u] or None and user_feature_source (data/dataset.py Dataset;
        read by attribute, so the model floor does not import data/)."""
        users = dataset.user_features
        return cls(n_users=int(dataset.n_users), n_items=int(dataset.n_items),
                   item_feature_dims={m: int(v.shape[1])
                                      for m, v in dataset.item_features.items()},
                   user_feature_dim=None if users is None else int(users.shape[1]),
                   user_feature_source=dataset.user_feature_source,
                   dataset=str(getattr(dataset, "name", "")))


class Model(Protocol):
    needs: tuple[str, ...]

    def init(self, key: jax.Array, inputs: Inputs) -> Params: ...

    def loss(self, params: Params, inputs: Inputs, batch: Batch, key: jax.Array
             ) -> tuple[jax.Array, dict]: ...

    def embed(self, params: Params, inputs: Inputs) -> tuple[jax.Array, jax.Array]:
        """Deterministic (eval-mode) user_emb [n_users, d] and item_emb [n_items, d];
        score(u, i) = user_emb[u] . item_emb[i]."""
        ...

    # Optional hooks: attributes every model has, None when it has no such hook.
    # pre_epoch(inputs, key) -> inputs: called (jitted) once per epoch with the full inputs
    # and key = fold_in(fold_in(dropout_key, epoch), PRE_EPOCH_FOLD); the returned inputs
    # (same pytree structure, shapes and dtypes) feed that epoch's train steps only;
    # evaluation keeps the full inputs. FREEDOM prunes its user-item graph here.
    pre_epoch: Callable[[Inputs, jax.Array], Inputs] | None
    # diagnostics(params, inputs, batch) -> {name: scalar}: called (jitted) at each
    # evaluation, outside the train step, on a fixed probe batch (the first batch of
    # epoch 0); logged in metrics.jsonl under "diagnostics".
    diagnostics: Callable[[Params, Inputs, Batch], dict] | None


class FittedModel(Protocol):
    """A memory-based model (model/memory.py): nothing to learn by gradient. The trainer
    (train/fit.py) calls `fit` once instead of running epochs, then evaluates `embed`
    as for a Model; no optimizer, sampler or checkpoints. A model is fitted iff it has
    a `fit` attribute that is not None (is_fitted)."""

    needs: tuple[str, ...]

    def fit(self, inputs: Inputs, evaluator) -> tuple[Params, dict]:
        """(params, info) from the model's inputs (its `needs`, e.g. score matrices
        graphs/inputs.py builds from the train split) in one pass: params for `embed`;
        info, what the fit chose (e.g. a weight picked on VALID with `evaluator`),
        recorded in results.json under "fit"."""
        ...

    def embed(self, params: Params, inputs: Inputs) -> tuple[jax.Array, jax.Array]:
        """As Model.embed."""
        ...


def is_fitted(model) -> bool:
    """True for a FittedModel (fit in one pass), False for a trained Model."""
    return getattr(model, "fit", None) is not None


def init_embedding(key: jax.Array, n: int, dim: int, init: str) -> jax.Array:
    """[n, dim] table. xavier: U(-b, b), b = sqrt(6 / (n + dim)) as torch's
    xavier_uniform_ (MMRec); normal: N(0, 0.1^2) (RecGOAT, docs/method.md)."""
    if init == "xavier":
        bound = (6.0 / (n + dim)) ** 0.5
        return jax.random.uniform(key, (n, dim), jnp.float32, -bound, bound)
    if init == "normal":
        return 0.1 * jax.random.normal(key, (n, dim), jnp.float32)
    raise ValueError(f"unknown init {init!r}; expected xavier or normal")
