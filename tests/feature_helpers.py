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
