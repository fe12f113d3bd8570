"""The figures docs/results.md and the README quote are read from the results files they
cite, so they cannot go stale.

Every number with four decimals (a metric, a mean, a std: 0.3387, +- 0.0019) in a section
(a '##' or '###' heading down to the next) must be, rounded to four decimals, a number of
one of the results files that section names (`realdata.json`, `defaults.{json,md}`,
[realdata.md](experiments/results/realdata.md), ...): a number anywhere in a JSON file, or
a four-decimal figure in a Markdown report. Percentages and ratios derived in the text are
not checked here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
FIGURE = re.compile(r"(?<![\w.])(\d+\.\d{4})(?!\d)")
CITED = re.compile(r"([\w.-]+?)\.(?:json|md|\{json, ?md(?:, ?png)?\})")


def _figures_of(path: Path) -> set[str]:
    if path.suffix == ".md":
        return set(FIGURE.findall(path.read_text()))
    out: set[str] = set()

    def walk(v):
        if isinstance(v, bool):
            return
        if isinstance(v, (int, float)):
            out.add(f"{v:.4f}")
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            out.update(FIGURE.findall(v))

    walk(json.loads(path.read_text()))
    return out


def _sections(text: str) -> list[str]:
    return re.split(r"\n(?=#{2,3} )", text)


def stale_figures(text: str, results: Path = RESULTS) -> list[str]:
    """'<heading>: <figure>' for each four-decimal figure that no results file cited in
    its section holds."""
    bad = []
    for sec in _sections(text):
        known: set[str] = set()
        for stem in set(CITED.findall(sec)):
            for p in (results / f"{stem}.json", results / f"{stem}.md"):
                if p.is_file():
                    known |= _figures_of(p)
        bad += [f"{sec.splitlines()[0][:60]}: {f}" for f in FIGURE.findall(sec) if f not in known]
    return bad


def test_the_check_finds_a_stale_figure(tmp_path):
    (tmp_path / "runs.json").write_text(json.dumps({"a": {"test": 0.33866, "std": 0.0019}}))
    (tmp_path / "table.md").write_text("| x | 0.2788 |\n")
    ok = "## A\nfrom `runs.json`: 0.3387 +- 0.0019; table.md: 0.2788\n"
    assert stale_figures(ok, tmp_path) == []
    # a figure that is not in the cited file, one cited only in another section
    bad = ok + "## B\nsee `runs.json`: 0.3399\n### C\n0.2788 (no file named here)\n"
    assert stale_figures(bad, tmp_path) == ["## B: 0.3399", "### C: 0.2788"]


@pytest.mark.parametrize("doc", ["docs/results.md", "README.md"])
def test_every_quoted_figure_is_in_a_cited_results_file(doc):
    stale = stale_figures((ROOT / doc).read_text())
    assert stale == [], f"{doc}: figures found in no results file its section names: {stale}"
