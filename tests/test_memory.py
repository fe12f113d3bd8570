"""The memory model (recgoat_jax/train/memory_plan.py): the AOT-compiled step's per-device bytes add up
to the arrays it is given, shrink with sharded tables, and predict the measured peak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from recgoat_jax import config as config_lib

from recgoat_jax.train import memory_plan as memory

ROOT = Path(__file__).resolve().parents[1]

SMALL = memory.Scale("small", 3_000, 1_000, 20_000)
D = 32


def _cfg():
    return config_lib.make_config(None, [], model={"name": "lightgcn", "dim": D},
                                  train={"batch_size": 512})


def test_abstract_inputs_rescale_rows():
    _, inputs, _ = memory.abstract_inputs(_cfg(), SMALL)
    data, idx, ptr = inputs["adjacency"]["ui"]
    assert data.shape == idx.shape == (SMALL.n_train,) and ptr.shape == (SMALL.n_users + 1,)
    assert inputs["adjacency"]["iu"][2].shape == (SMALL.n_items + 1,)


@pytest.mark.slow  # one compile (~5 s)
def test_plan_accounts_for_every_argument():
    r = memory.plan_step(_cfg(), SMALL, jax.devices()[:1])
    n_rows = SMALL.n_users + SMALL.n_items
    assert r["params_bytes"] == n_rows * D * 4
    assert r["opt_bytes"] == 2 * n_rows * D * 4 + 4  # Adam mu, nu and its int32 count
    assert r["inputs_bytes"] == 2 * SMALL.n_train * 8 + (n_rows + 2) * 4
    n_steps = -(-SMALL.n_train // 512)
    assert r["batches_bytes"] == 4 * n_steps * 512 * 4
    given = r["params_bytes"] + r["opt_bytes"] + r["inputs_bytes"] + r["batches_bytes"]
    # + step counter, metric sums, step index, PRNG key: a few dozen bytes
    assert 0 <= r["xla_argument_bytes"] - given < 100
    # donated state: its output aliases its input
    assert r["xla_alias_bytes"] >= r["params_bytes"] + r["opt_bytes"]
    assert r["predicted_peak_bytes"] > r["xla_argument_bytes"]


def _child(code: str, n_dev: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n_dev}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads([x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])


@pytest.mark.slow  # 2 compiles on 8 CPU devices (~15 s)
def test_sharded_tables_cut_state_per_device():
    r = _child("""
import json, jax
from recgoat_jax import config as config_lib
from recgoat_jax.train import memory_plan as memory
cfg = config_lib.make_config(None, [], model={"name": "lightgcn", "dim": 32},
                             train={"batch_size": 512})
s = memory.Scale("small", 3_000, 1_000, 20_000)
out = {}
for mp in (1, 8):
    r = memory.plan_step(cfg, s, jax.devices(), mp); r.pop("compiled"); out[mp] = r
# rows 8 does not divide: the state's tables are padded (3,008 + 1,008 rows) and sharded
r = memory.plan_step(cfg, memory.Scale("uneven", 3_001, 1_003, 20_000), jax.devices(), 8)
r.pop("compiled"); out["uneven"] = r
print("RESULT " + json.dumps(out))
""", 8)
    un = r["uneven"]
    assert un["params_bytes"] == (3_008 + 1_008) * 32 * 4 // 8
    assert un["opt_bytes"] == 2 * un["params_bytes"] + 4
    assert un["n_params"] == (3_001 + 1_003) * 32  # logical, as train() reports it
    rep, sh = r["1"], r["8"]
    assert sh["params_bytes"] * 8 == rep["params_bytes"]
    assert sh["opt_bytes"] - 4 == (rep["opt_bytes"] - 4) // 8
    epoch = 4 * 40 * 512 * 4  # users, pos, neg, weight [40 steps, 512]
    assert rep["batches_bytes"] == epoch // 8  # mesh 8 x 1: the batch split 8 ways
    assert sh["batches_bytes"] == epoch  # mesh 1 x 8: a 'data' axis of size 1
    assert sh["predicted_peak_bytes"] < rep["predicted_peak_bytes"]


@pytest.mark.slow  # a 300k-user LightGCN step on one CPU device (~15 s, ~720 MB)
def test_prediction_matches_measured_peak():
    """experiments/bench_plan.py's measurement: resident-memory growth over making the
    arguments and running 3 steps, against argument + output - alias + temp."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-m", "experiments.bench_plan", "--child", "measure",
                          "--scales", "300k"], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    r = json.loads([x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
    assert r["measured_args_bytes"] == pytest.approx(r["xla_argument_bytes"], rel=0.05)
    assert r["measured_peak_bytes"] == pytest.approx(r["predicted_peak_bytes"], rel=0.1)
