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
    (2 x 4 mesh) on a dataset whose 206 users / 114 items 4 does not divide (tables padded
    to 208 / 116 rows): the same loss curve and logical params as the replicated step."""
    r = report["sharded"][model]
    assert r["n_users"] % N_MODEL and r["n_items"] % N_MODEL  # really uneven
    assert r["init_max_abs_diff"] == 0.0
    assert r["loss_max_abs_diff"] < 1e-5, r
    assert r["curve_max_rel_diff"] < 1e-5, r
    assert r["final_max_abs_diff"] < 1e-5, r
    assert r["logical_shapes_equal"]  # Trainer.logical() gives the M = 1 shapes
    plan = r["plan"]
    tables = (["user", "item"] if model == "lightgcn" else
              ["user_emb", "item_emb", "encoder_text/proj/kernel",
               "encoder_image/proj/kernel"])
    for t in tables:  # the params and both Adam moments of each table
        for prefix in ("params/", "opt_state/0/mu/", "opt_state/0/nu/"):
            assert plan[prefix + t] == "model", (prefix + t, plan)
    assert plan["step"] == "replicated"
    # one device holds a quarter of the padded rows, of the params and both moments
    padded = -(-r["n_users"] // N_MODEL) * N_MODEL
    assert r["user_rows_per_device"] == [padded // N_MODEL] * 3, r
    assert r["user_stored_rows"] == padded
    assert r["state_bytes_per_device"] < r["state_bytes_replicated"]


@pytest.mark.parametrize("model", ["lightgcn", "recgoat"])
def test_pad_rows_stay_zero(report, model):
    """After the steps, every pad row of the params and Adam's mu / nu is exactly 0."""
    r = report["sharded"][model]
    assert r["n_padded_leaves"] >= 6, r  # user and item: params, mu, nu
    assert r["pad_rows_max_abs"] == 0.0, r


