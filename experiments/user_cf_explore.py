"""Exploration (issue 22): does collaborative signal along a user-user graph built from the
users' text help a learned model? -> experiments/results/user_cf_explore.json

LightGCN with one extra step after propagation: u' = u + g * mean_{v in kNN_text(u)} u_v,
the kNN over the rows of user_feat.npy (cosine, k neighbours, self excluded), g a learned
scalar from --gate-init (0 in the "off" row: plain LightGCN). Valid Recall@20 decides;
test is reported beside it. One seed per row: a screen for the design, not the protocol
of experiments/realdata.py.

    python experiments/user_cf_explore.py --data debian-text=data/debian-ut \\
        --data debian-template=data/debian-deps-dev
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recgoat_jax.config import make_config  # noqa: E402
from recgoat_jax.graphs import inputs as inputs_lib, knn  # noqa: E402
from recgoat_jax.model import lightgcn, registry  # noqa: E402
from recgoat_jax.model.lightgcn_config import LightGCNConfig  # noqa: E402
from recgoat_jax.train.loop import train, versions  # noqa: E402

K = {"k": 10, "gate_init": 0.5, "where": "post"}  # set from the command line before a run


@dataclasses.dataclass(frozen=True)
class LightGCNUserCF(lightgcn.LightGCN):
    gate_init: float = 0.5
    where: str = "post"  # post: after LightGCN; ego: on the ego rows, before it

    @property
    def needs(self):
        return ("adjacency", "user_text_nbrs")

    def init(self, key, inputs):
        return {**super().init(key, inputs), "ucf_gate": jnp.float32(self.gate_init)}

    def embed(self, params, inputs):
        nbrs = inputs["user_text_nbrs"]  # [U, k]
        ego = params["user"]
        if self.where == "ego":
            ego = ego + params["ucf_gate"] * ego[nbrs].mean(axis=1)
        users, items = lightgcn.propagate(inputs["adjacency"], ego, params["item"],
                                          self.n_layers)
        if self.where == "post":
            users = users + params["ucf_gate"] * users[nbrs].mean(axis=1)
        return users, items


def _nbrs(dataset, cfg, cache_dir):
    feats = np.asarray(dataset.user_features, np.float32)
    return jnp.asarray(knn.cosine_topk(feats, K["k"]), jnp.int32)


def _build(cfg, shapes):
    return LightGCNUserCF(shapes["n_users"], shapes["n_items"], cfg.model.dim, cfg.model.n_layers,
                          cfg.model.init, cfg.train.reg_weight, gate_init=K["gate_init"],
                          where=K["where"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--k", default="10", help="comma-separated neighbour counts")
    ap.add_argument("--gates", default="0.5", help="comma-separated initial gates")
    ap.add_argument("--where", default="post", choices=("post", "ego"))
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--runs-dir", default="runs/user_cf_explore")
    ap.add_argument("--out", default=str(ROOT / "experiments/results/user_cf_explore.json"))
    args = ap.parse_args(argv)
    registry.MODELS["lightgcn_ucf"] = registry.Entry(LightGCNConfig, _build)
    inputs_lib.BUILDERS["user_text_nbrs"] = _nbrs
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    report.update({"command": " ".join([Path(sys.executable).name, *sys.argv]),
                   "machine": platform.platform(), "versions": versions()})
    for spec in args.data:
        name, _, path = spec.partition("=")
        tag = "" if args.where == "post" else f"_{args.where}"
        points = [("off", None, None)] + [(f"k{k}_g{g}{tag}", int(k), float(g))
                                         for k in args.k.split(",") for g in args.gates.split(",")]
        for label, k, g in points:
            key = f"{name}/{label}/s{args.seed}"
            if key in report["runs"]:
                continue
            sets = [f"data.dataset={path}", f"train.seed={args.seed}", "train.checkpoint=false",
                    "train.tensorboard=false"]
            if k is not None:
                K.update(k=k, gate_init=g, where=args.where)
                sets.append("model.name=lightgcn_ucf")
            cfg = make_config(ROOT / "recgoat_jax/configs/lightgcn.yaml", sets)
            res = train(cfg, run_dir=Path(args.runs_dir) / key.replace("/", "_"), progress=False,
                        log=lambda s: None)
            report["runs"][key] = {"valid_recall@20": res["valid"]["recall@20"],
                                   "test_recall@20": res["test"]["recall@20"],
                                   "test_ndcg@20": res["test"]["ndcg@20"],
                                   "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"]}
            print(key, json.dumps(report["runs"][key]), flush=True)
            out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
