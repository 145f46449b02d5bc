#!/usr/bin/env bash
# Print (last line of stdout) the root of a CUDA toolkit that can build Caffe: bin/nvcc, the cuBLAS
# and cuRAND headers, and lib64/ with libcudart, libcublas, libcurand.
#
# Usage: tools/cuda_toolkit.sh PYTHON TOOLKIT     Env: LINFOOL_CACHE (default ~/.cache/linfool)
# TOOLKIT is what tools/cuda_choose.sh chose for this box:
#   DIR  a system toolkit (CUDA_HOME, or /usr/local/cuda found there), checked and used;
#   13   NVIDIA's CUDA 13.0 wheels from PyPI, the only ones with a complete compiler (nvcc, cudafe++,
#        ptxas; the -cu12 nvcc wheels carry ptxas only), installed once into a cache entry of their
#        own; CUDA 13 binaries need an NVIDIA driver >= 580;
#   11   CUDA 11.8 (drivers >= 450, cards sm_35 .. sm_90) from Debian's non-free archive
#        (tools/install_system_deps.sh --cuda11), in Debian's layout under /usr.
set -euo pipefail
PYTHON=${1:?usage: cuda_toolkit.sh PYTHON TOOLKIT}
TOOLKIT=${2:?usage: cuda_toolkit.sh PYTHON TOOLKIT}
CACHE=${LINFOOL_CACHE:-~/.cache/linfool}
die() { echo "ERROR: $*" >&2; exit 1; }

if [ "$TOOLKIT" = 11 ]; then
  # CUDA 11.8 from Debian's own archive, installed as the system's (its layout: nvcc in /usr/bin,
  # headers in /usr/include, libraries in /usr/lib/x86_64-linux-gnu); nvidia-cuda-toolkit-gcc pairs
  # its nvcc with g++-11, the newest host compiler 11.8 accepts. Debian's package depends on Debian's
  # driver libraries (libcuda1): beside a driver from NVIDIA's own installer they would clash, so then
  # it is refused in one line.
  smi=$(command -v nvidia-smi || true)
  if [ -n "$smi" ] && ! dpkg -S "$(readlink -f "$smi")" >/dev/null 2>&1 \
     && ! dpkg-query -W -f='${Status}' nvidia-cuda-toolkit 2>/dev/null | grep -q "install ok installed"; then
    die "this box needs CUDA 11.8 (see the line above), and its NVIDIA driver is not from Debian's packages," \
      "so Debian's nvidia-cuda-toolkit would install driver libraries beside it: install NVIDIA's CUDA 11.8 or" \
      "12.x toolkit instead and point CUDA_HOME at it, e.g. CUDA_HOME=/usr/local/cuda-11.8 make setup GPU=1"
  fi
  "$(dirname "$0")/install_system_deps.sh" --cuda11 >&2
  version=$(/usr/bin/nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2)
  [ "$version" = 11.8 ] || die "Debian's nvidia-cuda-toolkit gave nvcc ${version:-none}, not CUDA 11.8"
  echo /usr; exit 0
fi
if [ "$TOOLKIT" != 13 ]; then
  for need in bin/nvcc include/cuda_runtime.h include/cublas_v2.h include/curand.h; do
    [ -e "$TOOLKIT/$need" ] || die "the CUDA toolkit $TOOLKIT has no $need; install it with cuBLAS" \
      "and cuRAND (dev packages), or unset CUDA_HOME to let setup choose"
  done
  for lib in cudart cublas curand; do     # in any one of the three (ls of all three fails if one is absent)
    found=""
    for dir in lib64 lib lib/x86_64-linux-gnu; do [ -e "$TOOLKIT/$dir/lib$lib.so" ] && found=1; done
    [ -n "$found" ] || die "the CUDA toolkit $TOOLKIT has no lib$lib.so in lib64/, lib/ or lib/x86_64-linux-gnu/"
  done
  echo "$TOOLKIT"; exit 0
fi

# One CUDA release (13.0) for every part; nvcc refuses runtime headers of another release.
PINS="nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85
nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35"
ENTRY="$CACHE/cuda-13.0-$(echo "$PINS" | sha256sum | cut -c1-12)"
ROOT="$ENTRY/nvidia/cu13"           # the wheels' own layout: bin/ include/ lib/ nvvm/
if [ -f "$ENTRY/TOOLKIT_INFO" ]; then echo "$ROOT"; exit 0; fi

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/tmp-cuda.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "[cuda_toolkit] installing NVIDIA's CUDA 13.0 wheels from PyPI (~600 MB, once)" >&2
# shellcheck disable=SC2086  # PINS is a list of requirement specifiers
"$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$WORK/entry" $PINS >&2 \
  || die "pip could not install the CUDA 13.0 wheels ($PINS); check that PyPI is reachable"
# The wheels ship only versioned libraries (libcudart.so.13); the linker's -lcudart needs the
# unversioned name, and Caffe's Makefile looks in lib64/.
mkdir "$WORK/entry/nvidia/cu13/lib64"
for lib in "$WORK"/entry/nvidia/cu13/lib/lib{cudart,cublas,cublasLt,curand}.so.*; do
  name=$(basename "$lib")
  ln -s "../lib/$name" "$WORK/entry/nvidia/cu13/lib64/$name"
  ln -s "../lib/$name" "$WORK/entry/nvidia/cu13/lib64/${name%%.so.*}.so"
done
"$WORK/entry/nvidia/cu13/bin/nvcc" --version >/dev/null || die "the wheels' nvcc does not run on this machine"
printf '%s\ninstalled %s\n' "$PINS" "$(date -u +%FT%TZ)" > "$WORK/entry/TOOLKIT_INFO"
mv "$WORK/entry" "$ENTRY"           # atomic: the entry appears complete or not at all
echo "$ROOT"
