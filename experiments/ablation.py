"""RecGOAT ablation on the built-in demo dataset: what each part adds.

Every variant is trained with several seeds from experiments/configs/recgoat_demo.yaml
(LightGCN from experiments/configs/lightgcn.yaml with the same batch size and learning
rate, but trained to convergence by early stopping, since its epochs are cheap). Test
Recall@20 / NDCG@20 at the best VALID epoch, mean +- std over seeds, go to
experiments/results/demo_ablation.{json,md}; both are rewritten after every finished run
and finished runs are skipped on a rerun, so an interrupted ablation loses nothing.

    python experiments/ablation.py                      # all variants, seeds 0 1 2
    python experiments/ablation.py --variants full_paper,lightgcn --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from recgoat_jax.config import make_config  # noqa: E402
from recgoat_jax.data.load import load_dataset  # noqa: E402
from recgoat_jax.train.loop import train, versions  # noqa: E402

# name -> (description, base config, overrides)
VARIANTS = {
    "lightgcn": ("LightGCN (ID only), trained to convergence", "lightgcn",
                 ["train.epochs=300", "train.patience=20"]),
    "lightgcn_budget": ("LightGCN, best valid within the RecGOAT epoch budget (same runs)",
                        "lightgcn", []),
    "full_paper": ("RecGOAT full, paper OAT + paper CMCL", "recgoat_demo", []),
    "full_reference": ("RecGOAT full, released-code OAT + CMCL", "recgoat_demo",
                       ["model.oat=reference", "model.cmcl=reference", "train.lambda_ot=0"]),
    "no_cmcl": ("without CMCL (lambda_cl = 0)", "recgoat_demo", ["model.cmcl=none"]),
    "no_oat": ("without OAT (fusion sum)", "recgoat_demo",
               ["model.oat=none", "model.fusion=sum", "train.lambda_ot=0"]),
    "no_item_gat": ("without item GAT (projection only)", "recgoat_demo", ["model.item_gat=false"]),
    "no_user_branch": ("without user-user branch", "recgoat_demo", ["model.user_branch=off"]),
    "text_only": ("text only", "recgoat_demo", ["data.modalities=[text]"]),
    "image_only": ("image only", "recgoat_demo", ["data.modalities=[image]"]),
}


def config_for(variant: str, seed: int, epochs: int | None):
    _, base, overrides = VARIANTS[variant]
    sets = list(overrides) + [f"train.seed={seed}", "train.checkpoint=false"]
    if variant == "lightgcn":  # same optimisation settings as the RecGOAT runs
        demo = make_config(ROOT / "experiments" / "configs" / "recgoat_demo.yaml")
        sets += [f"train.batch_size={demo.train.batch_size}", f"train.lr={demo.train.lr}"]
    elif epochs:
        sets.append(f"train.epochs={epochs}")
    return make_config(ROOT / "experiments" / "configs" / f"{base}.yaml", sets)


def at_budget(run_dir: Path, epochs: int) -> dict | None:
    """Test metrics at the best valid epoch among the first `epochs` evaluations of a run
    (its metrics.jsonl): LightGCN under the RecGOAT runs' epoch budget, no extra training."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["epoch"] < epochs]
    best = max(rows, key=lambda r: r["valid"]["recall@20"])
    return {"best_epoch": best["epoch"], "valid": best["valid"], "test": best["test"]}


