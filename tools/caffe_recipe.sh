# The one description of the Caffe that linfool builds: the pinned source, the patches laid over it
# (tools/caffe_patches/NN-name.patch, each a unified diff whose header says why, what and which tests
# cover it; NN-cuda-*.patch only in a CUDA build), the build options and their cache key. Sourced by tools/build_caffe.sh (the library, tools and
# pycaffe) and tools/test_caffe.sh (Caffe's own tests against that library), so that both compile
# exactly the same patched source. The caller defines step() and die().
#
#   caffe_key PYTHON     fetch + check the sdist; set OPTIONS, KEY, ENTRY (and CUDA_DIR, GENCODE)
#   caffe_source WORK    unpack the sdist into WORK, apply the patches in order, write Makefile.config; set SRC

SDIST_NAME=brocolli-caffe          # Caffe master (2020) + SSD-fork layers; see ../shared/CAFFE_BUILD.md
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
CACHE=${LINFOOL_CACHE:-~/.cache/linfool}
# Caffe links OpenBLAS's OpenMP build (Debian's libopenblas0-openmp), not the system's default pthread
# one. Caffe's fused SGD update runs on libgomp's threads; with BLAS on a second pool of its own threads,
# each pool spins while the other works: at the blog's batch 256 a step took 85-89 ms with the pthread
# build and 75-80 ms with this one, weights bitwise equal (docs/log.md, 2026-12-04). The rpath makes
# the caffe tools, libcaffe and pycaffe load this copy whatever the system's libopenblas.so.0
# alternative says; OpenCV's libblas.so.3/liblapack.so.3 wrappers then bind to the libopenblas.so.0
# already loaded, so one OpenBLAS runs in the process (tests/test_setup.py checks it).
BLAS_BUILD=openblas-openmp
BLAS_DIR=/usr/lib/x86_64-linux-gnu/$BLAS_BUILD
BLAS_HEADERS=/usr/include/x86_64-linux-gnu/$BLAS_BUILD
RECIPE_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

caffe_key() {
  local PYTHON=$1
  mkdir -p "$CACHE/downloads"
  TARBALL="$CACHE/downloads/$SDIST_NAME-$SDIST_VERSION.tar.gz"
  if [ ! -f "$TARBALL" ]; then
    step "downloading $SDIST_NAME==$SDIST_VERSION source from PyPI"
    DL=$(mktemp -d "$CACHE/downloads/tmp.XXXXXX")
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: "$SDIST_NAME==$SDIST_VERSION" -d "$DL" \
      || die "pip download $SDIST_NAME==$SDIST_VERSION failed; check that PyPI is reachable"
    mv "$DL/$SDIST_NAME-$SDIST_VERSION.tar.gz" "$TARBALL"; rmdir "$DL"
  fi
  echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --quiet - \
    || { rm -f "$TARBALL"; die "sha256 mismatch for $TARBALL (deleted); rerun to download again"; }

  PY_VER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  PY_INCLUDE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NP_INCLUDE=$("$PYTHON" -c 'import numpy; print(numpy.get_include())')
  NP_VER=$("$PYTHON" -c 'import numpy; print(numpy.__version__)')
  if [ "${LINFOOL_CUDA:-0}" = 1 ]; then
    # The toolkit and the architectures from the box (its driver and cards) or CUDA= / CUDA_ARCH=.
    CHOICE=${LINFOOL_CUDA_CHOICE:-$(CUDA_ARCH=${CUDA_ARCH:-auto} "$RECIPE_TOOLS/cuda_choose.sh")} || exit 1
    read -r TOOLKIT ARCH <<<"$CHOICE"
    [ "$TOOLKIT" != cpu ] || die "no GPU visible for a CUDA build here: give CUDA_ARCH=all (or a list) to build for other boxes"
    CUDA_DIR=$("$RECIPE_TOOLS/cuda_toolkit.sh" "$PYTHON" "$TOOLKIT" | tail -n 1) || exit 1  # it said why
    CUDA_VER=$("$CUDA_DIR/bin/nvcc" --version | grep -o 'release [0-9.]*' | cut -d' ' -f2)
    # nvcc runs ptxas, fatbinary and nvlink from PATH: the chosen toolkit's come first, or another
    # toolkit's on PATH compiles for it (a box with CUDA 13 in /usr/local/bin gave Debian's nvcc 11.8
    # CUDA 13's ptxas, which has no sm_70 and compiled sm_90 with the wrong release).
    export PATH="$CUDA_DIR/bin:$PATH"
    local ptxas_ver
    ptxas_ver=$(ptxas --version 2>/dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2)
    [ "$ptxas_ver" = "$CUDA_VER" ] \
      || die "nvcc $CUDA_VER in $CUDA_DIR/bin comes without its ptxas (ptxas on PATH: ${ptxas_ver:-none}); reinstall that toolkit"
    GENCODE=""
    for a in $ARCH; do
      case "$a" in
        ptx*) GENCODE+=" -gencode arch=compute_${a#ptx},code=compute_${a#ptx}";;      # PTX, JIT-compiled by newer cards
        *) GENCODE+=" -gencode arch=compute_$a,code=sm_$a";;
      esac
    done
    PATCHES=("$RECIPE_TOOLS"/caffe_patches/[0-9][0-9]-*.patch)
  else
    CUDA_DIR=
    PATCHES=()
    for patch in "$RECIPE_TOOLS"/caffe_patches/[0-9][0-9]-*.patch; do
      [[ $(basename "$patch") == [0-9][0-9]-cuda-* ]] || PATCHES+=("$patch")
    done
  fi
  # The build key follows the patches' contents: editing one rebuilds, and its tests run again.
  PATCHES_KEY=$(cat "${PATCHES[@]}" | sha256sum | cut -c1-12)
  if [ -n "$CUDA_DIR" ]; then
    OPTIONS="cuda$CUDA_VER $CUDA_DIR arch:${ARCH// /,} py$PY_VER numpy$NP_VER blas:$BLAS_BUILD patches:$PATCHES_KEY"
  else
    OPTIONS="cpu py$PY_VER numpy$NP_VER blas:$BLAS_BUILD patches:$PATCHES_KEY"
  fi
  KEY=$(printf '%s %s' "$SDIST_SHA256" "$OPTIONS" | sha256sum | cut -c1-16)
  ENTRY="$CACHE/caffe-$KEY"
}

