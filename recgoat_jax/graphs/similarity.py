"""The score matrices of the memory-based recommenders (model/memory.py reads them as
inputs, graphs/inputs.py builds them), NumPy only.

R [n_users, n_items] is the 0/1 train matrix. Similarities are cosines in float64;
each keeps a row's k largest off-diagonal entries (graphs/knn.py keep_top_k, k = 0: all).

  item kNN       score(u, i) = sum_{j in train(u)} S[i, j], S the cosine of the items'
                 train user columns (diagonal 0): scores = R @ S^T
  user kNN       score(u, i) = sum_{v in N(u)} cos(t_u, t_v) [i in train(v)], t the user
                 features: scores = W @ R
  min-max        each score row scaled to [0, 1] over all items (a constant row -> 0)

Dense: R and the scores are [n_users, n_items], S [n_items, n_items] (development-size
datasets; Baby's 19k x 7k is about 1 GB of float64 scores).
"""

from __future__ import annotations

import numpy as np

from recgoat_jax.data.dataset import CSR
from recgoat_jax.graphs.knn import keep_top_k


def interaction_matrix(train: CSR, n_items: int) -> np.ndarray:
    """R [n_users, n_items] float64: 1 where the user has the item in train."""
    users, items = train.to_pairs()
    r = np.zeros((train.n_rows, n_items), np.float64)
    r[users, items] = 1.0
    return r


def unit_rows(x: np.ndarray) -> np.ndarray:
    """x [n, d] -> float64 rows of unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine(x: np.ndarray) -> np.ndarray:
    """[n, d] -> [n, n] cosine similarity of the rows (float64)."""
    u = unit_rows(x)
    return u @ u.T


def item_knn_scores(r: np.ndarray, k: int = 0) -> np.ndarray:
    """scores [n_users, n_items] = R @ S^T, S = keep_top_k(cosine(R^T), k)."""
    return r @ keep_top_k(cosine(r.T), k).T


def user_knn_scores(r: np.ndarray, user_features: np.ndarray, k: int) -> np.ndarray:
    """scores [n_users, n_items] = W @ R, W = keep_top_k(cosine(user_features), k)."""
    return keep_top_k(cosine(user_features), k) @ r


def minmax_rows(s: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1] (min -> 0, max -> 1); a constant row -> all 0."""
    lo = s.min(axis=1, keepdims=True)
    span = s.max(axis=1, keepdims=True) - lo
    return np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 0.0)
