"""recgoat_jax/hostmem.py: the re-execution with glibc tunables, and that it stops a
freed large block from page-faulting in again (real processes, real getrusage counts)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from recgoat_jax import hostmem

ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# After reexec_tuned(): a worker thread (where XLA:CPU allocates) mallocs, writes and
# frees a 256 MiB block 4 times; prints the minor page faults of rounds 2-4 and the
# process's view of its allocator setting. (libc directly: numpy madvises huge pages.)
PROBE = """
import ctypes, json, resource, sys, threading
from recgoat_jax import hostmem
print("start", file=sys.stderr, flush=True)
hostmem.reexec_tuned()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
faults = []

def rounds():
    for _ in range(4):
        f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(256 << 20)
        libc.memset(p, 1, 256 << 20)
        libc.free(p)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)

t = threading.Thread(target=rounds)
t.start()
t.join()
print(json.dumps({"faults": faults[1:], **hostmem.setting()}))
"""
PAGES = 256 * 1024 * 1024 // 4096


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hostmem.OPT_OUT)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _probe(**extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE], env=_env(**extra), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_wanted_on_cpu_only_glibc_linux_without_tunables_or_opt_out():
    def wanted(env, libc="glibc", system="linux", accelerator=False):
        return hostmem.wanted(env, libc, system, accelerator)
    assert wanted({})
    assert not wanted({}, "", "darwin")
    assert not wanted({}, "")  # musl (Alpine): no glibc tunables
    assert not wanted({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert not wanted({hostmem.OPT_OUT: "system"})
    assert wanted({hostmem.OPT_OUT: "tuned"})
    # a GPU/TPU plugin installed: the step runs on the device, host memory is kept
    assert not wanted({}, accelerator=True)
    assert wanted({"JAX_PLATFORMS": "cpu"}, accelerator=True)
    assert wanted({hostmem.OPT_OUT: "tuned"}, accelerator=True)
    assert not wanted({hostmem.OPT_OUT: "system", "JAX_PLATFORMS": "cpu"}, accelerator=True)


def test_accelerator_plugins_are_found_by_module_name(tmp_path, monkeypatch):
    """A module named like JAX's CUDA plugin on the path counts; the test venv has none."""
    assert not hostmem.accelerator_plugin_installed()
    (tmp_path / "jax_cuda12_plugin").mkdir()
    (tmp_path / "jax_cuda12_plugin" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after the test
    assert hostmem.accelerator_plugin_installed()


@pytest.mark.slow  # two child interpreters with JAX: ~2.5-4 s
@pytest.mark.skipif(not GLIBC, reason="glibc tunables exist only on Linux with glibc")
def test_reexec_once_with_tunables_stops_refaulting_freed_blocks():
    tuned = _probe()
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stderr.split() == ["start", "start"]  # re-executed exactly once
    out = json.loads(tuned.stdout.strip().splitlines()[-1])
    assert out["malloc"] == "tuned" and out["GLIBC_TUNABLES"] == hostmem.TUNABLES
    # the freed 256 MiB is reused: almost none of its 65,536 pages fault in again
    assert max(out["faults"]) < 0.02 * PAGES, out

    system = _probe(**{hostmem.OPT_OUT: "system"})
    assert system.returncode == 0, system.stderr
    assert system.stderr.split() == ["start"]
    out = json.loads(system.stdout.strip().splitlines()[-1])
    assert out["malloc"] == "system" and out["GLIBC_TUNABLES"] is None
    # glibc's default: a block this large is munmapped on free, so every page faults again
    assert min(out["faults"]) > 0.95 * PAGES, out


@pytest.mark.skipif(not GLIBC, reason="glibc tunables exist only on Linux with glibc")
def test_users_own_tunables_are_left_alone():
    r = _probe(GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert r.stderr.split() == ["start"]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["malloc"] == "user GLIBC_TUNABLES"
    assert out["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"


def test_an_unknown_setting_is_a_one_line_error():
    r = _probe(**{hostmem.OPT_OUT: "jemalloc"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "error: environment variable RECGOAT_MALLOC='jemalloc': expected 'auto' (the "
        "default), 'tuned' or 'system'")
