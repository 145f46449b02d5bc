# linfool: Karpathy's "Breaking Linear Classifiers on ImageNet" with real Caffe.
# `make help` lists the targets. Every target sets itself up first (tools/setup.sh: cached, seconds when warm).
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
SETUP := tools/setup.sh

# Names (RUN, DATA, LOW, HIGH) are plain names: letters, digits, '.', '_', '-' (linfool.paths refuses
# anything else in one line). Paths (IMAGENET, VAL_TXT) may hold spaces and non-ASCII letters: every
# value reaches Python as one shell-quoted word ($(call q,...)).
q = '$(subst ','"'"',$(1))'
# The data set under data/ (make data IMAGENET=/path builds 'imagenet').
DATA ?= synthetic
# The run under runs/: 'blog' on the embedded set, else the data set's name (DATA=imagenet -> imagenet).
RUN ?= $(if $(filter synthetic,$(strip $(DATA))),blog,$(strip $(DATA)))
SOLVER ?= prototxt/solver.prototxt
# On the small embedded set, the demo overlay shortens the run (iterations and test counts only).
OVERLAY ?= $(if $(filter synthetic,$(strip $(DATA))),prototxt/solver_demo.prototxt)
SET ?=                            # solver settings, e.g. SET="max_iter=1000 snapshot=500"
GPU ?= auto                       # auto | cpu | 0 | 0,1 | all
KEEP_EPOCHS ?= 0                  # several GPUs: 1 divides max_iter by their number (README "GPU")
# GPU= also decides where pycaffe computes (eval, figures, attacks, ...: linfool.caffe_env.use_device).
export LINFOOL_GPU = $(strip $(GPU))
RESUME ?= 0                       # 1: continue from the run's newest .solverstate with its recorded solver
ARGS ?=                           # extra flags for `caffe train`
# The runs compared with RUN: by default its sweep companions (reg_low/reg_high for blog,
# <RUN>_reg_low/<RUN>_reg_high otherwise: linfool.runs.sweep_names), always of RUN's data set.
LOW ?=
HIGH ?=
# make data: the ILSVRC2012 root (train/<wnid>/, val/), and a Caffe val.txt for a flat val/ whose files
# are not the official ILSVRC2012 val images.
IMAGENET ?=
VAL_TXT ?=
# make figures / make report: the class of the val image to fool and the target classes (wnid or name;
# default kit fox -> goldfish,school bus, or the data set's own first classes when it lacks them).
START ?=
TARGETS ?=
VAL_PER_CLASS ?=                  # make eval: a seeded class-balanced val subset instead of every record
PAIRS ?=                          # attack-curves, transfer: (image, target) pairs sampled (default 510);
                                  #   blackbox: pairs, one target per image (default 6)
QUERIES ?=                        # blackbox: the square attack's query budget per pair (default 10000)
ROUNDS ?= 3                       # make background: rounds, fooling images per round, fine-tuning
FOOL ?= 300                       #   iterations per round, val images per measurement
ITERS ?= 1000
MEASURE ?= 10

# A resumed run keeps its recorded data set, solver and overlays (run.json); SET= or OVERLAY= given
# with RESUME=1 are applied as a logged change.
RESUMING = $(filter 1,$(strip $(RESUME)))
CHANGED = $(strip $(SET))$(if $(filter command line,$(origin OVERLAY)),$(OVERLAY))
TRAIN = $(PY) -m linfool.train --gpu $(call q,$(strip $(GPU))) $(foreach s,$(SET),--set $(call q,$(s))) \
	$(if $(filter 1,$(strip $(KEEP_EPOCHS))),--keep-epochs) \
	$(if $(RESUMING),--resume $(if $(CHANGED),--change-solver $(if $(filter command line,$(origin OVERLAY)),$(foreach o,$(OVERLAY),--overlay $(o)))),\
	--data $(call q,$(strip $(DATA))) --solver $(SOLVER) $(foreach o,$(OVERLAY),--overlay $(o)))
GROUP = --run $(call q,$(strip $(RUN))) $(if $(strip $(LOW)),--low $(call q,$(strip $(LOW)))) \
	$(if $(strip $(HIGH)),--high $(call q,$(strip $(HIGH))))
CLASSES = $(if $(START),--start $(call q,$(START))) $(if $(TARGETS),--targets $(call q,$(TARGETS)))
# Who holds a run's or a data set's lock, in the message a second writer gets.
export LINFOOL_COMMAND = make $(MAKECMDGOALS) $(MAKEOVERRIDES)

