#!/usr/bin/env bash
# Build linfool:cpu or linfool:gpu with Docker or Podman, whichever is here (Docker when its daemon
# answers, else Podman; ENGINE=podman|docker picks). Without a debian:12 base and without a registry,
# the base is made from this host's Debian mirror (tools/debian_base.sh). On failure: the failing
# step's last lines, and the full log's path.
#
# Usage: tools/docker_build.sh cpu|gpu
# Env:   CUDA=11|13 and CUDA_ARCH=all|LIST for the GPU image (docker/gpu/Dockerfile's defaults when
#        empty: CUDA 11.8, every card it supports)
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:?usage: tools/docker_build.sh cpu|gpu}
die() { echo "ERROR: $*" >&2; exit 1; }
[ "$KIND" = cpu ] || [ "$KIND" = gpu ] || die "no image kind '$KIND': tools/docker_build.sh cpu|gpu"
case "${CUDA:-}" in ""|11|13) ;; *) die "CUDA=$CUDA: the GPU image takes CUDA=11 (the default) or CUDA=13";; esac

engine() {
  if [ -n "${ENGINE:-}" ]; then command -v "$ENGINE" >/dev/null || die "ENGINE=$ENGINE is not installed"; echo "$ENGINE"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker
  elif command -v podman >/dev/null; then echo podman
  elif command -v docker >/dev/null; then die "docker is installed but its daemon does not answer (docker info);"\
" start it (systemctl start docker) or install Podman (apt-get install podman buildah)"
  else die "no container engine: install Docker Engine (https://docs.docker.com/engine/install/debian/)"\
" or Podman (apt-get install podman buildah)"; fi
}
ENGINE=$(engine)

if ! "$ENGINE" image inspect debian:12 >/dev/null 2>&1; then
  echo "no debian:12 image in $ENGINE: pulling it"
  timeout 120 "$ENGINE" pull docker.io/library/debian:12 >/dev/null 2>&1 && "$ENGINE" tag docker.io/library/debian:12 debian:12 \
    || { echo "no registry answered: making debian:12 from this host's Debian mirror"; tools/debian_base.sh "$ENGINE"; }
fi

# Podman: chroot isolation builds where an OCI runtime cannot start (nested containers, some CI hosts);
# the RUN steps and the image are the same.
FLAGS=()
[ "$ENGINE" = podman ] && FLAGS+=(--isolation chroot --network host)
if [ "$KIND" = gpu ]; then
  [ -n "${CUDA:-}" ] && FLAGS+=(--build-arg "CUDA=$CUDA")
  [ -n "${CUDA_ARCH:-}" ] && FLAGS+=(--build-arg "CUDA_ARCH=$CUDA_ARCH")
fi
LOG=$(mktemp -t "linfool-docker-$KIND.XXXXXX.log")     # kept on failure; TMPDIR decides where
START=$SECONDS
echo "building linfool:$KIND with $ENGINE (log: $LOG)"
if ! "$ENGINE" build "${FLAGS[@]}" -f "docker/$KIND/Dockerfile" -t "linfool:$KIND" . > "$LOG" 2>&1; then
  step=$(grep -E '^(\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+|^Step [0-9]+/[0-9]+|^#[0-9]+ \[' "$LOG" | tail -n 1 || true)
  tail -n 20 "$LOG" >&2
  die "building linfool:$KIND failed at: ${step:-the first step} (last lines above; full log $LOG)"
fi
SIZE=$("$ENGINE" image inspect --format '{{.Size}}' "linfool:$KIND" | awk '{printf "%.2f GB", $1/1e9}')
echo "built linfool:$KIND with $ENGINE in $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s: $SIZE"
rm -f "$LOG"
