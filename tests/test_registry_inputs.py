"""model/registry.py (model name -> its config class and build) and graphs/inputs.py (the
inputs a model's `needs` name), on a tiny generated dataset; no training."""

import dataclasses

import jax
import numpy as np
import pytest

from recgoat_jax.config import make_config
from recgoat_jax.data import synthetic
from recgoat_jax.errors import ConfigError
from recgoat_jax.graphs import inputs as gi
from recgoat_jax.model import registry
from recgoat_jax.model.base import Shapes
from recgoat_jax.model.freedom import FREEDOM
from recgoat_jax.model.lightgcn import LightGCN
from recgoat_jax.model.recgoat import RecGOAT


@pytest.fixture(scope="module")
def tiny():
    return synthetic.generate(n_users=40, n_items=30, n_interactions=400,
                              feature_dims={"text": 6, "image": 5}, seed=0,
                              user_feature_dim=4, name="tiny")


# small graphs for the models that build them (each model's config has only its own keys)
SMALL = {"recgoat": ["model.gat.heads=2", "model.knn.k=3", "model.knn.user_k=3"],
         "freedom": ["model.knn.k=3"]}


def _cfg(name, *sets):
    return make_config(overrides=[f"model.name={name}", "model.dim=8", *SMALL.get(name, []),
                                  *sets])


@pytest.mark.parametrize("name,cls,sets,needs", [
    ("mf", LightGCN, [], ()),
    ("lightgcn", LightGCN, [], ("adjacency",)),
    ("freedom", FREEDOM, [], ("adjacency", "ui_edge_list", "mm_adj", "item_features")),
    ("recgoat", RecGOAT, [],  # user_branch auto: on, the dataset has user features
     ("item_features", "item_knn", "adjacency", "user_knn", "user_features")),
    ("recgoat", RecGOAT, ["model.ui_encoder=gat", "model.user_branch=off"],
     ("item_features", "item_knn", "ui_edges")),
    ("recgoat", RecGOAT, ["model.user_branch=off", "model.edge_dropout=0.5"],
     ("item_features", "item_knn", "adjacency", "ui_edge_list")),
])
def test_build_model_and_its_inputs(tiny, name, cls, sets, needs):
    cfg = _cfg(name, *sets)
    model = registry.build_model(cfg, Shapes.of(tiny))
    assert isinstance(model, cls) and tuple(model.needs) == needs
    inputs = gi.build_inputs(model.needs, tiny, cfg)
    assert set(inputs) == set(needs)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), inputs)
    assert jax.tree_util.tree_leaves(params)


def test_registry_names_and_errors(tiny):
    assert registry.names() == ["blend", "freedom", "itemknn", "lightgcn", "mf", "recgoat"]
    with pytest.raises(ConfigError, match="unknown model 'nope'; expected one of blend"):
        registry.build_model(_cfg("nope"), Shapes.of(tiny))  # (raised by make_config)
    assert registry.config_class("recgoat").__name__ == "RecGOATConfig"
    assert registry.models_with_key("knn") == ["freedom", "recgoat"]
    shapes = dataclasses.replace(Shapes.of(tiny), item_feature_dims={})
    with pytest.raises(ConfigError, match="freedom needs item features"):
        registry.build_model(_cfg("freedom"), shapes)


def test_inputs_shapes(tiny):
    cfg = _cfg("recgoat")
    # every input RecGOAT may need, and FREEDOM's frozen item-item graph and the fitted
    # models' score matrices from their configs
    own = {"mm_adj": _cfg("freedom"), "item_knn_scores": make_config(overrides=[
        "model.name=itemknn"]), "blend_scores": make_config(overrides=["model.name=blend"])}
    got = gi.build_inputs(sorted(set(gi.BUILDERS) - set(own)), tiny, cfg)
    for name, c in own.items():
        got.update(gi.build_inputs([name], tiny, c))
    n_u, n_i = tiny.n_users, tiny.n_items
    s, r = got["ui_edges"]
    n_edges = len(tiny.train.to_pairs()[0])
    assert s.shape == r.shape == (2 * n_edges + n_u + n_i,)
    assert np.all(np.diff(np.asarray(r)) >= 0)  # sorted by receiver
    assert set(got["item_knn"]) == {"text", "image"}
    for s, r in [*got["item_knn"].values(), got["user_knn"]]:
        assert s.dtype == r.dtype == np.int32 and s.shape == r.shape
    assert got["item_features"]["text"].shape == (n_i, 6)
    assert got["user_features"].shape == (n_u, 4)
    assert got["mm_adj"]["fwd"][2].shape == (n_i + 1,)  # CSR indptr
    assert got["ui_edge_list"]["users"].shape == (n_edges,)
    assert got["item_knn_scores"].shape == got["blend_scores"]["users"].shape == (n_u, n_i)
    bf = gi.features_bf16(got)
    assert bf["item_features"]["text"].dtype == "bfloat16" and bf["adjacency"] is got["adjacency"]
    with pytest.raises(ValueError, match="unknown model input"):
        gi.build_inputs(["adjacency", "nope"], tiny, cfg)


