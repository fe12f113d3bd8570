"""Where a run stands (Progress) and --resume: restoring the latest checkpoint into the
model built now, with one-line errors when it does not fit."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import numpy as np
from flax.training.train_state import TrainState

from recgoat_jax import config as config_lib
from recgoat_jax.config import Config
from recgoat_jax.errors import ConfigError, UserError
from recgoat_jax.train.checkpoint import Checkpoints, tree_key


@dataclasses.dataclass
class Progress:
    """Where a run stands after its last evaluation: what a `latest` checkpoint keeps
    beside the train state (meta), and the metrics.jsonl rows so far (history)."""

    next_epoch: int = 0
    best: float = -math.inf  # best valid eval.metric so far
    best_epoch: int = -1
    bad: int = 0  # evaluations since the best
    best_row: dict = dataclasses.field(default_factory=dict)  # the metrics row of best_epoch
    prior_wall: float = 0.0  # wall seconds of the run before this process (resumed runs)
    history: list[dict] = dataclasses.field(default_factory=list)

    def record(self, row: dict, metric: str) -> bool:
        """Adds an evaluated epoch's metrics row; whether it is a new best."""
        self.history.append(row)
        improved = row["valid"][metric] > self.best
        if improved:
            self.best, self.best_epoch, self.bad, self.best_row = (
                row["valid"][metric], row["epoch"], 0, row)
        else:
            self.bad += 1
        return improved

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        """(epochs, valid values) of every evaluation, for the stopping rule."""
        return [r["epoch"] for r in self.history], [r["valid"][metric] for r in self.history]

    def meta(self, epoch: int, wall_time_s: float) -> dict:
        return {"epoch": epoch, "best": self.best, "best_epoch": self.best_epoch,
                "bad": self.bad, "best_row": self.best_row, "wall_time_s": wall_time_s}


def read_metrics(path: Path, last_epoch: int) -> list[dict]:
    """The metrics.jsonl rows of epochs <= last_epoch ([] without the file)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= last_epoch]


def config_changes(old: Config | None, new: Config) -> list[str]:
    """'key old -> new' for every config key that differs (run_dir aside)."""
    if old is None:
        return []
    a = config_lib.flat_dict(config_lib.to_dict(old))
    b = config_lib.flat_dict(config_lib.to_dict(new))
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k != "run_dir" and a.get(k) != b.get(k)]


def saved_config(run_dir: Path) -> Config | None:
    """The run directory's config.yaml, None when absent or no longer valid."""
    path = run_dir / "config.yaml"
    try:
        return config_lib.make_config(path) if path.is_file() else None
    except ConfigError:
        return None


def restore_checked(ckpt: Checkpoints, like_state, run_dir: Path, saved_cfg, cfg):
    """ckpt.restore_latest, with a one-line UserError when the checkpoint's tree or shapes
    do not match the model built now (a --resume override that changes a shape)."""
    changes = config_changes(saved_cfg, cfg)
    what = (f"the overrides ({'; '.join(changes)})" if changes
            else "the current code and dataset")
    hint = ("resume without the overrides that change a shape, or start a new run "
            "(no --resume, or another --run-dir)")
    saved = ckpt.latest_shapes()
    if saved is not None:
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
        why = str(e).splitlines()[0].split(". Truncating")[0][:200]
        raise UserError(f"--resume {run_dir}: the checkpoint does not fit the model built "
                        f"with {what}: {why}; {hint}") from None
    want = jax.tree_util.tree_flatten_with_path(like_state)[0]
    got = jax.tree_util.tree_leaves(state)
    for (path, a), b in zip(want, got):
        if np.shape(a) != np.shape(b):
            raise UserError(f"--resume {run_dir}: the checkpoint does not fit the model built "
                            f"with {what}: {jax.tree_util.keystr(path)} is saved as "
                            f"{tuple(np.shape(b))}, the model now needs {tuple(np.shape(a))}; "
                            f"{hint}")
    return state, meta


def restore(trainer, ckpt: Checkpoints | None, run_dir: Path, resume: bool, log
            ) -> tuple[TrainState, Progress]:
    """The stored state to start from and where the run stands: a fresh state, or with
    `resume` the latest checkpoint of run_dir (logical arrays, padded and placed as the
    trainer stores them) and the progress it recorded."""
    state = trainer.init_state()
    if not resume:
        return state, Progress()
    if ckpt is None or ckpt.latest_epoch() is None:
        log(f"--resume: no checkpoint in {run_dir}; starting from scratch")
        return state, Progress()
    # checkpoints hold logical arrays (Trainer.logical): restore those, then pad and place
    state, meta = restore_checked(ckpt, trainer.logical(state), run_dir,
                                  saved_config(run_dir), trainer.cfg)
    state = trainer.stored(state)
    done = Progress(next_epoch=meta["epoch"] + 1, best=meta["best"],
                    best_epoch=meta["best_epoch"], bad=meta["bad"], best_row=meta["best_row"],
                    prior_wall=meta["wall_time_s"],
                    history=read_metrics(run_dir / "metrics.jsonl", meta["epoch"]))
    log(f"resumed from {run_dir} at epoch {done.next_epoch} "
        f"(best {done.best:.4f} @ {done.best_epoch})")
    dropped = ckpt.drop_best_after(meta["epoch"])
    if dropped:
        log(f"dropped the best checkpoint of epoch(s) {dropped}, written after the last "
            f"complete epoch {meta['epoch']} (the run died between its two saves); those "
            "epochs are trained again")
    return state, done
