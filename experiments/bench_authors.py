"""Side by side with the authors' code (github.com/6lyc/RecGOAT): seconds per epoch, one
full evaluation and peak memory of their PyTorch + DGL release and of ours, on one pinned
CPU core, on the same data and the same stand-in features.

Nothing of their code is in this repository. --authors-repo is a checkout of theirs (a
work tree, or a bare git directory); this script

  1. copies its Python files and requirements.txt into a throw-away directory under
     --cache and applies the PATCHES below there (each a search/replace that must match
     exactly once; every edit is printed and stored in the JSON),
  2. builds a venv for it under --cache from their requirements.txt, as far as the
     package index serves the pins (a pin it does not serve: the newest served release
     below it; torch: the newest release the chosen dgl wheel ships its C++ libraries for,
     at most their pin), and checks that torch and dgl import,
  3. writes the dataset both sides read: the split given by --data (train.txt /
     valid.txt / test.txt, one line per user: user item item ...) and deterministic
     random stand-in features of MMRec's Baby shapes (text [items, 384], image
     [items, 4096]; timing only, no signal),
  4. alternates theirs / ours under `taskset -c --core` (one thread each: torch
     set_num_threads(1), OMP/MKL 1; XLA without its multi-threaded Eigen and one intra-op
     thread), for each --dims, --rounds times: --epochs epochs each, then (in the first
     --eval-rounds rounds) one full evaluation,
  5. writes --out (experiments/results/authors_side_by_side.json): per-epoch times and
     medians, evaluation times, setup, peak RSS of each process, their commit, both sides'
     versions, the patches, the pins, the load average around every timed run, the command.

Their side runs main.py's sequence (parse_args, Config, set_seed, dataset_factory,
model_factory, Loss, Procedure.train_v2 per epoch, Procedure.Test) from a driver this
script writes beside their files, with their README's Baby command line (3 LightGCN
layers, batch 4096, item kNN 20, 1 GAT layer, OAT fusion, contrastive weight 0.032, lr
8e-4) at --recdim d, --cuda 0. Their main.py never calls model.eval(): their Test runs in
training mode, as released. Their Test ranks the test users only.

Our side is `python -m recgoat_jax train` with recgoat_jax/configs/recgoat_baby.yaml (the
same published settings) and the released code's variants: model.oat=reference,
model.cmcl=reference, train.exclude_train_negatives=false (negatives from all items, as
their sampler draws them), model.dim=d, an evaluation after every epoch (train.eval_every
1; the epoch time excludes it) and no checkpoints. Our evaluation ranks valid AND test
users (two splits to their one). Compile time and the first evaluation (which compiles
it) are reported apart from the epochs.

    python -m experiments.bench_authors --authors-repo /path/to/RecGOAT --data /path/to/baby
    python -m experiments.bench_authors --authors-repo R --data D --smoke     # 1 epoch, d 64
    make bench-authors ARGS="--authors-repo R --data D"

--wait-quiet MIN: before timing, wait up to MIN minutes for the 1-minute load average to
drop below --quiet-load (checked every minute); the JSON says loaded_machine true when any
timed run started or ended above it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments.bench_authors_env import FEATURE_DIMS, build_env, copy_theirs, log, \
    write_data
from recgoat_jax import provenance

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- runs
def pinned(core: int) -> tuple[list[str], dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                          " intra_op_parallelism_threads=1").strip())
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []), env


def run_child(cmd: list[str], env: dict, cwd: Path, log_path: Path, timeout: float) -> dict:
    """Runs cmd; {'rc', 'wall_s', 'maxrss_bytes' (this child and its descendants),
    'load_start', 'load_end'}; stdout + stderr to log_path."""
    load_start = os.getloadavg()
    t = time.perf_counter()
    with log_path.open("w") as out:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.5)
        p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": time.perf_counter() - t,
            "maxrss_bytes": ru.ru_maxrss * 1024, "load_start": load_start,
            "load_end": os.getloadavg()}


def run_theirs(args, env_info, work: Path, data: dict, dim: int, epochs: int, evaluate: bool,
               tag: str) -> dict:
    prefix, env = pinned(args.core)
    env.update(RECGOAT_BENCH_DATA_DIR=data["dir"], BENCH_EVAL="1" if evaluate else "0",
               BENCH_THREADS="1")
    flags = ["--dataset", "baby", "--model", "lgn_mm", "--use_multimodal", "1",
             "--text_feat", str(Path(data["dir"]) / "text_feat.npy"),
             "--image_feat", str(Path(data["dir"]) / "image_feat.npy"),
             "--item_knn_k", "20", "--item_branch_layers", "1", "--epochs", str(epochs),
             "--recdim", str(dim), "--layer", "3", "--lr", "8e-4", "--bpr_batch", "4096",
             "--topks", "[10]", "--fusion", "oat", "--contrastive_weight", "0.032",
             "--cuda", "0"]
    cmd = [*prefix, env_info["venv"] + "/bin/python", "-u", "_bench_driver.py", *flags]
    logf = Path(args.cache) / "logs" / f"theirs_{tag}.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    log(f"theirs d {dim} ({tag}): {epochs} epoch(s){' + evaluation' if evaluate else ''} ...")
    res = run_child(cmd, env, work, logf, args.timeout)
    rows = [json.loads(line[6:]) for line in logf.read_text().splitlines()
            if line.startswith("BENCH ")]
    out = {"side": "theirs", "dim": dim, "tag": tag, **res, "log": str(logf),
           "command": shlex.join(cmd), "epoch_s": [r["seconds"] for r in rows
                                                    if r["event"] == "epoch"],
           "eval_s": next((r["seconds"] for r in rows if r["event"] == "eval"), None),
           "setup_s": next((r["seconds"] for r in rows if r["event"] == "setup"), None),
           "facts": next((r for r in rows if r["event"] == "setup"), {}),
           "eval_metrics": next(({k: v for k, v in r.items() if k in ("recall", "ndcg")}
                                 for r in rows if r["event"] == "eval"), None)}
    if res["rc"]:
        out["error_tail"] = logf.read_text()[-3000:]
        log(f"theirs d {dim} ({tag}) FAILED rc {res['rc']}: see {logf}")
    else:
        log(f"theirs d {dim} ({tag}): epochs {fmt(out['epoch_s'])} s, evaluation "
            f"{fmt([out['eval_s']] if out['eval_s'] else [])} s, peak RSS "
            f"{res['maxrss_bytes'] / 2**30:.2f} GiB, load {res['load_start'][0]:.1f}"
            f"->{res['load_end'][0]:.1f}")
    return out


def run_ours(args, data: dict, dim: int, epochs: int, tag: str) -> dict:
    prefix, env = pinned(args.core)
    run_dir = Path(args.cache) / "runs" / f"ours_{tag}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    sets = ["model.oat=reference", "model.cmcl=reference",
            "train.exclude_train_negatives=false", f"model.dim={dim}",
            f"train.epochs={epochs}", "train.eval_every=1", "run.checkpoint=false"]
    cmd = [*prefix, sys.executable, "-m", "recgoat_jax", "train",
           "--config", str(args.ours_config),
           "--dataset", data["dir"], "--root", str(Path(args.cache) / "root"),
           "--run-dir", str(run_dir), "--no-tensorboard", "--no-progress",
           *[x for s in sets for x in ("--set", s)]]
    logf = Path(args.cache) / "logs" / f"ours_{tag}.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log(f"ours d {dim} ({tag}): {epochs} epoch(s) + an evaluation after each ...")
    res = run_child(cmd, env, ROOT, logf, args.timeout)
    out = {"side": "ours", "dim": dim, "tag": tag, **res, "log": str(logf),
           "command": shlex.join(cmd), "commit": our_commit()}
    if res["rc"]:
        out["error_tail"] = logf.read_text()[-3000:]
        log(f"ours d {dim} ({tag}) FAILED rc {res['rc']}: see {logf}")
        return out
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    results = json.loads((run_dir / "results.json").read_text())
    out.update({
        "epoch_s": [r["epoch_time_s"] for r in rows],
        "eval_s_all": [r["eval_time_s"] for r in rows],
        "eval_s": median([r["eval_time_s"] for r in rows]),
        "compile_s": results.get("compile_time_s"),
        "first_eval_s_with_compile": results.get("eval_compile_time_s"),
        # interpreter start, data, kNN graphs, init: the run's wall time less the rest
        "setup_s": res["wall_s"] - sum(r["epoch_time_s"] + r["eval_time_s"] for r in rows)
                   - (results.get("compile_time_s") or 0)
                   - (results.get("eval_compile_time_s") or 0),
        "versions": results.get("versions"),
        "n_params": results.get("n_params"),
        "eval_metrics": {"test": results.get("test")}})
    log(f"ours d {dim} ({tag}): epochs {fmt(out['epoch_s'])} s, evaluation "
        f"{out['eval_s']:.2f} s (first, compiling: {out['first_eval_s_with_compile']:.1f} s), "
        f"step compile {out['compile_s']:.1f} s, peak RSS {res['maxrss_bytes'] / 2**30:.2f} "
        f"GiB, load {res['load_start'][0]:.1f}->{res['load_end'][0]:.1f}")
    return out


def our_commit() -> str:
    """This checkout's HEAD, '+dirty' when tracked files differ from it (other work may
    land between runs)."""
    c = provenance.commit()
    return f"{c['commit']}{'+dirty' if c['dirty'] else ''}"


def redact(argv: list[str]) -> list[str]:
    """argv with the two outside paths as placeholders (the results name neither: the
    split is identified by its files' sha256, their code by its commit)."""
    out, hide = [], {"--authors-repo": "AUTHORS_REPO", "--data": "BABY_SPLIT_DIR"}
    for i, a in enumerate(argv):
        flag, eq, _ = a.partition("=")
        if eq and flag in hide:
            out.append(f"{flag}={hide[flag]}")
        elif i and argv[i - 1] in hide:
            out.append(hide[argv[i - 1]])
        else:
            out.append(a)
    return out


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def fmt(xs) -> str:
    return ", ".join(f"{x:.2f}" for x in xs) or "-"


def wait_quiet(minutes: float, threshold: float) -> dict:
    t0 = time.monotonic()
    seen = [os.getloadavg()[0]]
    while seen[-1] >= threshold and time.monotonic() - t0 < minutes * 60:
        log(f"1-minute load {seen[-1]:.2f} >= {threshold}: waiting (up to {minutes:g} min)")
        time.sleep(60)
        seen.append(os.getloadavg()[0])
    return {"waited_s": time.monotonic() - t0, "loads_seen": seen,
            "quiet": seen[-1] < threshold}


def summarize(runs: list[dict], dims: list[int]) -> dict:
    out = {}
    for d in dims:
        row = {}
        for side in ("theirs", "ours"):
            rs = [r for r in runs if r["side"] == side and r["dim"] == d and not r["rc"]]
            epochs = [x for r in rs for x in r.get("epoch_s", [])]
            evals = [r["eval_s"] for r in rs if r.get("eval_s") is not None]
            row[side] = {"epoch_s_median": median(epochs), "epoch_s_all": epochs,
                         "epoch_s_min": min(epochs) if epochs else None,
                         "epoch_s_max": max(epochs) if epochs else None,
                         "eval_s_median": median(evals), "eval_s_all": evals,
                         "peak_rss_bytes_max": max((r["maxrss_bytes"] for r in rs), default=None),
                         "runs": len(rs)}
        t, o = row["theirs"], row["ours"]
        row["epoch_ratio_theirs_over_ours"] = (t["epoch_s_median"] / o["epoch_s_median"]
                                               if t["epoch_s_median"] and o["epoch_s_median"]
                                               else None)
        row["eval_ratio_theirs_over_ours"] = (t["eval_s_median"] / o["eval_s_median"]
                                              if t["eval_s_median"] and o["eval_s_median"]
                                              else None)
        row["goal_epoch_4x_met"] = (row["epoch_ratio_theirs_over_ours"] or 0) >= 4
        row["goal_eval_50x_met"] = (row["eval_ratio_theirs_over_ours"] or 0) >= 50
        out[str(d)] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors-repo", required=True, type=Path,
                    help="a checkout of github.com/6lyc/RecGOAT (work tree or bare git dir)")
    ap.add_argument("--data", required=True, type=Path,
                    help="directory with train.txt / valid.txt / test.txt (Amazon Baby split)")
    ap.add_argument("--dims", default="64,200", help="embedding sizes (64,200)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per run (3)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="theirs / ours alternations per dim (2)")
    ap.add_argument("--eval-rounds", type=int, default=1,
                    help="rounds whose runs end with a full evaluation of theirs (1; ours "
                         "evaluates after every epoch at ~1%% of its time)")
    ap.add_argument("--core", type=int, default=0, help="the CPU core both sides run on (0)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "authors-bench",
                    help="their venv, the patched copy, data, logs (.cache/authors-bench)")
    ap.add_argument("--python", default=getattr(sys, "_base_executable", sys.executable),
                    help="interpreter for their venv (this one's base interpreter)")
    ap.add_argument("--rebuild-env", action="store_true", help="rebuild their venv")
    ap.add_argument("--seed", type=int, default=0, help="stand-in feature seed (0)")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per run (7200)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="MIN",
                    help="wait up to MIN minutes for a quiet machine before timing (0)")
    ap.add_argument("--quiet-load", type=float, default=2.5,
                    help="1-minute load average counted as quiet (2.5)")
    ap.add_argument("--smoke", action="store_true",
                    help="one round, one epoch, d 64: checks both sides run (writes "
                         "authors_side_by_side_smoke.json unless --out)")
    ap.add_argument("--note", default="", help="free text stored in the JSON")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.smoke:
        args.dims, args.epochs, args.rounds, args.eval_rounds = "64", 1, 1, 1
    dims = [int(x) for x in args.dims.split(",") if x]
    out = args.out or ROOT / "experiments" / "results" / (
        "authors_side_by_side_smoke.json" if args.smoke else "authors_side_by_side.json")
    command = provenance.command(["-m", "experiments.bench_authors",
                                  *redact(sys.argv[1:] if argv is None else argv)])
    t0 = time.perf_counter()
    cache = args.cache.resolve()
    args.cache = cache

    work = cache / "authors-copy"
    theirs = copy_theirs(args.authors_repo.resolve(), work)
    log(f"their code: commit {theirs['commit']}, copied to {work}")
    for p in theirs["patches"]:
        log(f"  patch {p['file']}: {p['why']}\n    - {p['search']!r}\n    + {p['replace']!r}")
    log(f"  added {work / '_bench_driver.py'} (main.py's sequence with timers)")
    env_info = build_env(cache / "env", work / "requirements.txt", args.python, args.rebuild_env)
    for name, why in env_info["why"].items():
        log(f"  {name}: their pin {env_info['authors_pins'][name]} -> "
            f"{env_info['chosen'][name]} ({why})")
    data = write_data(args.data.resolve(), cache / "data" / "baby", args.seed)
    log(f"data: {data['users']} users, {data['items']} items, {data['train_interactions']} "
        f"train interactions; stand-in features {FEATURE_DIMS}")
    # our config, copied once: the runs read this copy whatever happens to the checkout
    src = ROOT / "recgoat_jax" / "configs" / "recgoat_baby.yaml"
    args.ours_config = cache / "ours_recgoat_baby.yaml"
    shutil.copyfile(src, args.ours_config)
    quiet = wait_quiet(args.wait_quiet, args.quiet_load) if args.wait_quiet else None

    runs = []
    for r in range(args.rounds):
        for d in dims:
            tag = f"d{d}_r{r}"
            runs.append(run_theirs(args, env_info, work, data, d, args.epochs,
                                   r < args.eval_rounds, tag))
            runs.append(run_ours(args, data, d, args.epochs, tag))
    summary = summarize(runs, dims)
    loads = [x for r in runs for x in (r["load_start"][0], r["load_end"][0])]
    head = provenance.header(command, args.note, with_versions=False)  # ours: in "ours"
    head["machine"]["core"] = args.core
    result = {
        **head,
        "smoke": args.smoke,
        "loaded_machine": max(loads) >= args.quiet_load,
        "quiet_load_threshold": args.quiet_load,
        "loadavg_1min_during_runs": {"min": min(loads), "max": max(loads)},
        "wait_quiet": quiet,
        "authors": {"repository": "github.com/6lyc/RecGOAT", **theirs,
                    "environment": {k: env_info[k] for k in
                                    ("python", "authors_pins", "chosen", "why", "installed",
                                     "pip_freeze")}},
        "ours": {"config": "recgoat_jax/configs/recgoat_baby.yaml (copied at the start)",
                 "config_text": args.ours_config.read_text(),
                 "overrides": ["model.oat=reference", "model.cmcl=reference",
                               "train.exclude_train_negatives=false", "model.dim=<d>"],
                 "versions": next((r.get("versions") for r in runs if r.get("versions")), None)},
        "data": data,
        "settings": {"dims": dims, "epochs_per_run": args.epochs, "rounds": args.rounds,
                     "eval_rounds": args.eval_rounds,
                     "published_baby": "3 LightGCN layers, batch 4096, item kNN 20, 1 GAT "
                                       "layer (8 heads), OAT fusion, contrastive weight "
                                       "0.032, lr 8e-4; negatives from all items",
                     "threads": "taskset -c <core>; theirs torch.set_num_threads(1), "
                                "OMP/MKL/OPENBLAS 1; ours XLA_FLAGS "
                                "--xla_cpu_multi_thread_eigen=false "
                                "intra_op_parallelism_threads=1"},
        "summary": summary,
        "runs": runs,
        "definitions": {
            "epoch_s": "wall seconds of one training epoch (theirs: Procedure.train_v2, "
                       "sampling included; ours: the epoch loop's timer, the next epoch's "
                       "sampling overlapping in a thread on the same core, evaluation "
                       "excluded)",
            "eval_s": "one full-ranking evaluation: theirs Procedure.Test over the test "
                      "users (embeddings recomputed per batch of 100 users, as released); "
                      "ours valid + test users (Trainer.evaluate), median over its "
                      "per-epoch evaluations, compile excluded (first_eval_s_with_compile)",
            "maxrss_bytes": "peak resident set of the run's process tree (wait4 rusage)",
            "epoch_ratio_theirs_over_ours": "theirs' median epoch / ours'",
            "eval_ratio_theirs_over_ours": "theirs' median evaluation / ours'",
            "loaded_machine": "true when the 1-minute load average at the start or end of "
                              "any timed run was at or above quiet_load_threshold: the "
                              "times then include other processes' competition",
        },
        "total_wall_s": time.perf_counter() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for d, row in summary.items():
        t, o = row["theirs"], row["ours"]
        log(f"d {d}: s/epoch theirs {t['epoch_s_median']} ours {o['epoch_s_median']} -> "
            f"{row['epoch_ratio_theirs_over_ours']}; evaluation theirs {t['eval_s_median']} "
            f"ours {o['eval_s_median']} -> {row['eval_ratio_theirs_over_ours']}")
    log(f"wrote {out}{' (LOADED MACHINE)' if result['loaded_machine'] else ''}")
    return 0 if all(not r["rc"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
