#!/bin/sh
# Installs what the Docker targets need when it is missing (as root, through
# apt-get): Debian's engine and compose, and debootstrap for the base image.
set -eu
need=""
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
command -v docker-compose >/dev/null 2>&1 || need="$need docker-compose"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing packages:$need (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends $need
