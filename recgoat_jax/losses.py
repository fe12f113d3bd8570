"""Loss pieces shared by all models: BPR, L2 on ego embeddings, row normalisation, and
the weighted sum a model's loss is composed by. (InfoNCE, a tiled kernel of its own, is
recgoat_jax/infonce.py.)

All take an optional `weight: [B]` (1 for real examples, 0 for padding) so that a
padded last batch does not change the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_mean(x: jax.Array, weight: jax.Array | None) -> jax.Array:
    """mean of x [B] over the rows with weight > 0 (sum(x w) / max(sum(w), 1)); plain
    mean without weight."""
    if weight is None:
        return jnp.mean(x)
    return jnp.sum(x * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def bpr(pos: jax.Array, neg: jax.Array, weight: jax.Array | None = None) -> jax.Array:
    """mean -log sigmoid(pos - neg); pos, neg: [B]."""
    return weighted_mean(-jax.nn.log_sigmoid(pos - neg), weight)


def emb_l2(*embs: jax.Array, weight: jax.Array | None = None, mode: str = "mmrec") -> jax.Array:
    """Regulariser on the batch's ego embeddings, each [B, d].

    mode "mmrec" (MMRec's EmbLoss): sum_k ||E_k||_F / B  (Frobenius norm, not squared).
    mode "squared" (RecGOAT, docs/method.md): mean_b sum_k ||E_k[b]||^2.
    """
    if weight is None:
        weight = jnp.ones(embs[0].shape[0], embs[0].dtype)
    n = jnp.maximum(jnp.sum(weight), 1.0)
    if mode == "mmrec":
        return sum(jnp.sqrt(jnp.sum(jnp.square(e) * weight[:, None]) + 1e-24) for e in embs) / n
    if mode == "squared":
        return sum(jnp.sum(jnp.square(e) * weight[:, None]) for e in embs) / n
    raise ValueError(f"unknown reg mode {mode!r}; expected mmrec or squared")


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), eps * eps))


def weighted_sum(terms) -> tuple[jax.Array, dict]:
    """The one place a model's loss is composed from named terms.

    terms: sequence of (name, weight, value) -> (sum_k weight_k * value_k in the given
    order, {name: unweighted value}), the second being what the trainer logs as
    train/<name>.
    """
    total = None
    for _, weight, value in terms:
        t = weight * value
        total = t if total is None else total + t
    return total, {name: value for name, _, value in terms}