def test_sharded_train_loop_equals_replicated(report):
    """train() with model_parallel=4 on the uneven dataset (padded tables, logical orbax
    checkpoints, evaluation over the gathered embeddings) = the replicated run; killed
    after epoch 0 and resumed, it ends where the uninterrupted M = 1 run does, and its
    checkpoints restore into a model_parallel=1 trainer."""
    r = report["sharded"]["loop"]
    assert r["model_parallel"] == N_MODEL
    for e in range(2):
        assert r["loss_sharded"][e] == pytest.approx(r["loss_replicated"][e], rel=1e-5)
        for k, v in r["valid_replicated"][e].items():
            assert r["valid_sharded"][e][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (e, k)
    assert r["resumed"]
    # the resumed M = 4 run's `latest` state (params and Adam) restored on one device
    assert r["latest_state_max_abs_diff"] < 1e-5, r
    assert r["best_params_max_abs_diff"] < 1e-5, r
    # restore_best into a model_parallel=1 trainer evaluates to the run's best valid row
    for k, v in r["best_valid_row"].items():
        assert r["best_valid_restored"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    assert r["groups_test_recall"] == pytest.approx(r["test_recall"], rel=1e-5, abs=1e-7)


def test_model_parallel_not_dividing_devices_is_config_error(report):
    msg = report["sharded"]["bad_model_parallel"]
    assert msg.startswith("ConfigError:") and "run.model_parallel" in msg, msg


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


RUN_KEYS = ("checkpoint", "tensorboard", "data_parallel", "distributed", "model_parallel")


def _cfg(model: str, **train):
    """train: train keys and run keys (RUN_KEYS go to the run section)."""
    from recgoat_jax import config as config_lib

    m = {"name": model, "dim": 16, "n_layers": 2}
    if model == "recgoat":
        # GAT branch on, paper OAT map, dropout on; the batch Sinkhorn term (ot_weight) is
        # left out to keep compile time down (it is batch-local, like BPR).
        m.update(gat={"heads": 2, "layers": 1}, knn={"k": 5}, dropout=0.3, oat="paper",
                 loss={"cl_weight": 0.1})
    run = {"checkpoint": False, **{k: train.pop(k) for k in RUN_KEYS if k in train}}
    t = {"batch_size": 64, "lr": 1e-3, "seed": 3, **train}
    return config_lib.make_config(None, [], model=m, train=t, run=run,
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

    from recgoat_jax.batch import Batch
    from recgoat_jax.train.parallel import DataParallel
    from recgoat_jax.train.step import make_train_step, zeros_acc
    from recgoat_jax.train.trainer import Trainer

    tr = Trainer(_cfg(name), ds)  # single-device trainer
    state0 = tr.init_state()
    names = tr.aux_names(state0)
    b = tr.sampler.epoch(0)
    host = Batch(users=b.users, pos=b.pos, neg=b.neg, weight=b.weight)  # numpy [n_steps, B]
    key = jax.random.fold_in(tr.dropout_key, 0)
    dp = DataParallel(tr.cfg.train.batch_size)

    step1 = make_train_step(tr.model, tr.tx, donate=False)
    step8 = make_train_step(tr.model, tr.tx, donate=False, mesh=dp.mesh)
    runs, compiled = {}, {}
    for tag, step, place, batches in (
            ("1", step1, lambda t: t, Batch.of(host)),
            ("8", step8, dp.replicate, dp.shard_batches(host))):
        state, inputs, losses, first = place(state0), place(tr.inputs), [], None
        # Compiled once through lower() so that the partitioned HLO can be inspected.
        step = step.lower(state, place(zeros_acc(names)), inputs, batches, jnp.int32(0),
                          key).compile()
        compiled[tag] = step
        for i in range(STEPS):
            state, acc = step(state, place(zeros_acc(names)), inputs, batches, jnp.int32(i), key)
            losses.append(float(acc["loss"]) / float(np.sum(host.weight[i])))
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

    from recgoat_jax.batch import Batch
    from recgoat_jax.train.step import zeros_acc

    state = tr.init_state()
    acc = zeros_acc(names)
    batches = Batch.of(host)
    for i in range(host.users.shape[0]):
        state, acc = step1(state, acc, tr.inputs, batches, jnp.int32(i), key)
    res = tr.evaluate(state.params)
    return {"loss": float(acc["loss"]) / float(np.sum(host.weight)),
            "recall@20": res["valid"]["recall@20"]}


def _dropout(tr, state0, dp, out: dict):
    """Training-mode forward (dropout on) under the 8-device mesh vs one device."""
    import jax

    def fwd(params, inputs, key):
        return tr.model.forward(params, inputs, key).z_items

    key = jax.random.PRNGKey(7)
    one = jax.jit(fwd)(state0.params, tr.inputs, key)
    eight = jax.jit(fwd, in_shardings=dp.replicated, out_shardings=dp.replicated)(
        dp.replicate(state0.params), dp.replicate(tr.inputs), key)
    other = jax.jit(fwd)(state0.params, tr.inputs, jax.random.PRNGKey(8))
    out["dropout"] = {"diff_1_vs_8": _max_abs(one, eight), "diff_other_key": _max_abs(one, other)}


def _sharded(out: dict):
    """model_parallel=4 vs 1 on a dataset whose 206 users / 114 items 4 does not divide."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from recgoat_jax import config as config_lib
    from recgoat_jax.data.synthetic import generate
    from recgoat_jax.errors import ConfigError
    from recgoat_jax.train import sharding
    from recgoat_jax.train.trainer import Trainer
    from recgoat_jax.train.step import make_train_step, zeros_acc

    ds = generate(n_users=203, n_items=118, n_interactions=2500,
                  feature_dims={"text": 18, "image": 32}, seed=0, name="tiny-uneven")
    assert ds.n_users % N_MODEL and ds.n_items % N_MODEL
    res: dict = {}
    for name in ("lightgcn", "recgoat"):
        runs = {}
        for mp in (1, N_MODEL):
            cfg = config_lib.replace(_cfg(name), run={"data_parallel": True,
                                                       "model_parallel": mp})
            tr = Trainer(cfg, ds)
            state = tr.init_state()
            init = jax.device_get(tr.logical(state.params))
            names = tr.aux_names(state)
            batches = tr.sample_epoch(0)
            host_w = np.asarray(tr.sampler.epoch(0).weight)
            key = jax.random.fold_in(tr.dropout_key, 0)
            step = make_train_step(tr.model, tr.tx, donate=False, mesh=tr.dp.mesh,
                                   state_sharding=tr.dp.shardings(state),
                                   inputs_sharding=tr.dp.shardings(tr.inputs),
                                   rows=tr.rows.params)
            losses = []
            for i in range(SHARD_STEPS):
                state, acc = step(state, tr.place(zeros_acc(names)), tr.inputs, batches,
                                  jnp.int32(i), key)
                losses.append(float(acc["loss"]) / float(host_w[i].sum()))
            runs[mp] = (init, jax.device_get(tr.logical(state.params)), np.array(losses),
                        tr, state)
        tr4, st4 = runs[N_MODEL][3], runs[N_MODEL][4]
        u = "user" if name == "lightgcn" else "user_emb"
        users = (st4.params[u], st4.opt_state[0].mu[u], st4.opt_state[0].nu[u])
        pads = [np.asarray(x)[n:] for x, n in zip(jax.tree_util.tree_leaves(st4),
                                                   jax.tree_util.tree_leaves(tr4.rows))
                if np.ndim(x) and np.shape(x)[0] != n]
        l1, l4 = runs[1][2], runs[N_MODEL][2]
        res[name] = {
            "init_max_abs_diff": _max_abs(runs[1][0], runs[N_MODEL][0]),
            "final_max_abs_diff": _max_abs(runs[1][1], runs[N_MODEL][1]),
            "loss_max_abs_diff": float(np.max(np.abs(l1 - l4))),
            "curve_max_rel_diff": float(np.max(np.abs(l1 - l4) / np.abs(l1))),
            "logical_shapes_equal": jax.tree_util.tree_map(np.shape, runs[1][1]) ==
            jax.tree_util.tree_map(np.shape, runs[N_MODEL][1]),
            "plan": sharding.plan(tr4.dp.mesh, st4),
            "n_users": ds.n_users, "n_items": ds.n_items,
            "user_stored_rows": users[0].shape[0],
            "user_rows_per_device": [x.addressable_shards[0].data.shape[0] for x in users],
            "n_padded_leaves": len(pads),
            "pad_rows_max_abs": max(float(np.max(np.abs(p))) for p in pads),
            "state_bytes_per_device": sharding.bytes_per_device(st4, tr4.dp.shardings(st4)),
            "state_bytes_replicated": sharding.bytes_per_device(
                st4, jax.tree_util.tree_map(lambda _: tr4.dp.replicated, st4)),
        }
    res["loop"] = _sharded_loop(ds)
    try:
        Trainer(config_lib.replace(_cfg("lightgcn"), run={"data_parallel": True,
                                                          "model_parallel": 3}), ds)
        res["bad_model_parallel"] = "no error"
    except ConfigError as e:
        res["bad_model_parallel"] = f"ConfigError: {e}"
    out["sharded"] = res


def _sharded_loop(ds) -> dict:
    """train() 2 epochs at M = 1 vs M = 4 killed after epoch 0 and resumed; both runs'
    checkpoints restored into one model_parallel=1 (single-device) trainer."""
    import tempfile

    import jax

    from recgoat_jax import config as config_lib
    from recgoat_jax.train.checkpoint import Checkpoints
    from recgoat_jax.train.loop import train
    from recgoat_jax.train.trainer import Trainer

    def cfg(mp, epochs):
        return config_lib.replace(_cfg("lightgcn"), train={"epochs": epochs}, run={
            "data_parallel": True, "model_parallel": mp, "checkpoint": True})

    quiet = dict(dataset=ds, progress=False, log=lambda *a: None)
    tr1 = Trainer(config_lib.replace(_cfg("lightgcn"), run={"data_parallel": False}), ds)
    loop, restored = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for mp in (1, N_MODEL):
            run = Path(d) / f"mp{mp}"
            if mp == 1:
                r = train(cfg(mp, 2), run_dir=run, **quiet)
            else:  # "killed" after epoch 0: a 1-epoch run, then --resume to 2 epochs
                train(cfg(mp, 1), run_dir=run, **quiet)
                lines: list = []
                r = train(cfg(mp, 2), run_dir=run, resume=True,
                          **{**quiet, "log": lines.append})
                loop["resumed"] = any(str(x).startswith("resumed from") for x in lines)
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            tag = "sharded" if mp > 1 else "replicated"
            loop[f"loss_{tag}"] = [x["train/loss"] for x in rows]
            loop[f"valid_{tag}"] = [x["valid"] for x in rows]
            if mp > 1:
                loop["model_parallel"] = r["model_parallel"]
                loop["best_valid_row"] = rows[r["best_epoch"]]["valid"]
                # results.json's groups: the best checkpoint, evaluated over the devices
                # with a users mask per group; together they are the whole test average
                g = r["groups"]["test"]
                loop["groups_test_recall"] = sum(
                    x["n_users"] * x.get("recall@20", 0.0) for x in g.values()) / sum(
                    x["n_users"] for x in g.values())
                loop["test_recall"] = r["test"]["recall@20"]
            ck = Checkpoints(run)
            state, _ = ck.restore_latest(tr1.init_state())
            best, _ = ck.restore_best(tr1.init_state().params)
            ck.close()
            restored[mp] = (state, best)
        loop["best_valid_restored"] = tr1.evaluate(restored[N_MODEL][1])["valid"]
    loop["latest_state_max_abs_diff"] = _max_abs(
        jax.device_get(restored[1][0]), jax.device_get(restored[N_MODEL][0]))
    loop["best_params_max_abs_diff"] = _max_abs(
        jax.device_get(restored[1][1]), jax.device_get(restored[N_MODEL][1]))
    return loop


def _loop(ds, out: dict):
    import tempfile

    from recgoat_jax import config as config_lib
    from recgoat_jax.train.loop import train

    cfg = config_lib.replace(_cfg("lightgcn"), train={"epochs": 1}, run={"data_parallel": True})
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
    from recgoat_jax.train.trainer import Trainer

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
        Trainer(_cfg("lightgcn", batch_size=60, data_parallel=True), ds)
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
