"""Readers for the two on-disk dataset layouts, with validation.

Layouts (see docs/protocol.md, "Data formats"):

* MMRec: ``<dir>/<name>.inter``, tab-separated, header line with at least the columns
  ``userID``, ``itemID``, ``x_label`` (others, e.g. ``rating`` and ``timestamp``, are
  ignored; RecBole-style ``userID:token`` names are accepted). Ids are 0-based;
  n_users = max(userID) + 1 and n_items = max(itemID) + 1 over the whole file.
  x_label 0 = train, 1 = valid, 2 = test.
* LightGCN / RecGOAT code: ``train.txt``, ``valid.txt``, ``test.txt``, one line per
  user, ``uid item item ...`` (whitespace separated; a line may list no items).
  n_users / n_items = max id + 1 over all three files.

Both layouts share the feature files: every ``<modality>_feat.npy`` except
``user_feat.npy`` is an item modality ``[n_items, d]`` (``text_feat.npy`` -> "text");
``user_feat.npy`` holds user features ``[n_users, d]``. Features are memory-mapped and
kept as float32 (other dtypes, e.g. the public float64 files, are cast to float32).

Detection: a ``*.inter`` file means MMRec (with several, ``<dirname>.inter`` wins, else
it is an error); otherwise ``train.txt`` means LightGCN; otherwise a DataError.

Validation: every problem is a one-line :class:`DataError` naming the file and the
line (1-based; the ``.inter`` header is line 1) or field, and what was expected.
Fully blank lines are skipped. Two things are repaired instead of refused, and both
are counted in ``Dataset.report`` and announced once on stderr:

* Duplicate interactions (the same user, item pair more than once, in one split or
  across splits): ONE copy is kept, in the EARLIEST split (train before valid before
  test; within a split the pair is simply present). Keeping the train copy means an
  item the user trained on is never also a valid/test target (it would be masked at
  evaluation anyway). ``report['duplicates']`` is the number of rows removed and
  ``report['duplicates_by_split']`` says from which split they were removed.
* Valid/test rows of a user who has no train row are dropped, as MMRec does
  (``report['dropped_valid_rows_no_train']``, ``report['dropped_test_rows_no_train']``,
  ``report['dropped_users_no_train']``).

Nothing else is dropped. A split with no rows (before or after that drop) is an error.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from recgoat_jax.data.dataset import CSR, Dataset
from recgoat_jax.data.inter import read_inter, read_text_file, to_int
from recgoat_jax.data.feature_files import (read_item_features, read_user_feature_source,
                                           read_user_features)
from recgoat_jax.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
LIGHTGCN_FILES = ("train.txt", "valid.txt", "test.txt")


# ----------------------------------------------------------------------------- layout


def detect_layout(directory: str | Path) -> tuple[str, Path]:
    """Returns ("mmrec", path of the .inter file) or ("lightgcn", directory)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"dataset directory '{directory}' not found")
    inters = sorted(p for p in directory.glob("*.inter") if p.is_file())
    if len(inters) == 1:
        return "mmrec", inters[0]
    if len(inters) > 1:
        preferred = directory / f"{directory.resolve().name}.inter"
        if preferred in inters:
            return "mmrec", preferred
        names = ", ".join(p.name for p in inters)
        raise DataError(
            f"{directory}: several .inter files ({names}) and none is named "
            f"{directory.resolve().name}.inter; keep one or rename the one to use"
        )
    if (directory / "train.txt").is_file():
        return "lightgcn", directory
    raise DataError(
        f"{directory}: no dataset files found: expected {directory.resolve().name}.inter "
        "(MMRec layout) or train.txt/valid.txt/test.txt (LightGCN layout)"
    )


def read_dataset(
    directory: str | Path,
    name: str | None = None,
    *,
    modalities: Sequence[str] | None = None,
    user_features: bool = True,
) -> Dataset:
    """Reads a dataset directory in either layout (auto-detected).

    modalities: item modalities to load (None or empty = every *_feat.npy found; a
    missing one is a DataError). user_features: False ignores user_feat.npy.
    """
    layout, path = detect_layout(directory)
    if layout == "mmrec":
        return read_mmrec(path, name, modalities=modalities, user_features=user_features)
    return read_lightgcn(path, name, modalities=modalities, user_features=user_features)


