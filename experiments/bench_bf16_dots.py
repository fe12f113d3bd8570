"""The three matmuls of a dense layer in float32 and in bf16 (f32 accumulation), one process:
why model/precision.py keeps the weight gradient x^T g in float32 on CPU.

At the Baby image-projection shape (x [7038, 4096], W [4096, 800]; --rows/--k/--n):
forward x W, input gradient g W^T, weight gradient x^T g, each the median of --reps calls,
and forward + weight gradient through bf16_matmul against plain float32.
-> experiments/results/bf16_dots_<platform>.json (machine, versions, command).

    python experiments/bench_bf16_dots.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from recgoat_jax.model.precision import bf16_matmul  # noqa: E402
from recgoat_jax.train.loop import versions  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments"))
from bench_step import median_time  # noqa: E402  (warm-up call, then the median of reps)


def dot(contract, dtype):
    return jax.jit(lambda a, b: jax.lax.dot_general(
        a.astype(dtype), b.astype(dtype), ((contract[:1], contract[1:]), ((), ())),
        preferred_element_type=jnp.float32))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=7038)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", help="default experiments/results/bf16_dots_<platform>.json")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "experiments/bench_bf16_dots.py",
                          *(sys.argv[1:] if argv is None else argv)])
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (args.rows, args.k))
    w = jax.random.normal(kw, (args.k, args.n)) * 0.01
    g = jax.random.normal(kg, (args.rows, args.n))
    res = {}
    for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        res[name] = {"forward x W": median_time(dot((1, 0), dtype), (x, w), args.reps),
                     "input grad g W^T": median_time(dot((1, 1), dtype), (g, w), args.reps),
                     "weight grad x^T g": median_time(dot((0, 0), dtype), (x, g), args.reps)}
    f32 = jax.jit(jax.value_and_grad(lambda w, x: jnp.vdot(x @ w, g)))
    b16 = jax.jit(jax.value_and_grad(lambda w, x: jnp.vdot(bf16_matmul(x, w), g)))
    res["forward + weight grad"] = {
        "float32": median_time(f32, (w, x), args.reps),
        "bf16_matmul (bf16 x stored)": median_time(b16, (w, x.astype(jnp.bfloat16)), args.reps)}
    out = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "device_platform": jax.devices()[0].platform,
                       "loadavg_1_5_15": os.getloadavg()},
           "versions": versions(), "shape": {"x": [args.rows, args.k], "W": [args.k, args.n]},
           "seconds_median": res}
    path = Path(args.out or ROOT / "experiments" / "results"
                / f"bf16_dots_{jax.devices()[0].platform}.json")
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(res, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
