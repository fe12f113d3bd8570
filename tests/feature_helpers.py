"""Shared by the feature tests (import, not conftest): optional torch and a fixture.

torch is not imported here: importing it costs ~2 s, which the many feature tests that
use a fake encoder (all of `make test-fast`) should not pay. `torch` is None where torch
is not installed, else a stand-in that imports it on first attribute access.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest


class _LazyTorch:
    def __getattr__(self, name):
        if name.startswith("_"):  # pytest's collection probes module globals for markers
            raise AttributeError(name)
        return getattr(importlib.import_module("torch"), name)


# the feature extras are optional; only the encoder tests need them
torch = _LazyTorch() if importlib.util.find_spec("torch") is not None else None


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test machine has 2 shared cores: one intra-op thread is faster there. Applied
    once torch is loaded (by an earlier test, or a fixture such as the MiniLM encoder's),
    never by importing it here."""
    t = sys.modules.get("torch")
    if t is None:
        yield
        return
    n = t.get_num_threads()
    t.set_num_threads(1)
    yield
    t.set_num_threads(n)


class FakeEncoder:
    """A stand-in text encoder: text -> a unit vector [dim] seeded by the text's hash
    (deterministic, independent of batching); counts calls and keeps the texts; with
    fail_after=n the (n+1)-th call raises KeyboardInterrupt, as if the job were killed."""

    def __init__(self, fail_after: int | None = None, dim: int = 6,
                 fingerprint: str = "fake-encoder"):
        self.calls, self.texts = 0, []
        self.fail_after, self.dim, self.fingerprint = fail_after, dim, fingerprint

    def __call__(self, texts):
        import hashlib

        import numpy as np

        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.texts += list(texts)
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(str(t).encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)
