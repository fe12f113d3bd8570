"""RecGOAT's loss terms one by one (model/recgoat_loss.py), hand-computed, and how
`recgoat.loss_terms` picks them from the config; the evaluation-time diagnostics."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recgoat_jax.batch import Batch
from recgoat_jax import losses
from recgoat_jax.config import make_config
from recgoat_jax.model import recgoat_loss as RL
from recgoat_jax.model.recgoat import NetOutput, loss_terms

TAU = 0.2


def _out(e_u, z_items, z=None, e_i=None, zhat=None, user_ego=None, item_ego=None, diag=None):
    f = lambda a: None if a is None else jnp.asarray(a, jnp.float32)
    return NetOutput(e_u=f(e_u), z_items=f(z_items), e_i=f(e_i if e_i is not None else z_items),
                     z={m: f(v) for m, v in (z or {}).items()},
                     zhat={m: f(v) for m, v in (zhat or {}).items()}, z_user=None,
                     user_ego=f(user_ego), item_ego=f(item_ego), diag=diag or {})


def _batch(users, pos, neg, weight=None):
    weight = np.ones(len(users), np.float32) if weight is None else weight
    return Batch(users=jnp.asarray(users, jnp.int32), pos=jnp.asarray(pos, jnp.int32),
                 neg=jnp.asarray(neg, jnp.int32), weight=jnp.asarray(weight, jnp.float32))


def _rows(out, batch):
    return RL.batch_rows(out, batch)


def _np_info_nce(a, b, tau, w):
    """Independent NumPy InfoNCE: unit rows, in-batch negatives, padded rows masked."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = a @ b.T / tau
    logits = np.where(w[None, :] > 0, logits, -1e9)
    m = logits.max(1, keepdims=True)
    logp = np.diag(logits) - (m[:, 0] + np.log(np.exp(logits - m).sum(1)))
    return float(np.sum(-logp * w) / max(np.sum(w), 1.0))


@pytest.mark.parametrize("batch,rows,expect", [(2048, 512, 512), (2048, 0, 2048),
                                                (100, 512, 100), (10, -1, 10), (7, 7, 7)])
def test_cl_rows(batch, rows, expect):
    assert RL.cl_rows(batch, rows) == expect


# One-hot rows: e_u[users] = z_items[pos] = z_m[pos] = unit vectors e_0, e_1, e_2.
# On c aligned one-hot rows InfoNCE = log(1 + (c - 1) exp(-1/tau)) (diagonal logit 1/tau,
# the c - 1 others 0), so the number of rows used shows in the value.
EYE = np.eye(3, dtype=np.float32)


def _aligned(c):
    return math.log(1.0 + (c - 1) * math.exp(-1.0 / TAU))


@pytest.mark.parametrize("rows,c", [(2, 2), (0, 3), (5, 3)])
def test_cmcl_paper_term_hand_case(rows, c):
    out = _out(e_u=EYE, z_items=EYE, z={"text": EYE, "image": EYE})
    batch = _batch([0, 1, 2], [0, 1, 2], [1, 2, 0])
    term = RL.cmcl_paper_term(out, _rows(out, batch), batch, modalities=("image", "text"),
                              tau=TAU, w=0.5, n_rows=rows)
    # (1 - w) L_ui + w mean_m L_m, every InfoNCE on aligned one-hot rows
    assert float(term) == pytest.approx(_aligned(c), rel=1e-5)


@pytest.mark.slow  # ~1.2-6 s: compiles the paper CMCL term and its grad
def test_cmcl_paper_term_random_against_numpy():
    rng = np.random.default_rng(0)
    b, d, w_cl = 6, 4, 0.3
    e_u, z_items, zt, zi = (rng.normal(size=(8, d)).astype(np.float32) for _ in range(4))
    users, pos, neg = rng.integers(0, 8, b), rng.permutation(8)[:b], rng.integers(0, 8, b)
    wt = np.array([1, 1, 1, 0, 1, 1], np.float32)
    out = _out(e_u=e_u, z_items=z_items, z={"text": zt, "image": zi})
    batch = _batch(users, pos, neg, wt)
    got = float(RL.cmcl_paper_term(out, _rows(out, batch), batch, modalities=("image", "text"),
                                   tau=TAU, w=w_cl, n_rows=4))
    c = slice(0, 4)
    p, wc = pos[c], wt[c]
    l_ui = _np_info_nce(e_u[users[c]], z_items[p], TAU, wc)
    l_m = (_np_info_nce(zi[p], z_items[p], TAU, wc) + _np_info_nce(zt[p], z_items[p], TAU, wc)) / 2
    assert got == pytest.approx((1 - w_cl) * l_ui + w_cl * l_m, rel=1e-5)


