"""data/atomic.py: the one atomic-write helper (raw builder, feature step, graph cache)."""

from __future__ import annotations

import numpy as np
import pytest

from recgoat_jax.data import atomic


def test_writes_replace_and_leave_no_temporary(tmp_path):
    p = tmp_path / "a.txt"
    atomic.write_text_atomic(p, "one\n")
    atomic.write_text_atomic(p, "two\n")
    assert p.read_text() == "two\n"
    atomic.write_json_atomic(tmp_path / "r.json", {"x": 1})
    assert (tmp_path / "r.json").read_text() == '{\n "x": 1\n}\n'
    atomic.save_npy_atomic(tmp_path / "f.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), np.arange(3))
    atomic.savez_atomic(tmp_path / "g.npz", s=np.arange(2))
    with np.load(tmp_path / "g.npz") as z:
        np.testing.assert_array_equal(z["s"], np.arange(2))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt", "f.npy", "g.npz", "r.json"]


def test_failure_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(p, "w") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]
