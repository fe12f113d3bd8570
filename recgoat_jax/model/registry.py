"""Model name -> build(cfg, shapes), so the trainer knows no model by name.

One way to register: this module imports every model module at the top and lists its
`build`; the model modules import nothing from here (no import circle). A new model is
a module with a `build(cfg, shapes) -> model` (model/base.py protocol) and one line in
MODELS.
"""

from __future__ import annotations

from typing import Callable

from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError, did_you_mean
from recgoat_jax.model import freedom, lightgcn, recgoat

MODELS: dict[str, Callable] = {
    "mf": lightgcn.build_mf,
    "lightgcn": lightgcn.build,
    "freedom": freedom.build,
    "recgoat": recgoat.build,
}


def names() -> list[str]:
    return sorted(MODELS)


def build_model(cfg: Config, shapes: dict):
    """shapes: graphs/inputs.py shapes_of(dataset) ({"n_users", "n_items",
    "item_feature_dims": {m: d_m}, "user_feature_dim": int | None})."""
    name = cfg.model.name
    if name not in MODELS:
        hint = did_you_mean(name, names())
        raise ConfigError(f"config key 'model.name': unknown model {name!r}; "
                          f"{hint + ' ' if hint else ''}expected one of {', '.join(names())}")
    return MODELS[name](cfg, shapes)
