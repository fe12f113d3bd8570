"""experiments/notebooks/recgoat_colab_tpu.ipynb: structure, and a full run on CPU.

The run injects parameters the way papermill does (a cell tagged `injected-parameters`
right after the cell tagged `parameters`) and executes the notebook with nbclient from
experiments/notebooks/ (the notebook finds the repository root itself): LightGCN on the
demo data, 2 epochs at dim 32, INSTALL off, the profiler on for 2 steps.
Needs requirements-notebook.txt (nbclient, nbformat, ipykernel) and matplotlib (requirements.txt).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "notebooks" / "recgoat_colab_tpu.ipynb"
EPOCHS = 2


def _read():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def _parameters_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def _assignments(source: str) -> dict:
    tree = ast.parse(source)
    return {t.targets[0].id: ast.literal_eval(t.value) for t in tree.body
            if isinstance(t, ast.Assign)}


def test_notebook_structure():
    nb = _read()
    params = _assignments(nb.cells[_parameters_index(nb)].source)
    assert params["DATASET"] == "demo"
    assert params["INSTALL"] is True  # Colab default
    assert params["DOWNLOAD_DATA"] is False and params["FEATURES"] is False
    for name in ("EPOCHS", "CONFIG", "RUN_PROFILER", "MODEL", "OVERRIDES", "RUN_DIR"):
        assert name in params
    src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for needle in ("jax.devices()", "recgoat_jax.features.cli", "train(cfg",
                   "format_table", "metrics.jsonl", "jax.profiler.trace"):
        assert needle in src, needle
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"


def _code(source: str) -> str:
    """A code cell without its IPython lines (!shell, %magic)."""
    return "\n".join("" if line.lstrip().startswith(("!", "%")) else line
                     for line in source.splitlines())


def test_notebook_imports_resolve():
    """Every recgoat_jax name the notebook imports exists (fails when a refactor moves
    something the notebook uses, without executing it)."""
    import importlib

    nb = _read()
    checked = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(_code(cell.source))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recgoat_jax"):
                mod = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(mod, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"), f"{node.module}.{alias.name}"
                    checked += 1
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("recgoat_jax"):
                        importlib.import_module(alias.name)
                        checked += 1
    assert checked >= 3


@pytest.mark.slow
def test_notebook_runs_on_cpu(tmp_path):
    nb = _read()
    run_dir = tmp_path / "run"
    params = {
        "MODEL": "lightgcn", "EPOCHS": EPOCHS, "OVERRIDES": ["model.dim=32"],
        "RUN_DIR": str(run_dir), "PROGRESS": False, "INSTALL": False,
        "RUN_PROFILER": True, "PROFILE_STEPS": 2,
    }
    cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(_parameters_index(nb) + 1, cell)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # kept for debugging

    def texts(c):
        for o in c.get("outputs", []):
            if o.output_type == "stream":
                yield o.text
            elif o.output_type in ("execute_result", "display_data"):
                yield o.get("data", {}).get("text/plain", "")

    out = "\n".join(t for c in nb.cells if c.cell_type == "code" for t in texts(c))
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    # the results table, the devices cell and the profiler cell printed
    for needle in ("Recall", "NDCG", "HitRate", "backend: cpu", "traced 2 steps", "user 0:"):
        assert needle in out, needle
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 1
    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"] == "lightgcn" and results["epochs_run"] == EPOCHS
    assert results["test"]["recall@20"] > 0
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == EPOCHS
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert list((run_dir / "profile").rglob("*.xplane.pb")), "no trace written"
