"""Mixed-precision matmuls (train.mixed_precision): bf16 operands, float32 accumulation
and output, in the forward pass and the backward pass.

Why a custom VJP: JAX's transpose of a bf16 x bf16 -> f32 dot multiplies the float32
cotangent by the bf16 operand, so both backward matmuls run as float32 dots after a
convert of the bf16 operand. Here the input gradient dx = g W^T takes a bf16 cotangent
as well. The weight gradient dW = x^T g contracts the row axis of both; on CPU it stays
a float32 matmul (XLA's CPU backend runs that bf16 form slower than float32:
docs/performance.md), elsewhere it is bf16 too. Parameters, their gradients and
everything outside these matmuls stay float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_BF16 = jnp.bfloat16


def _dot(a: jax.Array, b: jax.Array, contract: tuple[int, int], dtype) -> jax.Array:
    """a, b 2-D, contracting a's axis contract[0] with b's contract[1], operands in dtype,
    float32 accumulation and output."""
    return jax.lax.dot_general(a.astype(dtype), b.astype(dtype),
                               (((contract[0],), (contract[1],)), ((), ())),
                               preferred_element_type=jnp.float32)


@jax.custom_vjp
def bf16_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """a: [..., k] @ b: [k, n] -> float32 [..., n], operands rounded to bf16."""
    return _fwd(a, b)[0]


def _fwd(a, b):
    a16 = a.reshape(-1, a.shape[-1]).astype(_BF16)
    b16 = b.astype(_BF16)
    y = _dot(a16, b16, (1, 0), _BF16).reshape(*a.shape[:-1], b.shape[-1])
    # zero-size arrays carry the input dtypes and shape for the cotangents
    return y, (a16, b16, jnp.zeros((0,) + a.shape, a.dtype), jnp.zeros((0,), b.dtype))


def _bwd(res, g):
    a16, b16, a_like, b_like = res
    g2 = g.reshape(-1, g.shape[-1])
    da = _dot(g2, b16, (1, 1), _BF16).reshape(a_like.shape[1:])  # g W^T: [..., k]
    dw_dtype = jnp.float32 if jax.default_backend() == "cpu" else _BF16
    db = _dot(a16, g2, (0, 0), dw_dtype)  # x^T g: [k, n]
    return da.astype(a_like.dtype), db.astype(b_like.dtype)


bf16_matmul.defvjp(_fwd, _bwd)


def matmul(a: jax.Array, b: jax.Array, compute_dtype=None) -> jax.Array:
    """a @ b in float32 (compute_dtype None) or as `bf16_matmul` (compute_dtype bfloat16)."""
    if compute_dtype is None:
        return a @ b
    if compute_dtype != _BF16:
        raise ValueError(f"compute_dtype must be None or bfloat16, got {compute_dtype}")
    return bf16_matmul(a, b)


def dense_dot_general(compute_dtype):
    """nn.Dense's dot_general: None (flax's float32 default) or `bf16_matmul` for the
    contraction Dense does (inputs' last axis with the kernel's first, no batch axes)."""
    if compute_dtype is None:
        return None

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
        del precision, preferred_element_type
        (lc, rc), (lb, rb) = dimension_numbers
        if tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,) or lb or rb or rhs.ndim != 2:
            raise ValueError(f"mixed-precision Dense: unsupported dimension_numbers "
                             f"{dimension_numbers}")
        return matmul(lhs, rhs, compute_dtype)

    return dot_general
