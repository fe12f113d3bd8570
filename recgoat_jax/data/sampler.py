"""BPR training triples: (user, positive, negative), vectorised and seeded.

One epoch = every train interaction once, shuffled, each paired with ONE uniform
negative. By default (MMRec) negatives avoid the user's train items; rejected draws are
re-drawn (vectorised) until none collide. The last batch is padded with weight-0
examples (static shapes), or dropped when drop_last is set.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recgoat_jax.data.dataset import CSR


@dataclasses.dataclass(frozen=True)
class EpochBatches:
    """users/pos/neg: [n_steps, batch] int32; weight: [n_steps, batch] float32 (0 = pad)."""

    users: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    weight: np.ndarray

    @property
    def n_steps(self) -> int:
        return self.users.shape[0]


class BPRSampler:
    """Samples one epoch of BPR triples from a train CSR."""

    def __init__(self, train: CSR, n_items: int, batch_size: int,
                 exclude_train: bool = True, drop_last: bool = False, seed: int = 0):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.n_items = n_items
        self.batch_size = batch_size
        self.exclude_train = exclude_train
        self.drop_last = drop_last
        self.seed = seed
        self.users, self.items = train.to_pairs()
        # Sorted keys u * n_items + i: membership test by binary search.
        self._keys = self.users.astype(np.int64) * n_items + self.items
        full = np.bincount(self.users, minlength=train.n_rows)
        if exclude_train and np.any(full >= n_items):
            u = int(np.argmax(full >= n_items))
            raise ValueError(f"user {u} interacted with every item: no negative can be drawn")

    @property
    def n_steps(self) -> int:
        n = len(self.users)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def is_train(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[n] bool: is (users[k], items[k]) a train interaction."""
        keys = users.astype(np.int64) * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == keys

    def negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        neg = rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        if self.exclude_train:
            bad = np.nonzero(self.is_train(users, neg))[0]
            while len(bad):
                neg[bad] = rng.integers(0, self.n_items, size=len(bad), dtype=np.int64)
                bad = bad[self.is_train(users[bad], neg[bad])]
        return neg.astype(np.int32)

    def epoch(self, epoch: int) -> EpochBatches:
        """The triples of one epoch; a pure function of (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(len(self.users))
        users, pos = self.users[perm], self.items[perm]
        neg = self.negatives(users, rng)
        b, steps = self.batch_size, self.n_steps
        n = steps * b
        weight = np.ones(n, np.float32)
        if n > len(users):  # pad the last batch with masked examples
            pad = n - len(users)
            users = np.concatenate([users, np.zeros(pad, users.dtype)])
            pos = np.concatenate([pos, np.zeros(pad, pos.dtype)])
            neg = np.concatenate([neg, np.zeros(pad, neg.dtype)])
            weight[len(perm):] = 0.0
        shape = (steps, b)
        return EpochBatches(users[:n].reshape(shape).astype(np.int32),
                            pos[:n].reshape(shape).astype(np.int32),
                            neg[:n].reshape(shape).astype(np.int32),
                            weight.reshape(shape))
