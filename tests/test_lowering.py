"""Every jitted program of a run lowers for GPU (cuda) and TPU, from this CPU-only install.

For RecGOAT (the shipped paper-variant default, recgoat_jax/configs/recgoat.yaml; the
released code's variants on the published Baby settings, recgoat_baby.yaml with
model.oat=reference and model.cmcl=reference; the GAT user-item encoder, concat fusion
and the user branches on and cf), each with train.mixed_precision off and on, and FREEDOM
and LightGCN (their shipped configs; no bf16 path, so float32 only), on a tiny generated
dataset, the programs the Trainer builds (recgoat_jax/train/trainer.py's Trainer: the
train step of train/step.py, the embedding, the pre-epoch hook and the diagnostics where the model has them, the parameter init) and
the evaluation's scoring kernels (evaluate/blocks.py: eval_rank_block, what
Evaluator.evaluate runs; topk_block, what recommend runs) are traced and lowered with
`jit(...).trace(...).lower(lowering_platforms=(platform,))` for "cuda" and "tpu" in turn.
A test fails if any program cannot lower, or if a lowered module holds a custom call
outside ALLOWED_CUSTOM_CALLS (a host callback, a CPU-only kernel, a vendor library call
that needs a plugin) or a float64 value (TPUs have no native f64).

What it found (jax / jaxlib 0.10.2, no jax-cuda or libtpu plugin installed): every
program lowers for both platforms, as plain StableHLO with no custom call at all. Why
nothing needs a plugin here, and what the test therefore does not see:
- CSR sparse x dense products (jax.experimental.sparse BCSR: LightGCN / FREEDOM
  propagation, the CSR GAT) lower on CPU to the CPU-only custom call
  cpu_csr_sparse_dense_ffi; for cuda and tpu JAX uses its generic gather / scatter-add
  lowering. The cuSPARSE path (jax/experimental/sparse/bcsr.py) is taken only with
  jax_bcoo_cusparse_lowering=True (default False) AND the jax-cuda plugin, whose
  descriptor builder it calls while lowering; so the default GPU program is what is
  lowered here.
- Code that branches on jax.default_backend() while tracing (model/precision.py: the
  bf16 weight gradient off CPU) would trace its CPU branch here; the test traces each
  platform with jax.default_backend patched to that platform's name (and JAX's trace
  caches cleared), so the GPU / TPU branch is what gets lowered (for a bf16 RecGOAT step
  at this size: 16 dots with bf16 operands instead of the CPU trace's 10).
- Lowering is not compilation: XLA:GPU / XLA:TPU compile-time limits (memory, tiling)
  and run-time behaviour are left to a device run (`make device-check`).
Data parallelism (run.data_parallel: a mesh over this host's devices) is not lowered
here: its shardings name CPU devices.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
import pytest

from recgoat_jax.config import make_config
from recgoat_jax.data import synthetic
from recgoat_jax.evaluate import blocks
from recgoat_jax.evaluate.metrics import METRICS
from recgoat_jax.train.loop import Trainer
from recgoat_jax.train.step import zeros_acc

CONFIGS = Path(__file__).resolve().parents[1] / "recgoat_jax" / "configs"
PLATFORMS = ("cuda", "tpu")
BACKEND_NAME = {"cuda": "gpu", "tpu": "tpu"}  # what jax.default_backend() says there
# custom calls every platform has (sharding annotations); anything else fails the test
ALLOWED_CUSTOM_CALLS = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape"}

TINY = ["model.dim=16", "train.batch_size=128", "eval.ks=[5,10,20]", "eval.batch_users=64"]
TINY_RECGOAT = ["model.gat.heads=2", "model.knn.k=3", "model.knn.user_k=3",
                "model.ot.paper.batch_items=16", "model.ot.paper.iterations=5",
                "model.ot.reference.iterations=5"]

# name -> (shipped config, overrides); the cases in FAST take ~1 s, the rest are slow
CASES = {
    "lightgcn": ("lightgcn.yaml", []),
    "freedom": ("freedom.yaml", []),
    "recgoat-paper": ("recgoat.yaml", TINY_RECGOAT),
    "recgoat-released": ("recgoat_baby.yaml", TINY_RECGOAT + [
        "model.oat=reference", "model.cmcl=reference", "train.exclude_train_negatives=false"]),
    "recgoat-options": ("recgoat_baby.yaml", TINY_RECGOAT + [
        "model.ui_encoder=gat", "model.fusion=concat", "model.user_branch=on"]),
    "recgoat-residual": ("recgoat.yaml", TINY_RECGOAT + ["model.user_branch=on"]),
    "recgoat-cf": ("recgoat.yaml", TINY_RECGOAT + ["model.user_branch=cf"]),
}
FAST = {("lightgcn", False)}


@pytest.fixture(scope="module")
def tiny():
    return synthetic.generate(n_users=120, n_items=80, n_interactions=1400,
                              feature_dims={"text": 16, "image": 24}, seed=0,
                              user_feature_dim=8, name="tiny")


def _params():
    out = []
    for name in CASES:
        # only RecGOAT has a bf16 path (train.mixed_precision is an error for the others)
        for mp in (False, True) if name.startswith("recgoat") else (False,):
            marks = () if (name, mp) in FAST else (pytest.mark.slow,)
            out.append(pytest.param(name, mp, marks=marks,
                                    id=f"{name}-{'bf16' if mp else 'f32'}"))
    return out


def _programs(tr: Trainer) -> dict:
    """name -> (jitted function, args, kwargs): the Trainer's programs and the scoring."""
    state = tr.abstract_state()
    acc = zeros_acc(tr.aux_names(state))
    batches = tr.device_batches(tr.sampler.epoch(0))
    key = tr.dropout_key
    progs = {
        "train step": (tr.step_fn, (state, acc, tr.inputs, batches, np.int32(0), key), {}),
        "embed": (tr.embed_fn, (state.params, tr.inputs), {}),
        "init": (jax.jit(tr.model.init), (tr.init_key, tr.inputs), {}),
    }
    if tr.pre_epoch_fn is not None:
        progs["pre_epoch"] = (tr.pre_epoch_fn, (tr.inputs, key), {})
    if tr.diagnostics_fn is not None:
        progs["diagnostics"] = (tr.diagnostics_fn, (state.params, tr.inputs, tr.probe_batch()),
                                {})
    users, items = jax.eval_shape(tr.embed_fn, state.params, tr.inputs)
    ks = tr.evaluator.ks
    acc0 = np.zeros((len(METRICS) * len(ks),), np.float32)
    progs["evaluate (rank block)"] = (blocks.eval_rank_block,
                                      (acc0, users, items, *tr.evaluator._blocks("valid")[0]),
                                      {"ks": ks})
    n = 8
    progs["top-k (recommend)"] = (blocks.topk_block,
                                  (users, items, np.arange(n, dtype=np.int32),
                                   np.full((1,), n, np.int32), np.zeros((1,), np.int32)),
                                  {"k": 5, "mask_train": True})
    return progs


