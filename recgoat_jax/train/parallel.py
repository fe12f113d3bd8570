"""Data parallelism: one jitted step over a 1-D device mesh ('data'), XLA SPMD.

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
Multi-host (TPU pods, multi-node GPU): set train.distributed=true and run the same command
on every host; maybe_initialize_distributed() calls jax.distributed.initialize(), after
which jax.devices() lists the devices of all hosts and the mesh spans them.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recgoat_jax.errors import ConfigError

DATA_AXIS = "data"


def maybe_initialize_distributed(cfg) -> bool:
    """jax.distributed.initialize() when cfg.train.distributed (must run before any other
    JAX call). On Cloud TPU pods and SLURM / Open MPI clusters the coordinator address,
    process count and id are detected; elsewhere set JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID. Returns True when it initialised."""
    if not cfg.train.distributed:
        return False
    if jax.distributed.is_initialized():
        return True
    jax.distributed.initialize()
    return True


def make_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis 'data' over `devices` (default: jax.devices(), i.e. every local
    device, or every device of every host after jax.distributed.initialize())."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices")
    return Mesh(np.asarray(devices), (DATA_AXIS,),
                axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """For epoch arrays [n_steps, B]: split the batch axis over 'data'."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def check_batch_size(batch_size: int, n_devices: int) -> None:
    if batch_size % n_devices:
        lo = batch_size // n_devices * n_devices
        hi = lo + n_devices
        hint = f"{lo} or {hi}" if lo else str(hi)
        raise ConfigError(
            f"config key 'train.batch_size': {batch_size} is not divisible by the "
            f"{n_devices} devices of train.data_parallel; use a multiple of {n_devices} "
            f"(e.g. {hint})")


def _put(x, sharding: NamedSharding):
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    # Multi-host: every process holds the same host value (sampling is a pure function
    # of (seed, epoch), inputs are built from the same files); each fills its own shards.
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


class DataParallel:
    """The mesh of a data-parallel run and the placement of its arrays."""

    def __init__(self, batch_size: int, devices: Sequence[Any] | None = None):
        self.mesh = make_mesh(devices)
        self.n_devices = self.mesh.size
        check_batch_size(batch_size, self.n_devices)
        self.replicated = replicated(self.mesh)
        self.batch = batch_sharding(self.mesh)

    def replicate(self, tree):
        """Every leaf on every device (params, optimizer state, inputs, keys, scalars)."""
        return jax.tree_util.tree_map(lambda x: _put(x, self.replicated), tree)

    def shard_batches(self, tree):
        """Epoch arrays [n_steps, B] split on B."""
        return jax.tree_util.tree_map(lambda x: _put(x, self.batch), tree)

    def local(self, tree):
        """A replicated array -> its copy on this process's first device (for evaluation,
        which then runs once instead of once per device)."""
        return jax.tree_util.tree_map(lambda x: x.addressable_shards[0].data, tree)
