"""Where a result came from: machine, versions, commit and command, as one header.

Every results file a study or a benchmark writes starts with `header()`; a training
run's results.json holds `versions()`. A number without its machine and commit cannot
be checked again, so nothing that writes results builds its own header.

    header(note="quiet machine")  -> {"command", "date", "note", "commit", "dirty",
                                      "machine", "versions", "allocator"}
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from recgoat_jax import hostmem  # no JAX import

ROOT = Path(__file__).resolve().parents[1]


def versions() -> dict:
    """Python and library versions, the platform and the first device (imports JAX)."""
    import flax
    import jax
    import jaxlib
    import numpy as np
    import optax

    dev = jax.devices()[0]
    return {"python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "machine": platform.machine(),
            "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
            "n_devices": jax.device_count(),
            "host_malloc": hostmem.setting()["malloc"]}


def commit(root: Path | str = ROOT) -> dict:
    """{"commit": short hash or None outside a git checkout, "dirty": tracked files
    changed since it (untracked ones do not count)}."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                 timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no") if head else None
    return {"commit": head, "dirty": bool(dirty)}


def command(argv: list[str] | None = None) -> str:
    """The command line that ran this process, as a user would retype it: `python -m
    <module> ...` for a module run with -m, `python <script> ...` otherwise."""
    if argv is not None:
        return shlex.join(["python", *argv])
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join(["python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])
    return shlex.join(["python", *sys.argv])


def machine(device_platform: str | None = None, load_start=None) -> dict:
    """The host: platform, processor, cores, load average (at start, if given, and now)."""
    out = {"platform": platform.platform(), "processor": platform.machine(),
           "cpu_count": os.cpu_count(), "loadavg_1_5_15_end": os.getloadavg()}
    if device_platform is not None:
        out["device_platform"] = device_platform
    if load_start is not None:
        out["loadavg_1_5_15_start"] = load_start
    return out


def header(cmd: str | None = None, note: str | None = None, load_start=None,
           device_platform: str | None = None, with_versions: bool = True) -> dict:
    """What every results file starts with. with_versions=False: no JAX import (a
    parent process that leaves JAX to its children)."""
    out = {"command": cmd or command(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
           "note": note, **commit(), "machine": machine(device_platform, load_start)}
    if with_versions:
        out["versions"] = versions()
    out["allocator"] = hostmem.setting()
    return out
