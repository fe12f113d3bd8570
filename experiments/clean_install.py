"""What a user's `pip install .` gives, checked from nothing -> experiments/results/clean_install.json

Creates a fresh virtual environment (no packages but pip), installs this checkout into it
with pip resolving every dependency from the package index (pyproject.toml's pins), and,
from another directory, runs the installed console script: `recgoat --help`, then
`recgoat train` for 2 epochs of MF and RecGOAT on a small generated dataset written in
MMRec's layout, and `recgoat report` over the two runs (table + PNG curves). Records the
time of each step, `pip freeze` of the new environment and the command.

    python -m experiments.clean_install                  # needs the package index (PyPI)
    python -m experiments.clean_install --python python3.12

Unlike tests/test_cli.py's wheel test (--no-deps, offline, in CI), this resolves the
dependencies, so it needs the network and takes minutes; run it when pins change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recgoat_jax import provenance
from recgoat_jax.data import synthetic

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: float = 1800) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"error: {' '.join(cmd)} exited {r.returncode}: " + " | ".join(tail))
    return dt, r.stdout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the new environment (default: this one)")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "clean_install.json"))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="recgoat-clean-"))
    venv, work = tmp / "venv", tmp / "work"
    work.mkdir()
    steps = {}
    steps["venv_s"], _ = _run([args.python, "-m", "venv", str(venv)], tmp)
    py, recgoat = venv / "bin" / "python", venv / "bin" / "recgoat"
    steps["pip_install_s"], _ = _run([str(py), "-m", "pip", "install", "-q", str(ROOT)], tmp)
    _, freeze = _run([str(py), "-m", "pip", "freeze"], tmp)
    steps["help_s"], help_out = _run([str(recgoat), "--help"], work)
    ds = synthetic.generate(n_users=120, n_items=80, n_interactions=1500,
                            feature_dims={"text": 16}, seed=0, name="small")
    synthetic.write_mmrec(ds, work / "small")
    results = {}
    for model in ("mf", "recgoat"):
        run = work / "runs" / model
        steps[f"train_{model}_s"], _ = _run(
            [str(recgoat), "train", "--dataset", str(work / "small"), "--model", model,
             "--epochs", "2", "-q", "--run-dir", str(run), "--set", "model.dim=16",
             *(["--set", "model.knn.k=3"] if model == "recgoat" else []),  # MF has no kNN
             "--set", "eval.ks=[5,10,20]"], work)
        res = json.loads((run / "results.json").read_text())
        results[model] = {"epochs_run": res["epochs_run"],
                          "test_recall@20": res["test"]["recall@20"]}
    steps["report_s"], table = _run(
        [str(recgoat), "report", str(work / "runs" / "mf"), str(work / "runs" / "recgoat"),
         "--plots", str(work / "plots")], work)
    plots = sorted(x.name for x in (work / "plots").glob("*.png"))
    out = {**provenance.header(with_versions=False),  # the new venv's: pip_freeze
           "what": "fresh venv, `pip install <checkout>` resolving dependencies from the "
                   "package index, then the installed `recgoat` from another directory",
           "python": _run([str(py), "--version"], tmp)[1].strip(), "steps_s": {k: round(v, 1) for k, v in steps.items()},
           "pip_freeze": freeze.split(), "help_first_line": help_out.splitlines()[0],
           "train": results, "report_table": table.splitlines(), "plots": plots}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("python", "steps_s", "train", "plots")}, indent=2))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
