"""User profiles: train interactions only, two-step LLM prompts, resume, embeddings."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from recgoat_jax.errors import UserError
from recgoat_jax.features import cli
from recgoat_jax.features import profiles as pf
from recgoat_jax.features import text as tf

import feature_helpers
from feature_helpers import one_torch_thread  # noqa: F401 (autouse fixture)

# itemID -> (title, brand, category path); 10 and 11 occur ONLY in valid / test rows
ITEMS = {
    0: ("Organic cotton swaddle blanket", "Nestling", ["Baby", "Nursery", "Bedding"]),
    1: ("Muslin crib sheet", "Nestling", ["Baby", "Nursery", "Bedding"]),
    2: ("Fleece quilt", "Little Oak", ["Baby", "Nursery", "Bedding"]),
    3: ("Glass anti-colic bottle", "Tiny Steps", ["Baby", "Feeding", "Bottles"]),
    4: ("Silicone sippy cup", "Tiny Steps", ["Baby", "Feeding", "Bottles"]),
    5: ("Wooden rattle", "Little Oak", ["Baby", "Toys"]),
    6: ("Jogging stroller", "BabyBloom", ["Baby", "Strollers"]),
    7: ("Bamboo hooded towel", "BabyBloom", ["Baby", "Bathing"]),
    8: ("Non-slip bath tub", "", ["Baby", "Bathing"]),
    9: ("Musical activity cube", "Little Oak", ["Baby", "Toys"]),
    10: ("ZZVALIDONLY unicorn night lamp", "Secretbrand", ["Baby", "Lamps"]),
    11: ("ZZTESTONLY rocket helmet", "Hiddenco", ["Baby", "Helmets"]),
}
# (user, item, timestamp, x_label)
ROWS = [
    (0, 0, 100, 0), (0, 1, 300, 0), (0, 2, 200, 0), (0, 10, 400, 1), (0, 11, 500, 2),
    (1, 3, 100, 0), (1, 4, 110, 0), (1, 5, 120, 0), (1, 0, 130, 1), (1, 10, 140, 2),
    (2, 6, 100, 0), (2, 7, 100, 0), (2, 8, 90, 0), (2, 11, 80, 1), (2, 3, 70, 2),
    (3, 9, 10, 0), (3, 5, 20, 0), (3, 1, 30, 1), (3, 10, 40, 2),
    (4, 10, 10, 1), (4, 11, 20, 2),  # user 4 has no train row at all
]
SECRET = ("ZZ", "Secretbrand", "Hiddenco", "Lamps", "Helmets")


@pytest.fixture()
def ds(tmp_path):
    d = tmp_path / "mini"
    d.mkdir()
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    lines += [f"{u}\t{i}\t5.0\t{t}\t{x}" for u, i, t, x in ROWS]
    (d / "mini.inter").write_text("\n".join(lines) + "\n")
    (d / "i_id_mapping.csv").write_text(
        "asin\titemID\n" + "".join(f"ASIN{i:02d}\t{i}\n" for i in ITEMS))
    with open(d / "item_meta.jsonl", "w") as f:
        for i, (title, brand, path) in ITEMS.items():
            f.write(json.dumps({"itemID": i, "asin": f"ASIN{i:02d}", "title": title, "brand": brand,
                                "categories": [path], "description": f"about {title}",
                                "price": "$10", "image_url": ""}) + "\n")
    return d


def FakeEncoder():
    return feature_helpers.FakeEncoder(dim=6, fingerprint="fake-encoder")


class FakeLLM:
    """Records prompts; answers step 1 with a marker and step 2 with a fixed profile."""

    fingerprint = "fake-llm"

    def __init__(self):
        self.prompts: list[str] = []
        self.calls = 0

    def __call__(self, prompts):
        self.calls += 1
        self.prompts += list(prompts)
        return [f"ATTRS<{hashlib.md5(p.encode()).hexdigest()[:6]}>" if p.startswith(
            "You are analysing") else "Style & Aesthetics: calm. Other: brand loyal." for p in prompts]


def _train_titles(u: int) -> set[str]:
    return {ITEMS[i][0] for uu, i, _, x in ROWS if uu == u and x == 0}


def _not_train_titles(u: int) -> set[str]:
    return {ITEMS[i][0] for uu, i, _, x in ROWS if uu == u and x != 0}


def test_histories_use_train_rows_only_most_recent_first(ds):
    n_users, n_items, hist = pf.train_histories(ds / "mini.inter")
    assert (n_users, n_items) == (5, 12)
    assert hist[0] == [1, 2, 0] and hist[2] == [7, 6, 8] and hist[4] == []
    _, _, cut = pf.train_histories(ds / "mini.inter", max_history=2)
    assert cut[0] == [1, 2]


def test_template_profiles_never_see_valid_or_test(ds):
    enc = FakeEncoder()
    rep = pf.build_user_features(ds, kind="template", encoder=enc, progress=False)
    profs = [json.loads(x) for x in (ds / "user_profiles.jsonl").read_text().splitlines()]
    assert [p["userID"] for p in profs] == list(range(5))
    for u, p in enumerate(profs[:4]):
        assert p["profile"].startswith("template profile (not LLM-written).")
        assert all(s not in p["profile"] for s in SECRET)
        assert all(t in p["profile"] for t in _train_titles(u))
        assert not any(t in p["profile"] for t in _not_train_titles(u))
    assert "Brands: Nestling (2); Little Oak (1)." in profs[0]["profile"]
    assert "Baby > Nursery > Bedding (3)" in profs[0]["profile"]
    assert profs[4]["profile"] == "" and rep["users_without_profile"] == 1
    assert all(s not in t for t in enc.texts for s in SECRET)
    feat = np.load(ds / "user_feat.npy")
    assert feat.shape == (5, 6)
    np.testing.assert_allclose(feat[0], enc([profs[0]["profile"]])[0])
    mean = feat[:4].mean(0)
    np.testing.assert_allclose(feat[4], mean / np.linalg.norm(mean), atol=1e-6)
    # deterministic
    first = (ds / "user_profiles.jsonl").read_bytes()
    pf.build_user_features(ds, kind="template", encoder=FakeEncoder(), progress=False)
    assert (ds / "user_profiles.jsonl").read_bytes() == first


def test_llm_two_step_prompts_from_train_only(ds):
    llm = FakeLLM()
    rep = pf.build_user_features(ds, kind="llm", generate=llm, encoder=FakeEncoder(),
                                 llm_batch_size=3, progress=False)
    assert rep["llm_users_generated"] == 4 and llm.calls == 4  # 2 batches x 2 steps
    step1 = [p for p in llm.prompts if p.startswith("You are analysing")]
    step2 = [p for p in llm.prompts if p.startswith("You are writing")]
    assert len(step1) == len(step2) == 4
    for p in step1:
        for attr in ("Category", "Function", "Style", "Material", "Usage scenario", "Price range"):
            assert f"- {attr}:" in p
    for p in step2:
        for h in ("Style & Aesthetics:", "Function & Usability:", "Context & Emotion:",
                  "Other (brand loyalty, price sensitivity):"):
            assert h in p
        assert "ATTRS<" in p and "evidence" in p
    assert all(s not in p for p in llm.prompts for s in SECRET)
    # user u's prompts list exactly u's train items
    for u, p in enumerate(step1):
        assert all(t in p for t in _train_titles(u))
        assert not any(t in p for t in _not_train_titles(u))
    # step 2 of a user quotes that user's step-1 answer
    for p1, p2 in zip(step1, step2):
        assert f"ATTRS<{hashlib.md5(p1.encode()).hexdigest()[:6]}>" in p2
    profs = [json.loads(x) for x in (ds / "user_profiles.jsonl").read_text().splitlines()]
    assert profs[0]["kind"] == "llm" and profs[0]["profile"].startswith("Style & Aesthetics")


def test_llm_resume_generates_only_missing_users(ds):
    llm = FakeLLM()
    pf.build_user_features(ds, kind="llm", generate=llm, encoder=FakeEncoder(),
                           llm_batch_size=1, progress=False)
    assert llm.calls == 8
    again = FakeLLM()
    rep = pf.build_user_features(ds, kind="llm", generate=again, encoder=FakeEncoder(),
                                 progress=False)
    assert again.calls == 0 and rep["llm_users_reused"] == 4
    # as if killed while writing user 2: two whole lines and half a line survive
    work = ds / ".work" / "profiles" / "llm_profiles.jsonl"
    lines = work.read_text().splitlines()
    work.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
    again = FakeLLM()
    rep = pf.build_user_features(ds, kind="llm", generate=again, encoder=FakeEncoder(),
                                 llm_batch_size=8, progress=False)
    assert rep["llm_users_generated"] == 2 and rep["llm_users_reused"] == 2 and again.calls == 2
    assert len(again.prompts) == 4  # users 2 and 3, two steps each
    # a changed history (max_history) changes the prompts: regenerated, not reused
    again = FakeLLM()
    rep = pf.build_user_features(ds, kind="llm", generate=again, encoder=FakeEncoder(),
                                 max_history=1, progress=False)
    assert rep["llm_users_generated"] == 4


@pytest.mark.slow
def test_user_feat_with_real_minilm(ds):
    pytest.importorskip("torch", reason="torch is not installed (requirements-features.txt)")
    enc = tf.load_encoder()
    rep = pf.build_user_features(ds, kind="template", progress=False)
    feat = np.load(ds / "user_feat.npy")
    assert feat.shape == (5, 384) and rep["dim"] == 384
    np.testing.assert_allclose(np.linalg.norm(feat, axis=1), 1.0, atol=1e-5)
    prof = json.loads((ds / "user_profiles.jsonl").read_text().splitlines()[2])["profile"]
    np.testing.assert_allclose(feat[2], enc([prof])[0], atol=2e-5)


@pytest.mark.slow  # imports torch + transformers, builds and runs a GPT-2: ~2.5 s
def test_tiny_local_causal_lm_runs_offline(ds, tmp_path):
    """A randomly initialised 1-layer GPT-2 saved locally: the real HF generation path
    (tokenise, left-pad, generate, decode, resume) runs; its text is noise by design."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tf.default_model_path())
    cfg = GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=16, n_layer=1, n_head=2,
                     bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                     pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path / "tiny-lm"
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    rep = pf.build_user_features(ds, kind="llm", llm_model=str(path), max_new_tokens=4,
                                 llm_batch_size=4, encoder=FakeEncoder(), progress=False)
    assert rep["llm_users_generated"] == 4 and rep["llm_generate_calls"] == 2
    recs = [json.loads(x) for x in
            (ds / ".work" / "profiles" / "llm_profiles.jsonl").read_text().splitlines()]
    assert [r["userID"] for r in recs] == [0, 1, 2, 3]
    assert all(isinstance(r["profile"], str) for r in recs)
    rep = pf.build_user_features(ds, kind="llm", llm_model=str(path), max_new_tokens=4,
                                 encoder=FakeEncoder(), progress=False)
    assert rep["llm_users_generated"] == 0 and rep["llm_users_reused"] == 4


@pytest.mark.slow  # the features command loads the MiniLM encoder before the error: ~3 s
def test_llm_without_a_model_is_a_user_error(ds, capsys):
    with pytest.raises(UserError, match="--llm-model"):
        pf.build_user_features(ds, kind="llm", encoder=FakeEncoder(), progress=False)
    assert cli.main(["features", "--dataset", str(ds), "--no-text", "--profiles", "llm",
                     "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert cli.main(["features", "--dataset", str(ds), "--no-text", "--profiles", "llm",
                     "--llm-model", str(ds / "no-such-model"), "--quiet"]) == 2
    assert "no such directory" in capsys.readouterr().err
