"""Speed, memory and FLOP benchmark of the train step and the full evaluation.

On generated data of the Amazon Baby / Sports / Electronics shapes (users, items and
interactions after 5-core; recgoat_jax.data.synthetic.SHAPES) with 4096-d image and
384-d text item features, for RecGOAT and LightGCN, it measures:

  setup      dataset generation, model inputs (adjacency, kNN graphs), parameter init
  compile    the jitted train step (lower + compile)
  step       median / mean wall time of --steps steps after one warm-up step
  epoch      ESTIMATED as step time x steps per epoch (a full epoch is not run)
  eval       full-ranking evaluation of all valid + test users (first call includes
             the evaluator's compile; later calls are reported separately)
  memory     peak resident set size of the run (CPU: getrusage max RSS of its process);
             on GPU/TPU also the device's peak_bytes_in_use (memory_stats())
  FLOPs      per step, from XLA's cost analysis of the compiled step
             (compiled.cost_analysis()["flops"]); achieved FLOP/s = FLOPs / step time,
             and its ratio to a dense-matmul peak measured in the same run (f32; and bf16
             on accelerators)
  predicted  next to each measured step: the roofline time that cost analysis (FLOPs and
             bytes accessed) gives on an H100 and a TPU v5e at their published peaks
             (experiments/roofline.py: the figures, their sources and what the bound
             leaves out); no accelerator ran it

Each (shape, model) runs in its own subprocess, so peak memory is that run's alone.

    python -m experiments.bench                                   # Baby, both models, d=64
    python -m experiments.bench --shapes baby,sports,electronics --models lightgcn --steps 5
    python -m experiments.bench --dim 800 --mixed-precision on    # paper-size RecGOAT (GPU)
    python -m experiments.bench --trace /tmp/trace                # + a profiler trace

Results: experiments/results/bench_<platform>.json (machine, versions, the command).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from experiments import roofline
from experiments.bench_common import FEATURE_DIMS, cost, device_peak_bytes, header, \
    matmul_peak, rss_peak_bytes, write_json

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- children
def child_matmul(spec: dict) -> dict:
    """Dense matmul throughput: the peak the step's FLOP/s is compared with."""
    import jax

    from recgoat_jax.provenance import versions

    plat = jax.devices()[0].platform
    n = spec["matmul_n"] or (2048 if plat == "cpu" else 8192)
    return {"platform": plat, "versions": versions(),
            **matmul_peak(n, ["float32"] if plat == "cpu" else ["float32", "bfloat16"])}


