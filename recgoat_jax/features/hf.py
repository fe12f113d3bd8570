"""Loading Hugging Face models: the torch check, device / dtype choice, offline-aware
`from_pretrained`, and `HFModel`, the base of the text, image and LLM wrappers."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from recgoat_jax.errors import UserError, features_install_hint

T = TypeVar("T")


def require_torch():
    """The torch module; UserError when torch or transformers is missing."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise UserError(f"feature extraction needs torch and transformers ({e.name} is missing): "
                        f"{features_install_hint()}") from None
    return torch


def pick_device_dtype(device: str | None = None, dtype: str = "auto"):
    """(torch device, torch dtype): CUDA when available; bf16 / fp16 there, fp32 on CPU."""
    torch = require_torch()
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
def offline_if_local(model: str):
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


def load_error(model: str, e: Exception) -> UserError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return UserError(f"cannot load model {model!r}: {first} (give a local directory, or a hub "
                     "name when online)")


def load_pretrained(model: str, loader: Callable[[str], T]) -> T:
    """loader(model) under `offline_if_local`; any failure but a UserError -> one-line UserError."""
    with offline_if_local(model):
        try:
            return loader(model)
        except UserError:
            raise
        except Exception as e:  # OSError, ValueError, hub errors: all one line
            raise load_error(model, e) from None


class HFModel:
    """Base of the wrappers: model_name, device, dtype, `calls` (one per __call__, which
    runs the subclass's `_forward` on one batch)."""

    def __init__(self, model: str, device: str | None = None, dtype: str = "auto"):
        self._torch = require_torch()
        self.model_name = model
        self.device, self.dtype = pick_device_dtype(device, dtype)
        self.calls = 0

    def _load_pair(self, pre: str, net: str):
        """(transformers.<pre>, transformers.<net>) from model_name; the net in self.dtype,
        on self.device, in eval mode."""
        def loader(name):
            import transformers

            return (getattr(transformers, pre).from_pretrained(name),
                    getattr(transformers, net).from_pretrained(name, dtype=self.dtype))

        processor, model = load_pretrained(self.model_name, loader)
        model.to(self.device).eval()
        return processor, model

    def __call__(self, batch: Sequence):
        self.calls += 1
        return self._forward(batch)

    def _forward(self, batch: Sequence):
        raise NotImplementedError
