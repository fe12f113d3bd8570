"""Ranking in blocks: the jitted per-block kernels and the host-side planning and
packing of users / truth pairs / train items into equal-shaped blocks.

Ranking order and ties
----------------------
Items are ranked by score, descending; equal scores (float equality, so -0.0 == +0.0)
are broken by the LOWER item index first. That is what ``jax.lax.top_k`` does (XLA's
TopK compares ``(value, -index)``; verified in the tests), except that XLA's comparator
orders -0.0 below +0.0, so the top_k paths first canonicalise -0.0 to +0.0. Scores must
not be NaN. A masked (train) item never counts as a hit, even if it is also a truth item
(it sits at -inf, behind every unmasked item). The rule applies to the float32 scores as
computed: it holds exactly on any CPU, but two mathematically equal inner products tie
for certain only where they are exact in float32 (e.g. small-integer or dyadic
embeddings, as in tests/test_evaluate.py); otherwise the matmul kernel's rounding, which
may differ between CPUs and between the "rank" and "topk" block shapes, can separate them.

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

Both feed the matrix form of :func:`metrics.metrics_from_hits` (``metrics_matrix``).
``topk_block`` serves :meth:`Evaluator.topk`, which exports the top-k item lists
themselves (``jax.lax.top_k``, same masking and ties).

The host side: ``rank_plan`` / ``user_plan`` assign users and their (row, item) pairs to
blocks (``RankPlan`` / ``UserPlan``, built once per dataset); ``rank_block_arrays`` /
``user_block_arrays`` pack a plan into the kernels' per-block arrays.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recgoat_jax.data.dataset import CSR, Dataset
from recgoat_jax.evaluate.metrics import HIGHEST, metrics_matrix


# ----------------------------------------------------------------------------- device
def _canonical(scores: jax.Array) -> jax.Array:
    """-0.0 -> +0.0 (for lax.top_k, whose comparator orders -0.0 below +0.0)."""
    return jnp.where(scores == 0, jnp.zeros_like(scores), scores)


def _scores(user_emb, item_emb, users):
    return jnp.dot(user_emb[users], item_emb.T, preferred_element_type=jnp.float32)


def _block_sums(hits, n_truth, ks):
    per_user = metrics_matrix(hits, n_truth, ks)                   # [B, metrics, ks]
    weight = (n_truth > 0).astype(jnp.float32)
    return jnp.einsum("b,bmk->mk", weight, per_user, precision=HIGHEST).reshape(-1)


@functools.partial(jax.jit, static_argnames=("ks",), donate_argnums=(0,))
def eval_rank_block(acc, user_emb, item_emb, p_user, p_item, p_row, n_truth, m_pair,
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
def eval_topk_block(acc, user_emb, item_emb, users, n_truth, tr_rows, tr_cols, t_rows,
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
def topk_block(user_emb, item_emb, users, tr_rows, tr_cols, *, k: int, mask_train: bool):
    """Top-k (items [B, k] int32, scores [B, k]) of a block of users [B]; train (row, item)
    pairs [W] set to -inf when mask_train (pads: row B)."""
    scores = _canonical(_scores(user_emb, item_emb, users))
    if mask_train:
        scores = scores.at[tr_rows, tr_cols].set(-jnp.inf, mode="drop")
    vals, idx = jax.lax.top_k(scores, k)
    return idx.astype(jnp.int32), vals


# ----------------------------------------------------------------------------- host prep
def round_up(x: int, m: int) -> int:
    """x rounded up to a multiple of m, at least m."""
    return max(m, -(-x // m) * m)


class RankPlan(NamedTuple):
    """Blocks of whole users for method "rank", at most `cap` truth pairs per block.

    U evaluated users (those with truth items), P truth pairs, M masked (train) pairs:
      users [U] int64 ascending; counts [U] truth items per user;
      ublock, urow [U] the block of each user and its row in the block;
      owner [P] the user (index into users) of each truth pair; t_item [P] int32 its item;
      pblock, pslot [P] the block and slot of each truth pair;
      m_owner [M] the truth pair (index into the P pairs) each train item is masked for;
      m_item [M] int32 that train item; mblock, mslot [M] its block and slot;
      width: the most masked pairs in one block.
    """

    n_blocks: int
    users: np.ndarray
    counts: np.ndarray
    ublock: np.ndarray
    urow: np.ndarray
    owner: np.ndarray
    t_item: np.ndarray
    pblock: np.ndarray
    pslot: np.ndarray
    m_owner: np.ndarray
    m_item: np.ndarray
    mblock: np.ndarray
    mslot: np.ndarray
    width: int


class Pairs(NamedTuple):
    """E (user, item) pairs of a UserPlan, by block: block [E], row [E] int32 (the user's
    row in its block), item [E] int32; width: the most pairs in one block."""

    block: np.ndarray
    row: np.ndarray
    item: np.ndarray
    width: int


class UserPlan(NamedTuple):
    """Blocks of `block` consecutive users for method "topk" and Evaluator.topk.

    users [U]; ublock, urow [U] the block of each user and its row in the block;
    counts [U] truth items per user (None without truth); train, truth: the users' train
    and truth items as Pairs (truth None when not asked for)."""

    n_blocks: int
    users: np.ndarray
    ublock: np.ndarray
    urow: np.ndarray
    counts: np.ndarray | None
    train: Pairs
    truth: Pairs | None


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


def rank_plan(ds: Dataset, split: str, cap: int) -> RankPlan:
    """The RankPlan of `split`'s users (cap >= the largest truth set)."""
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
    return RankPlan(n_blocks=n_blocks, users=users, counts=counts, ublock=ublock, urow=urow,
                    owner=owner, t_item=t_item, pblock=pblock, pslot=pslot, m_owner=m_owner,
                    m_item=m_item, mblock=mblock, mslot=mslot,
                    width=int(np.bincount(mblock, minlength=max(n_blocks, 1)).max(initial=0)))


