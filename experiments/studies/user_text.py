"""RecGOAT with real user text vs template profiles, beside the tuned baselines and the
blend -> experiments/results/user_text.{json,md}

Issue 22's rows as ablations of realdata's RecGOAT: its chosen point on each set (chosen
on VALID) with the collaborative user branch on (model.user_branch=cf), 3 seeds, on the
build WITH the users file (recgoat_user_text: user_feat.npy embeds the users' own text)
and on the build without it (recgoat_user_template: profiles written from train items).
Beside them realdata's LightGCN, FREEDOM and RecGOAT rows and the blend model; they share
realdata's runs directory, so its finished runs are reused, not repeated.

    python -m experiments.study user_text --jobs 2 \\
        --data debian-deps-dev=data/debian-deps-dev --data debian-deps-dev:text=data/debian-ut \\
        --data ml100k-dev=data/ml100k-dev --data ml100k-dev:text=data/ml100k-ut
"""

from __future__ import annotations

import dataclasses

from experiments.studies import realdata
from recgoat_jax.sweep import Row, Study

DATA = {"ml100k-dev": {"main": "data/ml100k-dev", "text": "data/ml100k-ut"},
        "debian-deps-dev": {"main": "data/debian-deps-dev", "text": "data/debian-ut"}}
RUNS_DIR, OUT = realdata.RUNS_DIR, "experiments/results/user_text.json"
CF = ("model.user_branch=cf",)
ROWS = tuple(r for r in realdata.ROWS if r.name in ("lightgcn", "freedom", "recgoat", "blend")) + (
    Row("recgoat_user_text", "recgoat", "RecGOAT + collaborative user branch, real user text",
        parent="recgoat", fixed=CF, build="text", cost=3),
    Row("recgoat_user_template", "recgoat", "RecGOAT + collaborative user branch, template "
        "profiles", parent="recgoat", fixed=CF, build="text_template", cost=3))


def study(datasets, args=None) -> Study:
    return dataclasses.replace(realdata.study(datasets), name="user_text", rows=ROWS,
                               title="RecGOAT with real user text (issue 22)")


extra = realdata.extra

if __name__ == "__main__":
    from experiments.study import main

    raise SystemExit(main("user_text"))
