"""One config schema: frozen dataclasses, YAML files, `--set key=value` overrides.

Sections data / train / eval / run (classes here) and model, the chosen model's own
dataclass (model.name -> the table in model/configs.py -> model/<name>_config.py), which
also holds the model's loss weights. An unknown key, a wrong type or a bad value is a
ConfigError naming the key, and so is a key that moved (MOVED_KEYS, MOVED_MODEL_KEYS, the
model classes' FORMER_KEYS); each section class declares CHOICES {field: allowed values}
and RANGES {field: (test, what is expected)}; floats must be finite."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, ClassVar

import yaml

from recgoat_jax.config_checks import (BELOW_1, INITS, KNN_BACKENDS,  # noqa: F401 (re-exported)
                                       NON_NEGATIVE, POSITIVE, UNIT, at_least, check_range,
                                       coerce)
from recgoat_jax.errors import ConfigError, did_you_mean
from recgoat_jax.model import configs as model_configs

# model keys that moved into a group -> their new place (a one-line error names it)
MOVED_MODEL_KEYS = {"knn_k": "knn.k", "user_knn_k": "knn.user_k", "knn_backend": "knn.backend",
                    "gat_layers": "gat.layers", "gat_heads": "gat.heads", "item_gat": "gat.on_items"}
# keys that moved to another section, whatever the model (a one-line error names the new
# place); the train keys that became a model's own loss settings are each model config
# class's FORMER_KEYS instead (the new place depends on the model)
MOVED_KEYS = {f"train.{k}": f"run.{k}" for k in (
    "checkpoint", "tensorboard", "data_parallel", "distributed", "model_parallel")}
DEFAULT_MODEL = "lightgcn"  # model.name when a config names none


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "demo"  # a registered name (data/<name>/ under root) or a directory
    root: str = "data"  # where registered datasets live
    modalities: tuple[str, ...] = ()  # item feature files to load; () = all found
    user_features: bool = True  # load user_feat.npy when present


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How every model is trained. A model's own loss weights are in its model section
    (RecGOAT: model.loss; LightGCN / MF: model.emb_loss_weight; FREEDOM:
    model.mm_bpr_weight); where a run writes and on which devices it runs is `run`."""

    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    seed: int = 999
    exclude_train_negatives: bool = True  # MMRec: negatives avoid the user's train items
    drop_last: bool = False  # False: the last batch is padded with masked examples
    eval_every: int = 1
    # early stopping (train/stopping.py states the rule): no stop in the first
    # max(min_epochs, ceil(warmup_steps / steps per epoch)) epochs; then `patience`
    # evaluations without a new valid best, unless the valid curve is still climbing
    patience: int = 20
    min_epochs: int = 0
    warmup_steps: int = 2000
    # bf16 matmuls, fp32 params and losses; only models whose config class lists it in
    # HONOURS have a bf16 path (MODEL_SPECIFIC: true for another model is an error)
    mixed_precision: bool = False

    RANGES: ClassVar[dict] = {
        "epochs": at_least(1), "batch_size": at_least(1), "lr": POSITIVE, "seed": at_least(0),
        "eval_every": at_least(1), "patience": at_least(1), "min_epochs": at_least(0),
        "warmup_steps": at_least(0)}
    # keys only some models read -> what a model lacks without it (the error's words)
    MODEL_SPECIFIC: ClassVar[dict] = {"mixed_precision": "mixed-precision (bf16) path"}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Run-time switches: what a run writes besides metrics, and its devices / processes."""

    checkpoint: bool = True  # orbax `latest` / `best` in <run_dir>/checkpoints/
    tensorboard: bool = True  # event files of metrics.jsonl's scalars in <run_dir>/tb/
    data_parallel: bool = False  # split the batch over all local devices
    distributed: bool = False  # jax.distributed.initialize() (multi-process / multi-host)
    model_parallel: int = 1  # data_parallel: size of the mesh's 'model' axis (row-sharded tables)

    RANGES: ClassVar[dict] = {"model_parallel": at_least(1)}  # must also divide the device count


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20, 50)
    metric: str = "recall@20"  # early stopping / model selection (valid only)
    batch_users: int = 4096

    RANGES: ClassVar[dict] = {"ks": at_least(1), "batch_users": at_least(1)}  # ks: each K


def model_class(name: str) -> type:
    """The config dataclass of model `name` (model/configs.py); ConfigError if unknown."""
    return model_configs.config_class(name)


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    # the model's own config dataclass, chosen by model.name (model_class)
    model: Any = dataclasses.field(default_factory=lambda: model_class(DEFAULT_MODEL)())
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()
    run_dir: str = ""  # default: runs/<dataset>-<model>-<timestamp>


def _numeric_fields(cls: type, prefix: str = "") -> list[str]:
    """The int / float fields of a section class (and tuples of them; nested sections
    recursively), as dotted paths relative to it, e.g. 'ot.paper.tau'."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _numeric_fields(tp, f"{prefix}{f.name}.")
        elif tp in (int, float) or (typing.get_origin(tp) is tuple and any(
                a in (int, float) or typing.get_origin(a) is tuple
                for a in typing.get_args(tp))):
            out.append(f"{prefix}{f.name}")
    return out


