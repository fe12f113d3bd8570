"""Raw McAuley Amazon dumps -> MMRec files (`<name>.inter`, id maps, item metadata).

Formats read (streamed, plain or gzip; gzip is detected by its magic bytes):

- 2014 ratings CSV: `user,item,rating,timestamp`, no header.
- Reviews, one record a line: JSON (2018) or a Python literal (2014, parsed with
  `ast.literal_eval`, never `eval`). Fields used: reviewerID, asin, overall,
  unixReviewTime.
- Metadata, one record a line, JSON or Python literal. Fields used: asin, title, brand,
  description (a string in 2014, a list of strings in 2018), categories (2014: a list
  of category paths) or category (2018: one path), imUrl (2014) or imageURL /
  imageURLHighRes (2018).

A malformed line is a DataError naming the file and the 1-based line number, unless
`skip_bad_lines=True`, in which case it is skipped, counted and reported.

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
   feature step, plus `build_report.json`.
"""

from __future__ import annotations

import ast
import csv
import gzip
import html
import io
import json
import math
import os
import re
from array import array
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from recgoat_jax.data import preprocess
from recgoat_jax.data.atomic import write_text_atomic
from recgoat_jax.data.inter import write_inter
from recgoat_jax.data.preprocess import TEST, TRAIN, VALID
from recgoat_jax.errors import DataError

_TAG = re.compile(r"<[^>]+>")
_WS = re.compile(r"\s+")


# --------------------------------------------------------------------------- reading


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Opens a plain or gzip file for streamed text reading (UTF-8)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace", newline="")


def _parse_record(text: str) -> object:
    """One JSON or Python-literal record; raises ValueError when it is neither."""
    s = text.strip()
    try:
        return json.loads(s)
    except ValueError:
        pass
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as e:
        raise ValueError(f"not a JSON object or Python literal ({type(e).__name__})") from None


