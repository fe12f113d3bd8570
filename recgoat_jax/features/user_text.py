"""Real user text: the users' own records (written by people) -> one sentence per user.

A dataset built with a users file (`recgoat data --raw REVIEWS META USERS`) holds
`users.jsonl`: one record per userID that has one, `{"userID", "reviewerID", field: value,
...}`, the fields as the users file wrote them (cleaned by data/raw_formats.read_users).
`--users FILE` reads a raw users file instead, mapped to userIDs through
`u_id_mapping.csv`.

Text of a user, rendered from a `str.format` template (like the item template) over:

    title, brand, category, description   the field's text ("" when the record lacks it)
    other   every field but those four, in the record's order, as "name: value" joined by
            "; " (underscores in names become spaces): "age: 42; gender: M; ..."
    all     every field so
    <name>  any field of the users file by its own name, e.g. {occupation}

A field's text: a list's entries joined by spaces, a number as written, true/false as
yes/no. The default template `{title} {brand} {category} {description} {other}` reads
Debian's users (title, category, description) like its items, and MovieLens' users (age,
gender, occupation, zip_code) as "age: 42; gender: M; occupation: executive; zip code:
98101". Whitespace is collapsed; a user whose used fields are all empty has no text.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Sequence

from recgoat_jax.data.raw_amazon import read_id_mapping, read_users_jsonl
from recgoat_jax.data.raw_formats import read_users
from recgoat_jax.errors import DataError, UserError

DEFAULT_USER_TEMPLATE = "{title} {brand} {category} {description} {other}"
NAMED_FIELDS = ("title", "brand", "category", "description")
GROUP_FIELDS = ("other", "all")
USERS_FILE = "users.jsonl"
_ID_KEYS = ("userID", "reviewerID")
_WS = re.compile(r"\s+")


def field_text(v: object) -> str:
    """One field's value as text: lists joined by spaces, true/false as yes/no."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return " ".join(t for t in (field_text(x) for x in v) if t)
    return _WS.sub(" ", str(v)).strip()


def _pairs(rec: dict, skip: Sequence[str] = ()) -> str:
    return "; ".join(f"{k.replace('_', ' ')}: {t}" for k, v in rec.items()
                     if k not in _ID_KEYS and k not in skip and (t := field_text(v)))


def user_template_fields(rec: dict | None) -> dict[str, str]:
    """Every template field of one users record (None: a user without a record)."""
    rec = rec or {}
    out = {k: field_text(v) for k, v in rec.items() if k not in _ID_KEYS}
    for k in NAMED_FIELDS:
        out.setdefault(k, "")
    out["other"] = _pairs(rec, NAMED_FIELDS)
    out["all"] = _pairs(rec)
    return out


def template_names(template: str, option: str = "--user-template") -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise UserError(f"{option} {template!r}: {e}") from None


def check_user_template(template: str, records: Sequence[dict | None] = (),
                        option: str = "--user-template") -> None:
    """UserError when the template is malformed or names a field that neither the fixed
    names (title, brand, category, description, other, all) nor any record has."""
    known = list(NAMED_FIELDS + GROUP_FIELDS)
    for r in records:
        for k in r or {}:
            if k not in _ID_KEYS and k not in known:
                known.append(k)
    for n in template_names(template, option):
        if n not in known:
            raise UserError(f"{option} {template!r}: unknown field {{{n}}}; expected one of "
                            + ", ".join("{" + f + "}" for f in known))


def render_user_text(rec: dict | None, template: str = DEFAULT_USER_TEMPLATE) -> str:
    """The user's text; "" when the user has no record or every used field is empty."""
    if not rec:
        return ""
    fields = user_template_fields(rec)
    used = [n for n in template_names(template) if n]
    if not any(fields.get(n, "").strip() for n in used):
        return ""
    return _WS.sub(" ", template.format_map(_Blank(fields))).strip()


class _Blank(dict):
    """format_map mapping: a field this record lacks renders as ""."""

    def __missing__(self, key):
        return ""


def has_user_text(dataset_dir: str | os.PathLike, users_path=None) -> bool:
    """Whether there is real user text to read: `users_path`, or `<dir>/users.jsonl`."""
    return bool(users_path) or (Path(dataset_dir) / USERS_FILE).exists()


def user_records(dataset_dir: str | os.PathLike, n_users: int,
                 users_path=None) -> list[dict | None] | None:
    """Users records in userID order (None for a user without one), from `users_path`
    (raw users file(s), mapped through `u_id_mapping.csv`) or `<dir>/users.jsonl`; None
    when neither exists."""
    d = Path(dataset_dir)
    mapping_path = d / "u_id_mapping.csv"
    if users_path:
        if not mapping_path.exists():
            raise DataError(f"{mapping_path}: not found; it maps reviewerID -> userID (written "
                            "by the data step); without it the users file cannot be put in "
                            "userID order")
        paths = [users_path] if isinstance(users_path, (str, os.PathLike)) else list(users_path)
        raw, _ = read_users(paths)
        out: list[dict | None] = [None] * n_users
        for rid, u in read_id_mapping(mapping_path).items():
            if u < n_users and rid in raw:
                out[u] = {"userID": u, **raw[rid]}
        return out
    jl = d / USERS_FILE
    if not jl.exists():
        return None
    recs = read_users_jsonl(jl, n_users)
    if mapping_path.exists():
        for rid, u in read_id_mapping(mapping_path).items():
            r = recs[u] if u < n_users else None
            if r is not None and r.get("reviewerID") not in (None, rid):
                raise DataError(f"{jl}: userID {u} has reviewerID {r['reviewerID']!r} but "
                                f"{mapping_path} maps {rid!r} to it; rebuild the dataset")
    return recs


def user_texts(records: Sequence[dict | None],
               template: str = DEFAULT_USER_TEMPLATE) -> list[str]:
    """Row u = the text of userID u ("" for a user without text)."""
    check_user_template(template, records)
    return [render_user_text(r, template) for r in records]
