"""The table of models: name -> its config dataclass and where its `build` lives.

A leaf (the config modules are standard library only, builds are named by
"module:function" strings), so config.py reads a `model:` section's dataclass from here
without importing JAX or model/registry.py, and registry.py (which imports the model
modules to build them) sits above both. A new model is a module with
`build(cfg, shapes) -> model` (model/base.py: a Model, trained, or a FittedModel, fitted
in one pass), a frozen config dataclass (its
`model:` keys, `name` first, checks in CHOICES / RANGES) and one line in MODELS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from recgoat_jax.errors import ConfigError, did_you_mean
from recgoat_jax.model.freedom_config import FREEDOMConfig
from recgoat_jax.model.lightgcn_config import LightGCNConfig, MFConfig
from recgoat_jax.model.memory_config import BlendConfig, ItemKNNConfig
from recgoat_jax.model.recgoat_config import RecGOATConfig


@dataclasses.dataclass(frozen=True)
class Entry:
    config: type  # the model's `model:` section
    # "module:function" in recgoat_jax.model, build(cfg, shapes) -> model; or the function
    # itself (a model registered from outside the package, e.g. an experiment's variant)
    build: Any


MODELS: dict[str, Entry] = {
    "mf": Entry(MFConfig, "lightgcn:build_mf"),
    "lightgcn": Entry(LightGCNConfig, "lightgcn:build"),
    "freedom": Entry(FREEDOMConfig, "freedom:build"),
    "recgoat": Entry(RecGOATConfig, "recgoat:build"),
    # memory-based: fitted in one pass, not trained (model/base.py FittedModel)
    "itemknn": Entry(ItemKNNConfig, "memory:build_itemknn"),
    "blend": Entry(BlendConfig, "memory:build_blend"),
}


def names() -> list[str]:
    return sorted(MODELS)


def config_class(name: str) -> type:
    """The dataclass of model `name`'s config section; ConfigError for an unknown name."""
    if name not in MODELS:
        hint = did_you_mean(name, names())
        raise ConfigError(f"config key 'model.name': unknown model {name!r}; "
                          f"{hint + ' ' if hint else ''}expected one of {', '.join(names())}")
    return MODELS[name].config


def models_with_key(key: str) -> list[str]:
    """The models whose config section has `key` (for 'not a <model> key' errors)."""
    return [n for n in names() if key in {f.name for f in dataclasses.fields(MODELS[n].config)}]
