"""Symmetric-normalised user-item adjacency A_hat = D^-1/2 A D^-1/2 (LightGCN).

A is bipartite, so A_hat E = [R E_items ; R^T E_users] with R = A_hat[users, items]
[U, I]. We store R and R^T as CSR arrays: on CPU, jax.experimental.sparse lowers a CSR
times dense product to a native sparse kernel, several times faster than gather +
segment_sum (measured in experiments/results/baby_baselines.json notes); on GPU it uses
cuSPARSE. Degrees get +1e-7 as in MMRec so isolated nodes give 0, not NaN.
"""

from __future__ import annotations

import numpy as np

from recgoat_jax.data.dataset import CSR


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int):
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n_rows + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return vals[order].astype(np.float32), cols[order].astype(np.int32), indptr


def normalized_adjacency(train: CSR, n_users: int, n_items: int) -> dict:
    """-> {"ui": (data, indices, indptr) of R [U, I], "iu": the same for R^T [I, U]}.

    R[u, i] = 1 / sqrt(deg(u) deg(i)) for each train interaction (u, i).
    """
    users, items = train.to_pairs()
    users = users.astype(np.int64)
    items = items.astype(np.int64)
    du = np.bincount(users, minlength=n_users).astype(np.float64) + 1e-7
    di = np.bincount(items, minlength=n_items).astype(np.float64) + 1e-7
    vals = (du[users] ** -0.5) * (di[items] ** -0.5)
    return {"ui": _csr(users, items, vals, n_users), "iu": _csr(items, users, vals, n_items)}


def dense_adjacency(train: CSR, n_users: int, n_items: int) -> np.ndarray:
    """The full [(U+I), (U+I)] A_hat as a dense array; for tests on tiny graphs only."""
    n = n_users + n_items
    a = np.zeros((n, n), np.float64)
    users, items = train.to_pairs()
    a[users, n_users + items] = 1.0
    a[n_users + items, users] = 1.0
    d = a.sum(1) + 1e-7
    return a / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]


def edge_list(train: CSR, n_users: int, n_items: int) -> dict:
    """The train edges in the order of normalized_adjacency's "ui" CSR data (user, item).

    -> {"users", "items": [E] int32, "weight": [E] float32 = the full R[u, i]
    (1/sqrt(deg_u deg_i)), "to_iu": [E] int32 with iu_data = ui_data[to_iu]}.
    For FREEDOM's degree-sensitive edge pruning (model/freedom.py)."""
    users, items = train.to_pairs()
    users = users.astype(np.int64)
    items = items.astype(np.int64)
    ui = np.lexsort((items, users))  # the "ui" CSR order of _csr
    users, items = users[ui], items[ui]
    du = np.bincount(users, minlength=n_users).astype(np.float64) + 1e-7
    di = np.bincount(items, minlength=n_items).astype(np.float64) + 1e-7
    weight = (du[users] ** -0.5) * (di[items] ** -0.5)
    to_iu = np.lexsort((users, items))  # the "iu" CSR order, as positions in ui order
    return {"users": users.astype(np.int32), "items": items.astype(np.int32),
            "weight": weight.astype(np.float32), "to_iu": to_iu.astype(np.int32)}