def summarise(runs: dict) -> dict:
    out = {}
    for variant in VARIANTS:
        rs = [r for k, r in runs.items() if k.split("|")[0] == variant]
        if not rs:
            continue
        row = {"n_seeds": len(rs), "seeds": sorted(r["seed"] for r in rs)}
        for metric in ("recall@20", "ndcg@20"):
            vals = [r["test"][metric] for r in rs]
            row[metric] = {"mean": statistics.fmean(vals),
                           "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                           "values": vals}
        row["best_epochs"] = [r["best_epoch"] for r in rs]
        row["epoch_time_s_median"] = statistics.median(r["epoch_time_s_median"] for r in rs)
        out[variant] = row
    return out


def write(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    s = report["summary"]
    lines = ["# RecGOAT ablation on the demo dataset", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {report['versions']['platform']}, {report['versions']['device']}; "
             "shared with other jobs while it ran, so times are indicative only.", "",
             "Test metrics at the best VALID epoch; mean +- std over seeds.", "",
             "| variant | what | seeds | test Recall@20 | test NDCG@20 | best epochs | s/epoch |",
             "|---|---|---|---|---|---|---|"]
    for v, row in s.items():
        r, n = row["recall@20"], row["ndcg@20"]
        lines.append(f"| {v} | {VARIANTS[v][0]} | {row['n_seeds']} | {r['mean']:.4f} +- "
                     f"{r['std']:.4f} | {n['mean']:.4f} +- {n['std']:.4f} | "
                     f"{row['best_epochs']} | {row['epoch_time_s_median']:.1f} |")
    for ref in ("lightgcn", "lightgcn_budget"):
        if ref in s and "full_paper" in s:
            a, b = s["full_paper"]["recall@20"]["mean"], s[ref]["recall@20"]["mean"]
            lines += ["", f"RecGOAT full (paper) vs {ref}, test Recall@20: {a:.4f} vs {b:.4f} "
                      f"({(a - b) / b:+.1%})."]
    lines += ["", report.get("note", "")]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def finish(out: Path, report: dict, runs_dir: Path) -> None:
    budget = make_config(ROOT / "experiments" / "configs" / "recgoat_demo.yaml").train.epochs
    for key, r in list(report["runs"].items()):
        if r["variant"] == "lightgcn":
            b = at_budget(runs_dir / key.replace("|", "_"), budget)
            if b is not None:
                report["runs"][f"lightgcn_budget|seed={r['seed']}"] = {
                    **r, **b, "variant": "lightgcn_budget", "epochs_run": budget}
    report["summary"] = summarise(report["runs"])
    write(out, report)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "lightgcn_budget"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=None, help="RecGOAT epoch budget (default: config)")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "demo_ablation.json"))
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "ablation"))
    p.add_argument("--summarise-only", action="store_true",
                   help="rewrite the JSON/markdown from finished runs (adds LightGCN at the "
                        "RecGOAT epoch budget, read from its metrics.jsonl)")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; expected some of {', '.join(VARIANTS)}")
    seeds = [int(x) for x in args.seeds.split(",")]
    # The seeds of a variant share one program: compile it once (persistent XLA cache).
    jax.config.update("jax_compilation_cache_dir", str(ROOT / ".cache" / "jax-ablation"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.update({"command": " ".join([Path(sys.executable).name] + sys.argv),
                   "dataset": "demo", "versions": versions(),
                   "variants": {k: {"what": v[0], "config": v[1], "overrides": v[2]}
                                for k, v in VARIANTS.items()}})
    report.setdefault("runs", {})
    if args.summarise_only:
        finish(out, report, Path(args.runs_dir))
        return 0
    ds = None
    for seed in seeds:  # seed-major, so a partial ablation still covers every variant
        for v in variants:
            key = f"{v}|seed={seed}"
            if key in report["runs"]:
                continue
            cfg = config_for(v, seed, args.epochs)
            ds = ds if ds is not None and cfg.data.modalities == () else load_dataset(cfg.data)
            t0 = time.time()
            res = train(cfg, run_dir=Path(args.runs_dir) / key.replace("|", "_"), dataset=ds,
                        progress=False, log=lambda s: print(f"[{key}] {s}", flush=True))
            keep = ("best_epoch", "valid", "test", "epochs_run", "epoch_time_s_median",
                    "eval_time_s_median", "compile_time_s")
            report["runs"][key] = {"variant": v, "seed": seed, "total_s": time.time() - t0,
                                   **{k: res[k] for k in keep}}
            finish(out, report, Path(args.runs_dir))
            if cfg.data.modalities:
                ds = None  # next variant reloads all modalities
    return 0


if __name__ == "__main__":
    sys.exit(main())
