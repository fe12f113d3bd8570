"""Resumable, chunked encoding of rows into a feature matrix [n, d] float32.

Inputs are encoded in chunks of `chunk_size`, each saved as `<work_dir>/chunk_00000.npy`
and recorded with a hash of its inputs in `<work_dir>/manifest.json`. A restarted run
reuses every chunk whose inputs and model are unchanged and encodes only the rest.
Rows without input take the mean of the others (MMRec's convention for missing images).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recgoat_jax.data.atomic import save_npy_atomic, write_json_atomic
from recgoat_jax.errors import DataError, UserError

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


def _hash_inputs(items: Sequence, key: Callable[[object], str]) -> str:
    h = hashlib.sha256()
    for x in items:
        b = key(x).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def encode_chunked(
    inputs: Sequence,
    encode_batch: Callable[[list], np.ndarray],
    work_dir: str | os.PathLike,
    *,
    model_id: str,
    chunk_size: int = 1024,
    batch_size: int = 64,
    key: Callable[[object], str] = str,
    sort_key: Callable[[object], int] | None = len,
    progress: bool = True,
    desc: str = "encode",
) -> tuple[np.ndarray, dict]:
    """Encodes inputs in resumable chunks; returns ([n, dim] float32, stats).

    Chunk c covers inputs[c*chunk_size : (c+1)*chunk_size] and is saved as
    `chunk_{c:05d}.npy`; the manifest records each chunk's input hash. A chunk whose
    hash, model_id and chunk_size match the manifest (and whose file is readable with
    the right number of rows) is reused, not encoded again. Within a chunk, inputs are
    batched in order of sort_key (less padding) and put back in order.
    """
    if chunk_size < 1 or batch_size < 1:
        raise UserError(f"chunk size and batch size must be >= 1 (got {chunk_size}, {batch_size})")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    man_path = work / "manifest.json"
    manifest = {}
    if man_path.exists():
        with contextlib.suppress(ValueError, OSError):
            manifest = json.loads(man_path.read_text(encoding="utf-8"))
    if (manifest.get("version") != MANIFEST_VERSION or manifest.get("model") != model_id
            or manifest.get("chunk_size") != chunk_size):
        manifest = {"version": MANIFEST_VERSION, "model": model_id, "chunk_size": chunk_size,
                    "dim": None, "chunks": {}}
    n = len(inputs)
    manifest["n"] = n
    n_chunks = (n + chunk_size - 1) // chunk_size
    stats = {"chunks": n_chunks, "reused_chunks": 0, "encoded_chunks": 0, "batches": 0}
    todo = []
    for c in range(n_chunks):
        part = inputs[c * chunk_size : (c + 1) * chunk_size]
        digest = _hash_inputs(part, key)
        entry = manifest["chunks"].get(f"{c:05d}")
        f = work / f"chunk_{c:05d}.npy"
        ok = False
        if entry and entry.get("sha256") == digest and f.exists():
            with contextlib.suppress(ValueError, OSError):
                arr = np.load(f, mmap_mode="r")
                ok = arr.shape[0] == len(part) and (manifest.get("dim") in (None, arr.shape[1]))
        if ok:
            stats["reused_chunks"] += 1
        else:
            manifest["chunks"].pop(f"{c:05d}", None)
            todo.append((c, part, digest))
    for k in list(manifest["chunks"]):
        if int(k) >= n_chunks:
            del manifest["chunks"][k]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=n, initial=n - sum(len(p) for _, p, _ in todo), unit="it", desc=desc)
    elif todo:  # no bar (stderr is a log file, or --no-progress): a status line per chunk
        log.info(f"{desc}: encoding {len(todo)} of {n_chunks} chunks "
                 f"({stats['reused_chunks']} reused), {chunk_size} rows each")
    done, start = n - sum(len(p) for _, p, _ in todo), time.perf_counter()
    try:
        for c, part, digest in todo:
            order = (sorted(range(len(part)), key=lambda j: sort_key(part[j]), reverse=True)
                     if sort_key else list(range(len(part))))
            rows: list[np.ndarray] = []
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                emb = np.asarray(encode_batch([part[j] for j in idx]), dtype=np.float32)
                if emb.ndim != 2 or emb.shape[0] != len(idx):
                    raise RuntimeError(f"encoder returned shape {emb.shape} for {len(idx)} inputs")
                rows.append(emb)
                stats["batches"] += 1
                if bar is not None:
                    bar.update(len(idx))
            out = np.empty((len(part), rows[0].shape[1]), dtype=np.float32)
            out[np.asarray(order)] = np.concatenate(rows)
            if manifest.get("dim") not in (None, out.shape[1]):
                raise RuntimeError(f"chunk {c} has width {out.shape[1]}, earlier chunks "
                                   f"{manifest['dim']}")
            save_npy_atomic(work / f"chunk_{c:05d}.npy", out)
            manifest["dim"] = int(out.shape[1])
            manifest["chunks"][f"{c:05d}"] = {"sha256": digest, "rows": len(part)}
            write_json_atomic(man_path, manifest)
            stats["encoded_chunks"] += 1
            done += len(part)
            if bar is None:
                log.info(f"{desc}: chunk {c + 1}/{n_chunks} done, {done}/{n} rows, "
                         f"{time.perf_counter() - start:.1f} s")
    finally:
        if bar is not None:
            bar.close()
    write_json_atomic(man_path, manifest)
    if n == 0:
        return np.zeros((0, manifest.get("dim") or 0), dtype=np.float32), stats
    arr = np.concatenate([np.load(work / f"chunk_{c:05d}.npy") for c in range(n_chunks)])
    return arr.astype(np.float32, copy=False), stats


def fill_missing_with_mean(emb: np.ndarray, present: np.ndarray, n: int,
                           normalise: bool = True) -> np.ndarray:
    """[n, d]: rows where present is True take emb in order; the others the mean of those
    (L2-re-normalised when normalise)."""
    present = np.asarray(present, dtype=bool)
    if not present.any():
        raise DataError("nothing to encode: no item or user has any text (or image)")
    out = np.empty((n, emb.shape[1]), dtype=np.float32)
    out[present] = emb
    if (~present).any():
        mean = emb.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        out[~present] = mean / norm if (normalise and norm > 0) else mean
    return out


def resolve_encoder(encoder: Callable | None, model_id: str | None,
                    make: Callable[[], Callable]) -> tuple[Callable, str]:
    """(encoder, model_id): `make()` when no encoder is given; model_id defaults to the
    encoder's fingerprint, else its repr."""
    if encoder is None:
        encoder = make()
        model_id = encoder.fingerprint
    return encoder, model_id or getattr(encoder, "fingerprint", None) or repr(encoder)


def encode_rows(rows: Sequence, encoder: Callable[[list], np.ndarray],
                work_dir: str | os.PathLike, *, model_id: str, normalise: bool = True,
                **chunk_kw) -> tuple[np.ndarray, np.ndarray, dict]:
    """rows [n] (a falsy row has no input) -> ([n, d] float32, present [n] bool, stats).

    Present rows go through `encode_chunked` (chunk_kw: chunk_size, batch_size, key,
    sort_key, progress, desc); the others get `fill_missing_with_mean`.
    """
    present = np.array([bool(r) for r in rows], dtype=bool)
    emb, stats = encode_chunked([r for r in rows if r], encoder, work_dir, model_id=model_id,
                                **chunk_kw)
    return fill_missing_with_mean(emb, present, len(rows), normalise), present, stats
