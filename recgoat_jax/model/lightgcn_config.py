"""The `model:` sections of LightGCN and MF-BPR (model/lightgcn.py).

Standard library only, so a config is checked at load without importing JAX.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from recgoat_jax.config_checks import INITS, NON_NEGATIVE, at_least


@dataclasses.dataclass(frozen=True)
class LightGCNConfig:
    name: str = "lightgcn"
    dim: int = 64
    n_layers: int = 3  # propagation layers; the output is the mean of layers 0..n_layers
    init: str = "xavier"  # xavier (MMRec: Xavier-uniform) | normal (N(0, 0.1^2))
    emb_loss_weight: float = 1e-4  # MMRec's EmbLoss (unsquared norms) of the batch's ego rows

    FORMER_KEYS: ClassVar[dict] = {"train.reg_weight": ("emb_loss_weight", "embedding loss")}
    CHOICES: ClassVar[dict] = {"init": INITS}
    RANGES: ClassVar[dict] = {"dim": at_least(1), "n_layers": at_least(0),
                              "emb_loss_weight": NON_NEGATIVE}


@dataclasses.dataclass(frozen=True)
class MFConfig:
    """MF-BPR: LightGCN without propagation (score = ego user . ego item)."""

    name: str = "mf"
    dim: int = 64
    init: str = "xavier"  # xavier (MMRec: Xavier-uniform) | normal (N(0, 0.1^2))
    emb_loss_weight: float = 1e-4  # MMRec's EmbLoss (unsquared norms) of the batch's ego rows

    FORMER_KEYS: ClassVar[dict] = {"train.reg_weight": ("emb_loss_weight", "embedding loss")}
    CHOICES: ClassVar[dict] = {"init": INITS}
    RANGES: ClassVar[dict] = {"dim": at_least(1), "emb_loss_weight": NON_NEGATIVE}
