"""Modality-to-ID alignment: OAT (distribution level) and CMCL (instance level).

Two faithful variants of each (see docs/method.md, "Paper vs released code"):

OAT `reference` (released code): a transport plan T [d, d] between embedding DIMENSIONS,
  from an entropic Sinkhorn on C[p, q] = scale * mean_i (z[i, p] - e[i, q])^2, computed
  without gradient; zhat = z (T + Delta) with Delta learnable.  -> ReferenceOAT
OAT `paper`: a differentiable Sinkhorn divergence between the point clouds {zhat_i} and
  {e_i} used as a loss, with zhat = z (I + Delta).  -> PaperOAT, ot_divergence
CMCL `paper` / `reference`: cmcl_paper, cmcl_reference.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from recgoat_jax import compat  # noqa: F401  (before ott: restores moved jax symbols)

import flax.linen as nn
import jax
import jax.numpy as jnp
from ott.geometry import geometry, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import implicit_differentiation, sinkhorn
from ott.tools import sinkhorn_divergence

from recgoat_jax.infonce import info_nce
from recgoat_jax.losses import l2_normalize
from recgoat_jax.model.precision import matmul

_HI = jax.lax.Precision.HIGHEST


# ============================================================ OAT, reference variant


def reference_cost(z: jax.Array, e: jax.Array, scale: float = 100.0) -> jax.Array:
    """C[p, q] = scale * mean_i (z[i, p] - e[i, q])^2.  z, e: [I, d] -> C: [d, d].

    Expanded as scale * (mean z[:, p]^2 + mean e[:, q]^2 - 2 (z^T e)[p, q] / I): one
    [d, I] x [I, d] product, O(d^2) memory (the released code builds [I, d, d]). The
    product runs at full float32 precision because T = exp(-C/eps) with eps = 0.01 and
    scale 100 amplifies any error in C ~10^4-fold; the clamp removes the small negative
    values cancellation can leave.
    """
    n = z.shape[0]
    zz = jnp.mean(jnp.square(z), axis=0)  # [d]
    ee = jnp.mean(jnp.square(e), axis=0)  # [d]
    cross = jnp.matmul(z.T, e, precision=_HI) / n  # [d, d]
    return scale * jnp.maximum(zz[:, None] + ee[None, :] - 2.0 * cross, 0.0)


def naive_reference_cost(z: jax.Array, e: jax.Array, scale: float = 100.0) -> jax.Array:
    """The released code's [I, d, d] form of reference_cost. For tests only (O(I d^2) memory)."""
    return scale * jnp.mean(jnp.square(z[:, :, None] - e[:, None, :]), axis=0)


def reference_plan(
    z: jax.Array, e: jax.Array, scale: float = 100.0, epsilon: float = 0.01, iterations: int = 100
) -> jax.Array:
    """Entropic plan between dimensions. z, e: [I, d] -> T: [d, d], marginals 1/d, mass 1.

    ott-jax Sinkhorn in the log domain (lse_mode) with a fixed absolute epsilon and
    exactly `iterations` iterations (each one updates both potentials, like one pass of
    the released loop), so the plan stays finite where exp(-C/eps) underflows to 0 in
    float32. Everything runs under stop_gradient, as the released code's torch.no_grad.
    """
    z = jax.lax.stop_gradient(z)
    e = jax.lax.stop_gradient(e)
    d = z.shape[1]
    cost = reference_cost(z, e, scale)
    geom = geometry.Geometry(cost_matrix=cost, epsilon=epsilon)
    marg = jnp.full((d,), 1.0 / d, cost.dtype)
    prob = linear_problem.LinearProblem(geom, a=marg, b=marg)
    inner = 10 if iterations % 10 == 0 else 1
    solver = sinkhorn.Sinkhorn(
        lse_mode=True,
        min_iterations=iterations,
        max_iterations=iterations,
        inner_iterations=inner,
        implicit_diff=None,
    )
    return jax.lax.stop_gradient(solver(prob).matrix)


def plan_marginal_error(t: jax.Array) -> jax.Array:
    """Max relative deviation of T's row and column sums from 1/d. t: [d, d] -> scalar."""
    d = t.shape[0]
    err = jnp.maximum(jnp.max(jnp.abs(t.sum(0) - 1.0 / d)), jnp.max(jnp.abs(t.sum(1) - 1.0 / d)))
    return err * d


