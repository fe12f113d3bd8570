"""Raw McAuley Amazon dumps -> MMRec files (`<name>.inter`, id maps, item metadata).

Raw formats (ratings CSV, 2014 / 2018 reviews and metadata, plain or gzip) are read by
data/raw_formats.py; a malformed line is a DataError naming the file and the 1-based
line number, unless `skip_bad_lines=True`, in which case it is skipped, counted and
reported. Steps 4-6 are data/preprocess.py (shared with the demo generator), the
`.inter` file is written by data/inter.py.

Pipeline of `build_mmrec` (each step is counted in the returned report):

1. read interactions in input order (several files are read one after the other);
2. drop repeated (user, item) pairs, keeping the first occurrence;
3. optionally drop items with no metadata record (`require_meta=True`);
4. iterative k-core: repeatedly drop every interaction whose user or item has fewer than
   k interactions, until none does;
5. assign ids: after filtering, users and items are numbered 0, 1, ... in order of first
   appearance in the (filtered) input order;
6. per-user random split 8:1:1, seeded: each user's items are shuffled, then
   n_valid = max(1, floor(0.1 n + 0.5)), n_test likewise, the rest is train. A user
   always keeps at least one train item (n = 1: train only; n = 2: train + test);
   with k >= 3 every user has at least one valid and one test item;
7. write `<name>.inter` (tab-separated, header `userID itemID rating timestamp
   x_label`, rows in filtered input order), `u_id_mapping.csv` (`user_id<TAB>userID`),
   `i_id_mapping.csv` (`asin<TAB>itemID`), and, when metadata was given,
   `item_meta.jsonl` (one normalised record per itemID, in itemID order) for the
   feature step, when a users file was given `users.jsonl` (one record per userID that
   has one, in userID order: `{"userID": k, "reviewerID": ..., field: value, ...}`),
   plus `build_report.json`.

A users file (real user side information, data/raw_formats.read_users) never changes the
interactions: no user is dropped or added for having or lacking a record; it only rides
along, re-keyed by the new user ids, for the users that survive the k-core.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path
from typing import Sequence

import numpy as np

from recgoat_jax.data import preprocess
from recgoat_jax.data.atomic import write_text_atomic
from recgoat_jax.data.inter import write_inter
from recgoat_jax.data.preprocess import TEST, TRAIN, VALID
from recgoat_jax.data.raw_formats import (BadLines, iter_interactions, iter_records,
                                          normalise_meta, open_text, read_metadata,
                                          read_users)
from recgoat_jax.errors import DataError


# --------------------------------------------------------------------------- building


def _as_list(p: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    if p is None:
        return []
    if isinstance(p, (str, os.PathLike)):
        return [Path(p)]
    return [Path(x) for x in p]


def build_mmrec(
    ratings_path: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    name: str,
    k_core: int = 5,
    seed: int = 999,
    *,
    meta_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    require_meta: bool = False,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    skip_bad_lines: bool = False,
    users_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> dict:
    """Builds `<out_dir>/<name>.inter` and the id maps from raw dumps; returns a report.

    ratings_path: one or more ratings CSV / reviews files (read in the given order).
    meta_path: optional metadata file(s); writes `item_meta.jsonl` for the feature step.
    users_path: optional users file(s) (reviewerID + user fields); writes `users.jsonl`
    for the feature step. It does not change the interactions.
    """
    if k_core < 1:
        raise DataError(f"k_core must be >= 1, got {k_core}")
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise DataError(f"split ratios must be three non-negative numbers, got {ratios}")
    paths = _as_list(ratings_path)
    if not paths:
        raise DataError("no ratings or reviews file given")
    out = Path(out_dir)
    bad = BadLines(skip_bad_lines)

    user_code: dict[str, int] = {}
    item_code: dict[str, int] = {}
    rating_code: dict[str, int] = {}
    u_arr, i_arr, ts_arr, r_arr = array("q"), array("q"), array("q"), array("l")
    for p in paths:
        for user, item, rating, ts in iter_interactions(p, bad=bad):
            u_arr.append(user_code.setdefault(user, len(user_code)))
            i_arr.append(item_code.setdefault(item, len(item_code)))
            r_arr.append(rating_code.setdefault(rating, len(rating_code)))
            ts_arr.append(ts)
    n_lines = len(u_arr)
    rating_names = list(rating_code)
    users_all = np.frombuffer(u_arr, dtype=np.int64) if n_lines else np.zeros(0, np.int64)
    items_all = np.frombuffer(i_arr, dtype=np.int64) if n_lines else np.zeros(0, np.int64)
    # repeated (user, item) pairs: keep the first occurrence, in input order
    pair = users_all * max(len(item_code), 1) + items_all
    _, first = np.unique(pair, return_index=True)
    rows = np.sort(first)
    dupes = n_lines - len(rows)
    users, items = users_all[rows], items_all[rows]
    report: dict = {
        "inputs": [str(p) for p in paths],
        "interactions_read": n_lines,
        "duplicate_pairs_dropped": dupes,
        "bad_lines_skipped": bad.count,
    }
    if bad.first:
        report["first_bad_line"] = bad.first
    keep = np.ones(len(users), dtype=bool)

    meta: dict[str, dict] = {}
    meta_paths = _as_list(meta_path)
    if meta_paths:
        meta, meta_report = read_metadata(meta_paths, skip_bad_lines=skip_bad_lines)
        report.update(meta_report)
        asin_of_code = np.array(list(item_code), dtype=object)
        has_meta = np.fromiter((a in meta for a in asin_of_code), dtype=bool,
                               count=len(asin_of_code))
        report["items_without_meta"] = int((~has_meta).sum())
        if require_meta:
            keep &= has_meta[items]
            report["interactions_dropped_no_meta"] = int((~keep).sum())
    elif require_meta:
        raise DataError("require_meta=True needs a metadata file")
    users_paths = _as_list(users_path)
    user_recs: dict[str, dict] = {}
    if users_paths:  # read before the filtering, so a bad users file fails early
        user_recs, users_report = read_users(users_paths, skip_bad_lines=skip_bad_lines)
        report.update(users_report)

    idx = np.nonzero(keep)[0]
    kc = preprocess.k_core(users[idx], items[idx], k_core)
    idx = idx[kc]
    report["k_core"] = k_core
    report["interactions_after_k_core"] = int(len(idx))
    if len(idx) == 0:
        raise DataError(
            f"{paths[0]}: nothing is left after {k_core}-core filtering "
            f"({n_lines} interactions read); lower --k-core or give more data"
        )
    new_u, old_u = preprocess.compact_ids(users[idx], order="first")
    new_i, old_i = preprocess.compact_ids(items[idx], order="first")
    n_users, n_items = len(old_u), len(old_i)
    labels = preprocess.split_per_user(new_u, n_users, np.random.default_rng(seed), ratios,
                                       shuffle="permutation")

    user_names = list(user_code)
    item_names = list(item_code)
    out.mkdir(parents=True, exist_ok=True)
    src = rows[idx].tolist()
    write_inter(out / f"{name}.inter", new_u, new_i, labels,
                ratings=[rating_names[r_arr[r]] for r in src], timestamps=[ts_arr[r] for r in src])
    write_text_atomic(out / "u_id_mapping.csv",
                  "user_id\tuserID\n" + "".join(f"{user_names[c]}\t{k}\n" for k, c in enumerate(old_u.tolist())))
    write_text_atomic(out / "i_id_mapping.csv",
                  "asin\titemID\n" + "".join(f"{item_names[c]}\t{k}\n" for k, c in enumerate(old_i.tolist())))
    if meta_paths:
        meta_lines = []
        for k, c in enumerate(old_i.tolist()):
            rec = meta.get(item_names[c]) or normalise_meta({"asin": item_names[c]})
            meta_lines.append(json.dumps({"itemID": k, **rec}, ensure_ascii=False))
        write_text_atomic(out / "item_meta.jsonl", "\n".join(meta_lines) + "\n")
        report["items_without_meta_after_filtering"] = sum(
            1 for c in old_i.tolist() if item_names[c] not in meta)
    if users_paths:
        user_lines = [json.dumps({"userID": k, **user_recs[user_names[c]]}, ensure_ascii=False)
                      for k, c in enumerate(old_u.tolist()) if user_names[c] in user_recs]
        write_text_atomic(out / "users.jsonl", "".join(x + "\n" for x in user_lines))
        report["users_with_record_after_filtering"] = len(user_lines)
        report["users_without_record_after_filtering"] = n_users - len(user_lines)
    elif (out / "users.jsonl").exists():  # a rebuild without a users file: no stale records
        (out / "users.jsonl").unlink()
    report.update(
        n_users=n_users,
        n_items=n_items,
        train=int((labels == TRAIN).sum()),
        valid=int((labels == VALID).sum()),
        test=int((labels == TEST).sum()),
        seed=seed,
        ratios=list(ratios),
        out_dir=str(out),
    )
    write_text_atomic(out / "build_report.json", json.dumps(report, indent=2) + "\n")
    return report


# --------------------------------------------------------------------------- reading back


def read_id_mapping(path: str | os.PathLike) -> dict[str, int]:
    """`u_id_mapping.csv` / `i_id_mapping.csv` -> {original id: new id}."""
    path = Path(path)
    out: dict[str, int] = {}
    with open_text(path) as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if len(header) != 2:
            raise DataError(f"{path}:1: expected a tab-separated header of 2 columns "
                            f"(e.g. asin<TAB>itemID), got {header!r}")
        for lineno, line in enumerate(f, 2):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 2:
                raise DataError(f"{path}:{lineno}: expected 2 tab-separated fields, got {len(parts)}")
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                raise DataError(f"{path}:{lineno}: id {parts[1]!r} is not an integer") from None
    ids = sorted(out.values())
    if ids != list(range(len(ids))):
        raise DataError(f"{path}: new ids must be 0..{len(ids) - 1}, each once")
    return out


def read_item_meta(path: str | os.PathLike, n_items: int | None = None) -> list[dict]:
    """`item_meta.jsonl` -> list indexed by itemID (missing items get empty records)."""
    path = Path(path)
    recs: dict[int, dict] = {}
    for lineno, rec in iter_records(path):
        try:
            recs[int(rec["itemID"])] = rec
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{path}:{lineno}: expected an integer field 'itemID'") from None
    n = n_items if n_items is not None else (max(recs) + 1 if recs else 0)
    return [recs.get(i) or {"itemID": i, **normalise_meta({})} for i in range(n)]


def read_users_jsonl(path: str | os.PathLike, n_users: int | None = None) -> list[dict | None]:
    """`users.jsonl` -> list indexed by userID: the user's record (its fields besides
    userID and reviewerID may be anything `raw_formats.read_users` keeps), or None for a
    user without one."""
    path = Path(path)
    recs: dict[int, dict] = {}
    for lineno, rec in iter_records(path):
        try:
            u = int(rec["userID"])
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{path}:{lineno}: expected an integer field 'userID'") from None
        if u < 0 or (n_users is not None and u >= n_users):
            raise DataError(f"{path}:{lineno}: userID {u} is outside 0..{(n_users or 1) - 1}")
        recs[u] = rec
    n = n_users if n_users is not None else (max(recs) + 1 if recs else 0)
    return [recs.get(u) for u in range(n)]
