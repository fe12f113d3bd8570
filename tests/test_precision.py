"""model/precision.py: bf16_matmul's value and both gradients against float32 products
of the bf16-rounded operands (an independent NumPy computation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.model.precision import bf16_matmul, dense_dot_general, matmul


def _round(x):  # bf16 rounding, back in float64 for the reference products
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


@pytest.mark.slow  # ~3 s of compiles on a cold cache
def test_bf16_matmul_value_and_grads_match_rounded_float_products():
    ka, kb, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    a = jax.random.normal(ka, (2, 7, 24))  # leading axes are flattened
    b = jax.random.normal(kb, (24, 5))
    g = jax.random.normal(kg, (2, 7, 5))
    y, vjp = jax.vjp(bf16_matmul, a, b)
    da, db = vjp(g)
    assert y.dtype == da.dtype == db.dtype == jnp.float32
    np.testing.assert_allclose(y, _round(a) @ _round(b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(da, _round(g) @ _round(b).T, rtol=1e-5, atol=1e-5)
    a2, g2 = _round(a).reshape(-1, 24), np.asarray(g, np.float64).reshape(-1, 5)
    # CPU: the weight gradient takes the float32 cotangent (XLA CPU's bf16 x^T g is slow)
    ref_db = a2.T @ (g2 if jax.default_backend() == "cpu" else _round(g2))
    np.testing.assert_allclose(db, ref_db, rtol=1e-5, atol=1e-5)
    # and not simply the float32 product: the operands were rounded
    assert float(jnp.max(jnp.abs(y - jnp.asarray(a) @ b))) > 1e-4


def test_matmul_and_dense_dot_general_dispatch():
    a, b = jnp.ones((3, 4)), jnp.ones((4, 2))
    assert matmul(a, b) is not None and dense_dot_general(None) is None
    np.testing.assert_array_equal(matmul(a, b, jnp.bfloat16), 4 * np.ones((3, 2)))
    dot = dense_dot_general(jnp.bfloat16)
    np.testing.assert_array_equal(dot(a, b, (((1,), (0,)), ((), ()))), 4 * np.ones((3, 2)))
    try:
        dot(a, b.T, (((1,), (1,)), ((), ())))
    except ValueError as e:
        assert "dimension_numbers" in str(e)
    else:
        raise AssertionError("an unsupported contraction was accepted")
