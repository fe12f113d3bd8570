"""Row-sharded tables on a 2-D mesh ('data' x 'model'), XLA SPMD.

Layout (run.model_parallel = M > 1, N devices: a mesh of N/M x M):
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

Uneven rows: jax 0.10.2 refuses uneven NamedShardings for jit's inputs and outputs, so
the train state is STORED padded: every table leaf of the params and of Adam's mu / nu
gets zero rows appended up to a multiple of M (pad(); 19,445 users -> 19,448 on M = 8).
The step crops them off first thing (crop() with the logical row counts of
logical_rows()), so the model sees the logical arrays; the gradient of a pad row is
then exactly 0, Adam's moments of it stay 0 and so does the row (optax.adam has no
weight decay; L2 terms live in the loss, on the cropped params). Everything outside the
step (evaluation, embed, checkpoints, export) works on logical arrays (train/loop.py).
Model INPUTS are not padded (the model reads them everywhere, not only in the step): an
item-feature table with rows M does not divide stays replicated, and `plan()` says so.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
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


def is_table(path, shape, n_model: int) -> bool:
    """A 2-D leaf that TABLE_PATTERNS names, on a mesh with n_model > 1 'model' devices."""
    return n_model > 1 and len(shape) == 2 and bool(_TABLES.search(tree_key(path)))


def row_spec(path, shape, n_model: int) -> P:
    """P('model', None) for a 2-D table leaf whose rows n_model divides, else P()."""
    if is_table(path, shape, n_model) and shape[0] % n_model == 0:
        return P(MODEL_AXIS, None)
    return P()


def padded_rows(n: int, n_model: int) -> int:
    """n rounded up to a multiple of n_model."""
    return -(-n // n_model) * n_model


def logical_rows(tree):
    """The tree's row counts, one int per leaf (leading dim; 0 for a scalar): what crop()
    cuts a padded copy of `tree` back to. Take it from the logical (unpadded) tree."""
    return jax.tree_util.tree_map(lambda x: int(x.shape[0]) if len(x.shape) else 0, tree)


def pad(tree, n_model: int):
    """Each table leaf (is_table) with zero rows appended up to padded_rows(n, n_model);
    the rest as is. Leaves: jax arrays (jnp.pad, also under jit), numpy arrays (np.pad) or
    ShapeDtypeStructs (the padded shape). The identity when n_model divides every table."""
    def one(path, x):
        if not is_table(path, x.shape, n_model) or x.shape[0] % n_model == 0:
            return x
        extra = padded_rows(x.shape[0], n_model) - x.shape[0]
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct((x.shape[0] + extra, *x.shape[1:]), x.dtype)
        lib = np if isinstance(x, np.ndarray) else jnp
        return lib.pad(x, ((0, extra), (0, 0)))
    return jax.tree_util.tree_map_with_path(one, tree)


def crop(tree, rows):
    """Each leaf cut to its logical row count (`rows`: logical_rows() of the unpadded tree);
    leaves already logical pass unchanged, so crop() accepts padded and logical trees."""
    return jax.tree_util.tree_map(
        lambda x, n: x[:n] if len(x.shape) and x.shape[0] != n else x, tree, rows)


def shardings(mesh: Mesh, tree):
    """A NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs): rows over
    'model' for the table leaves, replicated otherwise."""
    n_model = mesh.shape.get(MODEL_AXIS, 1)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: NamedSharding(mesh, row_spec(p, x.shape, n_model)), tree)


def plan(mesh: Mesh, tree) -> dict[str, str]:
    """{'params/user': 'model', 'params/fusion/w_text': 'replicated', ...}: what
    shardings() does with each leaf, for logs and tests ('replicated (rows % M)' when a
    table's rows are not divisible: an unpadded input; the train state is padded first)."""
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
