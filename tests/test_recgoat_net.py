"""How RecGOAT's user branch enters the user vectors (model.user_merge add / ego / residual), checked
against an independent dense NumPy LightGCN."""

import functools

import jax
import pytest
import jax.numpy as jnp
import numpy as np

from recgoat_jax.graphs.bipartite import dense_adjacency
from recgoat_jax.model import recgoat_parts
from recgoat_jax.model.fusion import fusion_factory
from recgoat_jax.model.recgoat import RecGOATNet

from graph_helpers import small_graph as _graph


def _tiny_net(fusion: str = "residual", residual_init: float = 0.0, **kw) -> RecGOATNet:
    """RecGOAT over the 12 x 9 test graph: d 8, 2 heads, 3 LightGCN layers, no OAT."""
    return RecGOATNet(n_users=12, n_items=9, dim=8, modalities=("text",), heads=2,
                      encode_ui=functools.partial(recgoat_parts.lightgcn_ui, n_layers=3),
                      align=recgoat_parts.no_align,
                      make_fusion=fusion_factory(fusion, 8, ("text",), {"text": 0.5},
                                                 name="fusion", residual_init=residual_init),
                      **kw)


def _init(net, inputs):
    return net.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                    inputs)["params"]


def _recgoat_user_branch(merge, gate=None):
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
    net = _tiny_net("oat", user_branch=True, user_into_ego=merge == "ego",
                    user_gate_init=0.0 if merge == "residual" else None)
    params = _init(net, inputs)
    if gate is not None:
        params = {**params, "w_user": jnp.float32(gate)}
    out = net.apply({"params": params}, inputs)
    return train, out


def _dense_lightgcn(train, users, items):
    a = dense_adjacency(train, 12, 9)
    layers = [np.concatenate([users, items]).astype(np.float64)]
    for _ in range(3):
        layers.append(a @ layers[-1])
    ref = np.mean(layers, axis=0)
    return ref[:12], ref[12:]


@pytest.mark.slow
def test_user_branch_merge_add_and_ego():
    # add: e_u = LightGCN(user ego) + z_u; ego: e_u = LightGCN(user ego + z_u). Dense reference.
    for merge in ("add", "ego"):
        train, out = _recgoat_user_branch(merge)
        zu, ue, ie = (np.asarray(out[k], np.float64) for k in ("z_user", "user_ego", "item_ego"))
        assert np.abs(zu).max() > 1e-3  # the branch contributes
        if merge == "add":
            ref_u, ref_i = _dense_lightgcn(train, ue, ie)
            ref_u = ref_u + zu
        else:
            ref_u, ref_i = _dense_lightgcn(train, ue + zu, ie)
        np.testing.assert_allclose(out["e_u"], ref_u, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["e_i"], ref_i, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_user_branch_merge_residual_gate():
    # residual: e_u = LightGCN(user ego) + w_user z_u; w_user starts at model.residual_init (0
    # here: exactly the ID backbone) and is a parameter (set to 0.3 by hand).
    train, out = _recgoat_user_branch("residual")
    zu, ue, ie = (np.asarray(out[k], np.float64) for k in ("z_user", "user_ego", "item_ego"))
    assert np.abs(zu).max() > 1e-3
    ref_u, ref_i = _dense_lightgcn(train, ue, ie)
    np.testing.assert_allclose(out["e_u"], ref_u, rtol=1e-5, atol=1e-6)
    _, out = _recgoat_user_branch("residual", gate=0.3)
    np.testing.assert_allclose(out["e_u"], ref_u + 0.3 * zu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["e_i"], ref_i, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # three RecGOAT nets applied eagerly: ~2-4 s
def test_content_id_layers_add_freedom_item_graph_propagation():
    # model.content_id_layers = 2: e_i = LightGCN item rows + A (A item_ego), A a hand-made
    # item-item matrix given as CSR (fwd) and its transpose (bwd); dense reference.
    from scipy import sparse

    train, adj = _graph()
    rng = np.random.default_rng(3)
    a = np.zeros((9, 9))
    for i in range(9):  # each item: itself 0.5, the next item 0.3, item 0 0.2 (summed if equal)
        a[i, i] += 0.5
        a[i, (i + 1) % 9] += 0.3
        a[i, 0] += 0.2

    def csr(m):
        c = sparse.csr_matrix(m)
        return (jnp.asarray(c.data, jnp.float32), jnp.asarray(c.indices, jnp.int32),
                jnp.asarray(c.indptr, jnp.int32))

    inputs = {"adjacency": adj, "mm_adj": {"fwd": csr(a), "bwd": csr(a.T)},
              "item_features": {"text": jnp.asarray(rng.standard_normal((9, 6)), jnp.float32)},
              "item_knn": {"text": (jnp.arange(9, dtype=jnp.int32),) * 2}}
    outs = {}
    for layers, gate in ((0, None), (2, None), ("gated", 0.0)):
        net = _tiny_net(content_id_layers=2 if layers == "gated" else layers,
                        content_id_gate_init=gate)
        params = _init(net, inputs)
        if gate is not None:  # model.content_id_gate: the term times w_cid (set by hand)
            params = {**params, "w_cid": jnp.float32(0.25)}
        outs[layers] = net.apply({"params": params}, inputs)
    ue, ie = (np.asarray(outs[2][k], np.float64) for k in ("user_ego", "item_ego"))
    ref_u, ref_i = _dense_lightgcn(train, ue, ie)
    np.testing.assert_allclose(outs[2]["e_u"], ref_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[2]["e_i"], ref_i + a @ (a @ ie), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0]["e_i"], ref_i, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs["gated"]["e_i"], ref_i + 0.25 * (a @ (a @ ie)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # initialises and applies a RecGOAT net eagerly: ~4 s on a cold compile cache
def test_user_content_adds_one_hop_of_the_items_content_part():
    # model.user_content: e_u = LightGCN user rows + w_uc R (z_items - e_i), R the user rows
    # of the normalised user-item graph; w_uc starts at model.residual_init (0: exactly the
    # ID backbone's users) and is set to 0.5 by hand. Dense reference.
    train, adj = _graph()
    rng = np.random.default_rng(5)
    inputs = {"adjacency": adj,
              "item_features": {"text": jnp.asarray(rng.standard_normal((9, 6)), jnp.float32)},
              "item_knn": {"text": (jnp.arange(9, dtype=jnp.int32),) * 2}}
    net = _tiny_net(residual_init=0.3, user_content_gate_init=0.0)
    params = _init(net, inputs)
    out0 = net.apply({"params": params}, inputs)
    out = net.apply({"params": {**params, "w_uc": jnp.float32(0.5)}}, inputs)
    ue, ie = (np.asarray(out[k], np.float64) for k in ("user_ego", "item_ego"))
    ref_u, ref_i = _dense_lightgcn(train, ue, ie)
    content = np.asarray(out["z_items"], np.float64) - ref_i
    assert np.abs(content).max() > 1e-3  # the residual weight 0.3 lets content in
    r = dense_adjacency(train, 12, 9)[:12, 12:]
    np.testing.assert_allclose(out0["e_u"], ref_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["e_u"], ref_u + 0.5 * r @ content, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["e_i"], ref_i, rtol=1e-5, atol=1e-6)
