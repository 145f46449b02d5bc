#!/usr/bin/env bash
# Caffe's own test suite (gtest) on linfool's patched Caffe: the tests of the code our patches touch
# and of the layers and solver the blog's net uses, plus linfool's own Data-layer test
# (tests/caffe/), built from the same patched source as the cached library (tools/caffe_recipe.sh applies
# tools/caffe_patches/)
# and linked against that library: the library is never rebuilt, only the tests.
#
# Usage: tools/test_caffe.sh PYTHON [--if-needed]
#   --if-needed   do nothing when this build (its cache key) already passed; `make test` uses it
# Env:   LINFOOL_CACHE, LINFOOL_CUDA / CUDA_ARCH (which build, as for tools/build_caffe.sh), JOBS,
#        LINFOOL_CAFFE_TREE (a cache entry to test instead of the one the settings name)
# A pass is recorded beside the cache entry as caffe-<key>.caffe-tests (the entry itself is not
# touched): one line per test binary with its counts, and a total. Leaves out, and says so: LevelDB
# cases (our build has no LevelDB) and GPU cases (a CPU build, or a CUDA build where no GPU is
# visible: then also the binaries that abort for want of a CUDA device even in CPU mode, listed). A
# CUDA build's test binaries and the data they read are kept beside the entry as caffe-<key>.tests/,
# to be carried to a GPU box (no compilers there): `make gpu-check` runs them all there
# (linfool_dev.gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:?usage: test_caffe.sh PYTHON [--if-needed]}
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")     # absolute: the tests run in the source tree
IF_NEEDED=0
[ "${2:-}" = "--if-needed" ] && IF_NEEDED=1
JOBS=${JOBS:-$(nproc)}
START=$SECONDS
step() { printf '[test_caffe %4ds] %s\n' $((SECONDS - START)) "$*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }
# shellcheck source=tools/caffe_recipe.sh
source tools/caffe_recipe.sh

# Caffe's tests of what the patches change (data layers, transformer, prefetch threads, memory, blobs,
# nets, the solver's update, proto upgrades, image IO) and of the blog's layers (InnerProduct, Softmax,
# SoftmaxWithLoss, Accuracy, Concat for the background rounds, the Gaussian filler, BLAS wrappers).
TESTS="data_transformer data_layer annotated_data_layer image_data_layer memory_data_layer internal_thread
  syncedmem blob net inner_product_layer softmax_layer softmax_with_loss_layer accuracy_layer concat_layer
  filler math_functions solver gradient_based_solver upgrade_proto io linfool_data_layer linfool_softmax_rows"
SKIP='*LevelDB*:*GPU*'
# In a CUDA build, Caffe calls the CUDA runtime even in CPU mode (SyncedMemory and InternalThread ask
# for the current device): where no GPU and driver are, such a binary aborts with "CUDA driver version is
# insufficient" or "no CUDA-capable device". Those are said and counted apart, not as failures.
NO_DEVICE='cudaSuccess \((35|100) vs\. 0\)'

caffe_key "$PYTHON"
ENTRY=${LINFOOL_CAFFE_TREE:-$ENTRY}
GPU_HERE=0
if [ -n "$CUDA_DIR" ]; then
  if nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    SKIP='*LevelDB*' GPU_HERE=1
  else
    step "a CUDA build and no GPU here: the CPU cases run where Caffe needs no CUDA device; the others are listed"
  fi
fi
[ -f "$ENTRY/BUILD_INFO" ] || die "no Caffe build at $ENTRY ($OPTIONS); run \`make setup\` first"
MARKER="$ENTRY.caffe-tests"
if [ "$IF_NEEDED" = 1 ] && [ -f "$MARKER" ]; then
  step "Caffe's own tests passed for this build before: $(tail -n 1 "$MARKER") ($MARKER)"
  exit 0
fi
step "Caffe's own tests for the build at $ENTRY ($OPTIONS); a cold run takes about 1-2 minutes on 2 cores"

WORK=$(mktemp -d "$CACHE/tmp-caffe-tests-$KEY.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
caffe_source "$WORK"
cp tests/caffe/test_*.cpp "$SRC/src/caffe/test/"
cd "$SRC"
BUILD=.temp_release
# The tests link the cached library itself: Caffe's Makefile links them with -lcaffe and an rpath to
# $BUILD/lib, where the entry's files are linked in; `make -o` never remakes the library.
mkdir -p "$BUILD/lib"
ln -s "$ENTRY"/build/lib/* "$BUILD/lib/"
LIB=$(cd "$BUILD/lib" && ls libcaffe.so.* | head -n 1)
BINS=""
for t in $TESTS; do BINS+=" $BUILD/test/test_$t.testbin"; done
step "compiling $(wc -w <<< "$TESTS") test binaries with $JOBS jobs (log: $WORK/make.log)"
caffe_make() { env -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES make -j"$JOBS" -o "$BUILD/lib/$LIB" "$@" >> "$WORK/make.log" 2>&1; }
# the generated protobuf header first (the tests include it; the library's build made its own copy)
if ! { caffe_make proto && caffe_make $BINS; }; then
  tail -n 30 "$WORK/make.log" >&2
  trap - EXIT
  die "building Caffe's tests failed; full log kept in $WORK/make.log"
fi

# The sdist leaves out examples/images, which test_io and test_image_data_layer read: made here with
# the sizes and colour kinds those tests assert (cat.jpg 360x480 colour, cat_gray.jpg and
# "cat gray.jpg" 360x480 grayscale, fish-bike.jpg 323x481 colour; cat.jpg padded to the 140,391 bytes
# test_io counts).
"$PYTHON" - examples/images <<'PY'
import pathlib, sys
import cv2
import numpy as np
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
def photo(h, w, seed):     # smooth colour gradients plus noise: compresses like a photo
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [127 + 100 * np.sin(x / (17 + 9 * c) + y / (23 + 5 * c) + c) for c in range(3)]
    return np.clip(np.stack(planes, -1) + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
def padded_jpeg(image, size):   # test_io's TestReadFileToDatum asserts cat.jpg's byte count: COM segments fill up
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes()
    assert len(data) < size - 4, len(data)
    segments, missing = b"", size - len(data)
    while missing > 60000:               # a segment adds 2 + length bytes, length <= 65535
        segments += b"\xff\xfe" + (29998).to_bytes(2, "big") + b"\0" * 29996
        missing -= 30000
    segments += b"\xff\xfe" + (missing - 2).to_bytes(2, "big") + b"\0" * (missing - 4)
    return data[:2] + segments + data[2:]
cat = photo(360, 480, 1)
(out / "cat.jpg").write_bytes(padded_jpeg(cat, 140391))
gray = cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY)
cv2.imwrite(str(out / "cat_gray.jpg"), gray)
cv2.imwrite(str(out / "cat gray.jpg"), gray)
cv2.imwrite(str(out / "fish-bike.jpg"), photo(323, 481, 2))
PY

VALGRIND=""
if command -v valgrind >/dev/null; then
  # invalid reads and writes are what 04-zero-copy.patch's first version made; uninitialised-value reports are left
  # out (liblmdb's mdb_dbi_close makes one on every close, in Caffe's own db code, not ours)
  VALGRIND="valgrind -q --error-exitcode=99 --leak-check=no --undef-value-errors=no"
else
  step "valgrind is not installed: linfool's Data-layer test runs without it (memory errors may go unseen)"
fi
RESULTS="$WORK/results"
: > "$RESULTS"
FAILED="" NEEDS_GPU=""
for t in $TESTS; do
  RUNNER=""
  [ "$t" = linfool_data_layer ] && RUNNER=$VALGRIND
  if $RUNNER "$BUILD/test/test_$t.testbin" --gtest_filter="-$SKIP" > "$WORK/$t.log" 2>&1; then rc=0; else rc=$?; fi
  passed=$(grep -o '\[  PASSED  \] [0-9]* test' "$WORK/$t.log" | grep -o '[0-9]*' || echo 0)
  failed=$(grep -c '^\[  FAILED  \] .* (.* ms)$' "$WORK/$t.log" || true)
  printf '%-28s %4s passed %3s failed rc %s%s\n' "test_$t" "$passed" "$failed" "$rc" \
    "$([ -n "$RUNNER" ] && echo ' (under valgrind)')" | tee -a "$RESULTS" >&2
  if [ "$rc" != 0 ] && [ -n "$CUDA_DIR" ] && [ "$GPU_HERE" = 0 ] && grep -Eq "$NO_DEVICE" "$WORK/$t.log"; then
    NEEDS_GPU+=" test_$t"
    sed -i '$ d' "$RESULTS"
    printf '%-28s needs a CUDA device (%s)\n' "test_$t" "$(grep -Eo "$NO_DEVICE.*" "$WORK/$t.log" | head -n 1)" >&2
  elif [ "$rc" != 0 ]; then
    FAILED+=" test_$t"
    grep -E '^\[  FAILED  \]|Check failed|corrupted|double free|Invalid (read|write)|Segmentation' "$WORK/$t.log" \
      | head -n 8 >&2 || true
  fi
done
TOTAL=$(awk '{p += $2; f += $4} END {print p " passed, " f " failed"}' "$RESULTS")
RAN=$(wc -l < "$RESULTS")
LEFT="$SKIP${NEEDS_GPU:+; need a CUDA device (none here):$NEEDS_GPU}"
step "Caffe's tests: $TOTAL in $RAN binaries (left out: $LEFT)"
if [ -n "$FAILED" ]; then
  trap - EXIT
  die "Caffe's own tests failed in:$FAILED (logs kept: $WORK/<name>.log)"
fi
{ cat "$RESULTS"; echo "patches $PATCHES_KEY: $TOTAL in $RAN binaries, left out $LEFT ($(date -u +%FT%TZ))"; } > "$MARKER.tmp"
mv "$MARKER.tmp" "$MARKER"        # the record appears whole: a later `make test` trusts it
step "passed; recorded in $MARKER"
if [ -n "$CUDA_DIR" ]; then        # for a GPU box: the binaries, the data they read, relative paths kept
  KEEP="$ENTRY.tests"
  rm -rf "$KEEP.tmp" && mkdir -p "$KEEP.tmp/test" "$KEEP.tmp/src/caffe/test"
  cp "$BUILD"/test/*.testbin "$KEEP.tmp/test/"
  cp -r examples "$KEEP.tmp/examples"
  cp -r src/caffe/test/test_data "$KEEP.tmp/src/caffe/test/test_data"
  rm -rf "$KEEP" && mv "$KEEP.tmp" "$KEEP"
  step "test binaries kept for a GPU box in $KEEP (make gpu-check runs their GPU cases)"
fi
