"""Do results reproduce across a change of the code? -> experiments/results/reproduce_check.json

Trains a fixed set of short runs (a few epochs each, no early stopping) and records every
epoch's loss terms and valid/test metrics at full precision, with the commit they ran at:

  baby_lightgcn   LightGCN, MMRec's Baby values (lightgcn_baby.yaml), the real Baby split
  demo_recgoat    RecGOAT as `make train` runs it (recgoat_demo.yaml), the demo data
  real_recgoat    RecGOAT's real-data defaults (recgoat.yaml) on a built dev set
  real_freedom    FREEDOM (freedom.yaml) on the same set

    python -m experiments.reproduce_check --baby DIR --real DIR --label before
    ... change the code ...
    python -m experiments.reproduce_check --baby DIR --real DIR --label after

Each call adds its label to the JSON; once two labels are there, the report compares them
run by run: equal bit for bit, or the largest absolute difference of any recorded number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recgoat_jax import provenance

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = ROOT / "recgoat_jax" / "configs"
RUNS = {  # name -> (config file, dataset flag, epochs)
    "baby_lightgcn": ("lightgcn_baby.yaml", "baby", 2),
    "demo_recgoat": ("recgoat_demo.yaml", None, 2),
    "real_recgoat": ("recgoat.yaml", "real", 3),
    "real_freedom": ("freedom.yaml", "real", 3),
}


def flat_numbers(row: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics.jsonl row (times left out: they never reproduce)."""
    out = {}
    for k, v in row.items():
        if k.endswith("time_s") or k == "diagnostics":
            continue
        if isinstance(v, dict):
            out.update(flat_numbers(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)):
            out[f"{prefix}{k}"] = float(v)
    return out


def run(name: str, data: dict, runs_dir: Path) -> list[dict]:
    from recgoat_jax.config import make_config
    from recgoat_jax.train.loop import train

    cfg_file, which, epochs = RUNS[name]
    sets = [f"train.epochs={epochs}", "run.checkpoint=false", "run.tensorboard=false"]
    if which is not None:
        sets.append(f"data.dataset={data[which]}")
    cfg = make_config(CONFIGS / cfg_file, sets)
    run_dir = runs_dir / name
    train(cfg, run_dir=run_dir, progress=False, log=lambda s: print(f"[{name}] {s}", flush=True))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return [flat_numbers(r) for r in rows]


def compare(a: list[dict], b: list[dict]) -> dict:
    if len(a) != len(b):
        return {"equal": False, "note": f"{len(a)} vs {len(b)} epochs"}
    worst, where = 0.0, None
    for i, (ra, rb) in enumerate(zip(a, b)):
        for k in sorted(set(ra) | set(rb)):
            if k not in ra or k not in rb:
                return {"equal": False, "note": f"epoch {i}: {k} only on one side"}
            d = abs(ra[k] - rb[k])
            if d > worst:
                worst, where = d, f"epoch {i} {k}"
    return {"equal": worst == 0.0, "max_abs_diff": worst, "at": where}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--baby", required=True, metavar="DIR", help="the Baby split (train.txt ...)")
    ap.add_argument("--real", required=True, metavar="DIR", help="a built dev set (make data/features)")
    ap.add_argument("--label", required=True, help="e.g. before / after")
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated (%(default)s)")
    ap.add_argument("--runs-dir", default="runs/reproduce_check")
    ap.add_argument("--out", default=str(ROOT / "experiments/results/reproduce_check.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {"labels": {}}
    entry = {**provenance.header(), "runs": {}}
    data = {"baby": args.baby, "real": args.real}
    for name in [r for r in args.runs.split(",") if r]:
        entry["runs"][name] = run(name, data, Path(args.runs_dir) / args.label)
    report["labels"][args.label] = entry
    labels = list(report["labels"])
    if len(labels) >= 2:
        a, b = report["labels"][labels[0]], report["labels"][labels[-1]]
        report["comparison"] = {
            "of": [labels[0], labels[-1]],
            "runs": {n: compare(a["runs"][n], b["runs"][n]) for n in a["runs"] if n in b["runs"]}}
        print(json.dumps(report["comparison"], indent=2))
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
