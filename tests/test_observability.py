"""Observability: -v/-q through the real command line, TensorBoard event files read back
(TFRecord framing, CRCs and Event protos parsed here) against metrics.jsonl, and the PNG
curves of `recgoat report` (header, size, which files, what the axes hold) from
hand-written metrics.jsonl files; bad input is one line naming the file."""

import json
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recgoat_jax import cli, config as config_lib, curves
from recgoat_jax.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}


# ---------------------------------------------------------------- hand-written runs

ROWS = [  # two loss parts and the total; valid/test at K=20
    {"epoch": 0, "train/loss": 0.70, "train/bpr": 0.69, "train/reg": 0.01,
     "valid": {"recall@20": 0.10, "ndcg@20": 0.05}, "test": {"recall@20": 0.09},
     "epoch_time_s": 1.0, "eval_time_s": 0.5},
    {"epoch": 2, "train/loss": 0.50, "train/bpr": 0.48, "train/reg": 0.02,
     "valid": {"recall@20": 0.20, "ndcg@20": 0.12}, "test": {"recall@20": 0.18},
     "epoch_time_s": 1.0, "eval_time_s": 0.5},
    {"epoch": 4, "train/loss": 0.40, "train/bpr": 0.37, "train/reg": 0.03,
     "valid": {"recall@20": 0.25, "ndcg@20": 0.15}, "test": {"recall@20": 0.22},
     "epoch_time_s": 1.0, "eval_time_s": 0.5},
]


def _run_dir(d: Path, rows=ROWS, lr=0.001) -> Path:
    d.mkdir(parents=True)
    cfg = config_lib.make_config(overrides=[f"train.lr={lr}"])
    (d / "config.yaml").write_text(config_lib.dump_yaml(cfg))
    if rows is not None:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    b = path.read_bytes()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    assert b[12:16] == b"IHDR"
    return struct.unpack(">II", b[16:24])


# ---------------------------------------------------------------- report's curves

