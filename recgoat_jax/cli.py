"""`recgoat`: the one command line of recgoat-jax (console script; `python -m recgoat_jax`
is the same). Every subcommand also has its own module entry point, with the same flags:

  train      python -m recgoat_jax.train          train a model, write a run directory
  data       python -m recgoat_jax.data.cli       raw Amazon dumps -> MMRec files
  features   python -m recgoat_jax.features.cli features   item text / user embeddings
  recommend  python -m recgoat_jax.recommend      top-K lists from a run's checkpoint
  report     (recgoat_jax/report.py)              compare run directories
  demo       (recgoat_jax/data/load.py)           write / regenerate the demo dataset

Benchmarks are scripts of a source checkout, not commands: `make bench` (experiments/).

Shared flag names: --dataset NAME_OR_DIR, --root DIR (where named datasets live, default
data or $RECGOAT_DATA_ROOT), -q/--quiet (warnings and errors only, no progress bars),
-v/--verbose (debug messages too), --run-dir DIR, --seed N; --model is the recommender
(train) and --encoder the text encoder (features).

Output: what a command produces goes to stdout, whatever -q says: train's results table
and run directory, report's table, recommend's lists (without --out), the 'wrote ...'
line of data, features and demo. Status lines (logging) and progress bars go to stderr;
-q leaves only warnings and errors there. No progress bars when stderr is not a terminal.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from recgoat_jax import hostmem
from recgoat_jax.cliutil import (ArgumentParser, HelpFormatter, add_verbosity,
                                 data_root_default, result, run_command)
from recgoat_jax.errors import UserError

log = logging.getLogger(__name__)

EPILOG = """examples:
  recgoat train --epochs 1            # RecGOAT on the built-in demo data, one epoch
  recgoat train --model lightgcn --epochs 5 -q > out.txt   # results table + run directory
  recgoat train --model lightgcn --dataset data/mine       # your data (recgoat data --help)
  recgoat report runs/*
  recgoat <command> --help            # each command's flags, defaults and examples"""

DEMO_EPILOG = """examples:
  recgoat demo                        # data/demo/ (once; kept while current)
  recgoat demo --force --root /tmp/d  # regenerate /tmp/d/demo/
Other synthetic shapes: python -m recgoat_jax.data.synthetic --help."""

# ------------------------------------------------------------------------------ demo


def cmd_demo(args) -> int:
    from recgoat_jax.data import load
    from recgoat_jax.data.formats import read_dataset

    target = Path(args.root) / load.DEMO
    if args.force and target.exists():
        if not (target / load.DEMO_META).is_file():
            raise UserError(f"{target}: not written by recgoat (no {load.DEMO_META}); "
                            "move it away to regenerate the demo there")
        shutil.rmtree(target)
    state = load.demo_state(target)
    out = load.ensure_demo(args.root)
    if state == "foreign":
        log.warning(f"{out}: left alone (not written by recgoat: no {load.DEMO_META})")
    ds = read_dataset(out, load.DEMO)
    result(f"{'up to date' if state == 'ok' else 'wrote'} {out}: {ds.summary()}")
    return 0


def add_demo_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--root", metavar="DIR", default=data_root_default(),
                   help="where named datasets live, the demo in <root>/demo/ "
                        "($RECGOAT_DATA_ROOT if set)")
    p.add_argument("--force", action="store_true",
                   help="regenerate even when the demo there is current")
    return add_verbosity(p)


# ------------------------------------------------------------------------------ main

COMMANDS = ("train", "data", "features", "recommend", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    from recgoat_jax import recommend, report
    from recgoat_jax.data import cli as data_cli
    from recgoat_jax.features import cli as features_cli
    from recgoat_jax.train import cli as train_cli

    ap = ArgumentParser(prog="recgoat", description=__doc__, epilog=EPILOG,
                        formatter_class=HelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")

    def add(name, summary, description, epilog, add_arguments, run):
        p = sub.add_parser(name, help=summary, description=description, epilog=epilog,
                           formatter_class=HelpFormatter)
        add_arguments(p)
        p.set_defaults(run=run)
        return p

    add("train", "train a model, write a run directory (default: RecGOAT on the demo)",
        train_cli.__doc__, train_cli.EPILOG, train_cli.add_arguments, train_cli.run)
    add("data", "raw Amazon dumps -> MMRec files", data_cli.DATA_DESCRIPTION,
        data_cli.EPILOG_DATA, data_cli.add_arguments, data_cli.run)
    add("features", "item text / user profile embeddings (features extra)",
        features_cli.FEATURES_DESCRIPTION, features_cli.EPILOG_FEATURES,
        features_cli.add_arguments, features_cli.run)
    add("recommend", "top-K lists from a trained run", recommend.DESCRIPTION,
        recommend.EPILOG, recommend.add_arguments, recommend.run)
    add("report", "compare run directories (config differences, best epoch, metrics, time)",
        report.__doc__, report.EPILOG, report.add_arguments, report.run)
    add("demo", "write / regenerate the built-in demo dataset",
        "Write the built-in synthetic demo dataset (deterministic) into <root>/demo/.",
        DEMO_EPILOG, add_demo_arguments, lambda a: run_command(cmd_demo, a))
    return ap


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the process's own command line: set up its allocator first
        hostmem.reexec_tuned()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
