# recgoat-jax: `make help` lists the targets.
SHELL := /bin/bash
PYTHON_SYS ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DATASET ?= demo
MODEL ?= recgoat
ARGS ?=
CONFIG ?=
# the `recgoat` console script's entry point (recgoat_jax/cli.py), run from this checkout
RECGOAT := $(PY) -m recgoat_jax
export PYTHONPATH := $(CURDIR)

.PHONY: help install install-check train test test-fast bench bench-plan bench-knn bench-authors device-check reproduce-baselines ablation realdata defaults data features demo report clean

help:  ## list every target
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'
	@echo "Variables: DATASET=$(DATASET) MODEL=$(MODEL) ARGS='--set key=value ...'"

# Installs in layers: training needs requirements.txt only; the features command adds
# requirements-features.txt (torch first: its pinned CPU wheel, so nothing below resolves
# a CUDA build); the tests add the notebook and dev requirements.
$(VENV)/.core: requirements.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.features: $(VENV)/.core requirements-features.txt
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements-features.txt
	@touch $@

$(VENV)/.test: $(VENV)/.features requirements-notebook.txt requirements-dev.txt
	$(PY) -m pip install -q -r requirements-notebook.txt -r requirements-dev.txt
	@touch $@

install: $(VENV)/.test  ## create .venv and install every pinned requirement (what the tests need)

install-check: $(VENV)/.core  ## fresh venv + `pip install .` resolving every pin, then the installed `recgoat` trains -> experiments/results/clean_install.json
	$(PY) -m experiments.clean_install --python $(PYTHON_SYS) $(ARGS)

train: $(VENV)/.core  ## train MODEL on DATASET (default: RecGOAT on the built-in demo data)
	$(RECGOAT) train --dataset $(DATASET) --model $(MODEL) $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

test: $(VENV)/.test  ## run the test suite (what CI runs)
	$(PY) -m pytest -q tests

test-fast: $(VENV)/.test  ## the tests not marked slow (< 60 s): unit and hand-computed checks
	$(PY) -m pytest -q -m "not slow" tests

# Baby, Sports and Electronics shapes; RecGOAT at Electronics shape is left to GPUs
# (ARGS="--runs electronics:recgoat"): its item kNN alone is ~30 TFLOP on a CPU.
BENCH_RUNS ?= baby:recgoat,baby:lightgcn,sports:recgoat,sports:lightgcn,electronics:lightgcn

# RecGOAT's step at Baby shape, d 800, batch 4096: today's vs the earlier GAT form side by
# side, and the per-part cost table (experiments/bench_step.py; STEP_ARGS for its flags).
STEP_ARGS ?=
# CMCL at B 4096, d 64: blockwise vs the dense form, the terms alone and the Baby-shape step
# in the released code's and the paper's variants (experiments/bench_cmcl.py; CMCL_ARGS).
CMCL_ARGS ?=

# Every measured step is printed with the time XLA's cost analysis predicts on an H100 and
# a TPU v5e ("predicted": experiments/roofline.py).
bench: $(VENV)/.core  ## speed / memory / FLOP benchmarks -> experiments/results/bench_<device>.json, step_breakdown_<device>.json, cmcl_blockwise_<device>.json
	$(PY) -m experiments.bench --runs $(BENCH_RUNS) $(ARGS)
	$(PY) -m experiments.bench_step $(STEP_ARGS)
	$(PY) -m experiments.bench_cmcl $(CMCL_ARGS)

# Item kNN graph build, numpy vs xla backend, each in its own subprocess (time, peak RSS,
# GFLOP/s, equal graphs?); Electronics shape by default, KNN_ARGS="--shape 8000x4096" to
# run small (experiments/bench_knn.py).
KNN_ARGS ?=

bench-knn: $(VENV)/.core  ## item kNN build, numpy vs xla, Electronics shape -> experiments/results/knn_build_<device>.json
	$(PY) -m experiments.bench_knn $(KNN_ARGS)

# The side by side against the authors' PyTorch + DGL code on one pinned core: their
# checkout and the Baby split are passed, never part of this repository; it builds their
# venv from their pins under .cache/authors-bench (experiments/bench_authors.py):
# ARGS="--authors-repo DIR --data BABY_SPLIT_DIR" (--smoke: 1 epoch, d 64)
bench-authors: $(VENV)/.core  ## theirs vs ours s/epoch, evaluation, peak RSS on one core -> experiments/results/authors_side_by_side.json
	$(PY) -m experiments.bench_authors $(ARGS)

# On a GPU / TPU machine, which has JAX but not this venv: its python3 (wheels for what it
# lacks in .whl/, python -m experiments.device_check --download-wheels .whl). Not part of make test.
DEVICE_PY ?= $(if $(wildcard $(PY)),$(PY),python3)

device-check:  ## accelerator check (at most 450 s of parts: --budget): its tests, step at Baby d 800 f32 + bf16 vs peak, short Baby training -> experiments/results/device_<kind>.json (ARGS=--small on a CPU)
	$(DEVICE_PY) -m experiments.device_check $(ARGS)

bench-plan: $(VENV)/.core  ## memory model: AOT step memory Baby .. 10M users, checked at 3 sizes -> experiments/results/memory_model.*
	$(PY) -m experiments.bench_plan $(ARGS)

# Every study runs as `python -m experiments.study NAME` (experiments/studies/NAME.py, on the
# sweep harness recgoat_jax/sweep/): finished runs are reused, --dry-run lists the runs,
# --jobs N trains N at once, --summarise-only rewrites the report.
reproduce-baselines: $(VENV)/.core  ## MF-BPR + LightGCN grids on the real Baby split -> experiments/results/baby_baselines.* (ARGS="--data baby=DIR")
	$(PY) -m experiments.study baselines $(ARGS)

ablation: $(VENV)/.core  ## RecGOAT ablation on the demo data -> experiments/results/demo_ablation.*
	$(PY) -m experiments.study ablation $(ARGS)

# Real development sets, built first with `make data` + `make features` (python -m
# experiments.study realdata --help): ARGS="--data ml100k-dev=data/ml100k-dev --data
# debian-deps-dev=data/debian-deps-dev --jobs 2"; a build with the users file adds the
# user-text rows: --data debian-deps-dev:text=data/debian-ut
realdata: $(VENV)/.core  ## every model tuned on VALID on real dev sets -> experiments/results/realdata.*
	$(PY) -m experiments.study realdata $(ARGS)

# Each model's shipped config with no overrides, one run per dataset, beside realdata's tuned
# means: ARGS="--data debian-deps-dev=data/debian-deps-dev --data ml100k-dev=data/ml100k-dev"
defaults: $(VENV)/.core  ## MF, LightGCN, FREEDOM, RecGOAT as `make train` runs them, no overrides -> experiments/results/defaults.*
	$(PY) -m experiments.study defaults $(ARGS)

data: $(VENV)/.core  ## raw Amazon dumps -> MMRec files for DATASET
	$(RECGOAT) data --dataset $(DATASET) $(ARGS)

features: $(VENV)/.features  ## item text (and user profile) embeddings for DATASET
	$(RECGOAT) features --dataset $(DATASET) $(ARGS)

demo: $(VENV)/.core  ## write (or with ARGS=--force regenerate) the demo dataset in data/demo/
	$(RECGOAT) demo $(ARGS)

report: $(VENV)/.core  ## compare run directories: make report RUNS="runs/a runs/b"
	$(RECGOAT) report $(RUNS)

clean:  ## remove runs and caches (keeps .venv)
	rm -rf runs .pytest_cache .cache
