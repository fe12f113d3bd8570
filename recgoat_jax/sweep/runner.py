"""A study's runs: tasks from its spec, finished runs reused, the rest handed to worker
processes, each run's record left in its run directory.

    sweep(study, "runs/realdata", jobs=2)   # trains what is missing; returns the lookup

Run directory <runs_dir>/<dataset>/<row>/p<point>_s<seed> (choose.run_key) holds
train()'s files; results.json marks it finished (its "groups": test metrics by user
activity, from the best checkpoint, which a study with groups keeps until the run is
done); failed.txt marks a diverged run, a result too. An interrupted run resumes from its
checkpoint. Two phases: what needs no choice (first
seed over every grid point; every seed of one-point rows), then the other seeds at each
row's chosen point and the ablations there, seed by seed.

Workers: `jobs` processes (one XLA client each) take tasks in order as they become free
(an O_EXCL claim file per task), so one long run does not hold back another worker's share.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from recgoat_jax.sweep.choose import chosen, run_key
from recgoat_jax.sweep.spec import Study

CHECKPOINT = "run.checkpoint"  # the best-valid parameters for the bucket metrics


def lookup_in(runs_dirs: list[Path | str]):
    """key -> results.json dict (+ "buckets": its test groups, or an older run's
    buckets.json) of the first runs dir holding the finished run, {"failed": why} for a
    diverged one, None if none has it."""
    dirs = [Path(d) for d in runs_dirs]

    def lookup(key: str) -> dict | None:
        for d in dirs:
            res, failed = d / key / "results.json", d / key / "failed.txt"
            if failed.is_file():
                return {"failed": failed.read_text().strip()}
            if res.is_file():
                out = json.loads(res.read_text())
                b = d / key / "buckets.json"
                out["buckets"] = ((out.get("groups") or {}).get("test")
                                  or (json.loads(b.read_text()) if b.is_file() else None))
                return out
        return None
    return lookup


def _task(study: Study, ds, row, point: int, seed, extra: list[str]) -> dict:
    parent = study.row(row.parent) if row.parent else row
    sets = [f"data.dataset={ds.builds[row.build]}", *(study.common if row.common else ()),
            *study.overrides(row, point)]
    sets += [] if seed is None else [f"train.seed={seed}"]
    keep = study.groups and row.common  # the best checkpoint, for the groups
    sets += [f"{CHECKPOINT}=true"] if keep else []
    return {"key": run_key(ds.name, row.name, point, seed), "row": row.name,
            "model": row.model, "config": row.config or parent.config,
            "overrides": sets + (list(extra) if row.common else []),  # extra: like common
            "drop_checkpoints": keep, "cost": row.cost}


def tasks(study: Study, lookup, phase: int, extra: list[str] = ()) -> list[dict]:
    """Phase 1: what needs no choice; phase 2: the rest at the chosen points (rows whose
    point is not chosen yet are left out). Seed-major (a partial sweep covers every row),
    costly rows first within a seed; finished runs left out."""
    out = []
    for ds in study.datasets:
        for row in study.rows:
            if row.build not in ds.builds:
                continue
            base = study.row(row.parent) if row.parent else row
            seeds, one = study.seeds_of(row), len(base.grid) == 1
            if phase == 1:
                pts = [(p, s) for s in seeds for p in range(len(base.grid))
                       if one or (s == seeds[0] and not row.parent)]
            else:
                i, _ = (None, None) if one else chosen(study, ds.name, row, lookup)
                pts = [] if i is None else [(i, s) for s in seeds
                                            if row.parent or s != seeds[0]]
            out += [(seeds.index(s), -row.cost, _task(study, ds, row, p, s, extra))
                    for p, s in pts]
    out.sort(key=lambda t: t[:2])
    return [t for *_, t in out if lookup(t["key"]) is None]


def sweep(study: Study, runs_dir: Path | str, jobs: int = 1, extra: list[str] = (),
          dry_run: bool = False, log=print):
    """Runs both phases (dry_run: lists what would run now, trains nothing); returns the
    lookup over runs_dir and the study's reuse dirs."""
    runs_dir = Path(runs_dir)
    lookup = lookup_in([runs_dir, *study.reuse])
    for phase in (1, 2):
        todo = tasks(study, lookup, phase, list(extra))
        for t in todo if dry_run else ():
            log(f"phase {phase}: {t['key']}  {t['config'] or t['model']}  "
                f"{' '.join(t['overrides'])}")
        if dry_run and phase == 2:
            log("phase 2 also runs the other seeds and ablations at points not chosen yet")
        if todo and not dry_run:
            log(f"phase {phase}: {len(todo)} runs over {jobs} worker(s) in {runs_dir}")
            if run_tasks(todo, jobs, runs_dir):
                log(f"phase {phase}: a run raised an error (traceback above); the report "
                    "lists it as missing, a rerun tries it again")
    return lookup


