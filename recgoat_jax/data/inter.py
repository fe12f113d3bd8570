"""The MMRec ``.inter`` file: the one reader and the one writer.

Format: tab-separated, a header line naming at least ``userID``, ``itemID`` and
``x_label`` (others, e.g. ``rating`` and ``timestamp``, are optional; RecBole-style
``userID:token`` names are accepted), then one row per interaction. Ids are 0-based
non-negative integers; x_label 0 = train, 1 = valid, 2 = test.

Every reader of the file (the trainer through data/formats.py, the feature step's user
profiles) goes through `read_inter`, so they accept and refuse the same files, with the
same one-line DataError naming the file, the line (the header is line 1) and the column.
Writers: the raw-dump builder (data/raw_amazon.py) and the demo generator
(data/synthetic.py) both write through `write_inter`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from recgoat_jax.data.atomic import write_text_atomic
from recgoat_jax.errors import DataError

INTER_HEADER = ("userID", "itemID", "rating", "timestamp", "x_label")
REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


class InterColumns(NamedTuple):
    """A parsed .inter file; timestamps is None unless asked for and present."""

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    timestamps: np.ndarray | None = None


def read_text_file(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); expected a text file") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _bad_int(token: str) -> bool:
    return _INT_RE.match(token) is None or not (-(2**63) <= int(token) < 2**63)


def to_int(tokens: list[str], locate) -> np.ndarray:
    """tokens -> int64 array; on failure, locate(index) names the culprit in a DataError."""
    try:
        return np.array(tokens, dtype=np.int64) if tokens else np.zeros(0, np.int64)
    except (ValueError, OverflowError):
        pass
    for k, t in enumerate(tokens):
        if _bad_int(t):
            raise DataError(locate(k, t))
    raise DataError(locate(0, tokens[0]))  # unreachable in practice


def read_inter(path: str | os.PathLike, *, timestamps: bool = False) -> InterColumns:
    """Parses an MMRec .inter file -> InterColumns (int64 arrays, file order).

    timestamps: also read the optional ``timestamp`` column (None when there is none);
    it only orders histories, so a value that is not an integer is read as int(float)
    or, failing that, -1, instead of being an error.
    """
    path = Path(path)
    text = read_text_file(path)
    users, items, labels = _read_ids(path, text)
    ts = _read_timestamps(text) if timestamps else None
    return InterColumns(users, items, labels, ts)


def _header(first: str) -> list[str]:
    return [c.strip().split(":")[0] for c in first.rstrip("\r").split("\t")]


def _read_timestamps(text: str) -> np.ndarray | None:
    first, _, rest = text.partition("\n")
    header = _header(first)
    if "timestamp" not in header:
        return None
    j = header.index("timestamp")
    out = []
    for line in rest.split("\n"):
        if not line.strip():
            continue
        tok = line.rstrip("\r").split("\t")[j]
        try:
            out.append(int(tok))
        except ValueError:
            try:
                out.append(int(float(tok)))
            except (ValueError, OverflowError):
                out.append(-1)
    return np.asarray(out, dtype=np.int64)


def _read_ids(path: Path, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, x_labels) with full validation: the fast path, else line by line."""
    first, _, rest = text.partition("\n")
    if not first.strip():
        raise DataError(
            f"{path}: line 1: missing header; expected tab-separated columns "
            "userID, itemID, x_label (rating, timestamp optional)"
        )
    header = _header(first)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        hint = " (is the file tab-separated?)" if len(header) == 1 else ""
        raise DataError(
            f"{path}: line 1 (header): missing column(s) {', '.join(missing)}; expected "
            f"tab-separated columns userID, itemID, x_label (rating, timestamp optional), "
            f"found: {', '.join(header)}{hint}"
        )
    dups = sorted({c for c in header if header.count(c) > 1 and c in REQUIRED_COLUMNS})
    if dups:
        raise DataError(f"{path}: line 1 (header): column(s) {', '.join(dups)} appear twice")
    ncol = len(header)
    col = {c: header.index(c) for c in REQUIRED_COLUMNS}

    fast = _parse_inter_fast(rest, ncol, [col[c] for c in REQUIRED_COLUMNS])
    if fast is not None:
        return fast
    # slow path: line by line, precise messages
    body = rest.split("\n")
    linenos = np.arange(2, len(body) + 2)
    blank = [not ln.strip() for ln in body]
    if any(blank):
        keep = ~np.array(blank)
        body = [ln for ln, b in zip(body, blank) if not b]
        linenos = linenos[keep]
    if not body:
        raise DataError(f"{path}: no interaction rows after the header; expected at least one")
    fields = [ln.rstrip("\r").split("\t") for ln in body]
    nf = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields))
    bad = np.nonzero(nf != ncol)[0]
    if len(bad):
        k = int(bad[0])
        raise DataError(
            f"{path}: line {linenos[k]}: {nf[k]} tab-separated fields, expected {ncol} "
            f"(as in the header: {', '.join(header)})"
        )
    out = []
    for c in REQUIRED_COLUMNS:
        j = col[c]
        what = "0, 1 or 2" if c == "x_label" else "a non-negative integer id"
        tokens = [f[j].strip() for f in fields]
        vals = to_int(
            tokens,
            lambda k, t, c=c, what=what: f"{path}: line {linenos[k]}, column {c}: "
            f"expected {what}, got {t!r}",
        )
        if c == "x_label":
            wrong = np.nonzero((vals < 0) | (vals > 2))[0]
        else:
            wrong = np.nonzero(vals < 0)[0]
        if len(wrong):
            k = int(wrong[0])
            raise DataError(
                f"{path}: line {linenos[k]}, column {c}: expected {what}, got {tokens[k]!r}"
            )
        out.append(vals)
    return out[0], out[1], out[2]


