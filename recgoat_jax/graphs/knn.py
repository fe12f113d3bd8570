"""k-nearest-neighbour graphs over items and users, built block by block, cached on disk.

Every builder returns `(senders, receivers)`: int32 arrays [n_edges], one directed edge
sender -> receiver per row, symmetric (both directions present), deduplicated, with a
self loop on every node, sorted by (receiver, sender) so segment ops over receivers see
sorted ids.

Selection rule (all builders): per node, the k candidates with the largest score;
equal scores are broken by the LOWER neighbour index. "Equal" means equal float32 scores
as computed: the rule itself is exact on any CPU, but a cosine is a matmul result, and a
BLAS or XLA kernel may round two mathematically equal cosines (duplicate or rescaled
rows) an ulp apart, differently per CPU, block size or column; then the larger computed
score wins. Ties are exact, so the lower index wins everywhere, where every product and
partial sum is exact in float32: e.g. integer features whose rows have power-of-two
norms (unit rows on a dyadic grid; tests/graph_helpers.exact_cosine_features), or the
integer co-interaction counts of user_knn_from_interactions. The rule depends only on
the score values, so any block size gives the same graph wherever the scores do not
depend on it (exact scores; generic data away from ulp-level near ties). The cosine
builders run on NumPy or XLA (`backend`, model.knn.backend); the two score the same
float32 unit rows but round their matmuls differently, so where a row's k-th and
(k+1)-th scores are within a few float32 ulps they may pick differently (Baby-shape
random 4096-d features: 3 of 7050 rows, score gaps ~1e-8); otherwise the graphs are equal.

Memory: only a [block, n] score slab is held at a time, never [n, n].
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
import scipy.sparse as sp

from recgoat_jax.config_checks import KNN_BACKENDS  # model.knn.backend
from recgoat_jax.data.atomic import savez_atomic
from recgoat_jax.graphs import knn_xla

GRAPH_VERSION = 1  # bump when the construction rule changes: invalidates cached graphs

# backend "auto" on a CPU: xla from 2 n^2 d >= AUTO_CPU_MIN_FLOP, numpy below. Measured
# (experiments/bench_knn.py, 2-core x86 CPU, k 20, block 2048): 20000 x 4096 xla 10.5 s
# (312 GFLOP/s) vs numpy 23.4 s (140 GFLOP/s), peak RSS 1.34 vs 3.99 GiB; 8000 x 4096
# 1.8 s vs 5.1 s; Baby's 7050 items x (4096 + 384) 2.3 s vs 3.6 s. NumPy's cost beyond its BLAS matmul is argpartition
# (single-threaded, on a negated copy, with an int64 [block, n] index array); XLA:CPU's
# TopK kernel costs a fraction of the matmul. Small graphs stay on numpy: xla's compile
# (0.15-0.3 s per shape) is then most of the time (1500 x 384: numpy 0.04 s, xla 0.18 s;
# even at 3000 x 384, 2 n^2 d = 7 GFLOP: 0.26 s both).
AUTO_CPU_MIN_FLOP = 8e9


# ----------------------------------------------------------------------------- helpers


def _l2_normalize_rows(x: np.ndarray) -> np.ndarray:
    """x: [n, d] -> float32 rows of unit norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
    return x / np.maximum(norms, 1e-12)[:, None]


def topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k column indices per row of scores [b, n] -> [b, k] (order within a row unspecified).

    Ties: lower column index wins. Fast path argpartition; rows whose k-th value is tied
    with values outside the selection are redone exactly (rare: duplicate rows).
    """
    b, n = scores.shape
    if k >= n:
        return np.broadcast_to(np.arange(n), (b, n)).copy()
    # a copy, not a view: a view would keep the whole [b, n] int64 argpartition result alive
    # in the caller's list of blocks (31 GB at 63K items, where one block needs 1 GB)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k].copy()
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    n_gt = (scores > kth[:, None]).sum(axis=1)
    n_eq = (scores == kth[:, None]).sum(axis=1)
    tied = np.nonzero(n_gt + n_eq > k)[0]
    if tied.size:
        s = scores[tied]
        t = kth[tied][:, None]
        eq = s == t
        need = (k - n_gt[tied])[:, None]
        keep = (s > t) | (eq & (np.cumsum(eq, axis=1) <= need))
        part[tied] = np.nonzero(keep)[1].reshape(tied.size, k)
    return part


def keep_top_k(sim: np.ndarray, k: int) -> np.ndarray:
    """sim [n, n] -> a copy with the diagonal 0 and, in each row, every entry but its k
    largest off-diagonal ones 0 (topk_rows: ties to the lower column). k <= 0 or
    k >= n - 1: every off-diagonal entry is kept. The sparsified similarity of the
    memory-based recommenders (model/memory.py)."""
    sim = np.array(sim, copy=True)
    n = sim.shape[0] if sim.ndim else 0
    if sim.ndim != 2 or sim.shape[1] != n:
        raise ValueError(f"sim must be [n, n], got shape {sim.shape}")
    if 0 < k < n - 1:
        np.fill_diagonal(sim, -np.inf)  # never its own neighbour
        keep = topk_rows(sim, int(k))
        out = np.zeros_like(sim)
        rows = np.arange(n)[:, None]
        out[rows, keep] = sim[rows, keep]
        return out
    np.fill_diagonal(sim, 0.0)
    return sim


def _finish(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed kNN edges (src picked dst) -> symmetric, deduplicated, self loops, sorted.

    Returns (senders, receivers) int32 sorted by (receiver, sender).
    """
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    loops = np.arange(n, dtype=np.int64)
    s = np.concatenate([src, dst, loops])
    r = np.concatenate([dst, src, loops])
    key = np.unique(r * n + s)  # unique also sorts: receiver-major, then sender
    return (key % n).astype(np.int32), (key // n).astype(np.int32)




def resolve_backend(backend: str, n: int, d: int) -> str:
    """"auto" | "numpy" | "xla" -> the backend cosine_topk runs on [n, d] features: auto
    is xla on a GPU or TPU, on a CPU xla from 2 n^2 d >= AUTO_CPU_MIN_FLOP (see there)."""
    if backend not in KNN_BACKENDS:
        raise ValueError(f"knn backend must be one of {KNN_BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if jax.default_backend() != "cpu":
        return "xla"
    return "xla" if 2.0 * n * n * d >= AUTO_CPU_MIN_FLOP else "numpy"


def _check_k(k: int) -> int:
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return k


# ----------------------------------------------------------------------------- builders


def cosine_topk(features: np.ndarray, k: int, block: int = 2048,
                keep_self: bool = False, backend: str = "auto") -> np.ndarray:
    """Top-min(k, n) cosine neighbours per row -> [n, k'] int (order within a row
    unspecified; ties: lower index). features: [n, d]. keep_self False sets the diagonal to
    0 (item_knn's rule), True keeps it (self similarity 1: FREEDOM's rule). Only a
    [block, n] similarity slab is held at a time. backend (model.knn.backend): numpy
    (BLAS matmul + argpartition on the host) or xla (graphs/knn_xla.py, jitted, on the
    default device); both apply the same rule to the same float32 unit rows, so they
    differ only where matmul rounding reorders two scores within an ulp or so."""
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be [n, d], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    k = _check_k(k)
    n = x.shape[0]
    x = _l2_normalize_rows(x)
    block = max(1, int(block))
    kk = min(k, n)
    use_xla = resolve_backend(backend, n, x.shape[1]) == "xla"  # validates backend too
    if n and use_xla:
        return knn_xla.cosine_topk_unit(x, kk, block, keep_self)
    out = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        s = x[start:stop] @ x.T  # [b, n]; the only O(n)-wide buffer
        if not keep_self:
            s[np.arange(stop - start), np.arange(start, stop)] = 0.0
        out.append(topk_rows(s, kk))
    return np.concatenate(out) if out else np.zeros((0, kk), np.int64)


def item_knn(features: np.ndarray, k: int, block: int = 2048,
             backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Cosine kNN graph. features: [n, d] -> (senders, receivers) int32 [n_edges].

    L2-normalise rows, cosine similarity, zero the diagonal, top-k per row (ties: lower
    index), symmetrise (union of i->j and j->i), deduplicate, add self loops.
    The diagonal is set to 0, not -inf (as in the released code): a node whose other
    similarities are all negative can pick itself, which the self loop then absorbs.
    """
    nbr = cosine_topk(features, k, block, backend=backend)
    n, kk = nbr.shape
    return _finish(np.repeat(np.arange(n), kk), nbr.reshape(-1), n)


def user_knn_from_features(user_feat: np.ndarray, k: int, block: int = 2048,
                           backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Cosine kNN over user profile embeddings user_feat: [n_users, D]; same rule as item_knn."""
    return item_knn(user_feat, k, block, backend)


def interaction_matrix(train_users: np.ndarray, train_items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user-item csr [n_users, n_items] (repeated pairs count once)."""
    u = np.asarray(train_users, np.int64)
    i = np.asarray(train_items, np.int64)
    r = sp.csr_matrix((np.ones(u.size, np.float32), (u, i)), shape=(n_users, n_items))
    r.sum_duplicates()
    r.data[:] = 1.0
    return r


def user_knn_from_interactions(
    train_users: np.ndarray,
    train_items: np.ndarray,
    n_users: int,
    n_items: int,
    k: int,
    block: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """User kNN by co-interaction counts on train data -> (senders, receivers) int32.

    count[u, v] = number of distinct train items both u and v interacted with, from
    (R_block @ R.T) with R the binary csr [n_users, n_items]; diagonal dropped; top-k
    among POSITIVE counts only (ties: lower index), so a user may get fewer than k
    neighbours (a cold user only its self loop); symmetrise, self loops.
    """
    k = _check_k(k)
    r = interaction_matrix(train_users, train_items, n_users, n_items)
    rt = r.T.tocsr()
    block = max(1, int(block))
    srcs, dsts = [], []
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        c = (r[start:stop] @ rt).tocoo()  # sparse [b, n_users] co-counts
        row = c.row.astype(np.int64) + start
        col = c.col.astype(np.int64)
        val = c.data
        m = (row != col) & (val > 0)
        row, col, val = row[m], col[m], val[m]
        # order within each row: count desc, then column asc (the tie rule)
        order = np.lexsort((col, -val, row))
        row, col = row[order], col[order]
        first = np.searchsorted(row, row, side="left")
        rank = np.arange(row.size) - first
        keep = rank < k
        srcs.append(row[keep])
        dsts.append(col[keep])
    src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
    dst = np.concatenate(dsts) if dsts else np.zeros(0, np.int64)
    return _finish(src, dst, n_users)


# ----------------------------------------------------------------------------- cache


def array_digest(a: np.ndarray, block_rows: int = 4096) -> str:
    """sha256 hex of dtype, shape and bytes of a, read in row blocks (works on memmaps)."""
    a = np.asarray(a)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{a.shape}".encode())
    if a.ndim == 0:
        h.update(np.ascontiguousarray(a).tobytes())
    else:
        for start in range(0, a.shape[0], block_rows):
            h.update(np.ascontiguousarray(a[start:start + block_rows]).tobytes())
    return h.hexdigest()


def _canonical(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"ndarray": array_digest(v)}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Mapping):
        return {str(kk): _canonical(vv) for kk, vv in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_canonical(vv) for vv in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot hash cache key part of type {type(v).__name__}")


def graph_key(key_parts: Mapping[str, Any]) -> str:
    """sha256 hex over key_parts (arrays hashed by content) plus GRAPH_VERSION."""
    payload = {"graph_version": GRAPH_VERSION, "parts": _canonical(dict(key_parts))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cached_graph(
    cache_dir: str | os.PathLike | None,
    key_parts: Mapping[str, Any],
    builder: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Load (senders, receivers) from `cache_dir/graph-<key>.npz`, else build and save.

    key_parts: everything the graph depends on, e.g. {"kind": "item_knn", "features":
    feats, "k": 20}; arrays are hashed by content. The file is written to a temporary
    name and renamed, so a crash never leaves a half-written cache entry. An unreadable
    entry is rebuilt. cache_dir None disables caching.
    """
    if cache_dir is None:
        s, r = builder()
        return np.asarray(s, np.int32), np.asarray(r, np.int32)
    d = Path(cache_dir)
    path = d / f"graph-{graph_key(key_parts)[:32]}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return z["senders"].astype(np.int32), z["receivers"].astype(np.int32)
        except (OSError, KeyError, ValueError):
            pass  # corrupt or foreign file: rebuild below
    s, r = builder()
    s = np.asarray(s, np.int32)
    r = np.asarray(r, np.int32)
    d.mkdir(parents=True, exist_ok=True)
    savez_atomic(path, senders=s, receivers=r)
    return s, r
