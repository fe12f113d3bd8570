"""Metric math of the full-ranking evaluation (MMRec protocol): per-user metrics from a
ranked hit matrix, the metric keys, and the printed table.

Protocol (docs/protocol.md, "Evaluation protocol"): for every user with at least one
item in the evaluated split, all items are scored and ranked with the user's TRAIN items
masked (blocks.py); from the ranked hits, for each K:

- recall@K    = hits / |truth|
- ndcg@K      = DCG / IDCG, binary gains, DCG = sum over hits at rank r (1-based) of
                1 / log2(r + 1), IDCG over min(|truth|, K) positions
- precision@K = hits / K
- map@K       = (sum over hits at rank r of precision@r) / min(|truth|, K)
- hitrate@K   = 1 if any hit

averaged over the evaluated users (users without truth items are not counted).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recgoat_jax.config import METRICS  # the names, in the table's order

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
_TABLE_NAMES = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP",
                "hitrate": "HitRate"}
HIGHEST = jax.lax.Precision.HIGHEST  # exact sums of 0/1 hit counts


def metrics_matrix(hits, n_truth, ks: tuple[int, ...]) -> jax.Array:
    """[B, len(METRICS), len(ks)] per-user metrics (see metrics_from_hits).

    Vectorised over ks with small constant matrices (cumulative sums as products with a
    0/1 triangular matrix) so that the whole thing is a handful of XLA ops: cheap to
    compile, and exact for the 0/1 hit counts.
    """
    hits = jnp.asarray(hits).astype(jnp.float32)
    n_truth = jnp.asarray(n_truth).astype(jnp.float32)
    big_k = hits.shape[1]
    ranks = np.arange(1, big_k + 1, dtype=np.float64)
    disc = 1.0 / np.log2(ranks + 1.0)                                # [K]
    upto = (np.arange(big_k)[:, None] < np.asarray(ks)[None, :])      # [K, nk]: rank <= k
    tri = np.triu(np.ones((big_k, big_k)))                           # cumulative sum
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    n_hits_cum = jnp.dot(hits, f32(tri), precision=HIGHEST)  # hits within top r
    n_hits = jnp.dot(hits, f32(upto), precision=HIGHEST)     # [B, nk]
    dcg = jnp.dot(hits, f32(disc[:, None] * upto), precision=HIGHEST)
    ap = jnp.dot(hits * n_hits_cum / f32(ranks), f32(upto), precision=HIGHEST)
    kf = f32(ks)[None, :]
    ideal = jnp.minimum(n_truth[:, None], kf)                        # min(|truth|, K)
    idcg_table = f32(np.concatenate([[1.0], np.cumsum(disc)]))      # [K + 1], [0] unused
    idcg = idcg_table[ideal.astype(jnp.int32)]
    has_truth = (n_truth > 0)[:, None]
    safe = lambda x: jnp.maximum(x, 1.0)  # noqa: E731
    recall = jnp.where(has_truth, n_hits / safe(n_truth[:, None]), 0.0)
    ndcg = jnp.where(has_truth, dcg / idcg, 0.0)
    precision = n_hits / kf
    mean_ap = jnp.where(has_truth, ap / safe(ideal), 0.0)
    hitrate = (n_hits > 0).astype(jnp.float32)
    return jnp.stack([recall, ndcg, precision, mean_ap, hitrate], axis=1)  # order: METRICS


def metrics_from_hits(hits, n_truth, ks: Sequence[int] | None = None) -> dict[str, jax.Array]:
    """Per-user metrics from a ranked hit matrix.

    hits: [B, K] bool/float, hits[b, r] = 1 if the item at rank r + 1 of user b is a truth
    item. n_truth: [B] number of truth items of each user (|truth|, the recall
    denominator). ks: cut-offs, each <= K (default: (K,)).
    Returns {"recall@k", "ndcg@k", "precision@k", "map@k", "hitrate@k"} -> [B] float32.
    Users with n_truth == 0 get 0 for every metric (callers exclude them from averages).
    Pure and jittable; accepts NumPy inputs too.
    """
    big_k = jnp.shape(hits)[1]
    ks = (big_k,) if ks is None else tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or max(ks) > big_k:
        raise ValueError(f"ks {ks} must lie in [1, {big_k}] (the width of hits)")
    mat = metrics_matrix(hits, n_truth, ks)
    return {f"{m}@{k}": mat[:, i, j] for i, m in enumerate(METRICS) for j, k in enumerate(ks)}


def metric_keys(ks: Sequence[int]) -> list[str]:
    """'<metric>@<k>' in the order of metrics_matrix's flattened [metrics, ks]."""
    return [f"{m}@{k}" for m in METRICS for k in ks]


def format_table(metrics: Mapping[str, float], ks: Sequence[int] = DEFAULT_KS) -> str:
    """Fixed-width table: rows Recall/NDCG/Precision/MAP/HitRate, columns @K."""
    ks = tuple(ks)
    name_w = max(len(n) for n in _TABLE_NAMES.values())
    col_w = 8
    lines = [" " * name_w + "".join(f"{'@' + str(k):>{col_w}}" for k in ks)]
    for m in METRICS:
        cells = []
        for k in ks:
            v = metrics.get(f"{m}@{k}")
            cells.append(f"{'-':>{col_w}}" if v is None else f"{float(v):>{col_w}.4f}")
        lines.append(f"{_TABLE_NAMES[m]:<{name_w}}" + "".join(cells))
    return "\n".join(lines)
