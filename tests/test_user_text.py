"""Real user text: a users file sniffed among the raw files, carried through the k-core and
the id remapping into users.jsonl, rendered by the user template, embedded into
user_feat.npy with the sources counted, bad lines named, interrupted runs resumed.

Every fixture is written here, small, into tmp_path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from recgoat_jax.data import raw_amazon as ra
from recgoat_jax.data import raw_formats as rf
from recgoat_jax.errors import DataError, UserError
from recgoat_jax.features import cli
from recgoat_jax.features import profiles as pf
from recgoat_jax.features import user_text as ut

import feature_helpers
from feature_helpers import one_torch_thread, torch  # noqa: F401 (autouse fixture)


def _jsonl(path: Path, recs, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def FakeEncoder(fail_after=None):
    return feature_helpers.FakeEncoder(fail_after, dim=6, fingerprint="fake-encoder-users")


# --------------------------------------------------------------------------- raw files

# reviews, in file order; with k = 2: B has 1 item (dropped), z has 1 user (dropped), then
# D has 1 item (dropped). Left: A (x, y), C (y, x), E (x, y) -> users A 0, C 1, E 2 and
# items x 0, y 1 by first appearance.
REVIEWS = [("A", "x"), ("A", "y"), ("B", "x"), ("C", "y"), ("C", "x"), ("D", "z"), ("D", "y"),
           ("E", "x"), ("E", "y")]
USERS = [
    {"reviewerID": "B", "title": "dropped by the k-core"},
    {"reviewerID": "E", "age": 42, "gender": "F", "occupation": "writer", "zip_code": "55105",
     "member": True, "nickname": None},
    {"reviewerID": "A", "title": "Tiling <b>window</b> manager", "category": ["x11"],
     "description": ["Fast &amp; small.", "", "Keyboard driven."]},
    {"reviewerID": "Z", "title": "never reviewed anything"},
    {"reviewerID": "A", "title": "a second record for A: the first one wins"},
    # C has no record
]


@pytest.fixture()
def raw(tmp_path):
    reviews = _jsonl(tmp_path / "reviews.json", [
        {"reviewerID": u, "asin": i, "overall": 5.0, "unixReviewTime": 100 + k}
        for k, (u, i) in enumerate(REVIEWS)])
    meta = _jsonl(tmp_path / "meta.json.gz", [
        {"asin": a, "title": f"item {a}", "category": ["Tools"]} for a in "xyz"], gz=True)
    users = _jsonl(tmp_path / "users.json", USERS)
    return reviews, meta, users


def test_sniff_users_vs_reviews_vs_meta(raw, tmp_path):
    reviews, meta, users = raw
    ml = _jsonl(tmp_path / "users_ml.json.gz", [USERS[1]], gz=True)
    lit = tmp_path / "users_2014.json"
    lit.write_text("{'reviewerID': 'A', 'title': 'Python literal line'}\n")
    csv = tmp_path / "ratings.csv"
    csv.write_text("A,x,5.0,100\n")
    assert [rf.sniff_kind(p) for p in (reviews, meta, users, ml, lit, csv)] == [
        "reviews", "meta", "users", "users", "users", "ratings"]
    with pytest.raises(DataError) as e:
        list(rf.iter_interactions(users))
    assert str(e.value) == (f"{users}: this is a users file (reviewerID, no asin); expected "
                            "ratings or reviews")


def test_users_file_rides_through_k_core_and_id_remapping(raw, tmp_path):
    reviews, meta, users = raw
    rep = ra.build_mmrec(reviews, tmp_path / "with", "d", k_core=2, meta_path=meta,
                         users_path=users)
    ra.build_mmrec(reviews, tmp_path / "without", "d", k_core=2, meta_path=meta)
    for f in ("d.inter", "u_id_mapping.csv", "i_id_mapping.csv", "item_meta.jsonl"):
        assert (tmp_path / "with" / f).read_bytes() == (tmp_path / "without" / f).read_bytes()
    assert not (tmp_path / "without" / "users.jsonl").exists()
    assert ra.read_id_mapping(tmp_path / "with" / "u_id_mapping.csv") == {"A": 0, "C": 1, "E": 2}
    lines = [json.loads(x) for x in (tmp_path / "with" / "users.jsonl").read_text().splitlines()]
    assert lines == [
        {"userID": 0, "reviewerID": "A", "title": "Tiling window manager", "category": ["x11"],
         "description": ["Fast & small.", "Keyboard driven."]},
        {"userID": 2, "reviewerID": "E", "age": 42, "gender": "F", "occupation": "writer",
         "zip_code": "55105", "member": True},
    ]
    assert (rep["users_records"], rep["users_duplicate_ids"]) == (4, 1)
    assert (rep["users_with_record_after_filtering"],
            rep["users_without_record_after_filtering"]) == (2, 1)
    assert ra.read_users_jsonl(tmp_path / "with" / "users.jsonl", 3)[1] is None
    # a rebuild without the users file leaves no stale users.jsonl behind
    ra.build_mmrec(reviews, tmp_path / "with", "d", k_core=2, meta_path=meta)
    assert not (tmp_path / "with" / "users.jsonl").exists()


def test_cli_data_recognises_the_users_file_in_one_command(raw, tmp_path, capsys):
    reviews, meta, users = raw
    d = tmp_path / "shop"
    # any order: each file is recognised by its fields
    assert cli.main(["data", "--dataset", str(d), "--quiet", "--k-core", "2",
                     "--raw", str(users), str(reviews), str(meta)]) == 0
    assert capsys.readouterr().err == ""
    assert [json.loads(x)["reviewerID"] for x in (d / "users.jsonl").read_text().splitlines()] \
        == ["A", "E"]
    assert json.loads((d / "build_report.json").read_text())["inputs"] == [str(reviews)]


def test_bad_users_lines_name_file_line_and_field(tmp_path, capsys):
    p = _jsonl(tmp_path / "users.json", [
        {"reviewerID": "u1", "title": "fine"},
        {"reviewerID": "u2", "prefs": {"colour": "red"}},
        {"title": "no id"},
        "not json at all",
        {"reviewerID": "u5", "asin": "B0001", "overall": 5.0},
        {"reviewerID": "u6", "score": float("inf")},
        ["a", "list"],
    ])
    expected = [
        f"{p}:2: users record 'u2': field 'prefs': expected text, a number, true/false or a "
        "list of them, got dict",
        f"{p}:3: users record lacks field 'reviewerID'",
        f"{p}:4: expected one JSON object or Python dict literal per line: not a JSON object "
        "or Python literal (SyntaxError)",
        f"{p}:5: users record has field 'asin': a review line in a users file? (users lines "
        "hold reviewerID and user fields only)",
        f"{p}:6: users record 'u6': field 'score': inf is not a finite number",
        f"{p}:7: expected a JSON object / dict, got list",
    ]
    lines = p.read_text().splitlines()
    for k, msg in enumerate(expected):
        q = tmp_path / f"u{k}.json"
        q.write_text("".join(json.dumps({"reviewerID": f"g{j}"}) + "\n" for j in range(k + 1))
                     + lines[k + 1] + "\n")  # the bad line at its line number in p
        with pytest.raises(DataError) as e:
            rf.read_users([q])
        assert str(e.value) == msg.replace(str(p), str(q))
    recs, rep = rf.read_users([p], skip_bad_lines=True)
    assert list(recs) == ["u1"] and rep["users_bad_lines_skipped"] == 6
    assert rep["users_first_bad_line"] == expected[0]
    # through the data command: one line, exit status 2
    reviews = _jsonl(tmp_path / "reviews.json", [{"reviewerID": "u1", "asin": "i1"}])
    assert cli.main(["data", "--dataset", str(tmp_path / "x"), "--k-core", "1",
                     "--raw", str(reviews), str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected[0] in err and "Traceback" not in err


# --------------------------------------------------------------------------- features

ITEMS = ["Tiling window manager library", "Font rendering engine", "Audio codec",
         "Image decoder", "Network stack"]
# (user, item, timestamp, x_label): user 4 has no train row
ROWS = [(0, 0, 1, 0), (0, 1, 2, 0), (0, 2, 3, 2), (1, 1, 1, 0), (1, 3, 2, 0), (1, 4, 3, 2),
        (2, 2, 1, 0), (2, 3, 2, 2), (3, 4, 1, 0), (3, 0, 2, 2), (4, 1, 1, 1), (4, 2, 2, 2)]
USER_RECS = {  # users 2, 3, 4: no text (2 has a record whose fields are all empty)
    0: {"reviewerID": "wm", "title": "Tiling window manager", "category": ["x11"],
        "description": ["Fast & small.", "Keyboard driven."]},
    1: {"reviewerID": "U0001", "age": 42, "gender": "F", "occupation": "writer",
        "zip_code": "55105"},
    2: {"reviewerID": "U0002"},
}
TEXT_0 = "Tiling window manager x11 Fast & small. Keyboard driven."
TEXT_1 = "age: 42; gender: F; occupation: writer; zip code: 55105"


@pytest.fixture()
def ds(tmp_path):
    d = tmp_path / "mini"
    d.mkdir()
    (d / "mini.inter").write_text("userID\titemID\trating\ttimestamp\tx_label\n" + "".join(
        f"{u}\t{i}\t5.0\t{t}\t{x}\n" for u, i, t, x in ROWS))
    (d / "i_id_mapping.csv").write_text("asin\titemID\n" + "".join(
        f"I{i}\t{i}\n" for i in range(len(ITEMS))))
    (d / "u_id_mapping.csv").write_text("user_id\tuserID\n" + "".join(
        f"{USER_RECS.get(u, {}).get('reviewerID', f'V{u}')}\t{u}\n" for u in range(5)))
    _jsonl(d / "item_meta.jsonl", [
        {"itemID": i, "asin": f"I{i}", "title": t, "brand": "", "categories": [["Libs"]],
         "description": "", "price": "", "image_url": ""} for i, t in enumerate(ITEMS)])
    _jsonl(d / "users.jsonl", [{"userID": u, **r} for u, r in USER_RECS.items()])
    return d


def _profiles(d):
    return [json.loads(x) for x in (d / "user_profiles.jsonl").read_text().splitlines()]


def test_user_template_renders_text_and_values():
    recs = [{"userID": u, **r} for u, r in USER_RECS.items()]
    assert ut.user_texts(recs) == [TEXT_0, TEXT_1, ""]
    assert ut.render_user_text(recs[1], "{occupation}, {age}") == "writer, 42"
    assert ut.render_user_text(recs[0], "{title}|{age}") == "Tiling window manager|"
    assert ut.render_user_text(None) == ""
    with pytest.raises(UserError, match=r"unknown field \{agee\}; expected one of .*\{age\}"):
        ut.user_texts(recs, "{agee}")


def test_feature_sources_are_counted_and_reported(ds):
    rep = pf.build_user_features(ds, kind="template", encoder=FakeEncoder(), progress=False)
    assert rep["sources"] == {"user_text": 2, "template_profile": 2, "llm_profile": 0,
                              "mean_fallback": 1}
    assert rep["users_without_text"] == 3 and rep["users_without_profile"] == 1
    assert json.loads((ds / "user_feat.json").read_text())["sources"] == rep["sources"]
    assert rep["summary"] == ("from user text 2, template profiles (train interactions only) 2, "
                              "mean fallback 1")
    profs = _profiles(ds)
    assert [p["source"] for p in profs] == ["user_text", "user_text", "template_profile",
                                            "template_profile", "mean_fallback"]
    assert [p["user_text"] for p in profs] == [TEXT_0, TEXT_1, "", "", ""]
    assert profs[0]["profile"].startswith(pf.TEMPLATE_LABEL)  # history profiles stay available

    rep = pf.build_user_features(ds, kind="none", encoder=FakeEncoder(), progress=False)
    assert rep["sources"] == {"user_text": 2, "template_profile": 0, "llm_profile": 0,
                              "mean_fallback": 3}
    rep = pf.build_user_features(ds, kind="template", user_text="off", encoder=FakeEncoder(),
                                 progress=False)
    assert rep["sources"] == {"user_text": 0, "template_profile": 4, "llm_profile": 0,
                              "mean_fallback": 1}
    assert rep["summary"] == ("from template profiles (train interactions only), 1 users "
                              "without a profile")

    prompts = []

    def llm(ps):
        prompts.extend(ps)
        return ["STEP1" if p.startswith("You are analysing") else "an LLM profile" for p in ps]

    rep = pf.build_user_features(ds, kind="llm", generate=llm, encoder=FakeEncoder(),
                                 progress=False)
    assert rep["sources"] == {"user_text": 2, "template_profile": 0, "llm_profile": 2,
                              "mean_fallback": 1}
    # real text wins: no LLM prompt for users 0 and 1 (their train items never asked about)
    assert len(prompts) == 4 and not any(ITEMS[0] in p for p in prompts)


def test_real_text_rows_equal_encoding_the_text_and_fallback_rows(ds):
    enc = FakeEncoder()
    pf.build_user_features(ds, kind="template", encoder=enc, progress=False)
    feat = np.load(ds / "user_feat.npy")
    profs = _profiles(ds)
    ref = FakeEncoder()  # an independent call on the hand-written strings
    np.testing.assert_array_equal(feat[0], ref([TEXT_0])[0])
    np.testing.assert_array_equal(feat[1], ref([TEXT_1])[0])
    np.testing.assert_array_equal(feat[2], ref([profs[2]["profile"]])[0])  # history profile
    mean = feat[:4].mean(0)
    np.testing.assert_allclose(feat[4], mean / np.linalg.norm(mean), atol=1e-6)
    assert TEXT_0 in enc.texts and "" not in enc.texts
    # a raw users file given with --users gives the same rows as users.jsonl
    raw = _jsonl(ds.parent / "users_raw.json", [USER_RECS[1], USER_RECS[0]])
    (ds / "users.jsonl").unlink()
    pf.build_user_features(ds, kind="template", users_path=[raw], encoder=FakeEncoder(),
                           progress=False)
    np.testing.assert_array_equal(np.load(ds / "user_feat.npy"), feat)


def test_interrupted_user_features_resume_from_finished_chunks(ds):
    kw = dict(kind="template", chunk_size=1, batch_size=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        pf.build_user_features(ds, encoder=FakeEncoder(fail_after=2), **kw)
    assert not (ds / "user_feat.npy").exists()
    again = FakeEncoder()
    rep = pf.build_user_features(ds, encoder=again, **kw)
    assert (rep["embed_reused_chunks"], rep["embed_encoded_chunks"]) == (2, 2)
    assert again.calls == 2
    resumed = np.load(ds / "user_feat.npy")
    pf.build_user_features(ds, encoder=FakeEncoder(), work_dir=ds.parent / "fresh", **kw)
    np.testing.assert_array_equal(resumed, np.load(ds / "user_feat.npy"))
    rep = pf.build_user_features(ds, encoder=FakeEncoder(fail_after=0), **kw)
    assert rep["embed_reused_chunks"] == 4  # nothing left to encode


def test_stale_users_jsonl_is_an_error(ds):
    lines = (ds / "users.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["reviewerID"] = "someone-else"
    (ds / "users.jsonl").write_text("\n".join([json.dumps(rec)] + lines[1:]) + "\n")
    with pytest.raises(DataError) as e:
        pf.build_user_features(ds, encoder=FakeEncoder(), progress=False)
    assert str(e.value) == (f"{ds / 'users.jsonl'}: userID 0 has reviewerID 'someone-else' but "
                            f"{ds / 'u_id_mapping.csv'} maps 'wm' to it; rebuild the dataset")


@pytest.mark.slow
@pytest.mark.skipif(torch is None, reason="torch is not installed (requirements-features.txt)")
def test_cli_features_embed_real_user_text_with_minilm(raw, tmp_path, capsys):
    from recgoat_jax.features import text as tf

    reviews, meta, users = raw
    d = tmp_path / "shop"
    assert cli.main(["data", "--dataset", str(d), "--quiet", "--k-core", "2",
                     "--raw", str(reviews), str(meta), str(users)]) == 0
    capsys.readouterr()
    assert cli.main(["features", "--dataset", str(d), "--quiet", "--no-text"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"wrote {d / 'user_feat.npy'}: [3, 384] from user text 2, template "
                   "profiles (train interactions only) 1, mean fallback 0"]
    feat = np.load(d / "user_feat.npy")
    enc = tf.load_encoder()
    direct = enc(["Tiling window manager x11 Fast & small. Keyboard driven.",
                  "age: 42; gender: F; occupation: writer; zip code: 55105; member: yes"])
    np.testing.assert_allclose(feat[[0, 2]], direct, atol=2e-5)
    prof = _profiles(d)[1]
    assert prof["source"] == "template_profile"
    np.testing.assert_allclose(feat[1], enc([prof["profile"]])[0], atol=2e-5)
