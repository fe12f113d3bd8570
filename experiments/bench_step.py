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
           first impl's).
  predicted  next to each step: the roofline time its cost analysis (FLOPs, bytes) gives on
           an H100 and a TPU v5e at their published peaks (experiments/roofline.py);
           no accelerator ran it. A step with CMCL counts its blockwise InfoNCE tiles
           once (a while loop): experiments/bench_cmcl.py gives loop-corrected numbers
  parts    each part of the step alone, forward + backward (bench_step_parts.py):
           modality projections, item GAT, user GAT, LightGCN propagation, OAT maps,
           fusion, BPR + L2, CMCL (paper / reference), the paper OT term, the Adam update;
           time, FLOPs, bytes, share of the step, fraction of the matmul peak.

    python -m experiments.bench_step                          # Baby, d 800, B 4096
    python -m experiments.bench_step --shape sports --dim 600 --steps 3
    python -m experiments.bench_step --set model.loss.cl_weight=0.032 --set model.loss.ot_weight=0.1
    python -m experiments.bench_step --impls csr,csr+bf16,csr+nodrop

Results: experiments/results/step_breakdown_<platform>.json (machine, versions, command).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import roofline
from experiments.bench_step_parts import measure_parts
from experiments.bench_common import FEATURE_DIMS, add_malloc, choose_malloc, cost, \
    device_peak_bytes, header, matmul_peak, minor_faults, write_json
from recgoat_jax import config as config_lib
from recgoat_jax.data.synthetic import SHAPES, generate
from recgoat_jax.graphs import inputs as inputs_lib
from recgoat_jax.model.recgoat import build
from recgoat_jax.train.loop import Trainer
from recgoat_jax.train.step import make_train_step, zeros_acc

ROOT = Path(__file__).resolve().parents[1]


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
                    help="config override, e.g. model.loss.cl_weight=0.032 (repeatable)")
    ap.add_argument("--matmul-n", type=int, default=0, help="peak matmul size (auto)")
    ap.add_argument("--data-root", default="data", help="kNN graphs are cached in ROOT/.cache")
    ap.add_argument("--seed", type=int, default=0)
    add_malloc(ap)
    ap.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    ap.add_argument("--out", help="default experiments/results/step_breakdown_<platform>.json")
    args = ap.parse_args(argv)
    if argv is None:  # run as a script: the allocator must be set before the process starts
        choose_malloc(args.malloc)
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
            train={"batch_size": args.batch_size, "mixed_precision": mp or "bf16" in suffixes,
                   "seed": args.seed}, run={"checkpoint": False})

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
        **header(args.note, load_start, plat),
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
    write_json(out, result)
    print_table(result, log)
    log(f"[step] wrote {out}")
    return 0 if all(r["finite_loss"] for r in res_steps.values()) else 1


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