class BadLines:
    """Counts skipped lines (`skip=True`) or raises on the first one."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.count = 0
        self.first: str | None = None

    def __call__(self, path: Path, lineno: int, what: str) -> None:
        msg = f"{path}:{lineno}: {what}"
        if not self.skip:
            raise DataError(msg)
        self.count += 1
        if self.first is None:
            self.first = msg


def iter_records(
    path: str | os.PathLike, *, bad: BadLines | None = None
) -> Iterator[tuple[int, dict]]:
    """Yields (line number, dict) for each non-blank line of a JSON / Python-literal file."""
    path = Path(path)
    bad = bad or BadLines(skip=False)
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = _parse_record(line)
            except ValueError as e:
                bad(path, lineno, f"expected one JSON object or Python dict literal per line: {e}")
                continue
            if not isinstance(rec, dict):
                bad(path, lineno, f"expected a JSON object / dict, got {type(rec).__name__}")
                continue
            yield lineno, rec


def sniff_kind(path: str | os.PathLike) -> str:
    """'ratings' (CSV), 'reviews' (records with reviewerID) or 'meta' (records with asin)."""
    path = Path(path)
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                break
        else:
            raise DataError(f"{path}: file is empty")
    s = line.strip()
    if s.startswith("{"):
        try:
            rec = _parse_record(s)
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: cannot parse the first record: {e}") from None
        if isinstance(rec, dict) and "reviewerID" in rec:
            return "reviews"
        if isinstance(rec, dict) and "asin" in rec:
            return "meta"
        raise DataError(
            f"{path}:{lineno}: record has neither reviewerID (reviews) nor asin (metadata)"
        )
    if len(next(csv.reader([s]))) == 4:
        return "ratings"
    raise DataError(
        f"{path}:{lineno}: expected a ratings CSV line user,item,rating,timestamp "
        "or a JSON / Python-literal record"
    )


def iter_interactions(
    path: str | os.PathLike, *, bad: BadLines | None = None
) -> Iterator[tuple[str, str, str, int]]:
    """Yields (user, item, rating as written, timestamp) from a ratings CSV or reviews file."""
    path = Path(path)
    bad = bad or BadLines(skip=False)
    kind = sniff_kind(path)
    if kind == "meta":
        raise DataError(f"{path}: this is a metadata file; expected ratings or reviews")
    if kind == "ratings":
        with open_text(path) as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 4:
                    bad(path, lineno, f"expected 4 comma-separated fields "
                        f"user,item,rating,timestamp, got {len(row)}")
                    continue
                user, item, rating, ts = (x.strip() for x in row)
                err = _check_fields(user, item, rating, ts)
                if err:
                    bad(path, lineno, err)
                    continue
                yield user, item, rating, int(float(ts))
        return
    for lineno, rec in iter_records(path, bad=bad):
        missing = [k for k in ("reviewerID", "asin") if not rec.get(k)]
        if missing:
            bad(path, lineno, f"review record lacks field {missing[0]!r}")
            continue
        rating = str(rec.get("overall", "0"))
        ts = rec.get("unixReviewTime", 0)
        err = _check_fields(str(rec["reviewerID"]), str(rec["asin"]), rating, str(ts))
        if err:
            bad(path, lineno, err.replace("rating", "overall").replace("timestamp", "unixReviewTime"))
            continue
        yield str(rec["reviewerID"]), str(rec["asin"]), rating, int(float(ts))


def _check_fields(user: str, item: str, rating: str, ts: str) -> str | None:
    if not user:
        return "empty user id"
    if not item:
        return "empty item id"
    try:
        if not math.isfinite(float(rating)):
            raise ValueError
    except ValueError:
        return f"rating {rating!r} is not a number"
    try:
        int(float(ts))
    except (ValueError, OverflowError):
        return f"timestamp {ts!r} is not an integer"
    return None


def _text(x: object) -> str:
    """A metadata field as one clean line: lists joined, HTML tags and entities removed."""
    if x is None:
        return ""
    if isinstance(x, (list, tuple)):
        return " ".join(t for t in (_text(v) for v in x) if t)
    s = html.unescape(_TAG.sub(" ", str(x)))
    return _WS.sub(" ", s).strip()


def normalise_meta(rec: dict) -> dict:
    """A 2014 or 2018 metadata record -> {asin, title, brand, categories, description, image_url}.

    categories is a list of category paths (each a list of strings). 2014 gives several
    paths; 2018 gives one path in `category`.
    """
    cats = rec.get("categories")
    if cats is None and rec.get("category") is not None:
        cats = [rec["category"]]
    paths: list[list[str]] = []
    if isinstance(cats, (list, tuple)):
        for p in cats:
            if isinstance(p, (list, tuple)):
                path = [_text(c) for c in p if _text(c)]
            else:
                path = [_text(p)] if _text(p) else []
            if path:
                paths.append(path)
    price = rec.get("price")
    price = "" if price is None else _text(price)
    if price and price[0].isdigit():
        price = "$" + price
    image = rec.get("imUrl") or rec.get("imageURLHighRes") or rec.get("imageURL") or ""
    if isinstance(image, (list, tuple)):
        image = image[0] if image else ""
    return {
        "asin": str(rec.get("asin", "")),
        "title": _text(rec.get("title")),
        "brand": _text(rec.get("brand")),
        "categories": paths,
        "description": _text(rec.get("description")),
        "price": price,
        "image_url": str(image),
    }


def read_metadata(
    paths: Iterable[str | os.PathLike], *, skip_bad_lines: bool = False
) -> tuple[dict[str, dict], dict]:
    """asin -> normalised record (first record wins), and a report of what was seen."""
    out: dict[str, dict] = {}
    bad = BadLines(skip_bad_lines)
    dupes = 0
    for path in paths:
        for lineno, rec in iter_records(path, bad=bad):
            asin = rec.get("asin")
            if not asin:
                bad(Path(path), lineno, "metadata record lacks field 'asin'")
                continue
            asin = str(asin)
            if asin in out:
                dupes += 1
                continue
            out[asin] = normalise_meta(rec)
    return out, {"meta_records": len(out), "meta_duplicate_asins": dupes,
                 "meta_bad_lines_skipped": bad.count}


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
) -> dict:
    """Builds `<out_dir>/<name>.inter` and the id maps from raw dumps; returns a report.

    ratings_path: one or more ratings CSV / reviews files (read in the given order).
    meta_path: optional metadata file(s); writes `item_meta.jsonl` for the feature step.
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
