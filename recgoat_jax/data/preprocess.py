"""Interaction preprocessing shared by the raw-dump builder (data/raw_amazon.py) and the
demo generator (data/synthetic.py): iterative k-core, compact ids, per-user split.

Where the two callers have always differed, the difference is a parameter and each
caller keeps its own behaviour (their outputs are pinned byte for byte by tests):

* ids (`compact_ids`): the raw builder numbers users / items by FIRST APPEARANCE in the
  (filtered) input order (``order="first"``, as MMRec's preprocessing); the generator
  keeps the order of the old ids (``order="sorted"``).
* split shuffle (`split_per_user`): the raw builder shuffles each user's rows with
  ``rng.permutation``, user by user (``shuffle="permutation"``); the generator draws one
  uniform key per row and sorts by (user, key) (``shuffle="keys"``, vectorised). Both
  then cut each user's shuffled rows train | valid | test with the same counts
  (`split_counts`), so they differ only in which random numbers decide the order.

The k-core needs no parameter: the k-core of a bipartite graph is unique (the largest
subgraph with every degree >= k), so any removal order gives the same rows.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
SHUFFLES = ("keys", "permutation")


def k_core(users: np.ndarray, items: np.ndarray, k: int = 5) -> np.ndarray:
    """Boolean mask of the rows left by iterative k-core filtering.

    users / items are integer codes (0..U-1, 0..I-1), one row per (user, item) pair.
    Every round drops all rows whose user or item has fewer than k remaining rows, until
    none does.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep
    n_u = int(users.max()) + 1
    n_i = int(items.max()) + 1
    while True:
        cu = np.bincount(users[keep], minlength=n_u)
        ci = np.bincount(items[keep], minlength=n_i)
        new = keep & (cu[users] >= k) & (ci[items] >= k)
        if new.sum() == keep.sum():
            return keep
        keep = new


def compact_ids(codes: np.ndarray, order: str = "first") -> tuple[np.ndarray, np.ndarray]:
    """(new id per row, old code per new id): the codes present, renumbered 0, 1, ...

    order "first": by first appearance in row order; "sorted": in the order of the codes.
    """
    codes = np.asarray(codes, dtype=np.int64)
    uniq, first = np.unique(codes, return_index=True)
    if order == "sorted":
        old_of_new = uniq
    elif order == "first":
        old_of_new = uniq[np.argsort(first, kind="stable")]
    else:
        raise ValueError(f"order must be 'first' or 'sorted', got {order!r}")
    new_of_old = np.empty(int(uniq.max()) + 1 if len(uniq) else 0, dtype=np.int64)
    new_of_old[old_of_new] = np.arange(len(old_of_new))
    return new_of_old[codes], old_of_new


def split_counts(n: int, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """(n_train, n_valid, n_test) for a user with n rows.

    n_valid = max(1, floor(n r_valid + 0.5)), n_test likewise (ratios normalised to sum
    1), the rest is train. A user always keeps at least one train row (n = 1: train only;
    n = 2: train + test); with n >= 3 every user has at least one valid and one test row.
    """
    total = float(sum(ratios))
    rv, rt = ratios[1] / total, ratios[2] / total
    if n <= 1:
        return n, 0, 0
    if n == 2:
        return 1, 0, 1
    n_valid = max(1, math.floor(n * rv + 0.5))
    n_test = max(1, math.floor(n * rt + 0.5))
    while n - n_valid - n_test < 1:  # only with unusual ratios
        if n_valid >= n_test and n_valid > 1:
            n_valid -= 1
        elif n_test > 1:
            n_test -= 1
    return n - n_valid - n_test, n_valid, n_test


def _ranks_by_keys(users: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    order = np.argsort(users + rng.random(len(users)), kind="stable")  # by user, random within
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    return rank


def _ranks_by_permutation(users: np.ndarray, n_users: int, rng: np.random.Generator) -> np.ndarray:
    rank = np.empty(len(users), dtype=np.int64)
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(n_users + 1))
    for u in range(n_users):
        rows = order[bounds[u] : bounds[u + 1]]
        rank[rows[rng.permutation(len(rows))]] = np.arange(len(rows))
    return rank


def split_per_user(
    users: np.ndarray,
    n_users: int,
    rng: np.random.Generator,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    shuffle: str = "keys",
) -> np.ndarray:
    """Per-user random split -> x_label per row (0 train, 1 valid, 2 test), int8.

    Each user's rows are put in a random order (`shuffle`: "keys" or "permutation", see
    the module docstring), then the first n_train are train, the next n_valid valid and
    the rest test, with the counts of `split_counts`.
    """
    if shuffle not in SHUFFLES:
        raise ValueError(f"shuffle must be one of {SHUFFLES}, got {shuffle!r}")
    users = np.asarray(users, dtype=np.int64)
    n = np.bincount(users, minlength=n_users)
    if shuffle == "keys":
        rank = _ranks_by_keys(users, n, rng)
    else:
        rank = _ranks_by_permutation(users, n_users, rng)
    table = np.array([split_counts(m, ratios) for m in range(int(n.max(initial=0)) + 1)],
                     dtype=np.int64).reshape(-1, 3)
    n_train = table[n[users], 0]
    n_train_valid = n_train + table[n[users], 1]
    labels = np.zeros(len(users), dtype=np.int8)
    labels[rank >= n_train] = VALID
    labels[rank >= n_train_valid] = TEST
    return labels
