"""The `model:` sections of the memory-based recommenders (model/memory.py): item kNN and
its blend with a user-text user kNN. Standard library only (checked at config load).
Neither reads the train section: they are fitted in one pass, not trained (train/fit.py)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from recgoat_jax.config_checks import NON_NEGATIVE, at_least


@dataclasses.dataclass(frozen=True)
class ItemKNNConfig:
    """score(u, i) = sum over j in train(u) of S[i, j], S the items' cosine."""

    name: str = "itemknn"
    k: int = 0  # neighbours kept per item (its k largest cosines); 0: every item

    FITTED: ClassVar[bool] = True  # no train / run key is read (config._check_model_specific)
    RANGES: ClassVar[dict] = {"k": at_least(0)}


@dataclasses.dataclass(frozen=True)
class BlendConfig:
    """minmax(item kNN) + w * minmax(user kNN on user_feat.npy), w chosen on VALID
    (eval.metric) from `weights`; ties: the smaller w."""

    name: str = "blend"
    k: int = 0  # item kNN's neighbours per item; 0: every item
    user_k: int = 20  # neighbours per user by cosine of the user features
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)  # the grid of w

    FITTED: ClassVar[bool] = True
    RANGES: ClassVar[dict] = {"k": at_least(0), "user_k": at_least(1),
                              "weights": NON_NEGATIVE}
