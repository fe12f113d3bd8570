"""Runs a study of experiments/studies/ on the sweep harness -> its results JSON + Markdown.

    python -m experiments.study realdata --data ml100k-dev=data/ml100k-dev --jobs 2
    python -m experiments.study realdata --data debian-deps-dev=data/debian-deps-dev \\
        --data debian-deps-dev:text=data/debian-ut --rows recgoat_user_text --dry-run
    python -m experiments.studies.ablation --seeds 0 --rows full_paper,lightgcn

--data NAME=DIR names a dataset (its main build); NAME:BUILD=DIR another build of it (a
row trains on its build; e.g. `text`: the build with the users file). Finished runs are
reused, an interrupted one resumes; --summarise-only rewrites the report from the runs;
--dry-run lists the runs that would start now.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

from recgoat_jax import provenance
from recgoat_jax.sweep import Data, choose, report, runner

STUDIES = ("realdata", "user_text", "defaults", "ablation", "baselines")


def parse_data(pairs: list[str], default: dict) -> tuple[Data, ...]:
    """NAME=DIR / NAME:BUILD=DIR flags -> Data, in order of first mention."""
    builds: dict[str, dict[str, str]] = {}
    for pair in pairs:
        name, sep, d = pair.partition("=")
        name, _, build = name.partition(":")
        if not sep or not name or not d:
            raise SystemExit(f"error: --data {pair!r}: expected NAME=DIR or NAME:BUILD=DIR")
        builds.setdefault(name, {})[build or "main"] = d
    return tuple(Data(n, b) for n, b in (builds or default).items())


def main(name: str | None = None, argv: list[str] | None = None) -> int:
    if name is None:
        argv = list(sys.argv[1:] if argv is None else argv)
        if not argv or argv[0] not in STUDIES:
            sys.exit(f"usage: python -m experiments.study {{{','.join(STUDIES)}}} [flags]")
        name, argv = argv[0], argv[1:]
    spec = importlib.import_module(f"experiments.studies.{name}")
    ap = argparse.ArgumentParser(prog=f"python -m experiments.study {name}",
                                 description=spec.__doc__, epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", default=[], metavar="NAME[:BUILD]=DIR",
                    help="a dataset or another build of one (repeatable; default: " + ", ".join(
                        f"{n}{'' if b == 'main' else ':' + b}={d}"
                        for n, bs in spec.DATA.items() for b, d in bs.items()) + ")")
    ap.add_argument("--rows", help="comma-separated rows (default: all but opt-in ones)")
    ap.add_argument("--seeds", help="comma-separated, e.g. 0,1,2 (default: the study's)")
    ap.add_argument("--jobs", type=int, default=1, help="training processes at once")
    ap.add_argument("--runs-dir", default=spec.RUNS_DIR, help="(%(default)s)")
    ap.add_argument("--out", default=spec.OUT, help="report JSON; .md beside it (%(default)s)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an override for every trained run (e.g. train.patience=50; use "
                         "a runs dir and --out of its own)")
    ap.add_argument("--note", help="a Markdown file of findings kept in the report")
    ap.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    ap.add_argument("--summarise-only", action="store_true", help="report the finished runs")
    if hasattr(spec, "add_arguments"):  # the study's own flags
        spec.add_arguments(ap)
    args = ap.parse_args(argv)
    study = spec.study(parse_data(args.data, spec.DATA), args)
    try:
        study = study.select(args.rows.split(",") if args.rows else None)
    except ValueError as e:
        ap.error(str(e))
    if args.seeds:
        study = dataclasses.replace(study, seeds=tuple(int(s) for s in args.seeds.split(",")))
    missing = [d for ds in study.datasets for d in ds.builds.values()
               if not Path(d).is_dir() and d not in getattr(spec, "REGISTERED", ())]
    if missing and not args.dry_run:
        ap.error(f"--data: {', '.join(missing)}: not a directory (make data + make features)")
    if hasattr(spec, "prepare") and not (args.dry_run or args.summarise_only):
        spec.prepare(study)  # e.g. a generated dataset, before any worker starts
    lookup = (runner.lookup_in([args.runs_dir, *study.reuse]) if args.summarise_only
              else runner.sweep(study, args.runs_dir, args.jobs, args.set, args.dry_run))
    if args.dry_run:
        return 0
    summary = choose.summarise(study, [d.name for d in study.datasets], lookup)
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.is_file() else {}
    header = provenance.header()
    if args.summarise_only and "command" in old:  # keep the command that trained the runs
        header.update(command=old["command"], summary_command=header["command"])
    header["extra_commands"] = old.get("extra_commands", [])
    note = Path(args.note).read_text() if args.note else old.get("note", "")
    extra = spec.extra(summary) if hasattr(spec, "extra") else {}
    report.write(out, study, summary, header, note, **extra)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
