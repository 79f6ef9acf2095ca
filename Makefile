# Two commands do everything on a fresh machine; both build .venv/ on first use and reuse it after.
#   make demo   the main job on the embedded default model (SmolLM2-135M-Instruct, offline)
#   make test   notebook/library sync check, nbdev_test over every notebook, pytest, docs build
.PHONY: demo test env sync nbtest pytest docs slow clean-notebooks

VENV := .venv/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg

env:
	@bash tools/env.sh

demo: env
	$(VENV)/hindsight-ref demo --out runs/demo

test: env
	@bash tools/test.sh

slow: env
	$(VENV)/nbdev_test --flags slow --timing
