"""RecGOAT's loss as named weighted terms, and its evaluation-time diagnostics.

Every term is a small function term(out, batch) -> scalar of RecGOATNet's output `out`
({"user_ego", "item_ego", "e_u", "e_i", "z", "zhat", "z_items", "diag"}) extended by
`with_batch_rows` (the batch's rows "b_e_u", "b_z_pos", "b_z_neg", gathered ONCE and
shared by BPR and CMCL, so their gradients meet before one scatter into the tables) and
the batch ({"users", "pos", "neg": [B] int32, "weight": [B], 0 = padding});
`recgoat.build` picks the terms and their weights once and `losses.weighted_sum`
composes them:

  loss = bpr + reg_weight * reg + lambda_cl * cmcl + lambda_ot * ot
  bpr   BPR of e_u . z_i (positive vs negative item)
  reg   RecGOAT's L2 (docs/method.md): mean squared norm of the batch's ego embeddings
  cmcl  cmcl_paper_term or cmcl_reference_term on the first cl_rows(B, train.cl_rows) rows
        (present when model.cmcl != none and train.lambda_cl > 0)
  ot    ot_term: the paper OAT's Sinkhorn divergence on the first model.ot_batch_items
        rows (present when model.oat == paper and train.lambda_ot > 0)

`diagnostics` (Lemma 3.3 per modality, reference-OAT plan statistics) runs at
evaluation time only, outside the differentiated step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recgoat_jax import losses
from recgoat_jax.model import alignment

LEMMA_ROWS = 512  # Lemma 3.3 on this many rows: the lemma holds for any batch, InfoNCE costs B^2


def cl_rows(batch_size: int, rows: int) -> int:
    """How many leading rows of a batch CMCL uses: `rows` (at most the batch), all when
    rows <= 0. Rows are shuffled, so any prefix is a uniform sample."""
    return batch_size if rows <= 0 else min(rows, batch_size)


def with_batch_rows(out: dict, batch: dict) -> dict:
    """out plus the batch's user rows b_e_u = e_u[users] and fused item rows
    b_z_pos = z_items[pos], b_z_neg = z_items[neg] (each [B, d])."""
    return {**out, "b_e_u": out["e_u"][batch["users"]],
            "b_z_pos": out["z_items"][batch["pos"]], "b_z_neg": out["z_items"][batch["neg"]]}


def bpr_term(out: dict, batch: dict) -> jax.Array:
    eu, zp, zn = out["b_e_u"], out["b_z_pos"], out["b_z_neg"]
    return losses.bpr(jnp.sum(eu * zp, -1), jnp.sum(eu * zn, -1), batch["weight"])


def l2_term(out: dict, batch: dict) -> jax.Array:
    u, p, n, w = batch["users"], batch["pos"], batch["neg"], batch["weight"]
    return losses.emb_l2(out["user_ego"][u], out["item_ego"][p], out["item_ego"][n],
                         weight=w, mode="squared")


def _cl_slice(out: dict, batch: dict, rows: int):
    c = cl_rows(batch["pos"].shape[0], rows)
    p, n = batch["pos"][:c], batch["neg"][:c]
    return p, n, batch["weight"][:c], out["b_e_u"][:c], out["b_z_pos"][:c]


def cmcl_paper_term(out: dict, batch: dict, *, modalities, tau: float, w: float,
                    rows: int) -> jax.Array:
    """(1 - w) InfoNCE(e_u, z_pos) + w mean_m InfoNCE(z_m, z_pos) (alignment.cmcl_paper)."""
    p, _, wc, eu, zp = _cl_slice(out, batch, rows)
    return alignment.cmcl_paper([out["z"][m][p] for m in modalities], zp, eu, zp, tau, w, wc)


def cmcl_reference_term(out: dict, batch: dict, *, modalities, tau: float, w: float,
                        rows: int) -> jax.Array:
    """The released code's CMCL over ID and modality views of the positive and negative
    items (alignment.cmcl_reference; its 1 - InfoNCE pushes views apart)."""
    p, n, wc, eu, zp = _cl_slice(out, batch, rows)
    pos = {"id": out["e_i"][p], **{m: out["z"][m][p] for m in modalities}}
    neg = {"id": out["e_i"][n], **{m: out["z"][m][n] for m in modalities}}
    return alignment.cmcl_reference(pos, neg, tau, wc, e_u=eu, z_pos=zp, w=w)


CMCL_TERMS = {"paper": cmcl_paper_term, "reference": cmcl_reference_term}


def ot_term(out: dict, batch: dict, *, modalities, rows: int, epsilon: float, tau: float,
            iterations: int) -> jax.Array:
    """mean_m Sinkhorn divergence(zhat_m, stop_gradient(e_i)) over the first `rows` positive
    items (alignment.paper_ot_loss): only the modality side moves."""
    k = min(rows, batch["pos"].shape[0])
    items, wk = batch["pos"][:k], batch["weight"][:k]
    return sum(alignment.paper_ot_loss(out["zhat"][m][items],
                                       jax.lax.stop_gradient(out["e_i"][items]), wk,
                                       epsilon=epsilon, tau=tau, iterations=iterations)
               for m in modalities) / len(modalities)


def diagnostics(out: dict, batch: dict, *, modalities, tau: float,
                rows: int = LEMMA_ROWS) -> dict:
    """Evaluation-time diagnostics (no gradient, not part of the step):

    lemma/<m>/lhs, lemma/<m>/rhs: Lemma 3.3, E||z_m - z|| vs sqrt(2 tau L + 2 tau log B)
      between modality m's view and the fused item vector of the batch's first `rows`
      positive items (alignment.lemma_bound; L = their InfoNCE);
    oat/<m>/plan_mass, norm_zT, norm_zDelta, plan_marginal_err: reference OAT's plan
      statistics (alignment.ReferenceOAT), present with model.oat=reference.
    """
    p, w = batch["pos"], batch["weight"]
    k = min(rows, p.shape[0])
    zk, wk = out["z_items"][p[:k]], w[:k]
    diag = {}
    for m in modalities:
        zm = out["z"][m][p[:k]]
        lhs, rhs = alignment.lemma_bound(zm, zk, losses.info_nce(zm, zk, tau, wk), tau, k)
        diag[f"lemma/{m}/lhs"], diag[f"lemma/{m}/rhs"] = lhs, rhs
    diag.update(out["diag"])
    return diag
