"""Evaluation by user group: the evaluator's metrics averaged over a subset of users.

A group is a boolean mask over users [n_users]; its metrics are the Evaluator's
full-ranking metrics (train items masked) averaged over the group's users that have
truth items in the split, computed by the Evaluator's own kernels
(``Evaluator.evaluate(..., users_mask=mask)``: one evaluation pass per group).

    groups = activity_groups(dataset)            # {"0-4": mask, "5-6": ..., ">10": ...}
    by_group = group_metrics(evaluator, user_emb, item_emb, "test", groups)
    # {"0-4": {"n_users": 812, "recall@20": 0.31, ...}, ...}

Activity groups bucket users by their number of TRAIN items.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from recgoat_jax.data.dataset import Dataset
from recgoat_jax.evaluate.evaluator import Evaluator

# (lo, hi) train items per user, both inclusive; hi None: no upper bound
# (experiments/realdata.py@6e4742d's BUCKETS, which wrote the open end as 10**9)
ACTIVITY_BUCKETS: tuple[tuple[int, int | None], ...] = ((0, 4), (5, 6), (7, 10), (11, None))
_OPEN = 10**9  # an upper edge this large counts as open (realdata.py's spelling)


def bucket_label(lo: int, hi: int | None) -> str:
    """(0, 4) -> "0-4"; (11, None) -> ">10"; (3, 3) -> "3"."""
    if hi is None or hi >= _OPEN:
        return f">{lo - 1}"
    return str(lo) if lo == hi else f"{lo}-{hi}"


def activity_groups(dataset: Dataset, edges: Sequence[tuple[int, int | None]] = ACTIVITY_BUCKETS
                    ) -> dict[str, np.ndarray]:
    """{label: mask [n_users] bool}: users with lo <= #train items <= hi, per (lo, hi)
    of `edges` (hi None or >= 10**9: no upper bound), in the order of edges."""
    n_train = dataset.train.row_lengths()
    out = {}
    for lo, hi in edges:
        if hi is not None and hi < lo:
            raise ValueError(f"activity bucket ({lo}, {hi}): hi must be >= lo")
        mask = n_train >= lo
        if hi is not None and hi < _OPEN:
            mask &= n_train <= hi
        out[bucket_label(lo, hi)] = mask
    return out


def group_metrics(evaluator: Evaluator, user_emb, item_emb, split: str,
                  groups: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """{label: {"n_users": n, "<metric>@<k>": value, ...}} per group, in the order of
    `groups` ({label: mask [n_users] bool}). user_emb [n_users, d], item_emb [n_items, d]
    as for Evaluator.evaluate; n_users counts the group's users with truth in `split`,
    whom the metrics average over. A group with none gets {"n_users": 0} only."""
    out = {}
    for label, mask in groups.items():
        n = evaluator.n_evaluated(split, mask)
        out[label] = {"n_users": n}
        if n:
            out[label].update(evaluator.evaluate(user_emb, item_emb, split, users_mask=mask))
    return out
