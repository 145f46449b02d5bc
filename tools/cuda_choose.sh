#!/usr/bin/env bash
# Choose the CUDA toolkit for this box from the box itself: the NVIDIA driver and every visible card's
# compute capability (nvidia-smi), then print one line "TOOLKIT ARCHS...":
#   13       NVIDIA's CUDA 13.0 wheels from PyPI: driver >= 580 and every card sm_75 (Turing) or newer
#   11       CUDA 11.8: drivers >= 450 (CUDA 11's minor-version compatibility; PTX JIT needs >= 520),
#            cards sm_35 (the blog's K40) .. sm_90, PTX for newer ones: Debian 12's non-free
#            nvidia-cuda-toolkit (tools/cuda_toolkit.sh installs it)
#   DIR      a system toolkit (CUDA_HOME, else /usr/local/cuda when present) that fits the box
# ARCHS: the architectures to build (CUDA_ARCH=auto: the visible cards; all: every card the toolkit
# supports, plus PTX of its newest; or a list such as 70,80), checked against the toolkit. What was
# chosen and why is one line on stderr; when nothing fits, one ERROR line naming the driver, the cards
# and the minimum, exit 1.
#
# Usage: tools/cuda_choose.sh        Env: CUDA=11|13 (override), CUDA_ARCH=auto|all|LIST, CUDA_HOME,
#                                         LINFOOL_SYSTEM_CUDA (default /usr/local/cuda: where a system
#                                         toolkit is looked for when CUDA_HOME is not set)
set -euo pipefail

# Per toolkit: the oldest driver it runs on, the architectures it builds.
declare -A MIN_DRIVER=([13]=580 [11]=450 [12]=525)
ARCHS_13="75 80 86 89 90 100 120"
ARCHS_11="35 37 50 52 60 61 70 75 80 86 87 89 90"
ARCHS_12="50 52 60 61 70 75 80 86 87 89 90"          # 12.0-12.7; 12.8 adds Blackwell (100 120)
ARCHS_12_8="50 52 60 61 70 75 80 86 87 89 90 100 120"

die() { echo "ERROR: $*" >&2; exit 1; }
say() { echo "[cuda] $*" >&2; }

# The box: "DRIVER CC CC ..." (driver as its major number; cc as 70, 90, ...), or "" with no GPU.
read_box() {
  command -v nvidia-smi >/dev/null || return 0
  local lines
  lines=$(nvidia-smi --query-gpu=driver_version,compute_cap --format=csv,noheader 2>/dev/null) || return 0
  [ -n "$lines" ] || return 0
  echo "$lines" | awk -F', *' '
    { split($1, d, "."); if (min == "" || d[1] + 0 < min) min = d[1] + 0; cc = $2; gsub(/\./, "", cc); cards = cards " " cc }
    END { print min cards }'
}

archs_of() {  # the architectures toolkit $1 (13, 11, or a system version such as 12.4) builds
  case "$1" in
    13|13.*) echo "$ARCHS_13" ;;
    11|11.8) echo "$ARCHS_11" ;;
    11.*) echo "${ARCHS_11% 87 89 90}" ;;
    12.[0-7]) echo "$ARCHS_12" ;;
    12.*) echo "$ARCHS_12_8" ;;
    *) echo "" ;;
  esac
}

min_driver_of() { local major=${1%%.*}; echo "${MIN_DRIVER[$major]:-999}"; }

# Why toolkit $1 cannot serve driver $2 and cards $3..., or "" when it can.
unfit() {
  local toolkit=$1 driver=$2; shift 2
  local archs newest cc
  archs=" $(archs_of "$toolkit") "
  newest=$(archs_of "$toolkit" | awk '{print $NF}')
  [ "$driver" -ge "$(min_driver_of "$toolkit")" ] || { echo "CUDA $toolkit needs a driver >= $(min_driver_of "$toolkit")"; return; }
  for cc in "$@"; do
    if [[ "$archs" != *" $cc "* ]]; then
      if [ "$cc" -gt "$newest" ] && [ "$driver" -ge 520 ]; then continue; fi   # PTX of the newest, JIT-compiled
      echo "CUDA $toolkit builds for sm_${archs// /, sm_}" | sed 's/sm_, //; s/, sm_$//'
      return
    fi
  done
}

nvcc_version() { "$1/bin/nvcc" --version 2>/dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2; }

resolve_archs() {  # CUDA_ARCH for toolkit $1 and the box's cards $2...
  local toolkit=$1; shift
  local all newest wanted=${CUDA_ARCH:-auto} out="" a
  all=$(archs_of "$toolkit"); newest=${all##* }
  case "$wanted" in
    auto) if [ $# -eq 0 ]; then wanted=all; else wanted="$*"; fi ;;
  esac
  if [ "$wanted" = all ]; then echo "$all ptx$newest"; return; fi
  for a in ${wanted//,/ }; do
    case "$a" in
      ptx[0-9]*) out+=" $a" ;;
      [0-9][0-9]|[0-9][0-9][0-9])
        if [[ " $all " == *" $a "* ]]; then out+=" $a"
        elif [ "$a" -gt "$newest" ]; then out+=" ptx$newest"   # a newer card runs the newest PTX
        else die "CUDA_ARCH=$wanted: CUDA $toolkit cannot build for sm_$a (it builds sm_${all// /, sm_}); use CUDA=11 for older cards"
        fi ;;
      *) die "CUDA_ARCH=$wanted: use auto, all, or compute capabilities such as 80,90" ;;
    esac
  done
  echo "$out" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ' | sed 's/ $//'
}

