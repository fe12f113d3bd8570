"""Defaults as a user gets them -> experiments/results/defaults.{json,md}

Per dataset and model: the shipped config `make train DATASET=<dir> MODEL=<model>` picks,
no overrides, its own seed and early-stopping rule, one run; beside it the model's tuned
3-seed mean from realdata.json (--tuned), the ratio, and whether the default is within 2%.

    make data DATASET=data/debian-deps-dev ARGS="--raw <dir>/reviews_DEB_dev.json <dir>/meta_DEB.json"
    make features DATASET=data/debian-deps-dev
    python -m experiments.study defaults --data debian-deps-dev=data/debian-deps-dev \\
        --data ml100k-dev=data/ml100k-dev
    python -m experiments.study defaults ... --rows mf --seeds 0,1,2   # a seed's luck
"""

from __future__ import annotations

import json
from pathlib import Path

from recgoat_jax.sweep import Row, Study

DATA = {"debian-deps-dev": {"main": "data/debian-deps-dev"},
        "ml100k-dev": {"main": "data/ml100k-dev"}}
RUNS_DIR, OUT = "runs/defaults", "experiments/results/defaults.json"
MODELS = ("mf", "lightgcn", "freedom", "recgoat")
GOAL = 0.02  # a default may be at most 2% below its model's tuned mean


def add_arguments(ap) -> None:
    ap.add_argument("--tuned", default="experiments/results/realdata.json",
                    help="the realdata report with the tuned means (%(default)s)")


def tuned_notes(tuned_path: str):
    tuned = json.loads(Path(tuned_path).read_text()) if Path(tuned_path).is_file() else {}

    def notes(ds: str, rows: dict) -> list[str]:
        out = []
        for m, r in rows.items():
            t = tuned.get("summary", {}).get(ds, {}).get(m, {}).get("test_recall@20")
            if t and "test_recall@20" in r:
                ratio = r["test_recall@20"]["mean"] / t["mean"]
                out.append(f"- {m}: default / tuned ({Path(tuned_path).name}: {t['mean']:.4f} "
                           f"+- {t['std']:.4f}) = {ratio:.3f}, within {GOAL:.0%}: "
                           f"{'yes' if ratio >= 1 - GOAL else '**no**'}")
        if all("test_recall@20" in rows.get(m, {}) for m in ("recgoat", "lightgcn")):
            out.append(f"- RecGOAT default / LightGCN default: "
                       f"{rows['recgoat']['test_recall@20']['mean'] / rows['lightgcn']['test_recall@20']['mean']:.3f}")
        return out
    return notes


def study(datasets, args=None) -> Study:
    return Study("defaults", "Defaults as a user gets them",
                 tuple(Row(m, m, f"`make train MODEL={m}`, shipped config") for m in MODELS),
                 datasets, seeds=(None,),
                 protocol="No overrides: the shipped config for the model and dataset (as `make "
                          "train` picks it), its seed and early-stopping rule; seeds column: "
                          "runs. Goal: every default within 2% of its tuned mean; RecGOAT's "
                          "default not below LightGCN's.",
                 notes=tuned_notes(getattr(args, "tuned", "experiments/results/realdata.json")))


if __name__ == "__main__":
    from experiments.study import main

    raise SystemExit(main("defaults"))
