"""The whole-step comparison of experiments/bench_step.py repeated in fresh processes:
how much the step-time ratios move between processes on one machine.

Each run is `bench_step.py --no-parts` in its own subprocess (its own XLA client and
allocator), one after the other; the ratios of each run come from that run's interleaved
steps. Writes experiments/results/step_repeats_<platform>.json with every run's step
medians and ratios and, per ratio, min / median / max over the runs.

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
    ap.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    ap.add_argument("--out", help="default experiments/results/step_repeats_<platform>.json")
    args = ap.parse_args(own)
    if any(a in ("--out", "--no-parts") or a.startswith("--out=") for a in passed):
        ap.error("bench_step arguments after -- may not set --out or --no-parts")
    command = shlex.join(["python", "experiments/bench_step_repeat.py", *argv])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, str(ROOT / "experiments" / "bench_step.py"), *passed,
                   "--no-parts", "--out", str(out)]
            print(f"[repeat] run {i + 1}/{args.runs}: {shlex.join(cmd[1:])}", file=sys.stderr,
                  flush=True)
            subprocess.run(cmd, check=True)
            res = json.loads(out.read_text())
            first = next(iter(res["steps"]))
            runs.append({
                "date": res["date"], "loadavg_1_5_15_start": res["machine"]["loadavg_1_5_15_start"],
                "matmul_peak_f32": res["matmul_peak"]["float32"]["flops_per_s"],
                "steps": {k: {"step_s_median": v["step_s_median"], "step_s_min": v["step_s_min"],
                              "times_s": v["times_s"]} for k, v in res["steps"].items()},
                "ratios": res[f"step_time_ratio_vs_{first}"]})
            setup, versions, plat = res["setup"], res["versions"], res["machine"]["device_platform"]
    names = list(runs[0]["ratios"])
    summary = {n: {"min": min(r["ratios"][n] for r in runs),
                   "median": statistics.median(r["ratios"][n] for r in runs),
                   "max": max(r["ratios"][n] for r in runs)} for n in names}
    result = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "note": args.note,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "device_platform": plat},
              "versions": versions, "setup": setup, "runs": runs, "ratio_summary": summary,
              "definitions": {"ratios": "other step's median time / the first step's, "
                                        "within one run (bench_step.py)",
                              "ratio_summary": "min / median / max of each ratio over runs"}}
    out = Path(args.out or ROOT / "experiments" / "results" / f"step_repeats_{plat}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for n, s in summary.items():
        print(f"[repeat] {n}: min {s['min']:.2f}, median {s['median']:.2f}, max {s['max']:.2f} "
              f"over {len(runs)} runs", file=sys.stderr)
    print(f"[repeat] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
