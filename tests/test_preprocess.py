"""data/preprocess.py against slow references: ids and both split shuffles.

(The k-core is checked against a one-at-a-time reference in test_raw_amazon.py and on a
hand-made chain in test_synthetic.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from recgoat_jax.data import preprocess


def _rows(seed: int, n_users: int = 30, n_rows: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_rows)
    return users[np.isin(users, np.flatnonzero(np.bincount(users) >= 3))]


def slow_split_keys(users, rng, ratios):
    """The demo generator's rule, row by row: one uniform key per row, each user's rows
    sorted by key; the last n_test are test, the n_valid before them valid."""
    keys = rng.random(len(users))
    labels = np.zeros(len(users), np.int8)
    for u in np.unique(users):
        rows = sorted(np.flatnonzero(users == u).tolist(), key=lambda r: keys[r])
        tr, va, te = preprocess.split_counts(len(rows), ratios)
        for r in rows[tr : tr + va]:
            labels[r] = 1
        for r in rows[tr + va :]:
            labels[r] = 2
    return labels


def slow_split_permutation(users, n_users, rng, ratios):
    """The raw builder's rule, user by user: rng.permutation of the user's rows (in row
    order), then train | valid | test."""
    labels = np.zeros(len(users), np.int8)
    for u in range(n_users):
        rows = np.flatnonzero(users == u)
        rows = rows[rng.permutation(len(rows))]
        tr, va, _ = preprocess.split_counts(len(rows), ratios)
        labels[rows[tr : tr + va]] = 1
        labels[rows[tr + va :]] = 2
    return labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1)])
def test_split_keys_equals_reference(seed, ratios):
    users = _rows(seed)
    got = preprocess.split_per_user(users, 30, np.random.default_rng(seed), ratios,
                                    shuffle="keys")
    want = slow_split_keys(users, np.random.default_rng(seed), ratios)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (1.0, 1.0, 1.0)])
def test_split_permutation_equals_reference(seed, ratios):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, 300)  # also users with 1 or 2 rows, and users with none
    got = preprocess.split_per_user(users, 27, np.random.default_rng(seed), ratios,
                                    shuffle="permutation")
    want = slow_split_permutation(users, 27, np.random.default_rng(seed), ratios)
    np.testing.assert_array_equal(got, want)


def test_compact_ids_against_reference():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 50, 200) * 3
    new, old = preprocess.compact_ids(codes, order="first")
    first = list(dict.fromkeys(codes.tolist()))
    assert old.tolist() == first
    assert new.tolist() == [first.index(c) for c in codes.tolist()]
    new, old = preprocess.compact_ids(codes, order="sorted")
    srt = sorted(set(codes.tolist()))
    assert old.tolist() == srt
    assert new.tolist() == [srt.index(c) for c in codes.tolist()]
    with pytest.raises(ValueError):
        preprocess.compact_ids(codes, order="random")
