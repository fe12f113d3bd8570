"""Test-session settings: a persistent XLA compilation cache, so the many small runs
that compile the same train step (resume tests, determinism checks) compile it once."""

import os
from pathlib import Path

import jax

_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "jax-tests"
os.makedirs(_CACHE, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
