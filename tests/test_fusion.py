"""Fusion modules (oat / sum / concat) vs hand computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.model.fusion import ConcatFusion, OATFusion, SumFusion, make_fusion

N, D = 6, 8
W0 = {"image": 0.05, "text": 0.8}


def _data():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(N, D)).astype(np.float32)
    z = {"text": rng.normal(size=(N, D)).astype(np.float32), "image": rng.normal(size=(N, D)).astype(np.float32)}
    return e, z


def _ln_norm(x, scale=1.0, bias=0.0):
    """torch LayerNorm (eps 1e-5, biased variance) then row L2 normalisation, in float64."""
    x = x.astype(np.float64)
    y = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * scale + bias
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_oat_fusion_matches_hand_computation_and_learns_weights():
    e, z = _data()
    mod = make_fusion("oat", D, ("image", "text"), W0, dropout=0.1)
    assert isinstance(mod, OATFusion)
    p = jax.jit(mod.init)(jax.random.PRNGKey(0), e, z)["params"]
    assert float(p["w_image"]) == pytest.approx(0.05) and float(p["w_text"]) == pytest.approx(0.8)

    @jax.jit
    def run(p, e, z, key):
        out, grads = jax.value_and_grad(lambda p: jnp.sum(mod.apply({"params": p}, e, z) * e))(p)
        z_eval = mod.apply({"params": p}, e, z)
        z_drop = mod.apply({"params": p}, e, z, deterministic=False, rngs={"dropout": key})
        return z_eval, z_drop, grads

    key = jax.random.key(1, impl="rbg")  # cheaper to compile than threefry
    z_eval, z_drop, grads = run(p, e, z, key)
    hand = _ln_norm((1 - 0.05 - 0.8) * e + 0.05 * z["image"] + 0.8 * z["text"])
    np.testing.assert_allclose(np.asarray(z_eval), hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(z_drop), axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(np.asarray(z_drop), np.asarray(z_eval))
    assert float(grads["w_image"]) != 0.0 and float(grads["w_text"]) != 0.0
    # insertion order of the dict does not matter; missing weights are an error
    z_rev = {"image": z["image"], "text": z["text"]}
    np.testing.assert_allclose(np.asarray(run(p, e, z_rev, key)[0]), np.asarray(z_eval))
    with pytest.raises(ValueError, match="initial weight"):
        OATFusion(("image", "audio"), W0).init(jax.random.PRNGKey(0), e, {**z, "audio": e})


@pytest.mark.parametrize("kind", ["sum", "concat"])
def test_sum_and_concat_fusion_match_hand_computation(kind):
    e, z = _data()
    mod = make_fusion(kind, D, ("image", "text"), W0, dropout=0.1)
    assert isinstance(mod, SumFusion if kind == "sum" else ConcatFusion)
    p, out = jax.jit(lambda key: (lambda v: (v["params"], mod.apply(v, e, z)))(mod.init(key, e, z)))(
        jax.random.PRNGKey(0)
    )
    k = np.asarray(p["proj"]["kernel"], np.float64)
    b = np.asarray(p["proj"]["bias"], np.float64)
    if kind == "sum":
        assert k.shape == (D, D)
        x = e + z["image"] + z["text"]
    else:
        assert k.shape == (3 * D, D)  # (M + 1) d -> d, order [id, image, text]
        x = np.concatenate([e, z["image"], z["text"]], axis=1)
    hand = _ln_norm(x @ k + b, np.asarray(p["ln"]["scale"]), np.asarray(p["ln"]["bias"]))
    np.testing.assert_allclose(np.asarray(out), hand, rtol=1e-5, atol=1e-5)


def test_unknown_fusion_and_missing_modality():
    e, z = _data()
    with pytest.raises(ValueError, match="unknown fusion"):
        make_fusion("mean", D)
    with pytest.raises(ValueError, match="no embedding"):
        jax.eval_shape(SumFusion(D, ("image", "audio")).init, jax.random.PRNGKey(0), e, z)


def test_residual_fusion_starts_as_the_id_vector_and_adds_weighted_content():
    e, z = _data()
    mod = make_fusion("residual", D, ("image", "text"), dropout=0.1)
    p = mod.init(jax.random.PRNGKey(0), e, z)["params"]
    # w = 0: exactly the ID item vector (LightGCN's scoring), and w still gets a gradient
    np.testing.assert_array_equal(np.asarray(mod.apply({"params": p}, e, z)), e)
    g = jax.grad(lambda p: jnp.sum(mod.apply({"params": p}, e, z) * e))(p)
    np.testing.assert_allclose(float(g["w_text"]), float(np.sum(z["text"] * e)), rtol=1e-5)
    p = {"w_image": jnp.float32(0.5), "w_text": jnp.float32(-2.0)}
    out = np.asarray(mod.apply({"params": p}, e, z))
    np.testing.assert_allclose(out, e + 0.5 * z["image"] - 2.0 * z["text"], rtol=1e-5, atol=1e-5)
    # dropout acts on the content part only: the ID part survives every mask
    drop = np.asarray(mod.apply({"params": p}, e, z, deterministic=False,
                                rngs={"dropout": jax.random.PRNGKey(3)}))
    content = e + 0.5 * z["image"] - 2.0 * z["text"] - e
    kept = np.isclose(drop - e, content / 0.9, rtol=1e-4, atol=1e-5)
    dropped = np.isclose(drop, e, rtol=1e-5, atol=1e-6)
    assert np.all(kept | dropped) and dropped.any() and kept.any()
