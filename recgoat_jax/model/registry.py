"""Model name -> its built model, so neither the config loader nor the trainer knows a
model by name.

The table (name -> config dataclass, "module:function" of its build) is the leaf
model/configs.py, which config.py reads; this module adds building: a model's own module
(JAX, flax) is imported only when `build_model` first builds it. The model modules
import nothing from here. The table's names are re-exported here for callers that
register a model (registry.MODELS[name] = registry.Entry(config, build)).
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from recgoat_jax.model.base import Shapes
from recgoat_jax.model.configs import (MODELS, Entry, config_class,  # noqa: F401 (re-exported)
                                       models_with_key, names)


def build_model(cfg: Any, shapes: Shapes | Mapping):
    """cfg: config.Config (cfg.model is the model's own config); shapes: what the model is
    built for (Shapes.of(dataset)). A mapping of Shapes' fields, what callers outside the
    package passed before the record, is converted here, so every build takes Shapes."""
    if not isinstance(shapes, Shapes):
        shapes = Shapes(**shapes)
    build = MODELS[cfg.model.name].build
    if isinstance(build, str):
        module, function = build.split(":")
        build = getattr(importlib.import_module(f"recgoat_jax.model.{module}"), function)
    return build(cfg, shapes)
