"""Blockwise InfoNCE (infonce.info_nce, weighted_row_logsumexp) against the dense form it
replaced (infonce.dense_info_nce), and both CMCL forms built on it.

Tolerances (float32; inputs standard normal, so no two logits tie): the loss to rtol 2e-6
plus atol 1e-6 (the blockwise and dense sums round differently; a 1-row batch's loss is
0), each gradient entry to atol max(2e-5 * max |dense gradient|, 1e-7) (tiles sum the softmax terms
in another order; measured errors are ~1e-6 of the largest entry). Each test compiles
the blockwise and the dense form in ONE program to keep it fast.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax import infonce
from recgoat_jax.model import alignment as A

RTOL_VALUE = 2e-6
ATOL_VALUE = 1e-6
GRAD_ATOL_REL = 2e-5


def _inputs(b, d, seed, zero_rows=()):
    ka, kb = jax.random.split(jax.random.PRNGKey(seed))
    w = np.ones(b, np.float32)
    w[list(zero_rows)] = 0.0
    return jax.random.normal(ka, (b, d)), jax.random.normal(kb, (b, d)), jnp.asarray(w)


def _value_and_grads(fs, *args):
    """[value_and_grad of f w.r.t. every arg for f in fs], all in one compiled program."""
    vg = [jax.value_and_grad(f, argnums=tuple(range(len(args)))) for f in fs]
    return jax.jit(lambda *x: [g(*x) for g in vg])(*args)


def _assert_close(got, ref):
    (v, gs), (v_ref, gs_ref) = got, ref
    np.testing.assert_allclose(float(v), float(v_ref), rtol=RTOL_VALUE, atol=ATOL_VALUE)
    for g, g_ref in zip(gs, gs_ref):
        g, g_ref = np.asarray(g), np.asarray(g_ref)
        atol = max(GRAD_ATOL_REL * np.abs(g_ref).max(), 1e-7)  # 1e-7: a 1-row batch's 0
        np.testing.assert_allclose(g, g_ref, rtol=0, atol=atol)


# (B, tile rows, tile columns): one strip (the default tile for B <= 4096), tiles that
# divide B, ragged last row and column tiles, a 1-row batch, tiles wider than B
# make test-fast keeps the default strip and the ragged tiles (each case compiles its own
# programs: ~1.3-1.9 s on a cold compile cache)
_SLOW = pytest.mark.slow
CASES = [(100, 128, 4096), pytest.param(64, 16, 32, marks=_SLOW), (100, 32, 48),
         pytest.param(257, 64, 100, marks=_SLOW), pytest.param(1, 128, 4096, marks=_SLOW),
         pytest.param(50, 7, 1000, marks=_SLOW)]


@pytest.mark.parametrize("b,br,bc", CASES)
def test_info_nce_equals_dense(b, br, bc):
    """Fixed shift and streamed row maximum, with every 5th row padding (weight 0)."""
    a, bb, w = _inputs(b, 16, seed=b + br, zero_rows=range(0, b, 5)[1:])
    fixed, online, ref = _value_and_grads(
        [lambda x, y: infonce.info_nce(x, y, 0.2, w, block_rows=br, block_cols=bc),
         lambda x, y: infonce.info_nce(x, y, 0.2, w, block_rows=br, block_cols=bc,
                                      online_max=True),
         lambda x, y: infonce.dense_info_nce(x, y, 0.2, w)], a, bb)
    _assert_close(fixed, ref)
    _assert_close(online, ref)


@pytest.mark.slow  # compiles its own blockwise and dense programs: ~1.5-3.5 s on a cold cache
@pytest.mark.parametrize("tau", [0.02, 1.0])
def test_info_nce_small_and_large_tau(tau):
    """tau 0.02: |logit| up to 50, past the fixed-shift range, so the row maximum is
    streamed (across 3 column tiles); tau 1: the fixed shift."""
    a, bb, w = _inputs(90, 8, seed=3)
    got, ref = _value_and_grads(
        [lambda x, y: infonce.info_nce(x, y, tau, w, block_rows=32, block_cols=32),
         lambda x, y: infonce.dense_info_nce(x, y, tau, w)], a, bb)
    _assert_close(got, ref)


@pytest.mark.slow  # compiles its own blockwise and dense programs: ~1.5-3.5 s on a cold cache
def test_masked_rows_and_a_fully_masked_tile():
    """Zero-weight rows drop out as anchors and as negatives; the last column tile holds
    only padding (weight 0): a streamed maximum must not be poisoned by it. Changing the
    padded rows moves neither the loss nor the other rows' gradients."""
    b, br, bc = 80, 16, 20
    a, bb, w = _inputs(b, 8, seed=4, zero_rows=list(range(60, 80)) + [3, 17])
    a2 = a.at[60:].set(7.0 * a[60:] + 1.0)
    fs = [functools.partial(infonce.info_nce, tau=0.2, weight=w, block_rows=br, block_cols=bc,
                            online_max=om) for om in (False, True)]
    fixed, online, moved, ref = _value_and_grads(
        [lambda x, y, x2: fs[0](x, y), lambda x, y, x2: fs[1](x, y),
         lambda x, y, x2: fs[1](x2, y), lambda x, y, x2: infonce.dense_info_nce(x, y, 0.2, w)],
        a, bb, a2)
    ref = (ref[0], ref[1][:2])  # d/dx, d/dy
    for v, (gx, gy, _) in (fixed, online):
        _assert_close((v, (gx, gy)), ref)
        np.testing.assert_array_equal(np.asarray(gx)[60:], 0.0)  # no anchor gradient
    _assert_close((moved[0], (moved[1][2], moved[1][1])), ref)


