"""Shared by the feature tests (import, not conftest): optional torch and a fixture."""

from __future__ import annotations

import pytest

try:
    import torch
except ImportError:  # the feature extras are optional; only the encoder tests need them
    torch = None


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The test machine has 2 shared cores: one intra-op thread is faster there."""
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
