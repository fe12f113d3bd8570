"""Graph attention (DGL GATConv semantics) on jraph, and the per-modality item encoder.

GATLayer follows the attention of `jraph.GAT` (sender "query" features, per-edge
logits, `jraph.segment_softmax` over each receiver's incoming edges, `jraph.segment_sum`
of weighted sender features) but runs those steps itself instead of calling the
`jraph.GAT` closure, because that closure (a) has no hook between the softmax and the
aggregation, where DGL applies attention dropout, (b) does not return the weights, and
(c) gathers receiver features [n_edges, d] to form logits, while DGL's form only needs
two per-node scalars per head. In eval mode the two are numerically identical
(tests/test_gat.py checks it against `jraph.GAT`).

The aggregation is one CSR x dense product per head with the attention weights as the
sparse values, and a custom VJP (the transposed CSR product for d h, per-edge dot
products in blocks for d alpha), so no [n_edges, heads, head_dim] tensor is formed. It
equals the per-edge gather + segment_sum up to float summation order (the tests'
reference, tests/gat_reference.py). Measured costs: docs/performance.md.
"""

from __future__ import annotations

import math
from typing import Any

from recgoat_jax import compat  # noqa: F401  (must precede jraph: restores jax.tree_map)

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
from jax.experimental import sparse as jsparse

from recgoat_jax.model.precision import dense_dot_general

EDGE_CHUNK = 512  # edges per block of the backward's per-edge dot products (see _edge_dots)


def _attn_init(heads: int, head_dim: int):
    """DGL's xavier_normal(gain=sqrt 2) on a (1, H, F) tensor: fan_in H*F, fan_out F."""
    std = math.sqrt(2.0) * math.sqrt(2.0 / (heads * head_dim + head_dim))

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def _torch_linear(features: int, fan_in: int, name: str | None = None,
                  compute_dtype=None) -> nn.Dense:
    """nn.Dense with torch.nn.Linear's default init U(+-1/sqrt(fan_in)) for kernel and bias.

    compute_dtype bfloat16 (mixed precision): the matmul and its two backward matmuls take
    bf16 operands and accumulate and return float32 (model/precision.py); params, bias
    and gradients stay float32.
    """
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def bias_init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.Dense(
        features,
        kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=bias_init,
        name=name,
        dot_general=dense_dot_general(compute_dtype),
    )


def graph_from_edges(nodes: jax.Array, senders: jax.Array, receivers: jax.Array) -> jraph.GraphsTuple:
    """One-graph GraphsTuple. nodes: [n, d]; senders, receivers: int32 [n_edges]."""
    return jraph.GraphsTuple(
        nodes=nodes,
        edges=None,
        senders=senders,
        receivers=receivers,
        n_node=jnp.array([nodes.shape[0]], jnp.int32),
        n_edge=jnp.array([senders.shape[0]], jnp.int32),
        globals=None,
    )


def _indptr(rows: jax.Array, n: int) -> jax.Array:
    """CSR row pointer [n + 1] of edges sorted by `rows` (int32 [E], non-decreasing)."""
    counts = jnp.bincount(rows, length=n)
    return jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(counts).astype(jnp.int32)])


def _spmm_per_head(data: jax.Array, cols: jax.Array, indptr: jax.Array, x: jax.Array) -> jax.Array:
    """out[i, h] = sum over row i's entries e of data[e, h] * x[cols[e], h].

    data: [E, H] in CSR order; cols: int32 [E]; indptr: [n + 1]; x: [n, H, F] -> [n, H, F].
    One CSR x dense product per head (XLA:CPU and cuSPARSE have kernels for it), so no
    [E, H, F] per-edge tensor is ever formed.
    """
    n = x.shape[0]
    data = data.astype(x.dtype)
    return jnp.stack([jsparse.BCSR((data[:, k], cols, indptr), shape=(n, n)) @ x[:, k]
                      for k in range(x.shape[1])], axis=1)


