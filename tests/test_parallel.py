"""Data parallelism (train/parallel.py) on 8 simulated CPU devices.

XLA_FLAGS=--xla_force_host_platform_device_count=8 only takes effect before jax is
imported, so the checks run in ONE subprocess (this file run as a script) and the tests
assert on the JSON it prints. Compile time dominates: the module took 65-85 s on a loaded
2-core VM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # one 8-device compile of every model (~1 min)

N_DEV = 8
ROOT = Path(__file__).resolve().parents[1]
STEPS = 20


# ---------------------------------------------------------------------------- pytest side
@pytest.fixture(scope="module")
def report() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={N_DEV}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                         timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT "):])


def test_eight_devices(report):
    assert report["n_devices"] == N_DEV
    assert report["params_replicated"]  # params and optimizer state come back replicated


@pytest.mark.parametrize("model", ["lightgcn", "recgoat"])
def test_one_step_matches_single_device(report, model):
    r = report[model]
    assert r["one_step_max_abs_diff"] < 1e-5, r
    assert r["all_reduce_in_hlo"]


@pytest.mark.parametrize("model", ["lightgcn", "recgoat"])
def test_loss_curve_matches_single_device(report, model):
    r = report[model]
    assert len(r["losses_1"]) == STEPS and len(r["losses_8"]) == STEPS
    assert r["curve_max_rel_diff"] < 1e-5, r
    assert r["losses_1"][-1] < r["losses_1"][0]  # it trains
    assert r["final_max_abs_diff"] < 1e-4, r


def test_dropout_masks_do_not_depend_on_device_count(report):
    d = report["dropout"]
    assert d["diff_1_vs_8"] == 0.0, d  # same key -> bitwise the same masked forward
    assert d["diff_other_key"] > 1e-3, d  # and dropout is really on


def test_batch_not_divisible_is_config_error(report):
    msg = report["nondivisible_error"]
    assert msg.startswith("ConfigError:"), msg
    assert "train.batch_size" in msg and f"{N_DEV} devices" in msg and "\n" not in msg


def test_train_loop_data_parallel(report):
    r = report["loop"]
    assert r["data_parallel_devices"] == N_DEV
    assert abs(r["loss_loop"] - r["loss_single"]) <= 1e-5 * abs(r["loss_single"]), r
    assert r["recall@20"] == pytest.approx(r["recall@20_single"], abs=1e-6)


SHARD_STEPS = 10
N_MODEL = 4  # mesh 2 ('data') x 4 ('model')


@pytest.mark.parametrize("model", ["lightgcn", "recgoat"])
def test_sharded_tables_step_equals_replicated(report, model):
    """Tables, their Adam moments and the modality projections row-sharded over 'model'
    (2 x 4 mesh): the same loss curve and params as the replicated 8-device step."""
    r = report["sharded"][model]
    assert r["init_max_abs_diff"] == 0.0
    assert r["curve_max_rel_diff"] < 1e-5, r
    assert r["final_max_abs_diff"] < 1e-5, r
    plan = r["plan"]
    tables = (["user", "item"] if model == "lightgcn" else
              ["user_emb", "item_emb", "encoder_text/proj/kernel",
               "encoder_image/proj/kernel"])
    for t in tables:  # the params and both Adam moments of each table
        for prefix in ("params/", "opt_state/0/mu/", "opt_state/0/nu/"):
            assert plan[prefix + t] == "model", (prefix + t, plan)
    assert plan["step"] == "replicated"
    # one device holds a quarter of each table's rows
    assert r["user_rows_per_device"] * N_MODEL == r["n_users"]
    assert r["state_bytes_per_device"] < r["state_bytes_replicated"]


def test_sharded_train_loop_equals_replicated(report):
    """train() with model_parallel=4 (sharded tables, orbax checkpoint of the sharded
    state, evaluation over the gathered embeddings) = the replicated run."""
    r = report["sharded"]["loop"]
    assert r["model_parallel"] == N_MODEL
    assert r["loss_sharded"] == pytest.approx(r["loss_replicated"], rel=1e-5)
    for k, v in r["valid_replicated"].items():
        assert r["valid_sharded"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k


def test_model_parallel_not_dividing_devices_is_config_error(report):
    msg = report["sharded"]["bad_model_parallel"]
    assert msg.startswith("ConfigError:") and "train.model_parallel" in msg, msg


def test_mixed_precision_projection_is_bf16():
    """bf16 features -> a bf16 x bf16 dot with float32 output; params stay float32."""
    import jax
    import jax.numpy as jnp

    from recgoat_jax.model.gat import ModalityEncoder

    enc = ModalityEncoder(16, use_gat=False)
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 64))
    idx = jnp.arange(32)
    params = enc.init(jax.random.PRNGKey(1), x, idx, idx)
    f32 = enc.apply(params, x, idx, idx)
    bf = enc.apply(params, x.astype(jnp.bfloat16), idx, idx)
    assert bf.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(bf - f32))) < 2e-2 * float(jnp.max(jnp.abs(f32)))
    hlo = jax.jit(lambda p, v: enc.apply(p, v, idx, idx)).lower(
        params, x.astype(jnp.bfloat16)).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert dots and all("xbf16>, tensor<" in d and "xf32>" in d.split("->")[-1] for d in dots)
    grads = jax.grad(lambda p: enc.apply(p, x.astype(jnp.bfloat16), idx, idx).sum())(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))


# ---------------------------------------------------------------------------- script side
def _tiny_dataset():
    from recgoat_jax.data.synthetic import generate

    return generate(n_users=200, n_items=120, n_interactions=2500,
                    feature_dims={"text": 16, "image": 32}, seed=0, name="tiny")


def _cfg(model: str, **train):
    from recgoat_jax import config as config_lib

    m = {"name": model, "dim": 16, "n_layers": 2}
    if model == "recgoat":
        # GAT branch on, paper OAT map, dropout on; the batch Sinkhorn term (lambda_ot) is
        # left out to keep compile time down (it is batch-local, like BPR).
        m.update(gat_heads=2, knn_k=5, dropout=0.3, oat="paper", gat_layers=1)
        train.setdefault("lambda_cl", 0.1)
    t = {"batch_size": 64, "checkpoint": False, "lr": 1e-3, "seed": 3, **train}
    return config_lib.make_config(None, [], model=m, train=t,
                                  eval={"ks": [10, 20], "batch_users": 256})


def _max_abs(a, b) -> float:
    import jax
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _compare_model(name: str, ds, out: dict):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from recgoat_jax.train.loop import Trainer
    from recgoat_jax.train.parallel import DataParallel
    from recgoat_jax.train.step import make_train_step, zeros_acc

    tr = Trainer(_cfg(name), ds, log=lambda *a: None)  # single-device trainer
    state0 = tr.init_state()
    names = tr.aux_names(state0)
    b = tr.sampler.epoch(0)
    host = {"users": b.users, "pos": b.pos, "neg": b.neg, "weight": b.weight}
    key = jax.random.fold_in(tr.dropout_key, 0)
    dp = DataParallel(tr.cfg.train.batch_size)

    step1 = make_train_step(tr.model, tr.tx, donate=False)
    step8 = make_train_step(tr.model, tr.tx, donate=False, mesh=dp.mesh)
    runs, compiled = {}, {}
    for tag, step, place, batches in (
            ("1", step1, lambda t: t, {k: jnp.asarray(v) for k, v in host.items()}),
            ("8", step8, dp.replicate, dp.shard_batches(host))):
        state, inputs, losses, first = place(state0), place(tr.inputs), [], None
        # Compiled once through lower() so that the partitioned HLO can be inspected.
        step = step.lower(state, place(zeros_acc(names)), inputs, batches, jnp.int32(0),
                          key).compile()
        compiled[tag] = step
        for i in range(STEPS):
            state, acc = step(state, place(zeros_acc(names)), inputs, batches, jnp.int32(i), key)
            losses.append(float(acc["loss"]) / float(np.sum(host["weight"][i])))
            if i == 0:
                first = jax.device_get(state.params)
        runs[tag] = (first, jax.device_get(state.params), losses, state)
    if name == "lightgcn":
        out["params_replicated"] = all(x.sharding.is_fully_replicated
                                       for x in jax.tree_util.tree_leaves(runs["8"][3]))
        out["loop_reference"] = _epoch_loss(tr, compiled["1"], host, key, names)
    l1, l8 = np.array(runs["1"][2]), np.array(runs["8"][2])
    hlo8 = compiled["8"].as_text()
    out[name] = {
        "one_step_max_abs_diff": _max_abs(runs["1"][0], runs["8"][0]),
        "final_max_abs_diff": _max_abs(runs["1"][1], runs["8"][1]),
        "losses_1": l1.tolist(), "losses_8": l8.tolist(),
        "curve_max_rel_diff": float(np.max(np.abs(l1 - l8) / np.abs(l1))),
        "all_reduce_in_hlo": "all-reduce" in hlo8,
    }
    return tr, state0, dp


def _epoch_loss(tr, step1, host, key, names) -> dict:
    """Mean train loss of epoch 0 on one device, as the loop computes it."""
    import jax.numpy as jnp
    import numpy as np

    from recgoat_jax.train.step import zeros_acc

    state = tr.init_state()
    acc = zeros_acc(names)
    batches = {k: jnp.asarray(v) for k, v in host.items()}
    for i in range(host["users"].shape[0]):
        state, acc = step1(state, acc, tr.inputs, batches, jnp.int32(i), key)
    res = tr.evaluate(state.params)
    return {"loss": float(acc["loss"]) / float(np.sum(host["weight"])),
            "recall@20": res["valid"]["recall@20"]}


def _dropout(tr, state0, dp, out: dict):
    """Training-mode forward (dropout on) under the 8-device mesh vs one device."""
    import jax

    def fwd(params, inputs, key):
        return tr.model.forward(params, inputs, key)["z_items"]

    key = jax.random.PRNGKey(7)
    one = jax.jit(fwd)(state0.params, tr.inputs, key)
    eight = jax.jit(fwd, in_shardings=dp.replicated, out_shardings=dp.replicated)(
        dp.replicate(state0.params), dp.replicate(tr.inputs), key)
    other = jax.jit(fwd)(state0.params, tr.inputs, jax.random.PRNGKey(8))
    out["dropout"] = {"diff_1_vs_8": _max_abs(one, eight), "diff_other_key": _max_abs(one, other)}


def _sharded(out: dict):
    """model_parallel=4 vs 1 on a dataset whose 188 users / 100 items 4 divides."""
    import tempfile

    import jax
    import jax.numpy as jnp
    import numpy as np

    from recgoat_jax import config as config_lib
    from recgoat_jax.data.synthetic import generate
    from recgoat_jax.errors import ConfigError
    from recgoat_jax.train import sharding
    from recgoat_jax.train.loop import Trainer, train
    from recgoat_jax.train.step import make_train_step, zeros_acc

    ds = generate(n_users=198, n_items=116, n_interactions=2500,
                  feature_dims={"text": 16, "image": 32}, seed=0, name="tiny4")
    assert ds.n_users % N_MODEL == 0 and ds.n_items % N_MODEL == 0
    res: dict = {}
    for name in ("lightgcn", "recgoat"):
        runs = {}
        for mp in (1, N_MODEL):
            cfg = config_lib.replace(_cfg(name), train={"data_parallel": True,
                                                         "model_parallel": mp})
            tr = Trainer(cfg, ds, log=lambda *a: None)
            state = tr.init_state()
            init = jax.device_get(tr.dp.gather(state.params))
            names = tr.aux_names(state)
            batches = tr.sample_epoch(0)
            host_w = np.asarray(tr.sampler.epoch(0).weight)
            key = jax.random.fold_in(tr.dropout_key, 0)
            step = make_train_step(tr.model, tr.tx, donate=False, mesh=tr.dp.mesh,
                                   state_sharding=tr.dp.shardings(state),
                                   inputs_sharding=tr.dp.shardings(tr.inputs))
            losses = []
            for i in range(SHARD_STEPS):
                state, acc = step(state, tr.place(zeros_acc(names)), tr.inputs, batches,
                                  jnp.int32(i), key)
                losses.append(float(acc["loss"]) / float(host_w[i].sum()))
            runs[mp] = (init, jax.device_get(tr.dp.gather(state.params)), np.array(losses),
                        tr, state)
        tr4, st4 = runs[N_MODEL][3], runs[N_MODEL][4]
        user = st4.params["user" if name == "lightgcn" else "user_emb"]
        l1, l4 = runs[1][2], runs[N_MODEL][2]
        res[name] = {
            "init_max_abs_diff": _max_abs(runs[1][0], runs[N_MODEL][0]),
            "final_max_abs_diff": _max_abs(runs[1][1], runs[N_MODEL][1]),
            "curve_max_rel_diff": float(np.max(np.abs(l1 - l4) / np.abs(l1))),
            "plan": sharding.plan(tr4.dp.mesh, st4),
            "n_users": ds.n_users,
            "user_rows_per_device": user.addressable_shards[0].data.shape[0],
            "state_bytes_per_device": sharding.bytes_per_device(st4, tr4.dp.shardings(st4)),
            "state_bytes_replicated": sharding.bytes_per_device(
                st4, jax.tree_util.tree_map(lambda _: tr4.dp.replicated, st4)),
        }
    loop = {}
    for mp in (1, N_MODEL):
        cfg = config_lib.replace(_cfg("lightgcn"), train={
            "epochs": 1, "data_parallel": True, "model_parallel": mp, "checkpoint": True})
        with tempfile.TemporaryDirectory() as d:
            r = train(cfg, run_dir=d, dataset=ds, progress=False, log=lambda *a: None)
            row = json.loads((Path(d) / "metrics.jsonl").read_text().splitlines()[0])
        tag = "sharded" if mp > 1 else "replicated"
        loop[f"loss_{tag}"], loop[f"valid_{tag}"] = row["train/loss"], row["valid"]
        loop["model_parallel"] = r["model_parallel"]
    res["loop"] = loop
    try:
        Trainer(config_lib.replace(_cfg("lightgcn"), train={"data_parallel": True,
                                                            "model_parallel": 3}), ds)
        res["bad_model_parallel"] = "no error"
    except ConfigError as e:
        res["bad_model_parallel"] = f"ConfigError: {e}"
    out["sharded"] = res


def _loop(ds, out: dict):
    import tempfile

    from recgoat_jax import config as config_lib
    from recgoat_jax.train.loop import train

    cfg = config_lib.replace(_cfg("lightgcn"), train={"epochs": 1, "data_parallel": True})
    with tempfile.TemporaryDirectory() as d:
        res = train(cfg, run_dir=d, dataset=ds, progress=False, log=lambda *a: None)
        row = json.loads((Path(d) / "metrics.jsonl").read_text().splitlines()[0])
    ref = out.pop("loop_reference")
    out["loop"] = {"data_parallel_devices": res["data_parallel_devices"],
                   "loss_loop": row["train/loss"], "loss_single": ref["loss"],
                   "recall@20": row["valid"]["recall@20"], "recall@20_single": ref["recall@20"]}


def main() -> None:
    import jax

    from recgoat_jax.errors import ConfigError
    from recgoat_jax.train.loop import Trainer

    import time

    t0 = time.perf_counter()

    def lap(what):
        print(f"{what}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    out: dict = {"n_devices": jax.device_count()}
    ds = _tiny_dataset()
    lap("data")
    _compare_model("lightgcn", ds, out)
    lap("lightgcn")
    tr, state0, dp = _compare_model("recgoat", ds, out)
    lap("recgoat")
    _dropout(tr, state0, dp, out)
    lap("dropout")
    try:
        Trainer(_cfg("lightgcn", batch_size=60, data_parallel=True), ds, log=lambda *a: None)
        out["nondivisible_error"] = "no error"
    except ConfigError as e:
        out["nondivisible_error"] = f"ConfigError: {e}"
    _loop(ds, out)
    lap("loop")
    _sharded(out)
    lap("sharded")
    print("REPORT " + json.dumps(out))


if __name__ == "__main__":
    main()
