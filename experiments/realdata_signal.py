"""How much signal the item text and the user profiles carry, on VALID data.

Simple memory-based recommenders scored with the project's evaluator (full ranking,
train items masked), for each dataset directory:
  popularity          score(u, i) = train count of i
  item kNN, content   score(u, i) = sum_{j in train(u)} cos(text_j, text_i)   (top-k per item)
  item kNN, co-occur. the same with cos of the items' train user columns
  user kNN, profiles  score(u, i) = sum_{v in N(u)} cos(p_u, p_v) [i in train(v)], N(u) the
                      k most similar users by profile embedding (user_feat.npy)
  user kNN, co-inter. the same with cos of the users' train item rows
and how many of a user's profile neighbours are also its co-interaction neighbours: a
profile written from the user's train items can only add what that overlap leaves.

    python experiments/realdata_signal.py --data ml100k-dev=data/ml100k-dev \\
        --data debian-deps-dev=data/debian-deps-dev
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recgoat_jax.config import DataConfig  # noqa: E402
from recgoat_jax.data.load import load_dataset  # noqa: E402
from recgoat_jax.evaluate import Evaluator  # noqa: E402
from recgoat_jax.train.loop import versions  # noqa: E402


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def top_k_rows(sim: np.ndarray, k: int) -> np.ndarray:
    """sim [n, n] with the diagonal excluded -> the same with all but each row's k largest
    entries set to 0."""
    sim = sim.copy()
    np.fill_diagonal(sim, -np.inf)
    keep = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    out = np.zeros_like(sim)
    rows = np.arange(sim.shape[0])[:, None]
    out[rows, keep] = sim[rows, keep]
    return out


def signal(data_dir: str, k_items: int, k_users: int) -> dict:
    ds = load_dataset(DataConfig(dataset=data_dir))
    users, items = ds.train.to_pairs()
    r = np.zeros((ds.n_users, ds.n_items), np.float64)
    r[users, items] = 1.0
    ev = Evaluator(ds, ks=(20,))

    def score(user_emb, item_emb) -> dict:
        res = ev.evaluate(np.asarray(user_emb, np.float32), np.asarray(item_emb, np.float32), "valid")
        return {"recall@20": res["recall@20"], "ndcg@20": res["ndcg@20"]}

    out = {"n_users": ds.n_users, "n_items": ds.n_items, "train": int(ds.train.nnz),
           "density": float(ds.train.nnz) / (ds.n_users * ds.n_items),
           "popularity": score(np.ones((ds.n_users, 1)), r.sum(0)[:, None])}
    co_items = top_k_rows(_unit(r.T) @ _unit(r.T).T, k_items)
    out["item_knn_cooccurrence"] = score(r, co_items)  # scores = R @ S^T
    for m, feats in ds.item_features.items():
        s = top_k_rows(_unit(feats) @ _unit(feats).T, k_items)
        out[f"item_knn_content_{m}"] = score(r, s)
    co_users = top_k_rows(_unit(r) @ _unit(r).T, k_users)
    out["user_knn_cointeraction"] = score(co_users, r.T)  # scores = W @ R
    if ds.user_features is not None:
        prof = top_k_rows(_unit(ds.user_features) @ _unit(ds.user_features).T, k_users)
        out["user_knn_profiles"] = score(prof, r.T)
        overlap = ((prof != 0) & (co_users != 0)).sum(1) / np.maximum((prof != 0).sum(1), 1)
        out["profile_neighbours_also_cointeraction_neighbours"] = float(overlap.mean())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", default=[], metavar="NAME=DIR",
                   help="dataset directory (repeatable)")
    p.add_argument("--k-items", type=int, default=50, help="neighbours per item (50)")
    p.add_argument("--k-users", type=int, default=50, help="neighbours per user (50)")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "realdata_signal.json"))
    args = p.parse_args(argv)
    if not args.data:
        p.error("give at least one --data NAME=DIR")
    report = {"command": " ".join(["python"] + sys.argv), "versions": versions(),
              "k_items": args.k_items, "k_users": args.k_users, "split": "valid", "datasets": {}}
    for pair in args.data:
        name, sep, d = pair.partition("=")
        if not sep or not Path(d).is_dir():
            p.error(f"--data {pair!r}: expected NAME=DIR with an existing directory")
        report["datasets"][name] = signal(d, args.k_items, args.k_users)
        print(name, json.dumps(report["datasets"][name], indent=1))
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
