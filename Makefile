# linfool: Karpathy's "Breaking Linear Classifiers on ImageNet" with real Caffe.
# `make help` lists the targets. Every target sets itself up first (tools/setup.sh: cached, seconds when warm).
# Every stage is `python -m linfool STAGE`; variables are passed through as given (only when set), and
# their defaults and policy live in Python (`python -m linfool STAGE --help`).
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

# Names (RUN, DATA, LOW, HIGH) are plain names: letters, digits, '.', '_', '-' (linfool.core.paths
# refuses anything else in one line). Paths (IMAGENET, VAL_TXT) may hold spaces and non-ASCII letters:
# every value reaches Python as one shell-quoted word.
q = '$(subst ','"'"',$(1))'
# --option 'value' when the variable is set, nothing when it is empty.
opt = $(if $(2),$(1) $(call q,$(2)))

# The data set under data/: default synthetic (the embedded set); make data IMAGENET=/path builds 'imagenet'.
DATA ?=
# The run under runs/: default 'blog' on the embedded set, else the data set's name (DATA=imagenet -> imagenet).
RUN ?=
# The runs compared with RUN: default its sweep companions (reg_low/reg_high for blog,
# <RUN>_reg_low/<RUN>_reg_high otherwise), always of RUN's data set.
LOW ?=
HIGH ?=
# make train: solver and overlay prototxt (default: the blog's solver, plus the demo overlay on the
# embedded set), solver settings (SET="max_iter=1000 snapshot=500"), RESUME=1 to continue from the
# newest .solverstate (SET=/OVERLAY= are then logged changes), FRESH=1 to delete a run's snapshots and
# train it again (without either, a run that has snapshots is left alone), extra flags for `caffe train`.
SOLVER ?=
OVERLAY ?=
SET ?=
RESUME ?=
FRESH ?=
ARGS ?=
# Where Caffe computes, for every stage: auto (default) | cpu | 0 | 0,1 | all; KEEP_EPOCHS=1 with
# several GPUs divides max_iter by their number (README "GPU").
GPU ?=
KEEP_EPOCHS ?=
export LINFOOL_GPU = $(GPU)
# make data: the ILSVRC2012 root (train/<wnid>/, val/), and a Caffe val.txt for a flat val/ whose files
# are not the official ILSVRC2012 val images; REPLACE=1 to replace a set built from another source.
IMAGENET ?=
VAL_TXT ?=
REPLACE ?=
# make figures: the class of the val image to fool and the target classes (wnid or name; default kit
# fox -> goldfish,school bus, or the data set's own first classes when it lacks them).
START ?=
TARGETS ?=
# make eval: a seeded class-balanced val subset of N per class instead of every record.
VAL_PER_CLASS ?=
# attack-curves, transfer: (image, target) pairs sampled (default 510); attack-curves, transfer,
# blackbox: val images in the sample (default 30; blackbox 6, one target each); make fool IMAGE=folder/: its
# first N images (20).
PAIRS ?=
IMAGES ?=
# blackbox: the square attack's query budget per image (default 10000).
QUERIES ?=
# background: rounds (3), fooling images per round (300), fine-tuning iterations per round (ITERS, 1000;
# make decay-search: per candidate, 250), val images per measurement (10).
ROUNDS ?=
FOOL ?=
ITERS ?=
MEASURE ?=
# make claims: the rows that depend on training repeated over SEEDS seeds of the sweep (default 1: off).
SEEDS ?=
# make forest: trees of the random forest (100).
TREES ?=
# make decay-search: the deeper model (mlp | conv), the weight decays of its grid (comma-separated;
# default 0.0005,0.005,0.05,0.5) and the iterations per candidate (ITERS, default 250).
NET ?=
DECAYS ?=
# make fool: any Caffe classifier (deploy prototxt + caffemodel), the image and the target class (a
# number, or a name of LABELS); its preprocessing as its transform_param has it (MEAN binaryproto or
# MEAN_VALUES, SCALE, CHANNELS bgr|rgb|gray); the attack's Linf budget in 0..255 pixels and steps
# (STEPS: gradients per iterative attack, also make deep's, default 20 there).
MODEL ?=
WEIGHTS ?=
IMAGE ?=
TARGET ?=
MEAN ?=
MEAN_VALUES ?=
SCALE ?=
CHANNELS ?=
LABELS ?=
EPS ?=
STEPS ?=
# make setup GPU=1 / make test-gpu-build: the CUDA architectures (auto | all | 80,90).
CUDA_ARCH ?=

