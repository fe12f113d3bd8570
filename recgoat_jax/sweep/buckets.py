"""Test metrics by user activity for a finished run, from its best-valid checkpoint.

    best_checkpoint_buckets(cfg, run_dir, [(0, 4), (5, 10), (11, 10**9)])
      -> {"0-4": {"n_users": 812, "recall@20": .., "ndcg@20": ..}, ..., ">10": {...}}
"""

from __future__ import annotations

from pathlib import Path


def best_checkpoint_buckets(cfg, run_dir: Path, edges: list[tuple[int, int]]) -> dict:
    """Restores run_dir's best checkpoint of cfg's model and evaluates its test split by
    bucket of train items per user (lo <= n <= hi)."""
    from recgoat_jax.evaluate.groups import activity_buckets
    from recgoat_jax.train.checkpoint import Checkpoints
    from recgoat_jax.train.trainer import Trainer

    trainer = Trainer(cfg)
    like = trainer.logical(trainer.init_state().params)  # checkpoints are logical
    ckpt = Checkpoints(run_dir)
    params, _ = ckpt.restore_best(like)
    ckpt.close()
    user_emb, item_emb = trainer.embed_fn(params, trainer.inputs)
    return activity_buckets(trainer.dataset, user_emb, item_emb, edges, ks=(20,))