def _edge_dots(a: jax.Array, b: jax.Array, rows_a: jax.Array, rows_b: jax.Array,
               chunk: int | None = None) -> jax.Array:
    """dots[e, h] = a[rows_a[e], h] . b[rows_b[e], h]. a, b: [n, H, F]; rows: int32 [E] -> [E, H].

    Blocks of `chunk` edges in a lax.map: each block's [chunk, H, F] gathers stay small and
    reuse one buffer, where one [E, H, F] gather costs a fresh multi-GB buffer per step.
    """
    chunk = chunk or EDGE_CHUNK
    e = rows_a.shape[0]
    pad = -e % chunk
    ra = jnp.pad(rows_a, (0, pad)).reshape(-1, chunk)
    rb = jnp.pad(rows_b, (0, pad)).reshape(-1, chunk)
    dots = jax.lax.map(lambda ix: jnp.einsum("ehf,ehf->eh", a[ix[0]], b[ix[1]]), (ra, rb))
    return dots.reshape(-1, a.shape[1])[:e]


@jax.custom_vjp
def aggregate(alpha: jax.Array, h: jax.Array, senders: jax.Array, receivers: jax.Array) -> jax.Array:
    """out[i, h] = sum over edges j -> i of alpha[e, h] * h[j, h]: the GAT aggregation as a
    sparse (attention) x dense product per head.

    alpha: [E, H]; h: [n, H, F]; senders, receivers: int32 [E], edges sorted by receiver
    (what graphs/knn.py and graphs/inputs.py build) -> [n, H, F]. Equals
    segment_sum(h[senders] * alpha[..., None], receivers) up to summation order.
    """
    return _spmm_per_head(alpha, senders, _indptr(receivers, h.shape[0]), h)


def _aggregate_fwd(alpha, h, senders, receivers):
    return aggregate(alpha, h, senders, receivers), (alpha, h, senders, receivers)


def _aggregate_bwd(res, g):
    alpha, h, senders, receivers = res
    # d alpha[e, h] = g[receiver] . h[sender]: per-edge dot products, in blocks.
    g_alpha = _edge_dots(g, h, receivers, senders).astype(alpha.dtype)
    # d h = A^T g: the transposed CSR is the edges re-sorted by sender.
    perm = _transpose_order(senders, receivers, h.shape[0])
    g_h = _spmm_per_head(alpha[perm], receivers[perm], _indptr(senders[perm], h.shape[0]), g)
    return g_alpha, g_h.astype(h.dtype), None, None


def _transpose_order(senders: jax.Array, receivers: jax.Array, n: int) -> jax.Array:
    """The edge order sorted by (sender, receiver): int32 [E].

    For a symmetric graph sorted by (receiver, sender) (every graph built here) that order
    is e -> the position of e's reverse edge, found by a binary search of r_e within row
    s_e's sorted senders: O(E log E) gathers, where XLA:CPU's comparison sort of E keys
    costs ~10x more. Any other graph falls back to a stable argsort (lax.cond)."""
    e = senders.shape[0]
    indptr = _indptr(receivers, n)
    lo, hi = indptr[senders], indptr[senders + 1]  # row s_e's edges: [lo, hi)

    def step(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) // 2
        right = senders[jnp.minimum(mid, e - 1)] < receivers
        return jnp.where(right & (lo < hi), mid + 1, lo), jnp.where(right | (lo >= hi), hi, mid)

    rev, _ = jax.lax.fori_loop(0, max(e, 2).bit_length(), step, (lo, hi))
    rev = jnp.minimum(rev, e - 1)
    symmetric = jnp.all((senders[rev] == receivers) & (receivers[rev] == senders))
    return jax.lax.cond(symmetric, lambda: rev.astype(jnp.int32),
                        lambda: jnp.argsort(senders, stable=True).astype(jnp.int32))


aggregate.defvjp(_aggregate_fwd, _aggregate_bwd)


