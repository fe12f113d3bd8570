"""Model name -> constructor, so the trainer knows no model by name."""

from __future__ import annotations

from typing import Callable

from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError
from recgoat_jax.model.freedom import FREEDOM
from recgoat_jax.model.lightgcn import MF, LightGCN

_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


@register("mf")
def _mf(cfg: Config, shapes: dict):
    return MF(shapes["n_users"], shapes["n_items"], cfg.model.dim, cfg.model.init,
              cfg.train.reg_weight)


@register("lightgcn")
def _lightgcn(cfg: Config, shapes: dict):
    return LightGCN(shapes["n_users"], shapes["n_items"], cfg.model.dim, cfg.model.n_layers,
                    cfg.model.init, cfg.train.reg_weight, unit_items=cfg.model.unit_items)


@register("freedom")
def _freedom(cfg: Config, shapes: dict):
    dims = tuple(shapes["item_feature_dims"].items())
    if not dims:
        raise ConfigError("config key 'model.name': freedom needs item features "
                          "(<modality>_feat.npy); the dataset has none")
    m = cfg.model
    return FREEDOM(shapes["n_users"], shapes["n_items"], dims, m.dim, m.n_layers, m.mm_layers,
                   m.freedom_dropout, cfg.train.reg_weight, m.init)


def names() -> list[str]:
    _load_optional()
    return sorted(_REGISTRY)


def _load_optional():
    # RecGOAT registers itself on import; kept lazy so baselines need none of its deps.
    try:
        import recgoat_jax.model.recgoat  # noqa: F401
    except ImportError as e:  # pragma: no cover - only while the module is absent
        if "recgoat_jax.model.recgoat" not in str(e):
            raise


def build_model(cfg: Config, shapes: dict):
    """shapes: {"n_users", "n_items", "item_feature_dims": {m: d_m}, "user_feature_dim": int|None}."""
    _load_optional()
    name = cfg.model.name
    if name not in _REGISTRY:
        raise ConfigError(f"config key 'model.name': unknown model {name!r}; expected one of "
                          f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](cfg, shapes)
