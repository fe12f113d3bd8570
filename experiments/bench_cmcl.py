"""Blockwise CMCL against the dense form it replaced, side by side in ONE process.

The dense form (recgoat_jax.infonce.dense_info_nce: the [B, B] logits held whole) is
swapped in for the blockwise InfoNCE while a program is traced, so both run the same
CMCL code otherwise. Programs alternate A B A B ... after one warm-up call each, so load
changes hit both; medians and minima are reported, and ratios of both.

  terms   the CMCL term alone, forward + backward (value_and_grad w.r.t. every view) on
          random [B, d] views: the released code's form (model.cmcl=reference: 1 + 6
          InfoNCE) and the paper's (1 + 2), and one InfoNCE;
  steps   the whole jitted train step (train/step.py) at a published shape (Baby by
          default) and --dim, batch --batch-size: the released code's variants
          (model.oat=reference, model.cmcl=reference, negatives from all items) and the
          paper's (model.oat=paper, model.cmcl=paper, model.loss.ot_weight 0.1), both
          with the published Baby loss weights (recgoat_baby.yaml: model.loss.cl_weight
          0.032, cl_rows 0 = the whole batch).

Each program also gets XLA's cost analysis (FLOPs, bytes accessed) and the roofline time
it predicts on an H100 and a TPU v5e (experiments/roofline.py; labelled "predicted").
XLA counts a while-loop body once, so the blockwise term is costed traced with its tile
loops unrolled (infonce.info_nce(..., unroll=True)); a blockwise step's cost is its rolled cost plus
that difference for its CMCL term ("loop-corrected").

    python -m experiments.bench_cmcl                         # B 4096, d 64, Baby steps
    python -m experiments.bench_cmcl --no-steps --dim 200 --reps 5
    python -m experiments.bench_cmcl --batch-size 8192 --no-steps

Results: experiments/results/cmcl_blockwise_<platform>.json (machine, versions, command).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import roofline
from experiments.bench_common import FEATURE_DIMS, add_malloc, choose_malloc, cost, header, \
    matmul_peak, write_json
from recgoat_jax import config as config_lib, infonce
from recgoat_jax.model import alignment

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("dense", "blockwise")


TILE: dict = {}  # block_rows / block_cols for the blockwise InfoNCE (--block-rows/-cols)


@contextlib.contextmanager
def info_nce_impl(impl: str, unroll: bool = False):
    """alignment.info_nce (what both CMCL forms call) is the dense form while inside, or
    the blockwise one with the --block-rows / --block-cols tile (unroll: its tile loops
    written out, whatever the caller asks, for the cost analysis)."""
    saved = alignment.info_nce
    if impl == "dense":
        alignment.info_nce = lambda a, b, tau, weight=None, **_: infonce.dense_info_nce(
            a, b, tau, weight)
    elif TILE or unroll:
        alignment.info_nce = lambda *a, **k: infonce.info_nce(
            *a, **{**k, **TILE, **({"unroll": True} if unroll else {})})
    try:
        yield
    finally:
        alignment.info_nce = saved


def compile_under(impl: str, fn, *args):
    """jit(fn) traced and compiled with `impl`'s InfoNCE (a fresh function: JAX's trace
    cache, keyed on the function, must not hand back the other impl's trace)."""
    with info_nce_impl(impl):
        return jax.jit(lambda *a: fn(*a)).lower(*args).compile()


def alternate(calls: dict, reps: int) -> dict:
    """calls: name -> zero-argument function that runs and blocks. One warm-up call each,
    then reps rounds of every call in turn -> name -> list of seconds."""
    for f in calls.values():
        f()
    times = {k: [] for k in calls}
    for _ in range(reps):
        for k, f in calls.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return times


def summarise(times: list[float]) -> dict:
    return {"times_s": times, "median_s": float(np.median(times)), "min_s": float(min(times))}


