"""FREEDOM's frozen item-item graph (MMRec `freedom.py`), built once from raw features.

Per modality m with features [I, D_m]: L2-normalise rows, cosine similarity, keep the
top-k columns of every row INCLUDING the item itself (the diagonal is not zeroed, so an
item's own similarity 1 is normally among its k), giving k directed edges i -> knn(i).
Values are MMRec's "normalized laplacian" r[i]^-1/2 r[j]^-1/2 with r = row count + 1e-7,
i.e. 1 / (k + 1e-7) on every edge (every row has exactly k edges). Ties: lower column
index wins among equal computed float32 cosines (graphs/knn.py `cosine_topk`, whose
docstring says when mathematically equal cosines are guaranteed to compute equal),
independent of the block size.

The modality graphs are summed with weights: with image and text, image gets
`image_weight` and text 1 - image_weight (MMRec's mm_image_weight); a single modality
gets 1. Beyond MMRec (which has only image and text): other non-image modalities share
the non-image weight equally.

Memory: a [block, I] similarity slab at a time, never [I, I].
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgoat_jax.graphs import knn


def knn_neighbours(features: np.ndarray, k: int, block: int = 2048,
                   backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Directed cosine kNN including self. features: [I, D] -> (rows, cols) int32 [I * k'],
    k' = min(k, I), rows sorted (row i's k' neighbours in ascending column order).
    backend: knn.cosine_topk's (model.knn.backend)."""
    nbr = np.sort(knn.cosine_topk(features, k, block, keep_self=True, backend=backend), axis=1)
    n, kk = nbr.shape
    return np.repeat(np.arange(n, dtype=np.int32), kk), nbr.reshape(-1).astype(np.int32)


def modality_weights(names, image_weight: float) -> dict[str, float]:
    """{modality: weight}: single modality 1; image -> image_weight, the others share the
    rest equally (image + text: MMRec's image_weight / 1 - image_weight)."""
    names = list(names)
    if len(names) == 1:
        return {names[0]: 1.0}
    others = [m for m in names if m != "image"]
    rest = 1.0 - image_weight if "image" in names else 1.0
    out = {m: rest / len(others) for m in others}
    if "image" in names:
        out["image"] = float(image_weight)
    return out


def laplacian_values(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """MMRec compute_normalized_laplacian: r[i]^-1/2 r[j]^-1/2, r = row counts + 1e-7."""
    r = np.bincount(rows, minlength=n).astype(np.float64) + 1e-7
    inv = r ** -0.5
    return inv[rows] * inv[cols]


def mm_adjacency(neighbours: dict, n_items: int, image_weight: float) -> dict:
    """neighbours: {modality: (rows, cols)} from knn_neighbours ->
    {"fwd": (data, indices, indptr) of mm_adj [I, I] CSR, "bwd": the same for mm_adj^T}.

    mm_adj = sum_m w_m L_m (duplicate edges of different modalities add up)."""
    w = modality_weights(neighbours, image_weight)
    total = sp.csr_matrix((n_items, n_items), dtype=np.float64)
    for m, (rows, cols) in neighbours.items():
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        vals = w[m] * laplacian_values(rows, cols, n_items)
        total = total + sp.csr_matrix((vals, (rows, cols)), shape=(n_items, n_items))
    return {"fwd": _csr_arrays(total.tocsr()), "bwd": _csr_arrays(total.T.tocsr())}


def _csr_arrays(m: sp.csr_matrix):
    m.sum_duplicates()
    m.sort_indices()
    return (m.data.astype(np.float32), m.indices.astype(np.int32), m.indptr.astype(np.int32))
