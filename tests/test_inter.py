"""data/inter.py: the one .inter reader / writer, shared by the trainer and the feature step."""

from __future__ import annotations

import numpy as np
import pytest

from recgoat_jax.data import inter
from recgoat_jax.data.formats import read_mmrec
from recgoat_jax.errors import DataError
from recgoat_jax.features.profiles import train_histories


def test_write_then_read_round_trip(tmp_path):
    p = inter.write_inter(tmp_path / "x.inter", [0, 1, 1], [2, 0, 1], [0, 0, 2],
                          ratings=["5.0", "4", "1"], timestamps=[30, 10, 20])
    assert p.read_text() == ("userID\titemID\trating\ttimestamp\tx_label\n"
                             "0\t2\t5.0\t30\t0\n1\t0\t4\t10\t0\n1\t1\t1\t20\t2\n")
    cols = inter.read_inter(p, timestamps=True)
    np.testing.assert_array_equal(cols.users, [0, 1, 1])
    np.testing.assert_array_equal(cols.items, [2, 0, 1])
    np.testing.assert_array_equal(cols.labels, [0, 0, 2])
    np.testing.assert_array_equal(cols.timestamps, [30, 10, 20])
    assert inter.read_inter(p).timestamps is None
    inter.write_inter(tmp_path / "y.inter", [0], [0], [0])
    assert (tmp_path / "y.inter").read_text().splitlines()[1] == "0\t0\t1\t0\t0"


def test_timestamps_are_lenient_ids_are_not(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("userID\titemID\ttimestamp\tx_label\n0\t1\t1.5e3\t0\n0\t2\tsoon\t0\n")
    np.testing.assert_array_equal(inter.read_inter(p, timestamps=True).timestamps, [1500, -1])
    p.write_text("userID\titemID\tx_label\n0\t1\t0\n")
    assert inter.read_inter(p, timestamps=True).timestamps is None


def test_trainer_and_feature_step_refuse_the_same_file_alike(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    p = d / "ds.inter"
    p.write_text("userID\titemID\trating\ttimestamp\tx_label\n0\t1\t1\t0\t0\n0\t2\t1\t0\t5\n")
    with pytest.raises(DataError) as trainer:
        read_mmrec(p)
    with pytest.raises(DataError) as features:
        train_histories(p)
    assert str(trainer.value) == str(features.value)
    assert str(trainer.value) == f"{p}: line 3, column x_label: expected 0, 1 or 2, got '5'"
