"""The epoch loop: sample, step, evaluate, early-stop, checkpoint, write the run dir.

Run directory:
  config.yaml     the fully resolved config
  metrics.jsonl   one line per evaluation (epoch, loss parts, valid/test metrics, times,
                  and the model's evaluation-time "diagnostics" when it has the hook)
  results.json    dataset, model, best_epoch, valid/test at the best valid epoch, times,
                  "groups": test metrics of the best checkpoint by user activity
                  (train/rundir.py group_results; needs run.checkpoint)
  checkpoints/    orbax: latest (for --resume) and best (params at the best valid epoch),
                  logical (unpadded) arrays whatever run.model_parallel (Trainer.logical)
  tb/             TensorBoard event files of metrics.jsonl's scalars (run.tensorboard)

A fitted (memory-based) model has no epochs: train() hands it to train/fit.py.

Epochs are numbered from 0. Sampling for epoch e is a pure function of (seed, e) and the
dropout key of epoch e is fold_in(key, e), so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from recgoat_jax import config as config_lib, hostmem
from recgoat_jax.batch import Batch
from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.errors import TrainingDiverged
from recgoat_jax.model.base import is_fitted
from recgoat_jax.train.builder import build_run
from recgoat_jax.train.checkpoint import Checkpoints
from recgoat_jax.train.distributed import is_main_process
from recgoat_jax.train.fit import fit
from recgoat_jax.train.parallel import maybe_initialize_distributed
from recgoat_jax.train.resume import Progress, restore
from recgoat_jax.train.rundir import (default_run_dir, group_results, groups_line,  # noqa: F401
                                      log_data, print_results, versions)  # (re-exported)
from recgoat_jax.train.step import zeros_acc
from recgoat_jax.train.stopping import StopRule, early_best_warning, stop_reason
from recgoat_jax.train.tensorboard import open_writer
from recgoat_jax.train.trainer import Trainer


def check_finite(epoch: int, losses: dict, cfg: Config, run_dir: Path | str = "") -> None:
    """TrainingDiverged (one line: the epoch, the non-finite terms, what to try) unless
    every loss term of the epoch is finite."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if not bad:
        return
    lr = cfg.train.lr
    terms = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
    raise TrainingDiverged(
        f"epoch {epoch}: the training loss is not finite ({terms}); try a lower learning "
        f"rate (--set train.lr={lr / 10:g}, now {lr:g}), smaller loss weights "
        f"(model.loss.cl_weight / model.loss.ot_weight) or another train.seed; the last good "
        f"checkpoint is in {run_dir or 'the run directory'}")


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False,
          dataset: Dataset | None = None, progress: bool = True, log=None, out=None) -> dict:
    """Trains cfg's model; returns the results dict (also written to results.json).
    Status lines go to `log` (a callable), by default this module's logger at INFO; the
    results (the test table at the best valid epoch, the run directory) go to `out`, by
    default `log` too (`recgoat train` prints them to stdout). Progress bars (stderr) only
    with `progress` and when stderr is a terminal. A fitted model (model/base.py
    FittedModel) is fitted once instead (train/fit.py), with the same outputs."""
    log = log or logging.getLogger(__name__).info
    t0 = time.perf_counter()
    maybe_initialize_distributed(cfg)  # run.distributed: before any other JAX call
    main = is_main_process()  # process 0 alone logs and writes files (orbax: every process)
    if not main:
        log, progress = (lambda *a, **k: None), False
    ts = time.perf_counter()
    setup = build_run(cfg, dataset)
    if is_fitted(setup.model):
        if resume:
            log(f"--resume: {cfg.model.name} is fitted in one pass, nothing to resume; "
                "fitting again")
        return fit(setup, run_dir=run_dir, log=log, out=out if main else log,
                   setup_s=time.perf_counter() - ts)
    trainer = Trainer(cfg, setup=setup)
    run_dir = Path(run_dir or cfg.run_dir or default_run_dir(cfg, trainer.dataset.name))
    run_dir.mkdir(parents=True, exist_ok=True)
    log_setup(trainer, log)

    ckpt = Checkpoints(run_dir) if cfg.run.checkpoint else None
    state, done = restore(trainer, ckpt, run_dir, resume, log)
    if main:  # written only now, so a refused --resume leaves the run's config as it was
        (run_dir / "config.yaml").write_text(config_lib.dump_yaml(cfg))
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in done.history))
    tb = open_writer(cfg, run_dir, done.history)  # None unless run.tensorboard (process 0 only)

    aux_names = trainer.aux_names(state)
    step, compile_s, eval_compile_s = compile_step(trainer, state, aux_names, done.next_epoch)
    log(f"compiled train step in {compile_s:.1f}s, evaluation in {eval_compile_s:.1f}s "
        f"(includes one evaluation); {trainer.sampler.n_steps} steps/epoch of "
        f"{cfg.train.batch_size}")

    t, metric = cfg.train, cfg.eval.metric
    rule = StopRule.from_config(t, trainer.sampler.n_steps)
    if rule.warmup_epochs:
        log(f"early stopping: patience {rule.patience} evaluations after a "
            f"{rule.warmup_epochs}-epoch warm-up (train.min_epochs {t.min_epochs}, "
            f"train.warmup_steps {t.warmup_steps})")
    epoch_times, eval_times = [], []
    pool = concurrent.futures.ThreadPoolExecutor(1)  # samples epoch e+1 during epoch e
    future = pool.submit(trainer.sample_epoch, done.next_epoch)  # sampled + placed on device
    stopped_early = False
    epoch = done.next_epoch - 1
    for epoch in range(done.next_epoch, t.epochs):
        te = time.perf_counter()
        batches = future.result()
        if epoch + 1 < t.epochs:
            future = pool.submit(trainer.sample_epoch, epoch + 1)
        state, losses = train_epoch(trainer, step, state, batches, epoch, aux_names, progress)
        epoch_times.append(time.perf_counter() - te)
        check_finite(epoch, losses, cfg, run_dir)
        if (epoch + 1) % t.eval_every and epoch + 1 != t.epochs:
            continue
        row = evaluate_epoch(trainer, state, epoch, losses, epoch_times[-1])
        eval_times.append(row["eval_time_s"])
        improved = done.record(row, metric)
        if main:
            with (run_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
        if tb is not None:
            tb.write(row)
        log(f"epoch {epoch:4d} | loss {losses['loss']:.4f} | train {epoch_times[-1]:.2f}s "
            f"eval {eval_times[-1]:.2f}s | valid {metric} {row['valid'][metric]:.4f} "
            f"ndcg@20 {row['valid'].get('ndcg@20', float('nan')):.4f} | "
            f"best {done.best:.4f} @ {done.best_epoch}{' *' if improved else ''}")
        save(ckpt, trainer, state, done, epoch, improved,
             wall_time_s=done.prior_wall + time.perf_counter() - t0)
        reason = stop_reason(*done.curve(metric), rule)
        if reason is not None:
            log(f"early stop: valid {metric}: {reason}")
            stopped_early = True
            break
    pool.shutdown(wait=False, cancel_futures=True)
    if tb is not None:
        tb.close()
    groups = None
    if ckpt is not None:
        ckpt.wait()
        groups = best_groups(trainer, ckpt, state)
        ckpt.close()

    results = {
        "dataset": trainer.dataset.name, "model": cfg.model.name,
        "best_epoch": done.best_epoch, "valid": done.best_row.get("valid", {}),
        "test": done.best_row.get("test", {}), "epochs_run": epoch + 1,
        "stopped_early": stopped_early,
        "wall_time_s": done.prior_wall + time.perf_counter() - t0,
        "compile_time_s": compile_s, "eval_compile_time_s": eval_compile_s,
        "epoch_time_s_median": float(np.median(epoch_times)) if epoch_times else None,
        "eval_time_s_median": float(np.median(eval_times)) if eval_times else None,
        **run_facts(trainer)}
    if groups is not None:
        results["groups"] = groups
        log(groups_line(groups, metric))
    results["run_dir"] = str(run_dir)
    warning = early_best_warning(done.best_epoch, epoch + 1, stopped_early, t)
    if warning:
        results["warning"] = warning
        logging.getLogger(__name__).warning(warning)
    if main:
        (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    out = (out or log) if main else log  # the results: what the command produces
    print_results(out, f"{trainer.dataset.name} / {cfg.model.name}: test at best valid epoch "
                  f"{done.best_epoch} (valid {metric} {done.best:.4f})", results["test"],
                  cfg.eval.ks, run_dir)
    return results


def log_setup(trainer: Trainer, log) -> None:
    """The status lines before training: the data summary, its notes, the allocator."""
    log_data(trainer.dataset, log)
    if hostmem.setting()["malloc"] == "tuned":  # set by the CLI (hostmem.reexec_tuned)
        log("host allocator: freed memory stays mapped (faster CPU steps, peak RSS up to "
            "1.6x in the trainings measured; RECGOAT_MALLOC=system for the C library's "
            "defaults)")


def compile_step(trainer: Trainer, state, aux_names, first_epoch: int):
    """(the compiled step, its compile seconds, the seconds of a first evaluation, which
    compiles it): compiled ahead of the loop so compile time is reported on its own."""
    acc = trainer.place(zeros_acc(aux_names))
    b0 = trainer.sample_epoch(first_epoch)
    tc = time.perf_counter()
    step = trainer.step_fn.lower(state, acc, trainer.inputs, b0, jnp.int32(0),
                                 trainer.dropout_key).compile()
    compile_s = time.perf_counter() - tc
    tc = time.perf_counter()
    jax.block_until_ready(trainer.evaluate(state.params))
    return step, compile_s, time.perf_counter() - tc


def train_epoch(trainer: Trainer, step, state, batches: Batch, epoch: int, aux_names,
                progress: bool) -> tuple:
    """(state, {loss term: mean over the epoch's real examples}) after one epoch's steps."""
    key = jax.random.fold_in(trainer.dropout_key, epoch)
    acc = trainer.place(zeros_acc(aux_names))
    inputs = trainer.epoch_inputs(epoch)  # trainer.inputs unless the model has pre_epoch
    for i in tqdm(range(trainer.sampler.n_steps), desc=f"epoch {epoch}", leave=False,
                  disable=not (progress and sys.stderr.isatty()), file=sys.stderr):
        state, acc = step(state, acc, inputs, batches, jnp.int32(i), key)
    n_real = float(batches.weight.sum())
    return state, {k: float(v) / n_real for k, v in acc.items()}  # one host sync per epoch


def evaluate_epoch(trainer: Trainer, state, epoch: int, losses: dict, epoch_s: float) -> dict:
    """The metrics.jsonl row of an evaluated epoch: its losses, valid / test metrics,
    times and the model's diagnostics (with the hook)."""
    tv = time.perf_counter()
    res = trainer.evaluate(state.params)
    row = {"epoch": epoch, **{f"train/{k}": v for k, v in losses.items()},
           "valid": res["valid"], "test": res["test"],
           "epoch_time_s": epoch_s, "eval_time_s": time.perf_counter() - tv}
    if trainer.diagnostics_fn is not None:
        row["diagnostics"] = trainer.diagnostics(state.params)
    return row


def best_groups(trainer: Trainer, ckpt: Checkpoints, state) -> dict | None:
    """results.json's "groups" (train/rundir.py group_results) for the params of the
    `best` checkpoint; None when there is none."""
    params, _ = ckpt.restore_best(trainer.logical(state.params))
    if params is None:
        return None
    user_emb, item_emb = trainer.embed_fn(trainer.stored(params), trainer.inputs)
    return group_results(trainer.evaluator, user_emb, item_emb)


def save(ckpt: Checkpoints | None, trainer: Trainer, state, done: Progress, epoch: int,
         improved: bool, wall_time_s: float) -> None:
    """Checkpoints of an evaluated epoch (logical arrays): `best` when it improved, then
    `latest` with the progress (run.checkpoint; none when ckpt is None)."""
    if ckpt is None:
        return
    if improved:
        ckpt.save_best(epoch, trainer.logical(state.params))
    ckpt.save_latest(epoch, trainer.logical(state), done.meta(epoch, wall_time_s))


def run_facts(trainer: Trainer) -> dict:
    """The results.json entries that describe the run rather than its metrics."""
    ds = trainer.dataset
    return {
        "data_parallel_devices": trainer.dp.n_devices if trainer.dp else 1,
        "model_parallel": trainer.dp.n_model if trainer.dp else 1,
        "n_params": int(sum(math.prod(x.shape) for x in
                            jax.tree_util.tree_leaves(trainer.abstract_state().params))),
        "data_report": {k: v for k, v in ds.report.items()},
        "versions": versions()}
