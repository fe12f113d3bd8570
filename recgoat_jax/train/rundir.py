"""What every run directory and results.json share, trained (train/loop.py) or fitted
(train/fit.py): the versions record, the default directory name, the per-group test
metrics and the printed results."""

from __future__ import annotations

import time
from pathlib import Path

from recgoat_jax.config import Config
from recgoat_jax.evaluate import activity_groups, format_table, group_metrics
from recgoat_jax.provenance import versions  # results.json's record (re-exported here)


def default_run_dir(cfg: Config, dataset_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{dataset_name}-{cfg.model.name}-{stamp}"


def log_data(dataset, log) -> None:
    """The data summary and what loading noticed."""
    log(dataset.summary())
    for k, v in dataset.report.items():
        log(f"  data note: {k} = {v}")


def group_results(evaluator, user_emb, item_emb) -> dict:
    """results.json's "groups": {"test": {label: {"n_users", metrics}}} by user activity
    (train items per user, evaluate/groups.py ACTIVITY_BUCKETS)."""
    groups = activity_groups(evaluator.dataset)
    return {"test": group_metrics(evaluator, user_emb, item_emb, "test", groups)}


def groups_line(groups: dict, metric: str) -> str:
    """'test recall@20 by train items per user: 0-4 (812 users) 0.3101 | ...'."""
    cells = [f"{label} ({g['n_users']} users) "
             + (f"{g[metric]:.4f}" if metric in g else "-")
             for label, g in groups["test"].items()]
    return f"test {metric} by train items per user: " + " | ".join(cells)


def print_results(out, title: str, test: dict, ks, run_dir: Path) -> None:
    """The command's results: a title line, the test table, the run directory."""
    if test:
        out(title)
        out(format_table(test, ks))
    out(f"run directory: {run_dir}")
