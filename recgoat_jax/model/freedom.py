"""FREEDOM (Zhou & Shen, ACM MM 2023) with MMRec `freedom.py` semantics.

Frozen item-item graph mm_adj (graphs/mm_adj.py, built once from the raw features) and a
LightGCN over the user-item graph that is pruned once per epoch during training:

  h = item_id_emb; repeat mm_layers: h = mm_adj @ h
  users, items = LightGCN layer mean over 0..n_ui_layers (model/lightgcn.py `propagate`)
  output: users [U, d], items + h [I, d]

Loss = BPR(users, items + h) + mm_bpr_weight * sum_m BPR(users, proj_m(feat_m)) with
proj_m a Linear D_m -> d over a TRAINABLE copy feat_m [I, D_m] of modality m's raw
features (nn.Embedding.from_pretrained(freeze=False) in MMRec). No L2 term (MMRec has none).

Degree-sensitive edge pruning (`pre_epoch`, called once per epoch by train/loop.py):
keep int(E (1 - dropout)) of the E train edges, drawn without replacement with
probability proportional to 1/sqrt(deg_u deg_i) (torch.multinomial in MMRec; here
Gumbel top-k, the same distribution), and renormalise over the kept edges. Evaluation
(`embed`) uses the full adjacency, as MMRec's full_sort_predict.

Inputs (model/base.py): "adjacency" {"ui", "iu": CSR}; "ui_edge_list" {"users", "items",
"weight", "to_iu": [E]} (graphs/bipartite.py edge_list); "mm_adj" {"fwd": [I, I] CSR,
"bwd": its transpose}; "item_features" {m: [I, D_m]} (initial values of the copies).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from recgoat_jax import losses
from recgoat_jax.batch import Batch
from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError
from recgoat_jax.model.base import Shapes, init_embedding
from recgoat_jax.model.edge_pruning import prune_inputs
from recgoat_jax.model.lightgcn import csr_matmul, no_adjacency_grad, propagate


@jax.custom_vjp
def mm_propagate(mm_adj: dict, h: jax.Array) -> jax.Array:
    """mm_adj @ h: [I, I] CSR times [I, d]; the gradient is mm_adj^T g (the "bwd" CSR)."""
    return csr_matmul(mm_adj["fwd"], h, h.shape[0])


def _mm_fwd(mm_adj, h):
    return mm_propagate(mm_adj, h), mm_adj


def _mm_bwd(mm_adj, g):
    return no_adjacency_grad(mm_adj), csr_matmul(mm_adj["bwd"], g, g.shape[0])


mm_propagate.defvjp(_mm_fwd, _mm_bwd)


@dataclasses.dataclass(frozen=True)
class FREEDOM:
    n_users: int
    n_items: int
    feature_dims: tuple[tuple[str, int], ...]  # ((modality, D_m), ...)
    dim: int = 64  # embedding_size = feat_embed_dim
    n_ui_layers: int = 2
    mm_layers: int = 1
    dropout: float = 0.8  # edge pruning ratio; <= 0: the full adjacency
    mm_bpr_weight: float = 1e-4  # model.mm_bpr_weight
    init_name: str = "xavier"

    diagnostics = None  # optional hook (model/base.py): none; pre_epoch: below

    @property
    def needs(self) -> tuple[str, ...]:
        return ("adjacency", "ui_edge_list", "mm_adj", "item_features")

    def init(self, key, inputs):
        """user [U, d], item [I, d] (init_name); feat {m: [I, D_m]} (copies of the raw
        features); proj {m: {"w": [D_m, d], "b": [d]}} U(-1/sqrt(D_m), 1/sqrt(D_m))
        as torch.nn.Linear."""
        ku, ki, kp = jax.random.split(key, 3)
        params = {"user": init_embedding(ku, self.n_users, self.dim, self.init_name),
                  "item": init_embedding(ki, self.n_items, self.dim, self.init_name),
                  "feat": {}, "proj": {}}
        for j, (m, d_m) in enumerate(self.feature_dims):
            kw, kb = jax.random.split(jax.random.fold_in(kp, j))
            bound = 1.0 / d_m ** 0.5
            params["feat"][m] = jnp.asarray(inputs["item_features"][m], jnp.float32)
            params["proj"][m] = {
                "w": jax.random.uniform(kw, (d_m, self.dim), jnp.float32, -bound, bound),
                "b": jax.random.uniform(kb, (self.dim,), jnp.float32, -bound, bound)}
        return params

    def forward(self, params, inputs):
        """-> users [U, d], items [I, d] over inputs["adjacency"] (full or pruned)."""
        h = params["item"]
        for _ in range(self.mm_layers):
            h = mm_propagate(inputs["mm_adj"], h)
        users, items = propagate(inputs["adjacency"], params["user"], params["item"],
                                 self.n_ui_layers)
        return users, items + h

    def embed(self, params, inputs):
        """Eval mode: the full adjacency (trainer.inputs is never pruned)."""
        return self.forward(params, inputs)

    def pre_epoch(self, inputs, key):
        """inputs with adjacency data replaced by the epoch's pruned graph (dropout > 0)."""
        return prune_inputs(inputs, key, self.dropout, self.n_users, self.n_items)

    def loss(self, params, inputs, batch: Batch, key):
        del key  # the epoch's pruning arrives through inputs (pre_epoch)
        user_emb, item_emb = self.forward(params, inputs)
        u, p, n, w = batch.users, batch.pos, batch.neg, batch.weight
        eu = user_emb[u]
        bpr = losses.bpr(jnp.sum(eu * item_emb[p], -1), jnp.sum(eu * item_emb[n], -1), w)
        mm = jnp.zeros((), jnp.float32)
        for m, _ in self.feature_dims:
            feat, proj = params["feat"][m], params["proj"][m]
            fp = feat[p] @ proj["w"] + proj["b"]  # = (feat @ W + b)[p]
            fn = feat[n] @ proj["w"] + proj["b"]
            mm = mm + losses.bpr(jnp.sum(eu * fp, -1), jnp.sum(eu * fn, -1), w)
        return losses.weighted_sum([("bpr", 1.0, bpr), ("mm_bpr", self.mm_bpr_weight, mm)])


def build(cfg: Config, shapes: Shapes) -> FREEDOM:
    """cfg.model: model/freedom_config.py FREEDOMConfig."""
    dims = tuple(shapes.item_feature_dims.items())
    if not dims:
        raise ConfigError("config key 'model.name': freedom needs item features "
                          "(<modality>_feat.npy); the dataset has none")
    m = cfg.model
    return FREEDOM(shapes.n_users, shapes.n_items, dims, m.dim, m.n_layers, m.mm_layers,
                   m.freedom_dropout, m.mm_bpr_weight, m.init)
