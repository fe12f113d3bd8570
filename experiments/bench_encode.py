"""Text-encoding throughput (items/s) of all-MiniLM-L6-v2 on this machine.

Encodes N synthetic item texts (title + brand + category path + description, the
MMRec template; 20-80 words each, like Amazon metadata) with recgoat_jax's TextEncoder
for a few (torch threads, batch size) settings, after one warm-up batch, and writes a
JSON with machine info, versions, the command and the numbers. Each setting stops after
--max-seconds; texts come in a seeded random order, length-sorted within groups of
4 batches (as chunks are in build_text_features), so a capped run sees a fair sample.

    python experiments/bench_encode.py [--n 1000] [--settings 1x16 1x64 1x256 2x64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("soft organic cotton swaddle blanket newborn muslin breathable crib sheet glass bottle "
         "anti-colic slow-flow nipple silicone sippy cup wooden rattle teether musical toy "
         "stroller lightweight foldable all-terrain travel system hooded towel bamboo bath tub "
         "non-slip easy clean machine washable gift parents baby toddler safe BPA-free").split()
CATEGORIES = [["Baby", "Nursery", "Bedding"], ["Baby", "Feeding", "Bottles"],
              ["Baby", "Toys", "Rattles"], ["Baby", "Strollers"], ["Baby", "Bathing", "Towels"]]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        title = " ".join(rng.choices(WORDS, k=rng.randint(4, 9))).title() + f" #{k}"
        brand = rng.choice(["Tiny Steps", "Nestling", "BabyBloom", "Little Oak"])
        desc = " ".join(rng.choices(WORDS, k=rng.randint(12, 70))) + "."
        out.append(f"{title} {brand} {' '.join(rng.choice(CATEGORIES))} {desc}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="synthetic item texts (1000)")
    ap.add_argument("--settings", nargs="+", default=["1x16", "1x64", "1x256", "2x64"],
                    help="THREADSxBATCH settings (1x16 1x64 1x256 2x64)")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="stop each setting after this long (60)")
    ap.add_argument("--model", default=None, help="encoder (default: bundled all-MiniLM-L6-v2)")
    ap.add_argument("--out", default="experiments/results/encode_throughput.json")
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers

    from recgoat_jax.features import text as tf

    texts = synthetic_texts(args.n)
    t0 = time.perf_counter()
    enc = tf.TextEncoder(args.model)
    load_s = time.perf_counter() - t0
    n_tokens = [len(x) for x in enc.tokenizer(texts, truncation=True, max_length=enc.max_length)["input_ids"]]
    results = []
    perm = list(range(len(texts)))
    random.Random(1).shuffle(perm)
    for setting in args.settings:
        th, bs = (int(x) for x in setting.split("x"))
        torch.set_num_threads(th)
        group = 4 * bs
        order = []
        for g in range(0, len(perm), group):
            order += sorted(perm[g : g + group], key=lambda j: len(texts[j]), reverse=True)
        enc([texts[j] for j in order[:bs]])  # warm-up
        t = time.perf_counter()
        done = 0
        toks = 0
        for s in range(0, len(order), bs):
            idx = order[s : s + bs]
            enc([texts[j] for j in idx])
            done += len(idx)
            toks += sum(n_tokens[j] for j in idx)
            if time.perf_counter() - t > args.max_seconds:
                break
        dt = time.perf_counter() - t
        results.append({"torch_threads": th, "batch_size": bs, "items": done,
                        "mean_tokens": round(toks / done, 1), "seconds": round(dt, 2),
                        "items_per_s": round(done / dt, 1), "tokens_per_s": round(toks / dt)})
        print(json.dumps(results[-1]), flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "what": "all-MiniLM-L6-v2 text encoding throughput (HF AutoModel + mean pooling + L2, "
                "fp32, length-sorted batches, max_length 256)",
        "command": "python " + " ".join([sys.argv[0]] + sys.argv[1:]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "cuda": torch.cuda.is_available(),
                    "load_average_at_end": [round(x, 2) for x in load] if load else None,
                    "note": "shared 2-core machine; other jobs were running, so numbers are "
                            "noisy lower bounds"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__},
        "model": enc.model_name, "load_seconds": round(load_s, 2),
        "tokens_per_text": {"mean": round(float(np.mean(n_tokens)), 1), "max": int(max(n_tokens))},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
