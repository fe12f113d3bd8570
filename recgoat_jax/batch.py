"""The BPR training batch: what the trainer hands a model's `loss` (and `diagnostics`).

No imports from the package, so any module may import it (model/ included).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Batch:
    """(user, positive item, negative item) triples, one per example.

    users, pos, neg: [B] int32; weight: [B] float32, 1 for a real triple and 0 for
    padding (the last batch of an epoch is padded to B). The trainer keeps a whole epoch
    on the device as one Batch of [n_steps, B] arrays; `row(i)` is step i's [B] batch.
    """

    users: jax.Array
    pos: jax.Array
    neg: jax.Array
    weight: jax.Array

    @classmethod
    def of(cls, triples) -> Batch:
        """Device arrays of anything with users / pos / neg / weight arrays (e.g. the
        sampler's EpochBatches)."""
        return cls(users=jnp.asarray(triples.users), pos=jnp.asarray(triples.pos),
                   neg=jnp.asarray(triples.neg), weight=jnp.asarray(triples.weight))

    @classmethod
    def shaped(cls, *lead: int) -> Batch:
        """ShapeDtypeStructs of a Batch with leading dims `lead` (e.g. (B,) or
        (n_steps, B)): for jax.eval_shape and ahead-of-time compilation."""
        ids = jax.ShapeDtypeStruct(tuple(lead), jnp.int32)
        return cls(users=ids, pos=ids, neg=ids,
                   weight=jax.ShapeDtypeStruct(tuple(lead), jnp.float32))

    def row(self, i) -> Batch:
        """Row i of every field: step i's [B] batch of an epoch's [n_steps, B]."""
        return jax.tree_util.tree_map(lambda v: v[i], self)
