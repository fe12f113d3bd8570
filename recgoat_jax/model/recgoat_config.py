"""The `model:` section of RecGOAT (model/recgoat.py; docs/method.md explains every key).

Standard library only, so a config is checked at load without importing JAX. RecGOAT's
loss weights are its own (model.loss); from train it also reads mixed_precision.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from recgoat_jax.config_checks import (BELOW_1, INITS, KNN_BACKENDS, NON_NEGATIVE, POSITIVE,
                                       UNIT, at_least)


@dataclasses.dataclass(frozen=True)
class PaperOT:
    """model.oat=paper: L_OT, a Sinkhorn divergence between the batch's aligned modality
    rows and their ID rows (alignment.paper_ot_loss), weighted by model.loss.ot_weight."""

    epsilon: float = 0.05  # on L2-normalised rows (costs in [0, 4])
    iterations: int = 200  # iteration cap (stops earlier at 1e-4 marginal error)
    tau: float = 1.0  # 1: balanced; < 1: unbalanced
    batch_items: int = 256  # the term uses the batch's first batch_items positive items

    RANGES: ClassVar[dict] = {"epsilon": POSITIVE, "iterations": at_least(1),
                              "tau": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
                              "batch_items": at_least(1)}


@dataclasses.dataclass(frozen=True)
class ReferenceOT:
    """model.oat=reference: the released code's stop-gradient plan between the d
    dimensions (alignment.reference_plan); the published values are the defaults."""

    epsilon: float = 0.01
    iterations: int = 100  # exactly this many Sinkhorn iterations
    cost_scale: float = 100.0  # C[p, q] = cost_scale * mean_i (z[i, p] - e[i, q])^2

    RANGES: ClassVar[dict] = {"epsilon": POSITIVE, "iterations": at_least(1),
                              "cost_scale": POSITIVE}


@dataclasses.dataclass(frozen=True)
class OTConfig:
    """The two OAT variants' parameters; model.oat picks the one that is read."""

    paper: PaperOT = PaperOT()
    reference: ReferenceOT = ReferenceOT()


@dataclasses.dataclass(frozen=True)
class KNNConfig:
    """The kNN graphs over feature cosine (graphs/knn.py, graphs/inputs.py)."""

    k: int = 20  # item-item neighbours per modality
    user_k: int = 10  # user-user neighbours (user branch)
    backend: str = "auto"  # how the graphs are built: numpy | xla | auto; the same graph

    CHOICES: ClassVar[dict] = {"backend": KNN_BACKENDS}
    RANGES: ClassVar[dict] = {"k": at_least(1), "user_k": at_least(1)}


@dataclasses.dataclass(frozen=True)
class GATConfig:
    """The GAT encoders (model/gat.py): modality encoders, the paper's user branch and
    the GAT ui_encoder."""

    layers: int = 1
    heads: int = 8
    on_items: bool = True  # False: modality encoders are the projection only (ablation)

    RANGES: ClassVar[dict] = {"layers": at_least(0), "heads": at_least(1)}


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The weights of RecGOAT's loss terms beside BPR (model/recgoat_loss.py):
    loss = bpr + l2_weight * l2 + cl_weight * cmcl + ot_weight * ot."""

    l2_weight: float = 1e-4  # squared L2 of the batch's ego embeddings
    cl_weight: float = 0.0  # CMCL (model.cmcl); 0: no CMCL term
    cl_tau: float = 0.2  # InfoNCE temperature (CMCL and the Lemma 3.3 diagnostic)
    cl_w: float = 0.5  # CMCL = (1 - cl_w) user-item + cl_w modality-item
    cl_rows: int = 0  # CMCL on the first cl_rows rows of each batch (0 = all; InfoNCE costs B^2)
    ot_weight: float = 0.0  # the paper OAT's Sinkhorn term (model.oat=paper); 0: none

    RANGES: ClassVar[dict] = {
        "l2_weight": NON_NEGATIVE, "cl_weight": NON_NEGATIVE, "cl_tau": POSITIVE,
        "cl_w": UNIT, "cl_rows": at_least(0), "ot_weight": NON_NEGATIVE}


@dataclasses.dataclass(frozen=True)
class RecGOATConfig:
    name: str = "recgoat"
    dim: int = 64
    # ID branch
    n_layers: int = 3  # LightGCN (or GAT) layers over the user-item graph
    init: str = "xavier"  # xavier (MMRec: Xavier-uniform) | normal (N(0, 0.1^2), the method's)
    ui_encoder: str = "lightgcn"  # lightgcn (released code) | gat (the paper's wording)
    edge_dropout: float = 0.0  # ours: FREEDOM's per-epoch pruning of the user-item graph
    # graphs and graph encoders
    knn: KNNConfig = KNNConfig()
    gat: GATConfig = GATConfig()
    dropout: float = 0.1  # feature, attention, output and fusion dropout
    # auto (the paper's GAT branch when user features exist) | on | off | cf (collaborative:
    # each user adds the mean ID embedding of its knn.user_k nearest users by user features)
    # | cf_if_text (cf when the user features embed real user text, else off)
    user_branch: str = "auto"
    # alignment and fusion
    oat: str = "paper"  # paper | reference | none; its parameters: ot.paper / ot.reference
    cmcl: str = "paper"  # paper | reference | none
    # oat | sum | concat (paper) | residual (ours: z_i = e_i + sum_m w_m zhat_m, w_m from 0)
    fusion: str = "oat"
    init_weights: tuple[tuple[str, float], ...] = (("image", 0.05), ("text", 0.8))  # fusion=oat
    ot: OTConfig = OTConfig()
    loss: LossConfig = LossConfig()

    # former train keys -> (their key here, what a model without it lacks)
    FORMER_KEYS: ClassVar[dict] = {
        "train.reg_weight": ("loss.l2_weight", "L2 loss"),
        "train.lambda_cl": ("loss.cl_weight", "contrastive loss"),
        "train.cl_tau": ("loss.cl_tau", "contrastive loss"),
        "train.cl_w": ("loss.cl_w", "contrastive loss"),
        "train.cl_rows": ("loss.cl_rows", "contrastive loss"),
        "train.lambda_ot": ("loss.ot_weight", "OT loss")}
    HONOURS: ClassVar[tuple] = ("train.mixed_precision",)  # config.TrainConfig.MODEL_SPECIFIC
    CHOICES: ClassVar[dict] = {
        "init": INITS, "ui_encoder": ("lightgcn", "gat"),
        "user_branch": ("auto", "on", "off", "cf", "cf_if_text"),
        "oat": ("paper", "reference", "none"),
        "cmcl": ("paper", "reference", "none"), "fusion": ("oat", "sum", "concat", "residual")}
    RANGES: ClassVar[dict] = {
        "dim": at_least(1), "n_layers": at_least(0), "edge_dropout": BELOW_1,
        "dropout": BELOW_1, "init_weights": NON_NEGATIVE}
