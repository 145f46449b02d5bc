#!/usr/bin/env bash
# Set up everything linfool needs, idempotently and with caches: Debian packages, the .venv with the
# pinned Python packages, Caffe (built once per machine into ~/.cache/linfool, or CAFFE_ROOT), and
# pycaffe made importable in the venv. A warm rerun takes a few seconds.
#
# Usage: tools/setup.sh [--choose]   (--choose: take GPU= and CUDA_ARCH= from make setup)
#                              Env: PYTHON (default python3), CAFFE_ROOT (a built BVLC Caffe tree),
#                                   LINFOOL_CACHE (default ~/.cache/linfool),
#                                   CUDA_ARCH=auto|all|80,90 (CUDA build; remembered like LINFOOL_CUDA),
#                                   LINFOOL_CUDA=1|0 (CUDA or CPU build of Caffe; `make setup GPU=1`;
#                                   remembered in .venv, so later targets keep the choice),
#                                   CUDA_HOME (a system CUDA toolkit for the CUDA build),
#                                   CUDA=11|13 (the CUDA release, remembered; default: chosen from the
#                                   box's driver and cards, tools/cuda_choose.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
RELEASE=${CUDA:-}                  # make setup CUDA=11|13|auto; CUDA below is the build's flavor (0|1)
PYTHON=${PYTHON:-python3}
VENV=.venv
step() { printf '[setup %4ds] %s\n' $((SECONDS - START)) "$*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

# `make setup GPU=...` (--choose): GPU=1, a device list or all switches to the CUDA build, GPU=cpu back
# to the CPU build, auto (or nothing) keeps the current choice; anything else is refused here, before
# anything is installed.
if [ "${1:-}" = "--choose" ]; then
  case "${GPU:-auto}" in
    auto) ;;
    cpu) export LINFOOL_CUDA=0 ;;
    *) [[ "$GPU" =~ ^(all|[0-9]+(,[0-9]+)*)$ ]] || { echo "ERROR: GPU=$GPU is not auto, cpu, all, a GPU number or a"\
" list such as 0,1 (make setup GPU=1 builds the CUDA Caffe, GPU=cpu the CPU one)" >&2; exit 2; }
       export LINFOOL_CUDA=1 ;;
  esac
  [ -n "${CUDA_ARCH:-}" ] || unset CUDA_ARCH
  [[ "${RELEASE:-auto}" =~ ^(11|13|auto)$ ]] \
    || { echo "ERROR: CUDA=$RELEASE: use CUDA=11, CUDA=13 or CUDA=auto (chosen from the box's driver and cards)" >&2; exit 2; }
  [[ "${RELEASE:-auto}" == auto ]] || export LINFOOL_CUDA=1
else
  # Any other target keeps the remembered choice: a CUDA= or CUDA_ARCH= that make exported for another
  # purpose (`make test-gpu-build CUDA=13 CUDA_ARCH=90` builds that apart) must not become it.
  RELEASE=
  unset CUDA_ARCH
fi

if [ -n "${CAFFE_ROOT:-}" ]; then
  # Your own Caffe brings its libraries: no build packages, no apt, no root (clusters).
  step "system packages: none needed with CAFFE_ROOT (your Caffe brings its own libraries)"
else
  step "system packages"
  tools/install_system_deps.sh      # needs no root or apt when every package is already present
fi

PY_VER=$("$PYTHON" -c 'import sys; print("%d%d" % sys.version_info[:2])') \
  || die "no Python interpreter '$PYTHON'; install python3 or set PYTHON=/path/to/python3"
if [ -z "${CAFFE_ROOT:-}" ] && ! ls /usr/lib/x86_64-linux-gnu/libboost_python"$PY_VER".so >/dev/null 2>&1; then
  die "this system's Boost.Python has no build for Python ${PY_VER:0:1}.${PY_VER:1} (pycaffe needs one);"\
" run with PYTHON=/usr/bin/python3 (Debian 12: 3.11)"
fi

REQ_HASH=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
VENV_PID=""
if [ "$(cat "$VENV/.linfool-requirements" 2>/dev/null)" != "$REQ_HASH" ]; then
  # numpy first (Caffe's build compiles pycaffe against its headers); the other packages install beside
  # the Caffe build, which needs the CPU while pip mostly waits on the network (~45 s off a cold setup).
  step "creating $VENV: numpy now, the other pinned packages of requirements.txt beside the Caffe build"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$(grep '^numpy==' requirements.txt)" 2>&1 \
    | grep -v '^WARNING: Location' || true
  { "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt \
      && "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .; } > "$VENV/.linfool-pip.log" 2>&1 &
  VENV_PID=$!
  trap '[ -z "$VENV_PID" ] || kill "$VENV_PID" 2>/dev/null || true' EXIT     # a failed build stops pip too
