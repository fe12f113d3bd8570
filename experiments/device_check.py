"""The prepared accelerator check (`make device-check`): run it whenever a GPU or TPU is at
hand; nothing in the project depends on it (not part of `make test`).

Three parts, each in its own subprocess with its own time limit (a crash or a hang in one
is recorded and the next still runs), all within --budget (450 s; about 6 minutes are
expected on one GPU); the order is numerics tests, bench, train, then the other tests:

  tests   the accelerator-relevant tests on this device: tests/test_lowering.py (every
          program lowers for cuda and tpu), the numerics that differ off CPU
          (test_precision.py: bf16 products and their gradients, test_cmcl_blockwise.py:
          blockwise InfoNCE against the dense form, test_gat_impl_equality.py: the CSR
          step against the per-edge reference, f32 and mixed precision) and
          test_parallel.py (data / model parallel on 8 CPU-simulated devices: the device
          image's JAX version, not its GPU)
  bench   experiments/bench_step.py at Baby shape, d 800, batch 4096, the step in f32 and
          in bf16 (train.mixed_precision) interleaved: seconds per step, XLA's FLOPs and
          bytes, the fraction of the matmul peak measured in that process, and the
          fraction of this device's published peak (experiments/roofline.py: H100, TPU v5e;
          H200 here; found from jax.devices()[0].device_kind) and the measured time over
          the roofline's predicted max(FLOPs / peak, bytes / bandwidth)
  train   a short training on generated Baby-shape data (recgoat_jax.data.synthetic,
          4096-d image + 384-d text features): recgoat_jax/configs/recgoat_baby.yaml
          (d 800; bf16 on an accelerator), a few epochs through recgoat_jax.train.loop.train:
          compile, seconds per epoch, evaluation, device peak memory, finite losses

Writes experiments/results/device_<device kind>.json (machine, versions, the command, each
part's result, time and output tail); --small writes device_<kind>_smoke.json.

    make device-check                       # on the GPU / TPU machine
    make device-check ARGS="--small"        # the same code path on a CPU, small shapes (~5 min)
    python -m experiments.device_check --parts bench,train --epochs 5

The lent GPU machines have JAX but not every package the project uses, and no network:
`python -m experiments.device_check --download-wheels .whl` (here, with network) fetches
the missing pure-Python ones as wheels for Python 3.12; carry .whl along and the check
installs them (pip --no-index --target .cache/device-site) before it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from experiments import roofline  # published peaks
from experiments.bench_common import FEATURE_DIMS, header, write_json

ROOT = Path(__file__).resolve().parents[1]

# the project's imports the lent GPU image lacks (KINDS.md's package list, 2026-11-17), with
# the versions requirements.txt / the .venv pin; pure Python, so one wheel serves all
WHEELS = {"jraph": "jraph==0.0.6.dev0", "ott": "ott-jax==0.6.0", "jaxopt": "jaxopt==0.8.5",
          "tensorboardX": "tensorboardX==2.6.5"}
SITE = ROOT / ".cache" / "device-site"

# group -> (files, seconds allowed); run in this order, numerics (device arithmetic) first
TEST_GROUPS = {
    "numerics": (["tests/test_precision.py", "tests/test_cmcl_blockwise.py",
                  "tests/test_gat_impl_equality.py"], 90),
    "lowering": (["tests/test_lowering.py"], 100),
    "parallel": (["tests/test_parallel.py"], 70),
}


def log(*a):
    print("[device-check]", *a, file=sys.stderr, flush=True)


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_") or "unknown"


# the lent machines may be H200s, which roofline.py does not list: NVIDIA H200 Tensor Core
# GPU datasheet (SXM): the H100's tensor-core and FP32 figures, HBM3e 4.8 TB/s
H200 = {"name": "NVIDIA H200 SXM", "f32_flops": 67e12, "bf16_flops": 989e12,
        "bytes_per_s": 4.8e12}


def published_peak(kind: str) -> tuple[str | None, dict | None]:
    """The published peaks of this device kind: roofline.DEVICES (H100, TPU v5e) or H200
    (None: no published figure here)."""
    k = kind.lower()
    if "h100" in k:
        return "H100", roofline.DEVICES["H100"]
    if "h200" in k:
        return "H200", H200
    if "v5 lite" in k or "v5e" in k or "v5litepod" in k:
        return "TPU v5e", roofline.DEVICES["TPU v5e"]
    return None, None


# ----------------------------------------------------------------------------- wheels
def missing_modules() -> list[str]:
    import importlib.util

    return [m for m in WHEELS if importlib.util.find_spec(m) is None]


def download_wheels(dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "--platform",
           "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(dest),
           *WHEELS.values()]
    log(shlex.join(cmd))
    return subprocess.run(cmd).returncode


def install_wheels(wheels: Path) -> None:
    """Missing modules and a wheel folder: install it to SITE and re-execute with it on
    PYTHONPATH (once)."""
    missing = missing_modules()
    if not missing or os.environ.get("DEVICE_CHECK_SITE"):
        return
    files = sorted(str(p) for p in wheels.glob("*.whl")) if wheels.is_dir() else []
    if not files:
        log(f"missing modules {missing} and no wheels in {wheels}: the parts that import "
            f"them will fail (python -m experiments.device_check --download-wheels {wheels} "
            "on a machine with network)")
        return
    log(f"installing {len(files)} wheels from {wheels} into {SITE} (missing: {missing})")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--upgrade", "--target", str(SITE), *files], check=True)
    env = dict(os.environ, DEVICE_CHECK_SITE="1",
               PYTHONPATH=os.pathsep.join([str(SITE), str(ROOT),
                                           os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


# ----------------------------------------------------------------------------- parts
DEADLINE = [float("inf")]  # time.monotonic() by which every part must have ended (--budget)


def run_part(name: str, cmd: list[str], timeout: float, env=None) -> dict:
    left = DEADLINE[0] - time.monotonic()
    if left < 15:
        log(f"{name}: skipped, the --budget is spent")
        return {"command": shlex.join(cmd), "rc": "skipped", "ok": False, "wall_s": 0.0,
                "output_tail": "skipped: --budget spent"}
    timeout = min(timeout, left)
    env = dict(env or os.environ)  # the checkout importable, as `make` exports it
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
    log(f"{name}: {shlex.join(cmd)} (limit {timeout:.0f} s)")
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        out = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
               else (e.stdout or "")) + ((e.stderr or b"").decode(errors="replace")
                                         if isinstance(e.stderr, bytes) else (e.stderr or ""))
    wall = time.perf_counter() - t
    log(f"{name}: rc {rc} in {wall:.1f} s")
    return {"command": shlex.join(cmd), "rc": rc, "ok": rc == 0, "wall_s": wall,
            "output_tail": out[-4000:]}


def part_tests(args, groups: list[str]) -> dict:
    res = {}
    for g in groups:
        files, limit = TEST_GROUPS[g]
        cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *files]
        if args.small:  # the fast cases only: the code path, not the coverage
            cmd += ["-m", "not slow"]
        r = run_part(f"tests/{g}", cmd, limit)
        tail = r["output_tail"].strip().splitlines()
        summary = next((x for x in reversed(tail) if re.search(
            r"\d+ (passed|failed|error|skipped|deselected)", x)), "")
        r["summary"] = summary.strip("= ")
        r["failed"] = [x for x in tail if x.startswith(("FAILED", "ERROR"))]
        if r["rc"] == 5:  # pytest: no test selected (--small deselects a slow-only file)
            r["ok"], r["summary"] = True, (r["summary"] or "") + " (no test selected)"
        log(f"tests/{g}: {r['summary'] or 'no summary'}")
        res[g] = r
    return res


def part_bench(args, out_dir: Path, kind: str) -> dict:
    out = out_dir / "bench_step.json"
    out.unlink(missing_ok=True)  # only this run's results are read back
    cmd = [sys.executable, "-m", "experiments.bench_step",
           "--shape", args.shape, "--dim", str(args.dim), "--batch-size", str(args.batch),
           "--impls", "csr,csr+bf16", "--mixed-precision", "off", "--no-parts",
           "--steps", str(args.steps), "--out", str(out), "--note", "device_check.py"]
    r = run_part("bench", cmd, args.bench_timeout)
    if not out.is_file():
        return r
    b = json.loads(out.read_text())
    key, peak = published_peak(kind)
    r["steps"] = {}
    for impl, s in b["steps"].items():
        bf16 = s["mixed_precision"]
        row = {"precision": "bf16" if bf16 else "f32", "step_s_median": s["step_s_median"],
               "step_s_min": s["step_s_min"], "compile_s": s["compile_s"],
               "flops": s["flops"], "bytes": s["bytes"], "flops_per_s": s["flops_per_s"],
               "fraction_of_measured_matmul_peak": s["fraction_of_matmul_peak"],
               "measured_matmul_peak_flops_per_s":
                   b["matmul_peak"][s["matmul_peak_ref"]]["flops_per_s"],
               "finite_loss": s["finite_loss"]}
        if peak is not None:
            fpk = peak["bf16_flops" if bf16 else "f32_flops"]
            pred = {"seconds": max(s["flops"] / fpk, s["bytes"] / peak["bytes_per_s"])}
            row.update({
                "published_peak": key,
                "published_peak_flops_per_s": fpk,
                "fraction_of_published_peak": s["flops_per_s"] / fpk,
                "bytes_per_s": s["bytes"] / s["step_s_median"],
                "fraction_of_published_bandwidth": s["bytes"] / s["step_s_median"]
                                                   / peak["bytes_per_s"],
                "predicted_s": pred.get("seconds"),
                "measured_over_predicted": (s["step_s_median"] / pred["seconds"]
                                            if pred.get("seconds") else None)})
        r["steps"][row["precision"]] = row
        log(f"bench {row['precision']}: {row['step_s_median'] * 1e3:.2f} ms/step, "
            f"{row['flops_per_s'] / 1e12:.2f} TFLOP/s = "
            f"{row['fraction_of_measured_matmul_peak']:.1%} of the measured matmul peak"
            + (f", {row['fraction_of_published_peak']:.1%} of the published {key} peak"
               if peak is not None else " (no published peak for this device in roofline.py)"))
    r["setup"] = b.get("setup")
    r["matmul_peak"] = b.get("matmul_peak")
    r["device_peak_bytes"] = b.get("device_peak_bytes")
    return r


def part_train(args, out_dir: Path) -> dict:
    out = out_dir / "train.json"
    out.unlink(missing_ok=True)  # only this run's results are read back
    cmd = [sys.executable, "-m", "experiments.device_check", "--_train-child", str(out),
           "--shape", args.shape, "--dim", str(args.dim), "--batch-size", str(args.batch),
           "--epochs", str(args.epochs)]
    r = run_part("train", cmd, args.train_timeout)
    if out.is_file():
        r.update(json.loads(out.read_text()))
        r["ok"] = r["ok"] and r.get("finite_losses", False)
        log(f"train: {r.get('epochs_run')} epochs, {r.get('epoch_time_s_median')} s/epoch, "
            f"evaluation {r.get('eval_time_s_median')} s, compile {r.get('compile_time_s')} s")
    return r


def train_child(path: Path, shape: str, dim: int, batch: int, epochs: int) -> int:
    """The training part, in its own process: generated data -> loop.train -> JSON."""
    import jax
    import numpy as np

    from recgoat_jax import config as config_lib
    from recgoat_jax.data.synthetic import SHAPES, generate
    from recgoat_jax.train.loop import train

    dims = SHAPES.get(shape) or tuple(int(x) for x in shape.split("x"))
    t = time.perf_counter()
    ds = generate(*dims, feature_dims=FEATURE_DIMS, seed=0, name=f"synthetic-{shape}")
    gen_s = time.perf_counter() - t
    accel = jax.devices()[0].platform != "cpu"
    heads = 8 if dim % 8 == 0 else 1
    overrides = [f"model.dim={dim}", f"model.gat.heads={heads}", f"train.epochs={epochs}",
                 f"train.batch_size={batch}", "run.checkpoint=false",
                 "run.tensorboard=false", "train.eval_every=1",
                 f"train.mixed_precision={str(accel).lower()}",
                 f"data.root={ROOT / '.cache' / 'device-check'}"]
    cfg = config_lib.make_config(ROOT / "recgoat_jax" / "configs" / "recgoat_baby.yaml",
                                 overrides)
    run_dir = ROOT / ".cache" / "device-check" / "run"
    res = train(cfg, run_dir=run_dir, dataset=ds, progress=False, log=lambda *a: None)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    losses = [v for r in rows for k, v in r.items() if k.startswith("train/")]
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001  (CPU: not implemented)
        stats = {}
    out = {"config": "recgoat_jax/configs/recgoat_baby.yaml", "overrides": overrides,
           "data": {"shape": shape, "users": ds.n_users, "items": ds.n_items,
                    "train_interactions": int(ds.train.nnz), "feature_dims": FEATURE_DIMS,
                    "generate_s": gen_s},
           "epochs_run": res["epochs_run"], "compile_time_s": res["compile_time_s"],
           "eval_compile_time_s": res["eval_compile_time_s"],
           "epoch_time_s": [r["epoch_time_s"] for r in rows],
           "epoch_time_s_median": res["epoch_time_s_median"],
           "eval_time_s_median": res["eval_time_s_median"], "wall_time_s": res["wall_time_s"],
           "losses": [{k: v for k, v in r.items() if k.startswith("train/")} for r in rows],
           "finite_losses": bool(losses) and bool(np.all(np.isfinite(losses))),
           "test": res["test"], "n_params": res["n_params"],
           "device_peak_bytes": int(stats.get("peak_bytes_in_use", 0)) or None}
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true",
                    help="small shapes and the fast tests only: the code path on a CPU")
    ap.add_argument("--parts", default="tests,bench,train", help="(tests,bench,train)")
    ap.add_argument("--test-groups", default=",".join(TEST_GROUPS),
                    help=f"({','.join(TEST_GROUPS)})")
    ap.add_argument("--shape", help="bench / train shape (baby; --small 2000x800x20000)")
    ap.add_argument("--dim", type=int, help="embedding size (800; --small 64)")
    ap.add_argument("--batch-size", dest="batch", type=int, help="(4096; --small 1024)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per precision (5)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (3; --small 2)")
    ap.add_argument("--budget", type=float, default=450,
                    help="seconds for all parts together (450: the check stays under 8 "
                         "minutes; a part past it is skipped, one reaching it is stopped)")
    ap.add_argument("--bench-timeout", type=float, default=120)
    ap.add_argument("--train-timeout", type=float, default=120)
    ap.add_argument("--wheels", type=Path, default=ROOT / ".whl",
                    help="wheels for the modules this Python lacks (.whl)")
    ap.add_argument("--download-wheels", type=Path, metavar="DIR",
                    help="only fetch those wheels (Python 3.12, needs network) into DIR")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--_train-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.download_wheels:
        return download_wheels(args.download_wheels)
    small = args.small
    args.shape = args.shape or ("2000x800x20000" if small else "baby")
    args.dim = args.dim or (64 if small else 800)
    args.batch = args.batch or (1024 if small else 4096)
    if small and args.epochs == 3:
        args.epochs = 2
    if args._train_child:
        return train_child(args._train_child, args.shape, args.dim, args.batch, args.epochs)
    install_wheels(args.wheels)
    t0, load_start = time.perf_counter(), os.getloadavg()
    import jax

    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", "") or dev.platform
    name = slug(kind if dev.platform != "cpu" else "cpu") + ("_smoke" if small else "")
    log(f"device {dev.platform}: {kind} ({jax.device_count()} device(s)); "
        f"jax {jax.__version__}")
    head = header(load_start=load_start, device_platform=dev.platform)
    del jax  # the parts run in their own processes; this one holds no device memory
    out_dir = ROOT / ".cache" / "device-check"
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [p for p in args.parts.split(",") if p]
    groups = [g for g in TEST_GROUPS if g in args.test_groups.split(",")]
    DEADLINE[0] = time.monotonic() + args.budget
    # the device's own arithmetic first; lowering and the simulated-device tests, which a
    # CPU runs as well (make test), last: a spent budget skips those
    res: dict = {"tests": {}} if "tests" in parts else {}
    if "tests" in parts and "numerics" in groups:
        res["tests"].update(part_tests(args, ["numerics"]))
    if "bench" in parts:
        res["bench"] = part_bench(args, out_dir, kind)
    if "train" in parts:
        res["train"] = part_train(args, out_dir)
    if "tests" in parts:
        res["tests"].update(part_tests(args, [g for g in groups if g != "numerics"]))
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        smi = None
    ok = all(r.get("ok") for r in res.get("tests", {}).values()) and all(
        res[p].get("ok") for p in ("bench", "train") if p in res)
    head["machine"].update(device_kind=kind, nvidia_smi=smi)
    result = {
        **head, "small": small, "ok": ok,
        "settings": {"shape": args.shape, "dim": args.dim, "batch_size": args.batch,
                     "steps": args.steps, "epochs": args.epochs, "parts": parts,
                     "budget_s": args.budget},
        "results": res,
        "definitions": {
            "fraction_of_published_peak": "XLA cost-analysis FLOPs / median step seconds / "
                                          "the device's published dense peak "
                                          "(experiments/roofline.py; f32 steps against its "
                                          "f32 figure, bf16 against bf16)",
            "fraction_of_measured_matmul_peak": "the same FLOP/s / a dense matmul's FLOP/s "
                                                "measured in bench_step.py's process",
            "predicted_s": "roofline lower bound max(XLA FLOPs / published peak, XLA bytes "
                           "accessed / published bandwidth) of the step compiled on THIS "
                           "device (peaks and caveats: experiments/roofline.py)",
        },
        "total_wall_s": time.perf_counter() - t0,
    }
    out = args.out or ROOT / "experiments" / "results" / f"device_{name}.json"
    write_json(out, json.loads(json.dumps(result, default=str)))
    log(f"{'all parts passed' if ok else 'SOME PARTS FAILED'} in "
        f"{result['total_wall_s']:.0f} s; wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
