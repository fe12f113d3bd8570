"""formats.py / load.py: both layouts, validation errors, repairs, the real Baby split."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from recgoat_jax.config import DataConfig
from recgoat_jax.data import formats
from recgoat_jax.data.formats import read_dataset
from recgoat_jax.data.load import load_dataset, resolve_dataset_dir
from recgoat_jax.errors import DataError

HEADER = "userID\titemID\trating\ttimestamp\tx_label"

# A tiny dataset: 4 users, 5 items; user 3 has no test row.
TRAIN = {0: [0, 1, 2], 1: [3, 1], 2: [0, 4], 3: [2]}
VALID = {0: [3], 1: [0], 2: [1], 3: [4]}
TEST = {0: [4], 1: [2], 2: [3]}


def _rows(splits=(TRAIN, VALID, TEST)):
    return [(u, i, k) for k, sp in enumerate(splits) for u, items in sp.items() for i in items]


def write_inter(directory: Path, rows, name: str | None = None, header: str = HEADER) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name or directory.name}.inter"
    lines = [header] + [f"{u}\t{i}\t5.0\t1234\t{k}" if isinstance(k, int) else f"{u}\t{i}\t{k}"
                        for u, i, k in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_lightgcn(directory: Path, splits=(TRAIN, VALID, TEST), users=range(4)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for f, sp in zip(formats.LIGHTGCN_FILES, splits):
        (directory / f).write_text(
            "".join(" ".join(str(x) for x in [u] + sp.get(u, [])) + "\n" for u in users)
        )
    return directory


@pytest.fixture
def mmrec_dir(tmp_path):
    d = tmp_path / "tiny"
    write_inter(d, _rows())
    return d


def expect_error(directory, *fragments, **kw):
    with pytest.raises(DataError) as e:
        read_dataset(directory, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ----------------------------------------------------------------------------- happy paths


def test_both_layouts_give_the_same_exact_csrs(tmp_path, mmrec_dir):
    a = read_dataset(mmrec_dir)
    b = read_dataset(write_lightgcn(tmp_path / "lgcn"))
    assert (a.n_users, a.n_items) == (b.n_users, b.n_items) == (4, 5)
    assert a.report["layout"] == "mmrec" and b.report["layout"] == "lightgcn"
    expected = {
        "train": ([0, 3, 5, 7, 8], [0, 1, 2, 1, 3, 0, 4, 2]),
        "valid": ([0, 1, 2, 3, 4], [3, 0, 1, 4]),
        "test": ([0, 1, 2, 3, 3], [4, 2, 3]),
    }
    for ds in (a, b):
        for split, (indptr, indices) in expected.items():
            csr = ds.split(split)
            assert csr.indptr.dtype == np.int64 and csr.indices.dtype == np.int32
            np.testing.assert_array_equal(csr.indptr, indptr)
            np.testing.assert_array_equal(csr.indices, indices)
        assert ds.report["duplicates"] == 0
        assert ds.report["dropped_valid_rows_no_train"] == 0
    assert a.name == "tiny" and b.name == "lgcn"


def test_lightgcn_counts_uid_lines_without_items(tmp_path):
    d = write_lightgcn(tmp_path / "x", users=range(6))  # users 4, 5 listed with no items
    ds = read_dataset(d)
    assert ds.n_users == 6 and ds.n_items == 5
    assert ds.train.row_lengths().tolist() == [3, 2, 2, 1, 0, 0]


def test_fast_and_slow_inter_parsers_agree(tmp_path, mmrec_dir):
    ref = read_dataset(mmrec_dir)
    # CRLF, RecBole-style names, extra columns in another order, blank lines, padded
    # fields: the slow path (or the CRLF-tolerant fast path) must give the same result
    lines = ["x_label:float\tjunk\titemID:token\tuserID:token"]
    lines += [f"{k}\tz\t{i}\t{u}" for u, i, k in _rows()]
    d = tmp_path / "variant"
    d.mkdir()
    (d / "variant.inter").write_text("\r\n".join(lines) + "\r\n")
    lines[3] = lines[3].replace("\t", "\t ", 1)  # " 0" style padding -> slow path
    d2 = tmp_path / "variant2"
    d2.mkdir()
    (d2 / "variant2.inter").write_text("\n".join(lines[:5] + ["", "  "] + lines[5:]) + "\n\n")
    for other in (read_dataset(d), read_dataset(d2)):
        for s in ("train", "valid", "test"):
            np.testing.assert_array_equal(other.split(s).indptr, ref.split(s).indptr)
            np.testing.assert_array_equal(other.split(s).indices, ref.split(s).indices)


def test_features_loaded_cast_and_named_by_prefix(tmp_path, mmrec_dir):
    rng = np.random.default_rng(0)
    text = rng.standard_normal((5, 6))  # float64, like the public files
    image = rng.standard_normal((5, 8)).astype(np.float32)
    user = rng.standard_normal((4, 3)).astype(np.float32)
    np.save(mmrec_dir / "text_feat.npy", text)
    np.save(mmrec_dir / "image_feat.npy", image)
    np.save(mmrec_dir / "user_feat.npy", user)
    np.save(mmrec_dir / "user_graph_dict.npy", np.zeros(3))  # not a feature file
    ds = read_dataset(mmrec_dir)
    assert list(ds.item_features) == ["image", "text"]
    assert ds.item_features["text"].dtype == np.float32
    np.testing.assert_allclose(ds.item_features["text"], text.astype(np.float32))
    assert isinstance(ds.item_features["image"], np.memmap)  # float32 stays mapped
    np.testing.assert_array_equal(ds.item_features["image"], image)
    np.testing.assert_array_equal(ds.user_features, user)
    only = read_dataset(mmrec_dir, modalities=("text",), user_features=False)
    assert list(only.item_features) == ["text"] and only.user_features is None


def test_user_feature_source_from_user_feat_json(mmrec_dir):
    import json
    np.save(mmrec_dir / "user_feat.npy", np.ones((4, 3), np.float32))
    assert read_dataset(mmrec_dir).user_feature_source is None  # no user_feat.json
    meta = mmrec_dir / "user_feat.json"
    for sources, want in [({"user_text": 1, "template_profile": 3}, "user_text"),
                          ({"user_text": 0, "template_profile": 4}, "template_profile"),
                          ({"llm_profile": 3, "template_profile": 1}, "llm_profile"),
                          ({}, None)]:
        meta.write_text(json.dumps({"sources": sources}))
        ds = read_dataset(mmrec_dir)
        assert ds.user_feature_source == want
        assert ds.summary().endswith(f"user features: 3 ({want})" if want else "user features: 3")
    meta.write_text("[1, 2]")
    with pytest.raises(DataError, match=r"user_feat.json: not a JSON object with a 'sources' "
                                        r"mapping \(written by recgoat features\)"):
        read_dataset(mmrec_dir)


def test_load_dataset_by_name_and_path(tmp_path, mmrec_dir):
    ds = load_dataset(DataConfig(dataset="tiny", root=str(tmp_path)))
    assert ds.name == "tiny" and ds.train.nnz == 8
    ds = load_dataset(DataConfig(dataset=str(mmrec_dir), root="/nonexistent"))
    assert ds.name == "tiny"
    assert resolve_dataset_dir("tiny", tmp_path) == tmp_path / "tiny"


# ----------------------------------------------------------------------------- repairs


def test_rows_of_users_without_train_are_dropped_and_counted(tmp_path, caplog):
    rows = _rows() + [(4, 0, 1), (4, 2, 2), (4, 3, 2), (5, 1, 2)]  # users 4, 5: no train
    d = tmp_path / "cold"
    write_inter(d, rows)
    ds = read_dataset(d)
    r = ds.report
    assert r["dropped_valid_rows_no_train"] == 1
    assert r["dropped_test_rows_no_train"] == 3
    assert r["dropped_users_no_train"] == 2
    assert ds.n_users == 6  # max id + 1 over the whole file, as MMRec
    assert ds.valid.nnz == 4 and ds.test.nnz == 3
    assert ds.valid.row_lengths()[4] == 0 and ds.test.row_lengths()[4:].tolist() == [0, 0]
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "1 valid and 3 test rows of 2 users" in warning.message


def test_duplicates_reported_and_kept_once_in_the_earliest_split(tmp_path, caplog):
    rows = _rows() + [(0, 1, 0), (0, 2, 2), (1, 0, 2), (2, 1, 1)]
    # (0,1) twice in train; (0,2) train+test; (1,0) valid+test; (2,1) twice in valid
    d = tmp_path / "dups"
    write_inter(d, rows)
    ds = read_dataset(d)
    assert ds.report["duplicates"] == 4
    assert ds.report["duplicates_by_split"] == {"train": 1, "valid": 1, "test": 2}
    assert ds.train.row(0).tolist() == [0, 1, 2]
    assert ds.valid.row(1).tolist() == [0] and ds.test.row(1).tolist() == [2]
    assert ds.test.row(0).tolist() == [4]
    assert "4 duplicate" in caplog.text
    # the same in the LightGCN layout
    lg = write_lightgcn(tmp_path / "lg", (
        {**TRAIN, 0: [0, 1, 2, 1]}, {**VALID, 2: [1, 1]}, {**TEST, 0: [4, 2], 1: [2, 0]}))
    ds2 = read_dataset(lg)
    assert ds2.report["duplicates"] == 4
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(ds2.split(s).indices, ds.split(s).indices)


# ----------------------------------------------------------------------------- errors


def test_missing_directory_and_no_files(tmp_path):
    expect_error(tmp_path / "nope", "nope", "not found")
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", "empty.inter", "train.txt/valid.txt/test.txt")


def test_unknown_dataset_name_message(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(dataset="sports", root=str(tmp_path)))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"dataset 'sports' not found: expected {tmp_path}/sports/sports.inter "
                          "(MMRec layout) or train.txt/valid.txt/test.txt there")
    assert f"into {tmp_path}/sports/" in msg and "make data DATASET=sports" in msg


def test_several_inter_files(tmp_path, mmrec_dir):
    write_inter(mmrec_dir, _rows(), name="other")
    assert read_dataset(mmrec_dir).report["files"][0].endswith("tiny.inter")  # dirname wins
    (mmrec_dir / "tiny.inter").rename(mmrec_dir / "third.inter")
    expect_error(mmrec_dir, "other.inter", "third.inter", "tiny.inter")


@pytest.mark.parametrize(
    "header, fragments",
    [
        ("userID\titemID\trating", ["line 1", "x_label"]),
        ("userID itemID x_label", ["line 1", "userID", "tab-separated"]),
        ("", ["line 1", "missing header"]),
    ],
)
def test_bad_header(tmp_path, header, fragments):
    d = tmp_path / "h"
    write_inter(d, [], header=header)
    (d / "h.inter").write_text(header + "\n0\t0\t0\n")
    expect_error(d, "h.inter", *fragments)


@pytest.mark.parametrize(
    "bad_line, fragments",
    [
        ("1\tx\t5\t0\t0", ["line 4", "column itemID", "'x'"]),
        ("1.5\t2\t5\t0\t0", ["line 4", "column userID", "'1.5'"]),
        ("-1\t2\t5\t0\t0", ["line 4", "column userID", "non-negative"]),
        ("1\t-3\t5\t0\t0", ["line 4", "column itemID"]),
        ("1\t2\t5\t0\t3", ["line 4", "column x_label", "0, 1 or 2"]),
        ("1\t2\t5\t0", ["line 4", "4 tab-separated fields, expected 5"]),
        ("1\t2\t5\t0\t0\t9", ["line 4", "6 tab-separated fields"]),
    ],
)
def test_bad_inter_line(tmp_path, bad_line, fragments):
    d = tmp_path / "b"
    path = write_inter(d, _rows())
    lines = path.read_text().splitlines()
    lines[3] = bad_line  # line 4 of the file (header = line 1)
    path.write_text("\n".join(lines) + "\n")
    expect_error(d, "b.inter", *fragments)


def test_empty_splits(tmp_path):
    d = tmp_path / "e"
    write_inter(d, _rows((TRAIN, VALID, {})))
    expect_error(d, "e.inter", "x_label 2", "no test interactions")
    write_inter(d, [])
    expect_error(d, "e.inter", "no interaction rows")
    # every valid row belongs to a user without train rows: nothing left
    write_inter(d, _rows((TRAIN, {9: [1]}, TEST)))
    expect_error(d, "e.inter", "valid", "no train rows")
    lg = write_lightgcn(tmp_path / "lg", (TRAIN, VALID, {}))
    expect_error(lg, "test.txt", "no test interactions")


def test_lightgcn_errors(tmp_path):
    lg = write_lightgcn(tmp_path / "lg")
    (lg / "valid.txt").unlink()
    expect_error(lg, "valid.txt", "missing")
    lg = write_lightgcn(tmp_path / "lg2")
    (lg / "train.txt").write_text("0 1 2\n1 3 abc\n")
    expect_error(lg, "train.txt", "line 2", "field 3 (item id)", "'abc'")
    (lg / "train.txt").write_text("0 1 2\n\n-1 3\n")
    expect_error(lg, "train.txt", "line 3", "user id", "'-1'")
    (lg / "train.txt").write_bytes(b"0 1\n1 \xff\n")
    expect_error(lg, "train.txt", "UTF-8")


def _save(d: Path, name: str, arr) -> None:
    np.save(d / name, arr)


@pytest.mark.parametrize(
    "fname, arr, fragments",
    [
        ("text_feat.npy", np.zeros((4, 3)), ["text_feat.npy", "4 rows found, expected 5"]),
        ("image_feat.npy", np.zeros(5), ["image_feat.npy", "2-D"]),
        ("user_feat.npy", np.zeros((3, 2), np.float32),
         ["user_feat.npy", "3 rows found, expected 4"]),
        ("text_feat.npy", np.array([[0.0], [1.0], [np.nan], [np.inf], [0.0]]),
         ["text_feat.npy", "row 2", "non-finite"]),
        ("image_feat.npy", np.array([[0.0], [1e300], [0.0], [0.0], [0.0]]),
         ["image_feat.npy", "row 1", "non-finite"]),
        ("text_feat.npy", np.array([["a"]] * 5), ["text_feat.npy", "dtype"]),
    ],
)
def test_bad_features(mmrec_dir, fname, arr, fragments):
    _save(mmrec_dir, fname, arr)
    expect_error(mmrec_dir, *fragments)


def test_bad_feature_file_and_missing_modality(mmrec_dir):
    (mmrec_dir / "text_feat.npy").write_bytes(b"not numpy")
    expect_error(mmrec_dir, "text_feat.npy", "not a readable .npy")
    expect_error(mmrec_dir, "audio_feat.npy", "modality 'audio'", modalities=("audio",))


# ----------------------------------------------------------------------------- real data


BABY_ENV = "RECGOAT_BABY_DATA"  # a directory holding MMRec's Baby split (either layout)


def _baby_dir() -> Path:
    """The real Baby split named by $RECGOAT_BABY_DATA (.ci/run sets it where the data
    exist); the test is skipped when it is unset."""
    value = os.environ.get(BABY_ENV, "")
    if not value:
        pytest.skip(f"{BABY_ENV} is not set (a directory with MMRec's Baby split, "
                    "see docs/protocol.md)")
    path = Path(value)
    if not path.is_dir():  # set but wrong: a mistake to report, not a reason to skip
        pytest.fail(f"{BABY_ENV}={value} is not a directory")
    return path


def test_real_baby_split_loads_fast_with_the_right_counts():
    baby = _baby_dir()
    t = time.perf_counter()
    ds = read_dataset(baby, "baby")
    elapsed = time.perf_counter() - t
    assert (ds.n_users, ds.n_items) == (19_445, 7_050)
    assert (ds.train.nnz, ds.valid.nnz, ds.test.nnz) == (118_551, 20_559, 21_682)
    assert ds.report["duplicates"] == 0 and ds.report["dropped_users_no_train"] == 0
    assert len(ds.train.users_with_items()) == 19_445
    assert elapsed < 3.0  # ~0.2 s on an idle 2-core machine; generous for shared CI