def child_run(spec: dict) -> dict:
    """One (shape, model): setup, compile, steps, evaluation, memory, FLOPs."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from recgoat_jax import config as config_lib
    from recgoat_jax.data.synthetic import SHAPES, generate
    from recgoat_jax.train.loop import Trainer
    from recgoat_jax.train.step import zeros_acc

    shape, model = spec["shape"], spec["model"]
    res: dict = {"shape": shape, "model": model, "dim": spec["dim"],
                 "batch_size": spec["batch_size"], "platform": jax.devices()[0].platform}
    t = time.perf_counter()
    feats = FEATURE_DIMS if model == "recgoat" else {}
    dims = SHAPES[shape] if shape in SHAPES else tuple(int(x) for x in shape.split("x"))
    ds = generate(*dims, feature_dims=feats, seed=spec["seed"], name=shape,
                  user_feature_dim=spec["user_feature_dim"] if model == "recgoat" else 0)
    res["generate_s"] = time.perf_counter() - t
    res["data"] = {"users": ds.n_users, "items": ds.n_items, "train": ds.train.nnz,
                   "valid": ds.valid.nnz, "test": ds.test.nnz,
                   "item_features": {m: int(v.shape[1]) for m, v in ds.item_features.items()},
                   "user_features": None if ds.user_features is None
                   else int(ds.user_features.shape[1])}
    mp = spec["mixed_precision"]
    mp = res["platform"] != "cpu" if mp == "auto" else mp == "on"
    heads = 8 if spec["dim"] % 8 == 0 else 1
    cfg = config_lib.make_config(
        None, [],
        data={"root": spec["data_root"]},
        model={"name": model, "dim": spec["dim"],
               **({"gat": {"heads": heads}} if model == "recgoat" else {})},
        train={"batch_size": spec["batch_size"], "mixed_precision": mp, "seed": spec["seed"]},
        run={"checkpoint": False, "data_parallel": spec["data_parallel"]},
        eval={"batch_users": spec["eval_batch_users"]})
    res["mixed_precision"] = bool(mp)
    res["data_parallel"] = spec["data_parallel"]

    t = time.perf_counter()
    tr = Trainer(cfg, ds)
    res["inputs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    state = tr.init_state()
    jax.block_until_ready(state)
    res["init_s"] = time.perf_counter() - t
    res["n_params"] = int(sum(x.size for x in jax.tree_util.tree_leaves(state.params)))
    names = tr.aux_names(state)
    t = time.perf_counter()
    host = tr.sampler.epoch(0)
    res["sample_epoch_s"] = time.perf_counter() - t  # host sampling, hidden by prefetch
    batches = tr.device_batches(host)
    n_steps = host.n_steps
    res["steps_per_epoch"] = n_steps
    key = jax.random.fold_in(tr.dropout_key, 0)
    acc = tr.place(zeros_acc(names))

    t = time.perf_counter()
    step = tr.step_fn.lower(state, acc, tr.inputs, batches, jnp.int32(0), key).compile()
    res["compile_s"] = time.perf_counter() - t
    c = cost(step)
    res.update(xla_flops=c["flops"] or None, xla_bytes_accessed=c["bytes"] or None)
    if model == "recgoat":  # the dominant matmuls, counted by hand: x W forward, x^T g for dW
        res["projection_flops_analytic"] = 2 * 2 * ds.n_items * sum(feats.values()) * spec["dim"]

    def run(i):
        nonlocal state, acc
        state, acc = step(state, acc, tr.inputs, batches, jnp.int32(i % n_steps), key)
        jax.block_until_ready(acc)

    t = time.perf_counter()
    run(0)
    res["first_step_s"] = time.perf_counter() - t
    times = []
    for i in range(1, spec["steps"] + 1):
        t = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - t)
    res["step_times_s"] = times
    res["step_s_median"] = float(np.median(times)) if times else res["first_step_s"]
    res["step_s_mean"] = float(np.mean(times)) if times else res["first_step_s"]
    res["epoch_s_estimate"] = res["step_s_median"] * n_steps
    if res["xla_flops"]:
        res["achieved_flops_per_s"] = res["xla_flops"] / res["step_s_median"]
    if not all(np.isfinite(float(v)) for v in jax.device_get(acc).values()):
        res["warning"] = "non-finite loss"

    if spec["trace"]:
        tdir = Path(spec["trace"]) / f"{shape}-{model}"
        with jax.profiler.trace(str(tdir), create_perfetto_trace=True):
            for i in range(3):
                run(spec["steps"] + 1 + i)
        res["trace_dir"] = str(tdir)

    eval_times = []
    for _ in range(spec["eval_runs"]):
        if eval_times and eval_times[0] > spec["eval_repeat_max_s"]:
            break  # a long first evaluation is dominated by its run, not its compile
        t = time.perf_counter()
        metrics = tr.evaluate(state.params)  # floats: synced
        eval_times.append(time.perf_counter() - t)
    if eval_times:
        res["eval_first_s_incl_compile"] = eval_times[0]
        if len(eval_times) > 1:
            res["eval_s"] = float(np.median(eval_times[1:]))
        res["eval_users"] = {s: tr.evaluator.n_evaluated(s) for s in ("valid", "test")}
        res["valid_recall@20_after_few_steps"] = metrics["valid"].get("recall@20")
    res["peak_rss_bytes"] = rss_peak_bytes()
    res["device_peak_bytes"] = device_peak_bytes()
    return res


# ----------------------------------------------------------------------------- parent
def _spawn(kind: str, spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "experiments.bench", "--child", kind, json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    t = time.perf_counter()
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f}s"}
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not lines:
        return {**spec, "error": f"exit code {out.returncode} (see stderr above)"}
    res = json.loads(lines[-1][len("RESULT "):])
    res["wall_s"] = time.perf_counter() - t
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="baby", help="comma list of: baby, sports, clothing, "
                    "electronics, or USERSxITEMSxINTERACTIONS (default baby)")
    ap.add_argument("--models", default="recgoat,lightgcn", help="comma list (recgoat,lightgcn)")
    ap.add_argument("--runs", help="explicit SHAPE:MODEL comma list instead of shapes x models, "
                    "e.g. baby:recgoat,baby:lightgcn,electronics:lightgcn")
    ap.add_argument("--dim", type=int, default=64, help="embedding dim (64; the paper: 600-800)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after the warm-up (2)")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                    help="bf16 feature projections; auto = on for GPU/TPU, off on CPU")
    ap.add_argument("--data-parallel", action="store_true",
                    help="run.data_parallel: split the batch over all devices")
    ap.add_argument("--eval-runs", type=int, default=2,
                    help="full evaluations (first includes compile; 0 = skip) (2)")
    ap.add_argument("--eval-repeat-max-s", type=float, default=60.0,
                    help="skip the repeat evaluations when the first took longer (60)")
    ap.add_argument("--eval-batch-users", type=int, default=4096)
    ap.add_argument("--user-feature-dim", type=int, default=0,
                    help="generate user profile features of this dim (RecGOAT user branch)")
    ap.add_argument("--trace", metavar="DIR", help="write a jax.profiler trace of 3 steps per run")
    ap.add_argument("--matmul-n", type=int, default=0, help="matmul size for the peak (auto)")
    ap.add_argument("--data-root", default="data", help="kNN graphs are cached in ROOT/.cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=7200, help="per run, seconds")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    ap.add_argument("--out", help="default experiments/results/bench_<platform>.json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        res = child_matmul(spec) if kind == "matmul" else child_run(spec)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    t0 = time.perf_counter()
    load_start = os.getloadavg()
    peak = _spawn("matmul", {"matmul_n": args.matmul_n}, args.timeout)
    if "error" in peak:
        print(f"matmul peak failed: {peak['error']}", file=sys.stderr)
        return 1
    plat = peak["platform"]
    print(f"[bench] {plat}: matmul peak " + ", ".join(
        f"{k} {peak[k]['flops_per_s'] / 1e9:.1f} GFLOP/s" for k in ("float32", "bfloat16")
        if k in peak), file=sys.stderr)
    runs = []
    if args.runs:
        plan = [tuple(r.split(":")) for r in args.runs.split(",") if r]
    else:
        plan = [(s, m) for s in args.shapes.split(",") if s for m in args.models.split(",") if m]
    for shape, model in plan:
        spec = {"shape": shape, "model": model, "dim": args.dim, "steps": args.steps,
                "batch_size": args.batch_size, "mixed_precision": args.mixed_precision,
                "data_parallel": args.data_parallel, "eval_runs": args.eval_runs,
                "eval_repeat_max_s": args.eval_repeat_max_s,
                "eval_batch_users": args.eval_batch_users,
                "user_feature_dim": args.user_feature_dim, "trace": args.trace,
                "data_root": args.data_root, "seed": args.seed}
        print(f"[bench] {shape} / {model} ...", file=sys.stderr, flush=True)
        r = _spawn("run", spec, args.timeout)
        ref = "bfloat16" if r.get("mixed_precision") and "bfloat16" in peak else "float32"
        if r.get("achieved_flops_per_s"):
            r["matmul_peak_ref"] = ref
            r["fraction_of_matmul_peak"] = r["achieved_flops_per_s"] / peak[ref]["flops_per_s"]
        r["predicted_step"] = roofline.predict(r.get("xla_flops"), r.get("xla_bytes_accessed"),
                                               bf16=bool(r.get("mixed_precision")))
        runs.append(r)
        print("[bench]   " + ", ".join(
            f"{k} {r[k]:.3g}" for k in ("compile_s", "step_s_median", "epoch_s_estimate",
                                        "eval_s", "eval_first_s_incl_compile")
            if isinstance(r.get(k), (int, float))) +
            (f", peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB" if "peak_rss_bytes" in r
             else "") + (f", ERROR {r['error']}" if "error" in r else ""),
            file=sys.stderr, flush=True)
        if r["predicted_step"] and "step_s_median" in r:
            print(f"[bench]   step {plat} {r['step_s_median'] * 1e3:.4g} ms measured; "
                  f"{roofline.describe(r['predicted_step'])} "
                  f"({(r.get('xla_flops') or 0) / 1e9:.3g} GFLOP, "
                  f"{(r.get('xla_bytes_accessed') or 0) / 1e9:.3g} GB accessed)",
                  file=sys.stderr, flush=True)

    result = {  # the parent imports no JAX: the versions are the matmul child's
        **header(args.note, load_start, plat, with_versions=False),
        "versions": peak["versions"],
        "matmul_peak": {k: v for k, v in peak.items() if k in ("n", "float32", "bfloat16")},
        "definitions": {
            "step_s_median": "median wall time of one train step (blocked), after a warm-up step",
            "epoch_s_estimate": "step_s_median x steps_per_epoch (an estimate; no full epoch run)",
            "eval_first_s_incl_compile": "first full evaluation of valid + test, incl. compile",
            "eval_s": "median of the later full evaluations (valid + test, all users)",
            "xla_flops": "XLA cost analysis of the compiled step; while-loop bodies (e.g. "
                         "Sinkhorn iterations) are counted once, so a lower bound there",
            "fraction_of_matmul_peak": "achieved_flops_per_s / the dense matmul peak measured "
                                       "in this run (matmul_peak_ref dtype)",
            "peak_rss_bytes": "getrusage max RSS of the run's own subprocess",
            "device_peak_bytes": "accelerator memory_stats()['peak_bytes_in_use'] (None on CPU)",
            "predicted_step": roofline.DEFINITION,
        },
        "runs": runs,
        "total_wall_s": time.perf_counter() - t0,
    }
    out = Path(args.out or ROOT / "experiments" / "results" / f"bench_{plat}.json")
    write_json(out, result)
    print(f"[bench] wrote {out}", file=sys.stderr)
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
