"""The epoch loop: sample, step, evaluate, early-stop, checkpoint, write the run dir.

Run directory:
  config.yaml     the fully resolved config
  metrics.jsonl   one line per evaluation (epoch, loss parts, valid/test metrics, times,
                  and the model's evaluation-time "diagnostics" when it has the hook)
  results.json    dataset, model, best_epoch, valid/test at the best valid epoch, times
  checkpoints/    orbax: latest (for --resume) and best (params at the best valid epoch),
                  logical (unpadded) arrays whatever train.model_parallel (Trainer.logical)
  tb/             TensorBoard event files of metrics.jsonl's scalars (train.tensorboard)

Epochs are numbered from 0. Sampling for epoch e is a pure function of (seed, e) and the
dropout key of epoch e is fold_in(key, e), so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState
from tqdm.auto import tqdm

from recgoat_jax import config as config_lib, hostmem
from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.errors import ConfigError, TrainingDiverged, UserError
from recgoat_jax.data.load import load_dataset
from recgoat_jax.data.sampler import BPRSampler
from recgoat_jax.evaluate import Evaluator, format_table
from recgoat_jax.graphs.inputs import model_inputs, shapes_of
from recgoat_jax.model.registry import build_model
from recgoat_jax.train import sharding as sharding_lib
from recgoat_jax.train.checkpoint import Checkpoints
from recgoat_jax.train.distributed import is_main_process
from recgoat_jax.train.parallel import DataParallel, maybe_initialize_distributed, to_host
from recgoat_jax.train.step import init_state, make_train_step, zeros_acc
from recgoat_jax.train.stopping import StopRule, early_best_warning, stop_reason
from recgoat_jax.train.tensorboard import open_writer


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


# folded into the epoch key for the pre_epoch hook; the step folds the (far smaller)
# global step count into the same epoch key, so the two streams never meet
PRE_EPOCH_FOLD = 0x7FFFFFFF


def default_run_dir(cfg: Config, dataset_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{dataset_name}-{cfg.model.name}-{stamp}"


class Trainer:
    """Owns one run: dataset, model, inputs, optimizer, sampler, evaluator."""

    def __init__(self, cfg: Config, dataset: Dataset | None = None, log=None):
        self.cfg = cfg
        self.log = log or logging.getLogger(__name__).info  # status lines, as train()'s
        # train.data_parallel: batch split over all devices, the rest replicated (parallel.py);
        # train.model_parallel > 1: tables row-sharded over the mesh's 'model' axis too.
        self.dp = (DataParallel(cfg.train.batch_size, model_parallel=cfg.train.model_parallel)
                   if cfg.train.data_parallel else None)
        self.dataset = dataset if dataset is not None else load_dataset(cfg.data)
        self.shapes = shapes_of(self.dataset)
        self.model = build_model(cfg, self.shapes)
        self.inputs = self.place(model_inputs(self.model, self.dataset, cfg))
        self.tx = optax.adam(cfg.train.lr)
        self.init_key, self.dropout_key = jax.random.split(jax.random.PRNGKey(cfg.train.seed))
        t = cfg.train
        self.sampler = BPRSampler(self.dataset.train, self.dataset.n_items, t.batch_size,
                                  exclude_train=t.exclude_train_negatives,
                                  drop_last=t.drop_last, seed=t.seed)
        if max(cfg.eval.ks) > self.dataset.n_items:
            raise ConfigError(f"config key 'eval.ks': largest K {max(cfg.eval.ks)} exceeds the "
                              f"{self.dataset.n_items} items of {self.dataset.name}; e.g. "
                              f"--set eval.ks=[5,10,20]")
        self.evaluator = Evaluator(self.dataset, ks=cfg.eval.ks, batch_users=cfg.eval.batch_users)
        # model_parallel = M > 1: the state's tables are stored padded to a multiple of M
        # rows (train/sharding.py); self.rows (a TrainState of ints) are the logical rows
        # every jitted function crops them back to.
        self.n_pad = self.dp.n_model if self.dp is not None else 1
        self.rows = sharding_lib.logical_rows(self.abstract_state())
        state_sh = inputs_sh = None
        if self.n_pad > 1:
            state_sh = self.dp.shardings(sharding_lib.pad(self.abstract_state(), self.n_pad))
            inputs_sh = self.dp.shardings(self.inputs)
        self.step_fn = make_train_step(self.model, self.tx,
                                       mesh=self.dp.mesh if self.dp else None,
                                       state_sharding=state_sh, inputs_sharding=inputs_sh,
                                       rows=self.rows.params if self.n_pad > 1 else None)
        # parallel: the embeddings come back replicated over the mesh and evaluation deals
        # the users over its devices (Evaluator.evaluate_sums_sharded). Takes padded or
        # logical params (crop is a no-op on the latter).
        self.embed_fn = jax.jit(lambda p, x: self.model.embed(self.crop(p), x),
                                out_shardings=self.dp.replicated if self.dp else None)
        # optional model hook (model/base.py): the epoch's training inputs, e.g. a pruned graph
        self.pre_epoch_fn = None
        hook = getattr(self.model, "pre_epoch", None)  # a model may expose None: no hook
        if hook is not None:
            out_sh = None
            if self.dp is not None:  # as the step expects its inputs
                out_sh = self.dp.shardings(jax.eval_shape(hook, self.inputs, self.init_key))
            self.pre_epoch_fn = jax.jit(hook, out_shardings=out_sh)
        # optional model hook (model/base.py): evaluation-time diagnostics on a probe batch
        self.diagnostics_fn = (
            jax.jit(lambda p, x, b: self.model.diagnostics(self.crop(p), x, b))
            if hasattr(self.model, "diagnostics") else None)

    def place(self, tree):
        """On the mesh under data parallelism (tables row-sharded when model_parallel > 1,
        the rest replicated), else as is."""
        return self.dp.place(tree) if self.dp else tree

    def abstract_state(self):
        """The logical (unpadded) TrainState as ShapeDtypeStructs (nothing allocated)."""
        return jax.eval_shape(lambda k, x: init_state(self.model.init(k, x), self.tx),
                              self.init_key, self.inputs)

    def _rows_of(self, tree):
        return self.rows if isinstance(tree, TrainState) else self.rows.params

    def crop(self, tree):
        """A stored (padded) TrainState or params tree -> its logical shapes, by slicing
        (for use under jit; logical trees pass unchanged)."""
        return sharding_lib.crop(tree, self._rows_of(tree))

    def logical(self, tree):
        """A stored TrainState or params tree -> logical arrays for checkpoints and export:
        padded leaves gathered to the host and cropped (numpy), the rest unchanged.

        Checkpoints hold these logical arrays, so they are the same whatever M the run
        had: a run resumes on another M, and recommend / restore_best load them into a
        model_parallel = 1 model. The price is a host gather of the padded tables at save
        time (an even table is saved from its shards as is)."""
        if self.n_pad == 1:
            return tree
        return jax.tree_util.tree_map(
            lambda x, n: to_host(x)[:n] if len(x.shape) and x.shape[0] != n else x,
            tree, self._rows_of(tree))

    def stored(self, tree):
        """A logical TrainState or params tree (jax or numpy leaves, e.g. restored from a
        checkpoint) -> padded and placed as the step expects it."""
        return self.place(sharding_lib.pad(tree, self.n_pad))

    def epoch_inputs(self, epoch: int):
        """The inputs of epoch `epoch`'s train steps: self.inputs unless the model has a
        pre_epoch hook, then pre_epoch(self.inputs, fold_in(epoch key, PRE_EPOCH_FOLD))."""
        if self.pre_epoch_fn is None:
            return self.inputs
        key = jax.random.fold_in(jax.random.fold_in(self.dropout_key, epoch), PRE_EPOCH_FOLD)
        return self.pre_epoch_fn(self.inputs, key)

    def device_batches(self, b) -> dict:
        """An epoch's EpochBatches -> device arrays [n_steps, B] (split on B when parallel)."""
        if self.dp is None:
            return _device_batches(b)
        return self.dp.shard_batches({"users": b.users, "pos": b.pos, "neg": b.neg,
                                      "weight": b.weight})

    def sample_epoch(self, epoch: int) -> dict:
        return self.device_batches(self.sampler.epoch(epoch))

    def init_state(self):
        """The stored TrainState: tables padded (model_parallel > 1), placed on the mesh.
        Jitted (much faster than flax's eager init), created with place()'s shardings."""
        def init_params(k, x):  # the logical init, then zero pad rows: same values as M = 1
            return sharding_lib.pad(self.model.init(k, x), self.n_pad)

        out_sh = None
        if self.dp is not None:
            out_sh = self.dp.shardings(jax.eval_shape(init_params, self.init_key, self.inputs))
        init = jax.jit(init_params, out_shardings=out_sh)
        return self.place(init_state(init(self.init_key, self.inputs), self.tx))

    def probe_batch(self) -> dict:
        """The batch diagnostics are computed on: the first batch of epoch 0 (fixed, so
        values are comparable across evaluations and device counts)."""
        if not hasattr(self, "_probe"):
            b = self.sampler.epoch(0)
            self._probe = {"users": jnp.asarray(b.users[0]), "pos": jnp.asarray(b.pos[0]),
                           "neg": jnp.asarray(b.neg[0]), "weight": jnp.asarray(b.weight[0])}
        return self._probe

    def diagnostics(self, params) -> dict:
        """{name: float} of the model's diagnostics hook ({} without one), eval mode."""
        if self.diagnostics_fn is None:
            return {}
        inputs = self.inputs
        if self.dp is not None:  # on this process's first device (tables gathered first)
            params, inputs = self.dp.local(self.dp.gather(params)), \
                self.dp.local(self.dp.gather(inputs))
        return {k: float(v) for k, v in
                self.diagnostics_fn(params, inputs, self.probe_batch()).items()}

    def aux_names(self, state) -> tuple[str, ...]:
        bs = self.sampler.batch_size  # shapes only: no need to sample an epoch
        batch = {k: jax.ShapeDtypeStruct((bs,), jnp.int32) for k in ("users", "pos", "neg")}
        batch["weight"] = jax.ShapeDtypeStruct((bs,), jnp.float32)
        _, aux = jax.eval_shape(lambda p, x, b, k: self.model.loss(self.crop(p), x, b, k),
                                state.params, self.inputs, batch, self.dropout_key)
        return tuple(sorted(aux))

    def evaluate(self, params) -> dict:
        """{'valid': {...}, 'test': {...}} with the eval-mode embeddings (stored or logical
        params)."""
        user_emb, item_emb = self.embed_fn(params, self.inputs)
        return {s: self.evaluator.evaluate(user_emb, item_emb, s) for s in ("valid", "test")}


