"""A fitted (memory-based) model's run: fit once, evaluate, write the run directory.

What train/loop.py does for a trained model, without epochs: no optimizer, sampler,
compiled step or checkpoints (model/base.py FittedModel). The run directory holds
config.yaml and results.json (valid / test at the fit, "groups": test metrics by user
activity, "fit": what the fit chose, e.g. the blend's weight); the printed results are
the same test table as a trained model's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from recgoat_jax import config as config_lib
from recgoat_jax.train.builder import RunSetup
from recgoat_jax.train.rundir import (default_run_dir, group_results, groups_line, log_data,
                                      print_results, versions)


def fit(setup: RunSetup, run_dir: str | Path | None = None, log=print, out=None,
        setup_s: float = 0.0) -> dict:
    """Fits setup.model (a FittedModel) on setup.inputs; returns the results dict (also
    written to run_dir/results.json). log: status lines; out: the results (default log);
    setup_s: the seconds build_run took (it built the score matrices, the inputs)."""
    t0 = time.perf_counter() - setup_s
    cfg, ds, model, ev = setup.cfg, setup.dataset, setup.model, setup.evaluator
    run_dir = Path(run_dir or cfg.run_dir or default_run_dir(cfg, ds.name))
    run_dir.mkdir(parents=True, exist_ok=True)
    log_data(ds, log)
    (run_dir / "config.yaml").write_text(config_lib.dump_yaml(cfg))
    tf = time.perf_counter()
    params, info = model.fit(setup.inputs, ev)
    fit_s = time.perf_counter() - tf
    te = time.perf_counter()
    user_emb, item_emb = model.embed(params, setup.inputs)
    metrics = {s: ev.evaluate(user_emb, item_emb, s) for s in ("valid", "test")}
    eval_s = time.perf_counter() - te
    groups = group_results(ev, user_emb, item_emb)
    metric = cfg.eval.metric
    chose = ", ".join(f"{k} {v}" for k, v in info.items() if not isinstance(v, dict))
    log(f"fitted {cfg.model.name}: inputs {setup_s:.2f}s, fit {fit_s:.2f}s (no training"
        f"{'; ' + chose if chose else ''}); eval {eval_s:.2f}s | valid {metric} "
        f"{metrics['valid'][metric]:.4f}")
    log(groups_line(groups, metric))
    results = {
        "dataset": ds.name, "model": cfg.model.name, "fitted": True, "best_epoch": None,
        "valid": metrics["valid"], "test": metrics["test"], "groups": groups, "fit": info,
        "epochs_run": 0, "stopped_early": False,
        "wall_time_s": time.perf_counter() - t0, "setup_time_s": setup_s, "fit_time_s": fit_s,
        "eval_time_s": eval_s,
        "n_params": 0, "data_report": dict(ds.report), "versions": versions(),
        "run_dir": str(run_dir)}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print_results(out or log, f"{ds.name} / {cfg.model.name}: test of the fitted model "
                  f"(valid {metric} {metrics['valid'][metric]:.4f})", results["test"],
                  cfg.eval.ks, run_dir)
    return results