.PHONY: help setup test test-caffe test-faults demo data train sweep eval weights figures attack-curves transfer claims background blackbox report bench rehearse test-docker test-gpu-build gpu-check device-query docker-cpu docker-gpu clean

help: ## list the targets
	@echo "linfool — make TARGET [VAR=value]   (DATA=$(strip $(DATA)) RUN=$(strip $(RUN)) GPU=$(strip $(GPU)))"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# make setup GPU=1 (or any device list, or all) switches to a CUDA build of Caffe, GPU=cpu back to
# the CPU build; plain `make setup` keeps the current choice.
SETUP_CUDA = $(if $(filter auto,$(strip $(GPU))),,LINFOOL_CUDA=$(if $(filter cpu,$(strip $(GPU))),0,1)) \
	$(if $(strip $(CUDA_ARCH)),CUDA_ARCH=$(strip $(CUDA_ARCH)))

setup: ## install apt packages, build Caffe once (cached in ~/.cache/linfool), create .venv [GPU=1: CUDA build, CUDA_ARCH=auto|all|80,90]
	@[[ "$(strip $(GPU))" =~ ^(auto|cpu|all|[0-9]+(,[0-9]+)*)$$ ]] || { echo "ERROR: GPU=$(strip $(GPU)) is not auto, cpu,"\
	" all, a GPU number or a list such as 0,1 (make setup GPU=1 builds the CUDA Caffe, GPU=cpu the CPU one)" >&2; exit 2; }
	@$(SETUP_CUDA) $(SETUP)

test: ## run the test suite (sets everything up first; Caffe's own tests once per Caffe build; chromium, valgrind)
	@$(SETUP)
	@tools/install_system_deps.sh --tests
	@if [ -n "$$CAFFE_ROOT" ]; then echo "Caffe's own tests: skipped (CAFFE_ROOT is your own Caffe; linfool tests the Caffe it builds)"; \
	else tools/test_caffe.sh $(PY) --if-needed; fi
	$(PY) -m pytest

test-caffe: ## Caffe's own gtest suite (data layers, solver, net, IO, ...) built against the cached libcaffe, run now (~4 min)
	@$(SETUP)
	tools/test_caffe.sh $(PY)

test-faults: ## fault injection: SIGKILL at random points of make data, train, figures and report, then rerun (~5 min)
	@$(SETUP)
	$(PY) -m pytest -m faults tests/test_faults.py

rehearse: ## the README's ImageNet recipe end to end on a generated 1000-class ILSVRC2012-shaped tree (~9 min)
	@$(SETUP)
	$(PY) -m pytest -m rehearsal tests/test_rehearsal.py

test-docker: ## build the CPU image (Docker or Podman) and run make test + a short demo inside as uid 1000 (~25 min cold)
	@$(SETUP)
	$(PY) -m pytest -s -m docker tests/test_docker_image.py

test-gpu-build: ## build the CUDA Caffe (sm_90 unless CUDA_ARCH=; cached; ~15 min cold on 2 cores), run Caffe's own tests on its CPU path and ours; no GPU needed
	@$(SETUP)
	tree=$$(LINFOOL_CUDA=1 CUDA_ARCH=$(or $(strip $(CUDA_ARCH)),90) tools/build_caffe.sh $(PY) | tail -n 1) && [ -n "$$tree" ] && \
	LINFOOL_CUDA=1 CUDA_ARCH=$(or $(strip $(CUDA_ARCH)),90) tools/test_caffe.sh $(PY) --if-needed && \
	LINFOOL_CUDA_TREE=$$tree $(PY) -m pytest -m gpu_build tests/test_gpu_build.py

gpu-check: ## on a GPU box: device query, caffe time, GPU vs CPU training and pycaffe, images/s -> runs/gpu_check.txt
	@$(SETUP)
	$(PY) -m linfool.gpu_check

device-query: ## the GPUs Caffe sees (caffe device_query), or one line saying why none
	@$(SETUP)
	$(PY) -m linfool.caffe_env --device-query

data: ## build train/val LMDBs + mean + labels, published whole: embedded synthetic set, or IMAGENET=/path [VAL_TXT=]
	@$(SETUP)
	$(PY) -m linfool.data $(if $(IMAGENET),--imagenet $(call q,$(IMAGENET))) $(if $(VAL_TXT),--val-txt $(call q,$(VAL_TXT)))

train: ## caffe train into runs/$(RUN) [RUN= DATA= SOLVER= OVERLAY= SET= GPU= RESUME=1 ARGS=]
	@$(SETUP)
	$(TRAIN) --run $(call q,$(strip $(RUN))) -- $(ARGS)

