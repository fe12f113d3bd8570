"""Memory model of the train step: compile it ahead of time for abstract shapes (nothing
allocated) and read the per-device bytes from XLA: how much memory a step needs at a
scale before any array exists (make bench-plan checks it against measured peaks).

plan_step(cfg, scale, devices, model_parallel) ->
  params_bytes, opt_bytes, inputs_bytes, batches_bytes   per device, from the shardings
                         (model_parallel = M: the state's tables padded to a multiple of
                         M rows and sharded, as the Trainer stores them; item-feature
                         inputs whose rows M does not divide replicated)
  xla_argument/output/alias/temp_bytes                   compiled.memory_analysis()
  predicted_peak_bytes = argument + output - alias + temp (state and metric sums are
                         donated, so their outputs alias their inputs)

The model inputs at a large scale are never built: the inputs of a tiny generated
dataset with the same feature dims are built for real and each leaf's row count is
rescaled (n_users, n_items, their +1 CSR offsets, train interactions, kNN edges per
item), which keeps dtypes and tree structure exact.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from recgoat_jax.batch import Batch
from recgoat_jax.graphs.inputs import model_inputs, shapes_of
from recgoat_jax.model.registry import build_model
from recgoat_jax.train import sharding as sharding_lib
from recgoat_jax.train.checkpoint import tree_key
from recgoat_jax.train.parallel import make_mesh, replicated
from recgoat_jax.train.builder import optimizer
from recgoat_jax.train.step import init_state, make_train_step, zeros_acc


@dataclasses.dataclass(frozen=True)
class Scale:
    name: str
    n_users: int
    n_items: int
    n_train: int  # train interactions (= edges of the user-item graph)
    feature_dims: tuple[tuple[str, int], ...] = ()  # item modalities (RecGOAT, FREEDOM)


# Baby as after 5-core (80 % train), then 10x steps up to 10M users x 1M items
SCALES = {
    "baby": Scale("baby", 19_445, 7_050, 128_634),
    "100k": Scale("100k", 100_000, 20_000, 1_000_000),
    "300k": Scale("300k", 300_000, 60_000, 3_000_000),
    "1m": Scale("1m", 1_000_000, 200_000, 10_000_000),
    "10m": Scale("10m", 10_000_000, 1_000_000, 100_000_000),
}

_TINY = dict(n_users=200, n_items=120, n_interactions=2500)  # -> 196 users, 125 items


def _tiny_dataset(feature_dims: dict):
    from recgoat_jax.data.synthetic import generate

    return generate(**_TINY, feature_dims=dict(feature_dims) or {"text": 8}, seed=0,
                    name="tiny")


def abstract_inputs(cfg, scale: Scale):
    """(model, inputs as ShapeDtypeStructs at `scale`, shapes dict) for cfg.model."""
    tiny = _tiny_dataset(dict(scale.feature_dims))
    t_inputs = model_inputs(build_model(cfg, shapes_of(tiny)), tiny, cfg)
    tu, ti, tn = tiny.n_users, tiny.n_items, tiny.train.nnz
    rows = {tu: scale.n_users, ti: scale.n_items, tu + 1: scale.n_users + 1,
            ti + 1: scale.n_items + 1, tn: scale.n_train}
    feature = {d for _, d in scale.feature_dims}
    if len(rows) < 5 or feature & set(rows):
        raise ValueError(f"tiny sizes collide: {rows} / feature dims {feature}")

    def big(path, x):
        key = tree_key(path)
        dims = list(x.shape)
        if dims and "knn" in key:  # edges: per-node density of the tiny graph
            users = key.startswith("user_knn")
            dims[0] = int(math.ceil(dims[0] / (tu if users else ti)
                                    * (scale.n_users if users else scale.n_items)))
        elif dims and dims[0] in rows:
            dims[0] = rows[dims[0]]
        elif dims:
            raise ValueError(f"abstract_inputs: no rule to rescale input {key} {x.shape}")
        return jax.ShapeDtypeStruct(tuple(dims), x.dtype)

    shapes = {"n_users": scale.n_users, "n_items": scale.n_items,
              "item_feature_dims": dict(scale.feature_dims) if scale.feature_dims
              else {"text": 8}, "user_feature_dim": None}
    model = build_model(cfg, shapes)
    return model, jax.tree_util.tree_map_with_path(big, t_inputs), shapes


def _nbytes(tree, shard_tree) -> int:
    return sharding_lib.bytes_per_device(tree, shard_tree)


def plan_step(cfg, scale: Scale, devices, model_parallel: int = 1) -> dict:
    """Compiles the train step for `scale` on `devices` (a mesh of len(devices) /
    model_parallel x model_parallel; one device: plain jit) without running it."""
    model, inputs, _ = abstract_inputs(cfg, scale)
    tx = optimizer(cfg)
    key = jax.random.PRNGKey(0)
    logical = jax.eval_shape(lambda k, x: init_state(model.init(k, x), tx), key, inputs)
    # as the Trainer stores it: tables padded to a multiple of M rows (train/sharding.py)
    state = sharding_lib.pad(logical, model_parallel)
    B = cfg.train.batch_size
    n_steps = math.ceil(scale.n_train / B)  # the loop puts the whole epoch on device
    batches = Batch.shaped(n_steps, B)
    _, aux = jax.eval_shape(model.loss, logical.params, inputs, Batch.shaped(B), key)
    acc = jax.eval_shape(lambda: zeros_acc(tuple(sorted(aux))))
    mesh = make_mesh(list(devices), model_parallel)
    rep = replicated(mesh)
    st_sh = sharding_lib.shardings(mesh, state)
    in_sh = sharding_lib.shardings(mesh, inputs)
    b_sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
    step = make_train_step(model, tx, donate=True, mesh=mesh, state_sharding=st_sh,
                           inputs_sharding=in_sh,
                           rows=sharding_lib.logical_rows(logical.params))

    def with_sh(tree, sh):
        return jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sh)

    rep_tree = lambda t: jax.tree_util.tree_map(lambda _: rep, t)  # noqa: E731
    args = (with_sh(state, st_sh), with_sh(acc, rep_tree(acc)), with_sh(inputs, in_sh),
            with_sh(batches, jax.tree_util.tree_map(lambda _: b_sh, batches)),
            jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
            jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=rep))
    compiled = step.lower(*args).compile()
    ma = compiled.memory_analysis()
    arg, out = int(ma.argument_size_in_bytes), int(ma.output_size_in_bytes)
    alias, temp = int(ma.alias_size_in_bytes), int(ma.temp_size_in_bytes)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(logical.params))
    return {
        "scale": scale.name, "n_users": scale.n_users, "n_items": scale.n_items,
        "n_train": scale.n_train, "model": cfg.model.name, "dim": cfg.model.dim,
        "n_devices": len(devices), "model_parallel": model_parallel,
        "n_params": n_params,
        "params_bytes": _nbytes(state.params, st_sh.params),
        "opt_bytes": _nbytes(state.opt_state, st_sh.opt_state),
        "inputs_bytes": _nbytes(inputs, in_sh),
        "batches_bytes": _nbytes(batches, jax.tree_util.tree_map(lambda _: b_sh, batches)),
        "xla_argument_bytes": arg, "xla_output_bytes": out, "xla_alias_bytes": alias,
        "xla_temp_bytes": temp,
        "predicted_peak_bytes": arg + out - alias + temp,
        "compiled": compiled,
    }


def materialize(tree, n_rows: dict | None = None):
    """Device arrays for ShapeDtypeStructs, made ON the device by one jit (no host copy
    to alias): ints in [0, 7) (valid indices), floats 0.01. Placeholders: only memory is
    measured with them."""
    def make(x):
        n = int(np.prod(x.shape)) if x.shape else 1
        if jnp.issubdtype(x.dtype, jnp.integer):
            v = jnp.arange(n, dtype=jnp.int32) % 7
            return v.reshape(x.shape).astype(x.dtype)
        return jnp.full(x.shape, 0.01, x.dtype)

    def one(x):
        s = getattr(x, "sharding", None)
        return jax.jit(lambda: make(x), out_shardings=s)()

    return jax.tree_util.tree_map(one, tree)
