#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that building Caffe needs, only those that are missing.
# Usage: tools/install_system_deps.sh   (run as root, or as a user with sudo; the CUDA build needs no more:
# its toolkit comes from PyPI, see tools/cuda_toolkit.sh)
#        tools/install_system_deps.sh --tests   what only the tests need (make test): chromium for the
#        report's browser test, valgrind for linfool's own Caffe test (tools/test_caffe.sh); where they
#        cannot be installed, one line says so, the browser test skips and the Caffe test runs plainly.
#        tools/install_system_deps.sh --cuda11   CUDA 11.8 from Debian's own archive (nvidia-cuda-toolkit
#        and its gcc 11 pairing), for boxes whose driver or cards CUDA 13 cannot serve (tools/cuda_choose.sh):
#        the archive's contrib, non-free and non-free-firmware components are added in a sources file of
#        their own (/etc/apt/sources.list.d/linfool-non-free.sources; Debian 12 only).
set -euo pipefail
TESTS=0 CUDA11=0
[ "${1:-}" = "--tests" ] && TESTS=1
[ "${1:-}" = "--cuda11" ] && CUDA11=1

PACKAGES=(
  build-essential cmake pkg-config patch   # patch: tools/caffe_patches/
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libboost-regex-dev            # needed at link time (CAFFE_BUILD.md)
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
  libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev
  libopenblas-openmp-dev libopencv-dev   # OpenBLAS's OpenMP build: tools/caffe_recipe.sh says why
  python3-dev python3-venv
)

[ "$TESTS" = 1 ] && PACKAGES=(chromium valgrind)
[ "$CUDA11" = 1 ] && PACKAGES=(nvidia-cuda-toolkit nvidia-cuda-toolkit-gcc)
NON_FREE=/etc/apt/sources.list.d/linfool-non-free.sources
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
if [ "$CUDA11" = 1 ] && [ ! -f "$NON_FREE" ]; then
  grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release \
    || soft "CUDA 11.8 comes from Debian 12's non-free archive; on another system install a CUDA 11.8 or 12.x toolkit and point CUDA_HOME at it"
  echo "System packages: adding Debian's contrib, non-free and non-free-firmware components in $NON_FREE (for nvidia-cuda-toolkit 11.8)"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: contrib non-free non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee "$NON_FREE" >/dev/null
fi
$SUDO apt-get update -qq || soft "apt-get update failed"
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || soft "apt-get could not install ${missing[*]}"
echo "System packages: done."
