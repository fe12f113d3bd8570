"""Compare run directories (`recgoat report RUN [RUN ...]`): one row per run with the
config keys that differ between the runs, the best epoch, valid / test Recall@20 and
NDCG@20 at the best valid epoch, and the wall time; read from each run's config.yaml and
results.json (a run without results.json, still running or killed, is read from its
metrics.jsonl and marked partial). Also PNG training curves from each run's metrics.jsonl
(curves.py); with --groups, test Recall@20 per user-activity group (results.json's
"groups", evaluate/groups.py). No jax import."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import yaml

from recgoat_jax import curves
from recgoat_jax.config import flat_dict
from recgoat_jax.errors import UserError

log = logging.getLogger(__name__)

METRICS = ("recall@20", "ndcg@20")


def read_run(run_dir: str | Path) -> dict:
    """{'run', 'config' (flat), 'best_epoch', 'valid', 'test', 'time_s', 'partial',
    'groups' ({label: {"n_users", metrics}} of the test split; {} when not recorded),
    'fitted' (a memory-based model fitted in one pass: no epochs, no curves)}."""
    d = Path(run_dir)
    cfg_path = d / "config.yaml"
    if not d.is_dir():
        raise UserError(f"{d}: no such directory (expected a run directory written by "
                        "recgoat train)")
    if not cfg_path.is_file():
        raise UserError(f"{d}: no config.yaml there (not a run directory written by "
                        "recgoat train)")
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    row = {"run": str(d), "config": flat_dict(cfg), "partial": False, "groups": {},
           "fitted": False}
    res_path, metrics_path = d / "results.json", d / "metrics.jsonl"
    if res_path.is_file():
        try:
            res = json.loads(res_path.read_text())
        except ValueError:
            raise UserError(f"{res_path}: not valid JSON") from None
        row.update(best_epoch=res.get("best_epoch"), valid=res.get("valid") or {},
                   test=res.get("test") or {}, time_s=res.get("wall_time_s"),
                   groups=(res.get("groups") or {}).get("test") or {},
                   fitted=bool(res.get("fitted")))
        log.debug(f"{d}: read {res_path.name}")
        return row
    # no results.json: the best valid row so far, from metrics.jsonl
    if not metrics_path.is_file():
        raise UserError(f"{d}: neither results.json nor metrics.jsonl there (expected a run "
                        "directory written by recgoat train)")
    metric = (cfg.get("eval") or {}).get("metric", "recall@20")
    rows = curves.read_metrics(metrics_path)
    log.debug(f"{d}: no results.json, read {len(rows)} rows of {metrics_path.name} (partial)")
    best = max(rows, key=lambda r: r.get("valid", {}).get(metric, -math.inf), default=None)
    row.update(partial=True, best_epoch=best["epoch"] if best else None,
               valid=best.get("valid", {}) if best else {},
               test=best.get("test", {}) if best else {},
               time_s=sum(r.get("epoch_time_s", 0) + r.get("eval_time_s", 0) for r in rows)
               if rows else None)
    return row


def config_differences(runs: list[dict]) -> list[str]:
    """The config keys that every run has and whose values are not the same in all of them
    (run_dir aside). A key only some runs have (another model's section) is left out: its
    difference is model.name's."""
    keys = sorted(set.intersection(*(set(r["config"]) for r in runs))) if runs else []
    return [k for k in keys if k != "run_dir"
            and len({json.dumps(r["config"][k], sort_keys=True) for r in runs}) > 1]


def _num(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def group_labels(runs: list[dict]) -> list[str]:
    """The user-group labels of the runs' results, in first-seen order."""
    return list(dict.fromkeys(label for r in runs for label in r["groups"]))


def report_table(runs: list[dict], groups: bool = False) -> str:
    """A Markdown table, one row per run, in the order given; groups: also test
    Recall@20 per user group ("-" where a run has none recorded)."""
    diff = config_differences(runs)
    labels = group_labels(runs) if groups else []
    head = (["run", "differs"] + ["best epoch"]
            + [f"{s} {m.replace('recall', 'R').replace('ndcg', 'N')}"
               for s in ("valid", "test") for m in METRICS]
            + [f"test R@20 {label}" for label in labels] + ["time"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        differs = ", ".join(f"{k}={r['config'][k]}" for k in diff) or "-"
        cells = [Path(r["run"]).name + (" (partial)" if r["partial"] else ""), differs,
                 "fitted" if r["fitted"] else
                 "-" if r["best_epoch"] is None else str(r["best_epoch"])]
        cells += [_num(r[s].get(m)) for s in ("valid", "test") for m in METRICS]
        cells += [_num(r["groups"].get(label, {}).get(METRICS[0])) for label in labels]
        cells.append("-" if r["time_s"] is None else f"{r['time_s']:.0f}s")
        lines.append("| " + " | ".join(cells) + " |")
    same = [{k: v for k, v in r["config"].items() if k != "run_dir"} for r in runs]
    if len(runs) > 1 and all(c == same[0] for c in same):
        lines.append("(the runs' configs are identical)")
    return "\n".join(lines)


EPILOG = """examples:
  recgoat report runs/demo-recgoat-20260101-120000   # table + RUN/curves.png
  recgoat report runs/demo-* --plots plots/  # plots/<run>.png each, plots/compare.png
  recgoat report runs/a runs/b --json --no-plots > cmp.json
Columns: the config keys that all the runs have and whose values differ, the best VALID
epoch, valid/test Recall@20 and NDCG@20 at that epoch (results.json), wall time; with
--groups, test Recall@20 per group of users by train items (results.json "groups").
A fitted model (itemknn, blend) shows "fitted" as its best epoch and has no curves.
Curves (PNG, 1200x360, from metrics.jsonl): the train loss parts and valid Recall@20 /
NDCG@20 per evaluated epoch; by default written as curves.png into each run directory,
with --plots DIR as DIR/<run name>.png plus DIR/compare.png (every run's valid curves
and total loss on shared axes) when there are several runs. A run without
metrics.jsonl gets no curves (a warning). The table goes to stdout, the 'wrote' lines
to stderr."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from recgoat_jax.cliutil import add_verbosity

    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (config.yaml + "
                   "results.json and/or metrics.jsonl)")
    p.add_argument("--json", action="store_true",
                   help="print the rows as JSON instead of a table")
    p.add_argument("--groups", action="store_true",
                   help="add test Recall@20 per user-activity group (0-4, 5-6, 7-10, >10 "
                        "train items) as columns")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--plots", metavar="DIR",
                   help="write the PNG curves into DIR (created) as <run name>.png, and "
                        "compare.png for several runs (default: RUN/curves.png in each run)")
    g.add_argument("--no-plots", action="store_true", help="the table only, no PNG files")
    return add_verbosity(p)


def _unique_names(runs: list[str]) -> list[str]:
    """Each run's directory name, made unique with -2, -3 ... where two runs share one."""
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        name = Path(r).resolve().name or "run"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _fitted(run: str | Path) -> bool:
    """Whether the run's results.json says it is a fitted (memory-based) model."""
    try:
        return bool(json.loads((Path(run) / "results.json").read_text()).get("fitted"))
    except (OSError, ValueError):
        return False


def write_plots(runs: list[str], plots_dir: str | Path | None = None) -> list[Path]:
    """The PNG curves of the runs (see EPILOG); returns the files written."""
    k = int(METRICS[0].split("@")[1])
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        if plots_dir.exists() and not plots_dir.is_dir():
            raise UserError(f"--plots {plots_dir}: is a file, expected a directory")
        plots_dir.mkdir(parents=True, exist_ok=True)
    written, series = [], {}
    for run, name in zip(runs, _unique_names(runs)):
        path = Path(run) / "metrics.jsonl"
        rows = curves.read_metrics(path) if path.is_file() else []
        if not rows and _fitted(run):
            log.info(f"{run}: fitted in one pass, no training curves")
            continue
        if not rows:
            log.warning(f"{path}: {'no rows' if path.is_file() else 'not there'}; no curves "
                        f"for {run}")
            continue
        series[name] = rows
        out = plots_dir / f"{name}.png" if plots_dir is not None else Path(run) / "curves.png"
        written.append(curves.plot_run(rows, out, title=name, k=k))
    if plots_dir is not None and len(series) > 1:
        written.append(curves.plot_compare(series, plots_dir / "compare.png", k=k))
    return written


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
            print(report_table(runs, groups=args.groups))
        if not args.no_plots:
            write_plots(args.runs, args.plots)
        return 0

    return run_command(command, args)