def term_fns(batch: int, tau: float, w_cl: float):
    """name -> (loss of a list of views, number of views). Weight: all rows real."""
    wt = jnp.ones((batch,), jnp.float32)

    def reference(v):
        u, zi, i_id, img, txt, n_id, n_img, n_txt = v
        return alignment.cmcl_reference({"id": i_id, "image": img, "text": txt},
                                        {"id": n_id, "image": n_img, "text": n_txt}, tau, wt,
                                        e_u=u, z_pos=zi, w=w_cl)

    def paper(v):
        u, zi, img, txt = v
        return alignment.cmcl_paper([img, txt], zi, u, zi, tau, w_cl, wt)

    def one(v):
        return alignment.info_nce(v[0], v[1], tau, wt)

    return {"CMCL reference (1 + 6 InfoNCE)": (reference, 8),
            "CMCL paper (1 + 2 InfoNCE)": (paper, 4), "one InfoNCE": (one, 2)}


def bench_terms(args, peak_fps, log) -> list[dict]:
    out = []
    for name, (loss, n_views) in term_fns(args.batch_size, args.tau, args.cl_w).items():
        keys = jax.random.split(jax.random.PRNGKey(args.seed), n_views)
        views = [jax.random.normal(k, (args.batch_size, args.dim), jnp.float32) for k in keys]
        vg = jax.value_and_grad(loss)
        comp = {impl: compile_under(impl, vg, views) for impl in IMPLS}
        vals = {impl: comp[impl](views) for impl in IMPLS}
        v_d, g_d = vals["dense"]
        v_b, g_b = vals["blockwise"]
        err = max(float(jnp.max(jnp.abs(a - b))) / max(float(jnp.max(jnp.abs(a))), 1e-30)
                  for a, b in zip(g_d, g_b))
        with info_nce_impl("blockwise", unroll=True):
            unrolled = jax.jit(vg).lower(views).compile()
        times = alternate({impl: functools.partial(
            lambda c, v: jax.block_until_ready(c(v)), comp[impl], views) for impl in IMPLS},
            args.reps)
        r = {"term": name, "batch": args.batch_size, "dim": args.dim,
             "loss_dense": float(v_d), "loss_blockwise": float(v_b),
             "max_grad_error_rel": err, "impls": {}}
        for impl in IMPLS:
            c = cost(comp[impl])
            if impl == "blockwise":
                c = {**cost(unrolled), "rolled": c}
            s = summarise(times[impl])
            r["impls"][impl] = {**s, **c, "fraction_of_matmul_peak":
                                c["flops"] / s["median_s"] / peak_fps,
                                "predicted": roofline.predict(c["flops"], c["bytes"])}
        r["speedup_median"] = r["impls"]["dense"]["median_s"] / r["impls"]["blockwise"]["median_s"]
        r["speedup_min"] = r["impls"]["dense"]["min_s"] / r["impls"]["blockwise"]["min_s"]
        out.append(r)
        for impl in IMPLS:
            x = r["impls"][impl]
            log(f"[term] {name:<32} {impl:<9} {x['median_s']:8.4f} s (min {x['min_s']:.4f})"
                f"  {x['flops'] / 1e9:6.2f} GFLOP {x['bytes'] / 1e9:6.2f} GB"
                f"  {x['fraction_of_matmul_peak']:4.0%} of peak  "
                + roofline.describe(x["predicted"]))
        log(f"[term] {name:<32} blockwise speed-up {r['speedup_median']:.2f}x median, "
            f"{r['speedup_min']:.2f}x min; loss {float(v_d):.6f} vs {float(v_b):.6f}, "
            f"max grad error {err:.1e} of the largest entry")
    return out


def step_config(variant: str, args):
    """The published Baby settings (recgoat_baby.yaml) at --dim and --batch-size, in the
    released code's variants or the paper's."""
    heads = 8 if args.dim % 8 == 0 else 1
    sets = {"released": {"model": {"oat": "reference", "cmcl": "reference"},
                         "train": {"exclude_train_negatives": False}},
            "paper": {"model": {"oat": "paper", "cmcl": "paper"}, "train": {}}}[variant]
    return config_lib.make_config(
        ROOT / "recgoat_jax" / "configs" / "recgoat_baby.yaml", args.set,
        data={"root": args.data_root},
        model={"dim": args.dim, "gat": {"heads": heads}, **sets["model"]},
        train={"batch_size": args.batch_size, "mixed_precision": False, "seed": args.seed,
               **sets["train"]}, run={"checkpoint": False, "tensorboard": False})


