"""Item image features -> `image_feat.npy` [n_items, d].

Two ways in:

1. `import_image_features(src, dataset_dir)`: a precomputed matrix (e.g. MMRec's public
   4096-d CNN features, possibly float64) is checked (2-D, one row per item, finite)
   and saved as float32 `image_feat.npy`.
2. `build_image_features(dataset_dir, image_dir, model=...)`: computes features from
   local image files with a Hugging Face vision encoder (CLIP: `get_image_features`;
   ViT and others: pooled output, else the first token), batched and resumable exactly
   like text (chunks + manifest in a work dir). An item's image is
   `<image_dir>/<asin>.<ext>` or `<image_dir>/<itemID>.<ext>` (jpg, jpeg, png, webp,
   gif, bmp). Items without an image get the mean of the other rows (MMRec's
   convention), counted in the report. Needs Pillow and torchvision besides torch and
   transformers (transformers 5 image processors require both); neither is in
   requirements-features.txt, and no vision model was available offline when this was
   written, so this path ran only with an injected encoder in the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recgoat_jax.data.raw_amazon import read_id_mapping
from recgoat_jax.errors import DataError, UserError
from recgoat_jax.features import hf
from recgoat_jax.data.atomic import save_npy_atomic
from recgoat_jax.features.chunks import encode_rows, resolve_encoder

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def import_image_features(src: str | os.PathLike, dataset_dir: str | os.PathLike,
                          n_items: int | None = None) -> dict:
    """Validates a precomputed [n_items, d] matrix and writes `<dataset_dir>/image_feat.npy`."""
    src, d = Path(src), Path(dataset_dir)
    try:
        arr = np.load(src, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{src}: not a readable .npy array ({str(e).splitlines()[0]})") from None
    if n_items is None and (d / "i_id_mapping.csv").exists():
        n_items = len(read_id_mapping(d / "i_id_mapping.csv"))
    if arr.ndim != 2:
        raise DataError(f"{src}: expected a 2-D array [n_items, d], got shape {arr.shape}")
    if n_items is not None and arr.shape[0] != n_items:
        raise DataError(f"{src}: has {arr.shape[0]} rows, the dataset has {n_items} items")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{src}: expected numbers, got dtype {arr.dtype}")
    out = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.nonzero(~np.isfinite(out).all(axis=1))[0][0])
        raise DataError(f"{src}: row {bad} has a NaN or infinite value")
    if Path(src).resolve() != (d / "image_feat.npy").resolve():
        save_npy_atomic(d / "image_feat.npy", out)
    return {"n_items": int(out.shape[0]), "dim": int(out.shape[1]), "source": str(src),
            "source_dtype": str(arr.dtype), "out": str(d / "image_feat.npy")}


def find_item_images(image_dir: str | os.PathLike, asins: Sequence[str]) -> list[Path | None]:
    """Row i: the image file of itemID i (by asin, else by itemID), or None."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: not a directory of item images")
    by_stem: dict[str, Path] = {}
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS and p.stem not in by_stem:
            by_stem[p.stem] = p
    return [by_stem.get(a) or by_stem.get(str(i)) for i, a in enumerate(asins)]


class ImageEncoder(hf.HFModel):
    """image files -> [n, d] float32 with a Hugging Face vision model (CLIP, ViT, ...)."""

    def __init__(self, model: str, *, device: str | None = None, dtype: str = "auto"):
        hf.require_torch()
        try:
            import PIL.Image  # noqa: F401
        except ImportError:
            raise UserError("computing image features needs Pillow and torchvision: "
                            "pip install pillow torchvision (matching torch)") from None
        super().__init__(model, device, dtype)
        self.processor, self.model = self._load_pair("AutoImageProcessor", "AutoModel")

    @property
    def fingerprint(self) -> str:
        return f"image:{self.model_name}"

    def _forward(self, paths: Sequence[Path]) -> np.ndarray:
        import PIL.Image

        images = []
        for p in paths:
            try:
                with PIL.Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except (OSError, ValueError) as e:
                raise DataError(f"{p}: cannot read image ({e})") from None
        batch = self.processor(images=images, return_tensors="pt").to(self.device)
        pixels = batch["pixel_values"].to(self.dtype)
        with self._torch.inference_mode():
            if hasattr(self.model, "get_image_features"):
                out = self.model.get_image_features(pixel_values=pixels)
                out = getattr(out, "pooler_output", out)
            else:
                res = self.model(pixel_values=pixels)
                out = getattr(res, "pooler_output", None)
                if out is None:
                    out = res.last_hidden_state[:, 0]
        return out.float().cpu().numpy()


def build_image_features(
    dataset_dir: str | os.PathLike,
    image_dir: str | os.PathLike,
    *,
    model: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 1024,
    work_dir: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str = "auto",
    encoder: Callable[[list], np.ndarray] | None = None,
    model_id: str | None = None,
    progress: bool = True,
) -> dict:
    """Writes `<dataset_dir>/image_feat.npy` from local image files; returns a report."""
    d = Path(dataset_dir)
    mapping = d / "i_id_mapping.csv"
    if not mapping.exists():
        raise DataError(f"{mapping}: not found; needed to match image files to itemIDs")
    asin_to_id = read_id_mapping(mapping)
    asins = [""] * len(asin_to_id)
    for a, i in asin_to_id.items():
        asins[i] = a
    files = find_item_images(image_dir, asins)

    def make_encoder():
        if not model:
            raise UserError("--image-model PATH_OR_NAME is needed to compute image features "
                            "(or give precomputed ones with --image-feat FILE)")
        return ImageEncoder(model, device=device, dtype=dtype)

    encoder, model_id = resolve_encoder(encoder, model_id, make_encoder)
    work = Path(work_dir) if work_dir else d / ".work" / "image"
    feat, present, stats = encode_rows(
        files, encoder, work, model_id=model_id, normalise=False,
        chunk_size=chunk_size, batch_size=batch_size,
        key=lambda p: f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}",
        sort_key=None, progress=progress, desc="item images")
    save_npy_atomic(d / "image_feat.npy", feat)
    return {"n_items": len(files), "dim": int(feat.shape[1]),
            "items_without_image": int((~present).sum()),
            "fallback": "mean of the other items' rows", "model": model_id,
            "out": str(d / "image_feat.npy"), **stats}