GROUP = $(call opt,--run,$(RUN)) $(call opt,--data,$(DATA)) $(call opt,--low,$(LOW)) $(call opt,--high,$(HIGH))
TRAIN = $(LINFOOL) train $(call opt,--run,$(RUN)) $(call opt,--data,$(DATA)) $(call opt,--solver,$(SOLVER)) \
	$(foreach o,$(OVERLAY),--overlay $(call q,$(o))) $(foreach s,$(SET),--set $(call q,$(s))) \
	$(if $(filter 1,$(RESUME)),--resume) $(if $(filter 1,$(FRESH)),--fresh) $(if $(filter 1,$(KEEP_EPOCHS)),--keep-epochs)
# The make command a stage records in its results (and the lock holder a second writer is told about).
export LINFOOL_COMMAND = make $(MAKECMDGOALS) $(MAKEOVERRIDES)

.PHONY: help setup test test-fast test-caffe test-faults readme-figures demo data train sweep eval weights figures attack-curves transfer claims background blackbox forest fool decay-search deep-sweep deep open-questions report bench rehearse test-docker test-gpu-build gpu-check device-query docker-cpu docker-gpu clean

help: ## list the targets
	@echo "linfool — make TARGET [VAR=value]   (python -m linfool --help: the stages behind them)"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## install apt packages, build Caffe once (cached in ~/.cache/linfool), create .venv [GPU=1: CUDA build, CUDA_ARCH=auto|all|80,90]
	@GPU=$(call q,$(GPU)) CUDA_ARCH=$(call q,$(CUDA_ARCH)) $(ROOT)/tools/setup.sh --choose

test: ## lint + format check, Caffe's own tests once per Caffe build, then the test suite (sets everything up first)
	@$(SETUP)
	@$(ROOT)/tools/install_system_deps.sh --tests
	cd $(ROOT) && $(PY) -m ruff check --no-cache python tests docs && $(PY) -m ruff format --no-cache --check python tests
	@if [ -n "$$CAFFE_ROOT" ]; then echo "Caffe's own tests: skipped (CAFFE_ROOT is your own Caffe; linfool tests the Caffe it builds)"; \
	else $(ROOT)/tools/test_caffe.sh $(PY) --if-needed; fi
	cd $(ROOT) && $(PY) -m pytest

test-fast: ## lint, then the tests that need no Caffe (~1 min): data sets, records, names, locks, sources, toy
	@$(SETUP)
	cd $(ROOT) && $(PY) -m ruff check --no-cache python tests docs && $(PY) -m ruff format --no-cache --check python tests
	cd $(ROOT) && $(PY) -m pytest -m 'fast and not gpu_build and not rehearsal and not docker and not faults'

test-caffe: ## Caffe's own gtest suite (data layers, solver, net, IO, ...) built against the cached libcaffe, run now (~4 min)
	@$(SETUP)
	$(ROOT)/tools/test_caffe.sh $(PY)

test-faults: ## fault injection: SIGKILL at random points of make data, train, figures and report, then rerun (~5 min)
	@$(SETUP)
	cd $(ROOT) && $(PY) -m pytest -m faults tests/test_faults.py

rehearse: ## the README's ImageNet recipe end to end on a generated 1000-class ILSVRC2012-shaped tree (~5-14 min)
	@$(SETUP)
	cd $(ROOT) && $(PY) -m pytest -m rehearsal tests/test_rehearsal.py

test-docker: ## build the CPU image (Docker or Podman) and run make test + a short demo inside as uid 1000 (~25 min cold)
	@$(SETUP)
	cd $(ROOT) && $(PY) -m pytest -s -m docker tests/test_docker_image.py

test-gpu-build: ## build the CUDA Caffe (sm_90 unless CUDA_ARCH=; cached; ~15 min cold on 2 cores), run Caffe's own tests on its CPU path and ours; no GPU needed
	@$(SETUP)
	tree=$$(LINFOOL_CUDA=1 CUDA_ARCH=$(or $(CUDA_ARCH),90) $(ROOT)/tools/build_caffe.sh $(PY) | tail -n 1) && [ -n "$$tree" ] && \
	LINFOOL_CUDA=1 CUDA_ARCH=$(or $(CUDA_ARCH),90) $(ROOT)/tools/test_caffe.sh $(PY) --if-needed && \
	cd $(ROOT) && LINFOOL_CUDA_TREE=$$tree $(PY) -m pytest -m gpu_build tests/test_gpu_build.py

