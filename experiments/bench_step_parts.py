"""bench_step.py's per-part costs: each part of RecGOAT's step as its own jitted forward
+ backward (value_and_grad of <output, fixed cotangent>) on the step's real inputs and
parameters, timed and costed; parts whose loss weight is 0 under the run's config are
timed but marked in_step false.

    measure_parts(trainer, cfg, ["csr"], state, batches, key, reps=3, log=print)
      -> [{"part", "seconds", "flops", "bytes", "in_step", ...}, ...]
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench_common import cost, median_time
from recgoat_jax.graphs import inputs as inputs_lib
from recgoat_jax.model import recgoat_loss
from recgoat_jax.model.fusion import fusion_factory
from recgoat_jax.model.gat import GATLayer, ModalityEncoder, graph_from_edges
from recgoat_jax.model.lightgcn import propagate
from recgoat_jax.model.recgoat import NetOutput


def fwd_bwd(f, diff_args, const_args=(), seed: int = 0):
    """jit(value_and_grad) of <f(*diff_args, *const_args), fixed random cotangent> w.r.t.
    diff_args: the part's forward plus its backward, as inside the step."""
    out = jax.eval_shape(f, *diff_args, *const_args)
    leaves, tdef = jax.tree_util.tree_flatten(out)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    cot = jax.tree_util.tree_unflatten(tdef, [jax.random.normal(k, o.shape, jnp.float32)
                                              for k, o in zip(keys, leaves)])

    def scalar(diff, const):
        o = f(*diff, *const)
        return sum(jnp.vdot(a.astype(jnp.float32), b) for a, b in
                   zip(jax.tree_util.tree_leaves(o), jax.tree_util.tree_leaves(cot)))

    g = jax.jit(jax.value_and_grad(scalar))
    return g, (tuple(diff_args), tuple(const_args))


