"""A variant of the demo data whose item content reveals each item's cluster (a probe).

Same users, items, interactions, split and user features as `demo`; only the item
features change. In `demo` the features are noisy views of the item factor v_i, whose
within-cluster spread equals the spread between cluster centres, and 3% of the items get
the mean image row (which makes those items every item's image neighbours under cosine:
experiments/demo_ceiling.py). Here both modalities are views of
centre_c + 0.3 (v_i - centre_c), with centre_c the mean factor of cluster c's items, and
no item gets the mean image row. Interactions are unchanged, so ID-only models (LightGCN,
MF) score exactly as on `demo`.

    python experiments/demo_content_probe.py --out data/demo_v2
    python -m recgoat_jax.train --config experiments/configs/recgoat_demo.yaml --dataset data/demo_v2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recgoat_jax.data import synthetic  # noqa: E402

SPREAD = 0.3  # within-cluster spread kept in the content view (the demo's is 1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "data" / "demo_v2"))
    args = p.parse_args(argv)
    ds, truth = synthetic.generate_with_truth(**{**synthetic.DEMO_PARAMS, "name": "demo_v2"})
    f, cl = truth["item_f"], truth["cluster"]
    n_clusters = len(truth["pop_cluster"])
    centre = np.stack([f[cl == c].mean(0) if (cl == c).any() else np.zeros(f.shape[1])
                       for c in range(n_clusters)])
    content = centre[cl] + SPREAD * (f - centre[cl])
    seed = synthetic.DEMO_PARAMS["seed"]
    feats = {"text": synthetic.nonlinear_view(content, 384, np.random.default_rng([seed, 1, 5]),
                                              synthetic._NOISE["text"], "text"),
             "image": synthetic.nonlinear_view(content, 4096, np.random.default_rng([seed, 1, 6]),
                                               synthetic._NOISE["image"], "image")}
    synthetic.write_mmrec(dataclasses.replace(ds, item_features=feats), args.out)
    print(f"wrote {args.out}: {ds.n_users} users, {ds.n_items} items, item features "
          + ", ".join(f"{m} {x.shape[1]}" for m, x in feats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