gpu-check: ## on a GPU box: device query, caffe time, GPU vs CPU training and pycaffe, Caffe's GPU tests, images/s -> runs/gpu_check.txt
	@$(SETUP)
	$(PY) -m linfool_dev.gpu_check

device-query: ## the GPUs Caffe sees (caffe device_query), or one line saying why none
	@$(SETUP)
	$(LINFOOL) caffe --device-query

data: ## build train/val LMDBs + mean + labels, published whole: embedded synthetic set, or IMAGENET=/path [VAL_TXT= REPLACE=1]
	@$(SETUP)
	$(LINFOOL) data $(call opt,--imagenet,$(IMAGENET)) $(call opt,--name,$(DATA)) $(call opt,--val-txt,$(VAL_TXT)) \
		$(if $(filter 1,$(REPLACE)),--replace)

train: ## caffe train into runs/$(RUN) [RUN= DATA= SOLVER= OVERLAY= SET= GPU= RESUME=1 | FRESH=1 ARGS=]
	@$(SETUP)
	$(TRAIN) -- $(ARGS)

sweep: ## train RUN and its regularization companions: <low> (wd 0.0005), RUN (wd 100), <high> (wd 10000) [FRESH=1]
	@$(SETUP)
	$(TRAIN) --sweep -- $(ARGS)

eval: ## top-1/top-5 of RUN and its sweep over EVERY val record -> runs/*/metrics.json [VAL_PER_CLASS=N: a subset]
	@$(SETUP)
	$(LINFOOL) eval $(GROUP) $(call opt,--val-per-class,$(VAL_PER_CLASS))

weights: ## save runs/$(RUN)/weights.npz (W, b, mean, labels) from the newest snapshot
	@$(SETUP)
	$(LINFOOL) weights $(call opt,--run,$(RUN)) $(call opt,--data,$(DATA))

figures: ## the blog's figures and the report's explore data -> runs/$(RUN)/figures/ [LOW= HIGH= START= TARGETS=]
	@$(SETUP)
	$(LINFOOL) figures $(GROUP) $(call opt,--start,$(START)) $(call opt,--targets,$(TARGETS))

attack-curves: ## fooled fraction vs Linf budget, blog vs sign direction, RUN and its sweep [PAIRS=510 IMAGES=30] -> runs/$(RUN)/attacks/
	@$(SETUP)
	$(LINFOOL) attack-curves $(GROUP) $(call opt,--pairs,$(PAIRS)) $(call opt,--images,$(IMAGES))

transfer: ## fooling images made on each run of RUN's sweep, classified by the others [PAIRS=510 IMAGES=30] -> runs/$(RUN)/transfer/
	@$(SETUP)
	$(LINFOOL) transfer $(GROUP) $(call opt,--pairs,$(PAIRS)) $(call opt,--images,$(IMAGES))

claims: ## the blog's claims measured on RUN and its sweep: test, n, p, verdict -> runs/$(RUN)/claims.json [SEEDS=N]
	@$(SETUP)
	$(LINFOOL) claims $(GROUP) $(call opt,--seeds,$(SEEDS))

background: ## background-class defence: rounds of fooling images + caffe fine-tuning [ROUNDS=3 FOOL=300 ITERS=1000 MEASURE=10]
	@$(SETUP)
	$(LINFOOL) background $(call opt,--run,$(RUN)) $(call opt,--data,$(DATA)) $(call opt,--rounds,$(ROUNDS)) \
		$(call opt,--fool,$(FOOL)) $(call opt,--iters,$(ITERS)) $(call opt,--measure-images,$(MEASURE))

blackbox: ## fooling with scores only (no weights): square attack + exact template recovery, RUN and its sweep [IMAGES=6 QUERIES=10000] -> runs/*/blackbox/
	@$(SETUP)
	$(LINFOOL) blackbox $(GROUP) $(call opt,--images,$(IMAGES)) $(call opt,--queries,$(QUERIES))

forest: ## a random forest on the data set's pixels fooled with scores only (square attack), beside RUN's linear model [TREES=100 IMAGES=12 QUERIES=1000] -> runs/$(RUN)/forest/
	@$(SETUP)
	$(LINFOOL) forest $(call opt,--run,$(RUN)) $(call opt,--data,$(DATA)) $(call opt,--trees,$(TREES)) \
		$(call opt,--images,$(IMAGES)) $(call opt,--queries,$(QUERIES))

