"""Compare run directories (`recgoat report RUN [RUN ...]`): one row per run with the
config keys that differ between the runs, the best epoch, valid / test Recall@20 and
NDCG@20 at the best valid epoch, and the wall time; read from each run's config.yaml and
results.json (a run without results.json, still running or killed, is read from its
metrics.jsonl and marked partial). No jax import."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml

from recgoat_jax.config import flat_dict
from recgoat_jax.errors import UserError

METRICS = ("recall@20", "ndcg@20")


def read_run(run_dir: str | Path) -> dict:
    """{'run', 'config' (flat), 'best_epoch', 'valid', 'test', 'time_s', 'partial'}."""
    d = Path(run_dir)
    cfg_path = d / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"{d}: no config.yaml there (not a run directory written by "
                        "recgoat train)")
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    row = {"run": str(d), "config": flat_dict(cfg), "partial": False}
    res_path, metrics_path = d / "results.json", d / "metrics.jsonl"
    if res_path.is_file():
        try:
            res = json.loads(res_path.read_text())
        except ValueError:
            raise UserError(f"{res_path}: not valid JSON") from None
        row.update(best_epoch=res.get("best_epoch"), valid=res.get("valid") or {},
                   test=res.get("test") or {}, time_s=res.get("wall_time_s"))
        return row
    # no results.json: the best valid row so far, from metrics.jsonl
    metric = (cfg.get("eval") or {}).get("metric", "recall@20")
    rows = []
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill
    best = max(rows, key=lambda r: r.get("valid", {}).get(metric, -math.inf), default=None)
    row.update(partial=True, best_epoch=best["epoch"] if best else None,
               valid=best.get("valid", {}) if best else {},
               test=best.get("test", {}) if best else {},
               time_s=sum(r.get("epoch_time_s", 0) + r.get("eval_time_s", 0) for r in rows)
               if rows else None)
    return row


def config_differences(runs: list[dict]) -> list[str]:
    """The config keys whose values are not the same in every run (run_dir aside)."""
    keys = sorted(set().union(*(r["config"] for r in runs)))
    return [k for k in keys if k != "run_dir"
            and len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1]


def _num(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def report_table(runs: list[dict]) -> str:
    """A Markdown table, one row per run, in the order given."""
    diff = config_differences(runs)
    head = (["run", "differs"] + ["best epoch"]
            + [f"{s} {m.replace('recall', 'R').replace('ndcg', 'N')}"
               for s in ("valid", "test") for m in METRICS] + ["time"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        differs = ", ".join(f"{k}={r['config'].get(k)}" for k in diff) or "-"
        cells = [Path(r["run"]).name + (" (partial)" if r["partial"] else ""), differs,
                 "-" if r["best_epoch"] is None else str(r["best_epoch"])]
        cells += [_num(r[s].get(m)) for s in ("valid", "test") for m in METRICS]
        cells.append("-" if r["time_s"] is None else f"{r['time_s']:.0f}s")
        lines.append("| " + " | ".join(cells) + " |")
    if len(runs) > 1 and not diff:
        lines.append("(the runs' configs are identical)")
    return "\n".join(lines)


EPILOG = """examples:
  recgoat report runs/demo-recgoat-20260101-120000
  recgoat report runs/demo-*                 # every demo run, compared
  recgoat report runs/a runs/b --json > cmp.json
Columns: the config keys whose values differ between the runs, the best VALID epoch,
valid/test Recall@20 and NDCG@20 at that epoch (results.json), wall time."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (config.yaml + "
                   "results.json)")
    p.add_argument("--json", action="store_true",
                   help="print the rows as JSON instead of a table")
    return p


def run(args) -> int:
    from recgoat_jax.cliutil import run_command

    def command(args) -> int:
        runs = [read_run(d) for d in args.runs]
        if args.json:
            diff = config_differences(runs)
            print(json.dumps([{**{k: v for k, v in r.items() if k != "config"},
                               "differs": {k: r["config"].get(k) for k in diff}}
                              for r in runs], indent=1))
        else:
            print(report_table(runs))
        return 0

    return run_command(command, args)
