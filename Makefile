# linfool: Karpathy's "Breaking Linear Classifiers on ImageNet" with real Caffe. `make help` lists the
# targets. Every target and stage is declared once, in python/linfool/core/stages.py: its help, its make
# variables, their defaults and the order of `make demo`. This file only runs them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
# The checkout, so that `make -f <checkout>/Makefile ...` from another folder works: the stages then read
# relative paths (IMAGENET=, MODEL=, ...) from the folder make runs in, and data/ and runs/ stay here.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PY := $(ROOT)/.venv/bin/python
# tools/setup.sh before every target (seconds when warm); tools/demo.sh sets LINFOOL_SET_UP once it ran.
SETUP := $(if $(LINFOOL_SET_UP),true,$(ROOT)/tools/setup.sh)
# The shell's folder: with `make -C <checkout>`, a relative path found only there is said in one line.
export LINFOOL_CALLER_DIR := $(PWD)
LINFOOL := $(PY) -m linfool
# Where Caffe computes, for every stage: auto (default) | cpu | 0 | 0,1 | all (README "GPU").
GPU ?=
export LINFOOL_GPU = $(GPU)
# The make command a stage records in its results (and the lock holder a second writer is told about).
export LINFOOL_COMMAND = make $(MAKECMDGOALS) $(MAKEOVERRIDES)

# A value as one shell-quoted word (paths such as IMAGENET= may hold spaces and quotes).
q = '$(subst ','"'"',$(1))'
# The variables given on make's command line, as NAME=value words: a stage takes the ones it declares
# and refuses in one line a name that no target takes (a typo).
VARS = $(strip $(foreach v,$(filter-out MAKEFLAGS MFLAGS .%,$(.VARIABLES)),$(if $(filter command line,$(origin $(v))),$(v)=$(call q,$($(v))))))

# The targets that run a stage: `python -m linfool make TARGET NAME=value ...`.
STAGE_TARGETS := data train sweep curves weights eval figures attack-curves transfer claims report \
	background blackbox forest deep-sweep deep decay-search adv-train fool device-query
OTHER_TARGETS := help setup demo open-questions test test-fast test-caffe test-faults rehearse test-docker \
	test-gpu-build gpu-check bench readme-figures docker-cpu docker-gpu clean
.PHONY: $(STAGE_TARGETS) $(OTHER_TARGETS)

# Before setup there may be no venv: the system's Python reads the declarations (standard library only).
help:
	@py=$(if $(wildcard $(PY)),$(PY),python3); command -v "$$py" >/dev/null \
	  || { echo "make help needs python3: run \`make setup\` (it installs it), or read README.md"; exit 0; }; \
	  PYTHONPATH=$(ROOT)/python "$$py" -m linfool help

$(STAGE_TARGETS):
	@$(SETUP)
	$(LINFOOL) make $@ $(VARS)

demo:
	@$(ROOT)/tools/demo.sh demo

open-questions:
	@$(ROOT)/tools/demo.sh open-questions

setup:
	@GPU=$(call q,$(GPU)) CUDA_ARCH=$(call q,$(CUDA_ARCH)) CUDA=$(call q,$(CUDA)) $(ROOT)/tools/setup.sh --choose

# make test's pytest workers (pytest-xdist): one per core, at most 4 (each test's Caffe uses BLAS threads).
TEST_JOBS = $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))

test:
	@$(SETUP)
	@$(ROOT)/tools/install_system_deps.sh --tests
	cd $(ROOT) && $(PY) -m ruff check --no-cache python tests docs && $(PY) -m ruff format --no-cache --check python tests
	@if [ -n "$$CAFFE_ROOT" ]; then echo "Caffe's own tests: skipped (CAFFE_ROOT is your own Caffe; linfool tests the Caffe it builds)"; \
	else $(ROOT)/tools/test_caffe.sh $(PY) --if-needed; fi
	cd $(ROOT) && $(PY) -m pytest -n $(TEST_JOBS)

test-fast:
	@$(SETUP)
	cd $(ROOT) && $(PY) -m ruff check --no-cache python tests docs && $(PY) -m ruff format --no-cache --check python tests
	cd $(ROOT) && $(PY) -m pytest -n $(TEST_JOBS) -m 'fast and not gpu_build and not rehearsal and not docker and not faults'

test-caffe:
	@$(SETUP)
	$(ROOT)/tools/test_caffe.sh $(PY)

test-faults:
	@$(SETUP)
	cd $(ROOT) && $(PY) -m pytest -m faults tests/test_faults.py

rehearse:
	@$(SETUP)
	cd $(ROOT) && $(PY) -m pytest -m rehearsal tests/test_rehearsal.py

test-docker:
	@$(SETUP)
	cd $(ROOT) && $(PY) -m pytest -s -m docker tests/test_docker_image.py

test-gpu-build:
	@$(SETUP)
	tree=$$(LINFOOL_CUDA=1 CUDA=$(call q,$(CUDA)) CUDA_ARCH=$(or $(CUDA_ARCH),90) $(ROOT)/tools/build_caffe.sh $(PY) | tail -n 1) && \
	[ -n "$$tree" ] && LINFOOL_CUDA=1 CUDA=$(call q,$(CUDA)) CUDA_ARCH=$(or $(CUDA_ARCH),90) $(ROOT)/tools/test_caffe.sh $(PY) --if-needed && \
	cd $(ROOT) && LINFOOL_CUDA_TREE=$$tree $(PY) -m pytest -m gpu_build tests/test_gpu_build.py

gpu-check:
	@$(SETUP)
	$(PY) -m linfool_dev.gpu_check

bench:
	@$(SETUP)
	$(PY) -m linfool_dev.bench

readme-figures:
	@$(SETUP)
	$(PY) -m linfool_dev.readme_figures $(if $(RUN),--run $(call q,$(RUN)))

docker-cpu:
	$(ROOT)/tools/docker_build.sh cpu

docker-gpu:
	CUDA=$(call q,$(CUDA)) CUDA_ARCH=$(call q,$(CUDA_ARCH)) $(ROOT)/tools/docker_build.sh gpu

clean:
	rm -rf $(ROOT)/data $(ROOT)/runs