fool: ## fool any Caffe classifier by backprop: MODEL=deploy.prototxt WEIGHTS=x.caffemodel IMAGE=photo.jpg TARGET=3|name [MEAN= MEAN_VALUES= SCALE= CHANNELS= LABELS= EPS=16 STEPS=100]; IMAGE=folder/: fooled fraction vs Linf [IMAGES=20] -> runs/fool/<weights>-<image>-to-<target>-<key>/
	@$(SETUP)
	$(LINFOOL) fool $(call opt,--model,$(MODEL)) $(call opt,--weights,$(WEIGHTS)) $(call opt,--image,$(IMAGE)) \
		$(call opt,--target,$(TARGET)) $(call opt,--mean,$(MEAN)) $(call opt,--mean-values,$(MEAN_VALUES)) \
		$(call opt,--scale,$(SCALE)) $(call opt,--channels,$(CHANNELS)) $(call opt,--labels,$(LABELS)) \
		$(call opt,--eps,$(EPS)) $(call opt,--steps,$(STEPS)) $(call opt,--images,$(IMAGES))

decay-search: ## a deeper model's weight decays, each a short caffe train: NET=mlp|conv [DECAYS=0.0005,0.005,0.05,0.5 ITERS=250 DATA=] -> runs/<net>_decay_search/
	@$(SETUP)
	$(LINFOOL) decay-search $(call opt,--net,$(NET)) $(call opt,--data,$(DATA)) $(call opt,--decays,$(DECAYS)) $(call opt,--iters,$(ITERS))

deep-sweep: ## caffe train the MLP and the small ConvNet at a weak and a strong weight decay beside RUN: mlp, mlp_reg_high, conv, conv_reg_high [DATA= GPU= OVERLAY= SET=]
	@$(SETUP)
	$(LINFOOL) train --deep $(call opt,--run,$(RUN)) $(call opt,--data,$(DATA)) $(call opt,--solver,$(SOLVER)) $(foreach o,$(OVERLAY),--overlay $(call q,$(o))) \
		$(foreach s,$(SET),--set $(call q,$(s))) $(if $(filter 1,$(FRESH)),--fresh) \
		$(if $(filter 1,$(KEEP_EPOCHS)),--keep-epochs) -- $(ARGS)

deep: ## the linear, MLP and ConvNet runs fooled by backprop: accuracy, fooled fraction vs Linf, first-layer filters, transfer [IMAGES=10 PAIRS=50 STEPS=20] -> runs/$(RUN)/deep/
	@$(SETUP)
	$(LINFOOL) deep $(call opt,--run,$(RUN)) $(call opt,--data,$(DATA)) $(call opt,--high,$(HIGH)) $(call opt,--images,$(IMAGES)) \
		$(call opt,--pairs,$(PAIRS)) $(call opt,--steps,$(STEPS))

open-questions: ## after make demo: the post's open questions: deep-sweep, deep, forest, then claims and report (~14 min on 2 cores)
	@$(SETUP)
	LINFOOL_SET_UP=1 $(MAKE) --no-print-directory deep-sweep
	LINFOOL_SET_UP=1 $(MAKE) --no-print-directory deep
	LINFOOL_SET_UP=1 $(MAKE) --no-print-directory forest
	LINFOOL_SET_UP=1 $(MAKE) --no-print-directory claims
	LINFOOL_SET_UP=1 $(MAKE) --no-print-directory report

report: ## one HTML page with every figure and number, each section with its snapshot: runs/$(RUN)/report.html
	@$(SETUP)
	$(LINFOOL) report $(GROUP)

demo: ## set up, then data -> train x3 -> eval -> figures -> attack curves, transfer, background class, claims, blackbox -> report, with a time per stage
	@$(ROOT)/tools/demo.sh

bench: ## speed tables: LMDB builder vs convert_imageset; training step vs GEMM roofline; ImageNet-scale RSS per stage; the ImageNet job per stage, here and on a GPU box (~14 min)
	@$(SETUP)
	$(PY) -m linfool_dev.bench

readme-figures: ## the README's pictures (docs/img/*.png, small) from the demo run [RUN=blog]
	@$(SETUP)
	$(PY) -m linfool_dev.readme_figures $(call opt,--run,$(RUN))

docker-cpu: ## build the CPU image linfool:cpu with Docker or Podman (Debian 12 + make setup, slim runtime stage)
	$(ROOT)/tools/docker_build.sh cpu

docker-gpu: ## build the GPU image linfool:gpu (make setup GPU=1; CUDA_ARCH=all by default; run with --gpus all)
	$(ROOT)/tools/docker_build.sh gpu $(CUDA_ARCH)

clean: ## remove generated data and runs (keeps .venv and the Caffe cache)
	rm -rf $(ROOT)/data $(ROOT)/runs
