"""DataConfig -> Dataset: resolve a name or a path, build the demo once, read the files.

* ``dataset: demo`` generates the built-in synthetic dataset once into ``<root>/demo/``
  (atomically: a temporary directory renamed into place) and then reads it back through
  the ordinary MMRec reader, so the demo exercises the real file path.
* A name (no path separator) is ``<root>/<name>/``; anything else is a directory path.
  A dataset's alias (config.DATASET_ALIASES, e.g. ``elec`` for ``electronics``) finds
  the same directory: ``<root>/electronics/`` or ``<root>/elec/``, whichever exists.
* Reading (layout detection, validation, features) is ``formats.read_dataset``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from recgoat_jax.config import DataConfig, canonical_dataset, dataset_names
from recgoat_jax.data import synthetic
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.data.formats import read_dataset
from recgoat_jax.errors import DataError, build_dataset_hint, close_matches, command_hint

log = logging.getLogger(__name__)

DEMO = "demo"
DEMO_META = "demo.json"


def _looks_like_path(dataset: str) -> bool:
    return (
        "/" in dataset
        or os.sep in dataset
        or dataset.startswith((".", "~"))
        or Path(dataset).is_absolute()
    )


def resolve_dataset_dir(
    dataset: str,
    root: str | os.PathLike = "data",
    *,
    must_exist: bool = True,
    option: str | None = None,
) -> Path:
    """The one dataset resolver: a registered name -> ``<root>/<name>/``; a path -> that
    directory. Used by the trainer (load_dataset) and by the data / features CLIs.

    option None (the trainer, `data.dataset`): a value that looks like a path (a
    separator, a leading . or ~, absolute) is that directory; a bare name is
    ``<root>/<name>/``, else an existing ``./<name>/``; ``demo`` is always
    ``<root>/demo/`` (load_dataset creates it).
    option "--dataset" (the CLIs; messages name the flag): an existing directory
    ``./<value>`` is used first, then ``<root>/<value>/``; a file is an error.
    must_exist=False (the CLI's `data` command, which creates the directory): a value
    that looks like a path is returned as is, a bare name as ``<root>/<name>/``.
    The two lookup orders differ only when both ``./<name>/`` and ``<root>/<name>/``
    exist; each caller keeps the order it always had.
    Raises DataError (one line) when nothing is found.
    """
    if not dataset and option is None:
        raise DataError("data.dataset is empty: expected a dataset name (e.g. demo) or a directory")
    here, under_root = Path(dataset).expanduser(), Path(root) / dataset
    # a registered name or its alias (config.DATASET_ALIASES): the first <root>/<n>/ found
    for n in dataset_names(dataset):
        if (Path(root) / n).is_dir() and not _looks_like_path(dataset):
            under_root = Path(root) / n
            break
    close = _close_names(dataset, root) if must_exist else []
    # every command the message prints names the close dataset, not the typo
    named = close[0] if len(close) == 1 else dataset
    if option is not None:
        if here.is_dir():
            return here
        if here.exists():
            raise DataError(f"{option} {dataset}: is a file, expected a dataset directory or a name")
        if under_root.is_dir():
            return under_root
        if not must_exist:
            # "data/toy" or "./x" is a path to create; a bare name lives under root
            return here if (len(here.parts) > 1 or dataset.startswith(".")) else under_root
        raise DataError(f"{option} {dataset}: no such directory, and no {under_root}/"
                        f"{_suggestion(close)}: set --root, or build it first with "
                        f"{command_hint('data', named)}")
    if _looks_like_path(dataset):
        if not here.is_dir() and must_exist:
            raise DataError(
                f"dataset directory '{dataset}' not found{_suggestion(close)}: "
                "expected a directory with <name>.inter (MMRec layout) or "
                "train.txt/valid.txt/test.txt"
            )
        return here
    if under_root.is_dir() or dataset == DEMO:
        return under_root
    if Path(dataset).is_dir():
        return Path(dataset)
    if not must_exist:
        return under_root
    raise DataError(
        f"dataset '{dataset}' not found{_suggestion(close)}: expected "
        f"{under_root / (dataset + '.inter')} (MMRec layout) "
        f"or train.txt/valid.txt/test.txt there (+ text_feat.npy, image_feat.npy): copy MMRec's "
        f"preprocessed '{dataset}' folder into {under_root}/, or build it from raw Amazon dumps with "
        f"{build_dataset_hint(named)}"
    )


def known_datasets(root: str | os.PathLike = "data") -> list[str]:
    """The names a dataset can be given by: the registered ones (the download registry's,
    their aliases, demo) and the directories under root."""
    from recgoat_jax.config import DATASET_ALIASES
    from recgoat_jax.data.download import DEFAULT_REGISTRY

    names = [DEMO, *DEFAULT_REGISTRY, *DATASET_ALIASES]
    try:
        names += sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    except OSError:
        pass
    return list(dict.fromkeys(names))


def _close_names(dataset: str, root: str | os.PathLike) -> list[str]:
    """The names close to a dataset that was not found, as it would be given: a registered
    name or a directory under root for a bare name, a sibling directory (with its parent)
    for a path; [] if none is close."""
    if _looks_like_path(dataset):
        here = Path(dataset).expanduser()
        try:
            siblings = [p.name for p in here.parent.iterdir() if p.is_dir()]
        except OSError:
            return []
        return [str(here.parent / m)
                for m in close_matches(here.name, [s for s in siblings if s != here.name])]
    return close_matches(dataset, [n for n in known_datasets(root)
                                   if n not in dataset_names(dataset)])


def _suggestion(close: list[str]) -> str:
    """" (did you mean 'x'?)" for the close names; '' if there are none."""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _demo_meta() -> dict:
    params = dict(synthetic.DEMO_PARAMS)
    params["feature_dims"] = dict(params["feature_dims"])
    return {"generator_version": synthetic.GENERATOR_VERSION, "params": params}


def _demo_files() -> list[str]:
    p = synthetic.DEMO_PARAMS
    files = [f"{p['name']}.inter"] + [f"{m}_feat.npy" for m in p["feature_dims"]]
    if p.get("user_feature_dim"):
        files.append("user_feat.npy")
    return files + [DEMO_META]


def demo_state(directory: Path) -> str:
    """'missing', 'ok' (ours, complete, current), 'stale' (ours, outdated) or 'foreign'."""
    if not directory.exists():
        return "missing"
    meta = directory / DEMO_META
    if not meta.is_file():
        return "foreign" if any(directory.iterdir()) else "missing"
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return "stale"
    if data != _demo_meta():
        return "stale"
    if not all((directory / f).is_file() for f in _demo_files()):
        return "stale"
    return "ok"


def ensure_demo(root: str | Path = "data") -> Path:
    """Generates the demo into ``<root>/demo/`` unless it is already there and current.

    A ``<root>/demo/`` without ``demo.json`` (not written by us) is left alone.
    """
    root = Path(root)
    target = root / DEMO
    state = demo_state(target)
    if state in ("ok", "foreign"):
        return target
    log.info(f"generating the built-in demo dataset into {target}/ (once) ...")
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".demo-tmp-", dir=root))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        synthetic.write_mmrec(synthetic.demo(), tmp)
        (tmp / DEMO_META).write_text(json.dumps(_demo_meta(), indent=1) + "\n")
        if target.exists():  # stale copy of ours: move it away, then replace
            old = Path(tempfile.mkdtemp(prefix=".demo-old-", dir=root))
            os.replace(target, old / DEMO)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, target)
            tmp = None
        except OSError:
            if demo_state(target) != "ok":  # not a concurrent writer that won the race
                raise
    except OSError as e:
        raise DataError(f"cannot write the demo dataset to {target}: {e}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_dataset(cfg: DataConfig) -> Dataset:
    """Reads the dataset named by cfg (building the demo first when needed).

    cfg.modalities non-empty: load exactly those item modalities (a missing one is a
    DataError naming the expected file); cfg.user_features False: ignore user_feat.npy.
    """
    if cfg.dataset == DEMO:
        directory, name = ensure_demo(cfg.root), DEMO
    else:
        directory = resolve_dataset_dir(cfg.dataset, cfg.root)
        name = (directory.resolve().name if _looks_like_path(cfg.dataset)
                else canonical_dataset(cfg.dataset))
    return read_dataset(
        directory,
        name,
        modalities=tuple(cfg.modalities) or None,
        user_features=cfg.user_features,
    )

