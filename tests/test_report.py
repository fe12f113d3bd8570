"""recgoat report's table: the 'differs' column shows only keys every run has and whose
values differ (two models' runs: model.name, not each section's keys as key=None)."""

from __future__ import annotations

import json

from recgoat_jax import report
from recgoat_jax.config import dump_yaml, make_config


def _run_dir(tmp_path, name, overrides, recall):
    d = tmp_path / name
    d.mkdir()
    (d / "config.yaml").write_text(dump_yaml(make_config(overrides=overrides)))
    (d / "results.json").write_text(json.dumps({
        "best_epoch": 3, "valid": {"recall@20": recall}, "test": {"recall@20": recall / 2},
        "wall_time_s": 12.0}))
    return d


def _differs(table: str) -> list[str]:
    rows = [ln.split(" | ") for ln in table.splitlines()[2:] if ln.startswith("| ")]
    return [r[1] for r in rows]


def test_two_models_differ_by_name_only(tmp_path):
    a = _run_dir(tmp_path, "a", ["model.name=lightgcn", "run_dir=x"], 0.25)
    b = _run_dir(tmp_path, "b", ["model.name=recgoat", "run_dir=y"], 0.5)
    runs = [report.read_run(a), report.read_run(b)]
    assert report.config_differences(runs) == ["model.name"]
    table = report.report_table(runs)
    assert _differs(table) == ["model.name=lightgcn", "model.name=recgoat"]
    assert "None" not in table


def test_same_model_shows_the_changed_keys_and_identical_configs_say_so(tmp_path):
    a = _run_dir(tmp_path, "a", ["model.name=recgoat", "model.dim=32", "train.lr=0.01"], 0.3)
    b = _run_dir(tmp_path, "b", ["model.name=recgoat", "model.dim=64", "train.lr=0.01"], 0.3)
    runs = [report.read_run(a), report.read_run(b)]
    assert _differs(report.report_table(runs)) == ["model.dim=32", "model.dim=64"]
    c = _run_dir(tmp_path, "c", ["model.name=mf", "run_dir=p"], 0.1)
    d = _run_dir(tmp_path, "d", ["model.name=mf", "run_dir=q"], 0.1)
    table = report.report_table([report.read_run(c), report.read_run(d)])
    assert _differs(table) == ["-", "-"] and table.endswith("(the runs' configs are identical)")
