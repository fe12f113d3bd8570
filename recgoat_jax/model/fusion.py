"""Fusion of the ID item embedding with the aligned modality embeddings -> unit item vectors.

Common call: `fusion(e_items [n, d], zhats {name: [n, d]}, deterministic) -> z [n, d]`
with unit-norm rows. Modalities are taken in the order of the `modalities` attribute
(default: sorted names of zhats), so parameter layout does not depend on dict order.

  oat    : z = normalize(Dropout(LayerNorm((1 - sum_m w_m) e + sum_m w_m zhat_m)))
           with one learnable scalar w_m per modality (the ID weight is 1 - sum w_m, as in
           the released code: no softmax, weights are free).
  sum    : z = normalize(Dropout(LayerNorm(Linear_{d->d}(e + sum_m zhat_m))))
  concat : z = normalize(Dropout(LayerNorm(Linear_{(M+1)d->d}([e, zhat_1, ..., zhat_M]))))
  residual (not in the paper; docs/results.md, real data):
           z = e + Dropout(sum_m w_m zhat_m), no LayerNorm, no unit rows, w_m learnable
           scalars initialised to 0 (the model starts as its ID backbone and content
           enters only as far as BPR finds it useful).

sum/concat keep the released code's LayerNorm + dropout after the Linear, so the three
ablation arms differ only in how the parts are combined. LayerNorm eps 1e-5 (torch).
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from recgoat_jax.losses import l2_normalize

_LN_EPS = 1e-5


def _order(modalities: Sequence[str] | None, zhats: Mapping[str, jax.Array]) -> tuple[str, ...]:
    names = tuple(modalities) if modalities is not None else tuple(sorted(zhats))
    missing = [m for m in names if m not in zhats]
    if missing:
        raise ValueError(f"fusion: no embedding for modalities {missing}; got {sorted(zhats)}")
    return names


def _finish(x: jax.Array, dropout: float, deterministic: bool) -> jax.Array:
    x = nn.LayerNorm(epsilon=_LN_EPS, name="ln")(x)
    x = nn.Dropout(dropout)(x, deterministic=deterministic)
    return l2_normalize(x)


class OATFusion(nn.Module):
    """Weighted fusion; w_m learnable scalars initialised from init_weights (e.g. image 0.05, text 0.8)."""

    modalities: Sequence[str] | None = None
    init_weights: Mapping[str, float] | None = None
    dropout: float = 0.1

    @nn.compact
    def __call__(self, e_items: jax.Array, zhats: Mapping[str, jax.Array], deterministic: bool = True):
        """e_items: [n, d], zhats: name -> [n, d] -> [n, d] unit rows."""
        names = _order(self.modalities, zhats)
        init = dict(self.init_weights or {})
        missing = [m for m in names if m not in init]
        if missing:
            raise ValueError(f"OATFusion: no initial weight for modalities {missing}; set init_weights")
        ws = [self.param(f"w_{m}", nn.initializers.constant(float(init[m])), ()) for m in names]
        x = (1.0 - sum(ws)) * e_items
        for m, w in zip(names, ws):
            x = x + w * zhats[m]
        return _finish(x, self.dropout, deterministic)


class ResidualFusion(nn.Module):
    """z = e + Dropout(sum_m w_m zhat_m): the ID item vector keeps its scale and direction
    (LightGCN's scoring), content is an additive correction; w_m learnable from 0."""

    modalities: Sequence[str] | None = None
    dropout: float = 0.1

    @nn.compact
    def __call__(self, e_items: jax.Array, zhats: Mapping[str, jax.Array], deterministic: bool = True):
        """e_items: [n, d], zhats: name -> [n, d] -> [n, d] (not normalised)."""
        names = _order(self.modalities, zhats)
        content = jnp.zeros_like(e_items)
        for m in names:
            w = self.param(f"w_{m}", nn.initializers.zeros, ())
            content = content + w * zhats[m]
        return e_items + nn.Dropout(self.dropout)(content, deterministic=deterministic)


class _LinearFusion(nn.Module):
    """sum: Linear d -> d over e + sum_m zhat_m; concat: Linear (M+1)d -> d over
    [e, zhat_1, ..., zhat_M]. Then LayerNorm, dropout and unit rows."""

    dim: int
    modalities: Sequence[str] | None = None
    dropout: float = 0.1
    mode: str = "sum"

    @nn.compact
    def __call__(self, e_items: jax.Array, zhats: Mapping[str, jax.Array], deterministic: bool = True):
        """e_items: [n, d], zhats: name -> [n, d] -> [n, d] unit rows."""
        views = [e_items] + [zhats[m] for m in _order(self.modalities, zhats)]
        x = sum(views) if self.mode == "sum" else jnp.concatenate(views, axis=-1)
        return _finish(nn.Dense(self.dim, name="proj")(x), self.dropout, deterministic)


class SumFusion(_LinearFusion):
    mode: str = "sum"


class ConcatFusion(_LinearFusion):
    mode: str = "concat"


def fusion_factory(
    kind: str,
    dim: int,
    modalities: Sequence[str] | None = None,
    init_weights: Mapping[str, float] | None = None,
    dropout: float = 0.1,
    name: str | None = None,
) -> Callable[[], nn.Module]:
    """The fusion module's constructor, chosen once by name: "oat" | "sum" | "concat" |
    "residual". Call it inside a parent's compact method to create the (named) submodule
    there."""
    mods = tuple(modalities) if modalities is not None else None
    if kind == "oat":
        return functools.partial(OATFusion, mods, dict(init_weights or {}), dropout, name=name)
    if kind == "sum":
        return functools.partial(SumFusion, dim, mods, dropout, name=name)
    if kind == "concat":
        return functools.partial(ConcatFusion, dim, mods, dropout, name=name)
    if kind == "residual":
        return functools.partial(ResidualFusion, mods, dropout, name=name)
    raise ValueError(f"unknown fusion {kind!r}; expected oat, sum, concat or residual")


def make_fusion(kind: str, dim: int, *args, **kwargs) -> nn.Module:
    """Fusion module by name (fusion_factory's constructor, called)."""
    return fusion_factory(kind, dim, *args, **kwargs)()
