"""The one jitted train step: loss, grad, optax update, device-side metric sums.

The epoch's triples live on device as [n_steps, B] arrays; the step slices row `i`
itself, so the host only dispatches (no transfer, no sync per step). State and the
metric accumulator are donated so XLA updates them in place.

With a mesh (run.data_parallel, see train/parallel.py) the same function is jitted
with shardings: batches split on B over 'data', everything else replicated; XLA SPMD
all-reduces the gradients, so the update equals the single-device one.

Padded tables (run.model_parallel, train/sharding.py): the state holds tables padded
to a multiple of M rows; the step crops the params to their logical rows before the
loss, so pad rows get an exactly zero gradient and stay zero under Adam.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from recgoat_jax.batch import Batch
from recgoat_jax.train.parallel import batch_sharding, replicated
from recgoat_jax.train.sharding import crop


def init_state(params, tx: optax.GradientTransformation, apply_fn=None) -> TrainState:
    """flax's TrainState (params, opt_state, tx; apply_fn unused by the step) with an int32
    array step counting optimizer updates (an array, so it checkpoints and donates)."""
    return TrainState.create(apply_fn=apply_fn, params=params, tx=tx).replace(
        step=jnp.zeros((), jnp.int32))


def zeros_acc(aux_names) -> dict:
    return {k: jnp.zeros((), jnp.float32) for k in ("loss", *aux_names)}


def make_train_step(model, tx: optax.GradientTransformation, donate: bool = True, mesh=None,
                    state_sharding=None, inputs_sharding=None, rows=None):
    """Returns step(state, acc, inputs, batches, i, key) -> (state, acc).

    tx: the optimizer the states were created with (init_state); the update runs through
    state.apply_gradients, i.e. state.tx.
    mesh: a jax.sharding.Mesh with axis 'data' (train/parallel.py) for data parallelism;
    None: plain single-device jit.
    state_sharding / inputs_sharding: per-leaf shardings of the state and the inputs
    (train/sharding.py: tables row-sharded over 'model'); default replicated.
    rows: logical_rows() of the unpadded params (train/sharding.py) when state.params is
    padded: the loss sees crop(params, rows); None: the params are used as they are.

    batches: the epoch, a Batch of [n_steps, B] arrays; i: int32 scalar step index
    within the epoch (the step trains on batches.row(i)); key: the epoch's PRNG key
    (folded with the global step for dropout).
    acc: running sums of the loss and its parts over the epoch (weighted by real examples).
    """

    def step(state: TrainState, acc: dict, inputs, batches: Batch, i, key):
        batch = batches.row(i)
        k = jax.random.fold_in(key, state.step)
        def loss_fn(params):  # grads w.r.t. the stored (padded) params: 0 on pad rows
            return model.loss(params if rows is None else crop(params, rows), inputs, batch, k)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        n = jnp.sum(batch.weight)
        new_acc = {"loss": acc["loss"] + loss * n}
        for name in acc:
            if name != "loss":
                new_acc[name] = acc[name] + aux[name] * n
        return state.apply_gradients(grads=grads), new_acc

    donate_argnums = (0, 1) if donate else ()
    if mesh is None:
        return jax.jit(step, donate_argnums=donate_argnums)
    rep = replicated(mesh)
    st = rep if state_sharding is None else state_sharding
    inp = rep if inputs_sharding is None else inputs_sharding
    return jax.jit(step, donate_argnums=donate_argnums,
                   in_shardings=(st, rep, inp, batch_sharding(mesh), rep, rep),
                   out_shardings=(st, rep))
