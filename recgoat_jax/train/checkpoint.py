"""orbax checkpoints of a run: `latest` (resume) and `best` (params at best valid).

They hold the logical (unpadded) state: train() saves Trainer.logical(state), so a
checkpoint does not depend on run.model_parallel (train/sharding.py pads tables)."""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import orbax.checkpoint as ocp


def tree_key(path) -> str:
    """A pytree path as 'params/item' (dict keys, attributes and indices alike)."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


class Checkpoints:
    def __init__(self, run_dir: str | Path):
        root = Path(run_dir).resolve() / "checkpoints"  # orbax wants absolute paths
        self.root = root
        # Synchronous saves: when a run dies, every checkpoint it announced is complete.
        opts = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                            enable_async_checkpointing=False)
        self.latest = ocp.CheckpointManager(root / "latest", options=opts)
        self.best = ocp.CheckpointManager(root / "best", options=opts)

    def save_latest(self, epoch: int, state, meta: dict) -> None:
        self.latest.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def save_best(self, epoch: int, params) -> None:
        self.best.save(epoch, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params)), force=True)

    def drop_best_after(self, epoch: int) -> list[int]:
        """Deletes the `best` checkpoints of epochs after `epoch`, the resumed `latest`: a run
        killed between save_best(e) and save_latest(e) left a best of an epoch that the
        resumed run trains again (and would otherwise refuse to save, or, had it not
        improved the second time, report another epoch than the one stored).
        -> the deleted epochs."""
        steps = sorted(s for s in self.best.all_steps() if s > epoch)
        for s in steps:
            self.best.delete(s)
        return steps

    def latest_epoch(self) -> int | None:
        return self.latest.latest_step()

    def latest_shapes(self) -> dict[str, tuple] | None:
        """{'params/item': (n_items, d), ...} of the newest `latest` state, read from the
        checkpoint's metadata without restoring any array (None when unreadable)."""
        step = self.latest.latest_step()
        if step is None:
            return None
        path = self.root / "latest" / str(step) / "state"
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)  # "metadata file does not exist": harmless here
        try:
            with ocp.StandardCheckpointer() as ck:
                meta = ck.metadata(path)
        except Exception:  # noqa: BLE001 (any orbax failure: fall back to restore's check)
            return None
        finally:
            absl.setLevel(level)
        tree = getattr(meta, "item_metadata", meta)
        return {tree_key(k): tuple(v.shape)
                for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]
                if hasattr(v, "shape")}

    def restore_latest(self, like_state):
        """-> (state, meta) of the newest checkpoint; like_state gives the structure."""
        step = self.latest.latest_step()
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like_state)
        out = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def restore_best(self, like_params):
        step = self.best.latest_step()
        if step is None:
            return None, None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like_params)
        out = self.best.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract)))
        return out["params"], step

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
