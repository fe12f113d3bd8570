"""MMRec's MF-BPR and LightGCN rows reproduced on the real Amazon Baby split
-> experiments/results/baby_baselines.{json,md}

MMRec's Baby values (lightgcn_baby.yaml, mf_baby.yaml: dim 64, lr 1e-3, batch 2048,
seed 999, Xavier init, early stopping on valid Recall@20, patience 20) over MMRec's grids
(--grid full; the default: its likeliest part, where the published settings sit), the
point chosen on VALID Recall@20; beside it the published numbers (docs/protocol.md).

    python -m experiments.study baselines --data baby=data/baby
    python -m experiments.study baselines --data baby=data/baby --grid full --jobs 2

--data: the Baby split, MMRec layout (baby.inter) or LightGCN layout (train.txt,
valid.txt, test.txt): MMRec's preprocessed baby folder (linked from github.com/enoche/
MMRec's README) or a split built from the raw dumps with make data (docs/protocol.md).
"""

from __future__ import annotations

from recgoat_jax.sweep import Row, Study

DATA = {"baby": {"main": "data/baby"}}
RUNS_DIR, OUT = "runs/baby_baselines", "experiments/results/baby_baselines.json"
PUBLISHED = {  # docs/protocol.md
    "mf": {"recall@10": .0357, "recall@20": .0575, "ndcg@10": .0192, "ndcg@20": .0249},
    "lightgcn": {"recall@10": .0479, "recall@20": .0754, "ndcg@10": .0257, "ndcg@20": .0328},
}
W = "model.emb_loss_weight"
GRIDS = {
    "full": {"lightgcn": tuple((f"model.n_layers={n}", f"{W}={r}") for n in (1, 2, 3, 4)
                               for r in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)),
             "mf": tuple((f"{W}={r}",) for r in (2, 1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5))},
    "default": {"lightgcn": tuple((f"model.n_layers={n}", f"{W}={r}")
                                  for n, r in ((3, 1e-4), (2, 1e-4), (4, 1e-4), (3, 1e-3))),
                "mf": tuple((f"{W}={r}",) for r in (1e-3, 1e-1, 1.0, 1e-5, 1e-2))},
}


def add_arguments(ap) -> None:
    ap.add_argument("--grid", choices=sorted(GRIDS), default="default")


def notes(ds: str, rows: dict) -> list[str]:
    out = []
    for m, r in rows.items():
        p = PUBLISHED[m]
        out += [f"- {m} vs published, test {k}: {r[f'test_{k}']['mean']:.4f} / {p[k]:.4f} "
                f"({(r[f'test_{k}']['mean'] - p[k]) / p[k]:+.1%})"
                for k in p if f"test_{k}" in r]
    return out


def study(datasets, args=None) -> Study:
    grid = GRIDS[getattr(args, "grid", "default")]
    rows = tuple(Row(m, m, f"{m}, MMRec's Baby values", f"{m}_baby.yaml", grid=grid[m])
                 for m in ("lightgcn", "mf"))
    return Study("baselines", "MF-BPR and LightGCN on Amazon Baby (MMRec protocol)", rows,
                 datasets, seeds=(None,), metrics=("recall@10", "recall@20", "ndcg@10", "ndcg@20"),
                 protocol="Seed 999 (the configs'); train.epochs 1000.", notes=notes)


if __name__ == "__main__":
    from experiments.study import main

    raise SystemExit(main("baselines"))
