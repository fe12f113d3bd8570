"""`recgoat train` under both host allocator settings, back to back: epoch time, peak RSS,
and that the trained numbers do not change.

Runs `python -m recgoat_jax train` with RECGOAT_MALLOC=system (the C library's
defaults) and with the default (tuned: freed memory stays mapped, recgoat_jax/hostmem.py),
alternating, --repeats times, each a fresh process for a fixed number of epochs (no early
stop, no checkpoints). Per run: the trainer's median epoch time and wall time
(results.json), the process's peak RSS (wait4) and minor page faults, and the test
metrics, which must be identical between the two settings (same seed, same program; the
allocator only changes where buffers live).

    python experiments/bench_malloc_train.py --data data/ml100k-dev \\
        --config recgoat_jax/configs/recgoat.yaml --set model.dim=800 --epochs 5

Results: experiments/results/malloc_train_<dataset>.json (machine, versions, command).
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
sys.path.insert(0, str(ROOT))
SETTINGS = ("system", "tuned")


def train_once(cmd: list[str], malloc: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["RECGOAT_MALLOC"] = malloc
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: training under RECGOAT_MALLOC={malloc} failed: "
                         f"{shlex.join(cmd)}")
    return {"peak_rss_bytes": usage.ru_maxrss * 1024, "minor_faults": usage.ru_minflt,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset directory (MMRec layout)")
    ap.add_argument("--config", default="recgoat_jax/configs/recgoat.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override passed to train (repeatable)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per run, no early stop (5)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting (2)")
    ap.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    ap.add_argument("--out", help="default experiments/results/malloc_train_<dataset>.json")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "experiments/bench_malloc_train.py",
                          *(sys.argv[1:] if argv is None else argv)])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for malloc in SETTINGS:
                run_dir = Path(tmp) / f"{malloc}{i}"
                cmd = [sys.executable, "-m", "recgoat_jax", "train", "--config", args.config,
                       "--dataset", args.data, "--seed", "0", "--run-dir", str(run_dir),
                       "--no-tensorboard", "-q",
                       "--set", f"train.epochs={args.epochs}",
                       "--set", f"train.min_epochs={args.epochs}",
                       "--set", "train.checkpoint=false",
                       *[x for s in args.set for x in ("--set", s)]]
                print(f"[malloc] repeat {i + 1}/{args.repeats}, {malloc}", file=sys.stderr,
                      flush=True)
                usage = train_once(cmd, malloc)
                res = json.loads((run_dir / "results.json").read_text())
                runs.append({"malloc": malloc, "repeat": i, **usage,
                             "host_malloc_recorded": res["versions"].get("host_malloc"),
                             "epoch_time_s_median": res["epoch_time_s_median"],
                             "wall_time_s": res["wall_time_s"], "test": res["test"],
                             "epochs_run": res["epochs_run"]})
                print(f"[malloc]   epoch {res['epoch_time_s_median']:.2f} s, peak RSS "
                      f"{usage['peak_rss_bytes'] / 2**30:.2f} GiB, "
                      f"{usage['minor_faults'] / 1e6:.2f}M minor faults", file=sys.stderr)
    by = {m: [r for r in runs if r["malloc"] == m] for m in SETTINGS}
    identical = all(r["test"] == runs[0]["test"] for r in runs)
    summary = {m: {"epoch_time_s_median": statistics.median(r["epoch_time_s_median"] for r in rs),
                   "peak_rss_bytes_max": max(r["peak_rss_bytes"] for r in rs),
                   "minor_faults_median": statistics.median(r["minor_faults"] for r in rs)}
               for m, rs in by.items()}
    speedup = summary["system"]["epoch_time_s_median"] / summary["tuned"]["epoch_time_s_median"]
    from recgoat_jax.train.loop import versions  # after the runs: imports jax
    result = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "note": args.note,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
              "versions": versions(), "dataset": args.data, "config": args.config,
              "overrides": args.set, "epochs": args.epochs, "runs": runs,
              "summary": summary, "epoch_time_ratio_system_over_tuned": speedup,
              "test_metrics_identical": identical,
              "definitions": {"epoch_time_s_median": "the trainer's median epoch time "
                                                     "(results.json)",
                              "peak_rss_bytes": "wait4 ru_maxrss of the training process",
                              "minor_faults": "wait4 ru_minflt of the whole process"}}
    name = Path(args.data).name
    out = Path(args.out or ROOT / "experiments" / "results" / f"malloc_train_{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for m, s in summary.items():
        print(f"[malloc] {m}: epoch {s['epoch_time_s_median']:.2f} s, peak RSS "
              f"{s['peak_rss_bytes_max'] / 2**30:.2f} GiB", file=sys.stderr)
    print(f"[malloc] epoch time system / tuned: {speedup:.2f}x; test metrics identical: "
          f"{identical}; wrote {out}", file=sys.stderr)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
