"""RecGOAT assembled from its parts (shared spec recgoat.md):

  ID branch       LightGCN over the user-item graph (or a GAT on it)  -> e_u [U, d], e_i [I, d]
  user branch     GAT over the user-user kNN graph -> z_u, added to e_u (user_merge=add)
                  or to the user ego rows before LightGCN (user_merge=ego) (paper; optional)
  modality m      Linear + GAT over the item-item kNN graph of m      -> z_m [I, d]
  OAT             reference: zhat_m = z_m (T + Delta_m), T a stop-gradient Sinkhorn plan
                  paper:     zhat_m = z_m (I + Delta_m) + lambda_ot * Sinkhorn divergence
                  none:      zhat_m = z_m
  fusion          oat / sum / concat                                  -> z_i [I, d] (unit rows)
                  residual: z_i = e_i + sum_m w_m zhat_m (not normalised; ours, real data)
  score           y(u, i) = e_u . z_i

Loss = BPR + lambda_reg * L2(ego) + lambda_cl * CMCL (+ lambda_ot * L_OT). The whole forward
runs over all nodes in every step (as the released code does), inside the one jitted step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recgoat_jax import losses
from recgoat_jax.config import Config
from recgoat_jax.model import alignment, fusion as fusion_lib
from recgoat_jax.model.base import init_embedding
from recgoat_jax.model.edge_pruning import prune_inputs
from recgoat_jax.model.gat import GATLayer, ModalityEncoder, graph_from_edges
from recgoat_jax.model.lightgcn import propagate
from recgoat_jax.model.registry import register

LEMMA_ROWS = 512


class RecGOATNet(nn.Module):
    """All RecGOAT parameters; __call__(inputs, deterministic) -> dict of embeddings."""

    n_users: int
    n_items: int
    dim: int
    modalities: tuple[str, ...]
    n_layers: int = 3
    init_name: str = "normal"
    gat_layers: int = 1
    heads: int = 8
    dropout: float = 0.1
    item_gat: bool = True
    user_branch: bool = False
    user_merge: str = "add"  # add | ego (config.py)
    ui_encoder: str = "lightgcn"
    oat: str = "paper"
    fusion: str = "oat"
    fusion_normalize: bool = True
    residual_init: float = 0.0
    item_graph_id: bool = False  # GAT input = W x_m + item ego row (not in the paper)
    init_weights: tuple[tuple[str, float], ...] = (("image", 0.05), ("text", 0.8))
    ot_scale: float = 100.0
    ot_epsilon: float = 0.01
    ot_iterations: int = 100
    compute_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: dict, deterministic: bool = True) -> dict:
        user_ego = self.param("user_emb", lambda k, s: init_embedding(k, *s, self.init_name),
                              (self.n_users, self.dim))
        item_ego = self.param("item_emb", lambda k, s: init_embedding(k, *s, self.init_name),
                              (self.n_items, self.dim))
        # User-user branch: LLM-profile features if given, else the ego embeddings.
        z_user = None
        if self.user_branch:
            feats = inputs.get("user_features", user_ego)
            s, r = inputs["user_knn"]
            z_user = ModalityEncoder(self.dim, self.gat_layers, self.heads, self.dropout,
                                     name="user_encoder")(feats.astype(self.compute_dtype), s, r,
                                                          deterministic=deterministic)
            z_user = z_user.astype(jnp.float32)
            if self.user_merge not in ("add", "ego"):
                raise ValueError(f"unknown user_merge {self.user_merge!r}; expected add or ego")
        u0 = user_ego + z_user if self.user_merge == "ego" and z_user is not None else user_ego

        # ID branch on the user-item graph.
        if self.ui_encoder == "lightgcn":
            e_u, e_i = propagate(inputs["adjacency"], u0, item_ego, self.n_layers)
        elif self.ui_encoder == "gat":
            s, r = inputs["ui_edges"]
            h = jnp.concatenate([u0, item_ego])
            out = h
            for layer in range(self.n_layers):
                h = GATLayer(self.dim, heads=self.heads, feat_drop=self.dropout,
                             attn_drop=self.dropout, name=f"ui_gat_{layer}")(
                    graph_from_edges(h, s, r), deterministic=deterministic)
                out = out + h
            out = out / (self.n_layers + 1)
            e_u, e_i = out[: self.n_users], out[self.n_users:]
        else:
            raise ValueError(f"unknown ui_encoder {self.ui_encoder!r}; expected lightgcn or gat")
        if z_user is not None and self.user_merge != "ego":
            e_u = e_u + z_user

        # Modality encoders and OAT.
        z, zhat, diag = {}, {}, {}
        for m in self.modalities:
            s, r = inputs["item_knn"][m]
            x = inputs["item_features"][m].astype(self.compute_dtype)
            z[m] = ModalityEncoder(self.dim, self.gat_layers, self.heads, self.dropout,
                                   use_gat=self.item_gat, name=f"encoder_{m}")(
                x, s, r, deterministic=deterministic,
                extra=item_ego if self.item_graph_id else None).astype(jnp.float32)
            if self.oat == "reference":
                zhat[m], d = alignment.ReferenceOAT(self.dim, self.ot_scale, self.ot_epsilon,
                                                    self.ot_iterations, name=f"oat_{m}")(z[m], e_i)
                diag.update({f"oat/{m}/{k}": v for k, v in d.items()})
            elif self.oat == "paper":
                zhat[m] = alignment.PaperOAT(self.dim, name=f"oat_{m}")(z[m])
            elif self.oat == "none":
                zhat[m] = z[m]
            else:
                raise ValueError(f"unknown oat {self.oat!r}; expected paper, reference or none")

        z_items = fusion_lib.make_fusion(self.fusion, self.dim, self.modalities,
                                         dict(self.init_weights), self.dropout, name="fusion",
                                         normalize=self.fusion_normalize,
                                         residual_init=self.residual_init)(
            e_i, zhat, deterministic=deterministic)
        return {"user_ego": user_ego, "item_ego": item_ego, "e_u": e_u, "e_i": e_i,
                "z_user": z_user, "z": z, "zhat": zhat, "z_items": z_items, "diag": diag}


@dataclasses.dataclass(frozen=True)
class RecGOAT:
    """The Model protocol (model/base.py) around RecGOATNet."""

    net: RecGOATNet
    reg_weight: float = 1e-4
    lambda_cl: float = 0.0
    lambda_ot: float = 0.0
    cl_tau: float = 0.2
    cl_w: float = 0.5
    cl_rows: int = 0
    cmcl: str = "paper"
    ot_tau: float = 1.0
    ot_paper_epsilon: float = 0.05
    ot_batch_items: int = 256
    ot_paper_iterations: int = 200
    user_features: bool = False  # feed user_feat.npy to the user branch
    edge_dropout: float = 0.0  # FREEDOM's edge pruning of the user-item graph (training only)

    @property
    def needs(self) -> tuple[str, ...]:
        need = ["item_features", "item_knn"]
        need.append("adjacency" if self.net.ui_encoder == "lightgcn" else "ui_edges")
        if self.edge_dropout > 0:
            need.append("ui_edge_list")
        if self.net.user_branch:
            need.append("user_knn")
            if self.user_features:
                need.append("user_features")
        return tuple(need)

    @property
    def pre_epoch(self):
        """The trainer's per-epoch hook (model/base.py): with edge_dropout > 0, the epoch's
        inputs with a pruned user-item graph (model/edge_pruning.py); else None (no hook)."""
        if self.edge_dropout <= 0 or self.net.ui_encoder != "lightgcn":
            return None
        return lambda inputs, key: prune_inputs(inputs, key, self.edge_dropout,
                                                self.net.n_users, self.net.n_items)

    def init(self, key, inputs):
        kp, kd = jax.random.split(key)
        variables = self.net.init({"params": kp, "dropout": kd}, inputs, deterministic=True)
        return variables["params"]

    def forward(self, params, inputs, key=None) -> dict:
        if key is None:
            return self.net.apply({"params": params}, inputs, deterministic=True)
        return self.net.apply({"params": params}, inputs, deterministic=False,
                              rngs={"dropout": key})

    def embed(self, params, inputs):
        out = self.forward(params, inputs)
        return out["e_u"], out["z_items"]

    def loss(self, params, inputs, batch, key):
        out = self.forward(params, inputs, key)
        u, p, n, w = batch["users"], batch["pos"], batch["neg"], batch["weight"]
        eu, zp, zn = out["e_u"][u], out["z_items"][p], out["z_items"][n]
        bpr = losses.bpr(jnp.sum(eu * zp, -1), jnp.sum(eu * zn, -1), w)
        reg = losses.emb_l2(out["user_ego"][u], out["item_ego"][p], out["item_ego"][n],
                            weight=w, mode="squared")
        loss = bpr + self.reg_weight * reg
        aux = {"bpr": bpr, "reg": reg, **out["diag"]}
        mods = self.net.modalities
        if self.cmcl != "none" and self.lambda_cl > 0:
            # In-batch InfoNCE on the first cl_rows rows (rows are shuffled, so any prefix is
            # a uniform sample); the full batch when cl_rows is 0.
            c = p.shape[0] if self.cl_rows <= 0 else min(self.cl_rows, p.shape[0])
            pc, nc, wc, euc, zpc = p[:c], n[:c], w[:c], eu[:c], zp[:c]
            if self.cmcl == "paper":
                cl = alignment.cmcl_paper([out["z"][m][pc] for m in mods], zpc, euc, zpc,
                                          self.cl_tau, self.cl_w, wc)
            elif self.cmcl == "reference":
                pos = {"id": out["e_i"][pc], **{m: out["z"][m][pc] for m in mods}}
                neg = {"id": out["e_i"][nc], **{m: out["z"][m][nc] for m in mods}}
                cl = alignment.cmcl_reference(pos, neg, self.cl_tau, wc, e_u=euc, z_pos=zpc,
                                              w=self.cl_w)
            else:
                raise ValueError(f"unknown cmcl {self.cmcl!r}; expected paper, reference or none")
            loss = loss + self.lambda_cl * cl
            aux["cmcl"] = cl
        # Lemma 3.3 diagnostic per modality, E||z_m - z|| vs sqrt(2 tau L + 2 tau log B), on
        # the first LEMMA_ROWS rows only: the lemma holds for any batch, and InfoNCE costs B^2.
        k = min(LEMMA_ROWS, p.shape[0])
        zk, wk = jax.lax.stop_gradient(zp[:k]), w[:k]
        for m in mods:
            zm = jax.lax.stop_gradient(out["z"][m][p[:k]])
            lhs, rhs = alignment.lemma_bound(zm, zk, losses.info_nce(zm, zk, self.cl_tau, wk),
                                             self.cl_tau, k)
            aux[f"lemma/{m}/lhs"], aux[f"lemma/{m}/rhs"] = lhs, rhs
        if self.net.oat == "paper" and self.lambda_ot > 0 and mods:
            k = min(self.ot_batch_items, p.shape[0])
            items, wk = p[:k], w[:k]
            ot = sum(alignment.paper_ot_loss(out["zhat"][m][items],
                                             jax.lax.stop_gradient(out["e_i"][items]), wk,
                                             epsilon=self.ot_paper_epsilon, tau=self.ot_tau,
                                             iterations=self.ot_paper_iterations)
                     for m in mods) / len(mods)
            loss = loss + self.lambda_ot * ot
            aux["ot"] = ot
        return loss, aux


def _user_branch_on(cfg: Config, shapes: dict) -> bool:
    mode = cfg.model.user_branch
    if mode == "auto":
        return shapes.get("user_feature_dim") is not None
    if mode in ("on", "off"):
        return mode == "on"
    raise ValueError(f"config key 'model.user_branch': expected auto, on or off, got {mode!r}")


@register("recgoat")
def build(cfg: Config, shapes: dict) -> RecGOAT:
    m, t = cfg.model, cfg.train
    mods = tuple(shapes["item_feature_dims"])
    net = RecGOATNet(
        n_users=shapes["n_users"], n_items=shapes["n_items"], dim=m.dim, modalities=mods,
        n_layers=m.n_layers, init_name=m.init, gat_layers=m.gat_layers, heads=m.gat_heads,
        dropout=m.dropout, item_gat=m.item_gat, user_branch=_user_branch_on(cfg, shapes),
        user_merge=m.user_merge,
        ui_encoder=m.ui_encoder, oat=m.oat, fusion=m.fusion,
        fusion_normalize=m.fusion_normalize, residual_init=m.residual_init,
        item_graph_id=m.item_graph_id,
        init_weights=m.init_weights,
        ot_scale=m.ot_cost_scale, ot_epsilon=m.ot_epsilon, ot_iterations=m.ot_iterations,
        compute_dtype=jnp.bfloat16 if t.mixed_precision else jnp.float32)
    return RecGOAT(net, reg_weight=t.reg_weight, lambda_cl=t.lambda_cl, lambda_ot=t.lambda_ot,
                   cl_tau=t.cl_tau, cl_w=t.cl_w, cl_rows=t.cl_rows, cmcl=m.cmcl, ot_tau=m.ot_tau,
                   ot_paper_epsilon=m.ot_paper_epsilon, ot_batch_items=m.ot_batch_items,
                   ot_paper_iterations=m.ot_paper_iterations,
                   user_features=shapes.get("user_feature_dim") is not None,
                   edge_dropout=m.edge_dropout)