class GATLayer(nn.Module):
    """One GAT layer, DGL GATConv form, heads concatenated.

    h' = W dropout_feat(h)                        W: [d_in, heads*head_dim], no bias
    e_ij = LeakyReLU_0.2(a_l . h'_j + a_r . h'_i)  for edge j -> i, per head
    alpha = dropout_attn(softmax of e over the incoming edges of i)
    out_i = concat_heads(sum_j alpha_ij h'_j) + bias

    The graph must contain self loops (a node without incoming edges outputs only the
    bias) and its edges sorted by receiver (as every graph builder here sorts them): the
    aggregation is `aggregate`. No activation: ModalityEncoder applies it.
    out_dim = heads * head_dim.
    """

    out_dim: int
    heads: int = 8
    feat_drop: float = 0.1
    attn_drop: float = 0.1
    negative_slope: float = 0.2
    # bfloat16 (train.mixed_precision): the W x matmul (forward and backward) with bf16
    # operands and float32 accumulation; the attention and the aggregation stay float32.
    compute_dtype: Any = None

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True, return_attention: bool = False):
        """graph.nodes: [n, d_in] -> nodes [n, out_dim] (and attention [n_edges, heads])."""
        if self.out_dim % self.heads:
            raise ValueError(f"out_dim {self.out_dim} not divisible by heads {self.heads}")
        head_dim = self.out_dim // self.heads
        x = graph.nodes
        n = x.shape[0]
        senders, receivers = graph.senders, graph.receivers

        x = nn.Dropout(self.feat_drop)(x, deterministic=deterministic)
        fc = nn.Dense(
            self.out_dim,
            use_bias=False,
            kernel_init=nn.initializers.variance_scaling(2.0, "fan_avg", "normal"),
            name="fc",
            dot_general=dense_dot_general(self.compute_dtype),
        )
        h = fc(x).reshape(n, self.heads, head_dim)  # [n, H, F]
        a_l = self.param("attn_l", _attn_init(self.heads, head_dim), (self.heads, head_dim))
        a_r = self.param("attn_r", _attn_init(self.heads, head_dim), (self.heads, head_dim))
        bias = self.param("bias", nn.initializers.zeros, (self.out_dim,))

        # a . W h splits into a sender half and a receiver half: per-node [n, H], gathered per edge.
        el = jnp.einsum("nhf,hf->nh", h, a_l)
        er = jnp.einsum("nhf,hf->nh", h, a_r)
        logits = jax.nn.leaky_relu(el[senders] + er[receivers], self.negative_slope)  # [E, H]
        alpha = jraph.segment_softmax(logits, receivers, num_segments=n)
        alpha_used = nn.Dropout(self.attn_drop)(alpha, deterministic=deterministic)
        out = aggregate(alpha_used, h, senders, receivers).reshape(n, self.out_dim) + bias
        if return_attention:
            return out, alpha
        return out


class ModalityEncoder(nn.Module):
    """Item encoder for one modality: Linear projection, then L x (GAT, LeakyReLU 0.2, dropout).

    features: [n, d_m] (any d_m), senders/receivers: int32 [n_edges] with self loops
    -> z: [n, dim]. use_gat False or layers 0: projection only (model.gat.on_items /
    model.gat.layers). heads * (dim // heads) must equal dim. One instance per modality.
    """

    dim: int
    layers: int = 1  # model.gat.layers
    heads: int = 8  # model.gat.heads
    dropout: float = 0.1
    use_gat: bool = True

    @nn.compact
    def __call__(self, features: jax.Array, senders: jax.Array, receivers: jax.Array,
                 deterministic: bool = True):
        # bf16 features (train.mixed_precision) -> bf16 matmul with float32 output.
        bf16 = features.dtype == jnp.bfloat16
        h = _torch_linear(self.dim, features.shape[-1], name="proj",
                          compute_dtype=jnp.bfloat16 if bf16 else None)(features)
        if not self.use_gat:
            return h
        for layer in range(self.layers):
            g = graph_from_edges(h, senders, receivers)
            h = GATLayer(
                self.dim,
                heads=self.heads,
                feat_drop=self.dropout,
                attn_drop=self.dropout,
                compute_dtype=jnp.bfloat16 if bf16 else None,
                name=f"gat_{layer}",
            )(g, deterministic=deterministic)
            h = jax.nn.leaky_relu(h, 0.2)
            h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        return h
