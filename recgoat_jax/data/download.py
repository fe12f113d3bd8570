"""Downloading raw dumps: a registry of datasets, resumable HTTP downloads, sha256 checks.

Registry: dataset name -> list of {url, sha256, filename}. The built-in entries point
at the public McAuley Amazon 2014 category files; they are NOT pinned (sha256 None:
the digest is printed after the download so that it can be pinned) and were not
reachable from the machine this was written on. Override or extend the registry with a
YAML or JSON file of the same shape, given by path or by the environment variable
RECGOAT_DOWNLOADS:

    baby:
      - {url: https://mirror.example/ratings_Baby.csv, sha256: 0123..., filename: ratings_Baby.csv}

`download(url, dest, sha256)` writes to `dest.part`, resumes an existing `.part` with an
HTTP Range request (appending only the missing bytes), verifies sha256 (a mismatch
deletes the file and raises), then renames to `dest`. Errors are one line.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

from recgoat_jax.config import canonical_dataset
from recgoat_jax.errors import ConfigError, DataError, UserError

log = logging.getLogger(__name__)

ENV_REGISTRY = "RECGOAT_DOWNLOADS"
_BASE_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"


def _mcauley_2014(category: str) -> list[dict]:
    return [
        {"url": f"{_BASE_2014}/ratings_{category}.csv", "sha256": None,
         "filename": f"ratings_{category}.csv"},
        {"url": f"{_BASE_2014}/meta_{category}.json.gz", "sha256": None,
         "filename": f"meta_{category}.json.gz"},
    ]


DEFAULT_REGISTRY: dict[str, list[dict]] = {
    "baby": _mcauley_2014("Baby"),
    "sports": _mcauley_2014("Sports_and_Outdoors"),
    "clothing": _mcauley_2014("Clothing_Shoes_and_Jewelry"),
    "electronics": _mcauley_2014("Electronics"),  # alias elec (config.DATASET_ALIASES)
}


class DownloadError(UserError):
    """A download failed (unreachable host, HTTP error, short read)."""


def _validate_entries(name: str, entries: object, where: str) -> list[dict]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: dataset {name!r}: expected a non-empty list of "
                          "{url, sha256, filename} entries")
    out = []
    for k, e in enumerate(entries):
        if not isinstance(e, Mapping) or not e.get("url"):
            raise ConfigError(f"{where}: dataset {name!r} entry {k}: expected a mapping with 'url'")
        extra = set(e) - {"url", "sha256", "filename"}
        if extra:
            raise ConfigError(f"{where}: dataset {name!r} entry {k}: unknown key {sorted(extra)[0]!r}")
        sha = e.get("sha256")
        if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha)):
            raise ConfigError(f"{where}: dataset {name!r} entry {k}: sha256 must be 64 hex digits")
        filename = e.get("filename") or str(e["url"]).rstrip("/").rsplit("/", 1)[-1]
        if not filename or "/" in filename or filename in (".", ".."):
            raise ConfigError(f"{where}: dataset {name!r} entry {k}: bad filename {filename!r}")
        out.append({"url": str(e["url"]), "sha256": sha and str(sha).lower(), "filename": filename})
    return out


def load_registry(path: str | os.PathLike | None = None) -> dict[str, list[dict]]:
    """The built-in registry, updated by a YAML / JSON file (path, else $RECGOAT_DOWNLOADS)."""
    reg = {k: [dict(e) for e in v] for k, v in DEFAULT_REGISTRY.items()}
    path = path or os.environ.get(ENV_REGISTRY)
    if not path:
        return reg
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the download registry ({e.strerror})") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # json / yaml parse errors
        raise ConfigError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: "
                          f"{str(e).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a mapping dataset name -> list of entries")
    for name, entries in data.items():
        reg[canonical_dataset(str(name).lower())] = _validate_entries(str(name), entries, str(p))
    return reg


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    timeout: float = 30.0,
    chunk_size: int = 1 << 16,
    progress: bool = True,
    opener: Callable[..., object] | None = None,
) -> Path:
    """Downloads url to dest, resuming dest.part; verifies sha256 when given. Returns dest."""
    dest = Path(dest)
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256.lower():
            return dest
        raise DataError(f"{dest}: exists but its sha256 is not {sha256}; delete it to download again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "recgoat-jax"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    open_url = opener or urllib.request.urlopen
    try:
        resp = open_url(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the .part already holds the whole file
            resp = None
        else:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"{url}: cannot connect ({reason}); are you offline? Download it by hand to {dest} "
            f"or point {ENV_REGISTRY} at a registry with a reachable URL"
        ) from None
    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            if offset and status == 206:
                start = _content_range_start(resp.headers.get("Content-Range"))
                if start != offset:
                    raise DownloadError(f"{url}: server resumed at byte {start}, expected {offset}")
                mode = "ab"
            else:  # 200: the server ignored Range (or nothing to resume): start over
                offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                           desc=dest.name, leave=False)
            got = offset
            try:
                with open(part, mode) as f:
                    while True:
                        try:
                            block = resp.read(chunk_size)
                        except (OSError, http.client.HTTPException) as e:
                            raise DownloadError(
                                f"{url}: connection lost after {got} bytes ({e}); run again to "
                                "resume") from None
                        if not block:
                            break
                        f.write(block)
                        got += len(block)
                        if bar is not None:
                            bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and got < total:
                raise DownloadError(f"{url}: got {got} of {total} bytes; run again to resume")
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256.lower():
            part.unlink()
            raise DataError(f"{dest}: sha256 mismatch (expected {sha256.lower()}, got {digest}); "
                            "the download was deleted, run again")
    os.replace(part, dest)
    return dest


def fetch_dataset(
    name: str,
    raw_dir: str | os.PathLike,
    registry: Mapping[str, list[dict]] | None = None,
    *,
    progress: bool = True,
) -> list[Path]:
    """Downloads every file of a registered dataset into raw_dir; returns their paths."""
    reg = registry if registry is not None else load_registry()
    key = canonical_dataset(name.lower())  # elec -> electronics
    if key not in reg:
        raise ConfigError(f"unknown dataset {name!r} for download; known: {', '.join(sorted(reg))} "
                          f"(add one with {ENV_REGISTRY}=registry.yaml)")
    out = []
    for e in reg[key]:
        p = download(e["url"], Path(raw_dir) / e["filename"], e.get("sha256"), progress=progress)
        if not e.get("sha256"):
            log.warning(f"{p.name}: sha256 {sha256_file(p)} (not pinned in the registry)")
        out.append(p)
    return out
