"""One config schema: frozen dataclasses, YAML files, `--set key=value` overrides.

A YAML file mirrors the schema (sections data / model / train / eval); an unknown key,
a wrong type or a bad value is a ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from recgoat_jax.errors import ConfigError, did_you_mean


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "demo"  # a registered name (data/<name>/ under root) or a directory
    root: str = "data"  # where registered datasets live
    modalities: tuple[str, ...] = ()  # item feature files to load; () = all found
    user_features: bool = True  # load user_feat.npy when present


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "lightgcn"  # mf | lightgcn | freedom | recgoat (model/registry.py)
    dim: int = 64
    n_layers: int = 3  # LightGCN propagation layers
    init: str = "xavier"  # xavier (MMRec: Xavier-uniform) | normal (N(0, 0.1^2))
    unit_items: bool = False  # LightGCN: score against unit item rows, as RecGOAT does
    # --- RecGOAT (see docs/method.md) ---
    knn_k: int = 20  # item-item kNN per modality
    user_knn_k: int = 10  # user-user kNN
    # kNN graph construction: numpy (host BLAS + argpartition) | xla (jitted matmul +
    # top_k on the default device) | auto (graphs/knn.py resolve_backend: xla on GPU/TPU
    # and for large graphs on CPU); same graph up to float32 near-ties
    knn_backend: str = "auto"
    gat_layers: int = 1
    gat_heads: int = 8
    gat_impl: str = "csr"  # GAT aggregation: csr (sparse x dense per head) | segment (per-edge gather)
    dropout: float = 0.1  # feature, attention and output dropout
    ui_encoder: str = "lightgcn"  # lightgcn | gat (the paper's wording)
    user_branch: str = "auto"  # auto (on when user features exist) | on | off
    # how the user branch's output z_u enriches the user (the paper allows both readings):
    # add (e_u + z_u after LightGCN) or ego (z_u added to the user ego rows before
    # LightGCN: "users initialised via LLM-inferred behavioural preferences"), or residual
    # (e_u + w_user z_u, w_user learnable from model.residual_init; not in the paper)
    user_merge: str = "add"
    item_gat: bool = True  # False: projection only (ablation)
    oat: str = "paper"  # paper | reference | none
    cmcl: str = "paper"  # paper | reference | none
    fusion: str = "oat"  # oat | sum | concat (paper) | residual (e_i + sum_m w_m zhat_m; ours)
    residual_init: float = 0.0  # fusion=residual: initial content weights w_m
    # not in the paper (README "RecGOAT on real data"), both off by default:
    edge_dropout: float = 0.0  # FREEDOM's degree-sensitive pruning of the user-item graph
    item_graph_id: bool = False  # item GAT input: projected features + the item's ID ego row
    # e_i += mm_adj^L item_ego over FREEDOM's frozen content kNN graph (model.knn_k,
    # model.mm_image_weight); 0: off (the paper)
    content_id_layers: int = 0
    content_id_gate: bool = False  # that term times w_cid, learnable from model.residual_init
    # e_u += w_uc R (z_items - e_i): users carry their train items' content (one LightGCN
    # hop of the fused content part), w_uc learnable from model.residual_init
    user_content: bool = False
    fusion_normalize: bool = True  # L2-normalise fused item rows (method); False: keep the norm
    init_weights: tuple[tuple[str, float], ...] = (("image", 0.05), ("text", 0.8))
    ot_epsilon: float = 0.01
    ot_iterations: int = 100
    ot_cost_scale: float = 100.0
    ot_paper_epsilon: float = 0.05  # paper OT on L2-normalised rows (costs in [0, 4])
    ot_tau: float = 1.0  # paper OT: 1.0 = balanced, < 1 unbalanced
    ot_batch_items: int = 256  # paper OT: items per batch in the Sinkhorn term
    ot_paper_iterations: int = 200  # paper OT: Sinkhorn iteration cap (stops at 1e-4 error)
    # --- FREEDOM (Zhou & Shen, MM 2023; MMRec freedom.py) ---
    # also uses model.n_layers (= n_ui_layers), model.knn_k (item-item kNN, self included),
    # model.dim (embedding and feat_embed dims) and train.reg_weight (modality BPR weight)
    freedom_dropout: float = 0.8  # degree-sensitive edge pruning ratio, 0 <= p < 1 (0: none)
    mm_image_weight: float = 0.1  # item-item graph = w * image kNN + (1 - w) * text kNN
    mm_layers: int = 1  # propagation layers over the frozen item-item graph (n_mm_layers)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    seed: int = 999
    reg_weight: float = 1e-4
    lambda_cl: float = 0.0
    lambda_ot: float = 0.0
    cl_tau: float = 0.2
    cl_w: float = 0.5
    cl_rows: int = 0  # CMCL on the first cl_rows rows of each batch (0 = all; InfoNCE costs B^2)
    exclude_train_negatives: bool = True  # MMRec: negatives avoid the user's train items
    drop_last: bool = False  # False: the last batch is padded with masked examples
    eval_every: int = 1
    # early stopping (train/stopping.py states the rule): no stop in the first
    # max(min_epochs, ceil(warmup_steps / steps per epoch)) epochs; then `patience`
    # evaluations without a new valid best, unless the valid curve is still climbing
    patience: int = 20
    min_epochs: int = 0
    warmup_steps: int = 2000
    checkpoint: bool = True
    tensorboard: bool = True  # event files of metrics.jsonl's scalars in <run_dir>/tb/
    mixed_precision: bool = False  # bf16 matmuls, fp32 params and losses
    data_parallel: bool = False  # split the batch over all local devices
    distributed: bool = False  # jax.distributed.initialize() (multi-process / multi-host)
    model_parallel: int = 1  # data_parallel: size of the mesh's 'model' axis (row-sharded tables)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20, 50)
    metric: str = "recall@20"  # early stopping / model selection (valid only)
    batch_users: int = 4096


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    run_dir: str = ""  # default: runs/<dataset>-<model>-<timestamp>


CHOICES = {
    "model.name": None,  # checked by the model registry
    "model.init": ("xavier", "normal"),
    "model.ui_encoder": ("lightgcn", "gat"),
    "model.gat_impl": ("csr", "segment"),
    "model.knn_backend": ("auto", "numpy", "xla"),  # graphs/knn.py KNN_BACKENDS
    "model.user_branch": ("auto", "on", "off"),
    "model.user_merge": ("add", "ego", "residual"),
    "model.oat": ("paper", "reference", "none"),
    "model.cmcl": ("paper", "reference", "none"),
    "model.fusion": ("oat", "sum", "concat", "residual"),
}


# --- value ranges of every numeric key: key -> (test, what is expected), checked at load
# like CHOICES (a float must also be finite; tuples are checked element by element) ---
def _int_at_least(lo: int):
    return (lambda v: v >= lo, f"an integer >= {lo}")


_POSITIVE = (lambda v: v > 0, "a number > 0")
_NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
_PROBABILITY_BELOW_1 = (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_UNIT = (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")

RANGES = {
    # model
    "model.dim": _int_at_least(1),
    "model.n_layers": _int_at_least(0),
    "model.knn_k": _int_at_least(1),
    "model.user_knn_k": _int_at_least(1),
    "model.gat_layers": _int_at_least(0),  # 0: projection only
    "model.gat_heads": _int_at_least(1),
    "model.dropout": _PROBABILITY_BELOW_1,
    "model.residual_init": (lambda v: True, "a finite number"),
    "model.edge_dropout": _PROBABILITY_BELOW_1,
    "model.content_id_layers": _int_at_least(0),
    "model.init_weights": _NON_NEGATIVE,  # each modality's fusion weight
    "model.ot_epsilon": _POSITIVE,
    "model.ot_iterations": _int_at_least(1),
    "model.ot_cost_scale": _POSITIVE,
    "model.ot_paper_epsilon": _POSITIVE,
    "model.ot_tau": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "model.ot_batch_items": _int_at_least(1),
    "model.ot_paper_iterations": _int_at_least(1),
    "model.freedom_dropout": _PROBABILITY_BELOW_1,
    "model.mm_image_weight": _UNIT,
    "model.mm_layers": _int_at_least(0),
    # train
    "train.epochs": _int_at_least(1),
    "train.batch_size": _int_at_least(1),
    "train.lr": _POSITIVE,
    "train.seed": _int_at_least(0),
    "train.reg_weight": _NON_NEGATIVE,
    "train.lambda_cl": _NON_NEGATIVE,
    "train.lambda_ot": _NON_NEGATIVE,
    "train.cl_tau": _POSITIVE,
    "train.cl_w": _UNIT,
    "train.cl_rows": _int_at_least(0),  # 0: all rows
    "train.eval_every": _int_at_least(1),
    "train.patience": _int_at_least(1),
    "train.min_epochs": _int_at_least(0),
    "train.warmup_steps": _int_at_least(0),
    "train.model_parallel": _int_at_least(1),  # must also divide the device count
    # eval
    "eval.ks": _int_at_least(1),  # each K
    "eval.batch_users": _int_at_least(1),
}


def _numeric_keys(cls: type = None, prefix: str = "") -> list[str]:
    """Every int / float key of the schema (and tuples of them), e.g. 'train.lr'."""
    cls = cls or Config
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _numeric_keys(tp, f"{prefix}{f.name}.")
        elif tp in (int, float) or (typing.get_origin(tp) is tuple and any(
                a in (int, float) or typing.get_origin(a) is tuple
                for a in typing.get_args(tp))):
            out.append(f"{prefix}{f.name}")
    return out


def _check_range(key: str, value: Any) -> None:
    """ConfigError unless every number in value is finite and within RANGES[key]."""
    test, expected = RANGES.get(key, (None, ""))
    if isinstance(value, tuple):
        if key == "eval.ks" and not value:
            raise ConfigError(f"config key {key!r}: expected at least one K, got []")
        for v in value:
            num = v[1] if isinstance(v, tuple) else v
            if isinstance(num, (int, float)) and not isinstance(num, bool):
                _check_one(key, num, test, expected, shown=list(value) if not isinstance(
                    v, tuple) else dict(value))
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_one(key, value, test, expected, shown=value)


def _check_one(key, v, test, expected, shown) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"config key {key!r}: expected a finite number, got {shown!r}")
    if test is not None and not test(v):
        raise ConfigError(f"config key {key!r}: expected {expected}, got {shown!r}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Checks/converts a YAML value to the dataclass field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0]
        if typing.get_origin(inner) is tuple:  # pairs, e.g. init_weights
            if isinstance(value, dict):
                value = list(value.items())
            return tuple(tuple(_coerce(v, a, key) for v, a in zip(p, typing.get_args(inner)))
                         for p in value)
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, bool) and key in CHOICES and "on" in (CHOICES[key] or ()):
            return "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def _build(cls: type, values: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            hint = did_you_mean(key, fields, prefix) or f"known keys here: {known}"
            raise ConfigError(f"unknown config key {full!r}; {hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r}: expected a mapping")
            kwargs[key] = _build(tp, value, full + ".")
        else:
            kwargs[key] = _coerce(value, tp, full)
            allowed = CHOICES.get(full)
            if allowed and kwargs[key] not in allowed:
                raise ConfigError(f"config key {full!r}: expected one of {', '.join(allowed)}, "
                                  f"got {kwargs[key]!r}")
            _check_range(full, kwargs[key])
    return cls(**kwargs)


def flat_dict(d: dict, prefix: str = "") -> dict:
    """{'model': {'dim': 64}} -> {'model.dim': 64} (nested mappings to dotted keys)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_dict(cfg: Any) -> dict:
    """Config -> plain nested dict (tuples as lists), for YAML."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v
    return conv(cfg)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict:
    """'model.dim=64' -> {'model': {'dim': 64}} (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. model.dim=64")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def make_config(path: str | Path | None = None, overrides: list[str] = (), **top: Any) -> Config:
    """Defaults <- YAML file <- --set overrides <- keyword sections (dicts)."""
    values: dict = {}
    if path:
        values = load_yaml(path)
    for o in overrides:
        values = _merge(values, parse_override(o))
    for k, v in top.items():
        values = _merge(values, {k: v})
    return _check_metric(_build(Config, values, ""))


def replace(cfg: Config, **sections: dict) -> Config:
    """Returns cfg with some fields of some sections replaced: replace(cfg, model={'dim': 8})."""
    return _check_metric(_build(Config, _merge(to_dict(cfg), sections), ""))


# the metric table (evaluate/metrics.py computes them in this order); here so that a
# config is checked at load without importing JAX
METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "map", "hitrate")