def measure_parts(tr, cfg, impls, state, batches, key, reps, log) -> list[dict]:
    """Each part of the step jitted alone (forward + backward), on the real inputs/params."""
    m, t = cfg.model, cfg.model.loss
    params = state.params
    inputs = tr.inputs
    mods = tr.model.net.modalities
    batch = batches.row(0)  # step 0's batch (batch.py Batch)
    terms = [n for n, _, _ in tr.model.terms]
    dim, heads = m.dim, m.gat.heads
    rng = {"dropout": key}
    out = []

    def add(name, in_step, f, diff, const=()):
        g, a = fwd_bwd(f, diff, const)
        compiled = g.lower(*a).compile()
        sec = median_time(compiled, a, reps)
        out.append({"part": name, "in_step": in_step, "seconds": sec, **cost(compiled)})
        log(f"[part] {name:<28} {sec:8.4f} s  {out[-1]['flops'] / 1e9:8.2f} GFLOP  "
            f"{out[-1]['bytes'] / 1e9:7.2f} GB")

    # modality projections: h_m = x_m W_m + b_m (gradient to W, b only: x is data)
    def proj(ps, xs):
        return [ModalityEncoder(dim, heads=heads, use_gat=False).apply({"params": p}, x, None,
                                                                        None) for p, x in zip(ps, xs)]
    pp = [{"proj": params[f"encoder_{mm}"]["proj"]} for mm in mods]
    xs = [inputs["item_features"][mm] for mm in mods]
    add("modality projections", True, proj, (pp,), (xs,))
    hs = [jnp.asarray(v) for v in proj(pp, xs)]

    # item GAT: GAT layer + LeakyReLU + dropout over each modality's kNN graph
    def gat(impl, ps, hs_, graphs):
        del impl  # the label only: one aggregation (CSR)
        res = []
        for p, h, (s, r) in zip(ps, hs_, graphs):
            y = GATLayer(dim, heads=heads, feat_drop=m.dropout, attn_drop=m.dropout).apply(
                {"params": p}, graph_from_edges(h, s, r), deterministic=False, rngs=rng)
            res.append(jax.nn.leaky_relu(y, 0.2))
        return res
    gp = [params[f"encoder_{mm}"]["gat_0"] for mm in mods] if m.gat.layers else []
    graphs = [inputs["item_knn"][mm] for mm in mods]
    for impl in impls:
        if gp:
            add(f"item GAT ({impl})", impl == impls[0], functools.partial(gat, impl),
                (gp, hs), (graphs,))

    # user GAT: over the user kNN graph (co-interactions), ego rows as input
    user_on = "user_knn" in tr.model.needs
    ug = inputs["user_knn"] if user_on else inputs_lib.user_knn(tr.dataset, cfg, str(
        Path(cfg.data.root) / ".cache"))
    up = params["user_encoder"]["gat_0"] if user_on else GATLayer(dim, heads=heads).init(
        jax.random.PRNGKey(0), graph_from_edges(params["user_emb"], *ug))["params"]
    for impl in impls:
        add(f"user GAT ({impl})", user_on and impl == impls[0], functools.partial(gat, impl),
            ([up], [params["user_emb"]]), ([ug],))

    # LightGCN propagation (3 layers, layer mean)
    if "adjacency" in inputs:
        add("LightGCN propagation", True,
            lambda u, i, adj: propagate(adj, u, i, m.n_layers),
            (params["user_emb"], params["item_emb"]), (inputs["adjacency"],))

    # OAT maps (paper: z (I + Delta); reference: z (T + Delta), T a Sinkhorn plan)
    e_u, e_i = propagate(inputs["adjacency"], params["user_emb"], params["item_emb"],
                         m.n_layers)
    zs = {mm: jax.nn.leaky_relu(h, 0.2) for mm, h in zip(mods, hs)}
    align = tr.model.net.align

    def oat(ps, z, e):
        return [align(mm, z[mm], e)[0] if not ps[mm] else
                _apply_align(align, mm, ps[mm], z[mm], e) for mm in mods]
    op = {mm: params.get(f"oat_{mm}", {}) for mm in mods}
    add(f"OAT maps ({m.oat})", True, oat, (op, zs, e_i))
    zhat = dict(zip(mods, oat(op, zs, e_i)))

    # fusion
    fusion = fusion_factory(m.fusion, dim, mods, dict(m.init_weights), m.dropout)()
    add(f"fusion ({m.fusion})", True,
        lambda p, e, zh: fusion.apply({"params": p}, e, zh, deterministic=False, rngs=rng),
        (params["fusion"], e_i, zhat))
    z_items = fusion.apply({"params": params["fusion"]}, e_i, zhat)

    # BPR + L2 with the batch-row gathers (their scatter-add backward into full tables)
    def bpr_reg(eu, zi, ue, ie, b):
        o = _net_out(e_u=eu, z_items=zi, user_ego=ue, item_ego=ie)
        rows = recgoat_loss.batch_rows(o, b)
        return (recgoat_loss.bpr_term(o, rows, b)
                + t.l2_weight * recgoat_loss.l2_term(o, rows, b))
    add("BPR + L2 (batch rows)", True, bpr_reg,
        (e_u, z_items, params["user_emb"], params["item_emb"]), (batch,))

    # CMCL at the config's rows (weight 0 by default: timed, not in the step)
    rows = recgoat_loss.cl_rows(batch.pos.shape[0], t.cl_rows)
    for variant in ("paper", "reference"):
        term = functools.partial(recgoat_loss.CMCL_TERMS[variant], modalities=mods,
                                 tau=t.cl_tau, w=t.cl_w, n_rows=t.cl_rows)

        def cmcl(eu, zi, z, ei, b, term=term):
            o = _net_out(e_u=eu, z_items=zi, z=z, e_i=ei)
            return term(o, recgoat_loss.batch_rows(o, b), b)
        add(f"CMCL {variant} ({rows} rows)", "cmcl" in terms and m.cmcl == variant, cmcl,
            (e_u, z_items, zs, e_i), (batch,))

    # paper OT term (weight 0 by default)
    ot_cfg = m.ot.paper

    def ot(zh, ei, b):
        return recgoat_loss.ot_term(_net_out(zhat=zh, e_i=ei), None, b, modalities=mods,
                                    n_items=ot_cfg.batch_items, epsilon=ot_cfg.epsilon,
                                    tau=ot_cfg.tau, iterations=ot_cfg.iterations)
    add(f"OT term ({min(ot_cfg.batch_items, batch.pos.shape[0])} rows)", "ot" in terms, ot,
        (zhat, e_i), (batch,))

    # optimizer update (Adam) on the whole parameter tree
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params)
    upd = jax.jit(lambda s, g: s.apply_gradients(grads=g), donate_argnums=(0,))
    st = jax.tree_util.tree_map(jnp.copy, state)
    compiled = upd.lower(st, grads).compile()
    st = compiled(st, grads)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        st = compiled(st, grads)
        jax.block_until_ready(st)
        ts.append(time.perf_counter() - t0)
    out.append({"part": "optimizer update (Adam)", "in_step": True,
                "seconds": float(np.median(ts)), **cost(compiled)})
    log(f"[part] {'optimizer update (Adam)':<28} {out[-1]['seconds']:8.4f} s")
    return out


def _net_out(**parts) -> NetOutput:
    """A NetOutput holding only the parts a loss term reads (the rest None)."""
    return NetOutput(**{f: parts.get(f) for f in NetOutput.__dataclass_fields__})


def _apply_align(align, m, p, z, e):
    """The aligner (recgoat_parts) with its own parameters, outside RecGOATNet."""
    import flax.linen as nn

    class One(nn.Module):
        @nn.compact
        def __call__(self, z, e):
            return align(m, z, e)[0]
    return One().apply({"params": {f"oat_{m}": p}}, z, e)
