"""The Trainer: a RunSetup (train/builder.py) placed for training, and the functions the
epoch loop (train/loop.py) calls: the jitted step, the model's hooks, evaluation.

Placement: with run.data_parallel the batch is split over all devices and the rest is
replicated (train/parallel.py); with run.model_parallel = M > 1 the state's tables are
stored padded to a multiple of M rows and row-sharded (train/sharding.py). Checkpoints
and exports hold the logical (unpadded) arrays (Trainer.logical).
"""

from __future__ import annotations

import jax
from flax.training.train_state import TrainState

from recgoat_jax.batch import Batch
from recgoat_jax.config import Config
from recgoat_jax.data.dataset import Dataset
from recgoat_jax.data.sampler import BPRSampler, EpochBatches
from recgoat_jax.train import sharding as sharding_lib
from recgoat_jax.train.builder import RunSetup, build_run
from recgoat_jax.train.parallel import DataParallel, to_host
from recgoat_jax.train.step import init_state, make_train_step

# folded into the epoch key for the pre_epoch hook; the step folds the (far smaller)
# global step count into the same epoch key, so the two streams never meet
PRE_EPOCH_FOLD = 0x7FFFFFFF


class Trainer:
    """One run's RunSetup (cfg, dataset, shapes, model, tx, evaluator, init_key,
    dropout_key; inputs placed), its sampler, and the jitted step / embed / hooks."""

    def __init__(self, cfg: Config, dataset: Dataset | None = None,
                 setup: RunSetup | None = None):
        """setup: build_run(cfg, dataset) when already built (then dataset is unused)."""
        # run.data_parallel: batch split over all devices, the rest replicated (parallel.py);
        # run.model_parallel > 1: tables row-sharded over the mesh's 'model' axis too.
        self.dp = (DataParallel(cfg.train.batch_size, model_parallel=cfg.run.model_parallel)
                   if cfg.run.data_parallel else None)
        self.setup = setup = setup if setup is not None else build_run(cfg, dataset)
        self.cfg, self.dataset, self.shapes = cfg, setup.dataset, setup.shapes
        self.model = setup.model
        self.tx, self.evaluator = setup.tx, setup.evaluator
        self.init_key, self.dropout_key = setup.init_key, setup.dropout_key
        self.inputs = self.place(setup.inputs)
        t = cfg.train
        self.sampler = BPRSampler(self.dataset.train, self.dataset.n_items, t.batch_size,
                                  exclude_train=t.exclude_train_negatives,
                                  drop_last=t.drop_last, seed=t.seed)
        # model_parallel = M > 1: the state's tables are stored padded to a multiple of M
        # rows (train/sharding.py); self.rows (a TrainState of ints) are the logical rows
        # every jitted function crops them back to.
        self.n_pad = self.dp.n_model if self.dp is not None else 1
        self.rows = sharding_lib.logical_rows(self.abstract_state())
        state_sh = inputs_sh = None
        if self.n_pad > 1:
            state_sh = self.dp.shardings(sharding_lib.pad(self.abstract_state(), self.n_pad))
            inputs_sh = self.dp.shardings(self.inputs)
        self.step_fn = make_train_step(self.model, self.tx,
                                       mesh=self.dp.mesh if self.dp else None,
                                       state_sharding=state_sh, inputs_sharding=inputs_sh,
                                       rows=self.rows.params if self.n_pad > 1 else None)
        # parallel: the embeddings come back replicated over the mesh and evaluation deals
        # the users over its devices (Evaluator.evaluate_sums_sharded). Takes padded or
        # logical params (crop is a no-op on the latter).
        self.embed_fn = jax.jit(lambda p, x: self.model.embed(self.crop(p), x),
                                out_shardings=self.dp.replicated if self.dp else None)
        # optional model hook (model/base.py): the epoch's training inputs, e.g. a pruned graph
        self.pre_epoch_fn = None
        hook = getattr(self.model, "pre_epoch", None)  # a model may expose None: no hook
        if hook is not None:
            out_sh = None
            if self.dp is not None:  # as the step expects its inputs
                out_sh = self.dp.shardings(jax.eval_shape(hook, self.inputs, self.init_key))
            self.pre_epoch_fn = jax.jit(hook, out_shardings=out_sh)
        # optional model hook (model/base.py): evaluation-time diagnostics on a probe batch
        self.diagnostics_fn = (
            jax.jit(lambda p, x, b: self.model.diagnostics(self.crop(p), x, b))
            if getattr(self.model, "diagnostics", None) is not None else None)
        self._probe: Batch | None = None

    def place(self, tree):
        """On the mesh under data parallelism (tables row-sharded when model_parallel > 1,
        the rest replicated), else as is."""
        return self.dp.place(tree) if self.dp else tree

    def abstract_state(self) -> TrainState:
        """The logical (unpadded) TrainState as ShapeDtypeStructs (nothing allocated)."""
        return self.setup.abstract_state()

    def _rows_of(self, tree):
        return self.rows if isinstance(tree, TrainState) else self.rows.params

    def crop(self, tree):
        """A stored (padded) TrainState or params tree -> its logical shapes, by slicing
        (for use under jit; logical trees pass unchanged)."""
        return sharding_lib.crop(tree, self._rows_of(tree))

    def logical(self, tree):
        """A stored TrainState or params tree -> logical arrays for checkpoints and export:
        padded leaves gathered to the host and cropped (numpy), the rest unchanged.

        Checkpoints hold these logical arrays, so they are the same whatever M the run
        had: a run resumes on another M, and recommend / restore_best load them into a
        model_parallel = 1 model. The price is a host gather of the padded tables at save
        time (an even table is saved from its shards as is)."""
        if self.n_pad == 1:
            return tree
        return jax.tree_util.tree_map(
            lambda x, n: to_host(x)[:n] if len(x.shape) and x.shape[0] != n else x,
            tree, self._rows_of(tree))

    def stored(self, tree):
        """A logical TrainState or params tree (jax or numpy leaves, e.g. restored from a
        checkpoint) -> padded and placed as the step expects it."""
        return self.place(sharding_lib.pad(tree, self.n_pad))

    def epoch_inputs(self, epoch: int):
        """The inputs of epoch `epoch`'s train steps: self.inputs unless the model has a
        pre_epoch hook, then pre_epoch(self.inputs, fold_in(epoch key, PRE_EPOCH_FOLD))."""
        if self.pre_epoch_fn is None:
            return self.inputs
        key = jax.random.fold_in(jax.random.fold_in(self.dropout_key, epoch), PRE_EPOCH_FOLD)
        return self.pre_epoch_fn(self.inputs, key)

    def device_batches(self, b: EpochBatches) -> Batch:
        """An epoch's EpochBatches -> a Batch of device arrays [n_steps, B] (split on B
        when parallel)."""
        if self.dp is None:
            return Batch.of(b)
        return self.dp.shard_batches(Batch(users=b.users, pos=b.pos, neg=b.neg,
                                           weight=b.weight))

    def sample_epoch(self, epoch: int) -> Batch:
        return self.device_batches(self.sampler.epoch(epoch))

    def init_state(self) -> TrainState:
        """The stored TrainState: tables padded (model_parallel > 1), placed on the mesh.
        Jitted (much faster than flax's eager init), created with place()'s shardings."""
        def init_params(k, x):  # the logical init, then zero pad rows: same values as M = 1
            return sharding_lib.pad(self.model.init(k, x), self.n_pad)

        out_sh = None
        if self.dp is not None:
            out_sh = self.dp.shardings(jax.eval_shape(init_params, self.init_key, self.inputs))
        init = jax.jit(init_params, out_shardings=out_sh)
        return self.place(init_state(init(self.init_key, self.inputs), self.tx))

    def probe_batch(self) -> Batch:
        """The batch diagnostics are computed on: the first batch of epoch 0 (fixed, so
        values are comparable across evaluations and device counts)."""
        if self._probe is None:
            self._probe = Batch.of(self.sampler.epoch(0)).row(0)
        return self._probe

    def diagnostics(self, params) -> dict:
        """{name: float} of the model's diagnostics hook ({} without one), eval mode."""
        if self.diagnostics_fn is None:
            return {}
        inputs = self.inputs
        if self.dp is not None:  # on this process's first device (tables gathered first)
            params, inputs = self.dp.local(self.dp.gather(params)), \
                self.dp.local(self.dp.gather(inputs))
        return {k: float(v) for k, v in
                self.diagnostics_fn(params, inputs, self.probe_batch()).items()}

    def aux_names(self, state) -> tuple[str, ...]:
        """The names of the model's loss terms (shapes only: no epoch is sampled)."""
        _, aux = jax.eval_shape(lambda p, x, b, k: self.model.loss(self.crop(p), x, b, k),
                                state.params, self.inputs,
                                Batch.shaped(self.sampler.batch_size), self.dropout_key)
        return tuple(sorted(aux))

    def evaluate(self, params) -> dict:
        """{'valid': {...}, 'test': {...}} with the eval-mode embeddings (stored or logical
        params)."""
        user_emb, item_emb = self.embed_fn(params, self.inputs)
        return {s: self.evaluator.evaluate(user_emb, item_emb, s) for s in ("valid", "test")}
