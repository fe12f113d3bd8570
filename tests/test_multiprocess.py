"""Two processes on 127.0.0.1 (jax.distributed, gloo CPU collectives, 2 devices each)
train exactly what one process on 4 devices trains, also with row-sharded tables.

Each process is this file run as a script (XLA_FLAGS must be set before jax is imported).
Dataset: 199 users x 125 items, both odd, so model_parallel=2 pads both tables.
Runs, all train() with run.data_parallel on 4 devices in total:
  ref     1 process x 4 devices: a small RecGOAT (2 epochs) and LightGCN (3 epochs),
          model_parallel=1
  multi   2 processes x 2 devices, run.distributed: the same RecGOAT run; LightGCN with
          model_parallel=2 on a 2 x 2 mesh whose 'model' axis spans the two processes
          (lightgcn_mp2: stopped after epoch 0, checkpoints written); then the LightGCN
          run killed (os._exit in both processes) right after epoch 0's checkpoint
  resume  2 processes: --resume of the killed LightGCN run and of lightgcn_mp2
Only the two runs that resume write checkpoints (run.checkpoint=false elsewhere: saves
cost time and nothing reads them).
The tests compare loss curves, valid/test metrics (evaluation deals user blocks over the
4 devices and sums over processes) and final params, and check that process 1 never
logged or wrote a file of its own. The sharded run's final logical params (padded
tables gathered across processes, Trainer.logical) equal the model_parallel=1
reference's, and its checkpoints (logical arrays, written by both processes) restore
into a plain single-device Trainer in this pytest process. (Five process starts, not
seven: the LightGCN curve is checked on the killed-and-resumed run, whose epoch 0 ran
uninterrupted; the sharded run shares the multi and resume launches.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # 5 process starts + compiles (~80-90 s on 2 loaded cores)

ROOT = Path(__file__).resolve().parents[1]
N_DEV = 4  # in total: 1 x 4 (reference) and 2 x 2
# generate()'s arguments; its 199 users x 125 items (odd) make model_parallel=2 pad both
# tables by a zero row
N_USERS, N_ITEMS = 197, 123
EPOCHS = {"lightgcn": 3, "recgoat": 2}
TIMEOUT_S = 240
RUN_KEYS = ("checkpoint", "tensorboard", "data_parallel", "distributed", "model_parallel")


# ---------------------------------------------------------------------------- pytest side
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(mode: str, out: Path, n_proc: int) -> list[subprocess.CompletedProcess]:
    """Starts n_proc copies of this script (process ids 0..n-1), waits, kills on timeout."""
    port = _free_port()
    procs = []
    for pid in range(n_proc):
        env = dict(os.environ)
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_"
                            f"count={N_DEV // n_proc}").strip()
        env["JAX_PLATFORMS"] = "cpu"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        if n_proc > 1:
            env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                       JAX_NUM_PROCESSES=str(n_proc), JAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen(
            [sys.executable, __file__, mode, str(out)], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results, deadline = [], time.monotonic() + TIMEOUT_S
    try:
        for p in procs:
            so, se = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
    finally:
        for p in procs:  # a hung peer (e.g. waiting on a dead coordinator) must not linger
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _ok(results, rc=0):
    for r in results:
        assert r.returncode == rc, (r.returncode, r.stdout[-2000:], r.stderr[-4000:])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mp")
    _ok(_launch("ref", root / "ref", 1))
    _ok(_launch("multi", root / "multi", 2), rc=17)  # both died after the checkpoint
    _ok(_launch("resume", root / "multi", 2))
    return root


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _max_abs(a: Path, b: Path) -> float:
    x, y = np.load(a), np.load(b)
    assert sorted(x.files) == sorted(y.files)
    return max(float(np.max(np.abs(x[k] - y[k]))) for k in x.files)


def test_two_processes_see_four_devices(runs):
    for pid in (0, 1):
        r = json.loads((runs / "multi" / f"report_{pid}.json").read_text())
        assert (r["process_count"], r["process_index"], r["device_count"],
                r["local_device_count"]) == (2, pid, 4, 2)
    ref = json.loads((runs / "ref" / "report_0.json").read_text())
    assert (ref["process_count"], ref["device_count"]) == (1, 4)


@pytest.mark.parametrize("model", ["lightgcn", "recgoat"])  # LightGCN: killed + resumed
def test_loss_curve_and_params_equal_single_process(runs, model):
    ref, multi = _metrics(runs / "ref" / model), _metrics(runs / "multi" / model)
    assert [r["epoch"] for r in multi] == list(range(EPOCHS[model]))
    np.testing.assert_allclose([r["train/loss"] for r in multi],
                               [r["train/loss"] for r in ref], rtol=1e-5)
    assert ref[-1]["train/loss"] < ref[0]["train/loss"]  # it trains
    assert _max_abs(runs / "ref" / model / "final.npz",
                    runs / "multi" / model / "final.npz") < 1e-5


@pytest.mark.parametrize("model", ["lightgcn", "recgoat"])
def test_evaluation_sums_over_processes(runs, model):
    """The 2 processes each score their devices' user blocks; the summed metrics equal the
    single process's (which deals the same blocks over its 4 devices)."""
    ref, multi = _metrics(runs / "ref" / model), _metrics(runs / "multi" / model)
    for a, b in zip(ref, multi):
        for split in ("valid", "test"):
            for k, v in a[split].items():
                assert b[split][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (split, k)
    r0 = json.loads((runs / "multi" / "report_0.json").read_text())
    r1 = json.loads((runs / "multi" / "report_1.json").read_text())
    assert r0["eval_blocks"] > 0 and r1["eval_blocks"] > 0  # both did part of the work
    assert r0["eval_blocks"] + r1["eval_blocks"] == r0["eval_blocks_total"] > 2


def test_only_process_0_logs_and_writes(runs):
    r0 = json.loads((runs / "multi" / "report_0.json").read_text())
    r1 = json.loads((runs / "multi" / "report_1.json").read_text())
    assert r0["log_lines"] > 0 and r1["log_lines"] == 0
    files = sorted(p.name for p in (runs / "multi" / "lightgcn").iterdir())
    assert files == ["checkpoints", "config.yaml", "final.npz", "metrics.jsonl",
                     "results.json", "tb"]
    # one TensorBoard writer (process 0's), rebuilt from metrics.jsonl on the resume
    assert len(list((runs / "multi" / "lightgcn" / "tb").glob("events.out.tfevents.*"))) == 1
    res = json.loads((runs / "multi" / "lightgcn" / "results.json").read_text())
    assert res["data_parallel_devices"] == N_DEV and res["versions"]["n_devices"] == N_DEV


def test_killed_two_process_run_resumes_to_the_same_result(runs):
    r0 = json.loads((runs / "multi" / "report_0.json").read_text())
    assert r0["resumed_at"]["lightgcn"] == 1  # killed after epoch 0's checkpoint
    # the curve and params of the resumed run equal the reference's (test above)
    assert [r["epoch"] for r in _metrics(runs / "multi" / "lightgcn")] == [0, 1, 2]


def test_sharded_two_processes_equal_single_process(runs):
    """model_parallel=2 over both processes (each row of the 2 x 2 mesh holds a device of
    each process, so a table's row shards are in different processes; the odd user and
    item tables padded by one zero row): LightGCN stopped after epoch 0's checkpoint and
    resumed by 2 fresh processes trains, evaluates and ends as the 1 x 4, model_parallel=1
    reference does."""
    r0 = json.loads((runs / "multi" / "report_0.json").read_text())
    r1 = json.loads((runs / "multi" / "report_1.json").read_text())
    for r in (r0, r1):
        assert r["mesh_processes"] == [[0, 1], [0, 1]], r
        assert r["lightgcn_mp2_model_parallel"] == 2
        # 199 user rows stored as 200: rows 0-99 on process 0's devices, 100-199 on 1's
        assert r["user_stored"] == {"rows": 200,
                                        "shard_processes": {"0": [0], "100": [1]}}, r
    assert r0["resumed_at"] == {"lightgcn": 1, "lightgcn_mp2": 1}, r0  # process 0 logs
    ref, sh = _metrics(runs / "ref" / "lightgcn"), _metrics(runs / "multi" / "lightgcn_mp2")
    assert [r["epoch"] for r in sh] == list(range(EPOCHS["lightgcn"]))
    np.testing.assert_allclose([r["train/loss"] for r in sh],
                               [r["train/loss"] for r in ref], rtol=1e-5)
    for a, b in zip(ref, sh):
        for split in ("valid", "test"):
            for k, v in a[split].items():
                assert b[split][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (split, k)
    # the logical params (padded tables gathered across processes and cropped)
    assert _max_abs(runs / "ref" / "lightgcn" / "final.npz",
                    runs / "multi" / "lightgcn_mp2" / "final.npz") < 1e-5
    final = np.load(runs / "multi" / "lightgcn_mp2" / "final.npz")
    assert final["user"].shape[0] % 2 and final["item"].shape[0] % 2  # were padded
    res = json.loads((runs / "multi" / "lightgcn_mp2" / "results.json").read_text())
    assert res["model_parallel"] == 2 and res["data_parallel_devices"] == N_DEV


def test_sharded_two_process_checkpoint_restores_on_one_device(runs):
    """The checkpoints the 2 sharded processes wrote hold logical arrays: a plain
    single-device Trainer (model_parallel=1) restores `latest` to the reference's final
    params, and `best` evaluates to the run's best valid row."""
    import jax

    from recgoat_jax.train.checkpoint import Checkpoints, tree_key
    from recgoat_jax.train.trainer import Trainer

    ds = _dataset()
    assert (ds.n_users, ds.n_items) == (199, 125)  # odd: padded in the sharded run
    tr = Trainer(_cfg("lightgcn", data_parallel=False, distributed=False), ds)
    run = runs / "multi" / "lightgcn_mp2"
    ck = Checkpoints(run)
    try:
        state, meta = ck.restore_latest(tr.init_state())
        best, best_epoch = ck.restore_best(tr.init_state().params)
    finally:
        ck.close()
    assert meta["epoch"] == EPOCHS["lightgcn"] - 1
    ref = np.load(runs / "ref" / "lightgcn" / "final.npz")
    flat = {tree_key(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    assert sorted(flat) == sorted(ref.files)
    assert flat["user"].shape[0] == ds.n_users  # logical rows, not the padded 200
    assert max(float(np.max(np.abs(flat[k] - ref[k]))) for k in ref.files) < 1e-5
    row = _metrics(run)[best_epoch]["valid"]
    got = tr.evaluate(best)["valid"]
    for k, v in row.items():
        assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k


# ---------------------------------------------------------------------------- script side
def _cfg(model: str, **train):
    from recgoat_jax import config as config_lib

    model = model.removesuffix("_mp2")  # lightgcn_mp2: the run dir of the sharded run
    m = {"name": model, "dim": 16, "n_layers": 2}
    if model == "recgoat":  # as tests/test_parallel.py: GAT branch, paper OAT, dropout
        m.update(gat={"heads": 2, "layers": 1}, knn={"k": 5}, dropout=0.3, oat="paper",
                 loss={"cl_weight": 0.1})
    run = {"data_parallel": True,
           "distributed": int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1,
           **{k: train.pop(k) for k in RUN_KEYS if k in train}}
    t = {"batch_size": 64, "lr": 1e-3, "seed": 3, "epochs": EPOCHS[model], "patience": 50,
         **train}
    # batch_users 64: several evaluation blocks, so both processes score some
    return config_lib.make_config(None, [], model=m, train=t, run=run,
                                  eval={"ks": [10, 20], "batch_users": 64})


def _dataset():
    from recgoat_jax.data.synthetic import generate

    return generate(n_users=N_USERS, n_items=N_ITEMS, n_interactions=2500,
                    feature_dims={"text": 16, "image": 32}, seed=0, name="tiny-odd")


def _interleave_processes(make_mesh):
    """parallel.make_mesh with jax.devices() reordered p0d0, p1d0, p0d1, p1d1 when
    model_parallel > 1: each row of the 2 x 2 mesh ('data' x 'model') then holds one
    device of each process, so a table's two row shards live in different processes
    (the default order keeps them in one process and the gathers would stay local)."""
    import jax

    def mesh(devices=None, model_parallel=1):
        if devices is None and model_parallel > 1:
            per_proc: dict = {}
            for d in jax.devices():
                per_proc.setdefault(d.process_index, []).append(d)
            devices = [d for row in zip(*per_proc.values()) for d in row]
        m = make_mesh(devices, model_parallel)
        if model_parallel > 1:
            REPORT["mesh_processes"] = [[d.process_index for d in row]
                                        for row in m.devices.tolist()]
        return m
    return mesh


REPORT: dict = {}


def main(mode: str, out: Path) -> None:
    from recgoat_jax.train import distributed

    distributed.initialize(_cfg("lightgcn"))  # before any other JAX call

    import jax

    from recgoat_jax.evaluate import evaluator as ev
    from recgoat_jax.train import checkpoint, loop, parallel, trainer

    pid = jax.process_index()
    ds = _dataset()
    report = REPORT
    report.update({"process_count": jax.process_count(), "process_index": pid,
                   "device_count": jax.device_count(),
                   "local_device_count": jax.local_device_count(), "log_lines": 0,
                   "eval_blocks": 0, "eval_blocks_total": 0})
    parallel.make_mesh = _interleave_processes(parallel.make_mesh)
    last = {}
    save_latest = checkpoint.Checkpoints.save_latest

    def dump():
        path = out / f"report_{pid}.json"
        old = json.loads(path.read_text()) if mode == "resume" else {}
        # resume: keep the multi run's evaluation counts, add up the log lines
        merged = {**old, **report,
                  **{k: v for k, v in old.items() if k.startswith("eval")},
                  "log_lines": report["log_lines"] + old.get("log_lines", 0)}
        path.write_text(json.dumps(merged))

    def save_and_maybe_die(self, epoch, state, meta):
        save_latest(self, epoch, state, meta)
        if mode == "multi" and self.root.parent.name == "lightgcn" and epoch == 0:
            dump()
            os._exit(17)  # a kill: no cleanup, no further collective

    checkpoint.Checkpoints.save_latest = save_and_maybe_die
    evaluate = trainer.Trainer.evaluate

    def keep_and_evaluate(self, params):  # the last call: the final (stored) params
        last["trainer"], last["params"] = self, params
        if self.n_pad > 1:  # stored user table: padded rows, and which process holds which
            x = params["user"]
            where: dict = {}
            for d, idx in x.sharding.devices_indices_map(x.shape).items():
                where.setdefault(idx[0].start or 0, set()).add(d.process_index)
            report["user_stored"] = {"rows": x.shape[0], "shard_processes": {
                str(k): sorted(v) for k, v in sorted(where.items())}}
        return evaluate(self, params)

    trainer.Trainer.evaluate = keep_and_evaluate
    device_blocks = ev.Evaluator._device_blocks

    def counted(self, split, devices, *users_mask):  # a mask: results.json's groups
        blocks = device_blocks(self, split, devices, *users_mask)
        if split == "valid" and report["counting_eval"]:
            report["eval_blocks"] = len(blocks)
            report["eval_blocks_total"] = len(self._host_blocks(split))
        return blocks

    ev.Evaluator._device_blocks = counted

    def log(msg):
        report["log_lines"] += 1
        if msg.startswith("resumed from"):  # {run: epoch}
            report.setdefault("resumed_at", {})[report["run"]] = int(
                msg.split(" at epoch ")[1].split()[0])

    out.mkdir(parents=True, exist_ok=True)
    # lightgcn_mp2: model_parallel=2 on the interleaved 2 x 2 mesh, stopped after epoch 0
    # (a 1-epoch run: its checkpoints are complete, as at a kill) and resumed to 3 epochs
    # by the next launch; the checkpoints hold logical arrays gathered across processes
    models = {"ref": ["recgoat", "lightgcn"],
              "multi": ["recgoat", "lightgcn_mp2", "lightgcn"],
              "resume": ["lightgcn", "lightgcn_mp2"]}[mode]
    for model in models:
        run = out / model
        sharded = model.endswith("_mp2")
        if sharded:
            cfg = _cfg(model, model_parallel=2,
                       epochs=1 if mode == "multi" else EPOCHS["lightgcn"])
        else:  # only the killed LightGCN run needs checkpoints (saves take time)
            cfg = _cfg(model, checkpoint=model == "lightgcn" and mode != "ref")
        report["run"] = model
        report["counting_eval"] = model == "recgoat"  # eval_blocks: the mp=1 layout only
        res = loop.train(cfg, run_dir=run, resume=mode == "resume", dataset=ds,
                         progress=False, log=log)
        if sharded:
            report[f"{model}_model_parallel"] = res["model_parallel"]
        # logical params (as checkpointed): replicated or sharded global arrays and, for
        # padded tables, numpy; to_host gathers across processes, so all processes call it
        params = last["trainer"].logical(last["params"])
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        host = {checkpoint.tree_key(k): parallel.to_host(v) for k, v in flat}
        if pid == 0:
            np.savez(run / "final.npz", **host)
    dump()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
