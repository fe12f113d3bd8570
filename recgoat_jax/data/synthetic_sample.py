"""The demo generator's interactions (data/synthetic.py has the generative model in its
docstring): the hidden state (clusters, item / user factors, popularity), the vectorised
sampling-importance-resampling of each user's items, and the k-core and calibration
passes that bring the filtered sizes near the targets (calibrated_core)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from recgoat_jax.data.preprocess import compact_ids, k_core

_LATENT_DIM = 16
_ITEMS_PER_CLUSTER = 50
_POP_SIGMA = 1.1  # log-normal popularity prior
TEMPERATURE = 0.8
GLOBAL_FRAC = 0.5  # share of candidates drawn from the global popularity prior
MAX_FAV = 6  # a user likes 1 + Binomial(MAX_FAV - 1, _FAV_P) clusters
_FAV_P = 0.5
_ITEM_SPREAD = 1.0  # within-cluster spread of item factors
_USER_NOISE = 0.5
_CAND_MULT = 4  # candidates per interaction
_FAV_SLOTS = 64
_CAND_BLOCK = 1 << 20  # candidates processed at a time
CALIBRATION_PASSES = 4  # generate at most this often to land near the targets
CALIBRATION_TOL = 0.02
PILOT_INTERACTIONS = 400_000

Progress = Callable[[str], None] | None


def say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


class _InverseCdf:
    """Exact inverse-CDF draws, searchsorted(cum, r, 'right'), sped up by a guide table."""

    def __init__(self, cum: np.ndarray, slots_per_entry: int = 8):
        self.cum = cum
        self.total = float(cum[-1])
        self.k = max(1024, slots_per_entry * len(cum))
        edges = np.arange(self.k + 1) * (self.total / self.k)
        self.lo = np.searchsorted(cum, edges[:-1], side="right")
        self.exact = self.lo == np.searchsorted(cum, edges[1:], side="right")

    def __call__(self, r: np.ndarray) -> np.ndarray:
        slot = np.minimum((r * (self.k / self.total)).astype(np.int64), self.k - 1)
        out = self.lo[slot]
        amb = ~self.exact[slot]
        out[amb] = np.searchsorted(self.cum, r[amb], side="right")
        return np.minimum(out, len(self.cum) - 1)


def _latent(rng: np.random.Generator, n_users: int, n_items: int) -> dict:
    """The hidden state behind the interactions (draws in a fixed order from rng):
    item factors item_f [I, 16] (cluster centre + spread), cluster [I], popularity prior
    pop [I], favourite clusters favs [U, 6] with weights w [U, 6], user factors user_f [U, 16]."""
    d = _LATENT_DIM
    n_clusters = max(2, round(n_items / _ITEMS_PER_CLUSTER))
    centers = rng.standard_normal((n_clusters, d)) / math.sqrt(d)
    cluster = rng.integers(0, n_clusters, n_items)
    cluster[: min(n_clusters, n_items)] = np.arange(min(n_clusters, n_items))
    rng.shuffle(cluster)
    item_f = centers[cluster] + _ITEM_SPREAD * rng.standard_normal((n_items, d)) / math.sqrt(d)
    pop = np.exp(_POP_SIGMA * rng.standard_normal(n_items))
    # users: 1..MAX_FAV favourite clusters with Dirichlet(1) weights
    sizes = np.bincount(cluster, minlength=n_clusters)
    cluster_w = np.exp(0.5 * rng.standard_normal(n_clusters)) * (sizes > 0)
    nf = MAX_FAV
    n_fav = 1 + rng.binomial(nf - 1, _FAV_P, n_users)
    favs = rng.choice(n_clusters, size=(n_users, nf), p=cluster_w / cluster_w.sum())
    w = rng.gamma(1.0, 1.0, (n_users, nf)) * (np.arange(nf)[None, :] < n_fav[:, None])
    w /= w.sum(axis=1, keepdims=True)
    user_f = _USER_NOISE * rng.standard_normal((n_users, d)) / math.sqrt(d)
    for k in range(nf):
        user_f += w[:, k : k + 1] * centers[favs[:, k]]
    return {"n_clusters": n_clusters, "item_f": item_f, "cluster": cluster, "pop": pop,
            "favs": favs, "w": w, "user_f": user_f}


def sample(
    seed: int, n_users: int, n_items: int, n_interactions: int, min_count: int,
    progress: Progress = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Raw interactions before filtering -> (users, items, latent state: _latent())."""
    rng = np.random.default_rng([seed, 0])
    lat = _latent(rng, n_users, n_items)
    n_clusters, nf = lat["n_clusters"], MAX_FAV
    item_f, cluster, pop = lat["item_f"], lat["cluster"], lat["pop"]
    favs, w, user_f = lat["favs"], lat["w"], lat["user_f"]

    # items grouped by cluster, with cumulative popularity for inverse-CDF draws
    by_cluster = np.argsort(cluster, kind="stable")
    cum_pop = np.cumsum(pop[by_cluster])
    sizes = np.bincount(cluster, minlength=n_clusters)
    c_end_idx = np.cumsum(sizes)
    c_start_idx = c_end_idx - sizes
    padded = np.concatenate([[0.0], cum_pop])
    c_lo, c_hi = padded[c_start_idx], padded[c_end_idx]
    in_cluster = _InverseCdf(cum_pop)
    global_draw = _InverseCdf(np.cumsum(pop))

    # favourite cluster per slot: drawing a uniform slot = drawing a cluster ~ w (1/64 steps);
    # slot s goes to favourite #{k : s >= t_k}, t_k = slots below the k-th cumulative weight
    ns = _FAV_SLOTS
    t = np.floor(np.cumsum(w, axis=1)[:, :-1] * ns + 0.5).astype(np.int64).clip(0, ns)
    row = np.arange(n_users)[:, None] * (ns + 1)
    counts = np.bincount((row + t).ravel(), minlength=n_users * (ns + 1)).reshape(n_users, ns + 1)
    fav_slot = np.cumsum(counts[:, :ns], axis=1)
    fav_table = np.take(favs.ravel(), np.arange(n_users)[:, None] * nf + fav_slot)
    fav_table = fav_table.astype(np.int32)
    del t, row, counts, fav_slot

    # degrees
    extra = max(n_interactions / n_users - min_count, 0.0)
    shape = 0.7
    lam = rng.gamma(shape, extra / shape, n_users) if extra > 0 else np.zeros(n_users)
    deg = min_count + rng.poisson(lam)
    deg = np.minimum(deg, max(min_count, n_items // 2)).astype(np.int64)

    user_f32 = user_f.astype(np.float32)
    item_f32 = item_f.astype(np.float32)
    n_cand = deg * _CAND_MULT
    cand_end = np.cumsum(n_cand)
    out_u, out_i = [], []
    u0 = 0
    while u0 < n_users:
        base = cand_end[u0 - 1] if u0 > 0 else 0
        u1 = int(np.searchsorted(cand_end, base + _CAND_BLOCK, side="right"))
        u1 = max(u1, u0 + 1)
        cu = np.repeat(np.arange(u0, u1), n_cand[u0:u1])
        uf = np.repeat(user_f32[u0:u1], n_cand[u0:u1], axis=0)
        m = len(cu)
        ci = np.empty(m, dtype=np.int64)
        glob = rng.random(m) < GLOBAL_FRAC
        ng = int(glob.sum())
        # from the global popularity prior
        ci[glob] = global_draw(rng.random(ng) * global_draw.total)
        # from one of the user's clusters, by popularity within it
        cl = ~glob
        c = fav_table[cu[cl], rng.integers(0, _FAV_SLOTS, m - ng)]
        r = c_lo[c] + rng.random(m - ng) * (c_hi[c] - c_lo[c])
        pos = np.clip(in_cluster(r), c_start_idx[c], c_end_idx[c] - 1)
        ci[cl] = by_cluster[pos]
        score = np.einsum("md,md->m", uf, np.take(item_f32, ci, axis=0))
        score /= np.float32(TEMPERATURE)
        del uf
        e = np.maximum(rng.standard_exponential(m, dtype=np.float32), np.float32(1e-30))
        score -= np.log(e)  # + Gumbel(0, 1)
        # duplicate candidates of a user: keep the best score
        key = (cu - u0) * n_items + ci
        o = np.argsort(key, kind="stable")
        key, score = key[o], score[o]
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        best = np.maximum.reduceat(score, starts).astype(np.float64)
        key = key[starts]
        ul, ci = key // n_items, key % n_items
        # top-deg per user by score: sort by (user asc, score desc) with one float key
        frac = (best.max() - best) / (best.max() - best.min() + 1e-9) * 0.999
        o = np.argsort(ul + frac, kind="stable")
        ul, ci = ul[o], ci[o]
        ustart = np.searchsorted(ul, np.arange(u1 - u0))
        keep = (np.arange(len(ul)) - ustart[ul]) < deg[u0 + ul]
        out_u.append(ul[keep] + u0)
        out_i.append(ci[keep])
        u0 = u1
    users = np.concatenate(out_u)
    items = np.concatenate(out_i)
    say(progress, f"  sampled {len(users):,} interactions for {n_users:,} users, "
         f"{n_items:,} items")
    return users, items, lat


def core(seed, n_users, n_items, n_interactions, min_count, progress):
    """(users, items) of the sampled interactions after the min_count-core, ids made
    contiguous, and the hidden state behind them in those ids."""
    users, items, lat = sample(seed, n_users, n_items, n_interactions, min_count, progress)
    keep = k_core(users, items, min_count)
    # contiguous ids, in the order of the old ones
    users, u_present = compact_ids(users[keep], order="sorted")
    items, present = compact_ids(items[keep], order="sorted")
    truth = {"pop_cluster": np.bincount(lat["cluster"], weights=lat["pop"],
                                        minlength=lat["n_clusters"]),
             **{k: lat[k][present] for k in ("item_f", "cluster", "pop")},
             **{k: lat[k][u_present] for k in ("favs", "w", "user_f")}}
    return users.astype(np.int64), items.astype(np.int64), truth


def next_density(hist: list[tuple[float, float, float, float]], k: int, target: float) -> float:
    """Next input density (k=0 per user, 1 per item): secant on (in, out), else a shift."""
    x1, y1 = hist[-1][k], hist[-1][k + 2]
    step = target - y1  # out ~ in + const
    if len(hist) > 1:
        x0, y0 = hist[-2][k], hist[-2][k + 2]
        if abs(x1 - x0) > 1e-9:
            slope = (y1 - y0) / (x1 - x0)
            if 0.2 < slope < 5.0:
                step = (target - y1) / slope
    return max(x1 + step, 1.0)


def calibrated_core(seed, targets, min_count, calibrate, progress):
    """Interactions after the k-core, with inputs corrected to land near the targets.

    The k-core keeps most users but drops sparse items, so the output densities
    (interactions per user a, per item b) exceed the input ones, by roughly a constant.
    Solve output density = target for the input densities (a shift, then secant steps);
    the scale follows from the share of interactions kept. The densities barely depend
    on the scale, so big shapes calibrate on a pilot of ~PILOT_INTERACTIONS and then
    generate once at full size.
    """
    n_users, n_items, n_interactions = targets
    a_t, b_t = n_interactions / n_users, n_interactions / n_items
    scale = min(1.0, PILOT_INTERACTIONS / n_interactions) if calibrate else 1.0
    state = {"a": a_t, "b": b_t, "kept_x": 1.0}
    hist: list[tuple[float, float, float, float]] = []  # (a_in, b_in, a_out, b_out)

    def run(x_t: float, label: str):
        x_in = x_t / state["kept_x"]
        inputs = (max(1, round(x_in / state["a"])), max(1, round(x_in / state["b"])),
                  max(1, round(x_in)))
        say(progress, f"  {label}: inputs {inputs[0]:,} users, {inputs[1]:,} items, "
             f"{inputs[2]:,} interactions")
        out = core(seed, *inputs, min_count, progress)
        got = (int(out[0].max()) + 1, int(out[1].max()) + 1, len(out[0])) if len(out[0]) else None
        if got:
            say(progress, f"    {min_count}-core kept {got[0]:,} users, {got[1]:,} items, "
                 f"{got[2]:,} interactions")
        return out, inputs, got

    def update(inputs, got):
        hist.append((state["a"], state["b"], got[2] / got[0], got[2] / got[1]))
        state["a"] = next_density(hist, 0, a_t)
        state["b"] = next_density(hist, 1, b_t)
        state["kept_x"] = got[2] / inputs[2]

    passes = CALIBRATION_PASSES if calibrate else 1
    goal = [t * scale for t in targets]
    for attempt in range(passes):
        label = f"pilot pass {attempt + 1}" if scale < 1.0 else f"pass {attempt + 1}"
        out, inputs, got = run(n_interactions * scale, label)
        if got is None:
            return out
        if all(abs(g / t - 1) <= CALIBRATION_TOL for g, t in zip(got, goal)):
            break
        if scale < 1.0 or attempt + 1 < passes:
            update(inputs, got)
    if scale < 1.0:
        out, _, _ = run(n_interactions, "final pass")
    return out
