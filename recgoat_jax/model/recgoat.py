"""RecGOAT assembled from its parts (docs/method.md):

  ID branch       LightGCN over the user-item graph (or a GAT on it)  -> e_u [U, d], e_i [I, d]
  user branch     GAT over the user-user kNN graph -> z_u, added to e_u (user_merge=add)
                  or to the user ego rows before LightGCN (user_merge=ego) (paper; optional),
                  or gated, e_u + w_user z_u with w_user learnable from model.residual_init
                  (user_merge=residual; not in the paper)
  modality m      Linear + GAT over the item-item kNN graph of m      -> z_m [I, d]
  OAT             reference: zhat_m = z_m (T + Delta_m), T a stop-gradient Sinkhorn plan
                  paper:     zhat_m = z_m (I + Delta_m) + lambda_ot * Sinkhorn divergence
                  none:      zhat_m = z_m
  fusion          oat / sum / concat                                  -> z_i [I, d] (unit rows)
                  residual: z_i = e_i + sum_m w_m zhat_m (not normalised; ours, real data)
  score           y(u, i) = e_u . z_i
  edge pruning    model.edge_dropout > 0: FREEDOM's degree-sensitive pruning of the
                  user-item graph, redrawn each epoch (pre_epoch; not in the paper)
  content graph   model.content_id_layers = L > 0: e_i += mm_adj^L item_ego, FREEDOM's
                  propagation of the item ID rows over its frozen content kNN graph
                  (graphs/mm_adj.py; not in the paper); model.content_id_gate: that
                  term times w_cid, learnable from model.residual_init
  user content    model.user_content: e_u += w_uc R (z_items - e_i), one LightGCN hop of
                  the fused items' content part into the users (residual fusion; not in the
                  paper)

Loss = BPR + lambda_reg * L2(ego) + lambda_cl * CMCL (+ lambda_ot * L_OT): named weighted
terms (model/recgoat_loss.py) picked once by `build`. The whole forward runs over all
nodes in every step (as the released code does), inside the one jitted step.

Model style (README "Design notes"): RecGOAT is, like LightGCN, MF and FREEDOM, a frozen
dataclass of pure functions over a params pytree (init / loss / embed / diagnostics);
flax linen is used only inside, in RecGOATNet, to declare and initialise the parameters.
The options (ui_encoder, oat, fusion, cmcl, user_branch) are resolved in `build` into
functions (model/recgoat_parts.py, fusion.fusion_factory, loss terms).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from recgoat_jax import losses
from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError
from recgoat_jax.model import recgoat_loss, recgoat_parts
from recgoat_jax.model.base import init_embedding
from recgoat_jax.model.edge_pruning import prune_inputs
from recgoat_jax.model.freedom import mm_propagate
from recgoat_jax.model.lightgcn import items_to_users
from recgoat_jax.model.fusion import fusion_factory
from recgoat_jax.model.gat import ModalityEncoder


class RecGOATNet(nn.Module):
    """All RecGOAT parameters; __call__(inputs, deterministic) -> dict of embeddings.

    encode_ui, align and make_fusion are the parts chosen by `build`
    (model/recgoat_parts.py, fusion.fusion_factory); they create their submodules inside
    this module's scope (ui_gat_<l>, oat_<m>, fusion).
    """

    n_users: int
    n_items: int
    dim: int
    modalities: tuple[str, ...]
    encode_ui: Callable
    align: Callable
    make_fusion: Callable
    init_name: str = "normal"
    gat_layers: int = 1
    heads: int = 8
    dropout: float = 0.1
    item_gat: bool = True
    item_graph_id: bool = False  # item GAT input = W x_m + the item's ID ego row (not in the paper)
    user_branch: bool = False
    user_into_ego: bool = False  # model.user_merge: ego (True) or add (False)
    # model.user_merge=residual: e_u + w_user z_u, the scalar w_user learnable from this value
    # (None: no gate). Like residual item fusion, the model starts as its ID backbone.
    user_gate_init: float | None = None
    content_id_layers: int = 0  # e_i += mm_adj^L item_ego (FREEDOM; not in the paper)
    # model.content_id_gate: e_i += w_cid mm_adj^L item_ego, w_cid learnable from this value
    # (None: weight 1, FREEDOM's form)
    content_id_gate_init: float | None = None
    # model.user_content: e_u += w_uc R c, c = z_items - e_i the fused items' content part
    # (residual fusion), R the user rows of the normalised user-item graph, w_uc learnable
    # from this value (None: off). Not in the paper.
    user_content_gate_init: float | None = None
    compute_dtype: Any = jnp.float32
    gat_impl: str = "csr"  # model.gat_impl (GATLayer.impl)

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
                                     gat_impl=self.gat_impl, name="user_encoder")(feats.astype(self.compute_dtype), s, r,
                                                          deterministic=deterministic)
            z_user = z_user.astype(jnp.float32)
        u0 = user_ego + z_user if self.user_into_ego and z_user is not None else user_ego

        e_u, e_i = self.encode_ui(inputs, u0, item_ego, deterministic)  # ID branch
        if z_user is not None and not self.user_into_ego:
            w = 1.0
            if self.user_gate_init is not None:
                w = self.param("w_user", nn.initializers.constant(self.user_gate_init), ())
            e_u = e_u + w * z_user
        if self.content_id_layers:
            # FREEDOM's item side: ID rows smoothed over the frozen content kNN graph, so an
            # item with few interactions borrows the ID rows of items whose text is alike.
            h = item_ego
            for _ in range(self.content_id_layers):
                h = mm_propagate(inputs["mm_adj"], h)
            if self.content_id_gate_init is not None:
                h = self.param("w_cid", nn.initializers.constant(self.content_id_gate_init), ()) * h
            e_i = e_i + h

        # Modality encoders and OAT.
        z, zhat, diag = {}, {}, {}
        for m in self.modalities:
            s, r = inputs["item_knn"][m]
            x = inputs["item_features"][m].astype(self.compute_dtype)
            z[m] = ModalityEncoder(self.dim, self.gat_layers, self.heads, self.dropout,
                                   use_gat=self.item_gat, gat_impl=self.gat_impl,
                                   name=f"encoder_{m}")(
                x, s, r, deterministic=deterministic,
                extra=item_ego if self.item_graph_id else None).astype(jnp.float32)
            zhat[m], d = self.align(m, z[m], e_i)
            diag.update(d)

        z_items = self.make_fusion()(e_i, zhat, deterministic=deterministic)
        if self.user_content_gate_init is not None:
            # A user also carries the content of its train items, one LightGCN hop: a user
            # with few interactions is then scored by what its items are about as well.
            w = self.param("w_uc", nn.initializers.constant(self.user_content_gate_init), ())
            e_u = e_u + w * items_to_users(inputs["adjacency"], z_items - e_i)
        return {"user_ego": user_ego, "item_ego": item_ego, "e_u": e_u, "e_i": e_i,
                "z_user": z_user, "z": z, "zhat": zhat, "z_items": z_items, "diag": diag}


@dataclasses.dataclass(frozen=True)
class RecGOAT:
    """The Model protocol (model/base.py) around RecGOATNet.

    terms: ((name, weight, term(out, batch)), ...) composed by losses.weighted_sum.
    """

    net: RecGOATNet
    needs: tuple[str, ...]
    terms: tuple[tuple[str, float, Callable], ...]
    cl_tau: float = 0.2  # InfoNCE temperature of the Lemma 3.3 diagnostic
    edge_dropout: float = 0.0  # > 0 only with the LightGCN ID branch (build checks)

    @property
    def pre_epoch(self):
        """The trainer's per-epoch hook (model/base.py): with edge_dropout > 0, the epoch's
        inputs with a pruned user-item graph (model/edge_pruning.py); else None (no hook)."""
        if self.edge_dropout <= 0:
            return None
        return lambda inputs, key: prune_inputs(inputs, key, self.edge_dropout,
                                                self.net.n_users, self.net.n_items)

    def init(self, key, inputs):
        kp, kd = jax.random.split(key)
        variables = self.net.init({"params": kp, "dropout": kd}, inputs, deterministic=True)
        return variables["params"]

    def forward(self, params, inputs, key=None) -> dict:
        """Eval mode without key; training mode (dropout from key) with one."""
        if key is None:
            return self.net.apply({"params": params}, inputs, deterministic=True)
        return self.net.apply({"params": params}, inputs, deterministic=False,
                              rngs={"dropout": key})

    def embed(self, params, inputs):
        out = self.forward(params, inputs)
        return out["e_u"], out["z_items"]

    def loss(self, params, inputs, batch, key):
        out = recgoat_loss.with_batch_rows(self.forward(params, inputs, key), batch)
        return losses.weighted_sum([(name, w, term(out, batch)) for name, w, term in self.terms])

    def diagnostics(self, params, inputs, batch) -> dict:
        """Evaluation-time diagnostics (recgoat_loss.diagnostics) in eval mode."""
        return recgoat_loss.diagnostics(self.forward(params, inputs), batch,
                                        modalities=self.net.modalities, tau=self.cl_tau)


def loss_terms(cfg: Config, modalities: tuple[str, ...]) -> tuple:
    """The named weighted terms of cfg (see model/recgoat_loss.py)."""
    m, t = cfg.model, cfg.train
    terms = [("bpr", 1.0, recgoat_loss.bpr_term), ("reg", t.reg_weight, recgoat_loss.l2_term)]
    if m.cmcl != "none" and t.lambda_cl > 0:
        terms.append(("cmcl", t.lambda_cl, functools.partial(
            recgoat_loss.CMCL_TERMS[m.cmcl], modalities=modalities, tau=t.cl_tau, w=t.cl_w,
            rows=t.cl_rows)))
    if m.oat == "paper" and t.lambda_ot > 0 and modalities:
        terms.append(("ot", t.lambda_ot, functools.partial(
            recgoat_loss.ot_term, modalities=modalities, rows=m.ot_batch_items,
            epsilon=m.ot_paper_epsilon, tau=m.ot_tau, iterations=m.ot_paper_iterations)))
    return tuple(terms)


def build(cfg: Config, shapes: dict) -> RecGOAT:
    """RecGOAT for cfg (validated by config.py) and the dataset's shapes
    (graphs/inputs.py shapes_of)."""
    m, t = cfg.model, cfg.train
    mods = tuple(shapes["item_feature_dims"])
    has_user_features = shapes.get("user_feature_dim") is not None
    user_branch = {"auto": has_user_features, "on": True, "off": False}[m.user_branch]
    encode_ui, ui_input = recgoat_parts.ui_encoder(m.ui_encoder, dim=m.dim, n_layers=m.n_layers,
                                                   heads=m.gat_heads, dropout=m.dropout,
                                                   gat_impl=m.gat_impl)
    net = RecGOATNet(
        n_users=shapes["n_users"], n_items=shapes["n_items"], dim=m.dim, modalities=mods,
        encode_ui=encode_ui,
        align=recgoat_parts.aligner(m.oat, dim=m.dim, scale=m.ot_cost_scale,
                                    epsilon=m.ot_epsilon, iterations=m.ot_iterations,
                                    compute_dtype=jnp.bfloat16 if t.mixed_precision else None),
        make_fusion=fusion_factory(m.fusion, m.dim, mods, dict(m.init_weights), m.dropout,
                                   name="fusion", normalize=m.fusion_normalize,
                                   residual_init=m.residual_init),
        init_name=m.init, gat_layers=m.gat_layers, heads=m.gat_heads, dropout=m.dropout,
        item_gat=m.item_gat, item_graph_id=m.item_graph_id, user_branch=user_branch,
        user_into_ego=m.user_merge == "ego",
        user_gate_init=m.residual_init if m.user_merge == "residual" else None,
        content_id_layers=m.content_id_layers,
        content_id_gate_init=m.residual_init if m.content_id_gate else None,
        user_content_gate_init=m.residual_init if m.user_content else None,
        compute_dtype=jnp.bfloat16 if t.mixed_precision else jnp.float32, gat_impl=m.gat_impl)
    needs = ["item_features", "item_knn", ui_input]
    if m.edge_dropout > 0:
        if m.ui_encoder != "lightgcn":
            raise ConfigError("config key 'model.edge_dropout': edge pruning needs "
                              "model.ui_encoder=lightgcn")
        needs.append("ui_edge_list")
    if m.user_content and (m.fusion != "residual" or m.ui_encoder != "lightgcn"):
        raise ConfigError("config key 'model.user_content': needs model.fusion=residual and "
                          "model.ui_encoder=lightgcn")
    if m.content_id_layers:
        needs.append("mm_adj")
    if user_branch:
        needs.append("user_knn")
        if has_user_features:
            needs.append("user_features")
    return RecGOAT(net, needs=tuple(needs), terms=loss_terms(cfg, mods), cl_tau=t.cl_tau,
                   edge_dropout=m.edge_dropout)
