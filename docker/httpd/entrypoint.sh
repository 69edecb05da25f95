#!/bin/sh
# PID 1 of the httpd image: checks the configuration, then runs apache2 in the
# foreground (SIGTERM stops it at once; `docker stop` takes a fraction of a second).
# Environment:
#   MPR_ROUTES  optional static routes, ';'-separated ("10.231.2.0/24 via 10.231.1.254"),
#               for topologies whose gateway is another container; needs NET_ADMIN,
#               which is then dropped before apache2 starts.
#   MPR_STOP_GRACE_MS  how long SIGTERM waits for apache2 before killing it (600)
set -eu
die() { echo "mpr-httpd: $*" >&2; exit 2; }

add_routes() {
  [ -n "${MPR_ROUTES:-}" ] || return 0
  echo "$MPR_ROUTES" | tr ';' '\n' | while read -r r; do
    [ -n "$r" ] || continue
    # shellcheck disable=SC2086
    ip route replace $r 2>/dev/null || die "cannot add route '$r' (MPR_ROUTES needs --cap-add NET_ADMIN and a reachable gateway)"
  done
}
add_routes

set -- /etc/apache2/reversed.d/*.conf
[ -e "$1" ] || die "no configuration: mount your *.conf files into /etc/apache2/reversed.d/ (ProxyPass and ProxyReversed lines; see the README's Docker section)"

# Debian's envvars reads variables that may be unset.
set +u
. /etc/apache2/envvars
set -u
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
rm -f "$APACHE_PID_FILE"
if ! out=$(apache2 -t 2>&1); then
  echo "$out" >&2
  die "apache2 -t failed: the configuration in /etc/apache2/reversed.d is not valid (see above)"
fi

# NET_ADMIN is only for the routes: give it up.
drop=""
if setpriv --bounding-set -net_admin true 2>/dev/null; then drop="setpriv --bounding-set -net_admin"; fi
$drop apache2 -D FOREGROUND &
pid=$!

# This shell stays PID 1 and passes signals on: TERM/INT stop apache2 (which
# stops its children at once), USR1/HUP/WINCH are httpd's graceful restart,
# restart and graceful stop. httpd's parent checks its exiting children at
# growing intervals (the next check can come a second later); so that
# `docker stop` stays under a second even on a busy host, whatever still runs
# MPR_STOP_GRACE_MS (600) after SIGTERM is killed (the container ends anyway).
term=0
trap 'term=1; kill -TERM $pid 2>/dev/null' TERM INT
trap 'kill -USR1 $pid 2>/dev/null' USR1
trap 'kill -HUP $pid 2>/dev/null' HUP
trap 'kill -WINCH $pid 2>/dev/null' WINCH
st=0
while :; do
  wait $pid && st=0 || st=$?
  kill -0 $pid 2>/dev/null || break
  [ $term = 1 ] && break
done
if [ $term = 1 ]; then
  grace=${MPR_STOP_GRACE_MS:-600}
  case $grace in ''|*[!0-9]*) grace=600 ;; esac
  i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt $(( grace / 50 )) ]; do sleep 0.05; i=$(( i + 1 )); done
  if kill -0 $pid 2>/dev/null; then
    echo "mpr-httpd: apache2 still running ${grace} ms after SIGTERM: killed" >&2
  fi
  # Every process of the container but this one (children that outlived the parent too).
  kill -KILL -1 2>/dev/null || true
  exit 0
fi
exit $st