sweep: ## train RUN and its regularization companions: <low> (wd 0.0005), RUN (wd 100), <high> (wd 10000)
	@$(SETUP)
	$(TRAIN) --sweep --run $(call q,$(strip $(RUN))) -- $(ARGS)

eval: ## top-1/top-5 of RUN and its sweep over EVERY val record -> runs/*/metrics.json [VAL_PER_CLASS=N: a subset]
	@$(SETUP)
	$(PY) -m linfool.evaluate $(GROUP) $(if $(strip $(VAL_PER_CLASS)),--val-per-class $(strip $(VAL_PER_CLASS)))

weights: ## save runs/$(RUN)/weights.npz (W, b, mean, labels) from the newest snapshot
	@$(SETUP)
	$(PY) -m linfool.weights --run $(call q,$(strip $(RUN)))

figures: ## the blog's figures from runs/$(RUN) into runs/$(RUN)/figures/ [LOW= HIGH= START= TARGETS=]
	@$(SETUP)
	$(PY) -m linfool.figures $(GROUP) $(CLASSES)

attack-curves: ## fooled fraction vs Linf budget, blog vs sign direction, RUN and its sweep [PAIRS=510] -> runs/$(RUN)/attacks/
	@$(SETUP)
	$(PY) -m linfool.attacks $(GROUP) $(if $(strip $(PAIRS)),--pairs $(strip $(PAIRS)))

transfer: ## fooling images made on each run of RUN's sweep, classified by the others [PAIRS=510] -> runs/$(RUN)/transfer/
	@$(SETUP)
	$(PY) -m linfool.transfer $(GROUP) $(if $(strip $(PAIRS)),--pairs $(strip $(PAIRS)))

claims: ## the blog's claims measured on RUN and its sweep, with verdicts -> runs/$(RUN)/claims.json
	@$(SETUP)
	$(PY) -m linfool.claims $(GROUP)

background: ## background-class defence: rounds of fooling images + caffe fine-tuning [ROUNDS= FOOL= ITERS= MEASURE=]
	@$(SETUP)
	$(PY) -m linfool.background --run $(call q,$(strip $(RUN))) --rounds $(strip $(ROUNDS)) --fool $(strip $(FOOL)) \
		--iters $(strip $(ITERS)) --measure-images $(strip $(MEASURE))

blackbox: ## fooling with scores only (no weights): square attack + exact template recovery, RUN and its sweep [PAIRS=6 QUERIES=10000] -> runs/*/blackbox/
	@$(SETUP)
	$(PY) -m linfool.blackbox $(GROUP) $(if $(strip $(PAIRS)),--pairs $(strip $(PAIRS))) $(if $(strip $(QUERIES)),--queries $(strip $(QUERIES)))

report: ## one HTML page with every figure and number, each section with its snapshot: runs/$(RUN)/report.html [START= TARGETS=]
	@$(SETUP)
	$(PY) -m linfool.report $(GROUP) $(CLASSES)

demo: ## set up, then data -> train x3 -> eval -> figures -> attack curves, transfer, background class, claims, blackbox -> report
	@$(MAKE) --no-print-directory data DATA=synthetic IMAGENET=
	@$(MAKE) --no-print-directory sweep DATA=synthetic
	@$(MAKE) --no-print-directory eval RUN=blog
	@$(MAKE) --no-print-directory figures RUN=blog
	@$(MAKE) --no-print-directory attack-curves RUN=blog
	@$(MAKE) --no-print-directory transfer RUN=blog
	@$(MAKE) --no-print-directory background RUN=blog
	@$(MAKE) --no-print-directory claims RUN=blog
	@$(MAKE) --no-print-directory blackbox RUN=blog
	@$(MAKE) --no-print-directory report RUN=blog
	@echo "Demo done. Open runs/blog/report.html"

bench: ## speed tables: LMDB builder vs convert_imageset; training step vs GEMM roofline; ImageNet-scale RSS per stage (~12 min)
	@$(SETUP)
	$(PY) -m linfool.bench

docker-cpu: ## build the CPU image linfool:cpu with Docker or Podman (Debian 12 + make setup, slim runtime stage)
	tools/docker_build.sh cpu

docker-gpu: ## build the GPU image linfool:gpu (make setup GPU=1; CUDA_ARCH=all by default; run with --gpus all)
	tools/docker_build.sh gpu $(strip $(CUDA_ARCH))

clean: ## remove generated data and runs (keeps .venv and the Caffe cache)
	rm -rf data runs
