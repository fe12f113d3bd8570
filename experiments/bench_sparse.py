"""Why LightGCN propagates through jax.experimental.sparse CSR products on CPU.

On the real Baby split (237,102 directed edges, d 64) it times, after compilation:
an XLA gather of [E, d] rows, a sorted segment-sum of the same size, one LightGCN layer
and 3 layers (+ gradient) in the gather + segment-sum form, and the same in the CSR
form used by recgoat_jax.model.lightgcn. -> experiments/results/cpu_gather_vs_csr.json

    python experiments/bench_sparse.py [--data DIR]     # default data/baby (see --help)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from reproduce_baselines import BABY_DATA_HELP  # noqa: E402  (same --data meaning)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from recgoat_jax.data.formats import read_dataset  # noqa: E402
from recgoat_jax.graphs.bipartite import normalized_adjacency  # noqa: E402
from recgoat_jax.model.lightgcn import propagate  # noqa: E402


def ms(f, *args, n: int = 10) -> float:
    jax.block_until_ready(f(*args))
    t = time.perf_counter()
    for _ in range(n):
        out = f(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / n * 1000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "data" / "baby"),
                   help=BABY_DATA_HELP)
    args = p.parse_args(argv)
    ds = read_dataset(args.data, "baby")
    nu, ni = ds.n_users, ds.n_items
    adj = {k: tuple(jnp.asarray(a) for a in v)
           for k, v in normalized_adjacency(ds.train, nu, ni).items()}
    # The same graph as COO over U + I nodes, rows sorted, for the gather form.
    u, i = ds.train.to_pairs()
    rows = np.concatenate([u, i + nu]).astype(np.int64)
    cols = np.concatenate([i + nu, u]).astype(np.int64)
    deg = np.bincount(rows, minlength=nu + ni) + 1e-7
    vals = (deg[rows] * deg[cols]) ** -0.5
    order = np.lexsort((cols, rows))
    r, c, v = (jnp.asarray(rows[order], jnp.int32), jnp.asarray(cols[order], jnp.int32),
               jnp.asarray(vals[order], jnp.float32))
    n = nu + ni
    e = jax.random.normal(jax.random.PRNGKey(0), (n, 64))
    eu, ei = e[:nu], e[nu:]

    def gather_layer(x):
        return jax.ops.segment_sum(x[c] * v[:, None], r, num_segments=n, indices_are_sorted=True)

    def gather_prop(x):
        out, h = x, x
        for _ in range(3):
            h = gather_layer(h)
            out = out + h
        return out / 4

    def csr_prop(a, b):
        return propagate(adj, a, b, 3)

    res = {
        "edges": int(len(rows)), "dim": 64,
        "xla_gather_ms": ms(jax.jit(lambda x: x[c]), e),
        "segment_sum_sorted_ms": ms(jax.jit(lambda m: jax.ops.segment_sum(
            m, r, num_segments=n, indices_are_sorted=True)), e[c]),
        "gather_form_3_layers_ms": ms(jax.jit(gather_prop), e),
        "gather_form_3_layers_grad_ms": ms(jax.jit(jax.grad(lambda x: jnp.sum(gather_prop(x) ** 2))), e),
        "csr_form_3_layers_ms": ms(jax.jit(csr_prop), eu, ei),
        "csr_form_3_layers_grad_ms": ms(jax.jit(jax.grad(
            lambda a, b: sum(jnp.sum(x ** 2) for x in csr_prop(a, b)), argnums=(0, 1))), eu, ei),
        "load_average_at_start": os.getloadavg(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "device": str(jax.devices()[0])},
        "versions": {"jax": jax.__version__},
        "command": "python experiments/bench_sparse.py",
    }
    out = ROOT / "experiments" / "results" / "cpu_gather_vs_csr.json"
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
