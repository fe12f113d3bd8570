"""bench_authors.py's other side: the authors' code copied and patched, its venv built
from their pins, the driver that times main.py's sequence, and the data both sides read.

    theirs = copy_theirs(Path(repo), cache / "authors-copy")   # {'commit', 'patches', ...}
    env = build_env(cache / "env", work / "requirements.txt", python, rebuild=False)
    data = write_data(Path(split_dir), cache / "data" / "baby", seed=0)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

FEATURE_DIMS = {"text": 384, "image": 4096}  # MMRec's Baby features
BABY_ITEMS = 7050


def log(*a):
    print("[bench_authors]", *a, file=sys.stderr, flush=True)


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
