"""Top-K recommendations from a trained run's checkpoint.

    python -m recgoat_jax.recommend --run-dir runs/demo-lightgcn-... --k 20 --out recs.csv

Rebuilds the model from the run's ``config.yaml`` and its dataset, restores the params
of the ``best`` checkpoint (params at the best valid epoch, the one behind
``results.json``) or of ``latest``, and ranks ALL items for each user exactly as the
evaluator does (inner product of the eval-mode embeddings, the user's TRAIN items masked
unless ``--no-mask-train``, ties broken towards the lower item id), in jitted blocks
(:meth:`recgoat_jax.evaluate.Evaluator.topk`). With the default mask, the lists of the
test users reproduce the run's test metrics.

Python API::

    from recgoat_jax.recommend import recommend
    users, items, scores = recommend("runs/demo-lightgcn-...", k=20)

Ids are the dataset's integer ids (the ``userID`` / ``itemID`` of the ``.inter`` file;
``u_id_mapping.csv`` / ``i_id_mapping.csv`` map them back to raw ids for datasets built
with ``recgoat data``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from recgoat_jax.cliutil import add_verbosity, configure_logging, log_level, result
from recgoat_jax.errors import UserError

if TYPE_CHECKING:  # imports JAX: at run time only inside load_run
    from recgoat_jax.train.builder import RunSetup

log = logging.getLogger(__name__)

CHECKPOINTS = ("best", "latest")
FORMATS = ("csv", "jsonl")


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    """A run rebuilt from its directory: its RunSetup (train/builder.py build_run: cfg,
    dataset, model, inputs, evaluator, on one device) and the params restored from its
    `checkpoint` ("best" or "latest") of epoch `epoch`; for a fitted model (itemknn,
    blend: no checkpoints) the params of fitting it again, checkpoint "fit", epoch 0."""

    setup: RunSetup
    params: Any
    epoch: int
    checkpoint: str

    @property
    def cfg(self):
        return self.setup.cfg

    @property
    def dataset(self):
        return self.setup.dataset

    @property
    def model(self):
        return self.setup.model

    @property
    def inputs(self):
        return self.setup.inputs

    @property
    def evaluator(self):
        return self.setup.evaluator

    def embeddings(self):
        """(user_emb [n_users, d], item_emb [n_items, d]), eval mode, as in evaluation."""
        import jax

        return jax.jit(self.model.embed)(self.params, self.inputs)


def load_run(run_dir: str | Path, checkpoint: str = "best",
             dataset: str | None = None, root: str | None = None) -> LoadedRun:
    """Rebuilds the run from its config.yaml with train/builder.py build_run (the builder
    training uses, on one device) and restores its params; no Trainer (no sampler, no
    compilation of training). A fitted model (model/base.py FittedModel) has no
    checkpoint: it is fitted again from the config (deterministic, one pass).

    dataset: a name or directory that replaces the run's data.dataset (when the data
    moved since training); root replaces data.root; relative paths in the config are taken
    from the current directory, as in training. Raises UserError for anything wrong with
    the inputs.
    """
    # jax and the model stack load only here, so --help and argument errors answer at once
    # (as in train/cli.py)
    from recgoat_jax import config as config_lib
    from recgoat_jax.model.base import is_fitted
    from recgoat_jax.train.builder import build_run
    from recgoat_jax.train.checkpoint import Checkpoints

    if checkpoint not in CHECKPOINTS:
        raise UserError(f"--checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir}: no such directory (expected a run directory "
                        "written by recgoat train)")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"--run-dir {run_dir}: no config.yaml there (not a run directory)")
    ckpt_dir = run_dir / "checkpoints" / checkpoint
    no_ckpt = not ckpt_dir.is_dir() or not any(p.name.isdigit() for p in ckpt_dir.iterdir())
    overrides = [f"data.dataset={dataset}"] if dataset else []
    overrides += [f"data.root={root}"] if root else []
    # inference runs on one device of one process, whatever the run was trained with
    overrides += ["run.data_parallel=false", "run.distributed=false"]
    cfg = config_lib.make_config(cfg_path, overrides)
    setup = build_run(cfg)
    if is_fitted(setup.model):
        params, _ = setup.model.fit(setup.inputs, setup.evaluator)
        return LoadedRun(setup, params, 0, "fit")
    if no_ckpt:
        raise UserError(f"{ckpt_dir}: no '{checkpoint}' checkpoint (was the run trained with "
                        "run.checkpoint false, or stopped before its first evaluation?)")
    like_state = setup.abstract_state()  # structure only: params, or the whole train state
    ckpts = Checkpoints(run_dir)
    try:
        if checkpoint == "best":
            params, epoch = ckpts.restore_best(like_state.params)
        else:
            state, meta = ckpts.restore_latest(like_state)
            params, epoch = state.params, meta["epoch"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{ckpt_dir}: checkpoint does not match the model rebuilt from "
                        f"{cfg_path} and dataset {setup.dataset.name} "
                        f"({str(e).splitlines()[0][:120]})") from None
    finally:
        ckpts.close()
    if params is None:
        raise UserError(f"{ckpt_dir}: no '{checkpoint}' checkpoint")
    return LoadedRun(setup, params, int(epoch), checkpoint)


def _check_users(users, n_users: int) -> np.ndarray:
    arr = np.asarray(users).reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"users must be integer ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_users)
    if bad.any():
        raise UserError(f"user id {int(arr[bad][0])} out of range: expected 0..{n_users - 1}")
    return arr


def recommend(run_dir: str | Path, users: Sequence[int] | np.ndarray | None = None,
              k: int = 20, mask_train: bool = True, checkpoint: str = "best",
              dataset: str | None = None, run: LoadedRun | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k items for users of a trained run.

    users: integer user ids (default: every user with train interactions).
    Returns (users [n] int64, items [n, k] int32, scores [n, k] float32), ranked best
    first. With mask_train, a user's train items score -inf and appear only when fewer
    than k other items exist. run: a LoadedRun to reuse (skips loading).
    """
    run = run if run is not None else load_run(run_dir, checkpoint, dataset)
    ds = run.dataset
    k = int(k)
    if not 1 <= k <= ds.n_items:
        raise UserError(f"--k {k}: expected 1..{ds.n_items} (the number of items)")
    if users is None:
        users = ds.train.users_with_items()
    users = _check_users(users, ds.n_users)
    user_emb, item_emb = run.embeddings()
    items, scores = run.evaluator.topk(user_emb, item_emb, users, k, mask_train=mask_train)
    return users, items, scores


