#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that building Caffe needs, only those that are missing.
# Usage: tools/install_system_deps.sh   (run as root, or as a user with sudo; the CUDA build needs no more:
# its toolkit comes from PyPI, see tools/cuda_toolkit.sh)
#        tools/install_system_deps.sh --tests   what only the tests need (make test): chromium for the
#        report's browser test, valgrind for linfool's own Caffe test (tools/test_caffe.sh); where they
#        cannot be installed, one line says so, the browser test skips and the Caffe test runs plainly.
set -euo pipefail
TESTS=0
[ "${1:-}" = "--tests" ] && TESTS=1

PACKAGES=(
  build-essential cmake pkg-config patch   # patch: tools/caffe_patches/
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libboost-regex-dev            # needed at link time (CAFFE_BUILD.md)
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
  libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev
  libopenblas-dev libopencv-dev
  python3-dev python3-venv
)

[ "$TESTS" = 1 ] && PACKAGES=(chromium valgrind)
# --tests never fails the run: it says what is missing and the browser test skips.
soft() { if [ "$TESTS" = 1 ]; then echo "Test packages: $1 (the browser test will skip; Caffe's tests run without valgrind)"; exit 0; fi; echo "ERROR: $1" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$([ "$TESTS" = 1 ] && echo Test || echo System) packages: all ${#PACKAGES[@]} present."
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  soft "missing packages (${missing[*]}) and no apt-get here; install their equivalents by hand, or point CAFFE_ROOT at a built Caffe."
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    soft "need root to install: ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}"
  fi
fi
echo "System packages: installing ${#missing[@]} missing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || soft "apt-get update failed"
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || soft "apt-get could not install ${missing[*]}"
echo "System packages: done."
