"""Screen (issue 22, item 4): variants of RecGOAT's collaborative user branch
(model.user_branch=cf) on VALID Recall@20, one seed, at realdata.py's chosen RecGOAT point
-> experiments/results/user_cf_variants.json

Today's branch ("post"): e_u <- e_u + g * mean_{v in kNN_text(u)} e_v after the ID
branch (LightGCN), g learned from 0.5, k = model.knn.user_k (10). Variants, each an
experiment-side subclass of RecGOATNet registered under its own model name (the package is
not touched):

  ego     the neighbour mean on the ego rows BEFORE propagation:
          u0 <- u0 + g * mean_v u0_v, so item embeddings also learn from text neighbours
  soft    post, the neighbours weighted by softmax(cos(u, v) / TAU) of their user-text
          cosine instead of the plain mean (k from --k, e.g. 20)
  layer   the neighbour term inside every LightGCN layer:
          u_{l+1} = A i_l + g * mean_v u_l,v ; i_{l+1} = A^T u_l; layer mean as LightGCN

Protocol of a realdata.py run (train.min_epochs 100, warmup_steps 0, patience 20, 1000
epochs, test at the best valid epoch); test is reported beside valid, never used.

    python experiments/user_cf_variants.py --data debian-ut=data/debian-ut \\
        --variant ego --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT))

import realdata  # noqa: E402
from recgoat_jax.graphs import inputs as inputs_lib  # noqa: E402
from recgoat_jax.model import lightgcn, recgoat, registry  # noqa: E402
from recgoat_jax.model.recgoat_config import RecGOATConfig  # noqa: E402
from recgoat_jax.train.loop import train, versions  # noqa: E402

TAU = 0.1  # softmax temperature of "soft" (user-text cosines of the top 20: ~0.47-0.69 median)
POINT = ["train.lr=0.005", "train.lambda_cl=0.01", "model.edge_dropout=0.5"]  # realdata's


class VariantNet(recgoat.RecGOATNet):
    """RecGOATNet with the user_cf step moved or reweighted (variant: ego / soft / layer)."""

    variant: str = "post"

    @nn.compact
    def __call__(self, inputs: dict, deterministic: bool = True) -> recgoat.NetOutput:
        from recgoat_jax.model.base import init_embedding

        user_ego = self.param("user_emb", lambda k, s: init_embedding(k, *s, self.init_name),
                              (self.n_users, self.dim))
        item_ego = self.param("item_emb", lambda k, s: init_embedding(k, *s, self.init_name),
                              (self.n_items, self.dim))
        gate = self.param("user_cf_gate", lambda k: jnp.float32(recgoat.USER_CF_INIT))
        nbrs = inputs["user_knn_rows"]  # [U, k]
        z_user = None
        if self.variant == "ego":
            u0 = user_ego + gate * user_ego[nbrs].mean(axis=1)
            e_u, e_i = self.encode_ui(inputs, u0, item_ego, deterministic)
        elif self.variant == "layer":
            e_u, e_i = _propagate_with_users(inputs["adjacency"], user_ego, item_ego, nbrs,
                                             gate, self.n_layers_ui)
        else:
            e_u, e_i = self.encode_ui(inputs, user_ego, item_ego, deterministic)
            if self.variant == "soft":
                w = inputs["user_knn_w"]  # [U, k], rows sum to 1
                z_user = gate * jnp.einsum("uk,ukd->ud", w, e_u[nbrs])
            else:
                z_user = gate * e_u[nbrs].mean(axis=1)
            e_u = e_u + z_user

        return self.item_side(inputs, user_ego, item_ego, e_u, e_i, z_user, deterministic)

    n_layers_ui: int = 2


def _propagate_with_users(adj, users, items, nbrs, gate, n_layers):
    """LightGCN's layer mean with a user-user term in every layer (see the docstring)."""
    acc_u, acc_i = users, items
    u, i = users, items
    for _ in range(n_layers):
        nu, ni = lightgcn.bipartite_propagate(adj, u, i)
        u, i = nu + gate * u[nbrs].mean(axis=1), ni
        acc_u, acc_i = acc_u + u, acc_i + i
    return acc_u / (n_layers + 1), acc_i / (n_layers + 1)


