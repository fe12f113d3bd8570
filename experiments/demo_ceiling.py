"""How much of the demo data can a model reach, and how much of it is in the content?

The demo generator (recgoat_jax/data/synthetic.py) draws each user's candidates half from
the global popularity prior and half from the user's favourite clusters (by popularity
within the cluster), then keeps the candidates with the largest u.v / T + Gumbel. Scoring
with that rule and the hidden state (generate_with_truth) estimates the data's ceiling:

  oracle     log q_u(i) + u.v_i / T, q_u(i) = 1/2 pop_i / sum(pop)
                                     + 1/2 sum_k w_uk [cluster_i = fav_uk] pop_i / pop(cluster_i)
  pop + u.v  log pop_i + u.v_i / T   (no favourite clusters)
  u.v        u.v_i                   (preference factors only)
  most-pop   train interaction counts

and how well each item view identifies an item's cluster (the hidden variable that drives
most interactions): the share of an item's 10 cosine nearest neighbours in its own cluster,
for the true factors, each modality's features (RecGOAT's item-item kNN input) and the
train co-interaction counts; and, for users, the share of a user's 10 nearest users that
share its top favourite cluster, by each kind of user profile the generator makes.
Results: experiments/results/demo_ceiling.json.

    python experiments/demo_ceiling.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recgoat_jax.data import synthetic, synthetic_sample  # noqa: E402
from recgoat_jax.evaluate import metrics_from_hits  # noqa: E402
from recgoat_jax.train.loop import versions  # noqa: E402

K = 20
NEIGHBOURS = 10


def evaluate(score_fn, ds, split: str) -> dict[str, float]:
    """Recall@20 / NDCG@20 (MMRec protocol: train items masked) of score_fn(users) -> [b, I]."""
    truth = getattr(ds, split)
    users = np.flatnonzero(truth.row_lengths() > 0)
    out = {"recall@20": [], "ndcg@20": []}
    for s in range(0, len(users), 512):
        block = users[s:s + 512]
        scores = np.array(score_fn(block), dtype=np.float64)
        for r, u in enumerate(block):
            scores[r, ds.train.row(u)] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        hits = np.stack([np.isin(top[r], truth.row(u)) for r, u in enumerate(block)])
        m = metrics_from_hits(hits, truth.row_lengths()[block], (K,))
        for k in out:
            out[k].extend(np.asarray(m[k]).tolist())
    return {k: float(np.mean(v)) for k, v in out.items()}


def purity(x: np.ndarray, cluster: np.ndarray) -> float:
    """Share of each row's NEIGHBOURS cosine nearest rows (self excluded) in its cluster."""
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = xn @ xn.T
    np.fill_diagonal(sim, -np.inf)
    nb = np.argsort(-sim, axis=1, kind="stable")[:, :NEIGHBOURS]
    return float(np.mean(cluster[nb] == cluster[:, None]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "demo_ceiling.json"))
    args = p.parse_args(argv)
    ds, t = synthetic.generate_with_truth(**synthetic.DEMO_PARAMS)
    temp = synthetic_sample.TEMPERATURE
    n_clusters = len(t["pop_cluster"])
    fav_mass = np.zeros((ds.n_users, n_clusters))
    for k in range(t["favs"].shape[1]):
        np.add.at(fav_mass, (np.arange(ds.n_users), t["favs"][:, k]), t["w"][:, k])
    g = synthetic_sample.GLOBAL_FRAC
    pop, cl, uf, vf = t["pop"], t["cluster"], t["user_f"], t["item_f"]
    train_pop = np.bincount(ds.train.indices, minlength=ds.n_items).astype(np.float64)

    pop_total = float(t["pop_cluster"].sum())  # before filtering, as the generator drew

    def oracle(u):
        q = (g * pop[None, :] / pop_total
             + (1 - g) * fav_mass[u][:, cl] * pop[None, :] / t["pop_cluster"][cl][None, :])
        return np.log(q) + uf[u] @ vf.T / temp

    rules = {
        "oracle": ("the generator's rule: log q_u(i) + u.v/T", oracle),
        "pop_uv": ("log pop_i + u.v/T (no favourite clusters)",
                   lambda u: np.log(pop)[None, :] + uf[u] @ vf.T / temp),
        "uv": ("u.v only (preference factors)", lambda u: uf[u] @ vf.T),
        "most_pop": ("train interaction counts", lambda u: np.broadcast_to(train_pop, (len(u), ds.n_items))),
    }
    report = {"command": " ".join([Path(sys.executable).name] + sys.argv), "dataset": "demo",
              "generator_version": synthetic.GENERATOR_VERSION, "versions": versions(),
              "rules": {}, "purity": {}}
    for name, (what, fn) in rules.items():
        report["rules"][name] = {"what": what, "valid": evaluate(fn, ds, "valid"),
                                 "test": evaluate(fn, ds, "test")}
        print(f"{name:9s} valid R@20 {report['rules'][name]['valid']['recall@20']:.4f}  {what}")

    co = np.zeros((ds.n_items, ds.n_items))
    for u in range(ds.n_users):  # item x item co-interaction counts (1.5K items: dense is fine)
        items = ds.train.row(u)
        co[np.ix_(items, items)] += 1
    views = {"true item factors": vf, "train co-interactions": co,
             **{f"{m} features": x for m, x in ds.item_features.items()}}
    report["purity"] = {name: purity(x, cl) for name, x in views.items()}
    report["purity"]["chance"] = float(np.mean(cl[None, :] == cl[:, None]))
    # Users: the share of a user's nearest users whose top favourite cluster is its own, by
    # the demo's profiles (taste), by history profiles (what the user's train items show),
    # by the true preference factors and by train interaction rows.
    top_fav = t["favs"][np.arange(ds.n_users), t["w"].argmax(1)]
    hist = synthetic.generate(**synthetic.DEMO_PARAMS, user_profile="history").user_features
    rows = np.zeros((ds.n_users, ds.n_items))
    tu, ti = ds.train.to_pairs()
    rows[tu, ti] = 1
    report["user_purity"] = {
        "profile features (taste, the demo's)": purity(ds.user_features, top_fav),
        "profile features (history)": purity(hist, top_fav),
        "true user factors": purity(uf, top_fav),
        "train interactions": purity(rows, top_fav),
        "chance": float(np.mean(top_fav[None, :] == top_fav[:, None]))}
    img = ds.item_features.get("image")
    if img is not None:  # repeated image rows (generator v1 gave 3% of items the mean row)
        rows, inverse, counts = np.unique(img, axis=0, return_inverse=True, return_counts=True)
        mean_rows = np.flatnonzero(counts[inverse.ravel()] > 1)  # the repeated (mean) row
        report["purity"]["image features, centred"] = purity(img - img.mean(0), cl)
        xn = img / np.linalg.norm(img, axis=1, keepdims=True)
        sim = xn @ xn.T
        np.fill_diagonal(sim, -np.inf)
        nb = np.argsort(-sim, axis=1, kind="stable")[:, :NEIGHBOURS]
        report["image_mean_rows"] = {"items": int(len(mean_rows)),
                                     "share_of_neighbour_slots": float(np.isin(nb, mean_rows).mean())}
    report["feature_stats"] = {}
    for m, x in ds.item_features.items():  # scale and shared direction of each modality
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        n = len(x)
        report["feature_stats"][m] = {
            "mean_row_norm": float(np.linalg.norm(x, axis=1).mean()),
            "mean_pairwise_cosine": float(((xn.sum(0) @ xn.sum(0)) - n) / (n * n - n))}
    for name, v in report["purity"].items():
        print(f"purity {name:28s} {v:.3f}")
    for name, v in report["user_purity"].items():
        print(f"user purity {name:36s} {v:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
