"""The Dataset value every later stage consumes.

Interactions are held as CSR matrices over users (row u lists u's items, sorted,
unique). Features are plain NumPy arrays (possibly memory-mapped), rows indexed by id.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class CSR:
    """A user -> items relation.

    indptr: [n_users + 1] int64; indices: [nnz] int32, sorted and unique within a row.
    """

    indptr: np.ndarray
    indices: np.ndarray

    @staticmethod
    def from_pairs(users: np.ndarray, items: np.ndarray, n_users: int) -> "CSR":
        """Builds a CSR from (user, item) pairs; duplicates must be removed beforehand."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        order = np.lexsort((items, users))
        users, items = users[order], items[order]
        counts = np.bincount(users, minlength=n_users)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return CSR(indptr=indptr, indices=items.astype(np.int32))

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def row(self, u: int) -> np.ndarray:
        return self.indices[self.indptr[u] : self.indptr[u + 1]]

    def row_lengths(self) -> np.ndarray:
        """[n_users] int64."""
        return np.diff(self.indptr)

    def to_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(users [nnz] int32, items [nnz] int32) in row order."""
        users = np.repeat(np.arange(self.n_rows, dtype=np.int32), self.row_lengths())
        return users, self.indices

    def users_with_items(self) -> np.ndarray:
        """[n] int32 ids of rows with at least one item."""
        return np.nonzero(self.row_lengths() > 0)[0].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A recommendation dataset.

    train/valid/test: CSR over users; n_users/n_items cover the whole id range.
    item_features: modality name -> [n_items, d_m] float array (e.g. "text", "image").
    user_features: [n_users, d_u] or None (embedded user text or profiles).
    user_feature_source: where those rows came from ("user_text", "template_profile",
      "llm_profile"; data/feature_files.py read_user_feature_source), None when unknown.
    report: what loading noticed (dropped rows, duplicates, ...), for logs.
    """

    name: str
    n_users: int
    n_items: int
    train: CSR
    valid: CSR
    test: CSR
    item_features: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    user_features: np.ndarray | None = None
    user_feature_source: str | None = None
    report: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def split(self, name: str) -> CSR:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, valid or test")
        return getattr(self, name)

    def summary(self) -> str:
        feats = ", ".join(f"{k} {v.shape[1]}" for k, v in self.item_features.items()) or "none"
        user = "none" if self.user_features is None else str(self.user_features.shape[1])
        if self.user_feature_source:
            user += f" ({self.user_feature_source})"
        return (
            f"{self.name}: {self.n_users} users, {self.n_items} items, "
            f"train {self.train.nnz} / valid {self.valid.nnz} / test {self.test.nnz}; "
            f"item features: {feats}; user features: {user}"
        )
