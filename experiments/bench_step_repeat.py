"""The whole-step comparison of experiments/bench_step.py repeated in fresh processes:
how much the step-time ratios move between processes on one machine.

Each run is `bench_step.py --no-parts` in its own subprocess (its own XLA client and
allocator), one after the other, once per host allocator setting in --mallocs (system:
the C library's defaults; tuned: freed memory stays mapped, what `recgoat train` runs
with, recgoat_jax/hostmem.py), alternating; the ratios of each run come from that run's
interleaved steps. Writes experiments/results/step_repeats_<platform>.json with every
run's step medians, minor page faults and ratios and, per allocator and ratio (and per
allocator and step), min / median / max over the runs.

    python experiments/bench_step_repeat.py --runs 3                       # Baby, d 800
    python experiments/bench_step_repeat.py --runs 3 -- --impls csr,segment,csr+bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    own, passed = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="fresh processes, one after another (3)")
    ap.add_argument("--mallocs", default="system,tuned",
                    help="bench_step.py --malloc settings, each run once per repeat "
                         "(system,tuned)")
    ap.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    ap.add_argument("--out", help="default experiments/results/step_repeats_<platform>.json")
    args = ap.parse_args(own)
    if any(a in ("--out", "--no-parts", "--malloc") or a.startswith(("--out=", "--malloc="))
           for a in passed):
        ap.error("bench_step arguments after -- may not set --out, --no-parts or --malloc")
    mallocs = [m for m in args.mallocs.split(",") if m]
    if not mallocs or not set(mallocs) <= {"system", "tuned"}:
        ap.error(f"--mallocs {args.mallocs!r}: expected a comma list of system, tuned")
    command = shlex.join(["python", "experiments/bench_step_repeat.py", *argv])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for malloc in mallocs:
                out = Path(tmp) / f"run{i}_{malloc}.json"
                cmd = [sys.executable, str(ROOT / "experiments" / "bench_step.py"), *passed,
                       "--no-parts", "--malloc", malloc, "--out", str(out)]
                print(f"[repeat] run {i + 1}/{args.runs} ({malloc}): {shlex.join(cmd[1:])}",
                      file=sys.stderr, flush=True)
                subprocess.run(cmd, check=True)
                res = json.loads(out.read_text())
                first = next(iter(res["steps"]))
                runs.append({
                    "malloc": malloc, "allocator": res["allocator"], "date": res["date"],
                    "loadavg_1_5_15_start": res["machine"]["loadavg_1_5_15_start"],
                    "matmul_peak_f32": res["matmul_peak"]["float32"]["flops_per_s"],
                    "steps": {k: {"step_s_median": v["step_s_median"],
                                  "step_s_min": v["step_s_min"], "times_s": v["times_s"],
                                  "minor_faults": v["minor_faults"]}
                              for k, v in res["steps"].items()},
                    "ratios": res[f"step_time_ratio_vs_{first}"],
                    "peak_rss_bytes": res["peak_rss_bytes"], "repeat": i})
                setup, versions = res["setup"], res["versions"]
                plat = res["machine"]["device_platform"]

    def spread(values):
        values = list(values)
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}
    summary = {m: {n: spread(r["ratios"][n] for r in runs if r["malloc"] == m)
                   for n in runs[0]["ratios"]} for m in mallocs}
    # across the allocator settings (separate processes, run back to back in one repeat):
    # each (allocator, step) against the tuned allocator's first step
    cross = {}
    if "tuned" in mallocs:
        first = next(iter(runs[0]["steps"]))
        for m in mallocs:
            for k in runs[0]["steps"]:
                cross[f"{k} ({m} malloc) / {first} (tuned malloc)"] = spread(
                    a["steps"][k]["step_s_median"] / b["steps"][first]["step_s_median"]
                    for a in runs if a["malloc"] == m
                    for b in runs if b["malloc"] == "tuned" and b["repeat"] == a["repeat"])
    step_summary = {m: {k: spread(r["steps"][k]["step_s_median"] for r in runs
                                  if r["malloc"] == m) for k in runs[0]["steps"]}
                    for m in mallocs}
    result = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "note": args.note,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "device_platform": plat},
              "versions": versions, "setup": setup, "runs": runs, "ratio_summary": summary,
              "step_s_summary": step_summary, "cross_allocator_ratios": cross,
              "definitions": {"ratios": "other step's median time / the first step's, "
                                        "within one run (bench_step.py)",
                              "ratio_summary": "per allocator, min / median / max of each "
                                               "ratio over runs",
                              "step_s_summary": "per allocator, min / median / max over runs "
                                                "of each step's median time (different "
                                                "processes: not a side-by-side ratio)",
                              "cross_allocator_ratios": "min / median / max over repeats of "
                                                        "a step's median time / the tuned "
                                                        "allocator's first step's, from the "
                                                        "two processes of one repeat",
                              "minor_faults": "getrusage minor page faults in each timed step"}}
    out = Path(args.out or ROOT / "experiments" / "results" / f"step_repeats_{plat}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for m in mallocs:
        for n, s in summary[m].items():
            print(f"[repeat] {m} malloc, {n}: min {s['min']:.2f}, median {s['median']:.2f}, "
                  f"max {s['max']:.2f} over {args.runs} runs", file=sys.stderr)
        for k, s in step_summary[m].items():
            print(f"[repeat] {m} malloc, {k} step: {s['min']:.3f} / {s['median']:.3f} / "
                  f"{s['max']:.3f} s (min / median / max)", file=sys.stderr)
    for n, c in cross.items():
        print(f"[repeat] {n}: {c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f} "
              "(min / median / max)", file=sys.stderr)
    print(f"[repeat] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