def read_users(path: str | Path, n_users: int | None = None) -> np.ndarray:
    """One integer user id per line (blank lines and '#' comments skipped)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"--users {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--users {path}: cannot read ({e})") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        tok = line.split("#", 1)[0].strip()
        if not tok:
            continue
        rng = f"0..{n_users - 1}" if n_users else ">= 0"
        try:
            u = int(tok)
        except ValueError:
            raise UserError(f"{path}, line {n}: {tok[:40]!r} is not a user id; expected one "
                            f"integer per line in {rng}") from None
        if u < 0 or (n_users is not None and u >= n_users):
            raise UserError(f"{path}, line {n}: user id {u} out of range; expected {rng}")
        out.append(u)
    if not out:
        raise UserError(f"--users {path}: no user ids in the file (one integer per line)")
    return np.asarray(out, np.int64)


def _short(s: float) -> float:
    """The shortest decimal that reads back as the same float32 (compact output)."""
    return float(str(np.float32(s)))


def write_recommendations(f, users, items, scores, fmt: str = "csv") -> int:
    """Writes CSV `userID,rank,itemID,score` (rank from 1) or JSONL
    `{"user": u, "items": [...], "scores": [...]}`; masked entries (score -inf) are left
    out. Returns the number of (user, item) rows written."""
    rows = 0
    finite = np.isfinite(scores)
    if fmt == "csv":
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["userID", "rank", "itemID", "score"])
        for u, its, scs, ok in zip(users.tolist(), items.tolist(), scores.tolist(),
                                   finite.tolist()):
            for r, (i, s, good) in enumerate(zip(its, scs, ok), start=1):
                if good:
                    w.writerow([u, r, i, _short(s)])
                    rows += 1
    elif fmt == "jsonl":
        for u, its, scs, ok in zip(users.tolist(), items.tolist(), scores.tolist(),
                                   finite.tolist()):
            keep = [j for j, good in enumerate(ok) if good]
            f.write(json.dumps({"user": u, "items": [its[j] for j in keep],
                                "scores": [_short(scs[j]) for j in keep]}) + "\n")
            rows += len(keep)
    else:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return rows


EPILOG = """examples:
  recgoat recommend --run-dir runs/demo-recgoat-20260101-120000 --k 20 --out recs.csv
  recgoat recommend --run-dir RUN --users users.txt --out recs.jsonl
  recgoat recommend --run-dir RUN --k 10 --no-mask-train --checkpoint latest | head

