"""Row-sharded tables on a 2-D mesh ('data' x 'model'), XLA SPMD.

Layout (train.model_parallel = M > 1, N devices: a mesh of N/M x M):
  batches [n_steps, B]                       P(None, 'data')   B split over the N/M rows
  big 2-D params and their Adam mu / nu      P('model', None)  rows split over M devices
    (user / item embedding tables, FREEDOM's trainable feature tables, the modality
     projection kernels [feat_dim, d]: TABLE_PATTERNS)
  item feature inputs [n_items, feat_dim]    P('model', None)
  everything else (small params, graphs, kNN, step, metric sums)   replicated P()
The step is still the single-device step under jit: XLA's SPMD partitioner turns the
gathers of embedding rows into all-gathers / collective permutes and keeps the gradients
and the optax update of a table on the devices that hold its rows. With M = 1 every
leaf is replicated and this is plain data parallelism (train/parallel.py).

Rows that M does not divide cannot be split evenly (jax 0.10.2 refuses uneven
NamedShardings); such a leaf stays replicated and `plan()` lists it, so choose M
dividing n_users and n_items (or the table pays replicated memory).
"""

from __future__ import annotations

import re

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recgoat_jax.train.checkpoint import tree_key

MODEL_AXIS = "model"

# tree_key paths (params and the same paths under optax's mu / nu) whose rows shard
TABLE_PATTERNS = (
    r"(^|/)(user|item|user_emb|item_emb)$",      # ID embedding tables [n, d]
    r"(^|/)feat/[^/]+$",                          # FREEDOM: trainable feature tables
    r"(^|/)proj/kernel$", r"(^|/)proj/[^/]+/w$",  # modality projections [feat_dim, d]
    r"(^|/)item_features/[^/]+$",                 # model inputs: item features
)
_TABLES = re.compile("|".join(TABLE_PATTERNS))


def row_spec(path, shape, n_model: int) -> P:
    """P('model', None) for a 2-D table leaf whose rows n_model divides, else P()."""
    key = tree_key(path)
    if (n_model > 1 and len(shape) == 2 and _TABLES.search(key)
            and shape[0] % n_model == 0):
        return P(MODEL_AXIS, None)
    return P()


def shardings(mesh: Mesh, tree):
    """A NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs): rows over
    'model' for the table leaves, replicated otherwise."""
    n_model = mesh.shape.get(MODEL_AXIS, 1)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: NamedSharding(mesh, row_spec(p, x.shape, n_model)), tree)


def plan(mesh: Mesh, tree) -> dict[str, str]:
    """{'params/user': 'model', 'params/fusion/w_text': 'replicated', ...}: what
    shardings() does with each leaf, for logs and tests ('replicated (rows % M)' when a
    table's rows are not divisible)."""
    n_model = mesh.shape.get(MODEL_AXIS, 1)
    out = {}
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = tree_key(path)
        if row_spec(path, x.shape, n_model) != P():
            out[key] = "model"
        elif n_model > 1 and len(x.shape) == 2 and _TABLES.search(key):
            out[key] = f"replicated ({x.shape[0]} rows % {n_model} != 0)"
        else:
            out[key] = "replicated"
    return out


def bytes_per_device(tree, shard_tree) -> int:
    """Bytes of `tree`'s leaves held by one device under the shardings `shard_tree`."""
    total = 0
    for x, s in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(shard_tree)):
        shard = s.shard_shape(tuple(x.shape))
        n = 1
        for d in shard:
            n *= d
        total += n * x.dtype.itemsize
    return total
