"""Data parallelism: one jitted step over a device mesh ('data' x 'model'), XLA SPMD.

This docstring covers 'model' = 1 (run.model_parallel = 1, the default); row-sharded
tables over 'model' > 1 are in train/sharding.py.

Layout (see docs/parallel.md):
  batches    [n_steps, B] sharded on B      P(None, 'data')  each device gets B / n_devices
  params, optimizer state, metric sums,
  model inputs (graph, features, kNN)       replicated       P()
The step is the ordinary single-device step under `jax.jit` with these in/out shardings:
the full-graph forward (LightGCN, GAT branches, OAT) runs on every device on the
replicated params, the loss terms of the local half-batch are computed per device, and
XLA's SPMD partitioner inserts the all-reduce of the gradients (and of the loss sums)
so that every device applies the same optax update. Nothing in the model knows about it.

A batch size that the device count does not divide is a ConfigError (no silent padding).
Multi-host (TPU pods, multi-node GPU): set run.distributed=true and run the same command
on every host; train/distributed.py calls jax.distributed.initialize(), after which
jax.devices() lists the devices of all processes and the mesh spans them.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recgoat_jax.errors import ConfigError
from recgoat_jax.train import sharding as sharding_lib
from recgoat_jax.train.sharding import MODEL_AXIS
from recgoat_jax.train.distributed import initialize as maybe_initialize_distributed  # noqa: F401

DATA_AXIS = "data"


def make_mesh(devices: Sequence[Any] | None = None, model_parallel: int = 1) -> Mesh:
    """A 2-D mesh ('data', 'model') of shape (N / model_parallel, model_parallel) over
    `devices` (default: jax.devices(), i.e. every local device, or every device of every
    process after jax.distributed.initialize()). 'model' (train/sharding.py) holds the
    rows of the sharded tables; with model_parallel = 1 it is a size-1 axis and the mesh
    is plain data parallelism."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices")
    if len(devices) % model_parallel:
        raise ConfigError(f"config key 'run.model_parallel': {model_parallel} does not "
                          f"divide the {len(devices)} devices; use a divisor of "
                          f"{len(devices)}")
    grid = np.asarray(devices).reshape(len(devices) // model_parallel, model_parallel)
    return Mesh(grid, (DATA_AXIS, MODEL_AXIS), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """For epoch arrays [n_steps, B]: split the batch axis over 'data'."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def check_batch_size(batch_size: int, n_devices: int, n_model: int = 1) -> None:
    """ConfigError unless the batch splits evenly over the 'data' axis (n_devices /
    n_model rows of the mesh)."""
    n_devices //= n_model
    if batch_size % n_devices:
        lo = batch_size // n_devices * n_devices
        hi = lo + n_devices
        hint = f"{lo} or {hi}" if lo else str(hi)
        raise ConfigError(
            f"config key 'train.batch_size': {batch_size} is not divisible by the "
            f"{n_devices} devices of run.data_parallel"
            f"{f' (x {n_model} of run.model_parallel)' if n_model > 1 else ''}; "
            f"use a multiple of {n_devices} "
            f"(e.g. {hint})")


def to_host(x) -> np.ndarray:
    """A (sharded) global array as one numpy array, on every process."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _put(x, sharding: NamedSharding):
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x  # already placed (e.g. restored from a checkpoint with this sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        # a global array of a multi-process run (e.g. replicated init): reshard on device
        return jax.jit(lambda a: a, out_shardings=sharding)(x)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    # Multi-host: every process holds the same host value (sampling is a pure function
    # of (seed, epoch), inputs are built from the same files); each fills its own shards.
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


class DataParallel:
    """The mesh of a data-parallel run and the placement of its arrays.

    model_parallel > 1: the tables' rows are split over the mesh's 'model' axis
    (train/sharding.py); place() puts the state and inputs that way."""

    def __init__(self, batch_size: int, devices: Sequence[Any] | None = None,
                 model_parallel: int = 1):
        self.mesh = make_mesh(devices, model_parallel)
        self.n_devices = self.mesh.size
        self.n_model = model_parallel
        check_batch_size(batch_size, self.n_devices, model_parallel)
        self.replicated = replicated(self.mesh)
        self.batch = batch_sharding(self.mesh)

    def replicate(self, tree):
        """Every leaf on every device (params, optimizer state, inputs, keys, scalars)."""
        return jax.tree_util.tree_map(lambda x: _put(x, self.replicated), tree)

    def shardings(self, tree):
        """Per-leaf NamedShardings of a state / inputs tree (tables row-sharded over
        'model' when model_parallel > 1, the rest replicated)."""
        return sharding_lib.shardings(self.mesh, tree)

    def place(self, tree):
        """Each leaf with its sharding from shardings() (replicate() when M = 1)."""
        if self.n_model == 1:
            return self.replicate(tree)
        return jax.tree_util.tree_map(_put, tree, self.shardings(tree))

    def gather(self, tree):
        """Every leaf replicated (row-sharded tables all-gathered)."""
        return jax.tree_util.tree_map(
            lambda x: x if x.sharding.is_fully_replicated else _put(x, self.replicated), tree)

    def shard_batches(self, tree):
        """Epoch arrays [n_steps, B] split on B."""
        return jax.tree_util.tree_map(lambda x: _put(x, self.batch), tree)

    def local(self, tree):
        """A replicated array -> its copy on this process's first device (for evaluation,
        which then runs once instead of once per device)."""
        return jax.tree_util.tree_map(lambda x: x.addressable_shards[0].data, tree)