BOX=$(read_box)
read -r DRIVER CARDS <<<"${BOX:-} "
CARDS=${CARDS:-}
# shellcheck disable=SC2206  # the cards are words on purpose
CARD_LIST=($CARDS)
WHAT="driver ${DRIVER:-none}, cards ${CARDS:+sm_${CARDS// /, sm_}}"

if [ -z "${DRIVER:-}" ] && [ -n "${CUDA_HOME:-}" ] && [ -z "${CUDA:-}" ]; then
  # No GPU visible, a toolkit pointed at: build with it, for CUDA_ARCH (auto: every card it supports).
  [ -x "$CUDA_HOME/bin/nvcc" ] || die "CUDA_HOME=$CUDA_HOME has no bin/nvcc"
  version=$(nvcc_version "$CUDA_HOME")
  [ -n "$(archs_of "$version")" ] || die "CUDA_HOME=$CUDA_HOME is CUDA ${version:-of no known release}; linfool builds with CUDA 11, 12 or 13"
  say "no GPU visible (nvidia-smi): the toolkit CUDA_HOME=$CUDA_HOME (CUDA $version), CUDA_ARCH=${CUDA_ARCH:-all}"
  archs=$(resolve_archs "$version") || exit 1; echo "$CUDA_HOME $archs"; exit 0
fi
if [ -z "${DRIVER:-}" ]; then
  # No GPU visible: the CPU build, unless a CUDA build for other boxes is asked for (a Docker image,
  # a login node): CUDA=11|13 or CUDA_ARCH=all|LIST, built for every card of that toolkit or the list.
  if [ -z "${CUDA:-}" ] && [[ "${CUDA_ARCH:-auto}" == auto ]]; then
    say "no GPU visible (nvidia-smi): the CPU build; CUDA_ARCH=all (or CUDA=11|13) builds a CUDA Caffe for other boxes"
    echo "cpu"; exit 0
  fi
  choice=${CUDA:-13}
  [[ "$choice" =~ ^(11|13)$ ]] || die "CUDA=$choice: use CUDA=11 or CUDA=13"
  say "no GPU visible (nvidia-smi): CUDA $choice, CUDA_ARCH=${CUDA_ARCH:-all}"
  archs=$(resolve_archs "$choice") || exit 1; echo "$choice $archs"; exit 0
fi
[ "$DRIVER" -ge 450 ] || die "$WHAT: the oldest driver a CUDA build of linfool runs on is 450 (CUDA 11.8); update the NVIDIA driver"
for cc in "${CARD_LIST[@]}"; do
  [ "$cc" -ge 35 ] || die "$WHAT: sm_$cc is older than any toolkit linfool builds with (CUDA 11.8 starts at sm_35, the K40)"
done

if [ -n "${CUDA:-}" ]; then
  [[ "$CUDA" =~ ^(11|13)$ ]] || die "CUDA=$CUDA: use CUDA=11 or CUDA=13"
  why=$(unfit "$CUDA" "$DRIVER" "${CARD_LIST[@]}")
  [ -z "$why" ] || die "CUDA=$CUDA on this box ($WHAT): $why"
  say "$WHAT: CUDA $CUDA (asked for with CUDA=)"
  archs=$(resolve_archs "$CUDA" "${CARD_LIST[@]}") || exit 1; echo "$CUDA $archs"; exit 0
fi

SYSTEM=${CUDA_HOME:-${LINFOOL_SYSTEM_CUDA:-/usr/local/cuda}}
if [ -x "$SYSTEM/bin/nvcc" ]; then
  version=$(nvcc_version "$SYSTEM")
  why=$(unfit "$version" "$DRIVER" "${CARD_LIST[@]}")
  if [ -z "$why" ]; then
    say "$WHAT: the system toolkit $SYSTEM (CUDA $version)"
    archs=$(resolve_archs "$version" "${CARD_LIST[@]}") || exit 1; echo "$SYSTEM $archs"; exit 0
  fi
  [ -z "${CUDA_HOME:-}" ] || die "CUDA_HOME=$CUDA_HOME (CUDA $version) does not fit this box ($WHAT): $why; unset it to let setup choose"
  say "the system toolkit $SYSTEM (CUDA $version) does not fit ($why): not used"
fi

if [ -z "$(unfit 13 "$DRIVER" "${CARD_LIST[@]}")" ]; then
  say "$WHAT: CUDA 13 (NVIDIA's wheels from PyPI)"
  archs=$(resolve_archs 13 "${CARD_LIST[@]}") || exit 1; echo "13 $archs"; exit 0
fi
why=$(unfit 11 "$DRIVER" "${CARD_LIST[@]}")
[ -z "$why" ] || die "$WHAT: no toolkit fits: $why; CUDA 13 needs a driver >= 580 and sm_75+"
say "$WHAT: CUDA 11.8 (Debian's non-free nvidia-cuda-toolkit; CUDA 13 needs a driver >= 580 and every card sm_75+)"
archs=$(resolve_archs 11 "${CARD_LIST[@]}") || exit 1; echo "11 $archs"
