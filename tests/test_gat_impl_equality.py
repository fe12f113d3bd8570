"""The RecGOAT train step's loss and gradients with the GAT's CSR aggregation (custom VJP)
equal those of the same step with the per-edge reference aggregation
(tests/gat_reference.py), for the paper and the reference variants, in training mode
(dropout on, same key); and the mixed-precision step against the float32 one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.batch import Batch
from recgoat_jax.config import make_config
from recgoat_jax.data.synthetic import generate
from recgoat_jax.graphs.inputs import model_inputs
from recgoat_jax.model.base import Shapes
from recgoat_jax.model.recgoat import build

from gat_reference import per_edge_gat

# every test compiles two whole RecGOAT train steps (value and grad): 5-35 s each
pytestmark = pytest.mark.slow

VARIANTS = {
    # user branch on (user GAT), paper OAT map, paper CMCL
    "paper": dict(model={"oat": "paper", "cmcl": "paper", "user_branch": "on",
                         "loss": {"cl_weight": 0.5}}),
    # the same plus the paper's OT term (ott-jax Sinkhorn divergence: slow to compile)
    "paper+ot": dict(model={"oat": "paper", "cmcl": "paper", "user_branch": "on",
                            "ot": {"paper": {"batch_items": 24, "iterations": 10}},
                            "loss": {"cl_weight": 0.5, "ot_weight": 0.5}}),
    # released code's OAT (stop-gradient plan) and CMCL, LightGCN ID encoder
    "reference": dict(model={"oat": "reference", "cmcl": "reference", "user_branch": "on",
                             "ot": {"reference": {"iterations": 5}},
                             "loss": {"cl_weight": 0.5}}),
}


@pytest.fixture(scope="module")
def dataset():
    return generate(60, 40, 600, feature_dims={"image": 24, "text": 12}, seed=3,
                    user_feature_dim=10)


def _loss_and_grad(ds, root, variant, mixed_precision=False, hlo=None):
    v = VARIANTS[variant]
    cfg = make_config(None, [], data={"root": str(root)},
                      model={"name": "recgoat", "dim": 16, "gat": {"heads": 4},
                             "knn": {"k": 4, "user_k": 3}, **v["model"]},
                      train={"batch_size": 32, "mixed_precision": mixed_precision})
    model = build(cfg, Shapes.of(ds))
    inputs = model_inputs(model, ds, cfg)
    params = model.init(jax.random.PRNGKey(0), inputs)
    rng = np.random.default_rng(0)
    batch = Batch(users=jnp.asarray(rng.integers(0, ds.n_users, 32), jnp.int32),
                  pos=jnp.asarray(rng.integers(0, ds.n_items, 32), jnp.int32),
                  neg=jnp.asarray(rng.integers(0, ds.n_items, 32), jnp.int32),
                  weight=jnp.asarray((np.arange(32) < 30).astype(np.float32)))  # 2 padded
    f = jax.jit(jax.value_and_grad(model.loss, has_aux=True))
    (loss, aux), grads = f(params, inputs, batch, jax.random.PRNGKey(7))
    if hlo is not None:  # the forward loss's StableHLO, for dtype checks
        hlo.append(jax.jit(model.loss).lower(params, inputs, batch,
                                             jax.random.PRNGKey(7)).as_text())
    return float(loss), jax.device_get(aux), jax.device_get(grads)


@pytest.mark.parametrize("variant", ["paper", "reference",
                                     pytest.param("paper+ot", marks=pytest.mark.slow)])
def test_csr_step_equals_segment_step(dataset, tmp_path, variant, monkeypatch):
    loss_c, aux_c, g_c = _loss_and_grad(dataset, tmp_path, variant)
    calls = per_edge_gat(monkeypatch)  # the steps traced from here on use the reference
    loss_s, aux_s, g_s = _loss_and_grad(dataset, tmp_path, variant)
    assert len(calls) >= 3  # the item (2 modalities) and user GATs took the reference
    assert np.isfinite(loss_s) and loss_s > 0
    np.testing.assert_allclose(loss_c, loss_s, rtol=1e-5)
    assert set(aux_c) == set(aux_s)
    for k in aux_s:
        np.testing.assert_allclose(aux_c[k], aux_s[k], rtol=1e-5, atol=1e-6, err_msg=k)
    flat_s = jax.tree_util.tree_leaves_with_path(g_s)
    flat_c = jax.tree_util.tree_leaves(g_c)
    assert len(flat_s) == len(flat_c)
    gat_grads = 0
    for (path, a), b in zip(flat_s, flat_c):
        name = jax.tree_util.keystr(path)
        gat_grads += "gat_0" in name
        scale = max(float(np.max(np.abs(a))), 1e-6)
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * scale, err_msg=name)
    assert gat_grads == 3 * 4  # item (2 modalities) and user GAT layers were compared


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_mixed_precision_step_close_to_float32(dataset, tmp_path, variant):
    """train.mixed_precision: the projections, GAT W x maps and OAT maps are bf16 x bf16
    dots with float32 output (2 modalities x 3 + the user encoder's 2 in the forward); the
    loss and every gradient leaf stay float32 and within bf16 rounding of the f32 step."""
    loss_f, _, g_f = _loss_and_grad(dataset, tmp_path, variant)
    hlo = []
    loss_b, _, g_b = _loss_and_grad(dataset, tmp_path, variant, True, hlo)
    dots = [line for line in hlo[0].splitlines() if "dot_general" in line]
    bf16_dots = [d for d in dots if "xbf16>, tensor<" in d]
    assert len(bf16_dots) == 2 * 3 + 2, len(bf16_dots)
    assert all("xf32>" in d.split("->")[-1] for d in bf16_dots)
    np.testing.assert_allclose(loss_b, loss_f, rtol=2e-2)
    leaves_f = jax.tree_util.tree_leaves_with_path(g_f)
    biggest = max(np.linalg.norm(a) for _, a in leaves_f)
    checked = 0
    for (path, a), b in zip(leaves_f, jax.tree_util.tree_leaves(g_b)):
        name = jax.tree_util.keystr(path)
        assert b.dtype == np.float32, name
        a, b = np.ravel(a), np.ravel(b)
        if np.linalg.norm(a) < 1e-2 * biggest:
            # tiny leaves (e.g. attention vectors, 1e-3 of the largest) are sums that
            # cancel, so bf16 rounding moves them by 10%+ in relative terms
            continue
        checked += 1
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cos > 0.99, (name, cos)
        assert np.linalg.norm(b - a) < 0.05 * np.linalg.norm(a), name
    assert checked >= 10, checked  # the embeddings, projections, GAT fc and OAT maps
