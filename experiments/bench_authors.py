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

    python experiments/bench_authors.py --authors-repo /path/to/RecGOAT --data /path/to/baby
    python experiments/bench_authors.py --authors-repo R --data D --smoke     # 1 epoch, d 64
    make bench-authors ARGS="--authors-repo R --data D"

--wait-quiet MIN: before timing, wait up to MIN minutes for the 1-minute load average to
drop below --quiet-load (checked every minute); the JSON says loaded_machine true when any
timed run started or ended above it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEATURE_DIMS = {"text": 384, "image": 4096}  # MMRec's Baby features
BABY_ITEMS = 7050

# Edits to the throw-away copy of their code, each (file, search, replace, why). The only
# one: the dataset directory, hard-wired to ../RecGOAT_SIGIR2026_Submission/data/<name>
# in world.py, is read from the environment. Running on the CPU needs no edit: their own
# flag --cuda 0 (and a machine without CUDA) selects torch.device('cpu').
PATCHES = [
    ("world.py",
     "def dataset_path(dataset: str):\n",
     "def dataset_path(dataset: str):\n"
     "    return os.environ['RECGOAT_BENCH_DATA_DIR']  # bench_authors.py: the benchmark's data\n",
     "dataset directory: hard-wired to ../RecGOAT_SIGIR2026_Submission/data/<dataset>; "
     "read from RECGOAT_BENCH_DATA_DIR instead"),
]

# Their files the benchmark copies (the rest of their repository is not needed).
THEIR_FILES = ("main.py", "Procedure.py", "dataloader.py", "model_v1.py", "parse.py",
               "register.py", "utils.py", "world.py", "requirements.txt")

# Written beside their files: main.py's sequence with timers (not their code).
DRIVER = r'''"""bench_authors.py's driver: main.py's sequence, timed (written by the benchmark)."""
import json, os, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
torch.set_num_interop_threads(1)
import dgl
from parse import parse_args
import world
from register import dataset_factory, model_factory
from utils import Loss
import Procedure


def emit(**row):
    row["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("BENCH " + json.dumps(row), flush=True)


args = parse_args()
world.config = world.Config(args)
world.set_seed(world.config.seed)
dataset = dataset_factory()
Recmodel = model_factory(dataset)
loss = Loss(world.config, Recmodel)
emit(event="setup", seconds=time.perf_counter() - t0, torch=torch.__version__,
     dgl=dgl.__version__, threads=torch.get_num_threads(), device=str(world.config.dev),
     n_users=dataset.n_users, n_items=dataset.m_items, train=dataset.trainDataSize,
     n_params=sum(p.numel() for p in Recmodel.parameters()))
epoch = -1
for epoch in range(world.config.epochs):
    t = time.perf_counter()
    info = Procedure.train_v2(dataset, Recmodel, loss, epoch)
    emit(event="epoch", epoch=epoch, seconds=time.perf_counter() - t, info=info)
if os.environ.get("BENCH_EVAL", "1") == "1":
    t = time.perf_counter()
    res = Procedure.Test(dataset, Recmodel, epoch, multicore=0)
    emit(event="eval", seconds=time.perf_counter() - t, users=len(dataset.testDict),
         **{k: [float(x) for x in v] for k, v in res.items()})
emit(event="done", seconds=time.perf_counter() - t0)
'''


