"""Shims for unmaintained dependencies on current JAX. Import before jraph / ott.

- jraph 0.0.6.dev0 (last release 2022) calls `jax.tree_map` / `jax.tree_leaves` in
  `zero_out_padding` and `get_fully_connected_graph`; JAX removed those top-level
  aliases (0.6). We restore them from `jax.tree_util` only when missing, so a newer
  jraph or an older jax is left alone.
- ott-jax 0.6.0 online geometry (`PointCloud(batch_size=...)`) looks up
  `jax.interpreters.batching.is_vmappable`, which moved to a private module in
  jax >= 0.9 (upstream ott-jax issue #700). We re-export it when missing. Our code uses
  dense geometry only; the shim just keeps the online mode usable.

Idempotent and side-effect free apart from those attribute assignments.
"""

from __future__ import annotations

import jax
import jax.tree_util as _tu

_TREE_ALIASES = {
    "tree_map": _tu.tree_map,
    "tree_leaves": _tu.tree_leaves,
    "tree_flatten": _tu.tree_flatten,
    "tree_unflatten": _tu.tree_unflatten,
    "tree_structure": _tu.tree_structure,
}


def install() -> None:
    """Install the aliases (called on import; safe to call again)."""
    for name, fn in _TREE_ALIASES.items():
        if not hasattr(jax, name):
            setattr(jax, name, fn)
    try:
        from jax.interpreters import batching as _public
    except ImportError:  # pragma: no cover - very old/new jax layouts
        return
    if not hasattr(_public, "is_vmappable"):
        try:
            from jax._src.interpreters import batching as _private
        except ImportError:  # pragma: no cover
            return
        if hasattr(_private, "is_vmappable"):
            _public.is_vmappable = _private.is_vmappable


install()