def _device_batches(b) -> dict:
    return {"users": jnp.asarray(b.users), "pos": jnp.asarray(b.pos),
            "neg": jnp.asarray(b.neg), "weight": jnp.asarray(b.weight)}


def _read_metrics(path: Path, last_epoch: int) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= last_epoch]


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
        f"(train.lambda_cl / train.lambda_ot) or another train.seed; the last good "
        f"checkpoint is in {run_dir or 'the run directory'}")


def config_changes(old: Config | None, new: Config) -> list[str]:
    """'key old -> new' for every config key that differs (run_dir aside)."""
    if old is None:
        return []
    a = config_lib.flat_dict(config_lib.to_dict(old))
    b = config_lib.flat_dict(config_lib.to_dict(new))
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k != "run_dir" and a.get(k) != b.get(k)]


def _saved_config(run_dir: Path) -> Config | None:
    path = run_dir / "config.yaml"
    try:
        return config_lib.make_config(path) if path.is_file() else None
    except ConfigError:
        return None


def _restore_checked(ckpt: Checkpoints, like_state, run_dir: Path, saved_cfg, cfg):
    """ckpt.restore_latest, with a one-line UserError when the checkpoint's tree or shapes
    do not match the model built now (a --resume override that changes a shape)."""
    changes = config_changes(saved_cfg, cfg)
    what = (f"the overrides ({'; '.join(changes)})" if changes
            else "the current code and dataset")
    hint = ("resume without the overrides that change a shape, or start a new run "
            "(no --resume, or another --run-dir)")
    saved = ckpt.latest_shapes()
    if saved is not None:
        from recgoat_jax.train.checkpoint import tree_key

        for path, leaf in jax.tree_util.tree_flatten_with_path(like_state)[0]:
            key, now = tree_key(path), tuple(np.shape(leaf))
            if saved.get(key, now) != now or key not in saved:
                was = "absent" if key not in saved else f"saved as {saved[key]}"
                raise UserError(f"--resume {run_dir}: the checkpoint does not fit the model "
                                f"built with {what}: {key} is {was}, the model now needs "
                                f"{now}; {hint}")
    try:
        state, meta = ckpt.restore_latest(like_state)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"--resume {run_dir}: the checkpoint does not fit the model built "
                        f"with {what}: {str(e).splitlines()[0].split('. Truncating')[0][:200]}; {hint}") from None
    want = jax.tree_util.tree_flatten_with_path(like_state)[0]
    got = jax.tree_util.tree_leaves(state)
    for (path, a), b in zip(want, got):
        if np.shape(a) != np.shape(b):
            raise UserError(f"--resume {run_dir}: the checkpoint does not fit the model built "
                            f"with {what}: {jax.tree_util.keystr(path)} is saved as "
                            f"{tuple(np.shape(b))}, the model now needs {tuple(np.shape(a))}; "
                            f"{hint}")
    return state, meta


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False,
          dataset: Dataset | None = None, progress: bool = True, log=None, out=None) -> dict:
    """Trains cfg's model; returns the results dict (also written to results.json).
    Status lines go to `log` (a callable), by default this module's logger at INFO; the
    results (the test table at the best valid epoch, the run directory) go to `out`, by
    default `log` too (`recgoat train` prints them to stdout). Progress bars (stderr) only
    with `progress` and when stderr is a terminal."""
    log = log or logging.getLogger(__name__).info
    t0 = time.perf_counter()
    maybe_initialize_distributed(cfg)  # train.distributed: before any other JAX call
    main = is_main_process()  # process 0 alone logs and writes files (orbax: every process)
    if not main:
        log, progress = (lambda *a, **k: None), False
    trainer = Trainer(cfg, dataset, log=log)
    ds = trainer.dataset
    run_dir = Path(run_dir or cfg.run_dir or default_run_dir(cfg, ds.name))
    run_dir.mkdir(parents=True, exist_ok=True)
    saved_cfg = _saved_config(run_dir) if resume else None
    log(ds.summary())
    for k, v in ds.report.items():
        log(f"  data note: {k} = {v}")
    if hostmem.setting()["malloc"] == "tuned":  # set by the CLI (hostmem.reexec_tuned)
        log("host allocator: freed memory stays mapped (faster CPU steps, peak RSS up to "
            "1.6x in the trainings measured; RECGOAT_MALLOC=system for the C library's "
            "defaults)")

    ckpt = Checkpoints(run_dir) if cfg.train.checkpoint else None
    state = trainer.init_state()
    start_epoch, best, best_epoch, bad, history = 0, -math.inf, -1, 0, []
    best_row: dict = {}
    prior_wall = 0.0
    metrics_path = run_dir / "metrics.jsonl"
    if resume and ckpt is not None and ckpt.latest_epoch() is not None:
        # checkpoints hold logical arrays (Trainer.logical): restore those, then pad
        state, meta = _restore_checked(ckpt, trainer.logical(state), run_dir, saved_cfg, cfg)
        state = trainer.stored(state)
        start_epoch = meta["epoch"] + 1
        best, best_epoch, bad = meta["best"], meta["best_epoch"], meta["bad"]
        best_row, prior_wall = meta["best_row"], meta["wall_time_s"]
        history = _read_metrics(metrics_path, meta["epoch"])
        log(f"resumed from {run_dir} at epoch {start_epoch} (best {best:.4f} @ {best_epoch})")
        dropped = ckpt.drop_best_after(meta["epoch"])
        if dropped:
            log(f"dropped the best checkpoint of epoch(s) {dropped}, written after the last "
                f"complete epoch {meta['epoch']} (the run died between its two saves); those "
                "epochs are trained again")
    elif resume:
        log(f"--resume: no checkpoint in {run_dir}; starting from scratch")
    # written only now, so a refused --resume leaves the run's config as it was
    if main:
        (run_dir / "config.yaml").write_text(config_lib.dump_yaml(cfg))
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))
    tb = open_writer(cfg, run_dir, history)  # None unless train.tensorboard (process 0 only)

    aux_names = trainer.aux_names(state)
    acc = trainer.place(zeros_acc(aux_names))
    # Compile ahead of the loop so compile time is reported on its own.
    b0 = trainer.sample_epoch(start_epoch)
    tc = time.perf_counter()
    step = trainer.step_fn.lower(state, acc, trainer.inputs, b0, jnp.int32(0),
                                 trainer.dropout_key).compile()
    compile_s = time.perf_counter() - tc
    tc = time.perf_counter()
    jax.block_until_ready(trainer.evaluate(state.params))
    eval_compile_s = time.perf_counter() - tc
    log(f"compiled train step in {compile_s:.1f}s, evaluation in {eval_compile_s:.1f}s "
        f"(includes one evaluation); {trainer.sampler.n_steps} steps/epoch of "
        f"{cfg.train.batch_size}")

    t = cfg.train
    metric = cfg.eval.metric
    rule = StopRule.from_config(t, trainer.sampler.n_steps)
    if rule.warmup_epochs:
        log(f"early stopping: patience {rule.patience} evaluations after a "
            f"{rule.warmup_epochs}-epoch warm-up (train.min_epochs {t.min_epochs}, "
            f"train.warmup_steps {t.warmup_steps})")
    curve = ([r["epoch"] for r in history], [r["valid"][metric] for r in history])
    epoch_times, eval_times = [], []
    pool = concurrent.futures.ThreadPoolExecutor(1)  # samples epoch e+1 during epoch e
    future = pool.submit(trainer.sample_epoch, start_epoch)  # sampled + placed on device
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, t.epochs):
        te = time.perf_counter()
        batches = future.result()
        if epoch + 1 < t.epochs:
            future = pool.submit(trainer.sample_epoch, epoch + 1)
        key = jax.random.fold_in(trainer.dropout_key, epoch)
        acc = trainer.place(zeros_acc(aux_names))
        inputs = trainer.epoch_inputs(epoch)  # trainer.inputs unless the model has pre_epoch
        for i in tqdm(range(trainer.sampler.n_steps), desc=f"epoch {epoch}", leave=False,
                      disable=not (progress and sys.stderr.isatty()), file=sys.stderr):
            state, acc = step(state, acc, inputs, batches, jnp.int32(i), key)
        n_real = float(batches["weight"].sum())
        acc = {k: float(v) / n_real for k, v in acc.items()}  # one host sync per epoch
        epoch_times.append(time.perf_counter() - te)
        check_finite(epoch, acc, cfg, run_dir)
        if (epoch + 1) % t.eval_every and epoch + 1 != t.epochs:
            continue
        tv = time.perf_counter()
        res = trainer.evaluate(state.params)
        eval_times.append(time.perf_counter() - tv)
        row = {"epoch": epoch, **{f"train/{k}": v for k, v in acc.items()},
               "valid": res["valid"], "test": res["test"],
               "epoch_time_s": epoch_times[-1], "eval_time_s": eval_times[-1]}
        if trainer.diagnostics_fn is not None:
            row["diagnostics"] = trainer.diagnostics(state.params)
        improved = res["valid"][metric] > best
        if improved:
            best, best_epoch, bad, best_row = res["valid"][metric], epoch, 0, row
        else:
            bad += 1
        curve[0].append(epoch)
        curve[1].append(res["valid"][metric])
        if main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if tb is not None:
            tb.write(row)
        log(f"epoch {epoch:4d} | loss {acc['loss']:.4f} | train {epoch_times[-1]:.2f}s "
            f"eval {eval_times[-1]:.2f}s | valid {metric} {res['valid'][metric]:.4f} "
            f"ndcg@20 {res['valid'].get('ndcg@20', float('nan')):.4f} | "
            f"best {best:.4f} @ {best_epoch}{' *' if improved else ''}")
        if ckpt is not None:
            if improved:
                ckpt.save_best(epoch, trainer.logical(state.params))
            meta = {"epoch": epoch, "best": best, "best_epoch": best_epoch, "bad": bad,
                    "best_row": best_row,
                    "wall_time_s": prior_wall + time.perf_counter() - t0}
            ckpt.save_latest(epoch, trainer.logical(state), meta)
        reason = stop_reason(*curve, rule)
        if reason is not None:
            log(f"early stop: valid {metric}: {reason}")
            stopped_early = True
            break
    pool.shutdown(wait=False, cancel_futures=True)
    if tb is not None:
        tb.close()
    if ckpt is not None:
        ckpt.wait()
        ckpt.close()

    results = {
        "dataset": ds.name, "model": cfg.model.name, "best_epoch": best_epoch,
        "valid": best_row.get("valid", {}), "test": best_row.get("test", {}),
        "epochs_run": epoch + 1, "stopped_early": stopped_early,
        "wall_time_s": prior_wall + time.perf_counter() - t0,
        "compile_time_s": compile_s, "eval_compile_time_s": eval_compile_s,
        "epoch_time_s_median": float(np.median(epoch_times)) if epoch_times else None,
        "eval_time_s_median": float(np.median(eval_times)) if eval_times else None,
        "data_parallel_devices": trainer.dp.n_devices if trainer.dp else 1,
        "model_parallel": trainer.dp.n_model if trainer.dp else 1,
        "n_params": int(sum(math.prod(x.shape) for x in
                            jax.tree_util.tree_leaves(trainer.abstract_state().params))),
        "data_report": {k: v for k, v in ds.report.items()},
        "versions": versions(), "run_dir": str(run_dir),
    }
    warning = early_best_warning(best_epoch, epoch + 1, stopped_early, t)
    if warning:
        results["warning"] = warning
        logging.getLogger(__name__).warning(warning)
    if main:
        (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    out = (out or log) if main else log  # the results: what the command produces
    if results["test"]:
        out(f"{ds.name} / {cfg.model.name}: test at best valid epoch {best_epoch} "
            f"(valid {metric} {best:.4f})")
        out(format_table(results["test"], cfg.eval.ks))
    out(f"run directory: {run_dir}")
    return results
