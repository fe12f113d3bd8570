"""Reading raw McAuley Amazon dumps (streamed, plain or gzip; gzip is detected by its
magic bytes).

- 2014 ratings CSV: `user,item,rating,timestamp`, no header.
- Reviews, one record a line: JSON (2018) or a Python literal (2014, parsed with
  `ast.literal_eval`, never `eval`). Fields used: reviewerID, asin, overall,
  unixReviewTime.
- Metadata, one record a line, JSON or Python literal. Fields used: asin, title, brand,
  description (a string in 2014, a list of strings in 2018), categories (2014: a list
  of category paths) or category (2018: one path), imUrl (2014) or imageURL /
  imageURLHighRes (2018).
- Users (real side information about the users, written by people), one record a line,
  JSON or Python literal: `reviewerID` and no `asin`; every other field is kept as it
  is written, cleaned: text (HTML removed), a number, true/false, or a list of those
  (e.g. Debian's title / category / description, MovieLens' age / gender / occupation /
  zip_code). `read_users` reads them; the feature step renders them into user text.

A malformed line is a DataError naming the file and the 1-based line number, unless
`skip_bad_lines=True` (a `BadLines(skip=True)`), in which case it is skipped, counted
and reported. The builder of MMRec files from these is data/raw_amazon.py.
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
from pathlib import Path
from typing import Iterable, Iterator

from recgoat_jax.errors import DataError

_TAG = re.compile(r"<[^>]+>")
_WS = re.compile(r"\s+")


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
    """What a raw file holds, from its first record: 'ratings' (a 4-field CSV line),
    'reviews' (reviewerID and asin), 'users' (reviewerID, no asin) or 'meta' (asin, no
    reviewerID)."""
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
            return "reviews" if "asin" in rec else "users"
        if isinstance(rec, dict) and "asin" in rec:
            return "meta"
        raise DataError(
            f"{path}:{lineno}: record has neither reviewerID (reviews, users) nor asin "
            "(metadata)"
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
    if kind == "users":
        raise DataError(f"{path}: this is a users file (reviewerID, no asin); expected "
                        "ratings or reviews")
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


# --------------------------------------------------------------------------- users

_USER_SCALARS = (str, int, float, bool)


def _user_value(x: object) -> object:
    """A users-file field value, cleaned: text (as `_text`), a finite number, true/false,
    or a list of those (nested lists flattened, empty entries dropped); None when empty.
    Raises ValueError (what was found) for anything else."""
    if x is None:
        return None
    if isinstance(x, bool):
        return x
    if isinstance(x, (int, float)):
        if not math.isfinite(x):
            raise ValueError(f"{x!r} is not a finite number")
        return x
    if isinstance(x, str):
        return _text(x) or None
    if isinstance(x, (list, tuple)):
        out: list = []
        for v in x:
            v = _user_value(v)
            if v is None:
                continue
            out.extend(v if isinstance(v, list) else [v])
        return out or None
    raise ValueError(f"expected text, a number, true/false or a list of them, got "
                     f"{type(x).__name__}")


def normalise_user(rec: dict) -> dict:
    """A users-file record -> {"reviewerID": id, field: cleaned value, ...} in the
    record's own field order; empty fields are dropped. Raises ValueError naming the
    field whose value is neither text, a number, true/false nor a list of them."""
    out: dict = {"reviewerID": str(rec.get("reviewerID", ""))}
    for k, v in rec.items():
        if k == "reviewerID":
            continue
        try:
            v = _user_value(v)
        except ValueError as e:
            raise ValueError(f"field {str(k)!r}: {e}") from None
        if v is not None:
            out[str(k)] = v
    return out


def read_users(
    paths: Iterable[str | os.PathLike], *, skip_bad_lines: bool = False
) -> tuple[dict[str, dict], dict]:
    """reviewerID -> normalised users record (first record wins), and a report.

    A line is bad (DataError naming file, 1-based line and field, or skipped and
    counted with skip_bad_lines) when it is not a record, lacks `reviewerID`, has an
    `asin` (a review line in the users file), or has a field whose value is not text, a
    number, true/false or a list of them."""
    out: dict[str, dict] = {}
    bad = BadLines(skip_bad_lines)
    dupes = 0
    for path in paths:
        for lineno, rec in iter_records(path, bad=bad):
            uid = rec.get("reviewerID")
            if uid is None or str(uid).strip() == "":
                bad(Path(path), lineno, "users record lacks field 'reviewerID'")
                continue
            if "asin" in rec:
                bad(Path(path), lineno, "users record has field 'asin': a review line in a "
                    "users file? (users lines hold reviewerID and user fields only)")
                continue
            try:
                user = normalise_user(rec)
            except ValueError as e:
                bad(Path(path), lineno, f"users record {str(uid)!r}: {e}")
                continue
            if user["reviewerID"] in out:
                dupes += 1
                continue
            out[user["reviewerID"]] = user
    report = {"users_records": len(out), "users_duplicate_ids": dupes,
              "users_bad_lines_skipped": bad.count}
    if bad.first:
        report["users_first_bad_line"] = bad.first
    return out, report
