"""RecGOAT's train step, variants side by side, and its cost per part, in ONE process
(so ratios are measured on one machine state).

On generated data of a published shape (default Amazon Baby: 19,400 users, 7,038 items,
4096-d image + 384-d text features; recgoat_jax.data.synthetic.SHAPES), RecGOAT at
--dim (800) and --batch-size (4096) with the schema's defaults otherwise (what
experiments/bench.py runs), it measures:

  peak     dense matmul FLOP/s (f32; and bf16 on accelerators), same process
  step     the whole jitted train step (train/step.py) for each spec in --impls (csr:
           the CSR GAT aggregation, the only one since issue 23 (the per-edge form timed
           before is the tests' reference, tests/gat_reference.py); a +bf16 suffix turns
           train.mixed_precision on for that step, +nodrop sets dropout 0),
           steps interleaved A B A B ... so load changes hit both; median step time, XLA
           cost analysis (FLOPs, bytes accessed), FLOP/s and its fraction of the peak (bf16
           steps: of the bf16 peak), and the ratio of the medians (each other's time / the
           first impl's). experiments/bench_step_repeat.py repeats this in fresh processes.
  predicted  next to each step: the roofline time its cost analysis (FLOPs, bytes) gives on
           an H100 and a TPU v5e at their published peaks (experiments/roofline.py);
           no accelerator ran it. A step with CMCL counts its blockwise InfoNCE tiles
           once (a while loop): experiments/bench_cmcl.py gives loop-corrected numbers
  parts    each part of the step as its own jitted forward + backward (value_and_grad of
           <output, fixed cotangent>) on the step's real inputs and parameters: modality
           projections, item GAT (each impl), user GAT, LightGCN propagation, OAT maps,
           fusion, BPR + L2 with the batch-row gathers, CMCL (paper / reference) and the
           paper OT term at the config's sizes, the Adam update. Time, FLOPs, bytes, share
           of the (first impl's) step, fraction of the matmul peak. Parts whose loss weight
           is 0 under the run's config (CMCL, OT, user GAT without user features) are
           timed but marked in_step false.

    python experiments/bench_step.py                          # Baby, d 800, B 4096
    python experiments/bench_step.py --shape sports --dim 600 --steps 3
    python experiments/bench_step.py --set train.lambda_cl=0.032 --set train.lambda_ot=0.1
    python experiments/bench_step.py --impls csr,csr+bf16,csr+nodrop

Results: experiments/results/step_breakdown_<platform>.json (machine, versions, command).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from recgoat_jax import config as config_lib, hostmem  # noqa: E402
from recgoat_jax.data.synthetic import SHAPES, generate  # noqa: E402
from recgoat_jax.graphs import inputs as inputs_lib  # noqa: E402
from recgoat_jax.model import recgoat_loss  # noqa: E402
from recgoat_jax.model.fusion import fusion_factory  # noqa: E402
from recgoat_jax.model.gat import GATLayer, ModalityEncoder, graph_from_edges  # noqa: E402
from recgoat_jax.model.lightgcn import propagate  # noqa: E402
from recgoat_jax.model.recgoat import NetOutput, build  # noqa: E402
from recgoat_jax.train.loop import Trainer, versions  # noqa: E402
from recgoat_jax.train.step import make_train_step, zeros_acc  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments"))
import roofline  # noqa: E402  (predicted accelerator times from the cost analysis)
import allocator  # noqa: E402  (--malloc)

FEATURE_DIMS = {"image": 4096, "text": 384}


def run_header(command: str, note: str | None, plat: str, load_start) -> dict:
    """What every benchmark results file starts with: command, date, note, machine
    (with the load average at start and end), versions, host allocator."""
    return {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "note": note,
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpu_count": os.cpu_count(), "device_platform": plat,
                        "loadavg_1_5_15_start": load_start,
                        "loadavg_1_5_15_end": os.getloadavg()},
            "versions": versions(), "allocator": hostmem.setting()}


def cost(compiled) -> dict:
    c = compiled.cost_analysis()
    c = (c[0] if c else {}) if isinstance(c, (list, tuple)) else (c or {})
    return {"flops": float(c.get("flops", 0.0)), "bytes": float(c.get("bytes accessed", 0.0))}


def median_time(fn, args, reps: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def minor_faults() -> int:
    """This process's minor page faults so far (getrusage): a step that allocates fresh
    multi-GB temporaries pays a fault per 4 KiB page it touches, every step."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def device_peak_bytes() -> int | None:
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # CPU: not implemented
        return None
    return int(stats.get("peak_bytes_in_use", 0)) or None if stats else None


