# linfool: Karpathy's "Breaking Linear Classifiers on ImageNet" with real Caffe.
# `make help` lists the targets. Every target sets itself up first (tools/setup.sh: cached, seconds when warm).
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
SETUP := tools/setup.sh

.PHONY: help setup test demo clean

help: ## list the targets
	@echo "linfool — make TARGET [VAR=value]"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## install apt packages, build Caffe once (cached in ~/.cache/linfool), create .venv
	@$(SETUP)

test: ## run the test suite (sets everything up first)
	@$(SETUP)
	$(PY) -m pytest

demo: ## set up, then run the whole pipeline on the embedded synthetic data
	@$(SETUP)
	$(PY) -m linfool.selfcheck

clean: ## remove generated data and runs (keeps .venv and the Caffe cache)
	rm -rf data runs