def test_all_rows_masked_is_finite_zero():
    a, bb, w = _inputs(12, 4, seed=5, zero_rows=range(12))
    out = _value_and_grads([functools.partial(infonce.info_nce, tau=0.2, weight=w, block_rows=5,
                                              block_cols=5, online_max=om)
                            for om in (False, True)], a, bb)
    for v, (ga, gb) in out:
        assert float(v) == 0.0
        assert np.all(np.asarray(ga) == 0.0) and np.all(np.asarray(gb) == 0.0)


@pytest.mark.slow  # compiles its own blockwise and dense programs: ~1.5-3.5 s on a cold cache
def test_no_weight_and_bf16_inputs():
    a, bb, _ = _inputs(40, 8, seed=6)
    a16, b16 = a.astype(jnp.bfloat16), bb.astype(jnp.bfloat16)
    up = lambda x: x.astype(jnp.float32)
    got, ref, got16, ref16 = _value_and_grads(
        [lambda x, y, *_: infonce.info_nce(x, y, 0.2, block_rows=16),
         lambda x, y, *_: infonce.dense_info_nce(x, y, 0.2),
         # bf16 views are computed in float32: the dense form on the same rounded rows
         lambda x, y, x16, y16: infonce.info_nce(x16, y16, 0.2, block_rows=16),
         lambda x, y, x16, y16: infonce.dense_info_nce(up(x16), up(y16), 0.2)],
        a, bb, a16, b16)
    _assert_close(got, ref)
    assert got16[0].dtype == jnp.float32
    np.testing.assert_allclose(float(got16[0]), float(ref16[0]), rtol=RTOL_VALUE)


def _largest_buffer(f, *args) -> int:
    """Elements of the largest array in the compiled program of f (jit, optimised HLO)."""
    hlo = jax.jit(f).lower(*args).compile().as_text()
    sizes = [int(np.prod([int(x) for x in dims.split(",") if x]))
             for dims in re.findall(r"(?:f32|f16|bf16|pred|s32)\[([0-9,]*)\]", hlo)]
    return max(sizes)


