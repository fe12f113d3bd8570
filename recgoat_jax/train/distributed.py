"""Multi-process runs (jax.distributed): start-up, who writes, and cross-process sums.

Every process runs the same program on the same host data (sampling is a pure function of
(seed, epoch); inputs are built from the same files). jit over the global mesh does the
collectives; this module only covers what jit does not:
  initialize(cfg)      jax.distributed.initialize() before any other JAX call
  is_main_process()    process 0 alone writes logs, metrics.jsonl, results.json, config.yaml
Evaluation sums its metric sums over processes itself (evaluate/evaluator.py).

Checkpoints are not here: orbax writes multi-host checkpoints itself when every process
calls save/restore with the same global arrays (train/checkpoint.py).
"""

from __future__ import annotations

import os

import jax


def initialize(cfg) -> bool:
    """jax.distributed.initialize() when cfg.run.distributed (must run before any other
    JAX call); True when it initialised (or already had).

    On Cloud TPU pods and SLURM / Open MPI clusters jax detects the coordinator, process
    count and id. Elsewhere: JAX_COORDINATOR_ADDRESS (host:port of process 0; jax reads
    it), JAX_NUM_PROCESSES and JAX_PROCESS_ID (read here: jax 0.10.2 itself does not).
    On CPU the cross-process collectives are gloo (jax's default; set explicitly so an
    old default of 'none' cannot silently leave the processes unable to all-reduce)."""
    if not cfg.run.distributed:
        return False
    if jax.distributed.is_initialized():
        return True
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    n, pid = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    jax.distributed.initialize(num_processes=int(n) if n else None,
                               process_id=int(pid) if pid else None)
    return True


def is_main_process() -> bool:
    """Process 0 of a multi-process run (always True for one process)."""
    return jax.process_index() == 0

