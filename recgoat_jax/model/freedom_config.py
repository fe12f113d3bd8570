"""The `model:` section of FREEDOM (model/freedom.py; Zhou & Shen, MM 2023; MMRec freedom.py).

Standard library only, so a config is checked at load without importing JAX.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from recgoat_jax.config_checks import BELOW_1, INITS, KNN_BACKENDS, NON_NEGATIVE, UNIT, at_least


@dataclasses.dataclass(frozen=True)
class ItemKNNConfig:
    """FREEDOM's item-item kNN per modality (graphs/mm_adj.py), the item itself included."""

    k: int = 20
    backend: str = "auto"  # how the graph is built: numpy | xla | auto (graphs/knn.py)

    CHOICES: ClassVar[dict] = {"backend": KNN_BACKENDS}
    RANGES: ClassVar[dict] = {"k": at_least(1)}


@dataclasses.dataclass(frozen=True)
class FREEDOMConfig:
    name: str = "freedom"
    dim: int = 64  # embedding_size = feat_embed_dim
    n_layers: int = 3  # LightGCN layers over the (pruned) user-item graph: n_ui_layers
    init: str = "xavier"  # xavier (MMRec: Xavier-uniform) | normal (N(0, 0.1^2))
    knn: ItemKNNConfig = ItemKNNConfig()
    mm_layers: int = 1  # propagation layers over the frozen item-item graph: n_mm_layers
    mm_image_weight: float = 0.1  # item-item graph = w * image kNN + (1 - w) * text kNN
    freedom_dropout: float = 0.8  # degree-sensitive edge pruning ratio (0: none)
    mm_bpr_weight: float = 1e-4  # weight of the modality BPR term (MMRec's reg_weight)

    FORMER_KEYS: ClassVar[dict] = {"train.reg_weight": ("mm_bpr_weight", "modality BPR loss")}
    CHOICES: ClassVar[dict] = {"init": INITS}
    RANGES: ClassVar[dict] = {
        "dim": at_least(1), "n_layers": at_least(0), "mm_bpr_weight": NON_NEGATIVE,
        "mm_layers": at_least(0), "mm_image_weight": UNIT, "freedom_dropout": BELOW_1}
