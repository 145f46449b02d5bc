#!/usr/bin/env bash
# Build Caffe from the pinned PyPI source distribution into a cache entry, atomically.
#
# Usage: tools/build_caffe.sh PYTHON      (PYTHON: the venv's interpreter, whose numpy headers pycaffe uses)
# Env:   LINFOOL_CACHE (default ~/.cache/linfool), JOBS (default nproc),
#        LINFOOL_CUDA=1 for a CUDA build: the toolkit and architectures chosen from the box
#        (tools/cuda_choose.sh: its driver and cards, or CUDA=11|13, CUDA_HOME, CUDA_ARCH=auto|all|LIST),
#        or LINFOOL_CUDA_CHOICE (what tools/setup.sh chose); the toolkit from tools/cuda_toolkit.sh
# Prints the cache entry's path on its last line of stdout. The entry has BVLC's built-tree layout
# (build/lib, build/tools, python/caffe), so it can also be used as a CAFFE_ROOT.
set -euo pipefail

PYTHON=${1:?usage: build_caffe.sh PYTHON}
JOBS=${JOBS:-$(nproc)}
START=$SECONDS

step() { printf '[build_caffe %4ds] %s\n' $((SECONDS - START)) "$*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }
# shellcheck source=tools/caffe_recipe.sh
source "$(dirname "$0")/caffe_recipe.sh"

caffe_key "$PYTHON"
if [ -f "$ENTRY/BUILD_INFO" ]; then
  step "cached build found ($OPTIONS)"
  echo "$ENTRY"; exit 0
fi

WORK=$(mktemp -d "$CACHE/tmp-caffe-$KEY.XXXXXX")   # never looks like an entry; removed on any exit
trap 'rm -rf "$WORK"' EXIT
caffe_source "$WORK"

cd "$SRC"
BUILD=.temp_release
TOOLS="$BUILD/tools/caffe.bin $BUILD/tools/convert_imageset.bin $BUILD/tools/compute_image_mean.bin"
step "compiling libcaffe, tools (caffe, convert_imageset, compute_image_mean) and pycaffe with $JOBS jobs"
step "(a cold CPU build takes about 3 minutes on 2 cores, a CUDA build of one architecture 8-9; log: $WORK/make.log)"
# Caffe's make must not inherit our make's command line through MAKEFLAGS: `make setup CUDA_ARCH=90`
# would override Makefile.config's CUDA_ARCH (nvcc then takes "90" for a second input file).
if ! env -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES make -j"$JOBS" lib $TOOLS pycaffe > "$WORK/make.log" 2>&1; then
  tail -n 30 "$WORK/make.log" >&2
  trap - EXIT
  die "Caffe build failed; full log kept in $WORK/make.log"
fi

step "assembling cache entry"
OUT="$WORK/entry"
mkdir -p "$OUT/build/tools"
cp -a "$BUILD/lib" "$OUT/build/lib"
for t in caffe convert_imageset compute_image_mean; do
  cp -a "$BUILD/tools/$t.bin" "$OUT/build/tools/"
  ln -s "$t.bin" "$OUT/build/tools/$t"
done
mkdir -p "$OUT/python"
cp -a python/caffe "$OUT/python/caffe"
rm -rf "$OUT/python/caffe/test" "$OUT/python/caffe/_caffe.cpp"
printf 'source %s==%s sha256 %s\noptions %s\nbuilt %s\n' \
  "$SDIST_NAME" "$SDIST_VERSION" "$SDIST_SHA256" "$OPTIONS" "$(date -u +%FT%TZ)" > "$OUT/BUILD_INFO"
mv "$OUT" "$ENTRY"    # atomic: the entry appears complete or not at all
step "done: $ENTRY"
echo "$ENTRY"
