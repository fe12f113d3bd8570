"""raw_amazon.py on the project's fixture shop (tests/fixtures/raw, both formats)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from recgoat_jax.data import inter, preprocess, raw_formats
from recgoat_jax.data import raw_amazon as ra
from recgoat_jax.errors import DataError
from recgoat_jax.features import cli

RAW = Path(__file__).parent / "fixtures" / "raw"
INTER_FILES = ["ratings_Toy.csv", "reviews_Toy_2014.json.gz", "reviews_Toy_2018.json"]


def raw_pairs(path: Path) -> list[tuple[str, str]]:
    """Distinct (user, item) pairs in input order, read without the module under test."""
    out, seen = [], set()
    for line in path.read_text().splitlines():
        u, i = line.split(",")[:2]
        if (u, i) not in seen:
            seen.add((u, i))
            out.append((u, i))
    return out


def slow_k_core(pairs: list[tuple[str, str]], k: int) -> set[tuple[str, str]]:
    """Reference: remove one under-k user or item at a time until none is left."""
    live = set(pairs)
    while True:
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        for u, i in live:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        weak_u = next((u for u, c in sorted(users.items()) if c < k), None)
        weak_i = next((i for i, c in sorted(items.items()) if c < k), None)
        if weak_u is None and weak_i is None:
            return live
        if weak_u is not None:
            live = {(u, i) for u, i in live if u != weak_u}
        else:
            live = {(u, i) for u, i in live if i != weak_i}


def read_built(out: Path, name: str = "toy"):
    cols = inter.read_inter(out / f"{name}.inter")
    umap = ra.read_id_mapping(out / "u_id_mapping.csv")
    imap = ra.read_id_mapping(out / "i_id_mapping.csv")
    return cols, umap, imap


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    rep = ra.build_mmrec(RAW / "ratings_Toy.csv", out, "toy", k_core=5, seed=999,
                         meta_path=RAW / "meta_Toy_2014.json")
    return out, rep


def test_all_formats_build_the_same_files(built, tmp_path):
    out, rep = built
    assert rep["duplicate_pairs_dropped"] == 1 and rep["items_without_meta"] == 1
    for name, meta in [("reviews_Toy_2014.json.gz", "meta_Toy_2018.json.gz"),
                       ("reviews_Toy_2018.json", None)]:
        o = tmp_path / name
        ra.build_mmrec(RAW / name, o, "toy", k_core=5, seed=999, meta_path=meta and RAW / meta)
        for f in ("toy.inter", "u_id_mapping.csv", "i_id_mapping.csv"):
            assert (o / f).read_bytes() == (out / f).read_bytes(), (name, f)
    # 2014 Python-literal and 2018 JSON metadata give the same item text fields
    a = ra.read_item_meta(out / "item_meta.jsonl")
    b = ra.read_item_meta(tmp_path / "reviews_Toy_2014.json.gz" / "item_meta.jsonl")
    for x, y in zip(a, b):
        assert (x["asin"], x["title"], x["brand"], x["description"]) == \
               (y["asin"], y["title"], y["brand"], y["description"])
        assert x["categories"][:1] == y["categories"][:1]


def test_metadata_is_normalised(built):
    out, _ = built
    recs = {r["asin"]: r for r in ra.read_item_meta(out / "item_meta.jsonl")}
    assert recs["B00TOY0013"]["description"] == "Hand-made wooden rattle, it's safe for teething."
    assert recs["B00TOY0005"]["title"] == 'Tiny Steps "Dream" glass bottle set'
    assert "&amp;" not in json.dumps(recs) and "<p>" not in json.dumps(recs)
    assert recs["B00NOMETA01"]["title"] == "" and recs["B00NOMETA01"]["categories"] == []
    assert recs["B00TOY0000"]["categories"][0] == ["Baby Products", "Feeding", "Bottles"]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_k_core_equals_slow_reference(tmp_path, k):
    pairs = raw_pairs(RAW / "ratings_Toy.csv")
    ref = slow_k_core(pairs, k)
    if not ref:
        with pytest.raises(DataError, match="nothing is left"):
            ra.build_mmrec(RAW / "ratings_Toy.csv", tmp_path, "toy", k_core=k)
        return
    ra.build_mmrec(RAW / "ratings_Toy.csv", tmp_path, "toy", k_core=k)
    cols, umap, imap = read_built(tmp_path)
    uinv = {v: key for key, v in umap.items()}
    iinv = {v: key for key, v in imap.items()}
    got = {(uinv[u], iinv[i]) for u, i in zip(cols.users.tolist(), cols.items.tolist())}
    assert got == ref
    assert len(cols.users) == len(ref)  # no duplicates


def test_k_core_mask_random_against_reference():
    rng = np.random.default_rng(0)
    for trial in range(5):
        u = rng.integers(0, 40, 400)
        i = rng.integers(0, 30, 400)
        pairs = sorted({(int(a), int(b)) for a, b in zip(u, i)})
        pu = np.array([p[0] for p in pairs])
        pi = np.array([p[1] for p in pairs])
        for k in (2, 4, 6):
            mask = preprocess.k_core(pu, pi, k)
            ref = slow_k_core([(str(a), str(b)) for a, b in pairs], k)
            assert {(str(a), str(b)) for a, b in zip(pu[mask], pi[mask])} == ref


def test_ids_follow_first_appearance_after_filtering(built):
    out, _ = built
    cols, umap, imap = read_built(out)
    kept = slow_k_core(raw_pairs(RAW / "ratings_Toy.csv"), 5)
    order = [p for p in raw_pairs(RAW / "ratings_Toy.csv") if p in kept]
    users = list(dict.fromkeys(u for u, _ in order))
    items = list(dict.fromkeys(i for _, i in order))
    assert [umap[u] for u in users] == list(range(len(users)))
    assert [imap[i] for i in items] == list(range(len(items)))
    # .inter rows are in filtered input order
    inv_u = {v: k for k, v in umap.items()}
    inv_i = {v: k for k, v in imap.items()}
    rows = [(inv_u[u], inv_i[i]) for u, i in zip(cols.users.tolist(), cols.items.tolist())]
    assert rows == order


def test_split_invariants(built, tmp_path):
    out, rep = built
    cols, umap, _ = read_built(out)
    header = (out / "toy.inter").read_text().splitlines()[0]
    assert header == "userID\titemID\trating\ttimestamp\tx_label"
    n_users = len(umap)
    for u in range(n_users):
        lab = cols.labels[cols.users == u]
        n = len(lab)
        assert n >= 5
        tr, va, te = (int((lab == x).sum()) for x in (0, 1, 2))
        assert va >= 1 and te >= 1 and tr >= 1
        assert (tr, va, te) == preprocess.split_counts(n)
    assert rep["train"] + rep["valid"] + rep["test"] == len(cols.users)
    # seeded: same seed -> same file, other seed -> other split of the same pairs
    ra.build_mmrec(RAW / "ratings_Toy.csv", tmp_path / "a", "toy", seed=999,
                   meta_path=RAW / "meta_Toy_2014.json")
    ra.build_mmrec(RAW / "ratings_Toy.csv", tmp_path / "b", "toy", seed=1)
    assert (tmp_path / "a" / "toy.inter").read_bytes() == (out / "toy.inter").read_bytes()
    other = inter.read_inter(tmp_path / "b" / "toy.inter")
    assert np.array_equal(other.items, cols.items)
    assert not np.array_equal(other.labels, cols.labels)


def test_split_counts_small_users():
    assert preprocess.split_counts(1) == (1, 0, 0)
    assert preprocess.split_counts(2) == (1, 0, 1)
    assert preprocess.split_counts(3) == (1, 1, 1)
    assert preprocess.split_counts(10) == (8, 1, 1)
    assert preprocess.split_counts(15) == (11, 2, 2)
    for n in range(3, 200):
        tr, va, te = preprocess.split_counts(n)
        assert tr + va + te == n and min(tr, va, te) >= 1


def test_id_maps_round_trip(built):
    out, _ = built
    cols, umap, imap = read_built(out)
    assert sorted(umap.values()) == list(range(len(umap)))
    assert sorted(imap.values()) == list(range(len(imap)))
    assert int(cols.users.max()) + 1 == len(umap)
    assert int(cols.items.max()) + 1 == len(imap)
    inv_u = {v: k for k, v in umap.items()}
    inv_i = {v: k for k, v in imap.items()}
    got = {(inv_u[u], inv_i[i]) for u, i in zip(cols.users.tolist(), cols.items.tolist())}
    assert got == slow_k_core(raw_pairs(RAW / "ratings_Toy.csv"), 5)
    meta = ra.read_item_meta(out / "item_meta.jsonl")
    assert [m["asin"] for m in meta] == [inv_i[i] for i in range(len(imap))]


def _gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def test_bad_lines_name_file_and_line(tmp_path):
    good = (RAW / "ratings_Toy.csv").read_text().splitlines()
    p = tmp_path / "ratings.csv"
    p.write_text("\n".join(good[:3] + ["A1,B2,5.0"] + good[3:]) + "\n")
    with pytest.raises(DataError) as e:
        ra.build_mmrec(p, tmp_path / "o", "x")
    msg = str(e.value)
    assert msg.startswith(f"{p}:4:") and "4 comma-separated fields" in msg and "\n" not in msg

    p.write_text("\n".join(good[:5] + ["A1,B2,five,1370044800"] + good[5:]) + "\n")
    with pytest.raises(DataError, match=r"ratings.csv:6: rating 'five' is not a number"):
        ra.build_mmrec(p, tmp_path / "o", "x")

    lines = (RAW / "reviews_Toy_2018.json").read_text().splitlines()
    g = _gz(tmp_path / "reviews.json.gz", "\n".join(lines[:7] + ['{"reviewerID": "A1", "asin": '] + lines[7:]))
    with pytest.raises(DataError, match=r"reviews.json.gz:8: expected one JSON object"):
        ra.build_mmrec(g, tmp_path / "o", "x")

    g = _gz(tmp_path / "r2.json.gz", "\n".join(lines[:2] + ['{"asin": "B1", "overall": 5.0}'] + lines[2:]))
    with pytest.raises(DataError, match=r"r2.json.gz:3: review record lacks field 'reviewerID'"):
        ra.build_mmrec(g, tmp_path / "o", "x")


def test_python_literal_lines_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    meta = (RAW / "meta_Toy_2014.json").read_text().splitlines()
    evil = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    p = tmp_path / "meta.json"
    p.write_text("\n".join(meta[:4] + [evil] + meta[4:]) + "\n")
    with pytest.raises(DataError, match=r"meta.json:5: expected one JSON object or Python dict"):
        raw_formats.read_metadata([p])
    assert not marker.exists()
    recs, rep = raw_formats.read_metadata([p], skip_bad_lines=True)
    assert rep["meta_bad_lines_skipped"] == 1 and len(recs) == 40 and not marker.exists()


def test_skip_bad_lines_counts_and_reports(tmp_path):
    good = (RAW / "ratings_Toy.csv").read_text().splitlines()
    p = tmp_path / "ratings.csv"
    p.write_text("\n".join(good[:3] + ["garbage"] + good[3:10] + ["A,B,C,D,E"] + good[10:]) + "\n")
    rep = ra.build_mmrec(p, tmp_path / "o", "x", skip_bad_lines=True)
    assert rep["bad_lines_skipped"] == 2 and rep["first_bad_line"].startswith(f"{p}:4:")
    assert rep["interactions_read"] == len(good)


def test_require_meta_drops_items_without_metadata(tmp_path):
    rep = ra.build_mmrec(RAW / "ratings_Toy.csv", tmp_path, "toy",
                         meta_path=RAW / "meta_Toy_2014.json", require_meta=True)
    assert rep["interactions_dropped_no_meta"] == 8
    assert "B00NOMETA01" not in ra.read_id_mapping(tmp_path / "i_id_mapping.csv")


def test_cli_data_and_its_errors(tmp_path, capsys):
    d = tmp_path / "shop"
    rc = cli.main(["data", "--dataset", str(d), "--quiet", "--k-core", "3", "--seed", "7",
                   "--raw", str(RAW / "reviews_Toy_2014.json.gz"), str(RAW / "meta_Toy_2018.json.gz")])
    assert rc == 0
    assert (d / "shop.inter").exists() and (d / "item_meta.jsonl").exists()
    quiet = capsys.readouterr()
    assert quiet.err == ""  # --quiet: warnings and errors only
    assert quiet.out.startswith(f"wrote {d / 'shop.inter'}: ")  # the product: stdout, even -q
    # a named dataset resolves to <root>/<name>/ and reads <dir>/raw/ by default
    (tmp_path / "root" / "toy" / "raw").mkdir(parents=True)
    (tmp_path / "root" / "toy" / "raw" / "ratings_Toy.csv").write_bytes(
        (RAW / "ratings_Toy.csv").read_bytes())
    assert cli.main(["data", "--dataset", "toy", "--root", str(tmp_path / "root")]) == 0
    assert (tmp_path / "root" / "toy" / "toy.inter").exists()
    got = capsys.readouterr()
    assert got.out.startswith("wrote ") and "report: " in got.err  # product / status lines
    bad = tmp_path / "bad.csv"
    bad.write_text("A1,B1,5.0,1\nA2,B2\n")
    assert cli.main(["data", "--dataset", str(tmp_path / "x"), "--raw", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:2:" in err and "Traceback" not in err
    assert cli.main(["data", "--dataset", str(tmp_path / "y"), "--raw",
                     str(RAW / "meta_Toy_2014.json")]) == 2
    assert "no ratings or reviews file" in capsys.readouterr().err
