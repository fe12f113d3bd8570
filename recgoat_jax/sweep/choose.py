"""A row's grid point chosen on VALID, and its runs summed up over seeds.

Pure functions of run results (results.json dicts); where they come from is the
runner's business (`lookup(key) -> dict | None`).

    best_point([0.31, None, 0.35, 0.33]) -> 2        # missing or failed points skipped
    mean_std([0.30, 0.32]) -> {"mean": 0.31, "std": 0.0141.., "values": [0.30, 0.32]}
"""

from __future__ import annotations

import statistics
from typing import Callable, Sequence

from recgoat_jax.sweep.spec import Row, Study


def best_point(valid: Sequence[float | None]) -> int | None:
    """Index of the largest valid metric (the first of equals); None if none ran."""
    best = None
    for i, v in enumerate(valid):
        if v is not None and (best is None or v > valid[best]):
            best = i
    return best


def mean_std(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (0 for one value) over seeds."""
    vals = [float(v) for v in values]
    return {"mean": statistics.fmean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "values": vals}


def bucket_means(per_seed: list[dict]) -> dict:
    """{bucket label: {n_users, metric: mean over the seeds that have it}}; per_seed:
    one {label: {"n_users", metric: value}} per seed (a bucket without users: no metric)."""
    out = {}
    for label in per_seed[0] if per_seed else ():
        cells = [b[label] for b in per_seed if len(b.get(label, {})) > 1]
        if cells:
            out[label] = {"n_users": cells[0]["n_users"],
                          **{m: statistics.fmean(c[m] for c in cells)
                             for m in cells[0] if m != "n_users"}}
    return out


def run_key(dataset: str, row: str, point: int, seed: int | None) -> str:
    """The run's directory under the runs dir: <dataset>/<row>/p<point>_s<seed>."""
    return f"{dataset}/{row}/p{point}" + ("" if seed is None else f"_s{seed}")


def chosen(study: Study, dataset: str, row: Row, lookup: Callable) -> tuple[int | None, list]:
    """(the chosen grid point of `row` (an ablation: of its parent) on `dataset`, the grid
    with each point's valid metric at the first seed)."""
    base = study.row(row.parent) if row.parent else row
    seed = study.seeds_of(base)[0]
    grid = []
    for i, point in enumerate(base.grid):
        res = lookup(run_key(dataset, base.name, i, seed))
        grid.append({"point": i, "overrides": [*base.fixed, *point],
                     "valid": (res or {}).get("valid", {}).get(study.choose_on),
                     "failed": (res or {}).get("failed")})
    return best_point([g["valid"] for g in grid]), grid


def summarise(study: Study, datasets: list[str], lookup: Callable) -> dict:
    """{dataset: {row: summary}} for every row that has a chosen point there: test (and
    valid) metrics mean +- std over the seeds that finished, best epochs, s/epoch,
    metrics by user bucket, failures."""
    out = {}
    for ds in datasets:
        rows = {}
        for row in study.rows:
            i, grid = chosen(study, ds, row, lookup)
            if i is None:
                continue
            runs = {s: lookup(run_key(ds, row.name, i, s)) for s in study.seeds_of(row)}
            done = {s: r for s, r in runs.items() if r and r.get("test")}
            s_row = {"what": row.what, "chosen_point": i,
                     "overrides": study.overrides(row, i),
                     "grid": "parent's chosen point" if row.parent else grid,
                     "n_seeds": len(done),
                     "failed": {str(s): r["failed"] for s, r in runs.items()
                                if r and r.get("failed")}}
            if done:
                rs = list(done.values())
                for m in study.metrics:
                    s_row[f"test_{m}"] = mean_std([r["test"][m] for r in rs])
                s_row[f"valid_{study.choose_on}"] = mean_std(
                    [r["valid"][study.choose_on] for r in rs])
                s_row["best_epochs"] = [r.get("best_epoch") for r in rs]
                s_row["epochs_run"] = [r.get("epochs_run") for r in rs]
                times = [r["epoch_time_s_median"] for r in rs
                         if r.get("epoch_time_s_median") is not None]
                s_row["s_per_epoch"] = statistics.median(times) if times else None
                s_row["per_seed"] = {str(s): {"test": {m: r["test"][m] for m in study.metrics},
                                              "best_epoch": r.get("best_epoch"),
                                              "buckets": r.get("buckets")}
                                     for s, r in done.items()}
                s_row["buckets"] = bucket_means([r["buckets"] for r in rs if r.get("buckets")])
            rows[row.name] = s_row
        out[ds] = rows
    return out
