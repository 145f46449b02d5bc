#!/usr/bin/env bash
# Print (last line of stdout) the root of a CUDA toolkit that can build Caffe: bin/nvcc, the cuBLAS
# and cuRAND headers, and lib64/ with libcudart, libcublas, libcurand.
#
# Usage: tools/cuda_toolkit.sh PYTHON     Env: CUDA_HOME (a system toolkit, e.g. /usr/local/cuda-12.4),
#                                              LINFOOL_CACHE (default ~/.cache/linfool)
# With CUDA_HOME set, that toolkit is checked and used (CUDA 12 keeps working with drivers < 580).
# Otherwise the toolkit comes from PyPI alone: NVIDIA's CUDA 13.0 wheels are the only ones with a
# complete compiler (nvcc, cudafe++, ptxas; the -cu12 nvcc wheels carry ptxas only). They are
# installed once into a cache entry of their own; CUDA 13 binaries need an NVIDIA driver >= 580.
set -euo pipefail
PYTHON=${1:?usage: cuda_toolkit.sh PYTHON}
CACHE=${LINFOOL_CACHE:-~/.cache/linfool}
die() { echo "ERROR: $*" >&2; exit 1; }

if [ -n "${CUDA_HOME:-}" ]; then
  for need in bin/nvcc include/cuda_runtime.h include/cublas_v2.h include/curand.h; do
    [ -e "$CUDA_HOME/$need" ] || die "CUDA_HOME=$CUDA_HOME has no $need; install the toolkit with cuBLAS" \
      "and cuRAND (dev packages), or unset CUDA_HOME to use NVIDIA's CUDA 13 wheels from PyPI"
  done
  for lib in cudart cublas curand; do
    ls "$CUDA_HOME"/lib64/lib$lib.so "$CUDA_HOME"/lib/lib$lib.so >/dev/null 2>&1 \
      || die "CUDA_HOME=$CUDA_HOME has no lib$lib.so in lib64/ or lib/"
  done
  echo "$CUDA_HOME"; exit 0
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
