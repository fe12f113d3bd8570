"""What every run directory and results.json share, trained (train/loop.py) or fitted
(train/fit.py): the versions record, the default directory name, the per-group test
metrics and the printed results."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import jax
import numpy as np
import optax

from recgoat_jax import hostmem
from recgoat_jax.config import Config
from recgoat_jax.evaluate import activity_groups, format_table, group_metrics


def versions() -> dict:
    import flax
    import jaxlib

    dev = jax.devices()[0]
    return {"python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "machine": platform.machine(),
            "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
            "n_devices": jax.device_count(),
            "host_malloc": hostmem.setting()["malloc"]}


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
