"""Memory model of the train step (recgoat_jax/train/memory_plan.py), and its check.

  plan     compile (AOT, abstract shapes, nothing allocated) the step of each model at
           each scale (Baby ... 10M users x 1M items) on 1 device, on 8 devices with
           replicated tables, and on 8 devices with the tables row-sharded over 4
           (mesh 2 x 4) or all 8 (mesh 1 x 8); per-device params / Adam / inputs /
           epoch batches and XLA's
           argument + output - alias + temp = predicted peak. Fits on 16 GB (TPU v5e)
           and 80 GB (H100) devices are read off that.
  measure  at 3 scales that run here (1 CPU device, LightGCN), in a fresh subprocess
           each: compile, make the arguments on the device, run 3 steps, and take the
           process's resident-memory growth (VmRSS before the arguments -> VmHWM after
           the steps, peak counter reset in between) as the measured peak. The
           children run under the C library's default allocator (--malloc system): the
           model predicts XLA's buffers, and the `recgoat` CLI's tuned allocator
           (recgoat_jax/hostmem.py) keeps freed memory mapped, which adds to the
           process peak (--malloc tuned measures that).

    python -m experiments.bench_plan                       # both, -> experiments/results/
    python -m experiments.bench_plan --skip-measure --scales baby,10m

Results: experiments/results/memory_model.json and .md (machine, versions, command).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from experiments.bench_common import header
from recgoat_jax import hostmem  # no JAX import

ROOT = Path(__file__).resolve().parents[1]

N_DEV = 8
GB = 10**9
DEVICES_GB = {"tpu_v5e_16gb": 16, "h100_80gb": 80}
FEATURES = (("image", 4096), ("text", 384))
MEASURE_SCALES = ("baby", "100k", "300k")


def _cfg(model: str, dim: int, batch: int):
    from recgoat_jax import config as config_lib

    m = {"name": model, "dim": dim}
    if model == "recgoat":
        m.update(knn={"k": 10})
    return config_lib.make_config(None, [], model=m, train={"batch_size": batch})


def _scale(name: str, model: str):
    from recgoat_jax.train import memory_plan as memory

    s = memory.SCALES[name]
    if model in ("recgoat", "freedom"):
        s = memory.Scale(s.name, s.n_users, s.n_items, s.n_train, FEATURES)
    return s


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


# ------------------------------------------------------------------------------ children
def child_plan(args) -> None:
    import jax

    from recgoat_jax.train import memory_plan as memory

    rows = []
    for model in args.models.split(","):
        for name in args.scales.split(","):
            if model == "recgoat" and name not in args.recgoat_scales.split(","):
                continue
            cfg = _cfg(model, args.dim, args.batch)
            for n, mp in ((1, 1), (N_DEV, 1), (N_DEV, 4), (N_DEV, N_DEV)):
                t = time.perf_counter()
                r = memory.plan_step(cfg, _scale(name, model), jax.devices()[:n], mp)
                r.pop("compiled")
                r["compile_s"] = round(time.perf_counter() - t, 1)
                rows.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    print("RESULT " + json.dumps(rows))


def child_measure(args) -> None:
    import gc

    import jax

    from recgoat_jax.train import memory_plan as memory

    cfg = _cfg("lightgcn", args.dim, args.batch)
    r = memory.plan_step(cfg, _scale(args.scales, "lightgcn"), jax.devices()[:1], 1)
    compiled = r.pop("compiled")
    args_abs = compiled.args_info[0]  # (state, acc, inputs, batches, i, key) as given
    gc.collect()
    rss0 = _status_kb("VmRSS")
    arrays = memory.materialize(tuple(
        jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)
        for x in args_abs))
    jax.block_until_ready(arrays)
    gc.collect()
    rss1 = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    state, acc, inputs, batches, _, key = arrays
    for i in range(3):
        state, acc = compiled(state, acc, inputs, batches, jax.numpy.int32(i), key)
    jax.block_until_ready((state, acc))
    hwm = _status_kb("VmHWM")
    r.update(measured_args_bytes=(rss1 - rss0) * 1024,
             measured_peak_bytes=(hwm - rss0) * 1024)
    print("RESULT " + json.dumps(r))


# -------------------------------------------------------------------------------- parent
def _run_child(argv: list[str], n_dev: int, malloc: str = "system") -> dict | list:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"
           or v != hostmem.TUNABLES}  # a user's own tunables stay
    if malloc == "tuned" and "GLIBC_TUNABLES" not in env:
        env["GLIBC_TUNABLES"] = hostmem.TUNABLES
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={n_dev}").strip()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-m", "experiments.bench_plan", *argv], env=env,
                         capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"child {argv} failed:\n{out.stderr[-4000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _mb(b) -> str:
    return f"{b / 2**20:,.0f}"


def _fits(row) -> dict:
    return {k: row["predicted_peak_bytes"] <= 0.9 * gb * GB for k, gb in DEVICES_GB.items()}


def _tables(r) -> str:
    m = r["model_parallel"]
    if m == 1:
        return "replicated"
    return f"sharded {r['n_devices'] // m} x {m}" + (
        "" if r["n_users"] % m == 0 and r["n_items"] % m == 0 else
        " (rows % M != 0: state tables padded, item features replicated)")


def _markdown(plan: list, measured: list, meta: dict) -> str:
    lines = ["# Memory model of the train step", "",
             f"`{meta['command']}` on {meta['versions']['platform']} "
             f"({meta['machine']['cpu_count']} CPUs), jax {meta['versions']['jax']}. "
             "Per device, MiB. Predicted peak = XLA argument + output - alias + temp of the "
             "step compiled ahead of time for these shapes (CPU backend; GPU/TPU buffer "
             "assignment differs in the temp term). Epoch batches are the whole epoch's "
             "[n_steps, B] triples (the loop keeps them on device). 'fits' = predicted "
             "peak <= 90 % of the device.", "",
             f"## Predicted vs measured (1 CPU device, LightGCN; host allocator: "
             f"{meta.get('measure_malloc')})", "",
             "| scale | users | items | train edges | predicted peak | measured peak | "
             "measured / predicted | args predicted | args measured |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in measured:
        lines.append(f"| {r['scale']} | {r['n_users']:,} | {r['n_items']:,} | "
                     f"{r['n_train']:,} | {_mb(r['predicted_peak_bytes'])} | "
                     f"{_mb(r['measured_peak_bytes'])} | "
                     f"{r['measured_peak_bytes'] / r['predicted_peak_bytes']:.2f} | "
                     f"{_mb(r['xla_argument_bytes'])} | {_mb(r['measured_args_bytes'])} |")
    lines += ["", "## Plan (per device)", "",
              "| model | scale | devices | tables | params | Adam | inputs | batches | "
              "temp | predicted peak | fits 16 GB | fits 80 GB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in plan:
        f = _fits(r)
        lines.append(
            f"| {r['model']} | {r['scale']} | {r['n_devices']} | "
            f"{_tables(r)}"
            f" | {_mb(r['params_bytes'])} | {_mb(r['opt_bytes'])} | {_mb(r['inputs_bytes'])} | "
            f"{_mb(r['batches_bytes'])} | {_mb(r['xla_temp_bytes'])} | "
            f"{_mb(r['predicted_peak_bytes'])} | {'yes' if f['tpu_v5e_16gb'] else 'no'} | "
            f"{'yes' if f['h100_80gb'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=("plan", "measure"), help=argparse.SUPPRESS)
    p.add_argument("--models", default="lightgcn,recgoat")
    p.add_argument("--scales", default="baby,100k,1m,10m")
    p.add_argument("--recgoat-scales", default="baby,100k,1m,10m")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--skip-measure", action="store_true")
    p.add_argument("--malloc", choices=("system", "tuned"), default="system",
                   help="host allocator of the measuring children: system = the C "
                        "library's defaults (what the model predicts), tuned = what "
                        "`recgoat train` runs with (system)")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "memory_model"))
    args = p.parse_args()
    if args.child == "plan":
        return child_plan(args)
    if args.child == "measure":
        return child_measure(args)

    common = ["--dim", str(args.dim), "--batch", str(args.batch)]
    plan = _run_child(["--child", "plan", "--models", args.models, "--scales", args.scales,
                       "--recgoat-scales", args.recgoat_scales, *common], N_DEV)
    measured = [] if args.skip_measure else [
        _run_child(["--child", "measure", "--scales", s, *common], 1, args.malloc)
        for s in MEASURE_SCALES]
    meta = {**header(), "devices_gb": DEVICES_GB,  # JAX imported only now, after the children
            "measure_malloc": None if args.skip_measure else args.malloc}
    for r in plan:
        r["fits"] = _fits(r)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(
        {**meta, "measured": measured, "plan": plan}, indent=1))
    out.with_suffix(".md").write_text(_markdown(plan, measured, meta))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