def run_tasks(todo: list[dict], jobs: int, runs_dir: Path) -> int:
    """Runs `todo` over `jobs` worker processes; when all have exited, the largest exit
    code (0: every run finished or diverged)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    spec = runs_dir / f"tasks-{os.getpid()}-{int(time.time() * 1000)}.json"
    spec.write_text(json.dumps(todo))
    cmd = [sys.executable, "-m", "recgoat_jax.sweep.runner", str(spec), str(runs_dir)]
    procs = [subprocess.Popen(cmd) for _ in range(max(1, jobs))]
    codes = [p.wait() for p in procs]
    spec.unlink(missing_ok=True)
    shutil.rmtree(spec.with_suffix(".claims"), ignore_errors=True)
    return max(codes)


def claim(spec: Path, index: int) -> bool:
    """True for the one worker that takes task `index` first."""
    d = spec.with_suffix(".claims")
    d.mkdir(exist_ok=True)
    try:
        (d / str(index)).open("x").close()
    except FileExistsError:
        return False
    return True


def config_of(task: dict):
    """The task's Config: its config file (a name in recgoat_jax/configs/ or a path;
    none: the shipped one `recgoat train` picks for the model and dataset)."""
    from recgoat_jax import config as config_lib

    path, sets = task["config"], list(task["overrides"])
    if path and not Path(path).is_file():
        path = config_lib.CONFIGS_DIR / path
    if path is None:
        data = next(o for o in sets if o.startswith("data.dataset="))
        path = config_lib.find_config(task["model"], data.partition("=")[2])
    if path is None:
        sets.insert(0, f"model.name={task['model']}")
    return config_lib.make_config(path, sets)


def run_one(task: dict, runs_dir: Path) -> None:
    """Trains one task unless it is done (resuming from its checkpoint)."""
    from recgoat_jax.train.loop import train

    run_dir = runs_dir / task["key"]
    if lookup_in([runs_dir])(task["key"]) is not None:
        return
    log = lambda s: print(f"[{task['key']}] {s}", flush=True)  # noqa: E731
    try:
        train(config_of(task), run_dir=run_dir, resume=(run_dir / "checkpoints").is_dir(),
              progress=False, log=log)
    except FloatingPointError as e:  # a diverged run is a result: record it, go on
        log(f"FAILED: {e}")
        (run_dir / "failed.txt").write_text(f"{e}\n")
        return
    if task["drop_checkpoints"]:  # results.json holds the groups: they have served
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def work(spec: Path, runs_dir: Path) -> int:
    """A worker: claims and runs tasks of `spec` until none is left; 1 if any errored."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(runs_dir / ".jax-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    errors = 0
    for index, task in enumerate(json.loads(spec.read_text())):
        if claim(spec, index):
            try:
                run_one(task, runs_dir)
            except Exception:  # report it, keep the other runs going
                traceback.print_exc()
                print(f"[{task['key']}] ERROR (traceback above)", flush=True)
                errors += 1
    return 1 if errors else 0


if __name__ == "__main__":
    from recgoat_jax import hostmem

    hostmem.reexec_tuned()  # the host allocator `recgoat train` runs with (once, first)
    ap = argparse.ArgumentParser(description="a sweep worker (started by run_tasks)")
    ap.add_argument("spec", type=Path)
    ap.add_argument("runs_dir", type=Path)
    a = ap.parse_args()
    sys.exit(work(a.spec, a.runs_dir))
