"""Degree-sensitive edge pruning of the user-item graph (FREEDOM, Zhou & Shen 2023), shared
by FREEDOM and RecGOAT (model.edge_dropout).

Once per epoch keep int(E (1 - p)) of the E train edges, drawn without replacement with
probability proportional to 1/sqrt(deg_u deg_i) (MMRec: torch.multinomial; here Gumbel
top-k, the same distribution), and renormalise over the kept edges. Only the CSR data
arrays change (dropped edges -> 0), so shapes stay static and the step compiles once.

inputs["adjacency"]: {"ui", "iu": (data, indices, indptr)}; inputs["ui_edge_list"]:
{"users", "items", "weight", "to_iu": [E]} (graphs/bipartite.py edge_list).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def prune_adjacency(adjacency: dict, edges: dict, keep: jax.Array, n_users: int,
                    n_items: int) -> dict:
    """adjacency {"ui", "iu": (data, indices, indptr)} with only the data replaced:
    kept edge (u, i) -> 1/sqrt((rowdeg_u + 1e-7)(coldeg_i + 1e-7)), degrees counted over
    the kept edges; dropped edges -> 0. keep: [E] bool in "ui" order."""
    k = keep.astype(jnp.float32)
    du = jax.ops.segment_sum(k, edges["users"], n_users) + 1e-7
    di = jax.ops.segment_sum(k, edges["items"], n_items) + 1e-7
    vals = jnp.where(keep, jax.lax.rsqrt(du)[edges["users"]] * jax.lax.rsqrt(di)[edges["items"]],
                     0.0).astype(adjacency["ui"][0].dtype)
    return {"ui": (vals, *adjacency["ui"][1:]),
            "iu": (vals[edges["to_iu"]], *adjacency["iu"][1:])}


def sample_keep(key: jax.Array, weight: jax.Array, n_keep: int) -> jax.Array:
    """[E] bool with exactly n_keep True, drawn without replacement proportionally to
    weight [E] (> 0): Gumbel top-k on log weight, distributed as torch.multinomial."""
    e = weight.shape[0]
    if n_keep <= 0:
        return jnp.zeros(e, bool)
    if n_keep >= e:
        return jnp.ones(e, bool)
    score = jnp.log(weight) + jax.random.gumbel(key, (e,), jnp.float32)
    _, idx = jax.lax.top_k(score, n_keep)
    return jnp.zeros(e, bool).at[idx].set(True)


def prune_inputs(inputs: dict, key: jax.Array, p: float, n_users: int, n_items: int) -> dict:
    """inputs with "adjacency" replaced by one pruned draw (p = share of edges dropped)."""
    if p <= 0:
        return inputs
    edges = inputs["ui_edge_list"]
    keep = sample_keep(key, edges["weight"], int(edges["weight"].shape[0] * (1.0 - p)))
    out = dict(inputs)
    out["adjacency"] = prune_adjacency(inputs["adjacency"], edges, keep, n_users, n_items)
    return out