def _custom_calls(text: str) -> set[str]:
    return set(re.findall(r"custom_call @([\w.$-]+)", text)) | set(
        re.findall(r'call_target_name = "([^"]+)"', text))


@pytest.mark.parametrize("name,mixed_precision", _params())
def test_programs_lower_for_gpu_and_tpu(tiny, monkeypatch, name, mixed_precision):
    path, sets = CASES[name]
    cfg = make_config(CONFIGS / path, TINY + sets + [
        f"train.mixed_precision={str(mixed_precision).lower()}", "run.checkpoint=false"])
    tr = Trainer(cfg, tiny)
    programs = _programs(tr)
    failures = []
    for platform in PLATFORMS:
        # trace as the device would: code that asks for the backend gets the device's, and
        # no trace is reused from another backend's (JAX caches traces by function)
        monkeypatch.setattr(jax, "default_backend", lambda p=platform: BACKEND_NAME[p])
        jax.clear_caches()
        for prog, (fn, args, kwargs) in programs.items():
            try:
                text = fn.trace(*args, **kwargs).lower(
                    lowering_platforms=(platform,)).as_text()
            except Exception as e:  # noqa: BLE001  (reported with the program's name)
                failures.append(f"{prog} / {platform}: {type(e).__name__}: {e}"[:500])
                continue
            extra = _custom_calls(text) - ALLOWED_CUSTOM_CALLS
            if extra:
                failures.append(f"{prog} / {platform}: custom calls {sorted(extra)}")
            if re.search(r"\bf64\b", text):
                failures.append(f"{prog} / {platform}: float64 values")
        monkeypatch.undo()
    jax.clear_caches()  # no device-branch trace left for later tests on this CPU
    assert not failures, "\n".join(failures)


def test_the_check_sees_a_cpu_only_lowering_and_a_host_callback(tiny):
    """The checks are not vacuous: the CSR product lowers to a CPU-only kernel on CPU,
    and a host callback (jax.pure_callback) cannot be lowered for GPU or TPU from here
    (JAX 0.10: 'the platform for the specified backend cpu is different from the
    lowering platform'), or, should a JAX lower it, shows up as a custom call."""
    tr = Trainer(make_config(CONFIGS / "lightgcn.yaml", TINY), tiny)
    params = tr.abstract_state().params
    cpu = tr.embed_fn.trace(params, tr.inputs).lower(lowering_platforms=("cpu",)).as_text()
    assert _custom_calls(cpu) - ALLOWED_CUSTOM_CALLS

    def with_callback(x):
        return jax.pure_callback(lambda v: v, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    x = np.zeros((3,), np.float32)
    for platform in PLATFORMS:
        try:
            lowered = jax.jit(with_callback).trace(x).lower(lowering_platforms=(platform,))
        except ValueError as e:
            assert "lowering platform" in str(e)
            continue
        assert _custom_calls(lowered.as_text()) - ALLOWED_CUSTOM_CALLS, platform
