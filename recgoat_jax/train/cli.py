"""`python -m recgoat_jax.train`: train a model, write a run directory, print results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recgoat_jax.errors import UserError

EPILOG = """examples:
  python -m recgoat_jax.train                                  # RecGOAT-free LightGCN on demo
  python -m recgoat_jax.train --config experiments/configs/recgoat_demo.yaml
  python -m recgoat_jax.train --dataset data/baby --set model.name=lightgcn
  python -m recgoat_jax.train --resume runs/demo-recgoat-20261127-120000
Datasets: a registered name (looked up as <data.root>/<name>/) or a directory in MMRec
(<name>.inter + *_feat.npy) or LightGCN (train.txt/valid.txt/test.txt) layout; 'demo'
is generated on first use."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m recgoat_jax.train", description=__doc__,
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (schema: recgoat_jax/config.py)")
    p.add_argument("--dataset", help="dataset name or directory (sets data.dataset)")
    p.add_argument("--model", help="model name (sets model.name): mf, lightgcn, freedom, recgoat")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.dim=64 (repeatable)")
    p.add_argument("--epochs", type=int, help="shorthand for --set train.epochs=N")
    p.add_argument("--run-dir", help="output directory (default runs/<dataset>-<model>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed run from its latest checkpoint, with its saved config")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        from recgoat_jax import config as config_lib

        overrides = list(args.overrides)
        if args.dataset:
            overrides.append(f"data.dataset={args.dataset}")
        if args.model:
            overrides.append(f"model.name={args.model}")
        if args.epochs is not None:
            overrides.append(f"train.epochs={args.epochs}")
        run_dir = args.run_dir
        if args.resume:
            saved = Path(args.resume) / "config.yaml"
            if not saved.is_file():
                raise UserError(f"--resume {args.resume}: no config.yaml there (not a run directory)")
            cfg = config_lib.make_config(saved, overrides)
            run_dir = args.resume
        else:
            cfg = config_lib.make_config(args.config, overrides)
        # jax is imported only now, so config errors answer at once.
        from recgoat_jax.train.loop import train

        train(cfg, run_dir=run_dir, resume=bool(args.resume), progress=not args.no_progress)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume RUN_DIR", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