class ReferenceOAT(nn.Module):
    """Released-code OAT for one modality: zhat = z (T + Delta).

    z, e: [I, d] (modality and ID item embeddings) -> (zhat [I, d], diagnostics) where
    T = reference_plan(z, e) carries no gradient and Delta [d, d] is learnable (Xavier
    uniform). diagnostics (no gradient): plan_mass = sum T (1 when the plan is valid;
    the released code's plan is often numerically 0), norm_zT / norm_zDelta = mean row
    norm of z T and z Delta, i.e. how much of zhat comes from the plan vs the free map;
    plan_marginal_err = plan_marginal_error(T) (0 when Sinkhorn converged in the fixed
    iteration count; with eps 0.01 and 100 iterations it often has not).
    Unused diagnostics cost nothing under jit (dead-code eliminated).
    """

    d: int
    scale: float = 100.0
    epsilon: float = 0.01
    iterations: int = 100
    compute_dtype: Any = None  # bfloat16 (train.mixed_precision): z (T + Delta) in bf16

    @nn.compact
    def __call__(self, z: jax.Array, e: jax.Array):
        delta = self.param("delta", nn.initializers.xavier_uniform(), (self.d, self.d))
        t = reference_plan(z, e, self.scale, self.epsilon, self.iterations)
        zhat = matmul(z, t + delta, self.compute_dtype)
        zs = jax.lax.stop_gradient(z)
        diag = {
            "plan_mass": jnp.sum(t),
            "norm_zT": jnp.mean(jnp.linalg.norm(zs @ t, axis=1)),
            "norm_zDelta": jnp.mean(jnp.linalg.norm(zs @ jax.lax.stop_gradient(delta), axis=1)),
            "plan_marginal_err": plan_marginal_error(t),
        }
        return zhat, diag


# ============================================================ OAT, paper variant


def ot_divergence(
    x: jax.Array,
    y: jax.Array,
    epsilon: float = 0.05,
    tau: float = 1.0,
    weights_x: jax.Array | None = None,
    weights_y: jax.Array | None = None,
    iterations: int = 200,
    threshold: float = 1e-4,
    normalize: bool = True,
    differentiation: str = "auto",
) -> jax.Array:
    """Differentiable Sinkhorn divergence between point clouds x: [n, d] and y: [m, d] -> scalar.

    S(a, b) = OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2 with squared-Euclidean
    cost (ott-jax dense PointCloud; fixed absolute epsilon, because ott's default
    relative epsilon depends on the inputs but is not differentiated).
    normalize: L2-normalise rows first, so costs lie in [0, 4] and epsilon has a fixed
    meaning (0.05 ~ a cosine-similarity resolution of 0.025) whatever the embedding norm.
    tau: 1 = balanced; < 1 = unbalanced with tau_a = tau_b = tau (mass may be created or
      destroyed at a KL price, so outliers need not be transported).
    weights_x [n], weights_y [m]: non-negative point masses (0 = padded row, which then
      receives no gradient); each is normalised to sum 1. Default uniform.
    differentiation: how gradients are formed (ott-jax's Danskin shortcut is WRONG for
      unbalanced problems in ott-jax 0.6, so it is only used when tau == 1):
      "implicit": implicit function theorem at convergence (stops at `threshold` or
        `iterations`); Danskin when balanced, a lineax linear solve otherwise.
      "unroll": exactly `iterations` iterations, backprop through them (exact gradient
        of what was computed, no convergence assumption).
      "auto" (default): implicit when balanced (cheapest), unroll when unbalanced (its
        compile is lighter than the lineax solve; both match finite differences).
    """
    if differentiation == "auto":
        differentiation = "implicit" if tau == 1.0 else "unroll"
    if normalize:
        x = l2_normalize(x)
        y = l2_normalize(y)
    a = _masses(weights_x, x)
    b = _masses(weights_y, y)
    balanced = tau == 1.0
    if differentiation == "implicit":
        kw = dict(
            max_iterations=iterations,
            threshold=threshold,
            use_danskin=balanced,
            implicit_diff=implicit_differentiation.ImplicitDiff(),
        )
    elif differentiation == "unroll":
        kw = dict(
            min_iterations=iterations,
            max_iterations=iterations,
            use_danskin=False,
            implicit_diff=None,
        )
    else:
        raise ValueError(f"differentiation must be 'auto', 'implicit' or 'unroll', got {differentiation!r}")
    kw.update(lse_mode=True, inner_iterations=10 if iterations % 10 == 0 else 1, tau_a=tau, tau_b=tau)
    div, _ = sinkhorn_divergence.sinkhorn_divergence(
        pointcloud.PointCloud, x, y, a=a, b=b, epsilon=epsilon, solve_kwargs=kw
    )
    return div


def _masses(w: jax.Array | None, x: jax.Array) -> jax.Array:
    if w is None:
        return jnp.full((x.shape[0],), 1.0 / x.shape[0], x.dtype)
    w = jnp.asarray(w, x.dtype)
    return w / jnp.maximum(jnp.sum(w), 1e-12)


class PaperOAT(nn.Module):
    """Learned adaptive map for the paper variant: zhat = z (I + Delta). z: [n, d] -> [n, d].

    Delta [d, d] starts at zeros (delta_init="zeros"), so training starts from the raw
    modality embedding and the OT loss (paper_ot_loss) plus the task loss learn the
    adaptation; a Xavier start would apply a random map before any alignment signal.
    delta_init="xavier" matches the reference variant's Delta init.
    """

    d: int
    delta_init: str = "zeros"
    compute_dtype: Any = None  # bfloat16 (train.mixed_precision): z Delta in bf16, f32 out

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        if self.delta_init == "zeros":
            init_fn = nn.initializers.zeros
        elif self.delta_init == "xavier":
            init_fn = nn.initializers.xavier_uniform()
        else:
            raise ValueError(f"PaperOAT delta_init must be 'zeros' or 'xavier', got {self.delta_init!r}")
        delta = self.param("delta", init_fn, (self.d, self.d))
        return z + matmul(z, delta, self.compute_dtype)


