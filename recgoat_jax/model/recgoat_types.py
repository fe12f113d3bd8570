"""The record RecGOAT's network hands its loss terms and diagnostics: a leaf below
model/recgoat.py (which computes it) and model/recgoat_loss.py (which reads it)."""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class NetOutput:
    """What RecGOATNet computes (U users, I items, d = model.dim, m a modality; float32).

    user_ego [U, d], item_ego [I, d]: the ID embedding tables (parameters).
    e_u [U, d]: users of the ID branch, plus z_user when the user branch is on.
    e_i [I, d]: items of the ID branch.
    z_user [U, d] or None: the user branch's output (None when it is off).
    z {m: [I, d]}: modality encoder outputs; zhat {m: [I, d]}: the same after OAT.
    z_items [I, d]: the fused items (unit rows, except residual fusion).
    diag {name: scalar}: the aligner's statistics (reference OAT), for `diagnostics`.
    """

    user_ego: jax.Array
    item_ego: jax.Array
    e_u: jax.Array
    e_i: jax.Array
    z_user: jax.Array | None
    z: dict
    zhat: dict
    z_items: jax.Array
    diag: dict
