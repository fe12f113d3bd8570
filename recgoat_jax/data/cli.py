"""Command line: raw Amazon dumps -> MMRec files (`recgoat data`; `make data` in a checkout).

    python -m recgoat_jax.data.cli --dataset NAME_OR_DIR [--raw FILE ...] [--download]

`recgoat data` and `python -m recgoat_jax.features.cli data ...` are the same command
(same flags). DATASET is a directory path, else `<root>/<name>/` (root: --root, default
`data` or $RECGOAT_DATA_ROOT). User errors print one line and exit with status 2.
The 'wrote <dir>/<name>.inter: ...' line goes to stdout, also under -q; status lines
(the build report, notes) and download progress bars to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from recgoat_jax.cliutil import (add_progress, add_verbosity, command_parser, data_root_default,
                                 result, run_command, show_progress)
from recgoat_jax.data.load import resolve_dataset_dir
from recgoat_jax.errors import UserError

log = logging.getLogger(__name__)

EPILOG_DATA = """\
examples:
  # the project's fixture shop, 2018 JSON reviews + metadata, 5-core
  recgoat data --dataset data/toy \\
      --raw tests/fixtures/raw/reviews_Toy_2018.json tests/fixtures/raw/meta_Toy_2018.json.gz
  # raw files already in data/baby/raw/ (ratings_Baby.csv, meta_Baby.json.gz)
  recgoat data --dataset baby
  # fetch them first (URLs: built-in registry, or RECGOAT_DOWNLOADS=registry.yaml)
  recgoat data --dataset baby --download

Each raw file is recognised by its content: a ratings CSV (user,item,rating,timestamp),
reviews (JSON or Python-literal lines with reviewerID and asin), metadata (lines with
asin) or users (lines with reviewerID and no asin: real user text or values, kept as
users.jsonl for `recgoat features`; it never changes the interactions).
Writes <dir>/<name>.inter, u_id_mapping.csv, i_id_mapping.csv, item_meta.jsonl,
users.jsonl (with a users file) and
build_report.json. Output: the 'wrote ...' line (the dataset's size and split) on stdout,
also under -q; the build report, notes and download progress on stderr.
`python -m recgoat_jax.data.cli` takes the same flags."""

DATA_DESCRIPTION = ("Build MMRec files from raw McAuley Amazon dumps: dedupe, iterative "
                    "k-core, ids by first appearance, seeded per-user 8:1:1 split.")


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _ratios(s: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in s.replace(":", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or parts[0] <= 0:
        raise argparse.ArgumentTypeError(f"expected three numbers like 8:1:1, got {s!r}")
    return parts  # type: ignore[return-value]


def add_common_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--dataset, --root, --no-progress, -q/-v (shared by the data and features commands)."""
    p.add_argument("--dataset", required=True, metavar="NAME_OR_DIR",
                   help="dataset directory, or a name looked up as <root>/<name>/")
    p.add_argument("--root", metavar="DIR", default=data_root_default(),
                   help="where named datasets live ($RECGOAT_DATA_ROOT if set)")
    return add_verbosity(add_progress(p))


def add_data_arguments(d: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of the data command."""
    d.add_argument("--raw", nargs="+", metavar="FILE",
                   help="raw files, plain or .gz (default: every file in <dir>/raw/)")
    d.add_argument("--download", action="store_true",
                   help="download the registered raw files into <dir>/raw/ first")
    d.add_argument("--registry", metavar="FILE",
                   help="download registry YAML/JSON (default: built-in, or $RECGOAT_DOWNLOADS)")
    d.add_argument("--name", help="file stem of the .inter (default: the directory name)")
    d.add_argument("--k-core", type=positive_int, default=5,
                   help="min interactions per user and item")
    d.add_argument("--seed", type=int, default=999, help="split seed")
    d.add_argument("--split", type=_ratios, default="8:1:1", metavar="TR:VA:TE",
                   help="split ratios")
    d.add_argument("--require-meta", action="store_true",
                   help="drop items that have no metadata record before the k-core")
    d.add_argument("--skip-bad-lines", action="store_true",
                   help="skip and count malformed raw lines instead of stopping at the first")
    return d


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every flag of the data command (common + data)."""
    return add_data_arguments(add_common_arguments(p))


def build_parser(prog: str = "python -m recgoat_jax.data.cli") -> argparse.ArgumentParser:
    return command_parser(prog, DATA_DESCRIPTION, EPILOG_DATA, add_arguments)


def cmd_data(args) -> int:
    from recgoat_jax.data import download as dl
    from recgoat_jax.data import raw_amazon as ra
    from recgoat_jax.data.raw_formats import sniff_kind

    out = resolve_dataset_dir(args.dataset, args.root, must_exist=False, option="--dataset")
    name = args.name or out.resolve().name
    raw_dir = out / "raw"
    if args.download:
        reg = dl.load_registry(args.registry)
        dl.fetch_dataset(name, raw_dir, reg, progress=show_progress(args))
    if args.raw:
        files = [Path(x) for x in args.raw]
    elif raw_dir.is_dir():
        files = sorted(p for p in raw_dir.iterdir()
                       if p.is_file() and not p.name.endswith((".part", ".tmp")))
    else:
        raise UserError(f"no raw files: pass --raw FILE ..., put them in {raw_dir}/, "
                        "or use --download")
    inter_files, meta_files, users_files = [], [], []
    for p in files:
        kind = sniff_kind(p)
        {"meta": meta_files, "users": users_files}.get(kind, inter_files).append(p)
    if not inter_files:
        raise UserError(f"no ratings or reviews file among {', '.join(map(str, files))}")
    report = ra.build_mmrec(inter_files, out, name, k_core=args.k_core, seed=args.seed,
                            meta_path=meta_files or None, require_meta=args.require_meta,
                            ratios=args.split, skip_bad_lines=args.skip_bad_lines,
                            users_path=users_files or None)
    result(f"wrote {out / (name + '.inter')}: {report['n_users']} users, {report['n_items']} "
           f"items, train {report['train']} / valid {report['valid']} / test {report['test']}")
    if report.get("bad_lines_skipped"):
        log.warning(f"skipped {report['bad_lines_skipped']} bad lines (first: "
                    f"{report['first_bad_line']})")
    if not meta_files:
        log.info("no metadata file given: item text features will need --meta later")
    if users_files:
        log.info(f"users file: {report['users_with_record_after_filtering']} of "
                 f"{report['n_users']} users have a record (users.jsonl)")
    log.info("report: " + json.dumps(report, sort_keys=False))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_command(cmd_data, args)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