else
  step "$VENV is up to date with requirements.txt"
fi
# Waits for the packages installing in the background (if any) and checks that they import.
venv_ready() {
  [ -n "$VENV_PID" ] || return 0
  local rc=0
  wait "$VENV_PID" || rc=$?
  VENV_PID=""
  grep -v '^WARNING: Location' "$VENV/.linfool-pip.log" || true
  [ "$rc" = 0 ] && "$VENV/bin/python" -c 'import numpy, lmdb, cv2, matplotlib, google.protobuf, linfool' \
    || die "the venv's packages did not install; see pip's messages above"
  echo "$REQ_HASH" > "$VENV/.linfool-requirements"
  step "$VENV: the pinned packages of requirements.txt installed"
}

if [ -n "${CAFFE_ROOT:-}" ]; then
  step "using your Caffe at CAFFE_ROOT=$CAFFE_ROOT (no build)"
  TREE=$(cd "$CAFFE_ROOT" && pwd) || die "CAFFE_ROOT=$CAFFE_ROOT does not exist"
else
  CACHE_DIR=${LINFOOL_CACHE:-~/.cache/linfool}     # ~: HOME, or the password entry's home when HOME is unset
  { mkdir -p "$CACHE_DIR" && [ -w "$CACHE_DIR" ]; } 2>/dev/null \
    || die "the Caffe build cache $CACHE_DIR cannot be written (HOME=${HOME:-unset}); set LINFOOL_CACHE to a writable folder"
  FLAVOR=$VENV/.linfool-caffe-cuda ARCHS=$VENV/.linfool-cuda-arch TOOLKITS=$VENV/.linfool-cuda-toolkit
  CUDA=${LINFOOL_CUDA:-$(cat "$FLAVOR" 2>/dev/null || echo 0)}
  ARCH=${CUDA_ARCH:-$(cat "$ARCHS" 2>/dev/null || echo auto)}
  FORCED=${RELEASE:-$(cat "$TOOLKITS" 2>/dev/null || true)}     # CUDA=11|13, remembered like GPU=1
  [ "$FORCED" != auto ] || FORCED=
  if [ "$CUDA" = 1 ]; then
    # The toolkit and architectures from the box (tools/cuda_choose.sh says which and why, in one line)
    export LINFOOL_CUDA_CHOICE
    LINFOOL_CUDA_CHOICE=$(CUDA=$FORCED CUDA_ARCH=$ARCH tools/cuda_choose.sh) || exit 1
    if [ "$LINFOOL_CUDA_CHOICE" = cpu ]; then CUDA=0; unset LINFOOL_CUDA_CHOICE; fi
  fi
  step "Caffe, $([ "$CUDA" = 1 ] && echo "CUDA" || echo "CPU-only") build (cached per machine in ${LINFOOL_CACHE:-~/.cache/linfool})"
  TREE=$(LINFOOL_CUDA=$CUDA CUDA_ARCH=$ARCH tools/build_caffe.sh "$VENV/bin/python" | tail -n 1)
  [ "$(cat "$FLAVOR" 2>/dev/null)" = "$CUDA" ] || echo "$CUDA" > "$FLAVOR"
  [ "$(cat "$ARCHS" 2>/dev/null)" = "$ARCH" ] || echo "$ARCH" > "$ARCHS"
  [ "$(cat "$TOOLKITS" 2>/dev/null)" = "$FORCED" ] || echo "$FORCED" > "$TOOLKITS"
fi
venv_ready
[ -f "$TREE/python/caffe/_caffe.so" ] || die "no pycaffe at $TREE/python/caffe/_caffe.so; build it there with 'make pycaffe'"
[ -x "$TREE/build/tools/caffe" ] || die "no caffe binary at $TREE/build/tools/caffe; build it there with 'make all'"

# pycaffe becomes importable through a .pth file in the venv: no sys.path edits anywhere in the code.
# Written only when it changes, so a read-only install (the Docker images, run as the calling user)
# passes this step.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ "$(cat "$SITE/linfool_caffe.pth" 2>/dev/null)" = "$TREE/python" ] || echo "$TREE/python" > "$SITE/linfool_caffe.pth"
CAFFE_PY=$("$VENV/bin/python" -m linfool caffe --check) || die "pycaffe does not import; see the message above"
# Which OpenBLAS kernel Caffe runs with here: checked once per CPU and cached (linfool.core.blas).
step "$("$VENV/bin/python" -m linfool caffe --blas)"
step "ready: Caffe at $TREE; $VENV/bin/python imports pycaffe from $CAFFE_PY"
