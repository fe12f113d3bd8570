"""synthetic.py and the demo path of load.py: determinism, 5-core, splits, features."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from recgoat_jax.config import DataConfig
from recgoat_jax.data import load, preprocess, synthetic, synthetic_features
from recgoat_jax.data.formats import read_dataset

SMALL = dict(n_users=400, n_items=250, n_interactions=5000,
             feature_dims={"text": 48, "image": 96}, seed=1)


def _pairs(ds):
    out = []
    for k, s in enumerate(("train", "valid", "test")):
        u, i = ds.split(s).to_pairs()
        out.append(np.stack([u, i, np.full(len(u), k)], axis=1))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def small():
    return synthetic.generate_with_factors(**SMALL, user_feature_dim=24)


def _same(a, b):
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.split(s).indptr, b.split(s).indptr)
        np.testing.assert_array_equal(a.split(s).indices, b.split(s).indices)
    assert sorted(a.item_features) == sorted(b.item_features)
    for m in a.item_features:
        np.testing.assert_array_equal(a.item_features[m], b.item_features[m])
    if a.user_features is None:
        assert b.user_features is None
    else:
        np.testing.assert_array_equal(a.user_features, b.user_features)


def test_deterministic_per_seed(small):
    ds, factors = small
    again, factors2 = synthetic.generate_with_factors(**SMALL, user_feature_dim=24)
    _same(ds, again)
    np.testing.assert_array_equal(factors, factors2)
    other = synthetic.generate(**{**SMALL, "seed": 2})
    assert not np.array_equal(_pairs(other)[:200], _pairs(ds)[:200])
    assert not np.allclose(other.item_features["text"][:10], ds.item_features["text"][:10])


def test_size_near_targets_and_five_core(small):
    ds, _ = small
    p = _pairs(ds)
    n_u, n_i, n_x = SMALL["n_users"], SMALL["n_items"], SMALL["n_interactions"]
    assert abs(ds.n_users / n_u - 1) < 0.05 and abs(ds.n_items / n_i - 1) < 0.05
    assert abs(len(p) / n_x - 1) < 0.05
    user_deg = np.bincount(p[:, 0], minlength=ds.n_users)
    item_deg = np.bincount(p[:, 1], minlength=ds.n_items)
    assert user_deg.min() >= 5 and item_deg.min() >= 5  # 5-core; ids contiguous
    # long tail: many sparse items, a few very popular ones
    med = np.median(item_deg)
    assert (item_deg <= med / 2).mean() > 0.1 and item_deg.max() > 4 * med


def test_split_invariants(small):
    ds, _ = small
    p = _pairs(ds)
    for s in ("train", "valid", "test"):
        assert ds.split(s).row_lengths().min() >= 1  # every user in every split
    key = p[:, 0].astype(np.int64) * ds.n_items + p[:, 1]
    assert len(np.unique(key)) == len(key)  # disjoint splits, no duplicates
    n = np.bincount(p[:, 0])
    ten = np.maximum(1, np.floor(0.1 * n + 0.5))
    np.testing.assert_array_equal(ds.valid.row_lengths(), ten)
    np.testing.assert_array_equal(ds.test.row_lengths(), ten)


def test_split_per_user_is_a_partition():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(6), [3, 5, 9, 10, 20, 31])
    rng.shuffle(users)
    codes = preprocess.split_per_user(users, 6, np.random.default_rng(1))
    assert len(codes) == len(users)  # every row in exactly one split
    counts = np.stack([np.bincount(users[codes == k], minlength=6) for k in range(3)])
    np.testing.assert_array_equal(counts[1], [1, 1, 1, 1, 2, 3])
    np.testing.assert_array_equal(counts[2], [1, 1, 1, 1, 2, 3])
    np.testing.assert_array_equal(counts.sum(0), [3, 5, 9, 10, 20, 31])


def test_k_core_is_iterative():
    # item 9 has one row: dropping it leaves user 5 with 4 rows, so user 5 goes too
    users = np.array([0] * 5 + [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5 + [5] * 5)
    items = np.array([0, 1, 2, 3, 4] * 5 + [0, 1, 2, 3, 9])
    keep = preprocess.k_core(users, items, 5)
    assert keep[:25].all() and not keep[25:].any()  # item 9 (1 row) -> user 5 -> gone


def test_feature_shapes_and_dtypes(small):
    ds, _ = small
    assert ds.item_features["text"].shape == (ds.n_items, 48)
    assert ds.item_features["image"].shape == (ds.n_items, 96)
    assert ds.user_features.shape == (ds.n_users, 24)
    for x in [*ds.item_features.values(), ds.user_features]:
        assert x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(ds.item_features["text"], axis=1), 1, rtol=1e-5)
    assert ds.item_features["image"].min() >= 0  # relu, like CNN features


def _centered_cos(x):
    x = x - x.mean(0)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def test_features_carry_signal(small):
    ds, factors = small
    n = ds.n_items
    rng = np.random.default_rng(0)
    d = ((factors[:, None, :] - factors[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(1)
    rand = rng.integers(0, n, n)
    # item-item co-occurrence (train): items bought together
    u, i = ds.train.to_pairs()
    m = np.zeros((ds.n_users, n))
    m[u, i] = 1
    co = m.T @ m
    np.fill_diagonal(co, -1)
    top_co = co.argmax(1)
    # measured (seed 1): text .49 / .00 / .17, image (96-d, noisier) .049 / -.004
    for mod, margin_near, margin_co in (("text", 0.3, 0.08), ("image", 0.025, None)):
        cos = _centered_cos(np.asarray(ds.item_features[mod], np.float64))
        near_cos = cos[np.arange(n), nearest].mean()
        rand_cos = cos[np.arange(n), rand].mean()
        assert near_cos > rand_cos + margin_near, (mod, near_cos, rand_cos)
        if margin_co is not None:
            co_cos = cos[np.arange(n), top_co].mean()
            assert co_cos > rand_cos + margin_co, (mod, co_cos, rand_cos)
    # text is the cleaner view, as in the real data
    t, im = (_centered_cos(np.asarray(ds.item_features[k], np.float64)) for k in ("text", "image"))
    assert t[np.arange(n), nearest].mean() > im[np.arange(n), nearest].mean()


def test_content_factors_hand_computed():
    # cluster 0: items 0, 2 (centre (1, 2)); cluster 2: item 1 (its own centre); no cluster 1
    f = np.array([[0.0, 2.0], [5.0, 5.0], [2.0, 2.0]])
    got = synthetic_features.content_factors(f, np.array([0, 2, 0]), spread=0.5)
    np.testing.assert_allclose(got, [[0.5, 2.0], [5.0, 5.0], [1.5, 2.0]])


def _purity(x, cluster, k=10):
    x = x - x.mean(0)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1)[:, :k]
    return (cluster[nn] == cluster[:, None]).mean()


def test_content_reveals_the_cluster():
    # the features say which cluster an item is in (what drives the interactions) better
    # than the item factors do; text better than image (96-d here, noisier). Measured
    # (seed 1): factors 0.80, text 1.00, image 0.46, chance 0.17.
    ds, t = synthetic.generate_with_truth(**SMALL)
    cl = t["cluster"]
    chance = np.mean([(cl == c).mean() for c in cl])
    pf, pt, pi = (_purity(np.asarray(x, np.float64), cl)
                  for x in (t["item_f"], ds.item_features["text"], ds.item_features["image"]))
    assert pt > pf + 0.1 and pt > pi and pi > chance + 0.15, (pf, pt, pi, chance)


@pytest.mark.parametrize("profile", ["taste", "history"])
def test_user_profiles_against_a_slow_loop(profile):
    # what each user profile is a view of, recomputed user by user from the hidden state
    ds, t = synthetic.generate_with_truth(**SMALL, user_feature_dim=24, user_profile=profile)
    f, cl = t["item_f"], t["cluster"]
    centre = {c: f[cl == c].mean(0) for c in np.unique(cl)}
    prof = np.zeros((ds.n_users, f.shape[1]))
    for u in range(ds.n_users):
        if profile == "taste":  # favourite clusters' centres, weighted (no items: 0)
            for c, w in zip(t["favs"][u], t["w"][u]):
                prof[u] += w * centre.get(c, 0.0)
        else:  # mean content factor of the user's train items
            items = ds.train.row(u)
            prof[u] = np.mean([centre[cl[i]] + 0.3 * (f[i] - centre[cl[i]]) for i in items], 0)
    want = synthetic_features.nonlinear_view(prof, 24, np.random.default_rng([SMALL["seed"], 2]), 0.3,
                                    "text")
    np.testing.assert_allclose(ds.user_features, want, atol=1e-5)
    assert ds.report["user_profile"] == profile


def test_unknown_user_profile_is_an_error():
    with pytest.raises(ValueError, match="user_profile: expected one of taste, history"):
        synthetic.generate(**SMALL, user_feature_dim=4, user_profile="reviews")


def test_write_mmrec_round_trip_and_cli(tmp_path, capsys):
    out = tmp_path / "synth"
    rc = synthetic.main(["--out", str(out), "--name", "s", "--users", "300", "--items", "200",
                         "--interactions", "4000", "--feature-dims", "text=16,image=32",
                         "--seed", "3"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().err
    header = (out / "s.inter").read_text().splitlines()[0]
    assert header == "userID\titemID\trating\ttimestamp\tx_label"
    back = read_dataset(out)
    ref = synthetic.generate(300, 200, 4000, {"text": 16, "image": 32}, 3, name="s")
    assert back.name == "synth" and (back.n_users, back.n_items) == (ref.n_users, ref.n_items)
    _same(back, ref)
    assert back.report["duplicates"] == 0 and back.report["dropped_users_no_train"] == 0


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        synthetic.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--shape", "--feature-dims", "--seed", "--user-profile", "electronics"):
        assert flag in text


def test_shapes_match_protocol():
    assert synthetic.SHAPES["baby"] == (19_445, 7_050, 160_792)
    assert synthetic.SHAPES["electronics"] == (192_403, 63_001, 1_689_188)


# ----------------------------------------------------------------------------- demo via load


@pytest.fixture
def tiny_demo(monkeypatch):
    params = dict(n_users=200, n_items=150, n_interactions=2500, feature_dims={"text": 8},
                  user_feature_dim=4, seed=5, name="demo")
    monkeypatch.setattr(synthetic, "DEMO_PARAMS", params)
    return params


def test_demo_generated_once_then_reused(tmp_path, tiny_demo, caplog):
    caplog.set_level(logging.INFO, logger="recgoat_jax")
    cfg = DataConfig(dataset="demo", root=str(tmp_path))
    ds = load.load_dataset(cfg)
    assert "generating the built-in demo" in caplog.text
    assert ds.name == "demo" and ds.report["layout"] == "mmrec"
    _same(ds, synthetic.demo())  # the files hold exactly the generated dataset
    inter = tmp_path / "demo" / "demo.inter"
    mtime = inter.stat().st_mtime_ns
    caplog.clear()
    again = load.load_dataset(cfg)
    assert inter.stat().st_mtime_ns == mtime and "generating" not in caplog.text
    _same(ds, again)
    assert not [p for p in tmp_path.iterdir() if p.name != "demo"]  # no temp dirs left
    text_only = load.load_dataset(DataConfig(root=str(tmp_path), modalities=("text",),
                                             user_features=False))
    assert list(text_only.item_features) == ["text"] and text_only.user_features is None


def test_stale_demo_is_rebuilt_foreign_left_alone(tmp_path, tiny_demo, capsys):
    d = load.ensure_demo(tmp_path)
    meta = json.loads((d / "demo.json").read_text())
    meta["generator_version"] = -1
    (d / "demo.json").write_text(json.dumps(meta))
    load.ensure_demo(tmp_path)
    assert json.loads((d / "demo.json").read_text())["generator_version"] >= 0
    (d / "image_feat.npy").write_bytes(b"")  # extra junk is fine; missing files are not
    (d / "text_feat.npy").unlink()
    load.ensure_demo(tmp_path)
    assert (d / "text_feat.npy").is_file() and not (d / "image_feat.npy").exists()
    foreign = tmp_path / "other"
    (foreign / "demo").mkdir(parents=True)
    (foreign / "demo" / "note.txt").write_text("mine")
    assert load.ensure_demo(foreign) == foreign / "demo"
    assert [p.name for p in (foreign / "demo").iterdir()] == ["note.txt"]


def test_real_demo_size():
    ds = synthetic.demo()
    nnz = ds.train.nnz + ds.valid.nnz + ds.test.nnz
    assert 2_900 <= ds.n_users <= 3_100 and 1_400 <= ds.n_items <= 1_600
    assert 40_000 <= nnz <= 50_000
    assert ds.item_features["image"].shape == (ds.n_items, 4096)