def matmul_peak(n: int, dtypes) -> dict:
    out = {"n": n}
    for name in dtypes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n)).astype(name)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n)).astype(name)
        f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
        s = median_time(f, (a, b), 3) if jax.devices()[0].platform == "cpu" else \
            median_time(f, (a, b), 20)
        out[name] = {"seconds": s, "flops_per_s": 2.0 * n ** 3 / s}
    return out


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="baby",
                    help=f"one of {', '.join(SHAPES)} or USERSxITEMSxINTERACTIONS (baby)")
    ap.add_argument("--dim", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--impls", default="csr",
                    help="steps to time, first = the one compared against: csr with "
                         "suffixes that change that step only: +bf16 (train.mixed_precision "
                         "on), +nodrop (model.dropout 0: what the dropout masks cost; "
                         "computes a different step), e.g. csr,csr+bf16 (csr)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per impl (3)")
    ap.add_argument("--part-reps", type=int, default=3, help="timed calls per part (3)")
    ap.add_argument("--no-parts", action="store_true", help="only the whole steps")
    ap.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                    help="train.mixed_precision; auto = on for GPU/TPU, off on CPU")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. train.lambda_cl=0.032 (repeatable)")
    ap.add_argument("--matmul-n", type=int, default=0, help="peak matmul size (auto)")
    ap.add_argument("--data-root", default="data", help="kNN graphs are cached in ROOT/.cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--malloc", choices=("auto", "tuned", "system"), default="auto",
                    help="host allocator (recgoat_jax/hostmem.py): auto = what `recgoat "
                         "train` does (tuned on CPU-only installs), tuned = freed memory "
                         "stays mapped, system = the C library's defaults (auto); "
                         "re-executes this script if needed")
    ap.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    ap.add_argument("--out", help="default experiments/results/step_breakdown_<platform>.json")
    args = ap.parse_args(argv)
    if argv is None:  # run as a script: the allocator must be set before the process starts
        allocator.choose(args.malloc)
    command = shlex.join(["python", "experiments/bench_step.py",
                          *(sys.argv[1:] if argv is None else argv)])
    t0, load_start = time.perf_counter(), os.getloadavg()
    plat = jax.devices()[0].platform
    log = functools.partial(print, file=sys.stderr, flush=True)

    impls = [x for x in args.impls.split(",") if x]
    for spec in impls:
        gat_impl, *suffixes = spec.split("+")
        if gat_impl != "csr" or not set(suffixes) <= {"bf16", "nodrop"}:
            ap.error(f"--impls {spec!r}: expected csr, optionally with +bf16 and/or +nodrop "
                     "(the per-edge 'segment' GAT left the package in issue 23; its timings "
                     "stay in the results JSON)")
    any_bf16 = plat != "cpu" or any(x.endswith("+bf16") for x in impls)
    peak = matmul_peak(args.matmul_n or (2048 if plat == "cpu" else 8192),
                       ["float32", "bfloat16"] if any_bf16 else ["float32"])
    log(f"[step] matmul peak f32 {peak['float32']['flops_per_s'] / 1e9:.1f} GFLOP/s")

    dims = SHAPES.get(args.shape) or tuple(int(x) for x in args.shape.split("x"))
    ds = generate(*dims, feature_dims=FEATURE_DIMS, seed=args.seed,
                  name=args.shape)
    mp = {"auto": plat != "cpu", "on": True, "off": False}[args.mixed_precision]
    heads = 8 if args.dim % 8 == 0 else 1

    def make_cfg(spec):  # "csr", "csr+bf16", "csr+nodrop", ...
        _, *suffixes = spec.split("+")
        drop = {"dropout": 0.0} if "nodrop" in suffixes else {}
        return config_lib.make_config(
            None, args.set, data={"root": args.data_root},
            model={"name": "recgoat", "dim": args.dim, "gat": {"heads": heads}, **drop},
            train={"batch_size": args.batch_size, "checkpoint": False,
                   "mixed_precision": mp or "bf16" in suffixes, "seed": args.seed})

    cfg = make_cfg(impls[0])
    tr = Trainer(cfg, ds)
    peak_ref = "bfloat16" if mp and "bfloat16" in peak else "float32"
    peak_fps = peak[peak_ref]["flops_per_s"]
    host = tr.sampler.epoch(0)
    batches = tr.device_batches(host)
    key = jax.random.fold_in(tr.dropout_key, 0)
    state0 = tr.init_state()
    names = tr.aux_names(state0)

    # ---- whole steps, interleaved
    steps, states, accs, step_inputs = {}, {}, {}, {}
    res_steps = {}
    for impl in impls:
        icfg = make_cfg(impl)
        model = build(icfg, tr.shapes)
        fn = make_train_step(model, tr.tx)
        states[impl] = jax.tree_util.tree_map(jnp.copy, state0)
        accs[impl] = zeros_acc(names)
        # a +bf16 step gets its features stored in bf16, as the trainer would store them
        step_inputs[impl] = (inputs_lib.features_bf16(tr.inputs)
                             if icfg.train.mixed_precision and not mp else tr.inputs)
        t = time.perf_counter()
        steps[impl] = fn.lower(states[impl], accs[impl], step_inputs[impl], batches,
                               jnp.int32(0), key).compile()
        res_steps[impl] = {"compile_s": time.perf_counter() - t, **cost(steps[impl]),
                           "mixed_precision": icfg.train.mixed_precision, "times_s": [],
                           "minor_faults": []}
        log(f"[step] {impl}: compiled in {res_steps[impl]['compile_s']:.1f} s, "
            f"{res_steps[impl]['flops'] / 1e9:.1f} GFLOP, "
            f"{res_steps[impl]['bytes'] / 1e9:.1f} GB accessed")

    def run(impl, i):
        states[impl], accs[impl] = steps[impl](states[impl], accs[impl], step_inputs[impl],
                                               batches,
                                               jnp.int32(i % host.n_steps), key)
        jax.block_until_ready(accs[impl])

    for impl in impls:
        run(impl, 0)  # warm-up
    for i in range(1, args.steps + 1):
        for impl in impls:
            f, t = minor_faults(), time.perf_counter()
            run(impl, i)
            res_steps[impl]["times_s"].append(time.perf_counter() - t)
            res_steps[impl]["minor_faults"].append(minor_faults() - f)
    for impl in impls:
        r = res_steps[impl]
        r["step_s_median"] = float(np.median(r["times_s"]))
        r["step_s_min"] = float(np.min(r["times_s"]))  # load only adds time: the cleanest one
        r["epoch_s_estimate"] = r["step_s_median"] * host.n_steps
        r["flops_per_s"] = r["flops"] / r["step_s_median"]
        # a mixed-precision step against the bf16 peak of this process, f32 against f32
        r["matmul_peak_ref"] = "bfloat16" if r["mixed_precision"] and "bfloat16" in peak \
            else "float32"
        r["fraction_of_matmul_peak"] = r["flops_per_s"] / peak[r["matmul_peak_ref"]]["flops_per_s"]
        loss = float(jax.device_get(accs[impl]["loss"]))
        r["finite_loss"] = bool(np.isfinite(loss))
        r["predicted"] = roofline.predict(r["flops"], r["bytes"], bf16=r["mixed_precision"])
        log(f"[step] {impl}: {r['step_s_median']:.3f} s/step, "
            f"{r['fraction_of_matmul_peak']:.0%} of the matmul peak, "
            f"{np.median(r['minor_faults']) / 1e3:.0f}k minor page faults per step; "
            + roofline.describe(r["predicted"]))
    first = impls[0]
    ratios = {f"{impl}/{first}": res_steps[impl]["step_s_median"] /
              res_steps[first]["step_s_median"] for impl in impls[1:]}
    ratios_min = {f"{impl}/{first}": res_steps[impl]["step_s_min"] /
                  res_steps[first]["step_s_min"] for impl in impls[1:]}
    log(f"[step] speed-up of {first}: median {ratios}, min {ratios_min}")
    del states, accs, steps

    gat_impls = list(dict.fromkeys(x.split("+")[0] for x in impls))
    parts = [] if args.no_parts else measure_parts(tr, cfg, gat_impls, state0, batches, key,
                                                    args.part_reps, log)
    step_s = res_steps[first]["step_s_median"]
    for p in parts:
        p["share_of_step"] = p["seconds"] / step_s if p["in_step"] else None
        p["flops_per_s"] = p["flops"] / p["seconds"]
        p["fraction_of_matmul_peak"] = p["flops_per_s"] / peak_fps
    in_step = [p for p in parts if p["in_step"]]

    result = {
        **run_header(command, args.note, plat, load_start),
        "setup": {"shape": args.shape, "users": ds.n_users, "items": ds.n_items,
                  "train_interactions": ds.train.nnz, "feature_dims": FEATURE_DIMS,
                  "dim": args.dim, "heads": heads, "batch_size": args.batch_size,
                  "mixed_precision": mp, "overrides": args.set,
                  "steps_per_epoch": host.n_steps,
                  "item_knn_edges": {m: int(s.shape[0]) for m, (s, _) in
                                     tr.inputs["item_knn"].items()},
                  "loss_terms": [n for n, _, _ in tr.model.terms]},
        "matmul_peak": peak,
        "matmul_peak_ref": peak_ref,
        "steps": res_steps,
        "step_time_ratio_vs_" + first: ratios,
        "step_time_ratio_vs_" + first + "_of_min_times": ratios_min,
        "speedup_of_" + first: {k.split("/")[0]: v for k, v in ratios.items()},
        "parts": parts,
        "parts_in_step_sum_s": sum(p["seconds"] for p in in_step) if in_step else None,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device_peak_bytes": device_peak_bytes(),
        "definitions": {
            "step_s_median": "median wall time of one blocked train step; the impls' steps "
                             "run interleaved after one warm-up step each",
            "minor_faults": "getrusage minor page faults during each timed step (4 KiB "
                            "pages first touched: fresh temporaries the allocator mapped)",
            "step_time_ratio_vs_<impl>": "other impl's step_s_median / this impl's "
                                         "(_of_min_times: the same with step_s_min)",
            "flops, bytes": "XLA cost analysis of the compiled function (while-loop bodies, "
                            "e.g. Sinkhorn iterations, blocked edge dots or the blockwise "
                            "InfoNCE tiles, counted once)",
            "fraction_of_matmul_peak": "flops / seconds / the matmul peak of this process",
            "parts": "each part jitted alone as forward + backward (value_and_grad of "
                     "<output, fixed cotangent>) on the step's inputs and parameters; "
                     "share_of_step = seconds / the first impl's step time; parts overlap "
                     "nothing, but XLA fuses across them inside the step, so their sum "
                     "only approximates the step",
            "epoch_s_estimate": "step_s_median x steps_per_epoch (no full epoch run)",
            "peak_rss_bytes": "getrusage max RSS of this process (both steps + parts)",
            "device_peak_bytes": "accelerator memory_stats()['peak_bytes_in_use'] (None on CPU)",
            "predicted": roofline.DEFINITION + " (steps; a step with CMCL counts its "
                         "blockwise InfoNCE tiles once: a while loop)",
        },
        "total_wall_s": time.perf_counter() - t0,
    }
    out = Path(args.out or ROOT / "experiments" / "results" / f"step_breakdown_{plat}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result, log)
    log(f"[step] wrote {out}")
    return 0 if all(r["finite_loss"] for r in res_steps.values()) else 1


def measure_parts(tr, cfg, impls, state, batches, key, reps, log) -> list[dict]:
    """Each part of the step jitted alone (forward + backward), on the real inputs/params."""
    m, t = cfg.model, cfg.train
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
                + t.reg_weight * recgoat_loss.l2_term(o, rows, b))
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


def print_table(res: dict, log) -> None:
    first = next(iter(res["steps"]))
    step_s = res["steps"][first]["step_s_median"]
    log(f"{'part':<30}{'s':>9}{'GFLOP':>9}{'GB':>8}{'share':>8}{'peak':>7}  in step")
    for p in res["parts"]:
        share = f"{p['share_of_step']:.0%}" if p["share_of_step"] is not None else "-"
        log(f"{p['part']:<30}{p['seconds']:9.4f}{p['flops'] / 1e9:9.2f}{p['bytes'] / 1e9:8.2f}"
            f"{share:>8}{p['fraction_of_matmul_peak']:7.0%}  {'yes' if p['in_step'] else 'no'}")
    for impl, r in res["steps"].items():
        log(f"{'whole step (' + impl + ')':<30}{r['step_s_median']:9.4f}{r['flops'] / 1e9:9.2f}"
            f"{r['bytes'] / 1e9:8.2f}{r['step_s_median'] / step_s:8.0%}"
            f"{r['fraction_of_matmul_peak']:7.0%}  " + roofline.describe(r.get("predicted", {})))


if __name__ == "__main__":
    sys.exit(main())