def bench_steps(args, ds, terms, peak_fps, log) -> list[dict]:
    from recgoat_jax.model.recgoat import build
    from recgoat_jax.train.loop import Trainer
    from recgoat_jax.train.step import make_train_step, zeros_acc

    term_of = {"released": "CMCL reference (1 + 6 InfoNCE)", "paper": "CMCL paper (1 + 2 InfoNCE)"}
    out = []
    for variant in args.steps.split(","):
        cfg = step_config(variant, args)
        tr = Trainer(cfg, ds)
        host = tr.sampler.epoch(0)
        batches = tr.device_batches(host)
        key = jax.random.fold_in(tr.dropout_key, 0)
        state0 = tr.init_state()
        names = tr.aux_names(state0)
        compiled, states, accs = {}, {}, {}
        for impl in IMPLS:
            fn = make_train_step(build(cfg, tr.shapes), tr.tx)
            states[impl] = jax.tree_util.tree_map(jnp.copy, state0)
            accs[impl] = zeros_acc(names)
            t = time.perf_counter()
            with info_nce_impl(impl):
                compiled[impl] = fn.lower(states[impl], accs[impl], tr.inputs, batches,
                                          jnp.int32(0), key).compile()
            log(f"[step] {variant} {impl}: compiled in {time.perf_counter() - t:.1f} s")

        def run(impl, i=[0]):  # noqa: B006  (a step counter shared by both impls)
            i[0] += 1
            states[impl], accs[impl] = compiled[impl](states[impl], accs[impl], tr.inputs,
                                                      batches, jnp.int32(i[0] % host.n_steps),
                                                      key)
            jax.block_until_ready(accs[impl])

        times = alternate({impl: functools.partial(run, impl) for impl in IMPLS}, args.steps_reps)
        r = {"variant": variant, "shape": args.shape, "dim": args.dim, "batch": args.batch_size,
             "loss_terms": [n for n, _, _ in tr.model.terms],
             "overrides": {"model.oat": cfg.model.oat, "model.cmcl": cfg.model.cmcl,
                           "model.loss.cl_weight": cfg.model.loss.cl_weight,
                           "model.loss.ot_weight": cfg.model.loss.ot_weight,
                           "model.loss.cl_rows": cfg.model.loss.cl_rows,
                           "train.exclude_train_negatives": cfg.train.exclude_train_negatives},
             "steps_per_epoch": host.n_steps, "impls": {}}
        term = next((t for t in terms if t["term"] == term_of[variant]), None)
        for impl in IMPLS:
            c = cost(compiled[impl])
            if impl == "blockwise" and term is not None:  # add the tiles the loop hid
                tb = term["impls"]["blockwise"]
                c = {"flops": c["flops"] + tb["flops"] - tb["rolled"]["flops"],
                     "bytes": c["bytes"] + tb["bytes"] - tb["rolled"]["bytes"],
                     "rolled": c, "loop_corrected": True}
            s = summarise(times[impl])
            loss = float(jax.device_get(accs[impl]["loss"]))
            r["impls"][impl] = {**s, **c, "epoch_s_estimate": s["median_s"] * host.n_steps,
                                "finite_loss": bool(np.isfinite(loss)),
                                "fraction_of_matmul_peak": c["flops"] / s["median_s"] / peak_fps,
                                "predicted": roofline.predict(c["flops"], c["bytes"])}
        r["speedup_median"] = r["impls"]["dense"]["median_s"] / r["impls"]["blockwise"]["median_s"]
        r["speedup_min"] = r["impls"]["dense"]["min_s"] / r["impls"]["blockwise"]["min_s"]
        out.append(r)
        for impl in IMPLS:
            x = r["impls"][impl]
            log(f"[step] {variant:<9} {impl:<9} {x['median_s']:8.4f} s (min {x['min_s']:.4f})"
                f"  {x['flops'] / 1e9:6.2f} GFLOP {x['bytes'] / 1e9:6.2f} GB  "
                + roofline.describe(x["predicted"]))
        log(f"[step] {variant:<9} blockwise speed-up {r['speedup_median']:.2f}x median, "
            f"{r['speedup_min']:.2f}x min")
        del compiled, states, accs, tr
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--cl-w", type=float, default=0.5)
    ap.add_argument("--block-rows", type=int, default=None,
                    help="blockwise tile rows (default: infonce.tile_shape's)")
    ap.add_argument("--block-cols", type=int, default=None,
                    help="blockwise tile columns (default: infonce.tile_shape's)")
    ap.add_argument("--reps", type=int, default=7, help="timed rounds per term (7)")
    ap.add_argument("--shape", default="baby", help="step data shape (baby)")
    ap.add_argument("--steps", default="released,paper",
                    help="step variants to time: released, paper (both)")
    ap.add_argument("--no-steps", action="store_true", help="only the CMCL terms")
    ap.add_argument("--steps-reps", type=int, default=5, help="timed rounds per step (5)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the steps (repeatable)")
    ap.add_argument("--data-root", default="data", help="kNN graphs are cached in ROOT/.cache")
    ap.add_argument("--seed", type=int, default=0)
    add_malloc(ap)
    ap.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    ap.add_argument("--out", help="default experiments/results/cmcl_blockwise_<platform>.json")
    args = ap.parse_args(argv)
    if argv is None:  # run as a script: the allocator must be set before the process starts
        choose_malloc(args.malloc)

    TILE.update({k: v for k, v in (("block_rows", args.block_rows),
                                   ("block_cols", args.block_cols)) if v})
    tile = infonce.tile_shape(args.batch_size, args.batch_size, args.block_rows, args.block_cols)
    t0, load_start = time.perf_counter(), os.getloadavg()
    plat = jax.devices()[0].platform
    log = functools.partial(print, file=sys.stderr, flush=True)
    peak = matmul_peak(2048 if plat == "cpu" else 8192, ["float32"])
    peak_fps = peak["float32"]["flops_per_s"]
    log(f"[cmcl] matmul peak f32 {peak_fps / 1e9:.1f} GFLOP/s; B {args.batch_size}, "
        f"d {args.dim}, blockwise tiles {tile[0]} x {tile[1]}")
    terms = bench_terms(args, peak_fps, log)
    steps = []
    if not args.no_steps:
        from recgoat_jax.data.synthetic import SHAPES, generate

        dims = SHAPES.get(args.shape) or tuple(int(x) for x in args.shape.split("x"))
        ds = generate(*dims, feature_dims=FEATURE_DIMS, seed=args.seed, name=args.shape)
        steps = bench_steps(args, ds, terms, peak_fps, log)
    result = {
        **header(args.note, load_start, plat),
        "matmul_peak": peak,
        "tile": {"block_rows": tile[0], "block_cols": tile[1]},
        "terms": terms,
        "steps": steps,
        "definitions": {
            "median_s, min_s": "of the timed calls; the impls alternate after one warm-up "
                               "call each",
            "speedup_median / speedup_min": "dense / blockwise of the medians / the minima",
            "flops, bytes": "XLA cost analysis of the compiled program; blockwise terms "
                            "traced with unrolled tile loops (rolled: as run); blockwise "
                            "steps loop-corrected with their term's difference",
            "max_grad_error_rel": "max |dense - blockwise| over all view gradients / the "
                                  "largest dense entry",
            "fraction_of_matmul_peak": "flops / median_s / the f32 matmul peak measured here",
            "epoch_s_estimate": "median step x steps per epoch",
            "predicted": roofline.DEFINITION,
        },
        "total_wall_s": time.perf_counter() - t0,
    }
    out = Path(args.out or ROOT / "experiments" / "results" / f"cmcl_blockwise_{plat}.json")
    write_json(out, result)
    log(f"[cmcl] wrote {out} in {result['total_wall_s']:.0f} s")
    ok = all(x["finite_loss"] for s in steps for x in s["impls"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
