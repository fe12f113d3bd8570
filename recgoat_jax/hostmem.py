"""Host memory allocator settings for the process: freed memory stays mapped, so a train
step's temporaries do not page-fault in anew on every step.

XLA:CPU mallocs each execution's temporaries on its worker threads and frees them when
the step ends; glibc hands blocks that large back to the kernel, so the next step
page-faults them in again. With one malloc arena, no mmap and no trimming (TUNABLES),
freed blocks are reused and the faults stop after the first steps. Contract: test
metrics are unchanged; the price is host memory (the heap keeps its high-water mark).
Measured speed and memory: docs/performance.md.

glibc reads GLIBC_TUNABLES only at process start, so the command-line entry points call
`reexec_tuned()` first: on Linux with glibc it re-executes the same command once with
TUNABLES set (same PID, same arguments). It does nothing when GLIBC_TUNABLES is already
set (yours, or ours after the re-exec), when RECGOAT_MALLOC=system, or when a JAX GPU/TPU
plugin is installed and JAX_PLATFORMS does not say cpu: there the step runs on the
device, whose XLA allocator already keeps what it frees, and the host's extra memory
would buy nothing. RECGOAT_MALLOC=tuned asks for the settings in that case too.
"""

from __future__ import annotations

import os
import pkgutil
import platform
import sys

TUNABLES = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
            "glibc.malloc.trim_threshold=68719476736")
OPT_OUT = "RECGOAT_MALLOC"  # auto (default) | tuned | system (the C library's defaults)


# top-level modules of JAX's accelerator plugins (jax-cuda12-plugin, jax-rocm*, libtpu)
ACCELERATOR_MODULES = ("jax_cuda", "jax_rocm", "libtpu")


def accelerator_plugin_installed() -> bool:
    """Whether a JAX GPU/TPU plugin is importable (without importing it or JAX)."""
    return any(m.name.startswith(ACCELERATOR_MODULES) for m in pkgutil.iter_modules())


def wanted(environ=None, libc: str | None = None, system: str | None = None,
           accelerator: bool | None = None) -> bool:
    """Whether this process should re-execute itself with TUNABLES."""
    environ = os.environ if environ is None else environ
    libc = platform.libc_ver()[0] if libc is None else libc
    system = sys.platform if system is None else system
    choice = environ.get(OPT_OUT, "auto")
    if not (system.startswith("linux") and libc == "glibc") or "GLIBC_TUNABLES" in environ \
            or choice == "system":
        return False
    if choice == "tuned" or environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return True
    return not (accelerator_plugin_installed() if accelerator is None else accelerator)


def reexec_tuned() -> None:
    """Re-execute this Python process with GLIBC_TUNABLES = TUNABLES when `wanted()`.

    Call it from a process entry point before anything heavy is imported; it never
    returns when it re-executes. A RECGOAT_MALLOC value other than auto / tuned / system
    is an error (one line, exit 2) rather than a guess."""
    choice = os.environ.get(OPT_OUT, "auto")
    if choice not in ("auto", "tuned", "system"):
        print(f"error: environment variable {OPT_OUT}={choice!r}: expected 'auto' (the "
              "default), 'tuned' or 'system'", file=sys.stderr)
        sys.exit(2)
    if wanted():
        reexec({**os.environ, "GLIBC_TUNABLES": TUNABLES})


def setting() -> dict:
    """What this process runs with, for results files."""
    tunables = os.environ.get("GLIBC_TUNABLES")
    return {"malloc": "tuned" if tunables == TUNABLES else "system" if tunables is None
            else "user GLIBC_TUNABLES", "GLIBC_TUNABLES": tunables}


def reexec(env: dict) -> None:
    """Re-execute this Python process (same interpreter and arguments) with environment
    `env`; never returns, except in an embedded interpreter (no command line to repeat)."""
    argv = list(getattr(sys, "orig_argv", []))
    if not argv:  # embedded interpreters: nothing safe to re-execute
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)
