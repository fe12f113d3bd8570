"""What every benchmark shares: the results header (recgoat_jax.provenance), the host
allocator switch, and the measuring helpers (compiled cost, median time, memory, the
dense-matmul peak a step's FLOP/s is compared with).

    args = ap.parse_args(); bench_common.choose_malloc(args.malloc)   # first, may re-exec
    report = {**bench_common.header(args.note, load_start, plat), "runs": ...}
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

from recgoat_jax import hostmem, provenance  # no JAX import

FEATURE_DIMS = {"image": 4096, "text": 384}  # Amazon's image and the text encoder's
MALLOC_HELP = ("host allocator (recgoat_jax/hostmem.py): auto = what `recgoat train` does "
               "(tuned on CPU-only installs), tuned = freed memory stays mapped, system = "
               "the C library's defaults (auto); re-executes the process if needed")


def header(note: str | None = None, load_start=None, device_platform: str | None = None,
           **kw) -> dict:
    """provenance.header: command, date, note, commit, machine, versions, allocator."""
    return provenance.header(None, note, load_start, device_platform, **kw)


def add_malloc(ap) -> None:
    ap.add_argument("--malloc", choices=("auto", "tuned", "system"), default="auto",
                    help=MALLOC_HELP)


def choose_malloc(malloc: str) -> None:
    """Re-executes the process under the host allocator asked for (before any work)."""
    if malloc == "system":
        if os.environ.get("GLIBC_TUNABLES") == hostmem.TUNABLES:
            env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
            hostmem.reexec({**env, hostmem.OPT_OUT: "system"})
    else:
        os.environ[hostmem.OPT_OUT] = malloc
        hostmem.reexec_tuned()


def cost(compiled) -> dict:
    """{"flops", "bytes"} of a compiled program from XLA's cost analysis (0 if none)."""
    c = compiled.cost_analysis()
    c = (c[0] if c else {}) if isinstance(c, (list, tuple)) else (c or {})
    return {"flops": float(c.get("flops", 0.0)), "bytes": float(c.get("bytes accessed", 0.0))}


def median_time(fn, args, reps: int) -> float:
    """Median wall seconds of fn(*args) over reps calls, after one warm-up call."""
    import jax
    import numpy as np

    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def minor_faults() -> int:
    """This process's minor page faults so far: a step that allocates fresh multi-GB
    temporaries pays one per 4 KiB page it touches, every step."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def device_peak_bytes() -> int | None:
    """The first device's peak_bytes_in_use (None on CPU: not implemented)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return int(stats.get("peak_bytes_in_use", 0)) or None if stats else None


def matmul_peak(n: int, dtypes) -> dict:
    """Dense [n, n] x [n, n] matmul FLOP/s per dtype (f32 accumulation), median time."""
    import jax
    import jax.numpy as jnp

    out = {"n": n}
    reps = 3 if jax.devices()[0].platform == "cpu" else 20
    for name in dtypes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n)).astype(name)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n)).astype(name)
        f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
        s = median_time(f, (a, b), reps)
        out[name] = {"seconds": s, "flops_per_s": 2.0 * n ** 3 / s}
    return out


def write_json(path: Path | str, report: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
