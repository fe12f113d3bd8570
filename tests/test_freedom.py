"""FREEDOM (model/freedom.py, graphs/mm_adj.py) against hand-computed cases and dense NumPy
implementations of MMRec's freedom.py formulas."""

import dataclasses
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.batch import Batch
from recgoat_jax.config import ConfigError, make_config
from recgoat_jax.data import synthetic
from recgoat_jax.graphs import mm_adj
from recgoat_jax.graphs.bipartite import dense_adjacency, edge_list
from recgoat_jax.model.base import Shapes
from recgoat_jax.model.edge_pruning import prune_adjacency, sample_keep
from recgoat_jax.model.freedom import FREEDOM
from recgoat_jax.model.registry import build_model

from graph_helpers import exact_cosine_features, small_graph

CONFIGS = Path(__file__).resolve().parents[1] / "recgoat_jax" / "configs"


def _dense(csr, n_rows, n_cols):
    data, indices, indptr = (np.asarray(a) for a in csr)
    out = np.zeros((n_rows, n_cols), np.float64)
    for r in range(n_rows):
        for j in range(indptr[r], indptr[r + 1]):
            out[r, indices[j]] += data[j]
    return out


def _ref_knn(feats, k):
    """Dense reference of one modality's graph: cosine top-k per row including self,
    ties by (score desc, index asc), value 1/(k + 1e-7) (every row has k edges)."""
    x = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    s = x @ x.T
    n = len(x)
    a = np.zeros((n, n))
    for i in range(n):
        order = np.lexsort((np.arange(n), -s[i]))
        a[i, order[:k]] = 1.0 / (k + 1e-7)
    return a


def _build(feats, k, w=0.1, block=2048):
    nb = {m: mm_adj.knn_neighbours(f, k, block) for m, f in feats.items()}
    n = next(iter(feats.values())).shape[0]
    return mm_adj.mm_adjacency(nb, n, w), n


# ----------------------------------------------------------------------------- (1) mm_adj


def test_mm_adj_hand_case():
    # text: {0, 1} and {2, 3} are each other's nearest; image: 0 ~ 2, 1 == 3 (cosine 1).
    text = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    image = np.array([[1, 0], [0, 1], [1, 0.2], [0, 2]], np.float32)
    adj, n = _build({"text": text, "image": image}, k=2, w=0.1)
    got = _dense(adj["fwd"], n, n)
    h = 1 / (2 + 1e-7)  # MMRec: (k + 1e-7)^-1/2 * (k + 1e-7)^-1/2
    t = np.zeros((4, 4))
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3)]:
        t[i, j] = h
    im = np.zeros((4, 4))
    for i, j in [(0, 0), (0, 2), (1, 1), (1, 3), (2, 2), (2, 0), (3, 1), (3, 3)]:
        im[i, j] = h
    np.testing.assert_allclose(got, 0.1 * im + 0.9 * t, rtol=1e-6)
    assert got[0, 0] == pytest.approx(0.5, rel=1e-6)  # self included, both modalities
    assert got[0, 1] == pytest.approx(0.45, rel=1e-6) and got[0, 2] == pytest.approx(0.05, rel=1e-6)
    np.testing.assert_allclose(_dense(adj["bwd"], n, n), got.T, rtol=1e-6)
    # a single modality gets weight 1
    solo, _ = _build({"text": text}, k=2)
    np.testing.assert_allclose(_dense(solo["fwd"], n, n), t, rtol=1e-6)


def _boundary_ties(feats, k):
    """Rows whose k-th and (k+1)-th cosines (self included, float64) are equal."""
    x = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    s = -np.sort(-(x @ x.T), axis=1)
    return int(np.sum(s[:, k - 1] == s[:, k]))


