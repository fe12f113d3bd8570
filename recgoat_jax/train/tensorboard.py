"""TensorBoard event files of a run (<run_dir>/tb/), written with tensorboardX (no
TensorFlow): per evaluated epoch, the scalars of its metrics.jsonl row, step = epoch.

Tags: train/<loss part> (as in metrics.jsonl), valid/<metric>, test/<metric>,
diagnostics/<name>, time/epoch_s, time/eval_s, with '@' written as '_' (valid/recall_20:
TensorBoard's tag alphabet has no '@'). The event files always mirror
metrics.jsonl: opening the writer starts tb/ afresh and replays the rows kept so far, so a
resumed run has no duplicate or orphaned steps."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from recgoat_jax.errors import UserError

log = logging.getLogger(__name__)

SUBDIR = "tb"
PIN = "tensorboardX==2.6.5"  # requirements.txt


def scalars(row: dict) -> dict[str, float]:
    """{tag: value} of one metrics.jsonl row (the epoch itself is the step)."""
    out = {k: v for k, v in row.items() if k.startswith("train/")}
    for group in ("valid", "test", "diagnostics"):
        out.update({f"{group}/{k}": v for k, v in (row.get(group) or {}).items()})
    for key, tag in (("epoch_time_s", "time/epoch_s"), ("eval_time_s", "time/eval_s")):
        if key in row:
            out[tag] = row[key]
    return {k.replace("@", "_"): float(v) for k, v in out.items()}


class EventWriter:
    """One run's event files; `write(row)` after each metrics.jsonl row."""

    def __init__(self, run_dir: str | Path, rows: list[dict] = ()):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise UserError(f"run.tensorboard: tensorboardX is not installed (pip install "
                            f"{PIN}), or turn it off with --no-tensorboard / --set "
                            "run.tensorboard=false") from None
        self.dir = Path(run_dir) / SUBDIR
        if self.dir.exists():
            shutil.rmtree(self.dir)  # replayed below from metrics.jsonl
        self._w = SummaryWriter(str(self.dir))
        for r in rows:
            self.write(r, flush=False)
        self._w.flush()
        log.debug(f"TensorBoard event files in {self.dir} ({len(rows)} rows replayed)")

    def write(self, row: dict, flush: bool = True) -> None:
        for tag, v in scalars(row).items():
            self._w.add_scalar(tag, v, global_step=int(row["epoch"]))
        if flush:  # a running run shows up in TensorBoard at once
            self._w.flush()

    def close(self) -> None:
        self._w.close()


def open_writer(cfg, run_dir: str | Path, rows: list[dict]) -> EventWriter | None:
    """An EventWriter when cfg.run.tensorboard is on (on process 0 only), else None."""
    import jax

    if not cfg.run.tensorboard or jax.process_index() != 0:
        return None
    return EventWriter(run_dir, rows)