def test_report_writes_one_curves_png_per_run_by_default(tmp_path, capsys):
    a, b = _run_dir(tmp_path / "a"), _run_dir(tmp_path / "b", rows=ROWS[:2], lr=0.005)
    assert cli.main(["report", str(a), str(b)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[2].startswith("| a (partial) | train.lr=0.001 | 4 | 0.2500 |")
    assert err.splitlines() == [f"wrote {a}/curves.png", f"wrote {b}/curves.png"]
    for d in (a, b):
        assert _png_size(d / "curves.png") == (1200, 360)
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["curves.png", "curves.png"]


def test_report_plots_dir_holds_each_run_and_a_comparison(tmp_path, capsys):
    runs = [_run_dir(tmp_path / "x" / "run"), _run_dir(tmp_path / "y" / "run", lr=0.01),
            _run_dir(tmp_path / "bare", rows=None, lr=0.1)]
    (runs[2] / "results.json").write_text(json.dumps(
        {"best_epoch": 3, "valid": {"recall@20": 0.3}, "test": {}, "wall_time_s": 5}))
    plots = tmp_path / "plots" / "new"
    assert cli.main(["report", *map(str, runs), "--plots", str(plots)]) == 0
    err = capsys.readouterr().err.splitlines()
    # run names made unique; the run without metrics.jsonl gets a warning, no curves
    assert sorted(p.name for p in plots.iterdir()) == ["compare.png", "run-2.png", "run.png"]
    assert err == [f"wrote {plots}/run.png", f"wrote {plots}/run-2.png",
                   f"warning: {runs[2]}/metrics.jsonl: not there; no curves for {runs[2]}",
                   f"wrote {plots}/compare.png"]
    assert all(_png_size(p) == (1200, 360) for p in plots.iterdir())
    assert not list(tmp_path.glob("*/*/curves.png"))  # nothing written into the runs
    assert cli.main(["report", str(runs[0]), "--no-plots"]) == 0
    assert capsys.readouterr().err == "" and not (runs[0] / "curves.png").exists()


def test_run_figure_draws_the_rows():
    fig = curves.run_figure(ROWS, "r")
    loss, recall, ndcg = fig.axes
    assert [ln.get_label() for ln in loss.lines] == ["loss", "bpr", "reg"]
    np.testing.assert_allclose(loss.lines[0].get_xydata(), [[0, .70], [2, .50], [4, .40]])
    np.testing.assert_allclose(loss.lines[2].get_xydata(), [[0, .01], [2, .02], [4, .03]])
    assert loss.get_yscale() == "log"  # bpr and reg are more than 10x apart
    np.testing.assert_allclose(recall.lines[0].get_xydata(), [[0, .10], [2, .20], [4, .25]])
    np.testing.assert_allclose(ndcg.lines[0].get_xydata(), [[0, .05], [2, .12], [4, .15]])
    assert (recall.get_title(), ndcg.get_title()) == ("valid recall@20", "valid ndcg@20")
    other = [{**r, "valid": {"recall@20": r["valid"]["recall@20"] / 2}} for r in ROWS[:2]]
    cmp = curves.compare_figure({"a": ROWS, "b": other})
    assert [ln.get_label() for ln in cmp.axes[0].lines] == ["a", "b"]
    np.testing.assert_allclose(cmp.axes[0].lines[1].get_xydata(), [[0, .05], [2, .10]])
    assert len(cmp.axes[1].lines[1].get_xydata()) == 0  # no ndcg@20 in "b": nothing drawn


def test_report_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    empty = _run_dir(tmp_path / "empty", rows=None)
    bad = _run_dir(tmp_path / "bad")
    (bad / "metrics.jsonl").write_text('{"epoch": 0}\nnot json\n{"epoch": 1}\n')
    noepoch = _run_dir(tmp_path / "noepoch")
    (noepoch / "metrics.jsonl").write_text('{"valid": {}}\n')
    cut = _run_dir(tmp_path / "cut")
    (cut / "metrics.jsonl").write_text(json.dumps(ROWS[0]) + '\n{"epoch": 2, "tr')
    cases = [
        ([str(tmp_path / "missing")], f"{tmp_path / 'missing'}: no such directory"),
        ([str(empty)], f"{empty}: neither results.json nor metrics.jsonl there"),
        ([str(bad)], f"{bad}/metrics.jsonl:2: not a JSON line"),
        ([str(noepoch)], f'{noepoch}/metrics.jsonl:1: expected a JSON object with an '
                         'integer "epoch"'),
        ([str(cut), "--plots", str(bad / "config.yaml")],
         f"--plots {bad / 'config.yaml'}: is a file, expected a directory"),
    ]
    for argv, expect in cases:
        assert cli.main(["report", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {expect}"), err
    # a last line cut by a kill is skipped: the run's one whole row is read
    assert curves.read_metrics(cut / "metrics.jsonl") == [ROWS[0]]


# ---------------------------------------------------------------- -v / -q

@pytest.mark.slow  # several python -m recgoat_jax processes: ~3-7 s
def test_verbosity_through_the_command_line(tmp_path):
    run = _run_dir(tmp_path / "run")

    def rep(*flags):
        return subprocess.run([sys.executable, "-m", "recgoat_jax", "report", str(run),
                               *flags], capture_output=True, text=True, timeout=120, env=ENV,
                              cwd=tmp_path)

    default, quiet, verbose = rep(), rep("-q"), rep("-v")
    assert default.returncode == quiet.returncode == verbose.returncode == 0
    table = default.stdout
    assert table.startswith("| run |") and quiet.stdout == verbose.stdout == table
    assert default.stderr == f"wrote {run}/curves.png\n"  # INFO, no DEBUG
    assert quiet.stderr == ""
    assert verbose.stderr.splitlines() == [
        f"debug: recgoat_jax.report: {run}: no results.json, read 3 rows of metrics.jsonl "
        "(partial)", f"wrote {run}/curves.png"]
    both = rep("-q", "-v")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_quiet_keeps_warnings_and_every_command_has_the_flags(caplog, capsys):
    from recgoat_jax.cliutil import configure_logging
    log = logging.getLogger("recgoat_jax.some.module")
    for level, shown in ((logging.WARNING, ["warning: w"]), (logging.INFO, ["i", "warning: w"]),
                         (logging.DEBUG, ["debug: recgoat_jax.some.module: d", "i",
                                          "warning: w"])):
        configure_logging(level)
        log.debug("d"), log.info("i"), log.warning("w")
        assert capsys.readouterr().err.splitlines() == shown
    configure_logging(logging.INFO)
    logging.getLogger("some.library").info("not ours")  # other libraries stay at WARNING
    assert capsys.readouterr().err == ""
    for command in ("train", "data", "features", "recommend", "report", "demo"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert "-q, --quiet" in text and "-v, --verbose" in text, command


# ---------------------------------------------------------------- stdout / stderr

def test_progress_bars_only_on_a_terminal(monkeypatch):
    from argparse import Namespace

    from recgoat_jax.cliutil import show_progress
    for tty in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        assert show_progress(Namespace(quiet=False, no_progress=False)) is tty
        assert show_progress(Namespace(quiet=True, no_progress=False)) is False
        assert show_progress(Namespace(quiet=False, no_progress=True)) is False


@pytest.mark.slow
def test_train_results_on_stdout_status_on_stderr(tmp_path):
    """A real `recgoat train` process, stdout and stderr captured apart (stderr is not a
    terminal): the results table and the run directory on stdout, with or without -q;
    the status lines on stderr with one line per epoch and no progress bar; -q leaves
    stderr empty; --no-progress keeps the status lines."""
    data = _tiny_dataset(tmp_path)

    def train(run, *flags):
        return subprocess.run([sys.executable, "-m", "recgoat_jax",
                               *_train_args(data, tmp_path / run, "--epochs", "2", *flags)],
                              capture_output=True, text=True, timeout=300, env=ENV,
                              cwd=tmp_path)

    for run, flags in (("default", ()), ("quiet", ("-q",)), ("noprog", ("--no-progress",))):
        r = train(run, *flags)
        assert r.returncode == 0, r.stderr[-2000:]
        out = r.stdout.splitlines()
        assert out[0].startswith("tiny / mf: test at best valid epoch ")
        assert out[1].split() == ["@5", "@10", "@20"] and out[2].startswith("Recall ")
        assert out[-1] == f"run directory: {tmp_path / run}"
        if flags == ("-q",):
            assert r.stderr == ""
            continue
        err = r.stderr.splitlines()
        assert err[0].startswith("config: ")
        assert [ln[:10] for ln in err if ln.startswith("epoch ")] == ["epoch    0",
                                                                     "epoch    1"]
        assert "\r" not in r.stderr and "it/s" not in r.stderr and "%|" not in r.stderr
        assert "run directory" not in r.stderr and "Recall " not in r.stderr


# ---------------------------------------------------------------- TensorBoard

def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(tb_dir: Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in the event files of tb_dir: TFRecord framing
    (length, masked CRC32C of it, data, masked CRC32C of the data) around Event protos."""
    from tensorboardX.proto import event_pb2

    out = []
    for f in sorted(tb_dir.iterdir()):
        b, i = f.read_bytes(), 0
        while i < len(b):
            (n,), (len_crc,) = struct.unpack("<Q", b[i:i + 8]), struct.unpack("<I", b[i + 8:i + 12])
            assert len_crc == _masked(_crc32c(b[i:i + 8]))
            data = b[i + 12:i + 12 + n]
            assert struct.unpack("<I", b[i + 12 + n:i + 16 + n])[0] == _masked(_crc32c(data))
            i += 16 + n
            ev = event_pb2.Event()
            ev.ParseFromString(data)
            out += [(ev.step, v.tag, v.simple_value) for v in ev.summary.value]
    return out


def _expected(rows: list[dict]) -> list[tuple[int, str, float]]:
    want = []
    for r in rows:
        tags = {k: v for k, v in r.items() if k.startswith("train/")}
        for group in ("valid", "test", "diagnostics"):
            tags.update({f"{group}/{k}": v for k, v in r.get(group, {}).items()})
        tags.update({"time/epoch_s": r["epoch_time_s"], "time/eval_s": r["eval_time_s"]})
        want += [(r["epoch"], k.replace("@", "_"), float(np.float32(v)))
                 for k, v in tags.items()]
    return sorted(want)


def _tiny_dataset(tmp_path: Path) -> Path:
    from recgoat_jax.data import synthetic
    ds = synthetic.generate(n_users=60, n_items=40, n_interactions=700, feature_dims={},
                            seed=0, name="tiny")
    synthetic.write_mmrec(ds, tmp_path / "tiny")
    return tmp_path / "tiny"


def _train_args(data: Path, run: Path, *extra) -> list[str]:
    return ["train", "--dataset", str(data), "--model", "mf", "--run-dir", str(run),
            "--set", "model.dim=8", "--set", "train.batch_size=64",
            "--set", "eval.ks=[5,10,20]", *extra]


@pytest.mark.slow
def test_train_writes_tensorboard_scalars_equal_to_metrics(tmp_path, capsys):
    """Through `recgoat train` in process: -v shows DEBUG, the event files hold exactly
    metrics.jsonl's numbers (float32), and a resumed run replays them: one step each."""
    data, run = _tiny_dataset(tmp_path), tmp_path / "run"
    assert cli.main(_train_args(data, run, "--epochs", "2", "-v")) == 0
    out, err = capsys.readouterr()
    assert f"debug: recgoat_jax.train.tensorboard: TensorBoard event files in {run}/tb " \
           "(0 rows replayed)" in err
    assert "epoch    1 | loss " in err and f"run directory: {run}" in out
    rows = curves.read_metrics(run / "metrics.jsonl")
    got = sorted(read_events(run / "tb"))
    assert [r["epoch"] for r in rows] == [0, 1] and len(got) > 2 * 10
    assert got == _expected(rows)
    # resumed to 3 epochs: the two rows replayed into fresh event files, then epoch 2
    assert cli.main(["train", "--resume", str(run), "--epochs", "3", "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # -q: no status lines, no progress bars
    assert out.endswith(f"run directory: {run}\n")  # the results: stdout, even under -q
    rows3 = curves.read_metrics(run / "metrics.jsonl")
    assert rows3[:2] == rows and len(rows3) == 3
    assert sorted(read_events(run / "tb")) == _expected(rows3)
    assert len(list((run / "tb").iterdir())) == 1
    # --no-tensorboard: no tb/
    assert cli.main(_train_args(data, tmp_path / "off", "--epochs", "1", "-q",
                                "--no-tensorboard")) == 0
    assert not (tmp_path / "off" / "tb").exists()
    assert (tmp_path / "off" / "metrics.jsonl").is_file()


def test_missing_tensorboardx_is_one_line(tmp_path, monkeypatch):
    from recgoat_jax.train import tensorboard
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    with pytest.raises(UserError) as e:
        tensorboard.EventWriter(tmp_path, [])
    assert str(e.value) == ("run.tensorboard: tensorboardX is not installed (pip install "
                            "tensorboardX==2.6.5), or turn it off with --no-tensorboard / "
                            "--set run.tensorboard=false")
    cfg = config_lib.make_config(overrides=["run.tensorboard=false"])
    assert tensorboard.open_writer(cfg, tmp_path, []) is None  # off: never imported


def test_scalars_of_a_row():
    row = {**ROWS[0], "diagnostics": {"lemma_gap": 0.5}}
    from recgoat_jax.train.tensorboard import scalars
    assert scalars(row) == {
        "train/loss": 0.70, "train/bpr": 0.69, "train/reg": 0.01,
        "valid/recall_20": 0.10, "valid/ndcg_20": 0.05, "test/recall_20": 0.09,
        "diagnostics/lemma_gap": 0.5, "time/epoch_s": 1.0, "time/eval_s": 0.5}