@pytest.mark.parametrize("mods", [("image", "text"), ("text",)])
def test_cmcl_reference_term_hand_case(mods):
    # every view (ID e_i, modality z_m) of the positive and of the negative items is the same
    # one-hot set, so each present pair's InfoNCE is L and the modality part is 1 - L.
    out = _out(e_u=EYE, z_items=EYE, e_i=EYE, z={m: EYE for m in mods})
    batch = _batch([0, 1, 2], [0, 1, 2], [1, 2, 0])
    term = RL.cmcl_reference_term(out, _rows(out, batch), batch, modalities=mods, tau=TAU,
                                  w=0.25, n_rows=2)
    # negatives [1, 2] are a permutation of one-hot rows: aligned views again
    big_l = _aligned(2)
    assert float(term) == pytest.approx(0.75 * big_l + 0.25 * (1.0 - big_l), rel=1e-5)


def test_cmcl_reference_term_counts_pairs():
    # id and text aligned, image shifted (row i = e_{i+1}): all three pairs (id, image),
    # (id, text), (image, text), each on pos and neg, enter the mean of 1 - InfoNCE.
    other = np.roll(EYE, 1, axis=1)
    out = _out(e_u=EYE, z_items=EYE, e_i=EYE, z={"text": EYE, "image": other})
    batch = _batch([0, 1], [0, 1], [0, 1])
    got = float(RL.cmcl_reference_term(out, _rows(out, batch), batch,
                                       modalities=("image", "text"), tau=TAU, w=1.0, n_rows=0))
    wts = np.ones(2, np.float32)
    l_id_text = _np_info_nce(EYE[:2], EYE[:2], TAU, wts)
    l_id_img = _np_info_nce(EYE[:2], other[:2], TAU, wts)
    l_img_text = _np_info_nce(other[:2], EYE[:2], TAU, wts)
    mod = np.mean([1 - l_id_img, 1 - l_id_text, 1 - l_img_text] * 2)
    assert got == pytest.approx(mod, rel=1e-5)


@pytest.mark.slow  # ott-jax Sinkhorn divergence compile: ~2 s on a cold cache
def test_ot_term_single_point_is_squared_distance_of_unit_rows():
    # One row (n_items=1): the Sinkhorn divergence between two Dirac masses is the squared
    # distance of the L2-normalised points (the plan is the single coupling; the
    # self-terms vanish). Later rows must not count.
    e_i = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    zt = np.array([[0.0, 2.0], [5.0, 5.0], [1.0, 0.0]], np.float32)  # row 0 orthogonal to e_0
    zi = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)  # row 0 parallel to e_0
    out = _out(e_u=e_i, z_items=e_i, e_i=e_i, zhat={"text": zt, "image": zi})
    batch = _batch([0, 1, 2], [0, 1, 2], [1, 2, 0])
    term = functools.partial(RL.ot_term, modalities=("image", "text"), n_items=1, epsilon=0.05,
                             tau=1.0, iterations=10)

    def f(e, z_text):
        o = out.replace(e_i=e, zhat={"image": out.zhat["image"], "text": z_text})
        return term(o, _rows(o, batch), batch)

    # one compile: the value and both gradients
    got, (g_e, g_z) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(out.e_i, out.zhat["text"])
    assert float(got) == pytest.approx((0.0 + 2.0) / 2, abs=1e-3)  # image: 0, text: ||e0 - e1||^2
    assert float(jnp.max(jnp.abs(g_e))) == 0.0  # only the modality side moves
    assert float(jnp.max(jnp.abs(g_z[0]))) > 0 and float(jnp.max(jnp.abs(g_z[1:]))) == 0.0


