"""data/cli.py (`make data`) and its alias `features.cli data`; the one dataset resolver."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgoat_jax.data import cli as data_cli
from recgoat_jax.data.load import resolve_dataset_dir
from recgoat_jax.errors import DataError
from recgoat_jax.features import cli as features_cli

RAW = Path(__file__).parent / "fixtures" / "raw"


def test_data_cli_and_alias_write_the_same_files(tmp_path, capsys):
    args = ["--raw", str(RAW / "reviews_Toy_2018.json"), str(RAW / "meta_Toy_2018.json.gz"),
            "--k-core", "3", "--seed", "7", "--split", "7:2:1", "--name", "toy", "--quiet"]
    assert data_cli.main(["--dataset", str(tmp_path / "a"), *args]) == 0
    assert features_cli.main(["data", "--dataset", str(tmp_path / "b"), *args]) == 0
    for f in ("toy.inter", "u_id_mapping.csv", "i_id_mapping.csv", "item_meta.jsonl"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_data_cli_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert data_cli.main(["--dataset", str(f), "--raw", str(RAW / "ratings_Toy.csv")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --dataset {f}: is a file, expected a dataset directory or a name\n"


def test_resolver_both_orders(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    Path("x").mkdir()
    # the trainer looks under root first, the CLIs at ./x first (each kept its order)
    assert resolve_dataset_dir("x", root) == root / "x"
    assert resolve_dataset_dir("x", root, option="--dataset") == Path("x")
    assert resolve_dataset_dir("new", root, must_exist=False, option="--dataset") == root / "new"
    assert resolve_dataset_dir("./new", root, must_exist=False, option="--dataset") == Path("new")
    with pytest.raises(DataError, match=r"^--dataset nope: no such directory"):
        resolve_dataset_dir("nope", root, option="--dataset")
    with pytest.raises(DataError, match=r"^dataset 'nope' not found"):
        resolve_dataset_dir("nope", root)