def read_mmrec(
    path: str | Path,
    name: str | None = None,
    *,
    modalities: Sequence[str] | None = None,
    user_features: bool = True,
) -> Dataset:
    """Reads the MMRec layout; path is the .inter file or its directory."""
    path = Path(path)
    if path.is_dir():
        layout, path = detect_layout(path)
        if layout != "mmrec":
            raise DataError(f"{path}: no .inter file found (MMRec layout)")
    users, items, labels, _ = read_inter(path)
    sources = tuple(f"{path} (x_label {k} = {s})" for k, s in enumerate(SPLITS))
    return _assemble(
        name or path.parent.resolve().name,
        path.parent,
        [users[labels == k] for k in range(3)],
        [items[labels == k] for k in range(3)],
        n_users=int(users.max()) + 1,
        n_items=int(items.max()) + 1,
        sources=sources,
        size_source=f"{path.name}",
        layout="mmrec",
        files=[str(path)],
        modalities=modalities,
        user_features=user_features,
    )


def read_lightgcn(
    directory: str | Path,
    name: str | None = None,
    *,
    modalities: Sequence[str] | None = None,
    user_features: bool = True,
) -> Dataset:
    """Reads the LightGCN layout (train.txt / valid.txt / test.txt) from directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"dataset directory '{directory}' not found")
    missing = [f for f in LIGHTGCN_FILES if not (directory / f).is_file()]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)}; the LightGCN layout needs "
            "train.txt, valid.txt and test.txt"
        )
    parts = [read_lightgcn_split(directory / f) for f in LIGHTGCN_FILES]
    max_user = max(p[2] for p in parts)
    max_item = max((int(p[1].max()) if len(p[1]) else -1) for p in parts)
    if max_user < 0 or max_item < 0:
        raise DataError(f"{directory}: train.txt, valid.txt and test.txt hold no interactions")
    return _assemble(
        name or directory.resolve().name,
        directory,
        [p[0] for p in parts],
        [p[1] for p in parts],
        n_users=max_user + 1,
        n_items=max_item + 1,
        sources=tuple(str(directory / f) for f in LIGHTGCN_FILES),
        size_source="train.txt/valid.txt/test.txt",
        layout="lightgcn",
        files=[str(directory / f) for f in LIGHTGCN_FILES],
        modalities=modalities,
        user_features=user_features,
    )


# ----------------------------------------------------------------------------- parsing


def read_lightgcn_split(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Parses one LightGCN file -> (users, items, max uid listed or -1), int64.

    Each non-blank line is ``uid item item ...``; a uid with no items still counts
    towards n_users.
    """
    path = Path(path)
    text = read_text_file(path)
    tok = [ln.split() for ln in text.splitlines()]
    lens = np.fromiter(map(len, tok), dtype=np.int64, count=len(tok))
    flat = list(itertools.chain.from_iterable(tok))
    line_of = np.repeat(np.arange(1, len(tok) + 1), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)

    def where(k: int) -> str:
        field = k - starts[line_of[k] - 1] + 1
        pos = "user id (first field)" if field == 1 else f"field {field} (item id)"
        return f"{path}: line {line_of[k]}, {pos}"

    vals = to_int(flat, lambda k, t: f"{where(k)}: expected a non-negative integer, got {t!r}")
    neg = np.nonzero(vals < 0)[0]
    if len(neg):
        k = int(neg[0])
        raise DataError(f"{where(k)}: expected a non-negative integer, got {flat[k]!r}")
    nonblank = lens > 0
    uid = vals[starts[nonblank]]
    n_items_line = lens[nonblank] - 1
    users = np.repeat(uid, n_items_line)
    is_item = np.ones(len(vals), dtype=bool)
    is_item[starts[nonblank]] = False
    items = vals[is_item]
    return users, items, int(uid.max()) if len(uid) else -1


# ----------------------------------------------------------------------------- assembly