@pytest.mark.parametrize("block", [1, 5, 2048])
def test_mm_adj_equals_dense_reference_with_ties(block):
    # integer features with power-of-two row norms (graph_helpers): every cosine is exact
    # in float32, so two equal cosines are equal for every BLAS kernel on every CPU (with
    # random float rows, image[4] = 2 * image[9] gave a "tie" that one CPU's kernel
    # rounded apart at block 1). Lower index wins.
    text = exact_cosine_features(13, 6, seed=0)
    image = exact_cosine_features(13, 5, seed=1)
    text[7] = text[2]  # exact duplicates: cosine ties (row 7 keeps 2 first)
    image[4] = 3 * image[9]  # a rescaled copy: the same unit row
    assert _boundary_ties(text, 3) > 0 and _boundary_ties(image, 3) > 0  # the rule decides
    adj, n = _build({"text": text, "image": image}, k=3, w=0.3, block=block)
    ref = 0.3 * _ref_knn(image.astype(np.float64), 3) + 0.7 * _ref_knn(text.astype(np.float64), 3)
    np.testing.assert_allclose(_dense(adj["fwd"], n, n), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("block", [1, 5, 2048])
def test_mm_adj_equals_dense_reference_random(block):
    # generic float rows: no two cosines of a row within 1e-4 of each other at the k-th
    # place, so float32 rounding of any kernel picks the reference's neighbours
    rng = np.random.default_rng(0)
    text = rng.normal(size=(13, 4)).astype(np.float32)
    image = rng.normal(size=(13, 3)).astype(np.float32)
    for f in (text, image):
        x = f.astype(np.float64) / np.linalg.norm(f.astype(np.float64), axis=1, keepdims=True)
        s = -np.sort(-(x @ x.T), axis=1)
        assert np.min(s[:, 2] - s[:, 3]) > 1e-4
    adj, n = _build({"text": text, "image": image}, k=3, w=0.3, block=block)
    ref = 0.3 * _ref_knn(image.astype(np.float64), 3) + 0.7 * _ref_knn(text.astype(np.float64), 3)
    np.testing.assert_allclose(_dense(adj["fwd"], n, n), ref, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- (2) forward


def _setup(seed=0, dim=4, n_ui_layers=2, mm_layers=1, dropout=0.8, mm_bpr_weight=1e-3):
    train, adj = small_graph(seed)
    rng = np.random.default_rng(seed)
    feats = {"image": rng.normal(size=(9, 5)).astype(np.float32),
             "text": rng.normal(size=(9, 3)).astype(np.float32)}
    mm, _ = _build(feats, k=3, w=0.1)
    inputs = {"adjacency": adj, "mm_adj": {k: tuple(map(jnp.asarray, v)) for k, v in mm.items()},
              "item_features": {m: jnp.asarray(f) for m, f in feats.items()},
              "ui_edge_list": {k: jnp.asarray(v) for k, v in edge_list(train, 12, 9).items()}}
    model = FREEDOM(12, 9, (("image", 5), ("text", 3)), dim, n_ui_layers, mm_layers, dropout,
                    mm_bpr_weight)
    params = model.init(jax.random.PRNGKey(seed), inputs)
    return model, params, inputs, train, feats


def _np_forward(params, a_hat, mm, n_ui_layers, mm_layers):
    """MMRec forward: h = mm^L_mm item_id; mean of LightGCN layers 0..L_ui; items + h."""
    p = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params)
    h = p["item"]
    for _ in range(mm_layers):
        h = mm @ h
    e = np.concatenate([p["user"], p["item"]])
    layers = [e]
    for _ in range(n_ui_layers):
        layers.append(a_hat @ layers[-1])
    out = np.mean(layers, axis=0)
    return out[:12], out[12:] + h


@pytest.mark.slow  # FREEDOM's forward compiled for two layer counts: ~3 s on a cold cache
@pytest.mark.parametrize("n_ui_layers,mm_layers", [(2, 1), (1, 2)])
def test_forward_equals_dense_reference(n_ui_layers, mm_layers):
    model, params, inputs, train, _ = _setup(n_ui_layers=n_ui_layers, mm_layers=mm_layers)
    mm = _dense(inputs["mm_adj"]["fwd"], 9, 9)
    ref_u, ref_i = _np_forward(params, dense_adjacency(train, 12, 9), mm, n_ui_layers, mm_layers)
    users, items = model.embed(params, inputs)
    np.testing.assert_allclose(users, ref_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items, ref_i, rtol=1e-5, atol=1e-6)
    # initial state: features copied, torch Linear bounds, Xavier tables
    np.testing.assert_array_equal(params["feat"]["image"], inputs["item_features"]["image"])
    assert float(jnp.max(jnp.abs(params["proj"]["image"]["w"]))) <= 1 / math.sqrt(5)
    assert params["proj"]["text"]["w"].shape == (3, 4) and params["proj"]["text"]["b"].shape == (4,)


@pytest.mark.slow  # two FREEDOM gradient compiles: ~1.5-4 s
def test_gradient_through_mm_graph_equals_dense():
    model, params, inputs, train, _ = _setup(seed=1)
    a = jnp.asarray(dense_adjacency(train, 12, 9), jnp.float32)
    mm = jnp.asarray(_dense(inputs["mm_adj"]["fwd"], 9, 9), jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(5), (21, 4))

    def f_sparse(p):
        u, i = model.embed(p, inputs)
        return jnp.sum(jnp.concatenate([u, i]) * w)

    def f_dense(p):
        e = jnp.concatenate([p["user"], p["item"]])
        out = (e + a @ e + a @ (a @ e)) / 3
        return jnp.sum(jnp.concatenate([out[:12], out[12:] + mm @ p["item"]]) * w)

    gs, gd = jax.grad(f_sparse)(params), jax.grad(f_dense)(params)
    np.testing.assert_allclose(gs["user"], gd["user"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gs["item"], gd["item"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- (3) pruning


def test_pruning_renormalises_over_kept_edges():
    model, params, inputs, train, _ = _setup()
    edges = inputs["ui_edge_list"]
    users, items = np.asarray(edges["users"]), np.asarray(edges["items"])
    e = users.size
    keep = np.zeros(e, bool)
    keep[np.random.default_rng(3).choice(e, e // 3, replace=False)] = True
    out = prune_adjacency(inputs["adjacency"], edges, jnp.asarray(keep), 12, 9)
    # numpy: MMRec _normalize_adj_m on the kept edges only
    du = np.bincount(users[keep], minlength=12) + 1e-7
    di = np.bincount(items[keep], minlength=9) + 1e-7
    ref = np.zeros((12, 9))
    ref[users[keep], items[keep]] = 1 / np.sqrt(du[users[keep]] * di[items[keep]])
    np.testing.assert_allclose(_dense(out["ui"], 12, 9), ref, rtol=1e-6)
    np.testing.assert_allclose(_dense(out["iu"], 9, 12), ref.T, rtol=1e-6)
    for k in ("ui", "iu"):  # structure untouched: static shapes
        assert out[k][1] is inputs["adjacency"][k][1] and out[k][2] is inputs["adjacency"][k][2]
    # the full weights are the full adjacency's values in "ui" order
    np.testing.assert_allclose(edges["weight"], inputs["adjacency"]["ui"][0], rtol=1e-6)


@pytest.mark.parametrize("dropout", [0.8, 0.5])
def test_pre_epoch_keeps_int_e_times_one_minus_p(dropout):
    model, params, inputs, train, _ = _setup(dropout=dropout)
    e = int(inputs["ui_edge_list"]["users"].shape[0])
    out = jax.jit(model.pre_epoch)(inputs, jax.random.PRNGKey(0))
    assert int(np.count_nonzero(np.asarray(out["adjacency"]["ui"][0]))) == int(e * (1 - dropout))
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(out["mm_adj"]), leaves(inputs["mm_adj"])):
        np.testing.assert_array_equal(a, b)  # only the user-item graph is pruned
    other = jax.jit(model.pre_epoch)(inputs, jax.random.PRNGKey(1))
    assert not np.array_equal(out["adjacency"]["ui"][0], other["adjacency"]["ui"][0])
    # dropout 0: the full graph
    full = FREEDOM(12, 9, model.feature_dims, dropout=0.0).pre_epoch(inputs, jax.random.PRNGKey(0))
    assert full["adjacency"] is inputs["adjacency"]


def _inclusion_probabilities(w, k):
    """Exact P(edge in sample) of sequential sampling without replacement proportional to
    w (torch.multinomial, replacement=False), by enumerating ordered draws."""
    w = np.asarray(w, np.float64)
    p = np.zeros(len(w))
    for seq in itertools.permutations(range(len(w)), k):
        left, prob = w.sum(), 1.0
        for j in seq:
            prob *= w[j] / left
            left -= w[j]
        p[list(seq)] += prob
    return p


def test_keep_frequency_follows_degree_weights():
    w = jnp.asarray([0.05, 0.1, 0.2, 0.4, 0.8, 1.6], jnp.float32)
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(123), n)
    kept = np.asarray(jax.jit(jax.vmap(lambda k: sample_keep(k, w, 2)))(keys))
    assert (kept.sum(1) == 2).all()
    freq = kept.mean(0)
    exact = _inclusion_probabilities(np.asarray(w), 2)
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(freq - exact) < 6 * se + 1e-3), (freq, exact)
    assert np.all(np.diff(freq) > 0)  # heavier edges (low-degree endpoints) kept more often


# ----------------------------------------------------------------------------- (4) loss


@pytest.mark.slow
def test_loss_equals_numpy():
    model, params, inputs, train, _ = _setup(seed=2, mm_bpr_weight=0.3)
    params = jax.tree_util.tree_map(lambda x: x * 3.0, params)  # larger scores: a real test
    batch = Batch(users=jnp.array([0, 3, 7, 11]), pos=jnp.array([1, 4, 0, 8]),
                  neg=jnp.array([2, 2, 5, 6]), weight=jnp.array([1.0, 1.0, 1.0, 0.0]))
    loss, aux = model.loss(params, inputs, batch, jax.random.PRNGKey(0))
    u_all, i_all = _np_forward(params, dense_adjacency(train, 12, 9),
                               _dense(inputs["mm_adj"]["fwd"], 9, 9), 2, 1)
    u, p, n = (np.asarray(a)[:3] for a in (batch.users, batch.pos, batch.neg))  # padding row out

    def bpr(eu, ep, en):
        return np.mean(np.log1p(np.exp(-(np.sum(eu * ep, 1) - np.sum(eu * en, 1)))))

    main = bpr(u_all[u], i_all[p], i_all[n])
    mm = 0.0
    for m in ("image", "text"):
        f = np.asarray(params["feat"][m], np.float64)
        lin = params["proj"][m]
        proj = f @ np.asarray(lin["w"], np.float64) + np.asarray(lin["b"], np.float64)
        mm += bpr(u_all[u], proj[p], proj[n])
    np.testing.assert_allclose(aux["bpr"], main, rtol=1e-5)
    np.testing.assert_allclose(aux["mm_bpr"], mm, rtol=1e-5)
    np.testing.assert_allclose(loss, main + 0.3 * mm, rtol=1e-5)
    # gradients reach the trainable feature copies and the projections
    g = jax.grad(lambda q: model.loss(q, inputs, batch, None)[0])(params)
    assert float(jnp.abs(g["feat"]["text"]).sum()) > 0
    assert float(jnp.abs(g["proj"]["image"]["w"]).sum()) > 0


# ----------------------------------------------------------------------------- (5) train


@pytest.mark.slow
def test_train_end_to_end(tmp_path):
    from recgoat_jax.train.loop import train
    from recgoat_jax.train.trainer import Trainer

    ds = synthetic.generate(n_users=150, n_items=90, n_interactions=1800,
                            feature_dims={"text": 16, "image": 24}, seed=0, name="tiny")
    cfg = make_config(CONFIGS / "freedom.yaml", [  # pruning 0.8 (MMRec's; freedom.yaml: 0.5)
        "model.dim=16", "model.freedom_dropout=0.8", "train.epochs=2", "train.batch_size=256",
        "train.lr=0.01", "eval.ks=[5,10,20]", "run.checkpoint=false", f"data.root={tmp_path}"])
    res = train(cfg, run_dir=tmp_path / "run", dataset=ds, progress=False, log=lambda s: None)
    assert res["model"] == "freedom" and res["epochs_run"] == 2
    assert all(math.isfinite(v) for v in res["test"].values()) and res["test"]["recall@20"] > 0
    # the epoch hook: pruned training graph per epoch, full graph kept for evaluation
    tr = Trainer(cfg, dataset=ds)
    a, b = tr.epoch_inputs(0), tr.epoch_inputs(1)
    e = tr.inputs["ui_edge_list"]["users"].shape[0]
    assert int(np.count_nonzero(np.asarray(a["adjacency"]["ui"][0]))) == int(e * 0.2)
    assert not np.array_equal(a["adjacency"]["ui"][0], b["adjacency"]["ui"][0])
    np.testing.assert_array_equal(a["adjacency"]["ui"][0], tr.epoch_inputs(0)["adjacency"]["ui"][0])
    assert np.count_nonzero(np.asarray(tr.inputs["adjacency"]["ui"][0])) == e
    # models without the hook get trainer.inputs itself
    lg = Trainer(make_config(overrides=["model.dim=8", "eval.ks=[5,10,20]"]), dataset=ds)
    assert lg.epoch_inputs(3) is lg.inputs


# ----------------------------------------------------------------------------- (6) config


@pytest.mark.parametrize("override,key", [("model.freedom_dropout=1.0", "model.freedom_dropout"),
                                          ("model.freedom_dropout=-0.1", "model.freedom_dropout"),
                                          ("model.mm_image_weight=1.5", "model.mm_image_weight"),
                                          ("model.mm_layers=-1", "model.mm_layers")])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        make_config(overrides=["model.name=freedom", override])


def test_shipped_freedom_configs():
    # MMRec's values on the Amazon sets; freedom.yaml (any other dataset) differs only in
    # lr 5e-3 and dropout 0.5, chosen on the real development sets' valid splits
    for name in ("freedom_baby", "freedom_sports", "freedom_clothing"):
        cfg = make_config(CONFIGS / f"{name}.yaml")
        m, t = cfg.model, cfg.train
        assert (m.name, m.dim, m.n_layers, m.mm_layers, m.knn.k, m.mm_image_weight,
                m.freedom_dropout, m.init) == ("freedom", 64, 2, 1, 10, 0.1, 0.8, "xavier")
        assert (t.lr, t.batch_size, t.seed, t.epochs, t.patience, m.mm_bpr_weight) == \
            (1e-3, 2048, 999, 1000, 20, 1e-4)
        # and the model built from it carries them (config -> model wiring)
        model = build_model(cfg, Shapes(n_users=5, n_items=7,
                                        item_feature_dims={"image": 3, "text": 4}))
        assert isinstance(model, FREEDOM)
        assert (model.dim, model.n_ui_layers, model.mm_layers, model.dropout,
                model.mm_bpr_weight, model.init_name) == (m.dim, m.n_layers, m.mm_layers,
                                                          m.freedom_dropout, m.mm_bpr_weight,
                                                          m.init)
        assert model.feature_dims == (("image", 3), ("text", 4))
    general = make_config(CONFIGS / "freedom.yaml")
    assert dataclasses.replace(general.model, freedom_dropout=0.8) == cfg.model
    assert dataclasses.replace(general.train, lr=1e-3) == cfg.train