def paper_ot_loss(
    zhat: jax.Array,
    e: jax.Array,
    weight: jax.Array | None = None,
    epsilon: float = 0.05,
    tau: float = 1.0,
    iterations: int = 200,
    differentiation: str = "auto",
) -> jax.Array:
    """L_OT for one modality: ot_divergence({zhat_i}, {e_i}) over the batch's items.

    zhat, e: [B, d]; weight: [B] (0 for padding). Gradient flows into both sides; pass
    jax.lax.stop_gradient(e) to move only the modality side.
    """
    return ot_divergence(
        zhat, e, epsilon, tau, weight, weight, iterations=iterations, differentiation=differentiation
    )


# ============================================================ CMCL


def cmcl_paper(
    z_mods: Sequence[jax.Array],
    z_unified: jax.Array,
    e_u: jax.Array,
    z_pos: jax.Array,
    tau: float = 0.2,
    w: float = 0.5,
    weight: jax.Array | None = None,
    *,
    unroll_tiles: bool = False,
) -> jax.Array:
    """Paper CMCL: (1 - w) InfoNCE(e_u, z_pos) + w mean_m InfoNCE(z_m, z_unified).

    z_mods: list of [B, d] modality views of the positive items; z_unified: [B, d] fused
    item vectors of the same items; e_u: [B, d] users; z_pos: [B, d] their positive
    items (usually z_unified itself); weight: [B] (0 = padding); unroll_tiles: the
    InfoNCE tile loops written out (infonce.info_nce's unroll, for cost analysis).
    """
    l_ui = info_nce(e_u, z_pos, tau, weight, unroll=unroll_tiles)
    if not z_mods:
        return l_ui
    l_mod = sum(info_nce(zm, z_unified, tau, weight, unroll=unroll_tiles)
                for zm in z_mods) / len(z_mods)
    return (1.0 - w) * l_ui + w * l_mod


_REFERENCE_PAIRS = (("id", "image"), ("id", "text"), ("image", "text"))


def cmcl_reference(
    views_pos: Mapping[str, jax.Array],
    views_neg: Mapping[str, jax.Array],
    tau: float = 0.2,
    weight: jax.Array | None = None,
    e_u: jax.Array | None = None,
    z_pos: jax.Array | None = None,
    w: float = 0.5,
    *,
    unroll_tiles: bool = False,
) -> jax.Array:
    """Released-code CMCL modality term: mean over present pairs and over {pos, neg} of (1 - InfoNCE(a, b)).

    views_pos / views_neg: name -> [B, d] for the positive / negative items, names among
    "id", "image", "text"; pairs (id, image), (id, text), (image, text) whose two views
    are present. With e_u and z_pos given, returns the released total
    (1 - w) InfoNCE(e_u, z_pos) + w * that term. unroll_tiles: as in cmcl_paper.

    WARNING: this reproduces a probable bug in the released code. Minimising 1 - InfoNCE
    MAXIMISES InfoNCE, i.e. pushes the modality views APART instead of aligning them
    (tests/test_alignment.py shows the distance growing). Use it only to reproduce the
    released numbers; cmcl_paper is the intended loss.
    """
    terms = []
    for views in (views_pos, views_neg):
        for a, b in _REFERENCE_PAIRS:
            if a in views and b in views:
                terms.append(1.0 - info_nce(views[a], views[b], tau, weight,
                                            unroll=unroll_tiles))
    l_mod = sum(terms) / len(terms) if terms else jnp.zeros(())
    if e_u is None:
        return l_mod
    if z_pos is None:
        raise ValueError("cmcl_reference: e_u given without z_pos")
    return (1.0 - w) * info_nce(e_u, z_pos, tau, weight, unroll=unroll_tiles) + w * l_mod


def lemma_bound(z_m: jax.Array, z: jax.Array, cmcl_loss: jax.Array, tau: float, batch: int):
    """Lemma 3.3 diagnostic: (E_i ||z_m,i - z_i||, sqrt(2 tau L + 2 tau log B)).

    z_m, z: [B, d], compared after L2-normalising rows (the space InfoNCE works in);
    cmcl_loss: the InfoNCE value L between them; batch: B. Returns two scalars; the lemma
    claims lhs <= rhs.
    """
    lhs = jnp.mean(jnp.linalg.norm(l2_normalize(z_m) - l2_normalize(z), axis=1))
    rhs = jnp.sqrt(jnp.maximum(2.0 * tau * cmcl_loss + 2.0 * tau * math.log(batch), 0.0))
    return lhs, rhs