def sections() -> list[tuple[str, type]]:
    """(prefix, class) of every section of the schema: data, train, eval, run and each
    registered model's config (all under 'model.')."""
    return ([("data.", DataConfig), ("train.", TrainConfig), ("eval.", EvalConfig),
             ("run.", RunConfig)]
            + [("model.", model_configs.MODELS[n].config) for n in model_configs.names()])


def _build(cls: type, values: dict, prefix: str, model: str = "") -> Any:
    """cls(**values), each value coerced and checked; model: the model whose section
    this is (unknown keys are then named as not that model's)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            moved = MOVED_MODEL_KEYS.get(key, "") if prefix == "model." else ""
            group, _, leaf = moved.partition(".")
            if group in fields and leaf in {f.name for f in dataclasses.fields(hints[group])}:
                # a config written before the groups
                raise ConfigError(_rename(full, f"model.{moved}", value))
            raise ConfigError(_unknown_key(key, full, fields, prefix, model))
        tp = hints[key]
        if cls is Config and key == "model":
            kwargs[key] = _build_model(value)
        elif dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r}: expected a mapping")
            kwargs[key] = _build(tp, value, full + ".", model)
        else:
            allowed = getattr(cls, "CHOICES", {}).get(key, ())
            kwargs[key] = coerce(value, tp, full, allowed)
            if allowed and kwargs[key] not in allowed:
                raise ConfigError(f"config key {full!r}: expected one of {', '.join(allowed)}, "
                                  f"got {kwargs[key]!r}")
            check_range(full, kwargs[key], getattr(cls, "RANGES", {}).get(key))
    return cls(**kwargs)


def _build_model(values: Any) -> Any:
    """The model section: the dataclass of model.name (default DEFAULT_MODEL), built."""
    if not isinstance(values, dict):
        raise ConfigError("config key 'model': expected a mapping")
    name = coerce(values.get("name", DEFAULT_MODEL), str, "model.name")
    return _build(model_class(name), {**values, "name": name}, "model.", model=name)


def _unknown_key(key: str, full: str, fields, prefix: str, model: str) -> str:
    """The one-line error for an unknown key: the closest key, else the section's keys;
    in a model section also which other models have the key."""
    hint = did_you_mean(key, fields, prefix)
    if not model:
        return f"unknown config key {full!r}; {hint or 'known keys here: ' + ', '.join(sorted(fields))}"
    owners = [m for m in model_configs.models_with_key(key) if m != model] if prefix == "model." else []
    where = ""
    if owners:
        names = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"
        where = f" ({names} {'has' if len(owners) == 1 else 'have'} it)"
    section = model if prefix == "model." else f"{model}'s {prefix[:-1]}"
    keys = f"{model}'s keys" if prefix == "model." else "its keys"
    return (f"unknown config key {full!r}: not a key of {section}{where}; "
            + (hint or f"{keys}: {', '.join(sorted(fields))}"))


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
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


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
    return _build_config(values)


def replace(cfg: Config, **sections: dict) -> Config:
    """Returns cfg with some fields of some sections replaced: replace(cfg, model={'dim': 8})."""
    return _build_config(_merge(to_dict(cfg), sections))


def _build_config(values: dict) -> Config:
    """The Config of nested values: moved keys, then every section, then the checks
    across sections (eval.metric, the train keys only some models read)."""
    _check_moved(values)
    return _check_model_specific(_check_metric(_build(Config, values, "")))


def _model_name(values: dict) -> str:
    model = values.get("model")
    name = model.get("name", DEFAULT_MODEL) if isinstance(model, dict) else DEFAULT_MODEL
    return coerce(name, str, "model.name")


def _check_moved(values: dict) -> None:
    """A one-line ConfigError for a key that moved out of its section: to `run`
    (MOVED_KEYS), or a former train key that is now a model's own setting (the model
    config classes' FORMER_KEYS: {old key: (new key under model., what it weighs)})."""
    for section, keys in values.items():
        if not isinstance(keys, dict) or section == "model":
            continue
        for key, value in keys.items():
            full = f"{section}.{key}"
            if full in MOVED_KEYS:
                raise ConfigError(_rename(full, MOVED_KEYS[full], value))
            owners = {n: e.config for n, e in model_configs.MODELS.items()
                      if full in getattr(e.config, "FORMER_KEYS", {})}
            if not owners:
                continue
            name = _model_name(values)
            cls = model_class(name)
            if name in owners:
                raise ConfigError(_rename(full, "model." + cls.FORMER_KEYS[full][0], value))
            new, what = next(iter(owners.values())).FORMER_KEYS[full]
            theirs = ", ".join(f"{c.__name__.removesuffix('Config')}'s is "
                               f"model.{c.FORMER_KEYS[full][0]}" for c in owners.values())
            raise ConfigError(f"config key {full!r}: {name} has no {what} ({theirs})")


