"""Full-ranking evaluation (MMRec protocol), jitted, in blocks.

Protocol (spec/protocol.md, "Evaluation protocol"): for every user with at least one
item in the evaluated split, score ALL items by inner product
``user_emb[u] @ item_emb.T``, mask the user's TRAIN items only (valid items are not
masked when testing), rank, and compute for each K:

- recall@K    = hits / |truth|
- ndcg@K      = DCG / IDCG, binary gains, DCG = sum over hits at rank r (1-based) of
                1 / log2(r + 1), IDCG over min(|truth|, K) positions
- precision@K = hits / K
- map@K       = (sum over hits at rank r of precision@r) / min(|truth|, K)
- hitrate@K   = 1 if any hit

averaged over the evaluated users (users without truth items are not counted).

Ranking order and ties
----------------------
Items are ranked by score, descending; equal scores (float equality, so -0.0 == +0.0)
are broken by the LOWER item index first. That is what ``jax.lax.top_k`` does (XLA's
TopK compares ``(value, -index)``; verified in the tests), except that XLA's comparator
orders -0.0 below +0.0, so the top_k paths first canonicalise -0.0 to +0.0. Scores must
not be NaN. A masked (train) item never counts as a hit, even if it is also a truth item
(it sits at -inf, behind every unmasked item).

Implementation
--------------
Everything runs on device with static shapes: every block of both splits has the same
array shapes, so the block function compiles once per (dataset shape, ks); the loop
over blocks only dispatches; metric SUMS are accumulated on device and moved to the
host once per evaluation. Padding rows carry ``n_truth == 0`` (weight 0), and padded
(row, item) pairs point at row == block size, which the scatters drop.

Two exact methods give identical numbers:

- ``method="rank"`` (default, fast). No sorting: for each truth pair (user u, item t),
  its 0-based rank is the number of unmasked items ahead of it in the order above,
  ``#{i: s_i > s_t} + #{i < t: s_i == s_t}``; it is a hit at rank r + 1 iff r < max(ks).
  Blocks hold whole users, packed greedily so that each block has at most
  ``batch_users`` truth pairs; the block computes one score row per truth pair
  (``user_emb[u] @ item_emb.T``, about 1.1 rows per user on Amazon splits), masks the
  user's train items with -inf by scatter, and counts in one vectorised pass.
  Why not top_k: on CPU XLA's TopK is a single-threaded custom call that costs more
  than the matmul itself for 7k items (see the benchmark notes in the report).
- ``method="topk"``: blocks of ``batch_users`` users; ``jax.lax.top_k`` with
  k = max(ks) on the masked scores, then truth membership of the returned items via a
  [block, n_items] boolean built by scatter.

Both feed :func:`metrics_from_hits` (via its matrix form). :meth:`Evaluator.topk`
exports the top-k item lists themselves (``jax.lax.top_k``, same masking and ties).
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recgoat_jax.data.dataset import CSR, Dataset

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "map", "hitrate")
_TABLE_NAMES = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP",
                "hitrate": "HitRate"}
_PAD_MULTIPLE = 256  # pair lists are padded to a multiple of this (fewer distinct shapes)
_HP = jax.lax.Precision.HIGHEST
_CPU_BLOCK_MIB = 8.0  # default cap on one block's score matrix on CPU (see Evaluator)


# ----------------------------------------------------------------------------- metrics
def _metrics_matrix(hits, n_truth, ks: tuple[int, ...]) -> jax.Array:
    """[B, len(METRICS), len(ks)] per-user metrics (see metrics_from_hits).

    Vectorised over ks with small constant matrices (cumulative sums as products with a
    0/1 triangular matrix) so that the whole thing is a handful of XLA ops: cheap to
    compile, and exact for the 0/1 hit counts.
    """
    hits = jnp.asarray(hits).astype(jnp.float32)
    n_truth = jnp.asarray(n_truth).astype(jnp.float32)
    big_k = hits.shape[1]
    ranks = np.arange(1, big_k + 1, dtype=np.float64)
    disc = 1.0 / np.log2(ranks + 1.0)                                # [K]
    upto = (np.arange(big_k)[:, None] < np.asarray(ks)[None, :])      # [K, nk]: rank <= k
    tri = np.triu(np.ones((big_k, big_k)))                           # cumulative sum
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    n_hits_cum = jnp.dot(hits, f32(tri), precision=_HP)              # hits within top r
    n_hits = jnp.dot(hits, f32(upto), precision=_HP)                 # [B, nk]
    dcg = jnp.dot(hits, f32(disc[:, None] * upto), precision=_HP)
    ap = jnp.dot(hits * n_hits_cum / f32(ranks), f32(upto), precision=_HP)
    kf = f32(ks)[None, :]
    ideal = jnp.minimum(n_truth[:, None], kf)                        # min(|truth|, K)
    idcg_table = f32(np.concatenate([[1.0], np.cumsum(disc)]))      # [K + 1], [0] unused
    idcg = idcg_table[ideal.astype(jnp.int32)]
    has_truth = (n_truth > 0)[:, None]
    safe = lambda x: jnp.maximum(x, 1.0)  # noqa: E731
    recall = jnp.where(has_truth, n_hits / safe(n_truth[:, None]), 0.0)
    ndcg = jnp.where(has_truth, dcg / idcg, 0.0)
    precision = n_hits / kf
    mean_ap = jnp.where(has_truth, ap / safe(ideal), 0.0)
    hitrate = (n_hits > 0).astype(jnp.float32)
    return jnp.stack([recall, ndcg, precision, mean_ap, hitrate], axis=1)  # order: METRICS


def metrics_from_hits(hits, n_truth, ks: Sequence[int] | None = None) -> dict[str, jax.Array]:
    """Per-user metrics from a ranked hit matrix.

    hits: [B, K] bool/float, hits[b, r] = 1 if the item at rank r + 1 of user b is a truth
    item. n_truth: [B] number of truth items of each user (|truth|, the recall
    denominator). ks: cut-offs, each <= K (default: (K,)).
    Returns {"recall@k", "ndcg@k", "precision@k", "map@k", "hitrate@k"} -> [B] float32.
    Users with n_truth == 0 get 0 for every metric (callers exclude them from averages).
    Pure and jittable; accepts NumPy inputs too.
    """
    big_k = jnp.shape(hits)[1]
    ks = (big_k,) if ks is None else tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or max(ks) > big_k:
        raise ValueError(f"ks {ks} must lie in [1, {big_k}] (the width of hits)")
    mat = _metrics_matrix(hits, n_truth, ks)
    return {f"{m}@{k}": mat[:, i, j] for i, m in enumerate(METRICS) for j, k in enumerate(ks)}


def _metric_keys(ks: Sequence[int]) -> list[str]:
    return [f"{m}@{k}" for m in METRICS for k in ks]


def format_table(metrics: Mapping[str, float], ks: Sequence[int] = DEFAULT_KS) -> str:
    """Fixed-width table: rows Recall/NDCG/Precision/MAP/HitRate, columns @K."""
    ks = tuple(ks)
    name_w = max(len(n) for n in _TABLE_NAMES.values())
    col_w = 8
    lines = [" " * name_w + "".join(f"{'@' + str(k):>{col_w}}" for k in ks)]
    for m in METRICS:
        cells = []
        for k in ks:
            v = metrics.get(f"{m}@{k}")
            cells.append(f"{'-':>{col_w}}" if v is None else f"{float(v):>{col_w}.4f}")
        lines.append(f"{_TABLE_NAMES[m]:<{name_w}}" + "".join(cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- blocks
def _canonical(scores: jax.Array) -> jax.Array:
    """-0.0 -> +0.0 (for lax.top_k, whose comparator orders -0.0 below +0.0)."""
    return jnp.where(scores == 0, jnp.zeros_like(scores), scores)


def _scores(user_emb, item_emb, users):
    return jnp.dot(user_emb[users], item_emb.T, preferred_element_type=jnp.float32)


def _block_sums(hits, n_truth, ks):
    per_user = _metrics_matrix(hits, n_truth, ks)                  # [B, metrics, ks]
    weight = (n_truth > 0).astype(jnp.float32)
    return jnp.einsum("b,bmk->mk", weight, per_user, precision=_HP).reshape(-1)


@functools.partial(jax.jit, static_argnames=("ks",), donate_argnums=(0,))
def _eval_rank_block(acc, user_emb, item_emb, p_user, p_item, p_row, n_truth, m_pair,
                     m_item, *, ks: tuple[int, ...]):
    """One block of truth pairs. p_*: [P] pair user / truth item / local user row (pads:
    row P). n_truth: [P] per local user row. m_pair/m_item: [W] train items to mask, by
    pair (pads: pair P)."""
    n_pairs = p_user.shape[0]
    big_k = max(ks)
    scores = _scores(user_emb, item_emb, p_user)                    # [P, n_items]
    scores = scores.at[m_pair, m_item].set(-jnp.inf, mode="drop")
    t_score = jnp.take_along_axis(scores, p_item[:, None], axis=1)  # [P, 1]
    col = jnp.arange(scores.shape[1], dtype=p_item.dtype)[None, :]
    ahead = jnp.where(col < p_item[:, None], scores >= t_score, scores > t_score)
    rank0 = jnp.sum(ahead, axis=1, dtype=jnp.int32)                 # 0-based rank
    ok = (t_score[:, 0] > -jnp.inf) & (rank0 < big_k)
    # add, not set: a user's truth items have distinct ranks, but their score rows are
    # computed separately; should rounding ever make two collide, no hit is lost.
    hits = jnp.zeros((n_pairs, big_k), jnp.float32).at[
        jnp.where(ok, p_row, n_pairs), jnp.minimum(rank0, big_k - 1)].add(1.0, mode="drop")
    return acc + _block_sums(hits, n_truth, ks)


@functools.partial(jax.jit, static_argnames=("ks",), donate_argnums=(0,))
def _eval_topk_block(acc, user_emb, item_emb, users, n_truth, tr_rows, tr_cols, t_rows,
                     t_cols, *, ks: tuple[int, ...]):
    """One block of users [B] (pads: n_truth 0); train / truth (row, item) pairs (pads:
    row B)."""
    scores = _canonical(_scores(user_emb, item_emb, users))
    scores = scores.at[tr_rows, tr_cols].set(-jnp.inf, mode="drop")
    vals, idx = jax.lax.top_k(scores, max(ks))
    truth = jnp.zeros(scores.shape, jnp.bool_).at[t_rows, t_cols].set(True, mode="drop")
    hits = jnp.take_along_axis(truth, idx, axis=1) & (vals > -jnp.inf)
    return acc + _block_sums(hits, n_truth, ks)


@functools.partial(jax.jit, static_argnames=("k", "mask_train"))
def _topk_block(user_emb, item_emb, users, tr_rows, tr_cols, *, k: int, mask_train: bool):
    scores = _canonical(_scores(user_emb, item_emb, users))
    if mask_train:
        scores = scores.at[tr_rows, tr_cols].set(-jnp.inf, mode="drop")
    vals, idx = jax.lax.top_k(scores, k)
    return idx.astype(jnp.int32), vals


# ----------------------------------------------------------------------------- host prep
def _round_up(x: int, m: int) -> int:
    return max(m, -(-x // m) * m)


def _expand(csr: CSR, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ragged gather: (owner j, item) for every item of csr row rows[j] (rows >= 0)."""
    lens = csr.indptr[rows + 1] - csr.indptr[rows]
    owner = np.repeat(np.arange(len(rows)), lens)
    starts = np.repeat(csr.indptr[rows], lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return owner, csr.indices[starts + offs].astype(np.int32)


def _slots(block_of: np.ndarray, n_blocks: int) -> np.ndarray:
    """Position of each entry within its block (entries sorted by block)."""
    counts = np.bincount(block_of, minlength=n_blocks)
    first = np.cumsum(counts) - counts
    return np.arange(len(block_of)) - first[block_of]


def _pack(block_of, slot, n_blocks, width, columns):
    """columns: [(values, fill)] -> [n_blocks, width] int32/float32 arrays."""
    out = []
    for values, fill in columns:
        arr = np.full((n_blocks, width), fill, dtype=np.asarray(values).dtype)
        arr[block_of, slot] = values
        out.append(arr)
    return out


def _greedy_blocks(counts: np.ndarray, cap: int) -> np.ndarray:
    """Block id per user, consecutive users, at most `cap` pairs per block (one-off host
    precomputation; counts[j] <= cap)."""
    out = np.empty(len(counts), np.int64)
    block, fill = 0, 0
    for j, c in enumerate(counts.tolist()):
        if fill + c > cap:
            block, fill = block + 1, 0
        out[j] = block
        fill += c
    return out


def _rank_plan(ds: Dataset, split: str, cap: int) -> dict:
    truth = ds.split(split)
    users = truth.users_with_items().astype(np.int64)
    counts = truth.row_lengths()[users]
    ublock = _greedy_blocks(counts, cap)
    n_blocks = int(ublock[-1]) + 1 if len(users) else 0
    urow = _slots(ublock, n_blocks)
    owner, t_item = _expand(truth, users)                       # truth pairs, user order
    pblock = ublock[owner]
    pslot = _slots(pblock, n_blocks)
    m_owner, m_item = _expand(ds.train, users[owner])           # train items per pair
    mblock = pblock[m_owner]
    mslot = _slots(mblock, n_blocks)
    return dict(n_blocks=n_blocks, ublock=ublock, urow=urow, users=users, counts=counts,
                owner=owner, t_item=t_item, pblock=pblock, pslot=pslot, m_owner=m_owner,
                m_item=m_item, mblock=mblock, mslot=mslot,
                width=int(np.bincount(mblock, minlength=max(n_blocks, 1)).max(initial=0)))


def _user_plan(ds: Dataset, users: np.ndarray, block: int, truth: CSR | None) -> dict:
    n_blocks = -(-len(users) // block)
    ublock = np.arange(len(users)) // block
    out = dict(n_blocks=n_blocks, users=users, ublock=ublock, urow=np.arange(len(users)) % block)
    for name, csr in (("train", ds.train), ("truth", truth)):
        if csr is None:
            continue
        owner, items = _expand(csr, users)
        out[name] = (ublock[owner], out["urow"][owner].astype(np.int32), items)
        out[name + "_width"] = int(np.bincount(ublock[owner], minlength=max(n_blocks, 1))
                                   .max(initial=0))
    return out


class Evaluator:
    """Full-ranking evaluator for one dataset (see the module docstring).

    ks: cut-offs (max(ks) <= n_items). method: "rank" (default, fast) or "topk";
    identical numbers. batch_users: the most score rows per block, i.e. truth pairs
    (method "rank") or users (method "topk"); raised to the largest truth set if needed.
    max_block_mib: a further cap so that one block's [rows, n_items] float32 score
    matrix stays within this many MiB; default (None): 8 MiB on CPU (measured on a 2-core
    VM: blocks of ~30 MB and more ran 3-6x slower per row, ~8-16 MB blocks were
    fastest), no cap on accelerators. All blocks of the valid and test splits share one
    compiled program.
    """

    def __init__(self, dataset: Dataset, ks: Sequence[int] = DEFAULT_KS,
                 batch_users: int = 4096, method: str = "rank",
                 max_block_mib: float | None = None):
        ks = tuple(sorted({int(k) for k in ks}))
        if not ks or ks[0] < 1:
            raise ValueError(f"ks must be positive integers, got {ks}")
        if ks[-1] > dataset.n_items:
            raise ValueError(f"max(ks)={ks[-1]} exceeds n_items={dataset.n_items}")
        if method not in ("rank", "topk"):
            raise ValueError(f"method must be 'rank' or 'topk', got {method!r}")
        if batch_users < 1:
            raise ValueError("batch_users must be >= 1")
        self.dataset = dataset
        self.ks = ks
        self.method = method
        if max_block_mib is None and jax.default_backend() == "cpu":
            max_block_mib = _CPU_BLOCK_MIB
        if max_block_mib is not None:
            cap_rows = int(max_block_mib * 2**20) // (4 * max(dataset.n_items, 1))
            batch_users = min(int(batch_users), max(8, cap_rows // 8 * 8))
        splits = ("valid", "test")
        if method == "rank":
            most = max(int(dataset.split(s).row_lengths().max(initial=0)) for s in splits)
            total = max(dataset.split(s).nnz for s in splits)
            self.block = max(min(int(batch_users), _round_up(total, 8)), most, 1)
            self._plans = {s: _rank_plan(dataset, s, self.block) for s in splits}
            self._width = _round_up(max(p["width"] for p in self._plans.values()),
                                    _PAD_MULTIPLE)
        else:
            self.block = min(int(batch_users), _round_up(dataset.n_users, 8))
            self._plans = {s: _user_plan(dataset, dataset.split(s).users_with_items(),
                                         self.block, dataset.split(s)) for s in splits}
            self._width = _round_up(max(p["train_width"] for p in self._plans.values()),
                                    _PAD_MULTIPLE)
            self._width_truth = _round_up(max(p["truth_width"] for p in self._plans.values()),
                                          _PAD_MULTIPLE)
        self._blocks_cache: dict[str, list[tuple[jax.Array, ...]]] = {}

    # -- precomputation
    def n_evaluated(self, split: str) -> int:
        """Number of users averaged over for `split` (users with truth items)."""
        return len(self._plan(split)["users"])

    def _plan(self, split: str) -> dict:
        if split not in self._plans:
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        return self._plans[split]

    def _blocks(self, split: str) -> list[tuple[jax.Array, ...]]:
        """Per-block device arrays for `split` (built once, then cached)."""
        if split in self._blocks_cache:
            return self._blocks_cache[split]
        p, n_blocks, B = self._plan(split), self._plan(split)["n_blocks"], self.block
        n_truth = np.zeros((n_blocks, B), np.float32)
        n_truth[p["ublock"], p["urow"]] = p["counts"] if "counts" in p else \
            self.dataset.split(split).row_lengths()[p["users"]]
        if self.method == "rank":
            p_user, p_item, p_row = _pack(p["pblock"], p["pslot"], n_blocks, B, [
                (p["users"][p["owner"]].astype(np.int32), 0), (p["t_item"], 0),
                (p["urow"][p["owner"]].astype(np.int32), B)])
            m_pair, m_item = _pack(p["mblock"], p["mslot"], n_blocks, self._width, [
                (p["pslot"][p["m_owner"]].astype(np.int32), B), (p["m_item"], 0)])
            arrays = (p_user, p_item, p_row, n_truth, m_pair, m_item)
        else:
            users = np.zeros((n_blocks, B), np.int32)
            users[p["ublock"], p["urow"]] = p["users"]
            tr_blk, tr_row, tr_item = p["train"]
            tr = _pack(tr_blk, _slots(tr_blk, n_blocks), n_blocks, self._width,
                       [(tr_row, B), (tr_item, 0)])
            t_blk, t_row, t_item = p["truth"]
            te = _pack(t_blk, _slots(t_blk, n_blocks), n_blocks, self._width_truth,
                       [(t_row, B), (t_item, 0)])
            arrays = (users, n_truth, *tr, *te)
        blocks = [tuple(jnp.asarray(a[b]) for a in arrays) for b in range(n_blocks)]
        self._blocks_cache[split] = blocks
        return blocks

    # -- evaluation
    def evaluate_sums(self, user_emb, item_emb, split: str) -> jax.Array:
        """Device array of metric sums over users (order: METRICS x ks); no host sync."""
        user_emb, item_emb = self._embs(user_emb, item_emb)
        fn = _eval_rank_block if self.method == "rank" else _eval_topk_block
        acc = jnp.asarray(np.zeros((len(METRICS) * len(self.ks),), np.float32))
        for blk in self._blocks(split):
            acc = fn(acc, user_emb, item_emb, *blk, ks=self.ks)
        return acc

    def evaluate(self, user_emb, item_emb, split: str) -> dict[str, float]:
        """{"recall@20": ..., ...} averaged over users with truth items in `split`."""
        n = self.n_evaluated(split)
        sums = np.asarray(self.evaluate_sums(user_emb, item_emb, split), dtype=np.float64)
        return {key: float(s / max(n, 1)) for key, s in zip(_metric_keys(self.ks), sums)}

    def topk(self, user_emb, item_emb, users: np.ndarray, k: int,
             mask_train: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (items [n, k] int32, scores [n, k] float32) for `users`, ranked as in
        evaluation (train items at -inf unless mask_train=False; ties -> lower item
        index). Masked items appear (score -inf) only if fewer than k items remain."""
        k = int(k)
        if not 1 <= k <= self.dataset.n_items:
            raise ValueError(f"k must be in [1, n_items={self.dataset.n_items}], got {k}")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if len(users) and (users.min() < 0 or users.max() >= self.dataset.n_users):
            raise ValueError("user ids out of range")
        if not len(users):
            return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
        user_emb, item_emb = self._embs(user_emb, item_emb)
        B = min(self.block, _round_up(len(users), 8))
        p = _user_plan(self.dataset, users, B, None)
        n_blocks = p["n_blocks"]
        u = np.zeros((n_blocks, B), np.int32)
        u[p["ublock"], p["urow"]] = users
        if mask_train:
            blk, row, item = p["train"]
            width = _round_up(p["train_width"], _PAD_MULTIPLE)
            tr_r, tr_c = _pack(blk, _slots(blk, n_blocks), n_blocks, width,
                               [(row, B), (item, 0)])
        else:
            tr_r = np.full((n_blocks, 1), B, np.int32)
            tr_c = np.zeros((n_blocks, 1), np.int32)
        outs = [_topk_block(user_emb, item_emb, u[b], tr_r[b], tr_c[b], k=k,
                            mask_train=mask_train) for b in range(n_blocks)]
        outs = jax.device_get(outs)                                   # one transfer
        idx = np.concatenate([o[0] for o in outs])[: len(users)]
        val = np.concatenate([o[1] for o in outs])[: len(users)]
        return idx.astype(np.int32), val.astype(np.float32)

    def _embs(self, user_emb, item_emb) -> tuple[jax.Array, jax.Array]:
        user_emb = jnp.asarray(user_emb, dtype=jnp.float32)
        item_emb = jnp.asarray(item_emb, dtype=jnp.float32)
        ds = self.dataset
        if user_emb.ndim != 2 or user_emb.shape[0] != ds.n_users:
            raise ValueError(f"user_emb must be [{ds.n_users}, d], got {user_emb.shape}")
        if item_emb.ndim != 2 or item_emb.shape[0] != ds.n_items:
            raise ValueError(f"item_emb must be [{ds.n_items}, d], got {item_emb.shape}")
        if user_emb.shape[1] != item_emb.shape[1]:
            raise ValueError(f"embedding dims differ: {user_emb.shape} vs {item_emb.shape}")
        return user_emb, item_emb