caffe_source() {
  local WORK=$1
  [ -e "$BLAS_DIR/libopenblas.so.0" ] && [ -e "$BLAS_HEADERS/cblas.h" ] \
    || die "OpenBLAS's OpenMP build is not installed ($BLAS_DIR); install libopenblas-openmp-dev (tools/install_system_deps.sh does) or set CAFFE_ROOT to a built Caffe"
  step "unpacking source into $WORK"
  tar -xzf "$TARBALL" -C "$WORK"
  SRC="$WORK/$SDIST_NAME-$SDIST_VERSION"
  # The sdist ships protobuf code generated by an old protoc; delete it so the build regenerates it
  # with this machine's protoc (a stale include/caffe/proto/caffe.pb.h would shadow the fresh one).
  rm -f "$SRC/include/caffe/proto/caffe.pb.h" "$SRC/python/caffe/proto/caffe_pb2.py"
  step "applying ${#PATCHES[@]} patches (tools/caffe_patches/)"
  local patch
  for patch in "${PATCHES[@]}"; do
    if ! patch -d "$SRC" -p1 --dry-run --forward < "$patch" >"$WORK/patch.log" 2>&1; then
      # "checking file F" / "Hunk #1 FAILED at 31." -> "src/caffe/solver.cpp: Hunk #1 FAILED at 31."
      die "$(basename "$patch") does not apply to $SDIST_NAME $SDIST_VERSION: $(awk '/^checking file /{f=$3} /FAILED|malformed|can.t find/{print f ": " $0; exit}' "$WORK/patch.log") (nothing was built; fix the patch: its header says what it changes)"
    fi
    patch -d "$SRC" -p1 --quiet --forward --no-backup-if-mismatch < "$patch"
  done

  # OpenCV 4 dropped the C constants Caffe uses; force-include the headers that still define them,
  # in this order (videoio.hpp first, else CV_FOURCC fails). See CAFFE_BUILD.md.
  CV_COMPAT="-include opencv2/videoio.hpp -include opencv2/imgproc/types_c.h -include opencv2/imgproc/imgproc_c.h"
  CV_COMPAT+=" -include opencv2/imgcodecs/legacy/constants_c.h -include opencv2/videoio/legacy/constants_c.h"

  if [ -n "$CUDA_DIR" ]; then
    # No cuDNN: the blog's net uses only Data, InnerProduct, Softmax(WithLoss) and Accuracy.
    # Caffe's default CUDA_ARCH starts at compute_20, which CUDA >= 11 rejects: the architectures come
    # from CUDA_ARCH above (one per card kind: a card without its sm_XX code fails with "no kernel image",
    # and PTX is JIT-compiled by the driver at every start).
    # CUDA 13's headers (CCCL/Thrust) need C++17. The rpath lets libcaffe find cudart/cuBLAS/cuRAND.
    GPU_CONFIG="CUDA_DIR := $CUDA_DIR
  CUDA_ARCH :=$GENCODE
  NVCCFLAGS := -std=c++17
  LDFLAGS := -Wl,-rpath,$CUDA_DIR/lib64 -Wl,-rpath,$CUDA_DIR/lib"
    if [ "$CUDA_DIR" = /usr ]; then
      # Debian's layout (CUDA 11.8 from its archive): the CUDA headers are in /usr/include, which the
      # compilers search already; Caffe's -I/usr/include would break libstdc++'s #include_next.
      GPU_CONFIG+="
  override CUDA_INCLUDE_DIR :="
    fi
  else
    GPU_CONFIG="CPU_ONLY := 1"
  fi
cat > "$SRC/Makefile.config" <<CFG
# Generated by linfool tools/build_caffe.sh ($OPTIONS)
$GPU_CONFIG
BLAS := open
BLAS_INCLUDE := $BLAS_HEADERS
BLAS_LIB := $BLAS_DIR
LDFLAGS += -Wl,-rpath,$BLAS_DIR
USE_OPENCV := 1
OPENCV_VERSION := 3
USE_LMDB := 1
USE_LEVELDB := 0
PYTHON_INCLUDE := $PY_INCLUDE $NP_INCLUDE
# No libpython here: the interpreter that imports _caffe provides the symbols.
PYTHON_LIBRARIES := boost_python${PY_VER/./}
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/opencv4 /usr/include/hdf5/serial
LIBRARY_DIRS := /usr/local/lib /usr/lib /usr/lib/x86_64-linux-gnu/hdf5/serial
COMMON_FLAGS := $CV_COMPAT -Wno-deprecated-declarations
# OpenMP for the data layer's parallel transform in GPU mode (host code only: nvcc does not take -fopenmp).
CXXFLAGS += -fopenmp
LINKFLAGS += -fopenmp
Q ?= @
CFG
}