def test_recgoat_edge_dropout_prunes_the_training_graph_only(tiny):
    cfg = _cfg("recgoat", "model.user_branch=off", "model.edge_dropout=0.75")
    model = registry.build_model(cfg, Shapes.of(tiny))
    assert "ui_edge_list" in model.needs and model.pre_epoch is not None
    inputs = gi.build_inputs(model.needs, tiny, cfg)
    pruned = jax.jit(model.pre_epoch)(inputs, jax.random.PRNGKey(3))
    n_edges = int(inputs["ui_edge_list"]["weight"].shape[0])
    data, full = np.asarray(pruned["adjacency"]["ui"][0]), np.asarray(inputs["adjacency"]["ui"][0])
    assert np.count_nonzero(data) == int(n_edges * 0.25) and np.count_nonzero(full) == n_edges
    # kept edges renormalised over the kept graph: 1/sqrt(deg_u deg_i) with kept degrees
    users = np.repeat(np.arange(tiny.n_users), np.diff(np.asarray(inputs["adjacency"]["ui"][2])))
    items = np.asarray(inputs["adjacency"]["ui"][1])
    keep = data != 0
    du = np.bincount(users[keep], minlength=tiny.n_users)
    di = np.bincount(items[keep], minlength=tiny.n_items)
    np.testing.assert_allclose(data[keep], 1 / np.sqrt(du[users[keep]] * di[items[keep]]), rtol=1e-5)
    assert registry.build_model(_cfg("recgoat", "model.user_branch=off"),
                                Shapes.of(tiny)).pre_epoch is None
    with pytest.raises(ConfigError, match="model.edge_dropout"):
        registry.build_model(_cfg("recgoat", "model.ui_encoder=gat", "model.edge_dropout=0.5"),
                             Shapes.of(tiny))


def test_a_model_registered_from_outside_the_package(tiny, monkeypatch):
    # an experiment registers its own variant with a build function (not a module path)
    from recgoat_jax.model.lightgcn_config import LightGCNConfig

    built = []

    def build(cfg, shapes):
        built.append((cfg.model.name, cfg.model.dim, shapes.n_users))
        return LightGCN(shapes.n_users, shapes.n_items, cfg.model.dim, 1)

    monkeypatch.setitem(registry.MODELS, "my_lightgcn",
                        registry.Entry(LightGCNConfig, build))
    cfg = make_config(overrides=["model.name=my_lightgcn", "model.dim=6"])
    model = registry.build_model(cfg, Shapes.of(tiny))
    assert built == [("my_lightgcn", 6, tiny.n_users)] and (model.dim, model.n_layers) == (6, 1)


def test_shapes_record_of_a_dataset(tiny):
    """Shapes.of reads sizes only; build_model converts a mapping of the same fields (what
    callers outside the package passed before the record)."""
    s = Shapes.of(tiny)
    assert (s.n_users, s.n_items, s.user_feature_dim) == (tiny.n_users, tiny.n_items, 4)
    assert dict(s.item_feature_dims) == {"text": 6, "image": 5}
    assert gi.shapes_of(tiny) == s
    as_dict = dataclasses.asdict(s)
    m = registry.build_model(_cfg("lightgcn"), as_dict)
    assert (m.n_users, m.n_items) == (tiny.n_users, tiny.n_items)