SPEC = {"variant": "post", "k": 10}


def _weights(dataset, cfg, cache_dir):
    """[U, k] softmax(cos / TAU) over each user's user_knn_rows (the same rows)."""
    feats = np.asarray(dataset.user_features, np.float32)
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    rows = np.asarray(inputs_lib.user_knn_rows(dataset, cfg, cache_dir))
    cos = np.einsum("ud,ukd->uk", x, x[rows]) / TAU
    cos -= cos.max(axis=1, keepdims=True)
    w = np.exp(cos)
    return jnp.asarray(w / w.sum(axis=1, keepdims=True), jnp.float32)


def _build(cfg, shapes):
    base = recgoat.build(cfg, shapes)
    net = base.net
    fields = {f.name: getattr(net, f.name) for f in dataclasses.fields(net)
              if f.init and f.name not in ("parent", "name")}
    fields.update(user_cf=True, variant=SPEC["variant"], n_layers_ui=cfg.model.n_layers)
    needs = list(base.needs)
    if SPEC["variant"] == "soft":
        needs.append("user_knn_w")
    if SPEC["variant"] == "layer" and "adjacency" not in needs:
        needs.append("adjacency")
    return dataclasses.replace(base, net=VariantNet(**fields), needs=tuple(needs))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, metavar="NAME=DIR")
    ap.add_argument("--variant", required=True, choices=("post", "ego", "soft", "layer"))
    ap.add_argument("--k", type=int, default=10, help="model.knn.user_k (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="extra overrides (smoke runs)")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "user_cf_variants"))
    ap.add_argument("--out", default=str(ROOT / "experiments/results/user_cf_variants.json"))
    args = ap.parse_args(argv)
    SPEC.update(variant=args.variant, k=args.k)
    registry.MODELS["recgoat_ucfv"] = registry.Entry(RecGOATConfig, _build)
    inputs_lib.BUILDERS["user_knn_w"] = _weights
    name, _, path = args.data.partition("=")
    label = f"{args.variant}_k{args.k}" + (f"_tau{TAU}" if args.variant == "soft" else "")
    key = f"{name}/{label}/s{args.seed}"
    _, base, fixed, _ = realdata.MODELS["recgoat"]
    overrides = fixed + POINT + ["model.user_branch=cf", f"model.knn.user_k={args.k}",
                                 "model.name=recgoat_ucfv", "train.checkpoint=false",
                                 "train.tensorboard=false", *args.set]
    cfg = realdata.config_for(path, base, overrides, args.seed)
    res = train(cfg, run_dir=Path(args.runs_dir) / key.replace("/", "_"), progress=False,
                log=lambda s: print(s, flush=True))
    row = {"valid_recall@20": res["valid"]["recall@20"], "test_recall@20": res["test"]["recall@20"],
           "test_ndcg@20": res["test"]["ndcg@20"], "best_epoch": res["best_epoch"],
           "epochs_run": res["epochs_run"], "epoch_time_s_median": res.get("epoch_time_s_median"),
           "overrides": overrides, "command": " ".join([Path(sys.executable).name, *sys.argv])}
    out = Path(args.out)  # two processes may finish together: re-read just before writing
    report = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    report["runs"][key] = row
    report.update({"machine": platform.platform(), "versions": versions(),
                   "protocol": "realdata.py's (min_epochs 100, warmup 0, patience 20), seed "
                               f"{args.seed}, point {' '.join(POINT)}; softmax TAU {TAU}"})
    out.write_text(json.dumps(report, indent=2))
    print(key, json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