def user_plan(ds: Dataset, users: np.ndarray, block: int, truth: CSR | None) -> UserPlan:
    """The UserPlan of `users` in blocks of `block`, with their train items and, given a
    truth CSR, their truth items."""
    n_blocks = -(-len(users) // block)
    ublock = np.arange(len(users)) // block
    urow = np.arange(len(users)) % block

    def pairs(csr: CSR) -> Pairs:
        owner, items = _expand(csr, users)
        return Pairs(ublock[owner], urow[owner].astype(np.int32), items,
                     int(np.bincount(ublock[owner], minlength=max(n_blocks, 1)).max(initial=0)))

    return UserPlan(n_blocks=n_blocks, users=users, ublock=ublock, urow=urow,
                    counts=None if truth is None else truth.row_lengths()[users],
                    train=pairs(ds.train), truth=None if truth is None else pairs(truth))


def rank_block_arrays(plan: RankPlan, block: int, width: int) -> tuple[np.ndarray, ...]:
    """eval_rank_block's arrays for every block, each [n_blocks, ...]: p_user, p_item,
    p_row [n_blocks, block]; n_truth [n_blocks, block] float32; m_pair, m_item
    [n_blocks, width] (width >= plan.width)."""
    p, B = plan, block
    n_truth = np.zeros((p.n_blocks, B), np.float32)
    n_truth[p.ublock, p.urow] = p.counts
    p_user, p_item, p_row = _pack(p.pblock, p.pslot, p.n_blocks, B, [
        (p.users[p.owner].astype(np.int32), 0), (p.t_item, 0),
        (p.urow[p.owner].astype(np.int32), B)])
    m_pair, m_item = _pack(p.mblock, p.mslot, p.n_blocks, width, [
        (p.pslot[p.m_owner].astype(np.int32), B), (p.m_item, 0)])
    return p_user, p_item, p_row, n_truth, m_pair, m_item


def pack_pairs(pairs: Pairs, n_blocks: int, block: int, width: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, items), each [n_blocks, width] int32 (width >= pairs.width); pads: row
    `block`, item 0, which the kernels' scatters drop."""
    rows, items = _pack(pairs.block, _slots(pairs.block, n_blocks), n_blocks, width,
                        [(pairs.row, block), (pairs.item, 0)])
    return rows, items


def user_block_arrays(plan: UserPlan, block: int, width: int, width_truth: int
                      ) -> tuple[np.ndarray, ...]:
    """eval_topk_block's arrays for every block: users, n_truth [n_blocks, block]; train
    rows, items [n_blocks, width]; truth rows, items [n_blocks, width_truth]."""
    p, B = plan, block
    users = np.zeros((p.n_blocks, B), np.int32)
    users[p.ublock, p.urow] = p.users
    n_truth = np.zeros((p.n_blocks, B), np.float32)
    n_truth[p.ublock, p.urow] = p.counts
    return (users, n_truth, *pack_pairs(p.train, p.n_blocks, B, width),
            *pack_pairs(p.truth, p.n_blocks, B, width_truth))
