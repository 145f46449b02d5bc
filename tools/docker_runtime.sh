#!/usr/bin/env bash
# The Docker images' build stage, after `make setup`: prepare what the slim runtime stage copies.
#   /opt/caffe                    the built Caffe tree (caffe binary, libcaffe, pycaffe; ~30 MB), used
#                                 through CAFFE_ROOT, so `make` in the runtime image builds nothing and
#                                 needs no compiler or -dev package
#   /opt/runtime/packages.txt     the Debian packages that Caffe, pycaffe and the venv's extension
#                                 modules load libraries from, found with ldd + dpkg -S (not a hand list)
#   /opt/runtime/root/            libraries they load from the linfool cache (the CUDA build's cudart,
#                                 cuBLAS, cuRAND from NVIDIA's wheels), at the same absolute paths
#                                 (Caffe's RUNPATH points there); the rest of the toolkit stays behind
# Usage: tools/docker_runtime.sh        (in the project root of the build stage, after make setup)
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "ERROR: $*" >&2; exit 1; }
CACHE=${LINFOOL_CACHE:-~/.cache/linfool}
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TREE=$(dirname "$(cat "$SITE/linfool_caffe.pth" 2>/dev/null)")
[ -x "$TREE/build/tools/caffe" ] || die "no built Caffe recorded in the venv; run make setup first"

rm -rf /opt/caffe /opt/runtime && mkdir -p /opt/runtime/root
cp -a "$TREE" /opt/caffe
CAFFE_ROOT=/opt/caffe tools/setup.sh | tail -n 1      # the venv now imports pycaffe from /opt/caffe

objects() {
  find /opt/caffe/build/tools /opt/caffe/build/lib /opt/caffe/python -type f \( -perm -u+x -o -name '*.so*' \)
  find .venv -type f -name '*.so*'
}
# The package that owns a file, from dpkg -S: "pkg:arch: /path". A diverted file (Debian's NVIDIA
# packages divert Mesa's libGL* when nvidia-cuda-toolkit is installed) adds "diversion by X from/to: /path"
# lines, which name no package.
owner_of() {
  local line
  line=$(dpkg -S "$1" 2>/dev/null | grep -v '^diversion by ' | head -n 1)
  [ -n "$line" ] && echo "$line"
}
declare -A packages=()
while read -r object; do
  file -b "$object" | grep -q '^ELF' || continue
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    case "$object:$path" in
      /opt/caffe/*:not) die "$object needs $name, which is not found";;
      *:not) continue;;                   # a wheel's optional library (loaded only if present)
      *:"$CACHE"/*) cp -L --parents "$path" /opt/runtime/root/; continue;;
      *:/opt/caffe/*|*:"$PWD"/*) continue;;
    esac
    owner=$(owner_of "$(realpath "$path")" || owner_of "$path" || owner_of "/usr$path") \
      || die "no Debian package owns $path (needed by $object)"
    packages[${owner%%:*}]=1
  done < <(ldd "$object" 2>/dev/null)
done < <(objects)
printf '%s\n' "${!packages[@]}" | sort > /opt/runtime/packages.txt
echo "runtime: $(wc -l < /opt/runtime/packages.txt) Debian packages, $(du -sh /opt/runtime/root | cut -f1) of cached libraries, Caffe $(du -sh /opt/caffe | cut -f1)"
