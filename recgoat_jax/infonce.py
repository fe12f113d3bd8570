"""InfoNCE between two batches of rows, computed over tiles of the logits under a custom
VJP, so no [B, B] array exists in the forward or the backward (CMCL's cost at B = 4096).

  info_nce(a [B, d], b [B, d], tau, weight [B]) -> scalar   the loss (unit rows, in-batch
                                                           negatives, padded rows masked)
  weighted_row_logsumexp(a [n, d], b [m, d], scale, c [n])  its log-sum-exp term
  tile_shape(n, m)                                          the default tile
  dense_info_nce                                            the dense form, the reference

The tile loops are rolled (lax.scan) unless a caller passes unroll=True (cost analysis).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from recgoat_jax.losses import l2_normalize, weighted_mean

# CMCL's InfoNCE over a batch of B rows needs, per row, the log-sum-exp of B logits. The
# dense form wrote the [B, B] logits, their softmax and its gradient to memory (64 MB each
# at B = 4096, read and written several times per InfoNCE; the released-code CMCL runs 7
# InfoNCEs a step). Here the loss's log-sum-exp term sum_i c_i lse_i (c = the row weights)
# runs over [block_rows, block_cols] tiles of the logits that stay in cache, under a custom
# VJP: the loss is a scalar, so its gradient is the cotangent times a gradient the forward
# rule computes tile by tile, and no B x B array exists in the forward or the backward.
#
#   value only           tile logits, running row maximum and sum           1 product/tile
#   value + gradient, one column tile (a row strip: the default up to 32,768 columns):
#                        logits, E = exp(logits - row max), da = E b, db^T = (c a)^T E
#                        (3 products, the dense form's count)
#   value + gradient, several column tiles: a streamed pass for the row log-sum-exp and
#                        E b (flash attention's O), then a pass that recomputes each tile
#                        for db^T (4 products)
#
# db is accumulated TRANSPOSED, [d, B] += [d, r] x [r, c]: on XLA:CPU the product P^T a
# with the large operand transposed ran at about a third of the matmul peak, a^T P near it.
# The row maximum: with `bound` (a static bound on |logit|, 1/tau for unit rows) no larger
# than _FIXED_SHIFT_RANGE / 2, every tile is shifted by `bound` (exp(logit - bound) lies in
# [exp(-2 bound), 1]: no overflow, no underflow) and one pass over each tile is saved;
# otherwise the row maximum is taken over a whole row tile or streamed across column tiles
# (online softmax: a running maximum and a rescaled running sum), exact for any logits.

# The default tile (docs/performance.md has the measurements, XLA:CPU, d 64): a strip of
# 128 rows by all columns while it holds at most TILE_ELEMENTS (4 MB in float32; B 4096:
# [128, 4096]), fewer rows (down to 32) for wider batches (B 16384: [64, 16384]), then
# column tiles. At B 4096, [128, 4096] strips took 0.67x the time of [512, 512] tiles
# (3 products against 4); at B 8192, [128, 8192] 0.67x [128, 4096]; at B 16384 [64, 16384]
# 0.67x [128, 16384].
TILE_ELEMENTS = 1 << 20
MAX_BLOCK_ROWS, MIN_BLOCK_ROWS = 128, 32
_FIXED_SHIFT_RANGE = 60.0  # exp(-60) ~ 9e-27, far above float32's smallest normal (1e-38)
_NEG = -1e9  # a masked logit (the dense form's value)


def _blocks(x: jax.Array, k: int) -> jax.Array:
    """x: [n, ...] -> [ceil(n / k), k, ...], zero-padded (False for bool) at the end."""
    n = -(-x.shape[0] // k) * k
    x = jnp.pad(x, ((0, n - x.shape[0]),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape((n // k, k) + x.shape[1:])


def _scan(f, init, xs, unroll: bool):
    """lax.scan over the tiles; unroll=True writes every tile out (see info_nce)."""
    return jax.lax.scan(f, init, xs, unroll=True if unroll else 1)


def _tile_exp(s, mj, m_prev, shift):
    """One logits tile s [r, c] (column mask mj [c]) -> (row max m [r], exp(s - m) with
    masked columns 0, exp(m_prev - m) [r] to rescale earlier sums, None under a fixed
    shift)."""
    if shift is not None:
        return m_prev, jnp.where(mj[None, :], jnp.exp(s - shift), 0.0), None
    s = jnp.where(mj[None, :], s, _NEG)
    m = jnp.maximum(m_prev, jnp.max(s, axis=1))
    return m, jnp.exp(s - m[:, None]), jnp.exp(m_prev - m)


def _wlse_tiles(a, b, c, mask, scale, br, bc, shift, unroll, grad):
    """sum_i c_i lse_i, lse_i = log sum_{j: mask_j} exp(scale a_i.b_j); with grad also its
    gradients w.r.t. a [n, d] and b [m, d]. Tile shape [br, bc]; unroll: the tile loops
    written out."""
    n, d = a.shape
    m_cols = b.shape[0]
    tiles_a, tiles_c = _blocks(a * scale, br), _blocks(c, br)
    tiles_b, tiles_m = _blocks(b, bc), _blocks(mask, bc)
    n_col = tiles_b.shape[0]
    m0 = jnp.full((br,), _NEG if shift is None else shift, a.dtype)
    tiny = jnp.finfo(a.dtype).tiny  # l = 0 only if every column is masked (row weight 0)

    def lse_of(m, l):
        return m + jnp.log(jnp.maximum(l, tiny))

    if n_col == 1 and grad:  # one column tile: every product once
        bj, mj = tiles_b[0], tiles_m[0]

        def strip(dbt, x):
            ai, ci = x
            mx, e, _ = _tile_exp(ai @ bj.T, mj, m0, shift)  # e: [br, bc]
            l = jnp.maximum(jnp.sum(e, axis=1), tiny)
            u = ci / l  # p_ij c_i = e_ij u_i
            da = (e @ bj) * (u * scale)[:, None]
            dbt = dbt + (ai * u[:, None]).T @ e  # ai already carries the scale
            return dbt, (jnp.sum(ci * lse_of(mx, l)), da)

        dbt, (v, da) = _scan(strip, jnp.zeros((d, bc), a.dtype), (tiles_a, tiles_c), unroll)
        return jnp.sum(v), da.reshape(-1, d)[:n], dbt.T[:m_cols]

    def row(dbt, x):  # one row tile against every column tile
        ai, ci = x

        def col(carry, y):
            mx, l, o = carry
            bj, mj = y
            mx, e, r = _tile_exp(ai @ bj.T, mj, mx, shift)
            if r is not None:  # the row maximum moved: rescale what was summed so far
                l, o = l * r, (o * r[:, None] if grad else o)
            l = l + jnp.sum(e, axis=1)
            o = o + e @ bj if grad else o
            return (mx, l, o), None

        o0 = jnp.zeros((br, d) if grad else (), a.dtype)
        (mx, l, o), _ = _scan(col, (m0, jnp.zeros((br,), a.dtype), o0), (tiles_b, tiles_m),
                               unroll)
        lse = lse_of(mx, l)
        v = jnp.sum(ci * lse)
        if not grad:
            return dbt, (v, o)
        da = o * (ci / jnp.maximum(l, tiny) * scale)[:, None]
        ca = ai * ci[:, None]

        def col_db(_, y):  # the tiles again, now that lse is final
            bj, mj = y
            p = jnp.where(mj[None, :], jnp.exp(jnp.minimum(ai @ bj.T - lse[:, None], 0.0)), 0.0)
            return None, ca.T @ p  # [d, bc]

        _, dbt_i = _scan(col_db, None, (tiles_b, tiles_m), unroll)
        return dbt + dbt_i, (v, da)

    dbt0 = jnp.zeros((n_col, d, bc) if grad else (), a.dtype)
    dbt, (v, da) = _scan(row, dbt0, (tiles_a, tiles_c), unroll)
    if not grad:
        return jnp.sum(v)
    db = jnp.transpose(dbt, (0, 2, 1)).reshape(-1, d)[:m_cols]
    return jnp.sum(v), da.reshape(-1, d)[:n], db


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _wlse(a, b, c, mask, scale, br, bc, shift, unroll):
    return _wlse_tiles(a, b, c, mask, scale, br, bc, shift, unroll, grad=False)


def _wlse_fwd(a, b, c, mask, scale, br, bc, shift, unroll):
    v, da, db = _wlse_tiles(a, b, c, mask, scale, br, bc, shift, unroll, grad=True)
    return v, (da, db)


def _wlse_bwd(scale, br, bc, shift, unroll, res, g):
    da, db = res
    return g * da, g * db, None, None


_wlse.defvjp(_wlse_fwd, _wlse_bwd)


def tile_shape(n: int, m: int, block_rows: int | None = None,
               block_cols: int | None = None) -> tuple[int, int]:
    """The [rows, columns] tile for an [n, m] logits matrix: the given sizes capped at n
    and m, or the default (see TILE_ELEMENTS) for those left None."""
    br = block_rows or max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, TILE_ELEMENTS // max(m, 1)))
    br = max(1, min(int(br), n))
    bc = block_cols or max(1, TILE_ELEMENTS // br)
    return br, max(1, min(int(bc), m))


def weighted_row_logsumexp(a: jax.Array, b: jax.Array, scale: float, c: jax.Array,
                           mask: jax.Array | None = None, *, bound: float | None = None,
                           block_rows: int | None = None,
                           block_cols: int | None = None, unroll: bool = False) -> jax.Array:
    """sum_i c_i log sum_{j: mask_j} exp(scale <a_i, b_j>), blockwise, no [n, m] array.

    a: [n, d], b: [m, d]; c: [n] row weights (no gradient); mask: [m] (True = a column
    that counts; default all) -> scalar, float32 at least. Differentiable once in a and b
    (custom VJP; see the comment above). bound: a static upper bound on |scale <a_i, b_j>|
    (scale for unit rows); when given and at most _FIXED_SHIFT_RANGE / 2 it is the tiles'
    fixed shift, otherwise the row maximum is computed (streamed across column tiles).
    block_rows, block_cols: the tile shape (capped at n and m; None: tile_shape's
    default); the last tiles may be ragged. unroll: the tile loops written out instead
    of rolled (see info_nce).
    """
    dt = jnp.promote_types(a.dtype, jnp.float32)
    a, b = a.astype(dt), b.astype(dt)
    c = jax.lax.stop_gradient(jnp.asarray(c, dt))
    mask = jnp.ones((b.shape[0],), bool) if mask is None else mask.astype(bool)
    shift = float(bound) if bound is not None and 2.0 * bound <= _FIXED_SHIFT_RANGE else None
    br, bc = tile_shape(a.shape[0], b.shape[0], block_rows, block_cols)
    return _wlse(a, b, c, mask, float(scale), br, bc, shift, bool(unroll))


def info_nce(a: jax.Array, b: jax.Array, tau: float, weight: jax.Array | None = None, *,
             block_rows: int | None = None, block_cols: int | None = None,
             online_max: bool = False, unroll: bool = False) -> jax.Array:
    """mean_i -log softmax_j(<a_i, b_j>/tau)[i] on L2-normalised rows; a, b: [B, d].

    In-batch negatives; padded rows (weight 0) are excluded as negatives too. Computed
    blockwise (weighted_row_logsumexp; block_rows, block_cols: the tile, default
    tile_shape's): no [B, B] array in the forward or the backward.
    Rows are unit, so |logit| <= 1/tau and the tiles use the fixed shift 1/tau when
    2/tau <= 60 (tau >= 1/30); online_max=True computes the row maximum instead (what a
    smaller tau gets). unroll=True writes the tile loops out: the same value, slower to
    compile and run, for XLA's cost analysis, which counts a loop body once (a rolled
    step under-reports the tiles' FLOPs and bytes; experiments/roofline.py). A static
    argument of the traced function, so jit's caches tell the two forms apart.
    dense_info_nce is the dense form it replaced.
    """
    a = l2_normalize(a.astype(jnp.promote_types(a.dtype, jnp.float32)))
    b = l2_normalize(b.astype(jnp.promote_types(b.dtype, jnp.float32)))
    if weight is None:
        c, mask = jnp.full((a.shape[0],), 1.0 / a.shape[0], a.dtype), None
    else:
        w = jnp.asarray(weight, a.dtype)
        c, mask = w / jnp.maximum(jnp.sum(w), 1.0), w > 0
    lse_term = weighted_row_logsumexp(a, b, 1.0 / tau, c, mask,
                                      bound=None if online_max else 1.0 / tau,
                                      block_rows=block_rows, block_cols=block_cols,
                                      unroll=unroll)
    return lse_term - jnp.sum(jax.lax.stop_gradient(c) * jnp.sum(a * b, axis=-1)) / tau


def dense_info_nce(a: jax.Array, b: jax.Array, tau: float,
                   weight: jax.Array | None = None) -> jax.Array:
    """info_nce with the [B, B] logits held whole (the form before the blockwise one). The
    reference of tests/test_cmcl_blockwise.py and experiments/bench_cmcl.py only."""
    a = l2_normalize(a)
    b = l2_normalize(b)
    logits = (a @ b.T) / tau
    if weight is not None:
        logits = jnp.where(weight[None, :] > 0, logits, -1e9)
    log_p = jnp.diagonal(logits) - jax.nn.logsumexp(logits, axis=1)
    return weighted_mean(-log_p, weight)
