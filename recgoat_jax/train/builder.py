"""Config -> everything a run is built from: dataset, model, inputs, optimizer, evaluator.

The one place that turns a Config into those pieces, shared by training (train/trainer.py
Trainer), `recommend` (load_run) and the benchmarks (which build Trainers):

    setup = build_run(cfg)                    # or build_run(cfg, dataset)
    state = setup.abstract_state()            # TrainState of ShapeDtypeStructs
    user_emb, item_emb = setup.model.embed(params, setup.inputs)

Everything here is on one device of one process; placement on a mesh (run.data_parallel,
run.model_parallel) is the Trainer's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax
from flax.training.train_state import TrainState

from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.data.load import load_dataset
from recgoat_jax.errors import ConfigError
from recgoat_jax.evaluate import Evaluator
from recgoat_jax.graphs.inputs import model_inputs
from recgoat_jax.model.base import Shapes
from recgoat_jax.model.registry import build_model
from recgoat_jax.train.step import init_state


def optimizer(cfg: Config) -> optax.GradientTransformation:
    """The optimizer of every run: Adam at train.lr."""
    return optax.adam(cfg.train.lr)


def run_keys(cfg: Config) -> tuple[jax.Array, jax.Array]:
    """(init key, dropout key) of a run, both from train.seed."""
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(cfg.train.seed))
    return init_key, dropout_key


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """A run's pieces, built once from its config (build_run).

    shapes: Shapes.of(dataset) (model/base.py), what the model was built for;
    inputs: the device arrays the model `needs` (graphs/inputs.py model_inputs);
    tx: the optimizer (optimizer(cfg)); init_key / dropout_key: run_keys(cfg).
    """

    cfg: Config
    dataset: Dataset
    shapes: Shapes
    model: Any
    inputs: dict
    tx: optax.GradientTransformation
    evaluator: Evaluator
    init_key: jax.Array
    dropout_key: jax.Array

    def abstract_state(self) -> TrainState:
        """The TrainState (params, optimizer state, step) as ShapeDtypeStructs: nothing
        allocated; what a checkpoint restores into."""
        return jax.eval_shape(lambda k, x: init_state(self.model.init(k, x), self.tx),
                              self.init_key, self.inputs)


def check_ks(cfg: Config, dataset: Dataset) -> None:
    """ConfigError when a cut-off of eval.ks exceeds the dataset's items."""
    if max(cfg.eval.ks) > dataset.n_items:
        raise ConfigError(f"config key 'eval.ks': largest K {max(cfg.eval.ks)} exceeds the "
                          f"{dataset.n_items} items of {dataset.name}; e.g. "
                          f"--set eval.ks=[5,10,20]")


def build_run(cfg: Config, dataset: Dataset | None = None) -> RunSetup:
    """cfg -> RunSetup: the dataset (loaded from cfg.data unless given), the model built
    for its shapes, the model's inputs, the optimizer, the keys and the evaluator."""
    dataset = dataset if dataset is not None else load_dataset(cfg.data)
    check_ks(cfg, dataset)
    shapes = Shapes.of(dataset)
    model = build_model(cfg, shapes)
    inputs = model_inputs(model, dataset, cfg)
    init_key, dropout_key = run_keys(cfg)
    evaluator = Evaluator(dataset, ks=cfg.eval.ks, batch_users=cfg.eval.batch_users)
    return RunSetup(cfg=cfg, dataset=dataset, shapes=shapes, model=model, inputs=inputs,
                    tx=optimizer(cfg), evaluator=evaluator, init_key=init_key,
                    dropout_key=dropout_key)
