#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that building Caffe needs, only those that are missing.
# Usage: tools/install_system_deps.sh   (run as root, or as a user with sudo; the CUDA build needs no more:
# its toolkit comes from PyPI, see tools/cuda_toolkit.sh)
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libboost-regex-dev            # needed at link time (CAFFE_BUILD.md)
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
  libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev
  libopenblas-dev libopencv-dev
  python3-dev python3-venv
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "System packages: all ${#PACKAGES[@]} present."
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "ERROR: missing packages (${missing[*]}) and no apt-get here; install their equivalents by hand, or point CAFFE_ROOT at a built Caffe." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "ERROR: need root to install: ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "System packages: installing ${#missing[@]} missing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "System packages: done."
