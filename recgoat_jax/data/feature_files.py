"""The feature files of a dataset directory (both layouts, data/formats.py): every
``<modality>_feat.npy`` except ``user_feat.npy`` is an item modality ``[n_items, d]``
(``text_feat.npy`` -> "text"); ``user_feat.npy`` holds user features ``[n_users, d]``, and
``user_feat.json`` (written by `recgoat features`) says where its rows came from. Features
are memory-mapped and kept as float32 (other dtypes are cast); a bad file is a one-line
DataError naming it and what was expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from recgoat_jax.errors import DataError

USER_FEAT_FILE = "user_feat.npy"
FEAT_SUFFIX = "_feat.npy"
_BLOCK_ROWS = 8192  # feature rows checked / cast at a time


def _read_feature(path: Path, n_rows: int, expected: str) -> np.ndarray:
    """Loads [n_rows, d] float32 features (mmap kept when already float32)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable .npy array ({msg})") from None
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{path}: expected a single .npy array, found {type(arr).__name__}")
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array [{expected}, d], got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{path}: expected a float array, got dtype {arr.dtype}")
    if arr.shape[0] != n_rows:
        raise DataError(
            f"{path}: {arr.shape[0]} rows found, expected {n_rows} ({expected})"
        )
    out = arr if arr.dtype == np.float32 else np.empty(arr.shape, dtype=np.float32)
    for s in range(0, n_rows, _BLOCK_ROWS):
        with np.errstate(over="ignore", invalid="ignore"):
            block = np.asarray(arr[s : s + _BLOCK_ROWS], dtype=np.float32)
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            row = s + int(np.argmin(ok))
            raise DataError(
                f"{path}: row {row} has a non-finite value (nan or inf"
                f"{', or too large for float32' if arr.dtype != np.float32 else ''}); "
                "features must be finite"
            )
        if out is not arr:
            out[s : s + _BLOCK_ROWS] = block
    return out


def feature_files(directory: str | Path) -> dict[str, Path]:
    """Item modality name -> file, for every *_feat.npy except user_feat.npy (sorted)."""
    directory = Path(directory)
    found = {}
    for p in sorted(directory.glob("*" + FEAT_SUFFIX)):
        if p.name == USER_FEAT_FILE or not p.is_file():
            continue
        found[p.name[: -len(FEAT_SUFFIX)]] = p
    return found


def read_item_features(
    directory: str | Path, n_items: int, modalities: Sequence[str] | None = None,
    size_source: str = "",
) -> dict[str, np.ndarray]:
    """Loads item modalities (all found, or exactly `modalities`) as [n_items, d] float32."""
    directory = Path(directory)
    found = feature_files(directory)
    if modalities:
        missing = [m for m in modalities if m not in found]
        if missing:
            m = missing[0]
            have = ", ".join(found) or "none"
            raise DataError(
                f"modality '{m}' not found: expected {directory / (m + FEAT_SUFFIX)} "
                f"(modalities found: {have})"
            )
        found = {m: found[m] for m in modalities}
    src = f" from {size_source}" if size_source else ""
    return {
        m: _read_feature(p, n_items, f"n_items = max item id + 1 = {n_items}{src}")
        for m, p in found.items()
    }


def read_user_features(
    directory: str | Path, n_users: int, size_source: str = ""
) -> np.ndarray | None:
    """Loads user_feat.npy as [n_users, d] float32, or None when absent."""
    p = Path(directory) / USER_FEAT_FILE
    if not p.is_file():
        return None
    src = f" from {size_source}" if size_source else ""
    return _read_feature(p, n_users, f"n_users = max user id + 1 = {n_users}{src}")


def read_user_feature_source(directory: str | Path) -> str | None:
    """Where user_feat.npy's rows came from, by user_feat.json (`recgoat features`):
    "user_text" when any row embeds real user text (a users file), else the source of
    most rows ("template_profile", "llm_profile"); None without that file (e.g. MMRec's
    folders), or when it says nothing of its sources."""
    p = Path(directory) / "user_feat.json"
    if not p.is_file():
        return None
    try:
        sources = json.loads(p.read_text()).get("sources") or {}
    except (ValueError, AttributeError):
        raise DataError(f"{p}: not a JSON object with a 'sources' mapping (written by "
                        f"recgoat features); rebuild it or delete it") from None
    counts = {k: v for k, v in sources.items() if isinstance(v, int) and v > 0}
    if not counts:
        return None
    return "user_text" if "user_text" in counts else max(counts, key=counts.get)
