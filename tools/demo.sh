#!/usr/bin/env bash
# `make demo` / `make open-questions`: a plan of stages run through make, in the order of what each
# reads, at the sizes declared in python/linfool/core/stages.py (`python -m linfool plan demo` prints
# them), then a table of what each stage took. A size given to make (make puts its command-line
# variables in the environment) wins over the plan's; extra make variables pass through ("$@").
#
# Usage: tools/demo.sh demo|open-questions [VAR=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
PLAN=${1:?usage: tools/demo.sh demo|open-questions [VAR=value ...]}
shift
"$MAKE" --no-print-directory setup
export LINFOOL_SET_UP=1            # tools/setup.sh ran above: the stages skip it (2 s each otherwise)
mapfile -t STAGES < <(.venv/bin/python -m linfool plan "$PLAN")
[ ${#STAGES[@]} -gt 0 ] || { echo "ERROR: no plan '$PLAN' (python -m linfool plan demo)" >&2; exit 2; }
TIMES=()
START=$SECONDS
for stage in "${STAGES[@]}"; do
  begin=$(date +%s.%N)
  # shellcheck disable=SC2086  # a stage is its target and variables, split on purpose
  "$MAKE" --no-print-directory $stage "$@"
  TIMES+=("$(awk -v stage="make $stage" -v begin="$begin" -v end="$(date +%s.%N)" 'BEGIN { printf "%-62s %6.1f s", stage, end - begin }')")
done
echo
echo "$([ "$PLAN" = demo ] && echo Demo || echo Open-question) stages (this machine, $(nproc) cores):"
printf '  %s\n' "${TIMES[@]}"
echo "  total $((SECONDS - START)) s"
echo "$([ "$PLAN" = demo ] && echo Demo || echo Open questions) done. Open runs/blog/report.html"
