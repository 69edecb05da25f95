#!/usr/bin/env bash
# Builds the project's container images without any registry:
#   mpr/base:<suite>  Debian minbase from debootstrap (the mirror of this machine's apt sources,
#                     read now) plus the suite's updates, imported with `docker import`
#   mpr/httpd         Debian's apache2 + mod_proxy_reversed (docker/httpd/Dockerfile)
#   mpr/backend       Debian's tomcat10 + reversed-agent     (docker/backend/Dockerfile)
#   mpr/router        nftables + iproute2, the firewall of the demo and tests (docker/router/Dockerfile)
# The three Dockerfiles are the ones a user with a registry builds FROM debian:<suite>;
# here they are built FROM mpr/base. Each image carries the hash of its inputs as the
# label org.mpr.inputs and is rebuilt only when that hash changes.
#
# Usage: scripts/docker-images.sh [BINDIR]   (BINDIR: target/release by default; it must hold
#        libmod_proxy_reversed.so and reversed-agent, built on this host)
# Needs a Docker engine (DOCKER_HOST), root (debootstrap), debootstrap.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BINDIR=${1:-$here/target/release}
WORK=${MPR_DOCKER_ROOT:-/var/lib/mpr-docker}/build
log() { echo "docker-images: $*" >&2; }
die() { log "$*"; exit 1; }

for f in libmod_proxy_reversed.so reversed-agent; do
  [ -f "$BINDIR/$f" ] || die "$BINDIR/$f is missing: run 'cargo build --release --workspace' first"
done
command -v docker >/dev/null || die "the docker client is missing (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-}): run scripts/docker-engine.sh start"

# The host's Debian release: the binaries are built against its libc, so the images use it too.
. /etc/os-release
SUITE=${VERSION_CODENAME:?cannot read VERSION_CODENAME from /etc/os-release}

# The Debian mirror that apt on this machine already uses for $SUITE (never written down here).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: print the first URI of a "Types: deb" stanza whose Suites has $SUITE.
    awk -v suite="$SUITE" '
      function flush() { if (deb && hit && uri != "") { print uri; found=1; exit } deb=0; hit=0; uri="" }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (!found) flush() }' "$f" | head -n1
  done | head -n1 | grep . && return 0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI suite components
    sed -e 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }'
  done | head -n1 | grep . && return 0
  return 1
}

sha() { sha256sum | cut -c1-16; }
label_of() { docker image inspect -f '{{ index .Config.Labels "org.mpr.inputs" }}' "$1" 2>/dev/null || true; }

BASE_PKGS="ca-certificates,curl,iproute2,nftables,procps"
# The base's inputs: the suite, the package list and this script's base recipe (not the
# mirror: any mirror of the suite gives the same image).
base_hash=$( { echo "$SUITE $BASE_PKGS"; sed -n '/^build_base()/,/^}/p' "$0"; } | sha)
BASE=mpr/base:$SUITE

build_base() {
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  local mirror root t0
  mirror=$(apt_mirror) || die "no 'deb' source for $SUITE in /etc/apt/sources.list{,.d}: cannot pick a mirror"
  t0=$(date +%s)
  root=$WORK/rootfs
  # Whatever happens (also an earlier run that was killed), no mount and no
  # half-made rootfs stay behind.
  drop_rootfs() {
    local m
    for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" || true; done
    rm -rf "$root"
  }
  drop_rootfs; mkdir -p "$root"
  trap drop_rootfs EXIT
  trap 'exit 130' INT TERM
  local keyring=()
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  log "debootstrap $SUITE from the mirror of this machine's apt sources"
  debootstrap --variant=minbase "${keyring[@]}" --include="$BASE_PKGS" "$SUITE" "$root" "$mirror" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  # No service may start inside the chroot (it would start on the host).
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod 0755 "$root/usr/sbin/policy-rc.d"
  # The host's apt sources (updates and security suites) so that the image is as current as the host.
  rm -f "$root/etc/apt/sources.list"
  cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get -y -q upgrade && apt-get clean' \
    >"$WORK/upgrade.log" 2>&1 || { tail -n 30 "$WORK/upgrade.log" >&2; die "apt-get upgrade in the rootfs failed"; }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/*
  : >"$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -c . | docker import \
    -c "LABEL org.mpr.inputs=$base_hash" -c 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$root"; trap - EXIT
  log "built $BASE in $(( $(date +%s) - t0 )) s"
}

mkdir -p "$WORK"
if [ "$(label_of "$BASE")" = "$base_hash" ]; then
  log "$BASE is up to date"
else
  build_base
fi
base_id=$(docker image inspect -f '{{.Id}}' "$BASE")

# One image from its Dockerfile. The context is a staging folder laid out as the repository
# (docker/install.sh, docker/<name>/, httpd-conf/, target/release/<binary>) holding only that
# image's inputs, so that the hash (and docker's build cache) sees exactly what goes in.
build_image() {
  local name=$1 ctx h t0
  ctx=$WORK/ctx-$name
  rm -rf "$ctx"; mkdir -p "$ctx/docker" "$ctx/target/release"
  cp "$here/docker/install.sh" "$ctx/docker/"
  cp -a "$here/docker/$name" "$ctx/docker/$name"
  case $name in
    httpd) mkdir -p "$ctx/httpd-conf"
           cp "$here"/httpd-conf/proxy_reversed.load "$here"/httpd-conf/proxy_reversed.conf "$ctx/httpd-conf/"
           cp "$BINDIR/libmod_proxy_reversed.so" "$ctx/target/release/" ;;
    backend) cp "$BINDIR/reversed-agent" "$ctx/target/release/" ;;
  esac
  h=$( { echo "$base_id"; cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum; } | sha)
  if [ "$(label_of "mpr/$name")" = "$h" ]; then
    log "mpr/$name is up to date"; rm -rf "$ctx"; return 0
  fi
  t0=$(date +%s)
  log "building mpr/$name"
  docker build --network=host --force-rm -f "$ctx/docker/$name/Dockerfile" --build-arg "BASE=$BASE" \
    --label "org.mpr.inputs=$h" -t "mpr/$name" "$ctx" >"$WORK/build-$name.log" 2>&1 \
    || { tail -n 40 "$WORK/build-$name.log" >&2; die "docker build of mpr/$name failed (log: $WORK/build-$name.log)"; }
  rm -rf "$ctx"
  log "built mpr/$name in $(( $(date +%s) - t0 )) s"
}

for img in ${MPR_IMAGES:-router httpd backend}; do build_image "$img"; done
# Dangling layers of images that were replaced.
docker image prune -f >/dev/null 2>&1 || true
