"""GATLayer vs a slow NumPy reference (DGL GATConv semantics), vs jraph.GAT, jit/grad, encoder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax import compat  # noqa: F401
import jraph

from recgoat_jax.model.gat import GATLayer, ModalityEncoder, graph_from_edges

N, D_IN, OUT, HEADS = 7, 5, 12, 3


def _graph(seed: int = 0):
    """Random directed edges plus self loops, sorted by (receiver, sender)."""
    rng = np.random.default_rng(seed)
    pairs = {(int(a), int(b)) for a, b in rng.integers(0, N, size=(18, 2))}
    pairs |= {(i, i) for i in range(N)}
    pairs = sorted(pairs, key=lambda e: (e[1], e[0]))
    s = np.array([p[0] for p in pairs], np.int32)
    r = np.array([p[1] for p in pairs], np.int32)
    x = rng.normal(size=(N, D_IN)).astype(np.float32)
    return x, s, r


def _numpy_gat(params, x, s, r):
    """Slow per-edge reference: DGL GATConv with dropout off."""
    hd = OUT // HEADS
    w = np.asarray(params["fc"]["kernel"], np.float64)
    a_l = np.asarray(params["attn_l"], np.float64)
    a_r = np.asarray(params["attn_r"], np.float64)
    h = (x.astype(np.float64) @ w).reshape(N, HEADS, hd)
    logits = np.zeros((len(s), HEADS))
    for e, (j, i) in enumerate(zip(s, r)):
        for k in range(HEADS):
            v = h[j, k] @ a_l[k] + h[i, k] @ a_r[k]
            logits[e, k] = v if v > 0 else 0.2 * v
    alpha = np.zeros_like(logits)
    for i in range(N):
        idx = np.nonzero(r == i)[0]
        for k in range(HEADS):
            ex = np.exp(logits[idx, k] - logits[idx, k].max())
            alpha[idx, k] = ex / ex.sum()
    out = np.zeros((N, HEADS, hd))
    for e, (j, i) in enumerate(zip(s, r)):
        out[i] += alpha[e][:, None] * h[j]
    return out.reshape(N, OUT) + np.asarray(params["bias"]), alpha


def _random_params(module, *args, seed: int = 0, **kwargs):
    """Parameters with init's tree and shapes (jax.eval_shape: nothing compiled) filled from NumPy."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args, **kwargs)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda sd: jnp.asarray(rng.normal(scale=0.5, size=sd.shape), sd.dtype), shapes)


@pytest.fixture(scope="module")
def setup():
    x, s, r = _graph()
    layer = GATLayer(OUT, heads=HEADS, feat_drop=0.1, attn_drop=0.1)
    g = graph_from_edges(jnp.asarray(x), jnp.asarray(s), jnp.asarray(r))
    params = _random_params(layer, g)
    evaluate = jax.jit(lambda p, g: layer.apply({"params": p}, g, deterministic=True, return_attention=True))
    out, alpha = evaluate(params, g)
    return layer, params, g, x, s, r, np.asarray(out), np.asarray(alpha)