def clean_interactions(
    users: Sequence[np.ndarray],
    items: Sequence[np.ndarray],
    n_users: int,
    n_items: int,
    sources: Sequence[str] = SPLITS,
) -> tuple[list[CSR], dict]:
    """Per-split (users, items) -> deduplicated CSRs (rule: module docstring) + report.

    Raises DataError when a split is empty before or after dropping the valid/test rows
    of users with no train rows.
    """
    for k in range(3):
        if len(users[k]) == 0:
            raise DataError(
                f"{sources[k]}: no {SPLITS[k]} interactions; every split needs at least one"
            )
    u = np.concatenate([np.asarray(x, np.int64) for x in users])
    i = np.concatenate([np.asarray(x, np.int64) for x in items])
    s = np.concatenate([np.full(len(x), k, np.int8) for k, x in enumerate(users)])
    report: dict = {}

    # duplicates: keep one copy of each (user, item), in the earliest split
    key = u * n_items + i
    order = np.lexsort((s, key))
    ks = key[order]
    first = np.ones(len(ks), dtype=bool)
    first[1:] = ks[1:] != ks[:-1]
    n_dup = int(len(ks) - first.sum())
    report["duplicates"] = n_dup
    report["duplicates_by_split"] = {
        SPLITS[k]: int(np.count_nonzero(s[order][~first] == k)) for k in range(3)
    }
    if n_dup:
        keep = order[first]
        keep.sort()  # back to input order
        u, i, s = u[keep], i[keep], s[keep]

    # valid/test rows of users with no train row are dropped (as MMRec does)
    has_train = np.zeros(n_users, dtype=bool)
    has_train[u[s == 0]] = True
    drop = ~has_train[u]
    report["dropped_valid_rows_no_train"] = int(np.count_nonzero(drop & (s == 1)))
    report["dropped_test_rows_no_train"] = int(np.count_nonzero(drop & (s == 2)))
    report["dropped_users_no_train"] = int(len(np.unique(u[drop])))
    if drop.any():
        u, i, s = u[~drop], i[~drop], s[~drop]

    csrs = []
    for k in range(3):
        m = s == k
        if not m.any():
            raise DataError(
                f"{sources[k]}: all {SPLITS[k]} rows belong to users with no train rows "
                "(dropped, as MMRec does); nothing is left to evaluate"
            )
        csrs.append(CSR.from_pairs(u[m], i[m], n_users))
    return csrs, report


def _warn(msg: str) -> None:
    log.warning(msg)


# warn when more than this share of the id range has no interaction at all
UNUSED_ID_SHARE = 0.5


def unused_id_notes(where: str, train, valid, test, n_users: int, n_items: int) -> dict:
    """Ids are used as row numbers (n = largest id + 1), so ids without any interaction
    still get an embedding row, a place in the kNN graphs and a rank in evaluation. When
    more than UNUSED_ID_SHARE of the item (or user) id range has no interaction, prints a
    warning with the counts and returns them for the report (the trainer logs it)."""
    notes: dict = {}
    seen_items = int(np.unique(np.concatenate([c.indices for c in (train, valid, test)])).size)
    seen_users = int(np.count_nonzero(train.row_lengths() + valid.row_lengths()
                                      + test.row_lengths()))
    for what, n, seen in (("item", n_items, seen_items), ("user", n_users, seen_users)):
        if n and n - seen > UNUSED_ID_SHARE * n:
            _warn(f"{where}: the largest {what} id is {n - 1} but only {seen} {what}s have "
                  f"interactions ({n - seen} of {n} ids unused); every id still gets an "
                  f"embedding row and unused items are ranked in evaluation; re-number the "
                  f"ids contiguously (the `data` command does) unless this is intended")
            notes[f"{what}s_with_interactions"] = seen
            notes[f"unused_{what}_ids"] = n - seen
    return notes


def _assemble(
    name: str,
    directory: Path,
    users: list[np.ndarray],
    items: list[np.ndarray],
    *,
    n_users: int,
    n_items: int,
    sources: Sequence[str],
    size_source: str,
    layout: str,
    files: Iterable[str],
    modalities: Sequence[str] | None,
    user_features: bool,
) -> Dataset:
    (train, valid, test), report = clean_interactions(users, items, n_users, n_items, sources)
    where = str(directory)
    if report["duplicates"]:
        by = ", ".join(f"{v} {k}" for k, v in report["duplicates_by_split"].items() if v)
        _warn(
            f"{where}: {report['duplicates']} duplicate (user, item) rows removed ({by}); "
            "one copy kept in the earliest split"
        )
    dv, dt = report["dropped_valid_rows_no_train"], report["dropped_test_rows_no_train"]
    if dv or dt:
        _warn(
            f"{where}: dropped {dv} valid and {dt} test rows of "
            f"{report['dropped_users_no_train']} users with no train rows (as MMRec does)"
        )
    report.update(unused_id_notes(where, train, valid, test, n_users, n_items))
    item_feats = read_item_features(directory, n_items, modalities, size_source)
    user_feats = read_user_features(directory, n_users, size_source) if user_features else None
    report = {"layout": layout, "files": list(files), **report}
    user_source = read_user_feature_source(directory) if user_feats is not None else None
    return Dataset(
        name=name,
        n_users=n_users,
        n_items=n_items,
        train=train,
        valid=valid,
        test=test,
        item_features=item_feats,
        user_features=user_feats,
        user_feature_source=user_source,
        report=report,
    )
