"""Item kNN graph build time and peak memory, NumPy backend vs XLA backend.

For a shape (an Amazon preset: its item count with 4096-d image and 384-d text features,
random N(0, 1) float32 from a fixed seed; or NxD: N items, one D-d modality) it builds
the item kNN graph of every modality (graphs/knn.py item_knn, k = the Electronics
config's model.knn.k) with each backend, each backend in its own subprocess so its peak
RSS (getrusage ru_maxrss) is its own. Reported per backend: wall time per modality
(XLA: compile included) and in total, peak RSS, achieved GFLOP/s of the similarity
matmuls (2 n^2 d per modality), and whether the graphs equal the first backend's.

    python -m experiments.bench_knn                        # Electronics, numpy and xla
    python -m experiments.bench_knn --shape 8000x4096      # a small check
    python -m experiments.bench_knn --shape baby --backends xla

Results: experiments/results/knn_build_<platform>.json (other shapes than Electronics:
knn_build_<platform>_<shape>.json), with machine, versions and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.bench_common import FEATURE_DIMS, header, rss_peak_bytes, write_json
from recgoat_jax.config import load_yaml
from recgoat_jax.data.synthetic import SHAPES

ROOT = Path(__file__).resolve().parents[1]
K_CONFIG = ROOT / "recgoat_jax" / "configs" / "recgoat_electronics.yaml"


def parse_shape(text: str) -> tuple[int, dict[str, int]]:
    """"electronics" | "baby" | ... -> (n_items, FEATURE_DIMS); "NxD" -> (N, {"x": D})."""
    if text in SHAPES:
        return SHAPES[text][1], dict(FEATURE_DIMS)
    try:
        n, d = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--shape: expected one of {sorted(SHAPES)} or NxD, got {text!r}")
    if n < 1 or d < 1:
        raise SystemExit(f"--shape: N and D must be >= 1, got {text!r}")
    return n, {"x": d}


def features(n: int, d: int, seed: int) -> np.ndarray:
    """[n, d] float32 N(0, 1), the same for every backend (fixed seed)."""
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


# ----------------------------------------------------------------------------- child
def child(spec: dict) -> dict:
    """Build every modality's graph with one backend; graphs saved under spec["dir"]."""
    import jax

    from recgoat_jax import provenance
    from recgoat_jax.graphs import knn

    n, k, out = spec["n"], spec["k"], {"backend": spec["backend"], "modalities": {}}
    total = 0.0
    for i, (name, d) in enumerate(spec["dims"].items()):
        x = features(n, d, spec["seed"] + i)
        t0 = time.perf_counter()
        s, r = knn.item_knn(x, k, block=spec["block"], backend=spec["backend"])
        dt = time.perf_counter() - t0
        total += dt
        np.savez(Path(spec["dir"]) / f"{spec['backend']}-{name}.npz", senders=s, receivers=r)
        out["modalities"][name] = {"d": d, "build_s": dt, "n_edges": int(s.size),
                                   "gflop": 2 * n * n * d / 1e9,
                                   "gflop_per_s": 2 * n * n * d / dt / 1e9}
        del x, s, r
    out["total_s"] = total
    out["peak_rss_bytes"] = rss_peak_bytes()
    out["device_platform"] = jax.default_backend()
    out["device"] = str(jax.devices()[0])
    out["versions"] = provenance.versions()
    return out


def _spawn(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "experiments.bench_knn", "--child", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"backend": spec["backend"], "error": f"timeout after {timeout} s"}
    if p.returncode != 0:
        return {"backend": spec["backend"], "error": p.stderr.strip()[-2000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _compare(d: Path, ref: str, other: str, n: int, names) -> dict:
    """Per modality: graphs equal? and how many directed edges only one of them has."""
    res = {}
    for name in names:
        with np.load(d / f"{ref}-{name}.npz") as a, np.load(d / f"{other}-{name}.npz") as b:
            ka = a["receivers"].astype(np.int64) * n + a["senders"]
            kb = b["receivers"].astype(np.int64) * n + b["senders"]
        res[name] = {"identical": bool(np.array_equal(ka, kb)),
                     "edges_only_in_" + ref: int(np.setdiff1d(ka, kb).size),
                     "edges_only_in_" + other: int(np.setdiff1d(kb, ka).size)}
    return res


# ----------------------------------------------------------------------------- parent
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="electronics",
                    help=f"one of {sorted(SHAPES)} or NxD (default electronics)")
    ap.add_argument("--backends", default="numpy,xla", help="comma list of numpy, xla")
    ap.add_argument("--k", type=int, default=None,
                    help=f"neighbours per item (default: model.knn.k of {K_CONFIG.name})")
    ap.add_argument("--block", type=int, default=2048, help="rows per similarity slab")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per backend")
    ap.add_argument("--out", default=None, help="result JSON (default under experiments/results)")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    n, dims = parse_shape(args.shape)
    k = args.k if args.k is not None else int(load_yaml(K_CONFIG)["model"]["knn"]["k"])
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in ("numpy", "xla")]
    if bad or not backends:
        raise SystemExit(f"--backends: expected a comma list of numpy, xla, got {args.backends!r}")
    load_start = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            spec = {"backend": b, "n": n, "dims": dims, "k": k, "block": args.block,
                    "seed": args.seed, "dir": tmp}
            print(f"[bench_knn] {args.shape} ({n} items, dims {dims}, k {k}) / {b} ...",
                  file=sys.stderr, flush=True)
            r = _spawn(spec, args.timeout)
            runs.append(r)
            print("[bench_knn]   " + (f"ERROR {r['error']}" if "error" in r else
                  ", ".join(f"{m} {v['build_s']:.1f} s ({v['gflop_per_s']:.0f} GFLOP/s)"
                            for m, v in r["modalities"].items())
                  + f", total {r['total_s']:.1f} s, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"),
                  file=sys.stderr, flush=True)
        ok = [r["backend"] for r in runs if "error" not in r]
        for r in runs[1:]:
            if "error" not in r and ok and ok[0] != r["backend"]:
                r["vs_" + ok[0]] = _compare(Path(tmp), ok[0], r["backend"], n, dims)
                print(f"[bench_knn] {r['backend']} vs {ok[0]}: {r['vs_' + ok[0]]}",
                      file=sys.stderr, flush=True)

    first = next((r for r in runs if "error" not in r), {})
    plat = first.get("device_platform", "unknown")
    result = {  # the parent imports no JAX: versions and device from the first child
        **header(args.note, load_start, plat, with_versions=False),
        "device": first.get("device"), "versions": first.get("versions"),
        "shape": {"name": args.shape, "n_items": n, "feature_dims": dims, "k": k,
                  "block": args.block, "seed": args.seed},
        "definitions": {
            "build_s": "wall time of graphs.knn.item_knn for one modality: normalise, "
                       "blocked similarity + top-k, symmetrise (XLA: its compile included)",
            "gflop_per_s": "2 n^2 d / build_s, the similarity matmul's FLOPs only",
            "peak_rss_bytes": "getrusage max RSS of the backend's own subprocess "
                              "(features of one modality at a time included)",
            "vs_<backend>": "graphs compared with the first backend's, edge sets per modality",
        },
        "runs": runs,
    }
    suffix = "" if args.shape == "electronics" else f"_{args.shape}"
    out = Path(args.out) if args.out else (
        ROOT / "experiments" / "results" / f"knn_build_{plat}{suffix}.json")
    write_json(out, result)
    print(f"[bench_knn] wrote {out}", file=sys.stderr)
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
