"""LightGCN and MF-BPR, the ID-only baselines.

LightGCN: E(l+1) = A_hat E(l) over the bipartite train graph, output = mean of
E(0..L). MF-BPR is the L = 0 case. Loss = BPR + emb_loss_weight * L2 of the batch's
ego embeddings (model.emb_loss_weight; MMRec's EmbLoss by default).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental import sparse as jsparse

from recgoat_jax import losses
from recgoat_jax.batch import Batch
from recgoat_jax.config import Config
from recgoat_jax.model.base import Shapes, init_embedding


def csr_matmul(csr, x: jax.Array, n_rows: int) -> jax.Array:
    """csr (data, indices, indptr) of an [n_rows, x.shape[0]] matrix times x -> [n_rows, d]."""
    data, indices, indptr = csr
    mat = jsparse.BCSR((data.astype(x.dtype), indices, indptr), shape=(n_rows, x.shape[0]))
    return mat @ x


@jax.custom_vjp
def bipartite_propagate(adjacency: dict, e_users: jax.Array, e_items: jax.Array):
    """One LightGCN layer: (R e_items [U, d], R^T e_users [I, d]).

    The backward pass reuses the same two CSR products (d e_items = R^T g_users,
    d e_users = R g_items) instead of differentiating through the sparse kernel.
    """
    n_users, n_items = e_users.shape[0], e_items.shape[0]
    return (csr_matmul(adjacency["ui"], e_items, n_users),
            csr_matmul(adjacency["iu"], e_users, n_items))


def _prop_fwd(adjacency, e_users, e_items):
    return bipartite_propagate(adjacency, e_users, e_items), (adjacency, e_users.shape[0],
                                                               e_items.shape[0])


def no_adjacency_grad(adjacency: dict) -> dict:
    """A graph's cotangent in a custom VJP: zeros for its values, None for its integer
    indices (the graph is an input, never trained)."""
    return jax.tree_util.tree_map(
        lambda a: None if jnp.issubdtype(a.dtype, jnp.integer) else jnp.zeros_like(a), adjacency)


def _prop_bwd(res, g):
    adjacency, n_users, n_items = res
    g_users, g_items = g
    return (no_adjacency_grad(adjacency), csr_matmul(adjacency["ui"], g_items, n_users),
            csr_matmul(adjacency["iu"], g_users, n_items))


bipartite_propagate.defvjp(_prop_fwd, _prop_bwd)


def propagate(adjacency: dict, e_users: jax.Array, e_items: jax.Array, n_layers: int):
    """Layer mean of LightGCN propagation -> (users [U, d], items [I, d])."""
    out_u, out_i, hu, hi = e_users, e_items, e_users, e_items
    for _ in range(n_layers):
        hu, hi = bipartite_propagate(adjacency, hu, hi)
        out_u, out_i = out_u + hu, out_i + hi
    return out_u / (n_layers + 1), out_i / (n_layers + 1)


@dataclasses.dataclass(frozen=True)
class LightGCN:
    n_users: int
    n_items: int
    dim: int = 64
    n_layers: int = 3
    init_name: str = "xavier"
    emb_loss_weight: float = 1e-4  # model.emb_loss_weight
    reg_mode: str = "mmrec"

    pre_epoch = None  # no optional hooks (model/base.py)
    diagnostics = None

    @property
    def needs(self) -> tuple[str, ...]:
        return ("adjacency",) if self.n_layers > 0 else ()

    def init(self, key, inputs):
        ku, ki = jax.random.split(key)
        return {"user": init_embedding(ku, self.n_users, self.dim, self.init_name),
                "item": init_embedding(ki, self.n_items, self.dim, self.init_name)}

    def embed(self, params, inputs):
        """user_emb [U, d], item_emb [I, d]."""
        if self.n_layers == 0:
            return params["user"], params["item"]
        return propagate(inputs["adjacency"], params["user"], params["item"], self.n_layers)

    def loss(self, params, inputs, batch: Batch, key):
        del key  # deterministic model
        user_emb, item_emb = self.embed(params, inputs)
        u, p, n, w = batch.users, batch.pos, batch.neg, batch.weight
        eu = user_emb[u]
        pos = jnp.sum(eu * item_emb[p], axis=-1)
        neg = jnp.sum(eu * item_emb[n], axis=-1)
        reg = losses.emb_l2(params["user"][u], params["item"][p], params["item"][n],
                            weight=w, mode=self.reg_mode)
        return losses.weighted_sum([("bpr", 1.0, losses.bpr(pos, neg, w)),
                                    ("reg", self.emb_loss_weight, reg)])


def MF(n_users: int, n_items: int, dim: int = 64, init_name: str = "xavier",
       emb_loss_weight: float = 1e-4, reg_mode: str = "mmrec") -> LightGCN:
    """MF-BPR: LightGCN with no propagation (score = ego user . ego item)."""
    return LightGCN(n_users, n_items, dim, 0, init_name, emb_loss_weight, reg_mode)


def build(cfg: Config, shapes: Shapes) -> LightGCN:
    """cfg.model: model/lightgcn_config.py LightGCNConfig."""
    return LightGCN(shapes.n_users, shapes.n_items, cfg.model.dim, cfg.model.n_layers,
                    cfg.model.init, cfg.model.emb_loss_weight)


def build_mf(cfg: Config, shapes: Shapes) -> LightGCN:
    """cfg.model: model/lightgcn_config.py MFConfig."""
    return MF(shapes.n_users, shapes.n_items, cfg.model.dim, cfg.model.init,
              cfg.model.emb_loss_weight)
