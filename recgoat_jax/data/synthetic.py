"""The built-in `demo` dataset and a synthetic generator of any shape.

Everything is a deterministic function of the seed (NumPy Generators, no global state).

Generative model
----------------
* Latent space (dim 16): cluster centres ~ N(0, I/d), ~50 items per cluster; an item's
  factor is its centre plus within-cluster noise. Each user likes 1-6 clusters (chosen
  with a skewed cluster popularity, Dirichlet weights) and its factor is the weighted
  mix of their centres plus noise.
* Item popularity prior: log-normal (a long tail: many items end up with only a few
  interactions, a few with hundreds).
* User degrees: min_count + a negative-binomial draw, so the mean degree before
  filtering is about n_interactions / n_users.
* Interactions, per user, without replacement: candidates are drawn from the
  popularity prior (globally, or within one of the user's clusters), then the user's
  top-k candidates by ``u.v / temperature + Gumbel`` are kept. That is
  sampling-importance-resampling of ``softmax(u.v / T) * popularity``, vectorised over
  users in blocks, so even the Electronics shape (1.7M interactions) takes seconds.
* Iterative k-core filtering (default 5 per user and per item), ids re-assigned
  contiguously (in the order of the old ids), then a per-user random 8:1:1 split with
  at least one valid and one test item per user (round(0.1 n) each, min 1).
* Target sizes are approximate: the 5-core removes some users, items and rows, so
  generation is repeated (at most 4 passes, same seed), solving for the input densities
  (interactions per user and per item) that give the target output densities and
  scaling by the share of interactions kept, until all three are within 2% of the
  targets. Shapes above 400K interactions calibrate on a pilot of that size (densities
  barely depend on scale) and then generate once at full size. Results land within
  ~1-3% (demo 3,006 / 1,472 / 45,269; Baby shape 19,400 / 7,038 / 160,472).
* Item features are noisy NON-LINEAR views of the item's CONTENT factor
  centre_c + 0.3 (v_i - centre_c) (centre_c: the mean factor of cluster c's items), a
  different random two-layer map per modality (tanh hidden layer, then uniform noise):
  "text" = L2-normalised tanh(...) (like sentence embeddings), "image" = relu(...) with
  much more noise (like CNN features; weaker than text, as in the real data). Content
  thus says which cluster an item is in (what a description or a photo tells: the kind
  of product), which is what drives the interactions, most usefully for the sparse items
  of the tail. Version 1 used v_i itself, whose within-cluster spread equals the spread
  between centres, and gave 3% of the items the mean image row (MMRec's fill for
  missing images); its content revealed the clusters less well than the co-interactions
  did (10-NN cluster purity text 0.52, image 0.03 = chance: the mean rows were every
  item's nearest image neighbours), so the demo could not show what content adds
  (experiments/results/demo_ceiling.json, demo_ablation_note.md).
* Optional user features ("LLM profile" embeddings), user_profile=
  - "taste" (default): a noisy non-linear view of the user's tastes, the weighted mix of
    its favourite clusters' centres, as if the LLM had read more than this split's
    interactions (the user's reviews, other categories). It tells what a user likes
    independently of which items the user happened to interact with.
  - "history": a noisy non-linear view of the mean content factor of the user's TRAIN
    items only (no leakage from valid/test). This carries nothing the train
    interactions do not: with it the paper's user-user branch costs accuracy instead of
    adding it (experiments/results/demo_ablation.md, variant full_paper_history).

Speed (2 busy CPU cores): demo ~1 s; Electronics shape with 384 + 4096-d features
~25 s and ~1.5 GB peak memory (features are made in row blocks).

Code: the sampling of interactions and its calibration to the targets is
synthetic_sample.py, the features synthetic_features.py, the k-core / ids / split
data/preprocess.py (shared with the raw-dump builder), the .inter writer data/inter.py;
this module assembles and writes. CLI: ``python -m recgoat_jax.data.synthetic --help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from recgoat_jax.cliutil import add_verbosity, configure_logging, log_level
from recgoat_jax.data.dataset import CSR, Dataset
from recgoat_jax.data.inter import write_inter
from recgoat_jax.data.preprocess import split_per_user
from recgoat_jax.data.synthetic_features import (NOISE, cluster_centres, content_factors,
                                                 item_features, nonlinear_view)
from recgoat_jax.data.synthetic_sample import Progress, calibrated_core, say

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # bump when the output of generate() changes for a given seed

DEFAULT_FEATURE_DIMS = {"text": 384, "image": 4096}

# users / items / interactions after 5-core, from docs/protocol.md
SHAPES: dict[str, tuple[int, int, int]] = {
    "baby": (19_445, 7_050, 160_792),
    "sports": (35_598, 18_357, 296_337),
    "clothing": (39_387, 23_033, 278_677),
    "electronics": (192_403, 63_001, 1_689_188),
}

DEMO_PARAMS: dict = dict(
    n_users=3_000,
    n_items=1_500,
    n_interactions=45_000,
    feature_dims=DEFAULT_FEATURE_DIMS,
    user_feature_dim=384,
    seed=2024,
    name="demo",
)

USER_PROFILES = ("taste", "history")


# ----------------------------------------------------------------------------- generate


def generate(
    n_users: int,
    n_items: int,
    n_interactions: int,
    feature_dims: Mapping[str, int] | None = None,
    seed: int = 0,
    *,
    name: str = "synthetic",
    min_count: int = 5,
    user_feature_dim: int = 0,
    user_profile: str = "taste",
    calibrate: bool = True,
    progress: Progress = None,
) -> Dataset:
    """A synthetic Dataset of roughly the given size AFTER min_count-core filtering.

    feature_dims: item modality -> dim (None = {"text": 384, "image": 4096}; {} = none).
    user_feature_dim: > 0 adds user features ("LLM profiles"), by user_profile: "taste"
    (a view of the user's favourite clusters) or "history" (of its train items only).
    calibrate: re-run (up to 4 passes in all, big shapes on a pilot) with corrected
    inputs until users, items and interactions are within 2% of the targets (else they
    come out smaller, since the k-core drops some).
    """
    return generate_with_truth(
        n_users, n_items, n_interactions, feature_dims, seed, name=name, min_count=min_count,
        user_feature_dim=user_feature_dim, user_profile=user_profile, calibrate=calibrate,
        progress=progress,
    )[0]


def generate_with_factors(*args, **kwargs) -> tuple[Dataset, np.ndarray]:
    """generate(), plus the latent item factors [n_items, 16] behind it (for tests)."""
    ds, truth = generate_with_truth(*args, **kwargs)
    return ds, truth["item_f"]


def generate_with_truth(
    n_users: int,
    n_items: int,
    n_interactions: int,
    feature_dims: Mapping[str, int] | None = None,
    seed: int = 0,
    *,
    name: str = "synthetic",
    min_count: int = 5,
    user_feature_dim: int = 0,
    user_profile: str = "taste",
    calibrate: bool = True,
    progress: Progress = None,
) -> tuple[Dataset, dict]:
    """generate(), plus the hidden state behind it, rows in the dataset's ids: item_f
    [I, 16], content [I, 16] (what the item features show), cluster [I], pop [I],
    favs / w [U, 6], user_f [U, 16], pop_cluster [clusters]
    (popularity mass per cluster before filtering; the generator draws within a cluster
    by it). For tests and for estimating the data's ceiling (experiments/results/demo_ceiling.json)."""
    if feature_dims is None:
        feature_dims = DEFAULT_FEATURE_DIMS
    if user_profile not in USER_PROFILES:
        raise ValueError(f"user_profile: expected one of {', '.join(USER_PROFILES)}, "
                         f"got {user_profile!r}")
    if min(n_users, n_items, n_interactions) <= 0 or min_count < 3:
        raise ValueError("n_users, n_items, n_interactions must be > 0 and min_count >= 3")
    t0 = time.perf_counter()
    targets = (n_users, n_items, n_interactions)
    users, items, truth = calibrated_core(seed, targets, min_count, calibrate, progress)
    item_f = truth["item_f"]
    if len(users) == 0:
        raise ValueError(
            f"nothing survives the {min_count}-core filter; use more interactions per user "
            f"and per item (got {n_interactions} for {n_users} users and {n_items} items)"
        )
    nu, ni = int(users.max()) + 1, int(items.max()) + 1
    split = split_per_user(users, nu, np.random.default_rng([seed, 3]), shuffle="keys")
    csrs = [CSR.from_pairs(users[split == k], items[split == k], nu) for k in range(3)]
    say(progress, f"  after {min_count}-core: {nu:,} users, {ni:,} items, {len(users):,} "
         f"interactions ({time.perf_counter() - t0:.1f} s)")
    content = content_factors(item_f, truth["cluster"])
    truth = {**truth, "content": content}
    feats = item_features(content, feature_dims, seed, progress)
    user_feats = None
    if user_feature_dim > 0 and user_profile == "taste":
        centre = cluster_centres(item_f, truth["cluster"], len(truth["pop_cluster"]))
        prof = np.einsum("uk,ukd->ud", truth["w"], centre[truth["favs"]])
    elif user_feature_dim > 0:
        tu, ti = csrs[0].to_pairs()
        prof = np.stack(
            [np.bincount(tu, weights=content[ti, k], minlength=nu)
             for k in range(content.shape[1])],
            axis=1,
        )
        prof /= np.maximum(csrs[0].row_lengths(), 1)[:, None]
    if user_feature_dim > 0:
        user_feats = nonlinear_view(
            prof, user_feature_dim, np.random.default_rng([seed, 2]), NOISE["text"], "text"
        )
    report = {
        "generator": "recgoat_jax.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "targets": {"users": n_users, "items": n_items, "interactions": n_interactions},
        "min_count": min_count,
        **({"user_profile": user_profile} if user_feature_dim > 0 else {}),
    }
    ds = Dataset(
        name=name, n_users=nu, n_items=ni, train=csrs[0], valid=csrs[1], test=csrs[2],
        item_features=feats, user_features=user_feats, report=report,
    )
    return ds, truth


def demo() -> Dataset:
    """The built-in demo dataset (~3,000 users, ~1,500 items, ~45K interactions)."""
    return generate(**DEMO_PARAMS)


# ----------------------------------------------------------------------------- writing


def write_mmrec(dataset: Dataset, directory: str | Path) -> Path:
    """Writes the MMRec layout: <name>.inter (+ <modality>_feat.npy, user_feat.npy).

    Rows are ordered by user, then split, then item; rating is 1 and timestamp 0 (both
    ignored by the readers). Returns the .inter path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    us, its, ss = [], [], []
    for k, csr in enumerate((dataset.train, dataset.valid, dataset.test)):
        u, i = csr.to_pairs()
        us.append(u)
        its.append(i)
        ss.append(np.full(len(u), k, np.int8))
    u, i, s = (np.concatenate(x) for x in (us, its, ss))
    order = np.lexsort((i, s, u))
    inter = write_inter(directory / f"{dataset.name}.inter", u[order], i[order], s[order])
    for m, x in dataset.item_features.items():
        np.save(directory / f"{m}_feat.npy", np.asarray(x, dtype=np.float32))
    if dataset.user_features is not None:
        np.save(directory / "user_feat.npy", np.asarray(dataset.user_features, dtype=np.float32))
    return inter


# ----------------------------------------------------------------------------- CLI


def _parse_dims(text: str) -> dict[str, int]:
    dims: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"{part!r}: expected name=dim, e.g. text=384")
        k, v = part.split("=", 1)
        try:
            dims[k.strip()] = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: dim must be an integer") from None
        if dims[k.strip()] <= 0 or not k.strip():
            raise argparse.ArgumentTypeError(f"{part!r}: expected a name and a positive dim")
    return dims


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m recgoat_jax.data.synthetic",
        description="Generate a synthetic multimodal recommendation dataset (MMRec layout: "
        "<out>/<name>.inter + <modality>_feat.npy). Sizes are targets after 5-core "
        "filtering and come out within a few percent.",
        epilog="Example: python -m recgoat_jax.data.synthetic --out data/synth --name synth "
        "--shape baby   then train with --dataset synth (or --dataset data/synth).",
    )
    p.add_argument("--out", required=True, help="dataset directory to write (created)")
    p.add_argument("--name", default=None, help="dataset name (file <name>.inter); "
                   "default: the --shape name, else 'synthetic'")
    p.add_argument("--shape", choices=sorted(SHAPES), default=None,
                   help="preset sizes of the real dataset (docs/protocol.md); --users/--items/"
                   "--interactions override single values")
    p.add_argument("--users", type=int, default=None, help="target users (default 3000)")
    p.add_argument("--items", type=int, default=None, help="target items (default 1500)")
    p.add_argument("--interactions", type=int, default=None,
                   help="target interactions (default 45000)")
    p.add_argument("--feature-dims", type=_parse_dims, default=dict(DEFAULT_FEATURE_DIMS),
                   help="item modalities as name=dim,... (default text=384,image=4096; "
                   "'' for none)")
    p.add_argument("--user-feature-dim", type=int, default=0,
                   help="also write user_feat.npy of this dim (default 0 = none)")
    p.add_argument("--user-profile", choices=USER_PROFILES, default="taste",
                   help="what the user features show: taste (the user's favourite "
                   "clusters; default) or history (its train items only)")
    p.add_argument("--min-count", type=int, default=5, help="k of the k-core filter (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_verbosity(p)
    args = p.parse_args(argv)
    configure_logging(log_level(args))

    base = SHAPES[args.shape] if args.shape else (3_000, 1_500, 45_000)
    n_users = args.users if args.users is not None else base[0]
    n_items = args.items if args.items is not None else base[1]
    n_inter = args.interactions if args.interactions is not None else base[2]
    name = args.name or args.shape or "synthetic"

    def say(msg: str) -> None:
        log.info(msg)

    t0 = time.perf_counter()
    say(f"generating '{name}': target {n_users:,} users, {n_items:,} items, {n_inter:,} "
        f"interactions, features {args.feature_dims or 'none'}, seed {args.seed}")
    try:
        ds = generate(n_users, n_items, n_inter, args.feature_dims, args.seed, name=name,
                      min_count=args.min_count, user_feature_dim=args.user_feature_dim,
                      user_profile=args.user_profile, progress=say)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    say(f"writing {args.out} ...")
    inter = write_mmrec(ds, args.out)
    say(ds.summary())
    say(f"wrote {inter} and features in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
