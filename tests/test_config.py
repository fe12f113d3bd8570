import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from recgoat_jax.config import (ConfigError, TrainConfig, dump_yaml, flat_dict, make_config,
                                sections, to_dict)
from recgoat_jax.model import configs as model_configs

CONFIGS = Path(__file__).resolve().parents[1] / "recgoat_jax" / "configs"


def test_defaults_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  name: recgoat\n  dim: 32\n  user_branch: off\ntrain:\n  lr: 5e-4\n")
    cfg = make_config(f, ["model.dim=48", "eval.ks=[5,20]", "model.init_weights=[[text,0.5]]"])
    assert cfg.model.dim == 48 and cfg.train.lr == 5e-4 and cfg.eval.ks == (5, 20)
    assert cfg.model.user_branch == "off"  # YAML 1.1 reads a bare `off` as False
    assert cfg.model.init_weights == (("text", 0.5),)
    assert cfg.train.batch_size == 2048  # untouched default


def test_round_trip_through_yaml(tmp_path):
    cfg = make_config(overrides=["model.name=recgoat", "data.modalities=[text]"])
    (tmp_path / "r.yaml").write_text(dump_yaml(cfg))
    assert make_config(tmp_path / "r.yaml") == cfg


@pytest.mark.parametrize("override,msg", [
    ("model.nope=1", "unknown config key 'model.nope'"),
    ("nope.x=1", "unknown config key 'nope'"),
    ("train.epochs=1.5", "config key 'train.epochs': expected an integer"),
    ("run.checkpoint=maybe", "config key 'run.checkpoint': expected true/false"),
    ("model.fusion=mean", "config key 'model.fusion': expected one of oat, sum, concat"),
    ("model.knn.backend=gpu", "config key 'model.knn.backend': expected one of auto, numpy, xla"),
    ("model.ot.paper.tau=2", "config key 'model.ot.paper.tau': expected a number in (0, 1]"),
    ("model.dim", "expected key=value"),
])
def test_bad_values_name_the_key(override, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        make_config(overrides=["model.name=recgoat", override])


def test_every_shipped_config_parses():
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert {"lightgcn.yaml", "mf.yaml", "recgoat_demo.yaml", "recgoat_baby.yaml",
            "recgoat_sports.yaml", "recgoat_clothing.yaml", "recgoat_electronics.yaml"} <= set(names)
    for n in names:
        make_config(CONFIGS / n)
    baby = make_config(CONFIGS / "recgoat_baby.yaml")
    assert (baby.model.dim, baby.model.knn.k, baby.model.loss.cl_weight, baby.train.lr,
            baby.train.batch_size, baby.train.seed) == (800, 20, 0.032, 8e-4, 4096, 2025)
    sports = make_config(CONFIGS / "recgoat_sports.yaml")
    assert (sports.model.dim, sports.model.knn.k, sports.model.loss.cl_weight) == (600, 30, 0.005)
    elec = make_config(CONFIGS / "recgoat_electronics.yaml")
    assert (elec.model.dim, elec.model.loss.cl_weight, elec.train.epochs) == (200, 0.05, 2000)
    loss = baby.model.loss  # the published values besides lambda_cl, and our OT weight
    assert (loss.l2_weight, loss.cl_tau, loss.cl_w, loss.cl_rows, loss.ot_weight) == (
        1e-4, 0.2, 0.5, 0, 0.1)


def test_every_shipped_config_builds_its_model():
    """Each shipped config builds its model (registry), with the config's values in it."""
    from recgoat_jax.model.base import Shapes
    from recgoat_jax.model.registry import build_model

    shapes = Shapes(n_users=11, n_items=13, user_feature_dim=4,
                    item_feature_dims={"image": 6, "text": 5})
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = make_config(path)
        model = build_model(cfg, shapes)
        assert type(model).__name__.lower() == ("lightgcn" if cfg.model.name == "mf"
                                                else cfg.model.name), path.name
        if cfg.model.name == "recgoat":
            assert model.net.dim == cfg.model.dim and model.net.modalities == ("image", "text")
            weights = {n: w for n, w, _ in model.terms}
            assert weights["reg"] == cfg.model.loss.l2_weight, path.name
            assert weights.get("cmcl", 0.0) == (cfg.model.loss.cl_weight
                                                if cfg.model.cmcl != "none" else 0.0)
            # the paper's GAT branch for auto / on (these shapes have user features); the
            # collaborative one for cf, or cf_if_text on real user text (not said here)
            assert model.net.user_gat == (cfg.model.user_branch in ("auto", "on")), path.name
            assert model.net.user_cf == (cfg.model.user_branch == "cf"), path.name
        elif cfg.model.name == "freedom":
            assert model.mm_bpr_weight == cfg.model.mm_bpr_weight, path.name
        elif cfg.model.name in ("itemknn", "blend"):
            assert model.k == cfg.model.k, path.name
        else:
            assert model.emb_loss_weight == cfg.model.emb_loss_weight, path.name


def test_eval_metric_checked_at_load_against_the_metric_table():
    assert make_config(overrides=["eval.metric=ndcg@10"]).eval.metric == "ndcg@10"
    with pytest.raises(ConfigError) as e:
        make_config(overrides=["eval.metric=recal@20"])
    assert str(e.value) == ("config key 'eval.metric': expected <recall|ndcg|precision|map|"
                            "hitrate>@K with K in eval.ks [5, 10, 20, 50], got 'recal@20'; "
                            "did you mean 'recall'?")
    with pytest.raises(ConfigError, match=r"K in eval.ks \[5, 10\], got 'recall@20'$"):
        make_config(overrides=["eval.ks=[5,10]"])  # the default metric recall@20


def test_each_model_reads_only_its_own_keys():
    """The model section is the chosen model's dataclass: another model's key is a one-line
    error naming the model, which models have the key, and this model's keys."""
    with pytest.raises(ConfigError) as e:
        make_config(overrides=["model.knn.k=5", "model.name=lightgcn"])
    assert str(e.value) == ("unknown config key 'model.knn': not a key of lightgcn (freedom "
                            "and recgoat have it); lightgcn's keys: dim, emb_loss_weight, init, "
                            "n_layers, name")
    with pytest.raises(ConfigError) as e:
        make_config(overrides=["model.name=freedom", "model.dropout=0.5"])
    assert str(e.value) == ("unknown config key 'model.dropout': not a key of freedom (recgoat "
                            "has it); did you mean 'model.freedom_dropout'?")
    with pytest.raises(ConfigError, match="not a key of mf .*; mf's keys: dim, emb_loss_weight, init, name$"):
        make_config(overrides=["model.name=mf", "model.n_layers=2"])
    with pytest.raises(ConfigError) as e:
        make_config(overrides=["model.name=recgoat", "model.ot.paper.foo=1"])
    assert str(e.value) == ("unknown config key 'model.ot.paper.foo': not a key of recgoat's "
                            "model.ot.paper; its keys: batch_items, epsilon, iterations, tau")
    assert type(make_config().model).__name__ == "LightGCNConfig"  # no name: lightgcn


def test_keys_moved_into_a_group_name_their_new_place():
    """A config written before the kNN / GAT groups fails with the key's new name."""
    with pytest.raises(ConfigError) as e:
        make_config(overrides=["model.name=recgoat", "model.knn_k=5"])
    assert str(e.value) == ("config key 'model.knn_k' is now 'model.knn.k'; rename it there "
                            "(e.g. --set model.knn.k=5)")
    with pytest.raises(ConfigError, match="'model.gat_heads' is now 'model.gat.heads'"):
        make_config(overrides=["model.name=recgoat", "model.gat_heads=2"])
    with pytest.raises(ConfigError, match="'model.knn_backend' is now 'model.knn.backend'"):
        make_config(overrides=["model.name=freedom", "model.knn_backend=xla"])
    with pytest.raises(ConfigError, match="unknown config key 'model.user_knn_k': not a key "
                                          "of freedom"):  # no such group in FREEDOM's section
        make_config(overrides=["model.name=freedom", "model.user_knn_k=5"])
    cfg = make_config(overrides=["model.name=recgoat", "model.knn.user_k=4", "model.gat.heads=2"])
    assert (cfg.model.knn.k, cfg.model.knn.user_k, cfg.model.gat.heads, cfg.model.gat.layers) \
        == (20, 4, 2, 1)


def test_ot_settings_grouped_by_variant():
    cfg = make_config(overrides=["model.name=recgoat", "model.ot.reference.epsilon=0.02",
                                 "model.ot.paper.iterations=50"])
    ot = cfg.model.ot
    assert (ot.reference.epsilon, ot.reference.iterations, ot.reference.cost_scale) == (
        0.02, 100, 100.0)  # the released code's values, one changed
    assert (ot.paper.epsilon, ot.paper.iterations, ot.paper.tau, ot.paper.batch_items) == (
        0.05, 50, 1.0, 256)


def test_schema_is_small_and_every_key_is_used():
    """No model section over 16 keys (a nested group counts once; RecGOAT's 16th is its
    `loss` group, the loss weights that were train keys); every model key is set by a
    shipped config of that model or named in docs/method.md (documented variants)."""
    root = CONFIGS.parents[1]
    method = (root / "docs" / "method.md").read_text()
    shipped: dict[str, set] = {}
    for path in CONFIGS.glob("*.yaml"):
        model = yaml.safe_load(path.read_text())["model"]
        shipped.setdefault(model["name"], set()).update(flat_dict(model))
    models = [(cls().name, cls) for prefix, cls in sections() if prefix == "model."]
    assert [m for m, _ in models] == ["blend", "freedom", "itemknn", "lightgcn", "mf",
                                      "recgoat"]
    for name, cls in models:
        assert len(dataclasses.fields(cls)) <= 16, name
        unused = [k for k in flat_dict(to_dict(cls()))
                  if k not in shipped[name] and f"model.{k}" not in method]
        assert unused == [], (name, unused)


def test_each_recgoat_config_sets_only_its_oat_variants_settings():
    for path in CONFIGS.glob("recgoat*.yaml"):
        model = yaml.safe_load(path.read_text())["model"]
        assert set(model.get("ot", {})) <= {model.get("oat", "paper")}, path.name


# ------------------------------------------------- keys that moved out of train (issue 28)
RENAMES = [  # (model, old key, new key)
    ("recgoat", "train.reg_weight", "model.loss.l2_weight"),
    ("recgoat", "train.lambda_cl", "model.loss.cl_weight"),
    ("recgoat", "train.cl_tau", "model.loss.cl_tau"),
    ("recgoat", "train.cl_w", "model.loss.cl_w"),
    ("recgoat", "train.cl_rows", "model.loss.cl_rows"),
    ("recgoat", "train.lambda_ot", "model.loss.ot_weight"),
    ("lightgcn", "train.reg_weight", "model.emb_loss_weight"),
    ("mf", "train.reg_weight", "model.emb_loss_weight"),
    ("freedom", "train.reg_weight", "model.mm_bpr_weight"),
] + [(m, f"train.{k}", f"run.{k}") for m in ("recgoat", "lightgcn") for k in (
    "checkpoint", "tensorboard", "data_parallel", "distributed", "model_parallel")]


@pytest.mark.parametrize("model,old,new", RENAMES)
def test_moved_keys_name_their_new_place(model, old, new):
    with pytest.raises(ConfigError) as e:
        make_config(overrides=[f"model.name={model}", f"{old}=0.5"])
    assert str(e.value) == (f"config key {old!r} is now {new!r}; rename it there "
                            f"(e.g. --set {new}=0.5)")
    # and the new key takes the value (0.5 is in range for every one of them but the
    # integer ones; model_parallel / cl_rows get 2)
    value = 2 if new.endswith(("_rows", "model_parallel")) else 0.5
    value = True if new.split(".")[-1] in ("checkpoint", "tensorboard", "data_parallel",
                                           "distributed") else value
    cfg = make_config(overrides=[f"model.name={model}", f"{new}={value}"])
    section, *path = new.split(".")
    got = getattr(cfg, section)
    for p in path:
        got = getattr(got, p)
    assert got == value


def test_a_former_key_of_another_model_names_both():
    for key, what, new in [("lambda_cl", "contrastive loss", "model.loss.cl_weight"),
                           ("cl_tau", "contrastive loss", "model.loss.cl_tau"),
                           ("lambda_ot", "OT loss", "model.loss.ot_weight")]:
        for model in ("lightgcn", "mf", "freedom"):
            with pytest.raises(ConfigError) as e:
                make_config(overrides=[f"model.name={model}", f"train.{key}=0.5"])
            assert str(e.value) == (f"config key 'train.{key}': {model} has no {what} "
                                    f"(RecGOAT's is {new})")
    # the new key in a model without it: the unknown-key error names the model
    with pytest.raises(ConfigError) as e:
        make_config(overrides=["model.name=lightgcn", "model.loss.cl_weight=0.5"])
    assert str(e.value).startswith("unknown config key 'model.loss': not a key of lightgcn "
                                   "(recgoat has it); ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("model", ["lightgcn", "mf", "freedom"])
def test_mixed_precision_is_an_error_where_the_model_has_no_bf16_path(model):
    with pytest.raises(ConfigError) as e:
        make_config(overrides=[f"model.name={model}", "train.mixed_precision=true"])
    assert str(e.value) == (f"config key 'train.mixed_precision': {model} has no "
                            "mixed-precision (bf16) path (only recgoat reads it); leave it false")
    assert not make_config(overrides=[f"model.name={model}",
                                      "train.mixed_precision=false"]).train.mixed_precision
    assert make_config(overrides=["model.name=recgoat",
                                  "train.mixed_precision=true"]).train.mixed_precision


# ------------------------------------------------ audit: every key is read by the code
PACKAGE = CONFIGS.parent
SCHEMA = {"config.py", "config_checks.py", "configs.py"}  # where keys are declared


def _read_attributes(paths) -> set[str]:
    """Every attribute name loaded (x.name) in the files."""
    out = set()
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                out.add(node.attr)
    return out


def _code_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py")
            if p.name not in SCHEMA and not p.name.endswith("_config.py")]


def _leaves(cls) -> set[str]:
    return {k.split(".")[-1] for k in flat_dict(to_dict(cls()))}


def _model_files(build: str) -> list[Path]:
    """The model's build module, the model/ modules it imports (transitively), the
    registry (model.name) and graphs/inputs.py (the inputs its needs build)."""
    from tests.test_imports import package_graph

    graph = package_graph()
    todo, seen = [f"recgoat_jax.model.{build.split(':')[0]}"], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [d for d in graph[m] if d.startswith("recgoat_jax.model.")]
    files = [PACKAGE / (m.removeprefix("recgoat_jax.").replace(".", "/") + ".py") for m in seen]
    return [p for p in files if p.name not in SCHEMA and not p.name.endswith("_config.py")] + [
        PACKAGE / "model" / "registry.py", PACKAGE / "graphs" / "inputs.py"]


def test_every_key_of_every_section_is_read_by_the_code():
    """Every key of data / train / eval / run is read (as an attribute) somewhere outside
    the schema modules, and every key of a model's section in that model's own code (its
    build module and what it imports in model/, the registry, graphs/inputs.py). By name,
    not by path: a key whose name is read for another reason passes too."""
    read = _read_attributes(_code_files())
    for prefix, cls in sections():
        if prefix != "model.":
            assert _leaves(cls) - read == set(), prefix
    for name, entry in model_configs.MODELS.items():
        missing = _leaves(entry.config) - _read_attributes(_model_files(entry.build))
        assert missing == set(), (name, missing)


def test_train_keys_read_by_model_code_are_declared_model_specific():
    """A shared train key that model code reads (cfg.train.<key>) is one some models do not
    honour: it must be in TrainConfig.MODEL_SPECIFIC (an error for the others). The model
    code reads cfg.train.<key> whole (no alias of cfg.train), so all its reads show."""
    train_reads, aliases = set(), []
    for p in list((PACKAGE / "model").glob("*.py")) + [PACKAGE / "graphs" / "inputs.py"]:
        tree = ast.parse(p.read_text())
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == "train"
                    and isinstance(node.value, ast.Name) and node.value.id == "cfg"):
                up = parents[node]
                if isinstance(up, ast.Attribute):
                    train_reads.add(up.attr)
                else:
                    aliases.append(f"{p.name}:{node.lineno}")
    assert aliases == []
    assert train_reads == set(TrainConfig.MODEL_SPECIFIC) == {"mixed_precision"}


@pytest.mark.parametrize("model", ["itemknn", "blend"])
@pytest.mark.parametrize("override,default", [
    ("train.lr=0.1", "0.001"), ("train.epochs=3", "1000"), ("train.seed=1", "999"),
    ("run.checkpoint=false", "true"), ("run.data_parallel=true", "false")])
def test_a_fitted_model_reads_no_train_or_run_key(model, override, default):
    """itemknn / blend are fitted in one pass: a train or run key changed for them would do
    nothing, so it is a one-line error naming the model, the key and its default; the
    defaults themselves (and eval keys, which they read) are accepted."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as e:
        make_config(overrides=[f"model.name={model}", override])
    assert str(e.value) == (f"config key {key!r}: {model} is fitted in one pass, not trained, "
                            f"and reads no {key.split('.')[0]} key; leave it at its default "
                            f"({default})")
    assert make_config(overrides=[f"model.name={model}", f"{key}={default}",
                                  "eval.metric=ndcg@10"]).model.name == model
