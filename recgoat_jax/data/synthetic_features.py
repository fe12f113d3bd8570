"""The demo generator's features (data/synthetic.py has the generative model in its
docstring): noisy non-linear views of the items' content factors and of user tastes."""

from __future__ import annotations

import math
import zlib
from typing import Mapping

import numpy as np

from recgoat_jax.data.synthetic_sample import Progress, say

_FEAT_BLOCK = 4096  # feature rows generated at a time
NOISE = {"text": 0.3, "image": 2.0}  # per-modality noise; others get _DEFAULT_NOISE
_DEFAULT_NOISE = 0.9
_CONTENT_SPREAD = 0.3  # within-cluster spread kept in the content factors (item features)


def _name_seed(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def nonlinear_view(
    factors: np.ndarray, dim: int, rng: np.random.Generator, noise: float, kind: str,
    block: int = _FEAT_BLOCK,
) -> np.ndarray:
    """A noisy non-linear [n, dim] float32 view of factors, generated in row blocks.

    kind "text": L2-normalised tanh features; "image": non-negative relu features.
    """
    n, d = factors.shape
    hidden = 64
    a1 = 2.0 * rng.standard_normal((d, hidden))
    b1 = rng.normal(0.0, 0.3, hidden)
    a2 = (rng.standard_normal((hidden, dim)) / math.sqrt(hidden)).astype(np.float32)
    # uniform noise with std `noise` (3x cheaper to draw than gaussian): c * (U - 0.5)
    c = np.float32(noise * math.sqrt(12.0))
    bias = (rng.normal(0.0, 0.3, dim) - 0.5 * c).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    buf = np.empty((min(block, n), dim), dtype=np.float32)
    for s in range(0, n, block):
        h = np.tanh(factors[s : s + block] @ a1 + b1).astype(np.float32)
        z = out[s : s + block]
        np.matmul(h, a2, out=z)
        u = buf[: len(z)]
        rng.random(out=u, dtype=np.float32)
        u *= c
        z += u
        z += bias
        if kind == "image":
            np.maximum(z, 0.0, out=z)
        else:
            np.tanh(z, out=z)
            z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    return out


def cluster_centres(item_f: np.ndarray, cluster: np.ndarray, n_clusters: int) -> np.ndarray:
    """[n_clusters, 16]: the mean factor of each cluster's items (0 for an empty cluster)."""
    sums = np.zeros((n_clusters, item_f.shape[1]))
    np.add.at(sums, cluster, item_f)
    return sums / np.maximum(np.bincount(cluster, minlength=n_clusters), 1)[:, None]


def content_factors(item_f: np.ndarray, cluster: np.ndarray,
                    spread: float = _CONTENT_SPREAD) -> np.ndarray:
    """What an item's content shows, [n_items, 16]: its cluster's centre (the mean factor
    of the cluster's items) plus `spread` times its own offset from that centre."""
    centre = cluster_centres(item_f, cluster, int(cluster.max()) + 1)[cluster]
    return centre + spread * (item_f - centre)


def item_features(
    content: np.ndarray, feature_dims: Mapping[str, int], seed: int,
    progress: Progress = None,
) -> dict[str, np.ndarray]:
    """Modality name -> [n_items, dim] float32 noisy non-linear views of the content
    factors [n_items, 16]."""
    feats = {}
    for name, dim in feature_dims.items():
        rng = np.random.default_rng([seed, 1, _name_seed(name)])
        kind = "image" if name == "image" else "text"
        feats[name] = nonlinear_view(content, int(dim), rng, NOISE.get(name, _DEFAULT_NOISE),
                                     kind)
        say(progress, f"  {name} features {feats[name].shape[0]:,} x {feats[name].shape[1]:,}")
    return feats
