"""RecGOAT assembled from its parts (docs/method.md):

  ID branch       LightGCN over the user-item graph (or a GAT on it)  -> e_u [U, d], e_i [I, d]
  user branch     on: GAT over the user-user kNN graph of the user features -> z_u (paper)
                  cf: z_u = g * mean of the ID-branch e_v of the user's k nearest users by
                  user features, g a learned scalar from 0.5 (ours: collaborative signal
                  along users described alike; model.user_branch=cf / cf_if_text)
                  z_u is added to e_u
  modality m      Linear + GAT over the item-item kNN graph of m      -> z_m [I, d]
  OAT             reference: zhat_m = z_m (T + Delta_m), T a stop-gradient Sinkhorn plan
                  paper:     zhat_m = z_m (I + Delta_m) + ot_weight * Sinkhorn divergence
                  none:      zhat_m = z_m
  fusion          oat / sum / concat                                  -> z_i [I, d] (unit rows)
                  residual: z_i = e_i + sum_m w_m zhat_m (not normalised; ours, real data)
  score           y(u, i) = e_u . z_i
  edge pruning    model.edge_dropout > 0: FREEDOM's degree-sensitive pruning of the
                  user-item graph, redrawn each epoch (pre_epoch; not in the paper)

Loss = BPR + l2_weight * L2(ego) + cl_weight * CMCL (+ ot_weight * L_OT), weights from
model.loss: named weighted terms (model/recgoat_loss.py) picked once by `build`. The whole
forward runs over all nodes in every step (as the released code does), inside the one
jitted step.

RecGOAT is, like LightGCN, MF and FREEDOM, a frozen dataclass of pure functions over a
params pytree (docs/architecture.md, design notes); flax linen is used only inside, in
RecGOATNet, to declare and initialise the parameters. The options (ui_encoder, oat,
fusion, cmcl, user_branch) are resolved in `build` into functions (model/recgoat_parts.py,
fusion.fusion_factory, loss terms).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from recgoat_jax import losses
from recgoat_jax.batch import Batch
from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError
from recgoat_jax.model import recgoat_loss, recgoat_parts
from recgoat_jax.model.base import Shapes, init_embedding
from recgoat_jax.model.edge_pruning import prune_inputs
from recgoat_jax.model.fusion import fusion_factory
from recgoat_jax.model.gat import ModalityEncoder
from recgoat_jax.model.recgoat_config import GATConfig
from recgoat_jax.model.recgoat_types import NetOutput


# the collaborative user branch's gate at init (learned from there): the value screened
# on the Debian dev set's valid split (experiments/results/user_cf_explore.json)
USER_CF_INIT = 0.5


class RecGOATNet(nn.Module):
    """All RecGOAT parameters; __call__(inputs, deterministic) -> NetOutput.

    encode_ui, align and make_fusion are the parts chosen by `build`
    (model/recgoat_parts.py, fusion.fusion_factory); they create their submodules inside
    this module's scope (ui_gat_<l>, oat_<m>, fusion). The other fields are the config's
    (model.dim, model.gat, model.dropout; init_name is model.init, a flax Module having its
    own `init`); the user side is model.user_branch resolved by `build` into two switches.
    """

    n_users: int
    n_items: int
    dim: int
    modalities: tuple[str, ...]
    encode_ui: Callable
    align: Callable
    make_fusion: Callable
    init_name: str = "normal"
    gat: GATConfig = GATConfig()  # layers and heads of every GAT encoder; on_items
    dropout: float = 0.1
    # the paper's GAT branch over the user-user kNN graph of the user features (or of the
    # ego rows without them): needs inputs["user_knn"]
    user_gat: bool = False
    # the collaborative branch, the mean ID vector of each user's nearest users by user
    # features: needs inputs["user_knn_rows"]
    user_cf: bool = False
    compute_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: dict, deterministic: bool = True) -> NetOutput:
        user_ego = self.param("user_emb", lambda k, s: init_embedding(k, *s, self.init_name),
                              (self.n_users, self.dim))
        item_ego = self.param("item_emb", lambda k, s: init_embedding(k, *s, self.init_name),
                              (self.n_items, self.dim))
        # User-user branch: LLM-profile features if given, else the ego embeddings.
        z_user = None
        if self.user_gat:
            feats = inputs.get("user_features", user_ego)
            s, r = inputs["user_knn"]
            z_user = ModalityEncoder(self.dim, self.gat.layers, self.gat.heads, self.dropout,
                                     name="user_encoder")(feats.astype(self.compute_dtype), s, r,
                                                          deterministic=deterministic)
            z_user = z_user.astype(jnp.float32)

        e_u, e_i = self.encode_ui(inputs, user_ego, item_ego, deterministic)  # ID branch
        if self.user_cf:
            gate = self.param("user_cf_gate", lambda k: jnp.float32(USER_CF_INIT))
            z_user = gate * e_u[inputs["user_knn_rows"]].mean(axis=1)  # [U, k, d] -> [U, d]
        if z_user is not None:
            e_u = e_u + z_user

        return self.item_side(inputs, user_ego, item_ego, e_u, e_i, z_user, deterministic)

    def item_side(self, inputs, user_ego, item_ego, e_u, e_i, z_user, deterministic):
        """Modality encoders, OAT and fusion on the ID branch's e_i -> the NetOutput
        (called from __call__'s scope; variants of the user side reuse it)."""
        z, zhat, diag = {}, {}, {}
        for m in self.modalities:
            s, r = inputs["item_knn"][m]
            x = inputs["item_features"][m].astype(self.compute_dtype)
            z[m] = ModalityEncoder(self.dim, self.gat.layers, self.gat.heads, self.dropout,
                                   use_gat=self.gat.on_items, name=f"encoder_{m}")(
                x, s, r, deterministic=deterministic).astype(jnp.float32)
            zhat[m], d = self.align(m, z[m], e_i)
            diag.update(d)
        z_items = self.make_fusion()(e_i, zhat, deterministic=deterministic)
        return NetOutput(user_ego=user_ego, item_ego=item_ego, e_u=e_u, e_i=e_i, z_user=z_user,
                         z=z, zhat=zhat, z_items=z_items, diag=diag)


@dataclasses.dataclass(frozen=True)
class RecGOAT:
    """The Model protocol (model/base.py) around RecGOATNet.

    terms: ((name, weight, term(out, rows, batch)), ...) composed by losses.weighted_sum
    (model/recgoat_loss.py).
    """

    net: RecGOATNet
    needs: tuple[str, ...]
    terms: tuple[tuple[str, float, Callable], ...]
    cl_tau: float = 0.2  # InfoNCE temperature of the Lemma 3.3 diagnostic
    edge_dropout: float = 0.0  # > 0 only with the LightGCN ID branch (build checks)

    @property
    def pre_epoch(self):
        """The per-epoch hook (model/base.py): with edge_dropout > 0, the epoch's inputs
        with a pruned user-item graph (model/edge_pruning.py); else None (no hook)."""
        if self.edge_dropout <= 0:
            return None
        return lambda inputs, key: prune_inputs(inputs, key, self.edge_dropout,
                                                self.net.n_users, self.net.n_items)

    def init(self, key, inputs):
        kp, kd = jax.random.split(key)
        variables = self.net.init({"params": kp, "dropout": kd}, inputs, deterministic=True)
        return variables["params"]

    def forward(self, params, inputs, key=None) -> NetOutput:
        """Eval mode without key; training mode (dropout from key) with one."""
        if key is None:
            return self.net.apply({"params": params}, inputs, deterministic=True)
        return self.net.apply({"params": params}, inputs, deterministic=False,
                              rngs={"dropout": key})

    def embed(self, params, inputs):
        out = self.forward(params, inputs)
        return out.e_u, out.z_items

    def loss(self, params, inputs, batch: Batch, key):
        out = self.forward(params, inputs, key)
        rows = recgoat_loss.batch_rows(out, batch)
        return losses.weighted_sum([(name, w, term(out, rows, batch))
                                    for name, w, term in self.terms])

    def diagnostics(self, params, inputs, batch: Batch) -> dict:
        """Evaluation-time diagnostics (recgoat_loss.diagnostics) in eval mode."""
        return recgoat_loss.diagnostics(self.forward(params, inputs), batch,
                                        modalities=self.net.modalities, tau=self.cl_tau)


def loss_terms(cfg: Config, modalities: tuple[str, ...], unroll_tiles: bool = False) -> tuple:
    """The named weighted terms of cfg (see model/recgoat_loss.py). unroll_tiles: CMCL's
    InfoNCE with its tile loops written out, for XLA's cost analysis only (a caller
    replaces a built model's terms: dataclasses.replace(model, terms=loss_terms(...)))."""
    m, loss = cfg.model, cfg.model.loss
    terms = [("bpr", 1.0, recgoat_loss.bpr_term),
             ("reg", loss.l2_weight, recgoat_loss.l2_term)]
    if m.cmcl != "none" and loss.cl_weight > 0:
        terms.append(("cmcl", loss.cl_weight, functools.partial(
            recgoat_loss.CMCL_TERMS[m.cmcl], modalities=modalities, tau=loss.cl_tau,
            w=loss.cl_w, n_rows=loss.cl_rows, unroll_tiles=unroll_tiles)))
    if m.oat == "paper" and loss.ot_weight > 0 and modalities:
        ot = m.ot.paper
        terms.append(("ot", loss.ot_weight, functools.partial(
            recgoat_loss.ot_term, modalities=modalities, n_items=ot.batch_items,
            epsilon=ot.epsilon, tau=ot.tau, iterations=ot.iterations)))
    return tuple(terms)


def build(cfg: Config, shapes: Shapes) -> RecGOAT:
    """RecGOAT for cfg (cfg.model: model/recgoat_config.py RecGOATConfig, validated by
    config.py) and the dataset's shapes."""
    m = cfg.model
    bf16 = cfg.train.mixed_precision  # RecGOAT honours it (RecGOATConfig.HONOURS)
    mods = tuple(shapes.item_feature_dims)
    has_user_features = shapes.user_feature_dim is not None
    branch = m.user_branch
    if branch == "cf_if_text":  # real user text, not profiles written from train items
        branch = "cf" if shapes.user_feature_source == "user_text" else "off"
    user_gat = {"auto": has_user_features, "on": True}.get(branch, False)
    user_cf = branch == "cf"
    if user_cf and not has_user_features:
        raise ConfigError("config key 'model.user_branch': cf needs user features "
                          "(user_feat.npy, written by `recgoat features` from a users file "
                          "or from train history); this dataset has none")
    encode_ui, ui_input = recgoat_parts.ui_encoder(m.ui_encoder, dim=m.dim, n_layers=m.n_layers,
                                                   heads=m.gat.heads, dropout=m.dropout)
    ref = m.ot.reference
    net = RecGOATNet(
        n_users=shapes.n_users, n_items=shapes.n_items, dim=m.dim, modalities=mods,
        encode_ui=encode_ui,
        align=recgoat_parts.aligner(m.oat, dim=m.dim, cost_scale=ref.cost_scale,
                                    epsilon=ref.epsilon, iterations=ref.iterations,
                                    compute_dtype=jnp.bfloat16 if bf16 else None),
        make_fusion=fusion_factory(m.fusion, m.dim, mods, dict(m.init_weights), m.dropout,
                                   name="fusion"),
        init_name=m.init, gat=m.gat, dropout=m.dropout, user_gat=user_gat, user_cf=user_cf,
        compute_dtype=jnp.bfloat16 if bf16 else jnp.float32)
    needs = ["item_features", "item_knn", ui_input]
    if m.edge_dropout > 0:
        if m.ui_encoder != "lightgcn":
            raise ConfigError("config key 'model.edge_dropout': edge pruning needs "
                              "model.ui_encoder=lightgcn")
        needs.append("ui_edge_list")
    if user_gat:
        needs.append("user_knn")
        if has_user_features:
            needs.append("user_features")
    if user_cf:
        needs.append("user_knn_rows")
    return RecGOAT(net, needs=tuple(needs), terms=loss_terms(cfg, mods), cl_tau=m.loss.cl_tau,
                   edge_dropout=m.edge_dropout)
