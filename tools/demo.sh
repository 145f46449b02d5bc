#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded data, stage by stage through make, at the demo's
# stated sizes, then a table of what each stage took. Extra make variables pass through ("$@").
#
# Usage: tools/demo.sh [VAR=value ...]     (make demo: the variables given to make apply too)
# Sizes (each a make variable of its stage; README "What you should see" has the numbers they give):
#   sweep: prototxt/solver_demo.prototxt (1,000 iterations a run); attack-curves, transfer: 10 val images x
#   17 targets = 170 pairs; background: 2 rounds of 150 fooling images and 400 fine-tuning iterations,
#   5 val images a measurement; blackbox: 4 images, up to 3,000 queries.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
# A size given to `make demo` (make puts its command-line variables in the environment) wins.
STAGES=(
  "data DATA= IMAGENET="
  "sweep DATA="
  "eval RUN=blog"
  "figures RUN=blog"
  "attack-curves RUN=blog PAIRS=${PAIRS:-170} IMAGES=${IMAGES:-10}"
  "transfer RUN=blog PAIRS=${PAIRS:-170} IMAGES=${IMAGES:-10}"
  "background RUN=blog ROUNDS=${ROUNDS:-2} FOOL=${FOOL:-150} ITERS=${ITERS:-400} MEASURE=${MEASURE:-5}"
  "claims RUN=blog"
  "blackbox RUN=blog IMAGES=${IMAGES:-4} QUERIES=${QUERIES:-3000}"
  "report RUN=blog"
)
"$MAKE" --no-print-directory setup
export LINFOOL_SET_UP=1            # tools/setup.sh ran above: the stages skip it (2 s each otherwise)
TIMES=()
START=$SECONDS
for stage in "${STAGES[@]}"; do
  begin=$(date +%s.%N)
  # shellcheck disable=SC2086  # a stage is its target and variables, split on purpose
  "$MAKE" --no-print-directory $stage "$@"
  TIMES+=("$(awk -v stage="make $stage" -v begin="$begin" -v end="$(date +%s.%N)" 'BEGIN { printf "%-62s %6.1f s", stage, end - begin }')")
done
echo
echo "Demo stages (this machine, $(nproc) cores):"
printf '  %s\n' "${TIMES[@]}"
echo "  total $((SECONDS - START)) s"
echo "Demo done. Open runs/blog/report.html"
