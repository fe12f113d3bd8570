"""The benchmarks' --malloc switch: re-execute the script under the host allocator asked
for (recgoat_jax/hostmem.py is what `recgoat train` itself does; docs/parallel.md).

    allocator.choose(args.malloc)   # first thing in a script's main(), before the work
"""

from __future__ import annotations

import os

from recgoat_jax import hostmem  # no JAX import

CHOICES = ("auto", "tuned", "system")


def reexec_system() -> None:
    """Undo hostmem.reexec_tuned for this process: re-execute without GLIBC_TUNABLES, with
    RECGOAT_MALLOC=system, if it holds exactly hostmem.TUNABLES."""
    if os.environ.get("GLIBC_TUNABLES") == hostmem.TUNABLES:
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        hostmem.reexec({**env, hostmem.OPT_OUT: "system"})


def choose(malloc: str) -> None:
    """auto: what `recgoat train` does (tuned on CPU-only installs); tuned: freed memory
    stays mapped; system: the C library's defaults. Re-executes the process if needed."""
    if malloc == "system":
        reexec_system()
    else:
        os.environ[hostmem.OPT_OUT] = malloc
        hostmem.reexec_tuned()