@pytest.mark.slow  # compiles its own blockwise and dense programs: ~1.5-3.5 s on a cold cache
@pytest.mark.parametrize("br,bc", [(128, 4096), (128, 256)])
def test_no_batch_by_batch_array_in_value_or_gradient(br, bc):
    b = 1024
    a, bb, w = _inputs(b, 8, seed=7)
    grad = jax.value_and_grad(lambda x, y: infonce.info_nce(x, y, 0.2, w, block_rows=br,
                                                           block_cols=bc), argnums=(0, 1))
    assert _largest_buffer(grad, a, bb) <= br * min(bc, b) < b * b
    dense = jax.value_and_grad(lambda x, y: infonce.dense_info_nce(x, y, 0.2, w),
                               argnums=(0, 1))
    assert _largest_buffer(dense, a, bb) >= b * b  # the check sees the dense form's array


@pytest.mark.slow  # compiles its own blockwise and dense programs: ~1.5-3.5 s on a cold cache
def test_unrolled_tiles_same_value_and_full_cost():
    """info_nce(unroll=True) (for XLA's cost analysis, which counts a loop body once)
    computes the same loss and counts every tile: >= 3 products of 2 B^2 d FLOPs. The
    switch is an argument, so the two forms are two traces without clearing any cache."""
    b, d = 128, 16
    a, bb, w = _inputs(b, d, seed=8)

    def f(x, y, unroll=False):
        return infonce.info_nce(x, y, 0.2, w, block_rows=32, unroll=unroll)

    rolled = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(a, bb).compile()
    unrolled = jax.jit(jax.value_and_grad(lambda x, y: f(x, y, unroll=True),
                                          argnums=(0, 1))).lower(a, bb).compile()
    np.testing.assert_allclose(float(unrolled(a, bb)[0]), float(rolled(a, bb)[0]), rtol=1e-6)
    flops = unrolled.cost_analysis()["flops"]
    assert flops >= 3 * 2 * b * b * d
    assert rolled.cost_analysis()["flops"] < flops / 2  # the rolled loop body, counted once


def _views(b, d, seed):
    keys = jax.random.split(jax.random.PRNGKey(seed), 9)
    return [jax.random.normal(k, (b, d)) for k in keys]


@pytest.mark.slow  # compiles its own blockwise and dense programs: ~1.5-3.5 s on a cold cache
@pytest.mark.parametrize("form", ["paper", "reference"])
def test_cmcl_forms_equal_their_dense_versions(monkeypatch, form):
    """Both CMCL forms (several InfoNCE each, ragged tiles) against the same forms on the
    dense InfoNCE: value and the gradient w.r.t. every view."""
    b, d = 45, 8
    w = jnp.asarray(np.r_[np.ones(40), np.zeros(5)], jnp.float32)

    if form == "paper":
        def loss(u, zi, img, txt, *_):
            return A.cmcl_paper([img, txt], zi, u, zi, 0.2, 0.5, w)
    else:
        def loss(u, zi, img, txt, i_id, n_id, n_img, n_txt, _):
            return A.cmcl_reference({"id": i_id, "image": img, "text": txt},
                                    {"id": n_id, "image": n_img, "text": n_txt}, 0.2, w,
                                    e_u=u, z_pos=zi, w=0.5)

    views = _views(b, d, seed=9)
    tiled = functools.partial(infonce.info_nce, block_rows=16, block_cols=20)

    def with_info_nce(fn):  # the loss with alignment.info_nce swapped while it is traced
        def run(*x):
            monkeypatch.setattr(A, "info_nce", fn)
            return loss(*x)
        return run

    got, ref = _value_and_grads([with_info_nce(lambda x, y, tau, wt, **_: tiled(x, y, tau, wt)),
                                 with_info_nce(lambda x, y, tau, wt, **_:
                                               infonce.dense_info_nce(x, y, tau, wt))], *views)
    _assert_close(got, ref)
