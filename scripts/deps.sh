#!/bin/sh
# Installs the Debian packages that building and running mod_proxy_reversed
# needs, when they are missing (as root, through apt-get). Used by `make demo`;
# CI installs the same (and what the tests need) in .ci/run.
set -eu
need=""
command -v apxs >/dev/null 2>&1 || need="$need apache2-dev"
command -v apache2 >/dev/null 2>&1 || need="$need apache2"
command -v curl >/dev/null 2>&1 || need="$need curl"
# The demo's HTTPS node makes its certificates with openssl.
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v cc >/dev/null 2>&1 || need="$need build-essential"
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || need="$need libclang-dev"
# `make` also builds the in-Tomcat connector's jar: javac and Tomcat's jars.
command -v javac >/dev/null 2>&1 || need="$need default-jdk-headless"
[ -f /usr/share/java/tomcat10-coyote.jar ] || need="$need libtomcat10-java"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing packages:$need (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y $need
# The packaged apache2 service is not used by the demo (it runs its own httpd).
