"""RecGOATNet's ID branch, user branch and residual fusion, checked against an independent
dense NumPy LightGCN."""

import functools

import jax
import pytest
import jax.numpy as jnp
import numpy as np

from recgoat_jax.graphs.bipartite import dense_adjacency
from recgoat_jax.model import recgoat_parts
from recgoat_jax.model.fusion import fusion_factory
from recgoat_jax.model.recgoat import RecGOATNet
from recgoat_jax.model.recgoat_config import GATConfig

from graph_helpers import small_graph as _graph


def _tiny_net(fusion: str = "residual", **kw) -> RecGOATNet:
    """RecGOAT over the 12 x 9 test graph: d 8, 2 heads, 3 LightGCN layers, no OAT."""
    return RecGOATNet(n_users=12, n_items=9, dim=8, modalities=("text",), gat=GATConfig(heads=2),
                      encode_ui=functools.partial(recgoat_parts.lightgcn_ui, n_layers=3),
                      align=recgoat_parts.no_align,
                      make_fusion=fusion_factory(fusion, 8, ("text",), {"text": 0.5},
                                                 name="fusion"),
                      **kw)


def _init(net, inputs):
    return net.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                    inputs)["params"]


def _recgoat_user_branch():
    """A tiny RecGOAT net with a user branch over a ring user-user graph (self loops)."""
    train, adj = _graph()
    rng = np.random.default_rng(1)
    ring = np.arange(12)
    s = np.concatenate([ring, ring, (ring + 1) % 12]).astype(np.int32)
    r = np.concatenate([ring, (ring + 1) % 12, ring]).astype(np.int32)
    inputs = {"adjacency": adj, "user_knn": (jnp.asarray(s), jnp.asarray(r)),
              "user_features": jnp.asarray(rng.standard_normal((12, 5)), jnp.float32),
              "item_features": {"text": jnp.asarray(rng.standard_normal((9, 6)), jnp.float32)},
              "item_knn": {"text": (jnp.arange(9, dtype=jnp.int32),) * 2}}
    net = _tiny_net("oat", user_gat=True)
    out = net.apply({"params": _init(net, inputs)}, inputs)
    return train, out


def _dense_lightgcn(train, users, items):
    a = dense_adjacency(train, 12, 9)
    layers = [np.concatenate([users, items]).astype(np.float64)]
    for _ in range(3):
        layers.append(a @ layers[-1])
    ref = np.mean(layers, axis=0)
    return ref[:12], ref[12:]


@pytest.mark.slow
def test_user_branch_adds_z_u_after_the_id_encoder():
    # e_u = LightGCN(user ego) + z_u, e_i = LightGCN(item ego). Dense reference.
    train, out = _recgoat_user_branch()
    zu, ue, ie = (np.asarray(x, np.float64) for x in (out.z_user, out.user_ego, out.item_ego))
    assert np.abs(zu).max() > 1e-3  # the branch contributes
    ref_u, ref_i = _dense_lightgcn(train, ue, ie)
    np.testing.assert_allclose(out.e_u, ref_u + zu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.e_i, ref_i, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # two RecGOAT nets applied eagerly: ~3-4 s
def test_residual_fusion_starts_as_the_id_backbone():
    # no user branch, residual fusion with w_m from 0: e_u, e_i and z_items are exactly the
    # dense LightGCN's users and items; with w_text set to 0.5 by hand, z_items = e_i +
    # 0.5 z_text (no OAT, dropout off). Dense reference.
    train, adj = _graph()
    rng = np.random.default_rng(5)
    inputs = {"adjacency": adj,
              "item_features": {"text": jnp.asarray(rng.standard_normal((9, 6)), jnp.float32)},
              "item_knn": {"text": (jnp.arange(9, dtype=jnp.int32),) * 2}}
    net = _tiny_net()
    params = _init(net, inputs)
    out = net.apply({"params": params}, inputs)
    ue, ie = (np.asarray(x, np.float64) for x in (out.user_ego, out.item_ego))
    ref_u, ref_i = _dense_lightgcn(train, ue, ie)
    assert out.z_user is None
    np.testing.assert_allclose(out.e_u, ref_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.z_items, ref_i, rtol=1e-5, atol=1e-6)
    fusion = {**params["fusion"], "w_text": jnp.float32(0.5)}
    out = net.apply({"params": {**params, "fusion": fusion}}, inputs)
    np.testing.assert_allclose(out.z_items, ref_i + 0.5 * np.asarray(out.z["text"], np.float64),
                               rtol=1e-5, atol=1e-5)
