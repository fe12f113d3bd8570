"""Train a model, write a run directory, print results (`recgoat train`;
`python -m recgoat_jax.train` is the same command).

Which config: --config FILE if given; with --resume the run's saved config.yaml; else the
shipped config for the model on the dataset (recgoat_jax/configs/<model>_<dataset>.yaml,
dataset by its registered name or alias, else <model>.yaml). The file used is logged first.

Output: the results (the test table at the best valid epoch, and the run directory) go
to stdout; status lines (config, data summary, one line per evaluated epoch, early stop)
and progress bars go to stderr. -q hides the status lines and the bars, never the results;
--no-progress hides only the bars; when stderr is not a terminal there are no bars (the
per-epoch line remains). TensorBoard event files of the per-epoch scalars go to
<run-dir>/tb/ (tensorboard --logdir <run-dir>).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from recgoat_jax import hostmem
from recgoat_jax.cliutil import (ENV_DATA_ROOT, add_progress, add_verbosity, command_parser,
                                 result, run_command, show_progress)
from recgoat_jax.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "recgoat"
DEFAULT_DATASET = "demo"

EPILOG = """examples:
  recgoat train                                  # RecGOAT on the demo (recgoat_demo.yaml)
  recgoat train --epochs 1 --quiet               # a quick check: only the results, on stdout
  recgoat train -q --epochs 1 > out.txt          # the table and the run directory in out.txt
  recgoat train --model lightgcn --dataset baby  # data/baby/, lightgcn.yaml
  recgoat train --model itemknn                  # item kNN, fitted in one pass (itemknn.yaml)
  recgoat train --dataset data/mine              # RecGOAT, real-data defaults (recgoat.yaml)
  recgoat train --config my.yaml --set model.dim=128 --set train.lr=5e-4
  recgoat train --resume runs/demo-recgoat-20261127-120000
  recgoat train --epochs 50 -q && tensorboard --logdir runs/   # the tb/ event files
Config lookup without --config: <model>_<dataset>.yaml, else <model>.yaml, in
recgoat_jax/configs/ (package data); datasets are found by their
registered name (baby, sports, clothing, electronics, demo) or an alias (elec), as
<root>/<name>/, or by a directory in MMRec (<name>.inter + *_feat.npy) or LightGCN
(train.txt/valid.txt/test.txt) layout; 'demo' is generated on first use.
`python -m recgoat_jax.train` takes the same flags.
Environment: RECGOAT_MALLOC=auto|tuned|system, the host allocator (Linux/glibc; auto,
the default, keeps freed memory mapped on CPU-only installs: faster CPU steps for more
peak RSS; docs/parallel.md)."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", metavar="FILE",
                   help="YAML config (schema: recgoat_jax/config.py); default: the shipped "
                        "config for --model on --dataset (see below)")
    p.add_argument("--dataset", metavar="NAME_OR_DIR",
                   help=f"dataset name or directory (sets data.dataset; default "
                        f"{DEFAULT_DATASET} unless the config names one)")
    p.add_argument("--root", metavar="DIR",
                   help=f"where named datasets live (sets data.root; default: the config's, "
                        f"data, or ${ENV_DATA_ROOT})")
    p.add_argument("--model", help=f"model name (sets model.name): mf, lightgcn, freedom, "
                                   f"recgoat, or the fitted (no training) itemknn, blend; "
                                   f"default {DEFAULT_MODEL} unless the config names one")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.dim=64 (repeatable)")
    p.add_argument("--epochs", type=int, help="shorthand for --set train.epochs=N")
    p.add_argument("--seed", type=int, help="shorthand for --set train.seed=N")
    p.add_argument("--run-dir", metavar="DIR",
                   help="output directory (default runs/<dataset>-<model>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed run from its latest checkpoint, with its saved config")
    p.add_argument("--no-tensorboard", action="store_true",
                   help="shorthand for --set run.tensorboard=false (no event files in "
                        "<run-dir>/tb/)")
    return add_verbosity(add_progress(p))


def build_parser(prog: str = "python -m recgoat_jax.train") -> argparse.ArgumentParser:
    return command_parser(prog, __doc__, EPILOG, add_arguments)


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def last_set(overrides: list[str], section: str, key: str):
    """The value the last --set of `section.key` gives (parsed by config.parse_override,
    as make_config parses it), None if none sets it."""
    from recgoat_jax import config as config_lib

    value = None
    for o in overrides:
        node = config_lib.parse_override(o).get(section)
        if isinstance(node, dict) and key in node:
            value = node[key]
    return value


def overrides_of(args) -> list[str]:
    """Every --set the train command applies, in order: data.root (--root or
    $RECGOAT_DATA_ROOT), the --set flags, then the shorthand flags (which win)."""
    overrides = []
    root = args.root or os.environ.get(ENV_DATA_ROOT)
    if root:
        overrides.append(f"data.root={root}")
    overrides += list(args.overrides)
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    if args.model:
        overrides.append(f"model.name={args.model}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.no_tensorboard:
        overrides.append("run.tensorboard=false")
    return overrides


def choose_config(args) -> tuple[Path | None, str]:
    """(config file or None, why it was chosen) for the train command's flags."""
    from recgoat_jax import config as config_lib

    if args.resume:
        return Path(args.resume) / "config.yaml", "the run's saved config (--resume)"
    if args.config:
        return Path(args.config), "--config"
    overrides = overrides_of(args)
    model = str(last_set(overrides, "model", "name") or DEFAULT_MODEL)
    dataset = str(last_set(overrides, "data", "dataset") or DEFAULT_DATASET)
    from recgoat_jax.model import configs  # the model table alone: no JAX import

    configs.config_class(model)  # an unknown model is the first line printed, not a config
    found = config_lib.find_config(model, dataset)
    if found is None:
        return None, (f"none found for model {model} on dataset {dataset}: the schema "
                      "defaults of recgoat_jax/config.py")
    return found, f"the shipped config for model {model} on dataset {dataset}"


def check_dataset(cfg) -> None:
    """A DataError now, before JAX is imported, when cfg's dataset cannot be found or holds
    no dataset files (the demo is generated on first use: always there)."""
    from recgoat_jax.data import formats, load

    if cfg.data.dataset != load.DEMO:
        formats.detect_layout(load.resolve_dataset_dir(cfg.data.dataset, cfg.data.root))


def run(args) -> int:
    def command(args) -> int:
        from recgoat_jax import config as config_lib

        overrides = overrides_of(args)
        path, why = choose_config(args)
        if args.resume and not path.is_file():
            raise UserError(f"--resume {args.resume}: no config.yaml there (not a run directory)")
        log.info(f"config: {path if path else '(none)'} ({why})")
        cfg = config_lib.make_config(path, overrides)
        check_dataset(cfg)
        # jax is imported only now, so config and dataset errors answer at once.
        from recgoat_jax.train.loop import train

        train(cfg, run_dir=args.resume or args.run_dir, resume=bool(args.resume),
              progress=show_progress(args), out=result)
        return 0

    return run_command(command, args, interrupted="continue with --resume RUN_DIR")


def main(argv=None) -> int:
    if argv is None:  # the process's own command line: set up its allocator first
        hostmem.reexec_tuned()
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
