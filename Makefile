# recgoat-jax: `make help` lists the targets.
SHELL := /bin/bash
PYTHON_SYS ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DATASET ?= demo
MODEL ?= recgoat
ARGS ?=
CONFIG ?= $(firstword $(wildcard experiments/configs/$(MODEL)_$(notdir $(DATASET)).yaml) experiments/configs/$(MODEL).yaml)
export PYTHONPATH := $(CURDIR)

.PHONY: help install train test test-fast bench reproduce-baselines ablation realdata data features clean

help:  ## list every target
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'
	@echo "Variables: DATASET=$(DATASET) MODEL=$(MODEL) ARGS='--set key=value ...'"

REQS := requirements.txt $(wildcard requirements-features.txt requirements-notebook.txt)

$(VENV)/.installed: $(REQS)
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first: its pinned CPU wheel, so nothing below resolves a CUDA build
	@if [ -f requirements-features.txt ]; then $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q $(addprefix -r ,$(REQS))
	@touch $@

install: $(VENV)/.installed  ## create .venv and install pinned requirements

train: install  ## train MODEL on DATASET (default: RecGOAT on the built-in demo data)
	$(PY) -m recgoat_jax.train --config $(CONFIG) --dataset $(DATASET) $(ARGS)

test: install  ## run the test suite (what CI runs)
	$(PY) -m pytest -q tests

test-fast: install  ## the tests not marked slow (< 60 s): unit and hand-computed checks
	$(PY) -m pytest -q -m "not slow" tests

# Baby, Sports and Electronics shapes; RecGOAT at Electronics shape is left to GPUs
# (ARGS="--runs electronics:recgoat"): its item kNN alone is ~30 TFLOP on a CPU.
BENCH_RUNS ?= baby:recgoat,baby:lightgcn,sports:recgoat,sports:lightgcn,electronics:lightgcn

bench: install  ## speed / memory / FLOP benchmarks -> experiments/results/bench_<device>.json
	$(PY) experiments/bench.py --runs $(BENCH_RUNS) $(ARGS)

reproduce-baselines: install  ## MF-BPR + LightGCN grids on the real Baby split -> experiments/results/baby_baselines.*
	$(PY) experiments/reproduce_baselines.py $(ARGS)

ablation: install  ## RecGOAT ablation on the demo data -> experiments/results/demo_ablation.*
	$(PY) experiments/ablation.py $(ARGS)

# Real development sets, built first with `make data` + `make features` (see the script's --help):
# ARGS="--data ml100k-dev=data/ml100k-dev --data debian-deps-dev=data/debian-deps-dev --jobs 2"
realdata: install  ## every model tuned on VALID on real dev sets -> experiments/results/realdata.*
	$(PY) experiments/realdata.py $(ARGS)

data: install  ## raw Amazon dumps -> MMRec files for DATASET
	$(PY) -m recgoat_jax.data.cli --dataset $(DATASET) $(ARGS)

features: install  ## item text (and user profile) embeddings for DATASET
	$(PY) -m recgoat_jax.features.cli features --dataset $(DATASET) $(ARGS)

clean:  ## remove runs and caches (keeps .venv)
	rm -rf runs .pytest_cache .cache
