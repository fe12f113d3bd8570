"""RecGOAT's collaborative user branch (model.user_branch=cf / cf_if_text): its input
(each user's nearest users by user features) against a brute-force float64 kNN, and its
output against a dense NumPy LightGCN plus the neighbours' mean."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.config import ConfigError, make_config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.graphs import inputs as gi
from recgoat_jax.graphs.bipartite import dense_adjacency
from recgoat_jax.model import recgoat_parts
from recgoat_jax.model.fusion import fusion_factory
from recgoat_jax.model.recgoat import USER_CF_INIT, RecGOATNet, build
from recgoat_jax.model.base import Shapes
from recgoat_jax.model.recgoat_config import GATConfig

from graph_helpers import exact_cosine_features, small_graph


def _features_without_near_ties(n=12, d=5, k=3, seed=3):
    """Random user features whose k-th and (k+1)-th cosines (self aside) differ by > 1e-3
    in every row, so any float32 kernel picks the float64 reference's neighbours."""
    rng = np.random.default_rng(seed)
    while True:
        f = rng.standard_normal((n, d))
        x = f / np.linalg.norm(f, axis=1, keepdims=True)
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        srt = -np.sort(-s, axis=1)
        if np.min(srt[:, k - 1] - srt[:, k]) > 1e-3:
            return f.astype(np.float32), np.argsort(-s, axis=1)[:, :k]


def _dataset(user_features, source=None):
    train, _ = small_graph()
    return Dataset(name="t", n_users=12, n_items=9, train=train, valid=train, test=train,
                   item_features={"text": np.ones((9, 4), np.float32)},
                   user_features=user_features, user_feature_source=source)


def test_user_knn_rows_are_the_nearest_other_users():
    feats, want = _features_without_near_ties()
    cfg = make_config(overrides=["model.name=recgoat", "model.knn.user_k=3"])
    rows = np.asarray(gi.user_knn_rows(_dataset(feats), cfg, cache_dir=None))
    assert rows.shape == (12, 3)
    assert [sorted(r) for r in rows.tolist()] == [sorted(r) for r in want.tolist()]


def test_user_knn_rows_ties_go_to_the_lower_index():
    # exact-in-float32 cosines: user 0's copies at 5 and 9 tie, and 5 (lower) must win
    feats = exact_cosine_features(12, 6, seed=4)
    feats[5] = feats[0]
    feats[9] = 2 * feats[0]
    cfg = make_config(overrides=["model.name=recgoat", "model.knn.user_k=1"])
    rows = np.asarray(gi.user_knn_rows(_dataset(feats), cfg, cache_dir=None))
    assert rows[0, 0] == 5 and rows[5, 0] == 0 and rows[9, 0] == 0


@pytest.mark.slow  # flax init + apply of the net: ~8 s to compile on 2 busy cores
def test_cf_branch_adds_the_neighbours_mean_after_lightgcn():
    train, adj = small_graph()
    nbrs = np.random.default_rng(2).integers(0, 12, size=(12, 3)).astype(np.int32)
    inputs = {"adjacency": adj, "user_knn_rows": jnp.asarray(nbrs),
              "item_features": {"text": jnp.ones((9, 4), jnp.float32)},
              "item_knn": {"text": (jnp.arange(9, dtype=jnp.int32),) * 2}}
    net = RecGOATNet(n_users=12, n_items=9, dim=8, modalities=("text",), gat=GATConfig(heads=2),
                     encode_ui=functools.partial(recgoat_parts.lightgcn_ui, n_layers=2),
                     align=recgoat_parts.no_align,
                     make_fusion=fusion_factory("residual", 8, ("text",), {}, name="fusion"),
                     user_cf=True)
    params = net.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                      inputs)["params"]
    assert float(params["user_cf_gate"]) == USER_CF_INIT == 0.5
    params = {**params, "user_cf_gate": jnp.float32(0.75)}
    out = net.apply({"params": params}, inputs)
    # independent dense LightGCN (mean of layers 0..2) in float64
    a = dense_adjacency(train, 12, 9)
    x = [np.concatenate([np.asarray(params["user_emb"]), np.asarray(params["item_emb"])],
                        dtype=np.float64)]
    for _ in range(2):
        x.append(a @ x[-1])
    e_u = np.mean(x, axis=0)[:12]
    want_z = 0.75 * np.stack([e_u[r].mean(axis=0) for r in nbrs])
    np.testing.assert_allclose(np.asarray(out.z_user), want_z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.e_u), e_u + want_z, rtol=1e-5, atol=1e-6)


def _shapes(source):
    return Shapes(n_users=12, n_items=9, item_feature_dims={"text": 4},
                  user_feature_dim=None if source == "none" else 5,
                  user_feature_source=None if source == "none" else source)


@pytest.mark.parametrize("branch,source,cf,gat", [
    ("cf_if_text", "user_text", True, False),
    ("cf_if_text", "template_profile", False, False),
    ("cf_if_text", None, False, False),  # unknown origin (e.g. MMRec's folders): off
    ("cf_if_text", "none", False, False),
    ("cf", "template_profile", True, False),
    ("auto", "user_text", False, True),  # the paper's GAT branch, as before
    ("off", "user_text", False, False),
])
def test_user_branch_resolution(branch, source, cf, gat):
    cfg = make_config(overrides=["model.name=recgoat", f"model.user_branch={branch}"])
    model = build(cfg, _shapes(source))
    assert (model.net.user_cf, model.net.user_gat) == (cf, gat)
    assert ("user_knn_rows" in model.needs) == cf and ("user_knn" in model.needs) == gat


def test_cf_without_user_features_is_a_one_line_error():
    cfg = make_config(overrides=["model.name=recgoat", "model.user_branch=cf"])
    with pytest.raises(ConfigError, match=r"^config key 'model.user_branch': cf needs user "
                                          r"features .* this dataset has none$"):
        build(cfg, _shapes("none"))