def log(*a):
    print("[bench_authors]", *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- their code
def git_dir(repo: Path) -> Path | None:
    """The git directory of a work tree or a bare repository (None: a plain directory)."""
    for cand in (repo / ".git", repo):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def copy_theirs(repo: Path, dest: Path) -> dict:
    """Their files into dest (fresh), patched; {'commit', 'source', 'patches'}."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    gd = git_dir(repo)
    commit = None
    if gd is not None:
        commit = subprocess.run(["git", "--git-dir", str(gd), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    for name in THEIR_FILES:
        if (repo / name).is_file() and gd != repo:  # a work tree: its files as they are
            shutil.copy2(repo / name, dest / name)
        elif gd is not None:  # a bare repository: the file at HEAD
            blob = subprocess.run(["git", "--git-dir", str(gd), "show", f"HEAD:{name}"],
                                  capture_output=True, check=True).stdout
            (dest / name).write_bytes(blob)
        else:
            raise SystemExit(f"--authors-repo {repo}: no {name} (expected a checkout of "
                             "github.com/6lyc/RecGOAT)")
    applied = []
    for fname, search, replace, why in PATCHES:
        path = dest / fname
        text = path.read_text()
        n = text.count(search)
        if n != 1:
            raise SystemExit(f"patch of {fname} ({why}): the search text occurs {n} times, "
                             "expected once: their code changed; update PATCHES")
        path.write_text(text.replace(search, replace))
        applied.append({"file": fname, "search": search, "replace": replace, "why": why})
    (dest / "_bench_driver.py").write_text(DRIVER)
    return {"commit": commit, "source": "--authors-repo", "patches": applied,
            "added_files": {"_bench_driver.py": "the benchmark's driver (main.py's sequence "
                                                "with timers; written by bench_authors.py)"}}


# ----------------------------------------------------------------------------- their env
def parse_pins(req: Path) -> dict:
    pins = {}
    for line in req.read_text().splitlines():
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==\s*([^\s;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def vkey(v: str):
    """A sortable key of a release number ('2.2.1' -> (2, 2, 1); local part dropped)."""
    return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.]", v.split("+")[0]))


def served_versions(py: str, name: str) -> list[str]:
    out = subprocess.run([py, "-m", "pip", "index", "versions", name],
                         capture_output=True, text=True).stdout
    m = re.search(r"Available versions:\s*(.*)", out)
    return [v.strip() for v in m.group(1).split(",")] if m else []


def dgl_torch_builds(py: str, version: str, tmp: Path) -> list[str]:
    """The torch versions a dgl wheel ships its C++ graphbolt library for."""
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run([py, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp),
                    f"dgl=={version}"], check=True)
    whl = next(tmp.glob(f"dgl-{version}-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    return sorted({m.group(1) for n in names
                   if (m := re.search(r"libgraphbolt_pytorch_([0-9.]+)\.so$", n))}, key=vkey)


IMPORT_CHECK = ("import json, platform, torch, dgl, numpy, scipy; "
                "g = dgl.graph(([0, 1], [1, 2])); print(json.dumps({'python': "
                "platform.python_version(), 'torch': torch.__version__, 'dgl': "
                "dgl.__version__, 'numpy': numpy.__version__, 'scipy': scipy.__version__, "
                "'cuda_available': torch.cuda.is_available()}))")

# module -> the distribution that provides it, where the names differ
DISTRIBUTION = {"yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow"}


def build_env(cache: Path, req: Path, python: str, rebuild: bool) -> dict:
    """A venv under cache/venv with their pins as far as the index serves them."""
    venv = cache / "venv"
    py = str(venv / "bin" / "python")
    marker = venv / "bench_env.json"
    pins = parse_pins(req)
    if marker.is_file() and not rebuild:
        env = json.loads(marker.read_text())
        if env.get("authors_pins") == pins:
            log(f"their environment: {venv} (built before: {env['installed']})")
            return env
    if venv.exists() and rebuild:
        shutil.rmtree(venv)
    log(f"building their environment in {venv} from {python} ...")
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    chosen, notes = {}, {}
    for name, pin in pins.items():
        want = pin.split("+")[0]
        served = served_versions(py, name)
        if want in served:
            chosen[name] = want
            notes[name] = "served" + (f" (their pin {pin}: the index has no local "
                                      f"+{pin.split('+')[1]} builds)" if "+" in pin else "")
        else:
            below = [v for v in served if "+" not in v and vkey(v) <= vkey(want)]
            if not below:
                raise SystemExit(f"{name}=={pin}: the index serves no release at or below "
                                 f"{want} ({served[:8]} ...)")
            chosen[name] = max(below, key=vkey)
            notes[name] = (f"{want} not served for this Python and platform; the newest "
                           "served below it")
    if "dgl" in chosen and "torch" in chosen:
        builds = dgl_torch_builds(py, chosen["dgl"], cache / "wheels")
        fits = [v for v in builds if vkey(v) <= vkey(chosen["torch"])]
        if builds and chosen["torch"] not in builds:
            served_torch = set(served_versions(py, "torch"))
            ok = [v for v in fits if v in served_torch]
            if not ok:
                raise SystemExit(f"dgl {chosen['dgl']} ships libraries for torch {builds}; "
                                 f"none served at or below {chosen['torch']}")
            notes["torch"] = (f"their pin {pins['torch']}: dgl {chosen['dgl']} ships its "
                              f"C++ libraries for torch {builds[0]}..{builds[-1]} only; "
                              "the newest of those")
            chosen["torch"] = max(ok, key=vkey)
    specs = [f"{n}=={v}" for n, v in chosen.items()]
    log("pip install " + " ".join(specs))
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *specs],
                   check=True)
    # import errors from packages their requirements.txt does not pin, fixed in their venv
    # only, each stored in the JSON: dgl imports torchdata.datapipes (gone in torchdata
    # 0.10) without capping torchdata (-> the newest torchdata that imports with this
    # torch), and modules it does not declare (-> installed by that name)
    extra, installs = [], []
    torchdata = sorted((v for v in served_versions(py, "torchdata") if vkey(v) < vkey("0.10")),
                       key=vkey, reverse=True)
    for _ in range(len(torchdata) + 6):
        check = subprocess.run([py, "-c", IMPORT_CHECK], capture_output=True, text=True)
        if not check.returncode:
            break
        err = check.stderr.strip().splitlines()[-1]
        m = re.search(r"No module named '([A-Za-z0-9_]+)'", err)
        frames = [x for x in check.stderr.splitlines() if x.strip().startswith('File "')]
        if torchdata and ("torchdata" in err or (frames and "torchdata" in frames[-1])):
            spec, why = f"torchdata=={torchdata.pop(0)}", (
                "dgl imports torchdata.datapipes (removed in torchdata 0.10) and does not cap "
                "torchdata: the newest release below 0.10 that imports with this torch")
            installs = [x for x in installs if not x.startswith("torchdata")]
        elif m:
            spec = DISTRIBUTION.get(m.group(1), m.group(1))
            why = f"dgl imports {m.group(1)}, not among its declared requirements"
        else:
            break
        log(f"their environment: {err}; pip install {spec}")
        installs.append(spec)
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *specs, *installs], check=True)
        extra.append({"error": err, "installed": spec, "why": why})
    if check.returncode:
        raise SystemExit(f"their environment does not import: {check.stderr[-2000:]}")
    env = {"venv": str(venv), "python": python, "authors_pins": pins, "chosen": chosen,
           "why": notes, "import_fixes": extra,
           "installed": json.loads(check.stdout.strip().splitlines()[-1]),
           "pip_freeze": subprocess.run([py, "-m", "pip", "freeze"], capture_output=True,
                                        text=True).stdout.split()}
    marker.write_text(json.dumps(env, indent=2) + "\n")
    return env


# ----------------------------------------------------------------------------- data
def write_data(src: Path, dest: Path, seed: int) -> dict:
    """The split from src and the stand-in features into dest (features kept if present)."""
    dest.mkdir(parents=True, exist_ok=True)
    n_items, n_users, n_train, sha = 0, 0, 0, {}
    for split in ("train", "valid", "test"):
        f = src / f"{split}.txt"
        if not f.is_file():
            raise SystemExit(f"--data {src}: no {split}.txt (expected the LightGCN layout: "
                             "one line per user, 'user item item ...')")
        shutil.copyfile(f, dest / f"{split}.txt")
        sha[f"{split}.txt"] = hashlib.sha256(f.read_bytes()).hexdigest()
        for line in f.read_text().splitlines():
            parts = [int(x) for x in line.split()]
            if parts:
                n_users = max(n_users, parts[0] + 1)
            if len(parts) > 1:
                n_items = max(n_items, max(parts[1:]) + 1)
                n_train += (len(parts) - 1) if split == "train" else 0
    import numpy as np

    feats = {}
    for i, (name, dim) in enumerate(FEATURE_DIMS.items()):
        path = dest / f"{name}_feat.npy"
        meta = dest / f"{name}_feat.json"
        want = {"shape": [n_items, dim], "seed": seed + i, "dtype": "float32"}
        if not (path.is_file() and meta.is_file() and json.loads(meta.read_text()) == want):
            x = np.random.default_rng(seed + i).standard_normal((n_items, dim), np.float32)
            np.save(path, x)
            meta.write_text(json.dumps(want))
        feats[name] = {**want, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {"dir": str(dest), "users": n_users, "items": n_items, "train_interactions": n_train,
            "baby_shape": n_items == BABY_ITEMS, "split_sha256": sha, "features": feats,
            "features_note": "standard normal float32, numpy default_rng(seed); timing only"}


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
            f"train.epochs={epochs}", "train.eval_every=1", "train.checkpoint=false"]
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
    """This checkout's HEAD, '+dirty' when the package's tracked files differ from it (the
    package code ours ran: other work may land between runs)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "recgoat_jax"]).returncode
    return head + ("+dirty" if dirty else "")


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
    command = shlex.join(["python", "experiments/bench_authors.py",
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
    import platform

    result = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "note": args.note,
        "smoke": args.smoke,
        "loaded_machine": max(loads) >= args.quiet_load,
        "quiet_load_threshold": args.quiet_load,
        "loadavg_1min_during_runs": {"min": min(loads), "max": max(loads)},
        "wait_quiet": quiet,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "core": args.core, "processor": platform.processor() or platform.machine()},
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
