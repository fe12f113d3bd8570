import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.batch import Batch
from recgoat_jax.data.dataset import CSR
from recgoat_jax.graphs.bipartite import dense_adjacency, normalized_adjacency
from recgoat_jax.model.lightgcn import MF, LightGCN

from graph_helpers import small_graph as _graph


def test_adjacency_hand_case():
    # user 0 - items 0, 1; user 1 - item 0. deg u0 = 2, u1 = 1, i0 = 2, i1 = 1.
    train = CSR.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 0]), 2)
    data, indices, indptr = normalized_adjacency(train, 2, 2)["ui"]
    np.testing.assert_allclose(data, [1 / 2, 1 / np.sqrt(2), 1 / np.sqrt(2)], rtol=1e-6)
    np.testing.assert_array_equal(indices, [0, 1, 0])
    np.testing.assert_array_equal(indptr, [0, 2, 3])


def test_propagation_equals_dense_reference():
    train, adj = _graph()
    m = LightGCN(12, 9, dim=4, n_layers=3, init_name="normal")
    params = m.init(jax.random.PRNGKey(0), {"adjacency": adj})
    eu, ei = m.embed(params, {"adjacency": adj})
    a = dense_adjacency(train, 12, 9)
    e0 = np.concatenate([params["user"], params["item"]]).astype(np.float64)
    layers = [e0]
    for _ in range(3):
        layers.append(a @ layers[-1])
    ref = np.mean(layers, axis=0)
    np.testing.assert_allclose(np.concatenate([eu, ei]), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_custom_gradient_equals_dense_gradient():
    train, adj = _graph(1)
    m = LightGCN(12, 9, dim=3, n_layers=2, init_name="normal")
    params = m.init(jax.random.PRNGKey(1), {"adjacency": adj})
    a = jnp.asarray(dense_adjacency(train, 12, 9), jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(2), (21, 3))

    def f_sparse(p):
        eu, ei = m.embed(p, {"adjacency": adj})
        return jnp.sum(jnp.concatenate([eu, ei]) * w)

    def f_dense(p):
        e = jnp.concatenate([p["user"], p["item"]])
        out = (e + a @ e + a @ (a @ e)) / 3
        return jnp.sum(out * w)

    gs, gd = jax.grad(f_sparse)(params), jax.grad(f_dense)(params)
    np.testing.assert_allclose(gs["user"], gd["user"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gs["item"], gd["item"], rtol=1e-5, atol=1e-6)


def test_loss_hand_computed_mf():
    m = MF(2, 3, dim=2, emb_loss_weight=0.1)
    params = {"user": jnp.array([[1.0, 0.0], [0.0, 2.0]]),
              "item": jnp.array([[1.0, 1.0], [0.0, -1.0], [3.0, 0.0]])}
    batch = Batch(users=jnp.array([0, 1, 0]), pos=jnp.array([0, 0, 2]),
                  neg=jnp.array([1, 1, 1]), weight=jnp.array([1.0, 1.0, 0.0]))
    loss, aux = m.loss(params, {}, batch, jax.random.PRNGKey(0))
    # pos - neg: user0: 1 - 0 = 1; user1: 2 - (-2) = 4 (third row is padding).
    bpr = np.mean([np.log1p(np.exp(-1.0)), np.log1p(np.exp(-4.0))])
    # MMRec EmbLoss: (||U_b||_F + ||P_b||_F + ||N_b||_F) / B over the real rows.
    reg = (np.sqrt(1 + 4) + np.sqrt(2 + 2) + np.sqrt(1 + 1)) / 2
    np.testing.assert_allclose(aux["bpr"], bpr, rtol=1e-6)
    np.testing.assert_allclose(aux["reg"], reg, rtol=1e-6)
    np.testing.assert_allclose(loss, bpr + 0.1 * reg, rtol=1e-6)


def test_xavier_init_bound():
    m = LightGCN(1000, 200, dim=64)
    p = m.init(jax.random.PRNGKey(0), None)
    assert float(jnp.max(jnp.abs(p["user"]))) <= (6 / 1064) ** 0.5
    assert float(jnp.max(jnp.abs(p["user"]))) > 0.95 * (6 / 1064) ** 0.5
    np.testing.assert_allclose(float(jnp.std(p["item"])), (6 / 264) ** 0.5 / np.sqrt(3), rtol=0.05)
