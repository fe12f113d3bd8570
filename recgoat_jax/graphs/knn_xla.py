"""Cosine top-k neighbours in XLA: one jitted [block, n] matmul + lax.top_k per row block.

Same contract as graphs/knn.py `cosine_topk` (the NumPy path): per row the k largest
scores, equal scores broken by the LOWER neighbour index, the diagonal set to 0 unless
keep_self. The caller passes rows already L2-normalised (knn._l2_normalize_rows), so
both paths score the very same float32 vectors.

One compile per (n, d, block, k, keep_self): every call runs a full [block, d] query
slab. The last slab is not padded but shifted back to start at n - block (dynamic_slice
clamps its start), so it overlaps the previous one and the host keeps only its new rows:
same static shape, no padded copy of the [n, d] features.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _exact_ties(s: jax.Array, t: jax.Array, k: int) -> jax.Array:
    """Top-k of s by the tie rule, given t [b, 1] each row's k-th largest score: all
    scores > t plus the lowest-index scores == t. s: [b, n] -> [b, k] int32.

    lax.top_k documents "equal elements: lower index first", which already is the rule;
    this pass makes the rule hold on any backend's TopK whatever its tie order. Key: a
    score above t -> n (all of those are picked: fewer than k of them), == t -> -column
    (lower column = larger key), below -> -n - 1; the k largest keys are distinct at the
    boundary, so lax.top_k's own tie order cannot matter.
    """
    n = s.shape[1]
    col = lax.broadcasted_iota(jnp.int32, s.shape, 1)
    key = jnp.where(s > t, n, jnp.where(s == t, -col, -n - 1))
    # float32 holds these integers exactly (n < 2**24) and keeps XLA:CPU's TopK kernel
    return lax.top_k(key.astype(jnp.float32), k)[1]


def _scores(x: jax.Array, start: jax.Array, block: int, keep_self: bool) -> jax.Array:
    """x: [n, d] unit rows -> [block, n] cosine scores of rows start .. start + block."""
    q = lax.dynamic_slice_in_dim(x, start, block, axis=0)  # [block, d]
    # HIGHEST: full float32 products (GPUs would otherwise use TF32 and change the scores)
    s = jnp.dot(q, x.T, precision=lax.Precision.HIGHEST)  # [block, n]
    if not keep_self:
        rows = start + lax.broadcasted_iota(jnp.int32, s.shape, 0)
        s = jnp.where(rows == lax.broadcasted_iota(jnp.int32, s.shape, 1), 0.0, s)
    # -0.0 -> +0.0: TopK orders floats totally (-0 < +0) where NumPy calls them equal
    return jnp.where(s == 0.0, 0.0, s)


@functools.partial(jax.jit, static_argnames=("block", "k", "keep_self"))
def _block_topk(x: jax.Array, start: jax.Array, *, block: int, k: int,
                keep_self: bool) -> jax.Array:
    """x: [n, d] unit rows; rows start .. start + block (start <= n - block) -> [block, k]
    int32 top-k columns of x[rows] @ x.T (order within a row unspecified)."""
    n = x.shape[0]
    s = _scores(x, start, block, keep_self)
    if k >= n:
        return lax.top_k(s, n)[1]
    # XLA:CPU runs top_k as its fast TopK kernel only when top_k is the slab's ONLY
    # consumer and its outputs are not sliced into (else a full sort of every row, 20x
    # slower at n = 8000): so the boundary tie test reads the (k+1)-th value, tied
    # blocks recompute s, and a barrier keeps the slices off top_k.
    vals, idx = lax.optimization_barrier(lax.top_k(s, k + 1))
    tied = vals[:, k - 1] == vals[:, k]  # [block] k-th score shared with an unpicked one
    return lax.cond(jnp.any(tied), lambda: _tied_block(x, start, block, k, keep_self),
                    lambda: idx[:, :k])


def _tied_block(x: jax.Array, start: jax.Array, block: int, k: int,
                keep_self: bool) -> jax.Array:
    """The block's [block, k] picks by _exact_ties. Its k-th scores t come from the
    recomputed slab itself, so t is one of its values even if XLA rounded it differently."""
    s = _scores(x, start, block, keep_self)
    vals = lax.optimization_barrier(lax.top_k(s, k))[0]
    return _exact_ties(s, vals[:, k - 1:k], k)


def cosine_topk_unit(x: np.ndarray, k: int, block: int, keep_self: bool) -> np.ndarray:
    """x: [n, d] float32 unit rows (n >= 1), 1 <= k <= n -> [n, k] int64 top-k columns
    per row (order within a row unspecified; ties: lower index)."""
    n = x.shape[0]
    if n >= 2**24:
        raise ValueError(f"xla kNN backend supports n < 2**24 rows, got {n}")
    block = max(1, min(int(block), n))
    xd = jax.device_put(np.ascontiguousarray(x, np.float32))
    res = np.empty((n, k), np.int64)
    pending: list[tuple[int, jax.Array]] = []
    for s in range(0, n, block):
        first = min(s, n - block)  # the shifted last block
        pending.append((s, _block_topk(xd, jnp.int32(first), block=block, k=k,
                                       keep_self=keep_self)))
        # two blocks in flight: the device computes one while the host reads the other,
        # and at most two [block, n] slabs are alive (async dispatch could queue them all)
        if len(pending) == 2:
            _store(res, *pending.pop(0), block)
    for p in pending:
        _store(res, *p, block)
    return res


def _store(res: np.ndarray, s: int, out: jax.Array, block: int) -> None:
    """Write block output [block, k] for rows s .. s + block into res [n, k]; of the
    shifted last block (it starts at n - block) only the rows >= s."""
    n = res.shape[0]
    first = min(s, n - block)
    res[s:min(s + block, n)] = np.asarray(out)[s - first:]
