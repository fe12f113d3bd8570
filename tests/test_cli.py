"""The `recgoat` command line: dispatch and help of every subcommand, the shipped-config
lookup, the range check of every numeric config key, the non-finite loss message, the
--resume shape-change error, the unused-id warning, `report`, and packaging."""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recgoat_jax import cli, config as config_lib
from recgoat_jax.config import ConfigError, make_config
from recgoat_jax.errors import TrainingDiverged, UserError

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}


def _run(*args, cwd=ROOT, env=ENV, timeout=120):
    return subprocess.run([sys.executable, "-m", "recgoat_jax", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


# ---------------------------------------------------------------- dispatch and help

@pytest.mark.parametrize("command,flag", [
    ("train", "--epochs"), ("data", "--k-core"), ("features", "--encoder"),
    ("recommend", "--run-dir"), ("report", "RUN"), ("demo", "--force"),
])
def test_every_subcommand_has_help_with_defaults_and_examples(command, flag, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: recgoat {command}")
    assert flag in out and "examples:" in out and f"recgoat {command}" in out.split("examples:")[1]


@pytest.mark.parametrize("command,flag,default", [
    ("data", "--k-core", "(default: 5)"), ("data", "--split", "(default: 8:1:1)"),
    ("features", "--batch-size", "(default: 64)"), ("recommend", "--k", "(default: 20)"),
    ("recommend", "--checkpoint", "(default: best)"),
])
def test_help_shows_defaults(command, flag, default, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    opts = out[out.index("options:"):]
    assert default in opts[opts.index(flag + " "):opts.index(flag + " ") + 160]


def test_top_level_help_lists_the_six_commands():
    r = _run("--help")
    assert r.returncode == 0
    for c in ("train", "data", "features", "recommend", "report", "demo"):
        assert f"    {c} " in r.stdout
    assert "    bench " not in r.stdout  # benchmarks: experiments/ scripts, `make bench`


def test_dispatch_reaches_each_command(monkeypatch):
    """Each subcommand calls its module's run(args) with the flags parsed."""
    seen = {}
    from recgoat_jax import recommend, report
    from recgoat_jax.data import cli as data_cli
    from recgoat_jax.features import cli as features_cli
    from recgoat_jax.train import cli as train_cli
    for name, mod in (("train", train_cli), ("data", data_cli), ("features", features_cli),
                      ("recommend", recommend), ("report", report)):
        monkeypatch.setattr(mod, "run", lambda a, n=name: seen.setdefault(n, a) and 0)
    cli.main(["train", "--epochs", "3", "--quiet", "--model", "mf"])
    cli.main(["data", "--dataset", "x", "--root", "r", "--seed", "4"])
    cli.main(["features", "--dataset", "x", "--encoder", "enc", "--quiet"])
    cli.main(["recommend", "--run-dir", "r", "--k", "5", "--root", "q"])
    cli.main(["report", "a", "b"])
    assert (seen["train"].epochs, seen["train"].quiet, seen["train"].model) == (3, True, "mf")
    assert (seen["data"].dataset, seen["data"].root, seen["data"].seed) == ("x", "r", 4)
    assert (seen["features"].encoder, seen["features"].quiet) == ("enc", True)
    assert (seen["recommend"].k, seen["recommend"].root) == (5, "q")
    assert seen["report"].runs == ["a", "b"]


def test_old_flag_names_still_parse():
    from recgoat_jax.features import cli as features_cli
    from recgoat_jax.train import cli as train_cli
    # --no-progress was an alias of --quiet; now it hides the progress bars only
    a = train_cli.parse_args(["--no-progress"])
    assert a.no_progress is True and a.quiet is False
    a = features_cli.build_parser().parse_args(["features", "--dataset", "d", "--model", "m"])
    assert a.encoder_old == "m" and a.encoder is None


def test_bench_is_not_a_command(capsys):
    """The package runs nothing of experiments/: benchmarks are `make bench`."""
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--runs", "baby:mf"])
    assert e.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err.strip().splitlines()[-1]


# ---------------------------------------------------------------- did you mean

def test_mistyped_subcommand_and_choice_get_a_suggestion(capsys):
    for argv, hint in ((["trian"], "did you mean 'train'?"),
                       (["features", "--dataset", "x", "--backend", "transformer"],
                        "did you mean 'transformers'?")):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(hint)


def test_unknown_flag_is_reported_by_its_subcommand(capsys):
    """`recgoat train --datset demo`: train's usage and error, not the top-level usage."""
    for argv, prog in ((["train", "--datset", "demo"], "recgoat train"),
                       (["report", "r", "--no-plot", "--jsn"], "recgoat report")):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"usage: {prog} ")
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"{prog}: error: unrecognized arguments: ")
    assert last.endswith("--jsn: did you mean --json?")
    from recgoat_jax.train import cli as train_cli
    with pytest.raises(SystemExit):
        train_cli.main(["--datset", "demo"])  # python -m recgoat_jax.train: the same
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "python -m recgoat_jax.train: error: unrecognized arguments: --datset demo; "
        "--datset: did you mean --dataset?")


@pytest.mark.parametrize("override,msg", [
    ("train.lrr=0.01", "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
    ("trian.lr=0.01", "unknown config key 'trian'; did you mean 'train'?"),
    ("model.dimm=8", "unknown config key 'model.dimm': not a key of lightgcn; "
                     "did you mean 'model.dim'?"),
    ("eval.zzz=1", "unknown config key 'eval.zzz'; known keys here: "),
])
def test_unknown_config_key_suggests_the_closest(override, msg):
    with pytest.raises(ConfigError) as e:
        make_config(overrides=[override])
    assert str(e.value).startswith(msg)


def test_missing_dataset_suggests_a_registered_name_or_a_directory(tmp_path):
    from recgoat_jax.data.load import resolve_dataset_dir
    (tmp_path / "my-shop").mkdir()
    for name, hint in (("bbay", "(did you mean 'baby'?)"), ("my-shp", "(did you mean 'my-shop'?)"),
                       (str(tmp_path / "my-shopp"), f"(did you mean '{tmp_path}/my-shop'?)")):
        with pytest.raises(UserError) as e:
            resolve_dataset_dir(name, tmp_path)
        assert hint in str(e.value), str(e.value)
    with pytest.raises(UserError) as e:
        resolve_dataset_dir("bbay", tmp_path, option="--dataset")
    assert str(e.value).startswith(f"--dataset bbay: no such directory, and no {tmp_path}/bbay/ "
                                   "(did you mean 'baby'?)")
    with pytest.raises(UserError) as e:  # a registered name that is not there: no self-hint
        resolve_dataset_dir("sports", tmp_path)
    assert "did you mean" not in str(e.value)


# ---------------------------------------------------------------- install-aware messages

def test_messages_name_the_commands_of_the_install(tmp_path, monkeypatch):
    """A source checkout is told the make targets, a pip install `recgoat data` /
    `recgoat features` and the [features] extra."""
    from recgoat_jax import errors
    from recgoat_jax.data.load import resolve_dataset_dir
    from recgoat_jax.features import hf
    assert errors.source_checkout() == ROOT  # the tests run from the checkout
    # a name close to none known: the commands name it as given ('bbay' would get 'baby')
    checkout = str(pytest.raises(UserError, resolve_dataset_dir, "qzx", tmp_path).value)
    assert "`make data DATASET=qzx` then `make features DATASET=qzx`" in checkout
    monkeypatch.setattr(errors, "source_checkout", lambda: None)
    pip = str(pytest.raises(UserError, resolve_dataset_dir, "bbay", tmp_path).value)
    assert ("`recgoat data --dataset baby` then `recgoat features --dataset baby` "
            "(recgoat data --help)") in pip and "make " not in pip
    assert "--dataset bbay: no such directory" in str(pytest.raises(
        UserError, resolve_dataset_dir, "bbay", tmp_path, option="--dataset").value)
    assert errors.features_install_hint() == (
        "pip install torch==2.13.0 && pip install 'recgoat-jax[features]'")
    monkeypatch.setitem(sys.modules, "torch", None)  # import fails
    msg = str(pytest.raises(UserError, hf.require_torch).value)
    assert msg.endswith("pip install 'recgoat-jax[features]'") and "requirements" not in msg


def test_help_and_messages_use_the_current_flag_names():
    """The features command's encoder flag is --encoder; no message, help text or README
    line tells a user to pass --model PATH, or to run `cli data`."""
    files = [*(ROOT / "recgoat_jax").rglob("*.py"), ROOT / "README.md"]
    for f in files:
        text = f.read_text()
        for stale in ("--model PATH", "pass --model", "(cli data", "--no-progress` ("):
            assert stale not in text, f"{f}: {stale!r}"


def test_unknown_model_is_the_first_line_printed(tmp_path):
    """`recgoat train --model lightgcnn`: the error is the only line (no 'config: (none)'
    line about a config search for a model that does not exist)."""
    r = _run("train", "--model", "lightgcnn", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: config key 'model.name': unknown model 'lightgcnn'; did you mean 'lightgcn'? "
        "expected one of "), lines


def test_dataset_typo_hint_names_the_close_dataset_in_every_command(tmp_path):
    """A typo of an existing dataset: the message suggests the close name, and every
    command it prints (make data / make features) names that dataset, not the typo."""
    (tmp_path / "data" / "debian-deps-dev").mkdir(parents=True)
    for args in (("train", "--dataset", "debian-deps-de"),
                 ("features", "--dataset", "debian-deps-de")):
        r = _run(*args, cwd=tmp_path)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and "(did you mean 'debian-deps-dev'?)" in last, last
        commands = re.findall(r"`([^`]*)`", last)
        assert commands and all(c.endswith("DATASET=debian-deps-dev") for c in commands), last


def test_missing_dataset_answers_before_jax_is_imported(tmp_path):
    """`recgoat train --dataset bbay` checks the dataset before importing JAX (through the
    allocator re-exec of hostmem): no jax module in -X importtime's list of either process."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "recgoat_jax", "train",
                        "--dataset", "bbay"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, env=ENV)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[-1].startswith("error: dataset 'bbay' not found (did you mean 'baby'?): ")
    imported = [ln.split("|")[-1].strip() for ln in lines if ln.startswith("import time:")]
    assert "recgoat_jax.data.load" in imported  # importtime did list the imports
    assert [m for m in imported if m == "jax" or m.startswith(("jax.", "jaxlib", "flax"))] == []
    # an existing directory without dataset files: also before JAX
    (tmp_path / "empty").mkdir()
    r = _run("train", "--dataset", str(tmp_path / "empty"), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'empty'}: no dataset files found")


# ---------------------------------------------------------------- config lookup

@pytest.mark.parametrize("argv,expect", [
    ([], "recgoat_demo.yaml"),
    (["--model", "recgoat", "--dataset", "data/mine"], "recgoat.yaml"),
    (["--model", "lightgcn", "--dataset", "baby"], "lightgcn_baby.yaml"),
    (["--model", "lightgcn", "--dataset", "data/mine"], "lightgcn.yaml"),
    (["--dataset", "elec"], "recgoat_electronics.yaml"),
    (["--dataset", "electronics"], "recgoat_electronics.yaml"),
    (["--dataset", "data/elec"], "recgoat_electronics.yaml"),
    (["--set", "model.name=freedom", "--dataset", "baby"], "freedom_baby.yaml"),
    (["--config", "my.yaml"], "my.yaml"),
])
def test_train_config_lookup(argv, expect):
    from recgoat_jax.train import cli as train_cli
    path, why = train_cli.choose_config(train_cli.parse_args(argv))
    assert path.name == expect, why


def test_recgoat_without_config_is_the_full_model():
    from recgoat_jax.train import cli as train_cli
    path, _ = train_cli.choose_config(train_cli.parse_args(["--model", "recgoat",
                                                            "--dataset", "data/x"]))
    assert path.name == "recgoat.yaml"  # the real-data default, not the schema defaults
    cfg = make_config(path)
    assert (cfg.model.name, cfg.model.oat, cfg.model.cmcl, cfg.model.fusion) == (
        "recgoat", "paper", "paper", "residual")
    assert cfg.model.loss.ot_weight == 0.1 and cfg.train.lr == 0.005  # values of recgoat.yaml


def test_train_prints_the_config_it_uses():
    r = _run("train", "--dataset", "elec", "--set", "train.lr=-1")
    assert r.returncode == 2
    # the config line is a status line (logging, stderr) ahead of the one error line
    first, error = r.stderr.strip().splitlines()
    assert first.startswith("config: ") and "recgoat_electronics.yaml" in first
    assert error == "error: config key 'train.lr': expected a number > 0, got -1.0"
    assert r.stdout == ""


def test_dataset_alias_finds_the_directory(tmp_path):
    from recgoat_jax.data.download import load_registry
    from recgoat_jax.data.load import resolve_dataset_dir
    (tmp_path / "elec").mkdir()
    assert resolve_dataset_dir("electronics", tmp_path) == tmp_path / "elec"
    assert resolve_dataset_dir("elec", tmp_path) == tmp_path / "elec"
    reg = load_registry()
    assert "electronics" in reg and "elec" not in reg
    assert config_lib.canonical_dataset("ELEC") == "electronics"


# ---------------------------------------------------------------- range checks

@pytest.mark.parametrize("override,msg", [
    ("train.lr=0", "'train.lr': expected a number > 0, got 0.0"),
    ("train.lr=.nan", "'train.lr': expected a finite number"),
    ("train.batch_size=0", "'train.batch_size': expected an integer >= 1, got 0"),
    ("train.epochs=0", "'train.epochs': expected an integer >= 1, got 0"),
    ("train.patience=0", "'train.patience': expected an integer >= 1, got 0"),
    ("train.eval_every=0", "'train.eval_every': expected an integer >= 1"),
    ("model.loss.l2_weight=-1e-4", "'model.loss.l2_weight': expected a number >= 0"),
    ("model.loss.cl_weight=-0.1", "'model.loss.cl_weight': expected a number >= 0"),
    ("model.loss.cl_tau=0", "'model.loss.cl_tau': expected a number > 0"),
    ("model.loss.cl_w=1.5", "'model.loss.cl_w': expected a number in [0, 1]"),
    ("model.loss.cl_rows=-1", "'model.loss.cl_rows': expected an integer >= 0"),
    ("model.loss.ot_weight=-1", "'model.loss.ot_weight': expected a number >= 0"),
    ("run.model_parallel=0", "'run.model_parallel': expected an integer >= 1"),
    ("train.seed=-1", "'train.seed': expected an integer >= 0"),
    ("model.dropout=1.0", "'model.dropout': expected a number in [0, 1), got 1.0"),
    ("model.dropout=-0.1", "'model.dropout': expected a number in [0, 1)"),
    ("model.dim=0", "'model.dim': expected an integer >= 1, got 0"),
    ("model.knn.k=0", "'model.knn.k': expected an integer >= 1, got 0"),
    ("model.knn.user_k=0", "'model.knn.user_k': expected an integer >= 1"),
    ("model.n_layers=-1", "'model.n_layers': expected an integer >= 0"),
    ("model.gat.heads=0", "'model.gat.heads': expected an integer >= 1"),
    ("model.ot.paper.tau=0", "'model.ot.paper.tau': expected a number in (0, 1]"),
    ("model.ot.reference.epsilon=0", "'model.ot.reference.epsilon': expected a number > 0"),
    ("model.ot.reference.iterations=0", "'model.ot.reference.iterations': expected an integer >= 1"),
    ("model.init_weights=[[text,-0.5]]", "'model.init_weights': expected a number >= 0"),
    ("model.init_weights=[[text,.inf]]", "'model.init_weights': expected a finite number"),
    ("model.mm_image_weight=2", "'model.mm_image_weight': expected a number in [0, 1]"),
    ("model.mm_bpr_weight=-1", "'model.mm_bpr_weight': expected a number >= 0"),
    ("eval.ks=[5,0]", "'eval.ks': expected an integer >= 1, got [5, 0]"),
    ("eval.ks=[]", "'eval.ks': expected at least one K"),
    ("eval.batch_users=0", "'eval.batch_users': expected an integer >= 1"),
])
def test_range_check_names_the_key(override, msg):
    model = "freedom" if override.startswith("model.mm_") else "recgoat"  # the key's model
    with pytest.raises(ConfigError) as e:
        make_config(overrides=[f"model.name={model}", override])
    assert msg in str(e.value)


def test_every_numeric_key_has_a_range():
    """Every int / float key of every section (each model's too, nested groups included)
    has a RANGES entry in the class that declares it."""
    import typing
    keys = []
    for prefix, cls in config_lib.sections():
        for key in config_lib._numeric_fields(cls):
            *groups, field = key.split(".")
            owner = cls
            for g in groups:
                owner = typing.get_type_hints(owner)[g]
            assert field in getattr(owner, "RANGES", {}), prefix + key
            keys.append(prefix + key)
    assert len(set(keys)) >= 30 and {"train.lr", "eval.ks", "model.ot.paper.tau",
                                     "model.mm_image_weight"} <= set(keys)


def test_range_edges_are_accepted():
    cfg = make_config(overrides=["model.name=recgoat", "model.dropout=0", "model.n_layers=0",
                                 "model.loss.cl_rows=0", "train.epochs=1", "train.patience=1",
                                 "model.ot.paper.tau=1"])
    assert (cfg.model.dropout, cfg.train.epochs, cfg.model.ot.paper.tau) == (0.0, 1, 1.0)


def test_train_names_another_models_key(capsys):
    """`recgoat train --set model.knn.k=5 --model lightgcn`: one line saying knn is not
    a LightGCN key (before any dataset or JAX work)."""
    assert cli.main(["train", "--set", "model.knn.k=5", "--model", "lightgcn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: unknown config key 'model.knn': not a key of lightgcn "
                       "(freedom and recgoat have it); lightgcn's keys: dim, emb_loss_weight, "
                       "init, n_layers, name")


@pytest.mark.parametrize("args,line", [
    (["--model", "lightgcn", "--set", "train.lambda_cl=0.5"],
     "error: config key 'train.lambda_cl': lightgcn has no contrastive loss (RecGOAT's is "
     "model.loss.cl_weight)"),
    (["--model", "recgoat", "--set", "train.lambda_cl=0.5"],
     "error: config key 'train.lambda_cl' is now 'model.loss.cl_weight'; rename it there "
     "(e.g. --set model.loss.cl_weight=0.5)"),
    (["--model", "freedom", "--set", "train.reg_weight=0.001"],
     "error: config key 'train.reg_weight' is now 'model.mm_bpr_weight'; rename it there "
     "(e.g. --set model.mm_bpr_weight=0.001)"),
    (["--model", "mf", "--set", "train.checkpoint=false"],
     "error: config key 'train.checkpoint' is now 'run.checkpoint'; rename it there "
     "(e.g. --set run.checkpoint=false)"),
])
def test_train_names_a_moved_key_in_one_line(capsys, args, line):
    """Keys that left train (issue 28): one line, before any dataset or JAX work."""
    assert cli.main(["train", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == line and "Traceback" not in "\n".join(err)


# ---------------------------------------------------------------- training errors

def test_non_finite_loss_message():
    from recgoat_jax.train.loop import check_finite
    cfg = make_config(overrides=["train.lr=0.05"])
    check_finite(3, {"loss": 0.7, "bpr": 0.69}, cfg)  # finite: no error
    with pytest.raises(TrainingDiverged) as e:
        check_finite(7, {"loss": float("nan"), "bpr": float("inf"), "reg": 0.1}, cfg, "runs/x")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("epoch 7: the training loss is not finite (bpr=inf, loss=nan)")
    assert "--set train.lr=0.005" in msg and "runs/x" in msg
    assert isinstance(e.value, UserError) and isinstance(e.value, FloatingPointError)


def test_config_changes_lists_the_overrides():
    from recgoat_jax.train.resume import config_changes
    a = make_config(overrides=["model.dim=8"])
    b = make_config(overrides=["model.dim=16", "train.epochs=5", "run_dir=x"])
    assert config_changes(a, b) == ["model.dim 8 -> 16", "train.epochs 1000 -> 5"]


def _tiny_dir(tmp_path):
    from recgoat_jax.data import synthetic
    ds = synthetic.generate(n_users=60, n_items=40, n_interactions=700,
                            feature_dims={}, seed=0, name="tiny")
    synthetic.write_mmrec(ds, tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.mark.slow
def test_diverging_run_and_resume_shape_change_are_one_line(tmp_path):
    d = _tiny_dir(tmp_path)
    common = ["--dataset", str(d), "--model", "mf", "--quiet", "--set", "model.dim=8",
              "--set", "train.batch_size=64", "--set", "eval.ks=[5,10,20]"]
    r = _run("train", *common, "--epochs", "3", "--set", "train.lr=1e30",
             "--run-dir", str(tmp_path / "nan"), cwd=tmp_path)
    err = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert err[0].startswith("error: epoch 0: the training loss is not finite"), err
    assert "--set train.lr=1e+29" in err[0] and "Traceback" not in r.stderr

    run = tmp_path / "ok"
    r = _run("train", *common, "--epochs", "1", "--run-dir", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    before = (run / "config.yaml").read_text()
    r = _run("train", "--resume", str(run), "--set", "model.dim=16", "--epochs", "2",
             "-q", cwd=tmp_path)  # -q: warnings and errors only
    err = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert err[0].startswith(f"error: --resume {run}: the checkpoint does not fit the model")
    assert "model.dim 8 -> 16" in err[0] and "Traceback" not in r.stderr
    assert "is saved as (" in err[0] and ", 8), the model now needs (" in err[0]
    assert (run / "config.yaml").read_text() == before  # left as it was
    # the run's own report
    r = _run("report", str(run), str(run), cwd=tmp_path)
    assert r.returncode == 0 and "| ok | - | 0 |" in r.stdout


def test_unknown_model_suggests_the_closest():
    """(here, after the tests that import JAX: the registry imports every model)"""
    from recgoat_jax.model import registry
    with pytest.raises(ConfigError) as e:
        registry.build_model(make_config(overrides=["model.name=lightgcnn"]), {})
    assert str(e.value) == ("config key 'model.name': unknown model 'lightgcnn'; did you mean "
                            "'lightgcn'? expected one of blend, freedom, itemknn, lightgcn, mf, recgoat")


# ---------------------------------------------------------------- unused ids

def test_unused_item_ids_warn_with_counts(tmp_path, caplog):
    from recgoat_jax.data.formats import read_dataset
    rows = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(4):
        for item, label in ((1, 0), (5, 0), (999, 1), (7, 2)):
            rows.append(f"{u}\t{item}\t1\t0\t{label}")
    (tmp_path / "x.inter").write_text("\n".join(rows) + "\n")
    ds = read_dataset(tmp_path)
    assert ds.n_items == 1000
    assert ds.report["items_with_interactions"] == 4 and ds.report["unused_item_ids"] == 996
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "the largest item id is 999 but only 4 items have interactions" in warning.message
    assert "unused_user_ids" not in ds.report


# ---------------------------------------------------------------- report

def _fake_run(d: Path, lr, valid, test, epoch, results=True):
    d.mkdir(parents=True)
    cfg = config_lib.to_dict(make_config(overrides=[f"train.lr={lr}"]))
    (d / "config.yaml").write_text(config_lib.dump_yaml(make_config(overrides=[f"train.lr={lr}"])))
    row = {"epoch": epoch, "valid": {"recall@20": valid, "ndcg@20": valid / 2},
           "test": {"recall@20": test, "ndcg@20": test / 2}, "epoch_time_s": 2.0,
           "eval_time_s": 1.0}
    if results:
        (d / "results.json").write_text(json.dumps(
            {"best_epoch": epoch, "valid": row["valid"], "test": row["test"],
             "wall_time_s": 61.4}))
    else:
        (d / "metrics.jsonl").write_text(json.dumps({**row, "epoch": 0, "valid": {
            "recall@20": 0.01}}) + "\n" + json.dumps(row) + "\n")
    return cfg


def test_report_compares_runs(tmp_path, capsys):
    _fake_run(tmp_path / "a", 0.001, 0.25, 0.2, 12)
    _fake_run(tmp_path / "b", 0.005, 0.3, 0.28, 7, results=False)
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run | differs | best epoch | valid R@20 | valid N@20 |")
    assert lines[2] == "| a | train.lr=0.001 | 12 | 0.2500 | 0.1250 | 0.2000 | 0.1000 | 61s |"
    assert lines[3] == "| b (partial) | train.lr=0.005 | 7 | 0.3000 | 0.1500 | 0.2800 | 0.1400 | 6s |"
    assert cli.main(["report", str(tmp_path)]) == 2  # not a run directory
    assert "no config.yaml there" in capsys.readouterr().err


def test_report_groups_columns_and_fitted_runs(tmp_path, capsys):
    _fake_run(tmp_path / "a", 0.001, 0.25, 0.2, 12)                 # no groups recorded
    _fake_run(tmp_path / "k", 0.005, 0.3, 0.28, 0)
    res = json.loads((tmp_path / "k" / "results.json").read_text())
    res.update(fitted=True, best_epoch=None, groups={"test": {
        "0-4": {"n_users": 3, "recall@20": 0.125}, ">4": {"n_users": 0}}})
    (tmp_path / "k" / "results.json").write_text(json.dumps(res))
    assert cli.main(["report", "--groups", "--no-plots", str(tmp_path / "a"),
                     str(tmp_path / "k")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("| test R@20 0-4 | test R@20 >4 | time |")
    assert lines[2].endswith("| 0.2000 | 0.1000 | - | - | 61s |")
    assert lines[3] == ("| k | train.lr=0.005 | fitted | 0.3000 | 0.1500 | 0.2800 | 0.1400 | "
                        "0.1250 | - | 61s |")


# ---------------------------------------------------------------- packaging

def _pins(name):
    return sorted(x.strip() for x in (ROOT / name).read_text().splitlines()
                  if x.strip() and not x.startswith("#"))


def test_pyproject_pins_match_requirements():
    import tomllib
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(proj["dependencies"]) == _pins("requirements.txt")
    extras = proj["optional-dependencies"]
    assert sorted(extras["features"]) == _pins("requirements-features.txt")
    assert sorted(extras["notebook"]) == _pins("requirements-notebook.txt")
    assert sorted(extras["dev"]) == _pins("requirements-dev.txt")
    assert proj["scripts"] == {"recgoat": "recgoat_jax.cli:main"}
    listed = set(proj and __import__("tomllib").loads(
        (ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "recgoat_jax").rglob("__init__.py")}
    assert on_disk <= listed  # a new subpackage must be listed to be installed


@pytest.mark.slow
def test_wheel_installs_and_trains(tmp_path):
    """Builds the wheel (no network: --no-deps --no-build-isolation), checks its contents
    and entry point, installs it with --target, then runs `recgoat train --epochs 1` from
    the installed copy alone (another directory, no checkout on sys.path; the pinned
    dependencies come from this interpreter's site-packages)."""
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (whl,) = wheels.glob("recgoat_jax-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert "recgoat_jax/cli.py" in names and "recgoat_jax/configs/recgoat_demo.yaml" in names
    ep = next(n for n in names if n.endswith("entry_points.txt"))
    assert "recgoat = recgoat_jax.cli:main" in zipfile.ZipFile(whl).read(ep).decode()
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                        "--target", str(site), str(whl)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu",
           "RECGOAT_DATA_ROOT": str(tmp_path / "data")}
    code = ("import sys, recgoat_jax; assert recgoat_jax.__file__.startswith(sys.argv[1]), "
            "recgoat_jax.__file__; from recgoat_jax.cli import main; "
            "sys.exit(main(sys.argv[2:]))")
    # the demo at full size takes minutes on 2 CPUs: a small dataset, same installed code
    d = _tiny_dir(tmp_path)
    # not -q: the config line checked below is a status line
    r = subprocess.run([sys.executable, "-c", code, str(site), "train", "--epochs", "1",
                        "--dataset", str(d), "--set", "eval.ks=[5,10,20]",
                        "--set", "model.dim=16", "--set", "model.knn.k=3",
                        "--set", "model.knn.user_k=3"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"config: {site}/recgoat_jax/configs/recgoat.yaml" in r.stderr
    (run,) = (work / "runs").iterdir()
    assert r.stdout.endswith(f"run directory: runs/{run.name}\n")  # the results: stdout
    res = json.loads((run / "results.json").read_text())
    assert res["model"] == "recgoat" and res["epochs_run"] == 1
    assert 0.0 <= res["test"]["recall@20"] <= 1.0
    # an installed package (no checkout) is told the recgoat commands, not make targets
    r = subprocess.run([sys.executable, "-c", code, str(site), "train", "--dataset", "bbay"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=120)
    err = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "(did you mean 'baby'?)" in err and "make " not in err
    assert "`recgoat data --dataset bbay` then `recgoat features --dataset bbay`" in err
