"""The tests' reference GAT aggregation (import, not conftest): the per-edge form.

`segment_aggregate` gathers each edge's sender features ([E, heads, head_dim]) and sums
them per receiver with jraph.segment_sum: any edge order, plain autodiff. It was the
package's earlier GAT aggregation (model.gat_impl=segment); `model/gat.py aggregate`
(CSR x dense per head, custom VJP) must equal it up to float summation order.
`per_edge_gat(monkeypatch)` makes every GATLayer built afterwards use it, so a whole
RecGOAT step can be compared against the same step with the reference aggregation.
"""

import jax
import jraph

from recgoat_jax.model import gat


def segment_aggregate(alpha: jax.Array, h: jax.Array, senders: jax.Array,
                      receivers: jax.Array) -> jax.Array:
    """out[i, k] = sum over edges j -> i of alpha[e, k] * h[j, k].
    alpha: [E, H]; h: [n, H, F]; senders, receivers: int32 [E] -> [n, H, F]."""
    return jraph.segment_sum(h[senders] * alpha[..., None], receivers, num_segments=h.shape[0])


def per_edge_gat(monkeypatch) -> list:
    """GATLayer aggregates with segment_aggregate (for functions traced afterwards);
    returns a list that gets one entry per traced GAT aggregation."""
    calls = []

    def traced(*args):
        calls.append(args[1].shape)
        return segment_aggregate(*args)

    monkeypatch.setattr(gat, "aggregate", traced)
    return calls
