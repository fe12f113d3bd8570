"""The Evaluator: one dataset's block plans, built once, and the full-ranking evaluation
and top-k export over them (the ranking rules are in blocks.py, the metrics in
metrics.py)."""

from __future__ import annotations

import hashlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recgoat_jax.data.dataset import Dataset
from recgoat_jax.evaluate.blocks import (
    RankPlan,
    UserPlan,
    eval_rank_block,
    eval_topk_block,
    pack_pairs,
    rank_block_arrays,
    rank_plan,
    round_up,
    topk_block,
    user_block_arrays,
    user_plan,
)
from recgoat_jax.evaluate.metrics import DEFAULT_KS, METRICS, metric_keys

_PAD_MULTIPLE = 256  # pair lists are padded to a multiple of this (fewer distinct shapes)
_CPU_BLOCK_MIB = 8.0  # default cap on one block's score matrix on CPU (see Evaluator)
_N_TRUTH = {"rank": 3, "topk": 1}  # where n_truth sits in a method's per-block arrays


def sum_over_processes(x: np.ndarray) -> np.ndarray:
    """x [n, ...] float32 on every process -> [n, ...] float64: the sum over processes of
    their x, added in process order (every process gets the same bits)."""
    x = np.asarray(x, np.float32)
    if jax.process_count() == 1:
        return x.astype(np.float64)
    from jax.experimental import multihost_utils

    every = np.asarray(multihost_utils.process_allgather(x))  # [n_processes, n, ...]
    return every.astype(np.float64).sum(axis=0)


