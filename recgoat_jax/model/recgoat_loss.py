"""RecGOAT's loss as named weighted terms, and its evaluation-time diagnostics.

Every term is a small function term(out, rows, batch) -> scalar of RecGOATNet's output
`out` (recgoat_types.NetOutput), the batch's rows of it (`BatchRows`, gathered ONCE by
`batch_rows` and shared by BPR and CMCL, so their gradients meet before one scatter into
the tables) and the batch (batch.Batch: users, pos, neg [B] int32, weight [B], 0 =
padding); `recgoat.build` picks the terms and their weights once and
`losses.weighted_sum` composes them:

  loss = bpr + l2_weight * reg + cl_weight * cmcl + ot_weight * ot   (model.loss)
  bpr   BPR of e_u . z_i (positive vs negative item)
  reg   RecGOAT's L2 (docs/method.md): mean squared norm of the batch's ego embeddings
  cmcl  cmcl_paper_term or cmcl_reference_term on the first cl_rows(B, model.loss.cl_rows)
        rows (present when model.cmcl != none and model.loss.cl_weight > 0)
  ot    ot_term: the paper OAT's Sinkhorn divergence on the first model.ot.paper.batch_items
        rows (present when model.oat == paper and model.loss.ot_weight > 0)

`diagnostics` (Lemma 3.3 per modality, reference-OAT plan statistics) runs at
evaluation time only, outside the differentiated step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from recgoat_jax import losses
from recgoat_jax.batch import Batch
from recgoat_jax.infonce import info_nce
from recgoat_jax.model import alignment
from recgoat_jax.model.recgoat_types import NetOutput

LEMMA_ROWS = 512  # Lemma 3.3 on this many rows: the lemma holds for any batch, InfoNCE costs B^2


@struct.dataclass
class BatchRows:
    """A batch's rows of the network output (B = batch size, d = model.dim).

    e_u [B, d] = out.e_u[users]; z_pos [B, d] = out.z_items[pos];
    z_neg [B, d] = out.z_items[neg].
    """

    e_u: jax.Array
    z_pos: jax.Array
    z_neg: jax.Array


def cl_rows(batch_size: int, rows: int) -> int:
    """How many leading rows of a batch CMCL uses: `rows` (at most the batch), all when
    rows <= 0. Rows are shuffled, so any prefix is a uniform sample."""
    return batch_size if rows <= 0 else min(rows, batch_size)


def batch_rows(out: NetOutput, batch: Batch) -> BatchRows:
    """The batch's user rows and fused positive / negative item rows of `out`."""
    return BatchRows(e_u=out.e_u[batch.users], z_pos=out.z_items[batch.pos],
                     z_neg=out.z_items[batch.neg])


def bpr_term(out: NetOutput, rows: BatchRows, batch: Batch) -> jax.Array:
    eu, zp, zn = rows.e_u, rows.z_pos, rows.z_neg
    return losses.bpr(jnp.sum(eu * zp, -1), jnp.sum(eu * zn, -1), batch.weight)


def l2_term(out: NetOutput, rows: BatchRows, batch: Batch) -> jax.Array:
    u, p, n, w = batch.users, batch.pos, batch.neg, batch.weight
    return losses.emb_l2(out.user_ego[u], out.item_ego[p], out.item_ego[n],
                         weight=w, mode="squared")


def _cl_slice(rows: BatchRows, batch: Batch, n_rows: int):
    c = cl_rows(batch.pos.shape[0], n_rows)
    p, neg = batch.pos[:c], batch.neg[:c]
    return p, neg, batch.weight[:c], rows.e_u[:c], rows.z_pos[:c]


def cmcl_paper_term(out: NetOutput, rows: BatchRows, batch: Batch, *, modalities, tau: float,
                    w: float, n_rows: int, unroll_tiles: bool = False) -> jax.Array:
    """(1 - w) InfoNCE(e_u, z_pos) + w mean_m InfoNCE(z_m, z_pos) (alignment.cmcl_paper)
    on the first cl_rows(B, n_rows) rows; unroll_tiles: infonce.info_nce's unroll."""
    p, _, wc, eu, zp = _cl_slice(rows, batch, n_rows)
    return alignment.cmcl_paper([out.z[m][p] for m in modalities], zp, eu, zp, tau, w, wc,
                                unroll_tiles=unroll_tiles)


def cmcl_reference_term(out: NetOutput, rows: BatchRows, batch: Batch, *, modalities,
                        tau: float, w: float, n_rows: int,
                        unroll_tiles: bool = False) -> jax.Array:
    """The released code's CMCL over ID and modality views of the positive and negative
    items (alignment.cmcl_reference; its 1 - InfoNCE pushes views apart), on the first
    cl_rows(B, n_rows) rows; unroll_tiles: infonce.info_nce's unroll."""
    p, neg_items, wc, eu, zp = _cl_slice(rows, batch, n_rows)
    pos = {"id": out.e_i[p], **{m: out.z[m][p] for m in modalities}}
    neg = {"id": out.e_i[neg_items], **{m: out.z[m][neg_items] for m in modalities}}
    return alignment.cmcl_reference(pos, neg, tau, wc, e_u=eu, z_pos=zp, w=w,
                                    unroll_tiles=unroll_tiles)


CMCL_TERMS = {"paper": cmcl_paper_term, "reference": cmcl_reference_term}


def ot_term(out: NetOutput, rows: BatchRows, batch: Batch, *, modalities, n_items: int,
            epsilon: float, tau: float, iterations: int) -> jax.Array:
    """mean_m Sinkhorn divergence(zhat_m, stop_gradient(e_i)) over the batch's first
    n_items positive items (alignment.paper_ot_loss): only the modality side moves."""
    k = min(n_items, batch.pos.shape[0])
    items, wk = batch.pos[:k], batch.weight[:k]
    return sum(alignment.paper_ot_loss(out.zhat[m][items],
                                       jax.lax.stop_gradient(out.e_i[items]), wk,
                                       epsilon=epsilon, tau=tau, iterations=iterations)
               for m in modalities) / len(modalities)


def diagnostics(out: NetOutput, batch: Batch, *, modalities, tau: float,
                rows: int = LEMMA_ROWS) -> dict:
    """Evaluation-time diagnostics (no gradient, not part of the step):

    lemma/<m>/lhs, lemma/<m>/rhs: Lemma 3.3, E||z_m - z|| vs sqrt(2 tau L + 2 tau log B)
      between modality m's view and the fused item vector of the batch's first `rows`
      positive items (alignment.lemma_bound; L = their InfoNCE);
    oat/<m>/plan_mass, norm_zT, norm_zDelta, plan_marginal_err: reference OAT's plan
      statistics (alignment.ReferenceOAT), present with model.oat=reference.
    """
    p, w = batch.pos, batch.weight
    k = min(rows, p.shape[0])
    zk, wk = out.z_items[p[:k]], w[:k]
    diag = {}
    for m in modalities:
        zm = out.z[m][p[:k]]
        lhs, rhs = alignment.lemma_bound(zm, zk, info_nce(zm, zk, tau, wk), tau, k)
        diag[f"lemma/{m}/lhs"], diag[f"lemma/{m}/rhs"] = lhs, rhs
    diag.update(out.diag)
    return diag
