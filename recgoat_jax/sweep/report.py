"""A study's report: one JSON (header, the study as run, the summary) and its Markdown.

    write(Path("experiments/results/realdata.json"), study, summary, header)
      -> realdata.json and realdata.md; summary: choose.summarise's {dataset: {row: ...}}
"""

from __future__ import annotations

import json
from pathlib import Path

from recgoat_jax.sweep.spec import Study


def study_record(study: Study) -> dict:
    """The study as data, for the JSON (what ran, without the code that ran it)."""
    return {"name": study.name, "title": study.title, "protocol": study.protocol,
            "seeds": list(study.seeds), "choose_on": f"valid {study.choose_on}",
            "common": list(study.common), "groups": study.groups,
            "datasets": {d.name: dict(d.builds) for d in study.datasets},
            "rows": {r.name: {"what": r.what, "model": r.model, "config": r.config,
                              "fixed": list(r.fixed), "grid": [list(p) for p in r.grid],
                              "parent": r.parent, "build": r.build,
                              "seeds": None if r.seeds is None else list(r.seeds)}
                     for r in study.rows}}


def _name(metric: str) -> str:
    return metric.replace("recall", "Recall").replace("ndcg", "NDCG")


def cell(ms: dict | None) -> str:
    """mean +- std (one value: no spread to show)."""
    if not ms:
        return ""
    one = len(ms.get("values", ())) == 1
    return f"{ms['mean']:.4f}" + ("" if one else f" +- {ms['std']:.4f}")


def _table(study: Study, rows: dict) -> list[str]:
    v = f"valid_{study.choose_on}"
    cols = ["row", "chosen point", "seeds", f"valid {_name(study.choose_on)}",
            *[f"test {_name(m)}" for m in study.metrics], "best epochs", "s/epoch"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in rows.items():
        secs, best = r.get("s_per_epoch"), r.get("best_epochs")
        best = "fitted" if best and set(best) == {None} else str(best or "")  # no epochs
        out.append("| " + " | ".join([
            name, ", ".join(r["overrides"]) or "(config's)", str(r["n_seeds"]), cell(r.get(v)),
            *[cell(r.get(f"test_{m}")) for m in study.metrics],
            best, "" if secs is None else f"{secs:.2f}"]) + " |")
    return out


def _buckets(study: Study, rows: dict) -> list[str]:
    labels = next((list(r["buckets"]) for r in rows.values() if r.get("buckets")), [])
    if not labels:
        return []
    m = study.metrics[0]
    out = ["", f"Test {_name(m)} by user activity (train items per user), mean over seeds:",
           "", "| row | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, r in rows.items():
        b = r.get("buckets") or {}
        out.append(f"| {name} | " + " | ".join(
            f"{b[k][m]:.4f}" if m in b.get(k, {}) else "" for k in labels) + " |")
    return out


def _grids(study: Study, rows: dict) -> list[str]:
    out = []
    for name, r in rows.items():
        if isinstance(r["grid"], list) and len(r["grid"]) > 1:
            pts = "; ".join(f"{','.join(g['overrides'])}: " + (
                "FAILED" if g["failed"] else "MISSING" if g["valid"] is None
                else f"{g['valid']:.4f}") for g in r["grid"])
            out.append(f"- {name}: {pts}")
        out += [f"- FAILED {name} seed {s}: {f[:200]}" for s, f in r["failed"].items()]
    if out:
        out[:0] = ["", f"Grid points (first seed, valid {_name(study.choose_on)}), failures:", ""]
    return out


def markdown(study: Study, summary: dict, header: dict, note: str = "") -> str:
    v = header.get("versions", {})
    lines = [f"# {study.title}", "", f"Command: `{header['command']}`  ",
             *[f"Also: `{c}`  " for c in header.get("extra_commands", [])],
             f"Commit: {header.get('commit')}{' (dirty)' if header.get('dirty') else ''}; "
             f"machine: {v.get('platform', header['machine']['platform'])}, "
             f"{v.get('device', '')}; {header['date']}", ""]
    lines += [study.protocol, ""] if study.protocol else []
    lines += [f"Grid points chosen on valid {_name(study.choose_on)} at the first seed; test "
              "metrics at the best valid epoch, mean +- std over seeds.", ""]
    for ds, rows in summary.items():
        lines += [f"## {ds}", "", *_table(study, rows)]
        extra = study.notes(ds, rows) if study.notes else []
        lines += ["", *extra] if extra else []
        lines += _buckets(study, rows) + _grids(study, rows) + [""]
    if note:
        lines += [note]
    return "\n".join(lines) + "\n"


def write(out: Path, study: Study, summary: dict, header: dict, note: str = "",
          **extra) -> dict:
    """Writes out (.json) and its .md; returns the JSON's dict."""
    report = {**header, "study": study_record(study), "summary": summary, "note": note,
              **extra}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(study, summary, header, note))
    return report
