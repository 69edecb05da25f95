#!/bin/sh
# Installs mod_proxy_reversed with apxs (as any httpd module is installed),
# the Debian-style mods-available files, and reversed-agent.
# Usage: apxs/install.sh <libmod_proxy_reversed.so> <reversed-agent>
# Environment: APXS (apxs), MODDIR (apxs -q LIBEXECDIR), CONFDIR
# (/etc/apache2/mods-available, skipped when absent), PREFIX (/usr/local),
# UNITDIR (/etc/systemd/system, skipped without /etc/systemd), AGENTCONF
# (/etc/reversed-agent: agent.toml installed when absent).
set -eu
so=$1
agent=$2
APXS=${APXS:-apxs}
MODDIR=${MODDIR:-$($APXS -q LIBEXECDIR)}
CONFDIR=${CONFDIR:-/etc/apache2/mods-available}
PREFIX=${PREFIX:-/usr/local}
here=$(cd "$(dirname "$0")/.." && pwd)

[ -f "$so" ] || { echo "install: $so is missing: run 'make' first" >&2; exit 1; }
# apxs installs a file under its own name: give the cdylib httpd's usual one.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$so" "$stage/mod_proxy_reversed.so"
"$APXS" -i -n proxy_reversed "$stage/mod_proxy_reversed.so"
echo "installed $MODDIR/mod_proxy_reversed.so"

if [ -d "$CONFDIR" ]; then
  sed "s#@MODDIR@#$MODDIR#" "$here/httpd-conf/proxy_reversed.load" > "$CONFDIR/proxy_reversed.load"
  [ -f "$CONFDIR/proxy_reversed.conf" ] || cp "$here/httpd-conf/proxy_reversed.conf" "$CONFDIR/proxy_reversed.conf"
  echo "installed $CONFDIR/proxy_reversed.load and .conf (enable with: a2enmod proxy_reversed)"
fi
install -D -m 0755 "$agent" "$PREFIX/bin/reversed-agent"
echo "installed $PREFIX/bin/reversed-agent"

# The agent as a systemd service, and its default configuration location.
UNITDIR=${UNITDIR:-/etc/systemd/system}
AGENTCONF=${AGENTCONF:-/etc/reversed-agent}
if [ -d "$(dirname "$UNITDIR")" ]; then
  mkdir -p "$UNITDIR"
  sed "s#@BINDIR@#$PREFIX/bin#g" "$here/systemd/reversed-agent.service" > "$UNITDIR/reversed-agent.service"
  echo "installed $UNITDIR/reversed-agent.service (systemctl daemon-reload; systemctl enable --now reversed-agent)"
fi
install -d -m 0755 "$AGENTCONF"
if [ ! -f "$AGENTCONF/agent.toml" ]; then
  install -m 0644 "$here/systemd/agent.toml" "$AGENTCONF/agent.toml"
  echo "installed $AGENTCONF/agent.toml (edit it; put the node's secret in $AGENTCONF/secret, mode 0600)"
fi
