#!/usr/bin/env bash
# Resolve CUDA_ARCH into the architectures to build, printed as one line: "90", or for all
# "75 80 86 89 90 100 120 ptx120" (ptxN: PTX of compute capability N, for cards newer than the list).
#   auto   the visible GPUs' compute capabilities (nvidia-smi); `all` when there is no GPU or no
#          nvidia-smi (a Docker build, a login node)
#   all    every card CUDA 13 supports: Turing sm_75, Ampere sm_80/86, Ada sm_89, Hopper sm_90,
#          Blackwell sm_100/120, plus PTX of the newest for cards after them
#   LIST   compute capabilities such as 80,90 (or "80 90")
# Usage: tools/cuda_arch.sh [auto|all|LIST]      (tools/build_caffe.sh calls it)
set -euo pipefail
ALL_ARCHS="75 80 86 89 90 100 120"
ARCH=${1:-auto}
if [ "$ARCH" = auto ]; then
  ARCH=$({ nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true; } | tr -d '.' | sort -u | tr '\n' ' ')
  [ -n "${ARCH// /}" ] || ARCH=all
fi
[ "$ARCH" = all ] && ARCH="$ALL_ARCHS ptx${ALL_ARCHS##* }"
for a in ${ARCH//,/ }; do
  case "$a" in
    ptx[0-9]*|[0-9][0-9]|[0-9][0-9][0-9]) ;;
    *) echo "ERROR: CUDA_ARCH=$1: use auto, all, or compute capabilities such as 80,90" >&2; exit 1;;
  esac
done
echo ${ARCH//,/ }
