#!/usr/bin/env bash
# Make the `debian:12` base image where no registry answers (air-gapped hosts with a Debian mirror, and
# these machines): debootstrap a minimal bookworm from the mirror this host's apt already uses, carry the
# CA bundle over (an https mirror keeps working inside), and import it into the engine as debian:12.
# tools/docker_build.sh calls it only when the engine has no debian:12 and pulling one fails.
#
# Usage: tools/debian_base.sh ENGINE     (docker or podman; needs root and debootstrap)
# Env:   DEBIAN_MIRROR (default: the first Debian URI in /etc/apt/sources.list{,.d/*})
set -euo pipefail
ENGINE=${1:?usage: tools/debian_base.sh docker|podman}
die() { echo "ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run 'sudo tools/debian_base.sh $ENGINE' once"
command -v debootstrap >/dev/null || die "no debootstrap; install it: apt-get install debootstrap"

# The mirror: the host's own apt sources, one-line (.list) or deb822 (.sources) format; security updates
# come from the matching debian-security path when the host lists one.
sources() { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; }
uris=$(sources | grep -oE '(https?|file)://[^ ]+' | sed 's:/*$::')
MIRROR=${DEBIAN_MIRROR:-$(grep -vE 'security' <<<"$uris" | grep -m1 -E '/debian$' || true)}
SECURITY=$(grep -m1 -E 'debian-security$' <<<"$uris" || true)
[ -n "$MIRROR" ] || die "no Debian mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR=http://your.mirror/debian"

ROOTFS=$(mktemp -d /var/tmp/linfool-debian12.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debian:12 base: debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" > "$ROOTFS.log" 2>&1 \
  || { tail -n 15 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; die "debootstrap failed (last lines above)"; }
rm -f "$ROOTFS.log"

{ echo "deb $MIRROR bookworm main"; echo "deb $MIRROR bookworm-updates main"
  [ -z "$SECURITY" ] || echo "deb $SECURITY bookworm-security main"; } > "$ROOTFS/etc/apt/sources.list"
# The host's CA bundle, and its local CAs (a corporate TLS proxy, a private mirror) where
# update-ca-certificates keeps them when the image installs ca-certificates.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$ROOTFS/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"
fi
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
  mkdir -p "$ROOTFS/usr/local/share/ca-certificates" && cp -r /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
fi
# As the official image: no apt lists or caches in the layer.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb

tar -C "$ROOTFS" -c . | "$ENGINE" import --change 'CMD ["bash"]' - debian:12 > "$ROOTFS.log" 2>&1 \
  || { cat "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; die "$ENGINE import failed"; }
rm -f "$ROOTFS.log"
echo "debian:12 base: imported into $ENGINE ($("$ENGINE" image inspect --format '{{.Size}}' debian:12 | awk '{printf "%.0f MB", $1/1e6}'))"
