"""recgoat_jax.recommend: exported top-K lists of a tiny trained LightGCN run.

The key check scores the exported lists with a NumPy scorer written here (reading the
truth straight from the .inter file, not through the project's reader or evaluator) and
compares with the run's results.json: the lists of the best checkpoint must reproduce
the test metrics of the best valid epoch.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recgoat_jax.errors import UserError
from recgoat_jax.recommend import load_run, main, read_users, recommend

K = 20
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from recgoat_jax.config import make_config
    from recgoat_jax.data import synthetic
    from recgoat_jax.train.loop import train

    root = tmp_path_factory.mktemp("rec")
    ds = synthetic.generate(n_users=200, n_items=120, n_interactions=2500, feature_dims={},
                            seed=0, name="tiny")
    inter = synthetic.write_mmrec(ds, root / "tiny")
    cfg = make_config(overrides=[
        f"data.dataset={root / 'tiny'}", "model.name=lightgcn", "model.dim=16",
        "model.n_layers=2", "train.epochs=4", "train.batch_size=256", "train.lr=0.01",
        "eval.ks=[10,20]"])
    results = train(cfg, run_dir=root / "run", progress=False, log=lambda *a: None)
    return {"dir": root / "run", "inter": inter, "results": results, "root": root}


def _splits(inter: Path) -> dict[str, dict[int, set[int]]]:
    """{split: {user: items}} straight from the .inter file (x_label 0/1/2)."""
    rows = np.loadtxt(inter, dtype=np.int64, skiprows=1, delimiter="\t", ndmin=2)
    out: dict[str, dict[int, set[int]]] = {"train": {}, "valid": {}, "test": {}}
    for u, i, _, _, s in rows.tolist():
        out[("train", "valid", "test")[s]].setdefault(u, set()).add(i)
    return out


def _score(lists: dict[int, list[int]], truth: dict[int, set[int]], k: int) -> dict:
    """recall = hits / |truth|; ndcg = DCG / IDCG with IDCG over min(|truth|, k) ranks;
    averaged over users with truth."""
    rec, ndcg = [], []
    for u, t in truth.items():
        ranked = lists[u][:k]
        hits = [r for r, i in enumerate(ranked, start=1) if i in t]
        rec.append(len(hits) / len(t))
        dcg = sum(1.0 / np.log2(r + 1) for r in hits)
        idcg = sum(1.0 / np.log2(r + 1) for r in range(1, min(len(t), k) + 1))
        ndcg.append(dcg / idcg)
    return {f"recall@{k}": float(np.mean(rec)), f"ndcg@{k}": float(np.mean(ndcg))}


def _read_csv(path: Path) -> dict[int, list[int]]:
    lists: dict[int, list[tuple[int, int]]] = {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        lists.setdefault(int(r["userID"]), []).append((int(r["rank"]), int(r["itemID"])))
    return {u: [i for _, i in sorted(v)] for u, v in lists.items()}


@pytest.mark.slow  # uses the trained run
def test_exported_lists_reproduce_test_metrics(run, tmp_path):
    out = tmp_path / "recs.csv"
    assert main(["--run-dir", str(run["dir"]), "--k", str(K), "--out", str(out)]) == 0
    lists = _read_csv(out)
    splits = _splits(run["inter"])
    assert set(lists) == set(splits["train"])  # default: every user with train items
    assert all(len(v) == K for v in lists.values())
    got = _score(lists, splits["test"], K)
    want = run["results"]["test"]
    assert want["recall@20"] > 0.05  # the model learned something
    for key, value in got.items():
        assert value == pytest.approx(want[key], abs=1e-5), key
    # the valid metrics of the best epoch follow too (valid items are not masked, as in
    # evaluation), and JSONL carries the same lists as CSV
    jl = tmp_path / "recs.jsonl"
    assert main(["--run-dir", str(run["dir"]), "--out", str(jl)]) == 0
    recs = [json.loads(line) for line in jl.read_text().splitlines()]
    assert {r["user"]: r["items"] for r in recs} == lists
    assert all(r["scores"] == sorted(r["scores"], reverse=True) for r in recs)
    got_v = _score(lists, splits["valid"], K)
    assert got_v["recall@20"] == pytest.approx(run["results"]["valid"]["recall@20"], abs=1e-5)


@pytest.mark.slow  # uses the trained run
def test_train_items_masked_unless_asked(run):
    loaded = load_run(run["dir"])
    assert loaded.epoch == run["results"]["best_epoch"]
    train = _splits(run["inter"])["train"]
    users, items, scores = recommend(run["dir"], k=K, run=loaded)
    assert items.shape == scores.shape == (len(users), K)
    assert np.isfinite(scores).all()
    for u, row in zip(users.tolist(), items.tolist()):
        assert not set(row) & train[u]
    users2, items2, _ = recommend(run["dir"], k=K, mask_train=False, run=loaded)
    np.testing.assert_array_equal(users, users2)
    seen = sum(len(set(row) & train[u]) for u, row in zip(users2.tolist(), items2.tolist()))
    assert seen > 0  # a trained model ranks (some) train items at the top


@pytest.mark.slow  # uses the trained run
def test_users_file_subset_and_latest(run, tmp_path):
    full_users, full_items, full_scores = recommend(run["dir"], k=5)
    pick = [int(full_users[7]), int(full_users[2]), int(full_users[7]), int(full_users[30])]
    f = tmp_path / "users.txt"
    f.write_text(f"# users\n{pick[0]}\n\n{pick[1]}\n{pick[2]}  # again\n{pick[3]}\n")
    out = tmp_path / "sub.jsonl"
    assert main(["--run-dir", str(run["dir"]), "--users", str(f), "--k", "5",
                 "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in recs] == pick
    where = {u: j for j, u in enumerate(full_users.tolist())}
    for r in recs:
        assert r["items"] == full_items[where[r["user"]]].tolist()
    np.testing.assert_array_equal(read_users(f, 10_000), pick)
    # the latest checkpoint loads too (here the last epoch)
    assert load_run(run["dir"], "latest").epoch == run["results"]["epochs_run"] - 1


@pytest.mark.slow  # uses the trained run
@pytest.mark.parametrize("content, line", [("3\nabc\n", 2), ("1\n-4\n", 2),
                                            ("\n\n99999\n", 3), ("2\n1.5\n", 2)])
def test_bad_users_file(run, tmp_path, capsys, content, line):
    f = tmp_path / "bad_users.txt"
    f.write_text(content)
    assert main(["--run-dir", str(run["dir"]), "--users", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(f) in err and f"line {line}" in err


@pytest.mark.slow  # uses the trained run
def test_user_errors_are_one_line(run, tmp_path, capsys):
    cases = [
        ["--run-dir", str(tmp_path)],                                   # not a run dir
        ["--run-dir", str(tmp_path / "missing")],
        ["--run-dir", str(run["dir"]), "--k", "100000"],
        ["--run-dir", str(run["dir"]), "--out", str(tmp_path / "x.txt")],
        ["--run-dir", str(run["dir"]), "--users", str(tmp_path / "nope.txt")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    with pytest.raises(UserError):
        recommend(run["dir"], users=[10_000])
    # a run without a best checkpoint
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text((run["dir"] / "config.yaml").read_text())
    assert main(["--run-dir", str(bare)]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_cli_help():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "recgoat_jax.recommend", "--help"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0
    for word in ("--run-dir", "--users", "--no-mask-train", "--checkpoint", "userID,rank"):
        assert word in p.stdout
    p = subprocess.run([sys.executable, "-m", "recgoat_jax.recommend"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 2 and "--run-dir" in p.stderr


def test_write_recommendations_and_read_users_by_hand(tmp_path):
    # no trained run (fast): the output formats and the users file, hand-made inputs
    import io

    from recgoat_jax.recommend import write_recommendations

    users = np.array([3, 0])
    items = np.array([[7, 1, 4], [2, 5, 6]], np.int32)
    scores = np.array([[2.5, 0.1, -np.inf], [1.0, -0.5, -2.0]], np.float32)  # one masked
    f = io.StringIO()
    assert write_recommendations(f, users, items, scores, "csv") == 5
    assert f.getvalue().splitlines() == ["userID,rank,itemID,score", "3,1,7,2.5", "3,2,1,0.1",
                                         "0,1,2,1.0", "0,2,5,-0.5", "0,3,6,-2.0"]
    f = io.StringIO()
    assert write_recommendations(f, users, items, scores, "jsonl") == 5
    assert [json.loads(x) for x in f.getvalue().splitlines()] == [
        {"user": 3, "items": [7, 1], "scores": [2.5, 0.1]},
        {"user": 0, "items": [2, 5, 6], "scores": [1.0, -0.5, -2.0]}]
    with pytest.raises(UserError, match="--format 'tsv'"):
        write_recommendations(io.StringIO(), users, items, scores, "tsv")
    p = tmp_path / "users.txt"
    p.write_text("# header\n4\n\n  2  # again\n4\n")
    np.testing.assert_array_equal(read_users(p, 5), [4, 2, 4])
    p.write_text("1\n5\n")
    with pytest.raises(UserError, match=r"line 2: user id 5 out of range; expected 0\.\.4"):
        read_users(p, 5)
    p.write_text("# nothing\n")
    with pytest.raises(UserError, match="no user ids"):
        read_users(p)
    with pytest.raises(UserError, match="file not found"):
        read_users(tmp_path / "missing.txt")
