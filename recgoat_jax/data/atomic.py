"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A crash or an exception never leaves a half-written target: either the old file (or
none) or the complete new one is there. The temporary name is unique per call
(``.<name>.<pid>.<random>.tmp``), so concurrent writers of the same target do not clobber
each other's temporary file (the last rename wins), and it is removed on failure. It is
created with the usual permissions (umask), like a plain ``open(path, "w")``.

Used by every writer that must not leave partial files: the raw-dump builder
(data/raw_amazon.py), the feature step (features/chunks.py, features/profiles.py) and
the graph cache (graphs/knn.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Yields a file opened for writing ("w" UTF-8 text, or "wb"); on a clean exit it
    replaces `path`, on an exception it is deleted and `path` is left untouched."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, mode.replace("w", "x"),
                  **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 text to path atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: object, indent: int | None = 1) -> None:
    """json.dumps(obj, indent=indent) + newline, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def save_npy_atomic(path: str | os.PathLike, arr: np.ndarray) -> None:
    """np.save(path, arr) atomically (path is used as given: no .npy is appended)."""
    with atomic_open(path, "wb") as f:
        np.save(f, arr)


def savez_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez(path, **arrays) atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