def _check_metric(cfg: Config) -> Config:
    """ConfigError unless eval.metric is <metric>@K with K in eval.ks."""
    name, _, k = cfg.eval.metric.partition("@")
    if name in METRICS and k.isdigit() and int(k) in cfg.eval.ks:
        return cfg
    hint = did_you_mean(name, METRICS) if name not in METRICS else ""
    raise ConfigError(f"config key 'eval.metric': expected <{'|'.join(METRICS)}>@K with K in "
                      f"eval.ks {list(cfg.eval.ks)}, got {cfg.eval.metric!r}"
                      + (f"; {hint}" if hint else ""))


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# --- dataset names and where configs are found -------------------------------------------
# One registered name per dataset (data/<name>/, configs recgoat_<name>.yaml, downloads);
# an alias is accepted everywhere a name is and means the registered name.
DATASET_ALIASES = {"elec": "electronics"}  # MMRec's folder name for Amazon Electronics


def canonical_dataset(name: str) -> str:
    """A dataset alias -> its registered name ('elec' -> 'electronics'); others unchanged."""
    return DATASET_ALIASES.get(name.lower(), name) if name else name


def dataset_names(name: str) -> list[str]:
    """Every name of the dataset `name` (as given first, then the registered name, then
    its aliases): the directories <root>/<n>/ the dataset may be found in."""
    canon = canonical_dataset(name)
    out = [name, canon] + [a for a, c in DATASET_ALIASES.items() if c == canon]
    return list(dict.fromkeys(out))


def config_dirs() -> list[Path]:
    """Where shipped configs live: experiments/configs/ of a source checkout, else the
    copy installed with the package (recgoat_jax/configs/, see pyproject.toml)."""
    here = Path(__file__).resolve().parent
    dirs = [here.parent / "experiments" / "configs", here / "configs"]
    return [d for d in dirs if d.is_dir()]


def find_config(model: str, dataset: str = "demo") -> Path | None:
    """The shipped config for `model` on `dataset`: <model>_<dataset>.yaml (dataset by its
    registered name; a directory by its last component), else <model>.yaml; None if
    neither exists (the schema defaults are used)."""
    ds = canonical_dataset(Path(dataset).name) if dataset else ""
    for d in config_dirs():
        for name in ([f"{model}_{ds}.yaml"] if ds else []) + [f"{model}.yaml"]:
            if (d / name).is_file():
                return d / name
    return None