class Evaluator:
    """Full-ranking evaluator for one dataset (ranking rules and methods: blocks.py).

    ks: cut-offs (max(ks) <= n_items). method: "rank" (default, fast) or "topk";
    identical numbers. batch_users: the most score rows per block, i.e. truth pairs
    (method "rank") or users (method "topk"); raised to the largest truth set if needed.
    max_block_mib: a further cap so that one block's [rows, n_items] float32 score
    matrix stays within this many MiB; default (None): 8 MiB on CPU (why:
    docs/performance.md), no cap on accelerators. All blocks of the valid and test splits
    share one compiled program.
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
            self.block = max(min(int(batch_users), round_up(total, 8)), most, 1)
            self._plans: dict[str, RankPlan | UserPlan] = {
                s: rank_plan(dataset, s, self.block) for s in splits}
            self._width = round_up(max(p.width for p in self._plans.values()), _PAD_MULTIPLE)
        else:
            self.block = min(int(batch_users), round_up(dataset.n_users, 8))
            self._plans = {s: user_plan(dataset, dataset.split(s).users_with_items(),
                                        self.block, dataset.split(s)) for s in splits}
            self._width = round_up(max(p.train.width for p in self._plans.values()),
                                   _PAD_MULTIPLE)
            self._width_truth = round_up(max(p.truth.width for p in self._plans.values()),
                                         _PAD_MULTIPLE)
        self._blocks_cache: dict = {}  # split / (host|dev, split, ...) -> blocks

    # -- precomputation
    def n_evaluated(self, split: str, users_mask: np.ndarray | None = None) -> int:
        """Number of users averaged over for `split`: users with truth items (and, given
        users_mask [n_users] bool, in the mask)."""
        users = self._plan(split).users
        if users_mask is None:
            return len(users)
        return int(self._check_mask(users_mask)[users].sum())

    def _check_mask(self, users_mask) -> np.ndarray:
        mask = np.asarray(users_mask)
        n = self.dataset.n_users
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise ValueError(f"users_mask must be a bool array [n_users={n}], got "
                             f"{mask.dtype} {mask.shape}")
        return mask

    def _plan(self, split: str) -> RankPlan | UserPlan:
        if split not in self._plans:
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        return self._plans[split]

    def _mask_key(self, users_mask) -> str | None:
        """A cache key for users_mask (None: every user)."""
        if users_mask is None:
            return None
        return hashlib.sha1(np.packbits(self._check_mask(users_mask)).tobytes()).hexdigest()

    def _blocks(self, split: str, users_mask: np.ndarray | None = None
                ) -> list[tuple[jax.Array, ...]]:
        """Per-block device arrays for `split` (built once, then cached); with users_mask,
        the same arrays but a masked n_truth (_masked_n_truth, cached per mask)."""
        if split not in self._blocks_cache:
            self._blocks_cache[split] = [tuple(jnp.asarray(a) for a in blk)
                                         for blk in self._host_blocks(split)]
        blocks = self._blocks_cache[split]
        if users_mask is None:
            return blocks
        key = ("mask", split, self._mask_key(users_mask))
        if key not in self._blocks_cache:
            self._blocks_cache[key] = [jnp.asarray(n)
                                       for n in self._masked_n_truth(split, users_mask)]
        return self._swap_n_truth(blocks, self._blocks_cache[key])

    def _host_blocks(self, split: str) -> list[tuple[np.ndarray, ...]]:
        """Per-block host arrays for `split` (built once, then cached)."""
        key = ("host", split)
        if key in self._blocks_cache:
            return self._blocks_cache[key]
        p = self._plan(split)
        if self.method == "rank":
            arrays = rank_block_arrays(p, self.block, self._width)
        else:
            arrays = user_block_arrays(p, self.block, self._width, self._width_truth)
        blocks = [tuple(a[b] for a in arrays) for b in range(p.n_blocks)]
        self._blocks_cache[key] = blocks
        return blocks

    def _masked_n_truth(self, split: str, users_mask: np.ndarray) -> list[np.ndarray]:
        """Each block's n_truth (host) with 0 for the users outside users_mask [n_users]:
        the kernels give a user without truth weight 0, so the sums cover the mask's users
        only, with the same blocks, shapes and compiled kernels."""
        p = self._plan(split)
        keep = np.zeros((p.n_blocks, self.block), np.float32)   # [n_blocks, rows]
        keep[p.ublock, p.urow] = self._check_mask(users_mask)[p.users]
        at = _N_TRUTH[self.method]
        return [blk[at] * keep[b] for b, blk in enumerate(self._host_blocks(split))]

    def _swap_n_truth(self, blocks: list[tuple], n_truths: list) -> list[tuple]:
        at = _N_TRUTH[self.method]
        return [blk[:at] + (n,) + blk[at + 1:] for blk, n in zip(blocks, n_truths)]

    def _device_blocks(self, split: str, devices: tuple, users_mask: np.ndarray | None = None
                       ) -> list[tuple[int, tuple]]:
        """[(slot, arrays on devices[slot])] of the blocks this process evaluates when the
        blocks of `split` are dealt round-robin over `devices` (block b -> slot b % n);
        users_mask: as in _blocks."""
        here = jax.process_index()
        mine = lambda b: devices[b % len(devices)].process_index == here  # noqa: E731
        key = ("dev", split, devices)
        if key not in self._blocks_cache:
            self._blocks_cache[key] = [
                (b % len(devices), tuple(jax.device_put(a, devices[b % len(devices)])
                                         for a in blk))
                for b, blk in enumerate(self._host_blocks(split)) if mine(b)]
        blocks = self._blocks_cache[key]
        if users_mask is None:
            return blocks
        mkey = ("dev-mask", split, devices, self._mask_key(users_mask))
        if mkey not in self._blocks_cache:
            self._blocks_cache[mkey] = [
                jax.device_put(n, devices[b % len(devices)])
                for b, n in enumerate(self._masked_n_truth(split, users_mask)) if mine(b)]
        swapped = self._swap_n_truth([blk for _, blk in blocks], self._blocks_cache[mkey])
        return [(slot, blk) for (slot, _), blk in zip(blocks, swapped)]

    # -- evaluation
    def evaluate_sums(self, user_emb, item_emb, split: str,
                      users_mask: np.ndarray | None = None) -> jax.Array:
        """Device array of metric sums over users (order: METRICS x ks); no host sync.
        users_mask [n_users] bool: sums over the mask's users only."""
        user_emb, item_emb = self._embs(user_emb, item_emb)
        fn = eval_rank_block if self.method == "rank" else eval_topk_block
        acc = jnp.asarray(np.zeros((len(METRICS) * len(self.ks),), np.float32))
        for blk in self._blocks(split, users_mask):
            acc = fn(acc, user_emb, item_emb, *blk, ks=self.ks)
        return acc

    def evaluate_sums_sharded(self, user_emb: jax.Array, item_emb: jax.Array,
                              split: str, users_mask: np.ndarray | None = None) -> np.ndarray:
        """Host float64 metric sums over users, the users split across devices.

        user_emb [n_users, d], item_emb [n_items, d]: fully replicated jax.Arrays over a
        set of devices, possibly of several processes (e.g. the out_shardings=P() output
        of a jit over the training mesh). The blocks of users are dealt round-robin over
        those devices (sorted by id); each device scores its blocks against its own copy,
        each process sums its devices' sums, and the per-slot sums are added over
        processes in slot order, so every process (and a single process with the same
        device count) gets the same numbers. users_mask: as in evaluate_sums."""
        devices = tuple(sorted(user_emb.sharding.device_set, key=lambda d: d.id))
        copies = {s.device: s.data.astype(jnp.float32) for s in user_emb.addressable_shards}
        items = {s.device: s.data.astype(jnp.float32) for s in item_emb.addressable_shards}
        self._embs(user_emb, item_emb)  # shape checks only
        fn = eval_rank_block if self.method == "rank" else eval_topk_block
        width = len(METRICS) * len(self.ks)
        accs: dict[int, jax.Array] = {}
        blocks = (self._device_blocks(split, devices) if users_mask is None
                  else self._device_blocks(split, devices, users_mask))
        for slot, blk in blocks:
            dev = devices[slot]
            acc = accs.get(slot)
            if acc is None:
                acc = jax.device_put(np.zeros((width,), np.float32), dev)
            accs[slot] = fn(acc, copies[dev], items[dev], *blk, ks=self.ks)
        per_slot = np.zeros((len(devices), width), np.float32)
        for slot, acc in jax.device_get(accs).items():
            per_slot[slot] = acc
        return sum_over_processes(per_slot).sum(axis=0)

    def evaluate(self, user_emb, item_emb, split: str,
                 users_mask: np.ndarray | None = None) -> dict[str, float]:
        """{"recall@20": ..., ...} averaged over users with truth items in `split` (and,
        given users_mask [n_users] bool, in the mask: evaluate/groups.py; 0.0 for every
        metric when no user is left). A fully replicated jax.Array over several devices
        is evaluated with the users split across them (evaluate_sums_sharded), otherwise
        on one device."""
        n = self.n_evaluated(split, users_mask)
        if isinstance(user_emb, jax.Array) and len(user_emb.sharding.device_set) > 1:
            sums = self.evaluate_sums_sharded(user_emb, item_emb, split, users_mask)
        else:
            sums = np.asarray(self.evaluate_sums(user_emb, item_emb, split, users_mask),
                              dtype=np.float64)
        return {key: float(s / max(n, 1)) for key, s in zip(metric_keys(self.ks), sums)}

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
        B = min(self.block, round_up(len(users), 8))
        p = user_plan(self.dataset, users, B, None)
        u = np.zeros((p.n_blocks, B), np.int32)
        u[p.ublock, p.urow] = users
        if mask_train:
            tr_r, tr_c = pack_pairs(p.train, p.n_blocks, B, round_up(p.train.width, _PAD_MULTIPLE))
        else:
            tr_r = np.full((p.n_blocks, 1), B, np.int32)
            tr_c = np.zeros((p.n_blocks, 1), np.int32)
        outs = [topk_block(user_emb, item_emb, u[b], tr_r[b], tr_c[b], k=k,
                           mask_train=mask_train) for b in range(p.n_blocks)]
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