def _rename(old: str, new: str, value: Any) -> str:
    shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return f"config key {old!r} is now {new!r}; rename it there (e.g. --set {new}={shown})"


def _check_model_specific(cfg: Config) -> Config:
    """ConfigError when a key is changed from its default for a model that does not read
    it: a TrainConfig.MODEL_SPECIFIC key the model's config class does not list in
    HONOURS, or any train / run key for a model fitted in one pass (its config class has
    FITTED true: nothing is trained, checkpointed or spread over devices)."""
    if getattr(type(cfg.model), "FITTED", False):
        for section, cls in (("train", TrainConfig), ("run", RunConfig)):
            for f in dataclasses.fields(cls):
                value, default = getattr(getattr(cfg, section), f.name), getattr(cls(), f.name)
                if value != default:
                    raise ConfigError(
                        f"config key '{section}.{f.name}': {cfg.model.name} is fitted in one "
                        f"pass, not trained, and reads no {section} key; leave it at its "
                        f"default ({str(default).lower() if isinstance(default, bool) else default})")
    honours = getattr(type(cfg.model), "HONOURS", ())
    for key, what in TrainConfig.MODEL_SPECIFIC.items():
        value, default = getattr(cfg.train, key), getattr(TrainConfig(), key)
        if value != default and f"train.{key}" not in honours:
            readers = [n for n, e in model_configs.MODELS.items()
                       if f"train.{key}" in getattr(e.config, "HONOURS", ())]
            raise ConfigError(f"config key 'train.{key}': {cfg.model.name} has no {what} "
                              f"(only {', '.join(readers) or 'no model'} reads it); "
                              f"leave it {str(default).lower()}")
    return cfg


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


CONFIGS_DIR = Path(__file__).resolve().parent / "configs"  # shipped configs: package data


def find_config(model: str, dataset: str = "demo") -> Path | None:
    """The shipped config for `model` on `dataset`: <model>_<dataset>.yaml (dataset by its
    registered name; a directory by its last component), else <model>.yaml; None if
    neither exists (the schema defaults are used)."""
    ds = canonical_dataset(Path(dataset).name) if dataset else ""
    for name in ([f"{model}_{ds}.yaml"] if ds else []) + [f"{model}.yaml"]:
        if (CONFIGS_DIR / name).is_file():
            return CONFIGS_DIR / name
    return None