def test_bpr_and_l2_terms_by_hand():
    e_u = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    z = np.array([[1.0, 1.0], [0.0, -1.0], [3.0, 0.0]], np.float32)
    out = _out(e_u=e_u, z_items=z, user_ego=e_u, item_ego=z)
    batch = _batch([0, 1, 0], [0, 0, 2], [1, 1, 1], np.array([1, 1, 0], np.float32))
    bpr = float(RL.bpr_term(out, _rows(out, batch), batch))
    assert bpr == pytest.approx(np.mean([np.log1p(np.exp(-1.0)), np.log1p(np.exp(-4.0))]),
                                rel=1e-6)
    # RecGOAT's squared form (docs/method.md): mean over real rows of ||u||^2 + ||p||^2 + ||n||^2
    reg = float(RL.l2_term(out, _rows(out, batch), batch))
    assert reg == pytest.approx(((1 + 2 + 1) + (4 + 2 + 1)) / 2, rel=1e-6)


def test_weighted_sum_composes_in_order():
    loss, aux = losses.weighted_sum([("a", 1.0, jnp.float32(2.0)), ("b", 0.5, jnp.float32(4.0)),
                                     ("c", 3.0, jnp.float32(-1.0))])
    assert float(loss) == 2.0 + 2.0 - 3.0
    assert {k: float(v) for k, v in aux.items()} == {"a": 2.0, "b": 4.0, "c": -1.0}


@pytest.mark.parametrize("sets,expect", [
    ([], {"bpr": 1.0, "reg": 1e-4}),
    (["model.loss.cl_weight=0.05", "model.loss.ot_weight=0.1"],
     {"bpr": 1.0, "reg": 1e-4, "cmcl": 0.05, "ot": 0.1}),
    (["model.loss.cl_weight=0.05", "model.cmcl=none", "model.loss.ot_weight=0.1",
      "model.oat=reference"],
     {"bpr": 1.0, "reg": 1e-4}),
    (["model.loss.cl_weight=0.2", "model.cmcl=reference", "model.loss.l2_weight=0.01"],
     {"bpr": 1.0, "reg": 0.01, "cmcl": 0.2}),
])
def test_loss_terms_follow_the_config(sets, expect):
    cfg = make_config(overrides=["model.name=recgoat", "model.loss.l2_weight=1e-4", *sets])
    terms = loss_terms(cfg, ("image", "text"))
    assert {n: w for n, w, _ in terms} == expect
    fns = {n: f for n, _, f in terms}
    if "cmcl" in fns:
        want = RL.CMCL_TERMS[cfg.model.cmcl]
        assert fns["cmcl"].func is want and fns["cmcl"].keywords["n_rows"] == cfg.model.loss.cl_rows
    if "ot" in fns:
        assert fns["ot"].keywords["n_items"] == cfg.model.ot.paper.batch_items
    assert "ot" not in {n for n, _, _ in loss_terms(cfg, ())}  # no modality, no OT term
    if "cmcl" in fns:  # rolled tiles unless the caller asks (cost analysis)
        assert fns["cmcl"].keywords["unroll_tiles"] is False
        unrolled = {n: f for n, _, f in loss_terms(cfg, ("image", "text"), unroll_tiles=True)}
        assert unrolled["cmcl"].keywords["unroll_tiles"] is True


def test_diagnostics_lemma_and_oat_passthrough():
    # z_text equals the fused vectors (lhs 0), z_image is orthogonal row by row (lhs sqrt 2)
    z = np.eye(4, dtype=np.float32)[:, :4]
    out = _out(e_u=z, z_items=z, z={"text": 2.0 * z, "image": np.roll(z, 1, axis=1)},
               diag={"oat/text/plan_mass": jnp.float32(1.0)})
    batch = _batch([0, 1, 2, 3], [0, 1, 2, 3], [1, 2, 3, 0])
    d = RL.diagnostics(out, batch, modalities=("image", "text"), tau=TAU, rows=3)
    assert set(d) == {"lemma/image/lhs", "lemma/image/rhs", "lemma/text/lhs", "lemma/text/rhs",
                      "oat/text/plan_mass"}
    assert float(d["lemma/text/lhs"]) == pytest.approx(0.0, abs=1e-6)
    assert float(d["lemma/image/lhs"]) == pytest.approx(math.sqrt(2.0), rel=1e-6)
    # rhs = sqrt(2 tau L + 2 tau log k) on k = 3 rows, L = the aligned InfoNCE on 3 rows
    assert float(d["lemma/text/rhs"]) == pytest.approx(
        math.sqrt(2 * TAU * _aligned(3) + 2 * TAU * math.log(3)), rel=1e-5)