def _int_field(arr: np.ndarray, fs: np.ndarray, fe: np.ndarray) -> np.ndarray | None:
    """Plain decimal digits in arr[fs:fe] -> int64, or None if any field is anything else."""
    w = fe - fs
    if len(w) == 0 or w.min() <= 0 or w.max() > 18:
        return None
    val = np.zeros(len(w), dtype=np.int64)
    for p in range(int(w.max())):
        m = p < w
        c = arr[np.where(m, fs + p, fs)].astype(np.int64) - 48
        if ((c < 0) | (c > 9))[m].any():
            return None
        val = np.where(m, val * 10 + c, val)
    return val


def _parse_inter_fast(body: str, ncol: int, cols: list[int]) -> tuple | None:
    """Vectorised parse of well-formed .inter rows (plain digits in the needed columns,
    exactly ncol tab-separated fields per line, no blank lines, x_label in 0..2).
    Returns None on anything else, so the slow path can name the line."""
    raw = body.encode("utf-8").replace(b"\r\n", b"\n")
    if not raw or b"\r" in raw:
        return None
    arr = np.frombuffer(raw, dtype=np.uint8)
    if arr[-1] != 10:
        arr = np.concatenate([arr, np.array([10], dtype=np.uint8)])
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], nl[:-1] + 1])
    ends = nl
    if (ends <= starts).any():
        return None
    tabs = np.flatnonzero(arr == 9)
    if len(tabs) != len(nl) * (ncol - 1):
        return None
    if ncol > 1:
        tabs = tabs.reshape(len(nl), ncol - 1)
        if not ((tabs[:, 0] >= starts) & (tabs[:, -1] < ends)).all():
            return None
    out = []
    for j in cols:
        fs = starts if j == 0 else tabs[:, j - 1] + 1
        fe = ends if j == ncol - 1 else tabs[:, j]
        v = _int_field(arr, fs, fe)
        if v is None:
            return None
        out.append(v)
    if out[2].max() > 2:
        return None
    return out[0], out[1], out[2]


def write_inter(
    path: str | os.PathLike,
    users: Iterable[int],
    items: Iterable[int],
    labels: Iterable[int],
    ratings: Iterable[str] | None = None,
    timestamps: Iterable[int] | None = None,
) -> Path:
    """Writes rows in the given order under the header ``userID itemID rating timestamp
    x_label`` (atomically). ratings default to 1 and timestamps to 0 (the generator's)."""
    users, items, labels = (list(x) if not hasattr(x, "tolist") else x.tolist()
                            for x in (users, items, labels))
    ratings = ["1"] * len(users) if ratings is None else ratings
    timestamps = [0] * len(users) if timestamps is None else timestamps
    body = "".join(map("{}\t{}\t{}\t{}\t{}\n".format, users, items, ratings, timestamps, labels))
    path = Path(path)
    write_text_atomic(path, "\t".join(INTER_HEADER) + "\n" + body)
    return path