Output: CSV userID,rank,itemID,score (rank 1 = best) or JSONL {"user", "items", "scores"},
chosen by the --out extension (.csv / .jsonl) or --format; without --out, CSV on stdout;
with --out, the 'wrote N recommendations ... to FILE' line on stdout (also under -q).
Ids are the dataset's integer ids. Train items are masked as in evaluation, so the lists
of test users reproduce the run's test metrics (results.json) for the best checkpoint;
a user with fewer than K unmasked items gets fewer rows.
--users FILE: one integer user id per line (blank lines and # comments ignored).
Errors in the input print one line and exit with status 2.
`python -m recgoat_jax.recommend` takes the same flags."""

DESCRIPTION = "Top-K item recommendations per user from a trained run's checkpoint."


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--run-dir", required=True, metavar="DIR",
                   help="run directory written by recgoat train (config.yaml + checkpoints/)")
    p.add_argument("--users", metavar="FILE",
                   help="user ids, one per line (default: every user with train interactions)")
    p.add_argument("--k", type=int, default=20, help="items per user")
    p.add_argument("--out", metavar="FILE", help="output .csv or .jsonl (default: CSV on stdout)")
    p.add_argument("--format", choices=FORMATS,
                   help="output format (default: from the --out extension, else csv)")
    p.add_argument("--no-mask-train", dest="mask_train", action="store_false",
                   help="also rank the user's train items (default: masked, as in evaluation)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best",
                   help="best (params at the best valid epoch) or latest")
    p.add_argument("--dataset", metavar="NAME_OR_DIR",
                   help="dataset to use instead of the run's data.dataset (if it moved)")
    p.add_argument("--root", metavar="DIR",
                   help="where named datasets live, instead of the run's data.root")
    return add_verbosity(p)


def build_parser(prog: str = "python -m recgoat_jax.recommend") -> argparse.ArgumentParser:
    from recgoat_jax.cliutil import command_parser

    return command_parser(prog, DESCRIPTION, EPILOG, add_arguments)


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def _format_of(args) -> str:
    if args.format:
        return args.format
    if not args.out:
        return "csv"
    suffix = Path(args.out).suffix.lower()
    if suffix in (".csv", ".jsonl"):
        return suffix[1:]
    raise UserError(f"--out {args.out}: unknown extension {suffix or '(none)'!r}; use .csv or "
                    ".jsonl, or give --format")


def main(argv=None) -> int:
    return run(parse_args(argv))


def run(args) -> int:
    configure_logging(log_level(args))
    try:
        fmt = _format_of(args)
        if args.k < 1:
            raise UserError(f"--k {args.k}: expected a positive integer")
        if args.users and not Path(args.users).is_file():
            raise UserError(f"--users {args.users}: file not found")
        run = load_run(args.run_dir, args.checkpoint, args.dataset, args.root)
        users = read_users(args.users, run.dataset.n_users) if args.users else None
        users, items, scores = recommend(args.run_dir, users, args.k, args.mask_train,
                                         run=run)
        if args.out:
            out = Path(args.out)
            if out.parent and not out.parent.is_dir():
                raise UserError(f"--out {out}: directory {out.parent} does not exist")
            buf = io.StringIO()
            n = write_recommendations(buf, users, items, scores, fmt)
            out.write_text(buf.getvalue())
            source = ("fitted again" if run.checkpoint == "fit"
                      else f"{run.checkpoint} checkpoint, epoch {run.epoch}")
            result(f"wrote {n} recommendations for {len(users)} users ({source}) to {out}")
        else:
            write_recommendations(sys.stdout, users, items, scores, fmt)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. | head
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
