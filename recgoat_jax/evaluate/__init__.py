"""Full-ranking evaluation (MMRec protocol), jitted, in blocks.

Every user with truth items in the split gets ALL items scored by inner product
``user_emb[u] @ item_emb.T``, its TRAIN items masked (valid items are not masked when
testing), and Recall / NDCG / Precision / MAP / HitRate at each K, averaged over those
users. Ties go to the lower item index.

  metrics.py    the metric math: metrics_from_hits, metric keys, format_table
  blocks.py     ranking rules; jitted per-block kernels; host-side block plans / packing
  evaluator.py  Evaluator: plans built once per dataset, evaluate / evaluate_sums / topk
                (users_mask: the average over a subset of users)
  groups.py     metrics per user group: activity_groups (by train items), group_metrics

Import from here: ``from recgoat_jax.evaluate import Evaluator, format_table, ...``.
"""

from recgoat_jax.evaluate.evaluator import Evaluator
from recgoat_jax.evaluate.groups import (ACTIVITY_BUCKETS, activity_groups, bucket_label,
                                         group_metrics)
from recgoat_jax.evaluate.metrics import DEFAULT_KS, METRICS, format_table, metrics_from_hits

__all__ = ["ACTIVITY_BUCKETS", "DEFAULT_KS", "METRICS", "Evaluator", "activity_groups",
           "bucket_label", "format_table", "group_metrics", "metrics_from_hits"]
