"""RecGOAT's interchangeable parts, chosen once from the (already validated) config by
`recgoat.build` and handed to RecGOATNet as functions, so the network never branches on
option strings.

Each part is a plain function called inside RecGOATNet's compact `__call__`: flax modules
it creates there (GAT layers, OAT maps) become RecGOATNet's children under the names
given here (`ui_gat_<l>`, `oat_<m>`), so the parameter tree does not depend on where the
choice is made.

  ui encoder  (inputs, u0 [U, d], item_ego [I, d], deterministic) -> (e_u [U, d], e_i [I, d])
              lightgcn_ui: LightGCN layer mean; gat_ui: GAT layers over ui_edges, layer mean
  aligner     (m, z_m [I, d], e_i [I, d]) -> (zhat_m [I, d], {diagnostic name: scalar})
              paper_align: z (I + Delta); reference_align: z (T + Delta); no_align: z
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from recgoat_jax.model import alignment
from recgoat_jax.model.gat import GATLayer, graph_from_edges
from recgoat_jax.model.lightgcn import propagate


def lightgcn_ui(inputs, u0, item_ego, deterministic, *, n_layers: int):
    del deterministic  # no dropout in LightGCN
    return propagate(inputs["adjacency"], u0, item_ego, n_layers)


def gat_ui(inputs, u0, item_ego, deterministic, *, dim: int, n_layers: int, heads: int,
           dropout: float):
    """The paper's wording: GAT layers over the user-item graph (ui_edges), layer mean."""
    s, r = inputs["ui_edges"]
    n_users = u0.shape[0]
    h = jnp.concatenate([u0, item_ego])
    out = h
    for layer in range(n_layers):
        h = GATLayer(dim, heads=heads, feat_drop=dropout, attn_drop=dropout,
                     name=f"ui_gat_{layer}")(graph_from_edges(h, s, r),
                                             deterministic=deterministic)
        out = out + h
    out = out / (n_layers + 1)
    return out[:n_users], out[n_users:]


def paper_align(m, z, e_items, *, dim: int, compute_dtype=None):
    del e_items  # the paper variant aligns through its OT loss term instead
    return alignment.PaperOAT(dim, compute_dtype=compute_dtype, name=f"oat_{m}")(z), {}


def reference_align(m, z, e_items, *, dim: int, cost_scale: float, epsilon: float,
                    iterations: int, compute_dtype=None):
    zhat, diag = alignment.ReferenceOAT(dim, cost_scale, epsilon, iterations,
                                        compute_dtype=compute_dtype, name=f"oat_{m}")(
        z, e_items)
    return zhat, {f"oat/{m}/{k}": v for k, v in diag.items()}


def no_align(m, z, e_items):
    return z, {}


def ui_encoder(kind: str, *, dim: int, n_layers: int, heads: int, dropout: float):
    """model.ui_encoder -> (encoder function, the input it needs)."""
    return {
        "lightgcn": lambda: (functools.partial(lightgcn_ui, n_layers=n_layers), "adjacency"),
        "gat": lambda: (functools.partial(gat_ui, dim=dim, n_layers=n_layers, heads=heads,
                                          dropout=dropout), "ui_edges"),
    }[kind]()


def aligner(kind: str, *, dim: int, cost_scale: float, epsilon: float, iterations: int,
            compute_dtype=None):
    """model.oat -> aligner function (cost_scale, epsilon, iterations: model.ot.reference's,
    read by the reference variant only). compute_dtype bfloat16 (train.mixed_precision): the
    z (I + Delta) / z (T + Delta) map in bf16 with float32 output."""
    return {
        "paper": lambda: functools.partial(paper_align, dim=dim, compute_dtype=compute_dtype),
        "reference": lambda: functools.partial(reference_align, dim=dim, cost_scale=cost_scale,
                                               epsilon=epsilon, iterations=iterations,
                                               compute_dtype=compute_dtype),
        "none": lambda: no_align,
    }[kind]()
