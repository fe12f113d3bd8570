import dataclasses
from pathlib import Path

import pytest
import yaml

from recgoat_jax.config import (ConfigError, dump_yaml, flat_dict, make_config, sections,
                                to_dict)

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
    ("train.checkpoint=maybe", "config key 'train.checkpoint': expected true/false"),
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
    assert (baby.model.dim, baby.model.knn.k, baby.train.lambda_cl, baby.train.lr,
            baby.train.batch_size, baby.train.seed) == (800, 20, 0.032, 8e-4, 4096, 2025)
    sports = make_config(CONFIGS / "recgoat_sports.yaml")
    assert (sports.model.dim, sports.model.knn.k, sports.train.lambda_cl) == (600, 30, 0.005)
    elec = make_config(CONFIGS / "recgoat_electronics.yaml")
    assert (elec.model.dim, elec.train.lambda_cl, elec.train.epochs) == (200, 0.05, 2000)


def test_every_shipped_config_builds_its_model():
    """Each shipped config builds its model (registry), with the config's values in it."""
    from recgoat_jax.model.registry import build_model

    shapes = {"n_users": 11, "n_items": 13, "user_feature_dim": 4,
              "item_feature_dims": {"image": 6, "text": 5}}
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = make_config(path)
        model = build_model(cfg, shapes)
        assert type(model).__name__.lower() == ("lightgcn" if cfg.model.name == "mf"
                                                else cfg.model.name), path.name
        if cfg.model.name == "recgoat":
            assert model.net.dim == cfg.model.dim and model.net.modalities == ("image", "text")
            weights = {n: w for n, w, _ in model.terms}
            assert weights["reg"] == cfg.train.reg_weight, path.name
            assert weights.get("cmcl", 0.0) == (cfg.train.lambda_cl
                                                if cfg.model.cmcl != "none" else 0.0)
            # the paper's GAT branch for auto / on (these shapes have user features); the
            # collaborative one for cf, or cf_if_text on real user text (not said here)
            assert model.net.user_branch == (cfg.model.user_branch in ("auto", "on")), path.name
            assert model.net.user_cf == (cfg.model.user_branch == "cf"), path.name


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
                            "and recgoat have it); lightgcn's keys: dim, init, n_layers, name")
    with pytest.raises(ConfigError) as e:
        make_config(overrides=["model.name=freedom", "model.dropout=0.5"])
    assert str(e.value) == ("unknown config key 'model.dropout': not a key of freedom (recgoat "
                            "has it); did you mean 'model.freedom_dropout'?")
    with pytest.raises(ConfigError, match="not a key of mf .*; mf's keys: dim, init, name$"):
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
    """No model section over 15 keys (a nested group counts once); every model key is set
    by a shipped config of that model or named in docs/method.md (documented variants)."""
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
        assert len(dataclasses.fields(cls)) <= 15, name
        unused = [k for k in flat_dict(to_dict(cls()))
                  if k not in shipped[name] and f"model.{k}" not in method]
        assert unused == [], (name, unused)


def test_each_recgoat_config_sets_only_its_oat_variants_settings():
    for path in CONFIGS.glob("recgoat*.yaml"):
        model = yaml.safe_load(path.read_text())["model"]
        assert set(model.get("ot", {})) <= {model.get("oat", "paper")}, path.name