def test_gat_param_shapes(setup):
    layer, params, g, *_ = setup
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {
        "fc": {"kernel": (D_IN, OUT)},  # no bias in the linear map
        "attn_l": (HEADS, OUT // HEADS),
        "attn_r": (HEADS, OUT // HEADS),
        "bias": (OUT,),
    }


def test_gat_matches_numpy_reference(setup):
    layer, params, g, x, s, r, out, alpha = setup
    ref_out, ref_alpha = _numpy_gat(params, x, s, r)
    assert out.shape == (N, OUT) and alpha.shape == (len(s), HEADS)
    np.testing.assert_allclose(alpha, ref_alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    # attention sums to 1 over each node's incoming edges, per head
    sums = np.zeros((N, HEADS))
    np.add.at(sums, r, alpha)
    np.testing.assert_allclose(sums, 1.0, atol=1e-6)


def test_gat_equals_jraph_gat_in_eval_mode(setup):
    layer, params, g, x, s, r, out, _ = setup
    hd = OUT // HEADS

    @jax.jit
    def both(p, g):
        w, a_l, a_r = p["fc"]["kernel"], p["attn_l"], p["attn_r"]
        ours_jit = GATLayer(OUT, HEADS).apply({"params": p}, g)
        jr = jraph.GAT(
            attention_query_fn=lambda h: (h @ w).reshape(h.shape[0], HEADS, hd),
            attention_logit_fn=lambda snd, rcv, _: jax.nn.leaky_relu(
                jnp.sum(snd * a_l, -1) + jnp.sum(rcv * a_r, -1), 0.2
            )[..., None],
            node_update_fn=lambda h: h.reshape(h.shape[0], -1),
        )
        return ours_jit, jr(g).nodes + p["bias"]

    ours_jit, theirs = both(params, g)
    np.testing.assert_allclose(out, np.asarray(theirs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours_jit), np.asarray(theirs), rtol=1e-5, atol=1e-6)


def test_gat_dropout_jit_and_grad(setup):
    layer, params, g, x, s, r, eval_out, _ = setup

    def loss(p, key):
        o, a = layer.apply({"params": p}, g, deterministic=False, return_attention=True, rngs={"dropout": key})
        return jnp.sum(o**2), (o, a)

    run = jax.jit(jax.grad(loss, has_aux=True))
    # rbg keys: same semantics, far cheaper to compile than threefry on CPU
    grads, (o1, a1) = run(params, jax.random.key(1, impl="rbg"))
    grads_b, (o1b, _) = run(params, jax.random.key(1, impl="rbg"))
    np.testing.assert_array_equal(np.asarray(o1), np.asarray(o1b))  # explicit key: reproducible
    assert not np.allclose(np.asarray(o1), eval_out)  # dropout active
    # the returned weights are the softmax before attention dropout
    sums = np.zeros((N, HEADS))
    np.add.at(sums, r, np.asarray(a1))
    np.testing.assert_allclose(sums, 1.0, atol=1e-6)
    for name in ("attn_l", "attn_r", "bias"):
        gv = np.asarray(grads[name])
        assert np.all(np.isfinite(gv)) and np.abs(gv).sum() > 0, name
    assert np.abs(np.asarray(grads["fc"]["kernel"])).sum() > 0


def test_gat_on_padded_graph(setup):
    """Static shapes via jraph padding; compat makes jraph.zero_out_padding usable."""
    layer, params, g, x, s, r, ref, _ = setup
    padded = jraph.pad_with_graphs(g, n_node=N + 3, n_edge=len(s) + 4, n_graph=2)

    @jax.jit
    def run(p, pg):
        return jraph.zero_out_padding(pg._replace(nodes=layer.apply({"params": p}, pg))).nodes

    nodes = np.asarray(run(params, padded))
    np.testing.assert_allclose(nodes[:N], ref, rtol=1e-6, atol=1e-6)
    assert np.all(nodes[N:] == 0)


def test_gat_rejects_bad_width(setup):
    g = setup[2]
    with pytest.raises(ValueError, match="divisible"):
        jax.eval_shape(GATLayer(10, heads=3).init, jax.random.PRNGKey(0), g)


def test_modality_encoder():
    x, s, r = _graph(1)
    dim = 8
    # any input width, any number of layers: structure via eval_shape (nothing compiled)
    for width in (5, 11):
        f = np.zeros((N, width), np.float32)
        enc = ModalityEncoder(dim, layers=2, heads=2)
        v = jax.eval_shape(enc.init, jax.random.PRNGKey(0), f, s, r)
        assert set(v["params"]) == {"proj", "gat_0", "gat_1"}
        assert v["params"]["proj"]["kernel"].shape == (width, dim)
        assert jax.eval_shape(enc.apply, v, f, s, r).shape == (N, dim)

    proj_only = ModalityEncoder(dim, use_gat=False)
    one = ModalityEncoder(dim, layers=1, heads=2)
    p0 = _random_params(proj_only, x, s, r, seed=1)
    p1 = _random_params(one, x, s, r, seed=2)
    assert set(p0) == {"proj"}

    @jax.jit
    def run(p0, p1):
        h = x @ p1["proj"]["kernel"] + p1["proj"]["bias"]
        manual = jax.nn.leaky_relu(GATLayer(dim, 2).apply({"params": p1["gat_0"]}, graph_from_edges(h, s, r)), 0.2)
        return proj_only.apply({"params": p0}, x, s, r), one.apply({"params": p1}, x, s, r), manual

    z0, z1, manual = run(p0, p1)
    p = p0["proj"]
    np.testing.assert_allclose(np.asarray(z0), x @ np.asarray(p["kernel"]) + np.asarray(p["bias"]), rtol=1e-5, atol=1e-5)
    # one GAT layer = projection, GATLayer, LeakyReLU(0.2) (dropout off)
    np.testing.assert_allclose(np.asarray(z1), np.asarray(manual), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_csr_aggregate_value_and_grad(symmetric):
    """gat.aggregate (CSR per head, custom VJP) vs the per-edge gather + segment_sum, value
    and both gradients, on a directed graph (argsort branch of the transposed order) and
    a symmetric one (reverse-edge branch)."""
    from recgoat_jax.model.gat import _transpose_order, aggregate

    x, s, r = _graph(3)
    if symmetric:
        pairs = sorted({(int(a), int(b)) for a, b in zip(s, r)} | {(int(b), int(a)) for a, b in zip(s, r)},
                       key=lambda e: (e[1], e[0]))
        s = np.array([p[0] for p in pairs], np.int32)
        r = np.array([p[1] for p in pairs], np.int32)
    np.testing.assert_array_equal(np.asarray(_transpose_order(jnp.asarray(s), jnp.asarray(r), N)),
                                  np.argsort(s, kind="stable"))
    rng = np.random.default_rng(0)
    alpha = jnp.asarray(rng.uniform(size=(len(s), HEADS)), jnp.float32)
    h = jnp.asarray(rng.normal(size=(N, HEADS, 4)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(N, HEADS, 4)), jnp.float32)

    def ref(a, v):
        return jax.ops.segment_sum(v[s] * a[..., None], r, num_segments=N)

    def loss(f):
        return jax.jit(jax.value_and_grad(lambda a, v: jnp.vdot(f(a, v), cot), argnums=(0, 1)))

    (v1, (ga1, gh1)) = loss(lambda a, v: aggregate(a, v, jnp.asarray(s), jnp.asarray(r)))(alpha, h)
    (v0, (ga0, gh0)) = loss(ref)(alpha, h)
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    np.testing.assert_allclose(ga1, ga0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gh1, gh0, rtol=1e-5, atol=1e-6)
