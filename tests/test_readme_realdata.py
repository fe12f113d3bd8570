"""The README's real-data path runs as written: its three `make` lines (data with raw
reviews, meta and a users file -> features -> train), verbatim, on the toy raw fixtures
saved under the README's file names, with the real MiniLM encoder and a 2-epoch train.

The lines run through this checkout's Makefile from a scratch directory (so data/ and
runs/ of the checkout are never touched), with the test's own Python environment standing
in for .venv (VENV=..., its install steps marked done with make -o)."""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "raw"


def readme_realdata_lines() -> list[str]:
    """The `make` lines of the README's 'Real data, end to end' code block."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Real data, end to end", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [ln for ln in block.splitlines() if ln.startswith("make ")]


def _toy_raw(raw: Path) -> None:
    """The toy fixtures under the README's names, and a users file describing each user."""
    raw.mkdir()
    reviews = gzip.open(FIXTURES / "reviews_Toy_2014.json.gz", "rt").read()
    (raw / "reviews_DEB_dev.json").write_text(reviews)
    (raw / "meta_DEB.json").write_text((FIXTURES / "meta_Toy_2014.json").read_text())
    users = sorted({ast.literal_eval(ln)["reviewerID"] for ln in reviews.splitlines() if ln})
    (raw / "users_DEB_dev.json").write_text("".join(
        json.dumps({"reviewerID": u, "title": f"parent {i} of a {'newborn' if i % 2 else 'toddler'}",
                    "category": ["parents"], "description": ["buys for the baby"]}) + "\n"
        for i, u in enumerate(users)))


def test_readme_shows_the_three_commands():
    lines = readme_realdata_lines()
    assert [ln.split()[1] for ln in lines] == ["data", "features", "train"]
    assert all("DATASET=data/debian-deps-dev" in ln for ln in lines)
    assert "$RAW/users_DEB_dev.json" in lines[0]


@pytest.mark.slow  # the real MiniLM encoder and a 2-epoch RecGOAT run: ~30 s
def test_readme_realdata_lines_run_verbatim(tmp_path):
    _toy_raw(tmp_path / "raw")
    venv = Path(sys.prefix)
    env = {**os.environ, "RAW": str(tmp_path / "raw"), "HF_HUB_OFFLINE": "1"}
    # `make` as a shell function: each README line is read by bash exactly as typed
    make = (f'make() {{ command make -s -f {ROOT}/Makefile VENV={venv} PYTHONPATH={ROOT} '
            f'-o {venv}/.core -o {venv}/.features "$@"; }}')
    for line in readme_realdata_lines():
        extra = (" ARGS='--epochs 2 --no-tensorboard --set eval.ks=[5,10,20]'"  # 32 toy items
                 if line.startswith("make train") else "")
        r = subprocess.run(["bash", "-c", f"{make}\n{line}{extra}"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    built = tmp_path / "data" / "debian-deps-dev"
    assert (built / "text_feat.npy").is_file() and (built / "user_feat.npy").is_file()
    sources = json.loads((built / "user_feat.json").read_text())
    assert "user text" in json.dumps(sources)  # the users file's text, not template profiles
    results = json.loads(next((tmp_path / "runs").glob("debian-deps-dev-recgoat-*/results.json")).read_text())
    assert results["model"] == "recgoat" and results["epochs_run"] == 2
    assert 0.0 <= results["test"]["recall@20"] <= 1.0
