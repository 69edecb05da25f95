#!/bin/sh
# PID 1 of the httpd image: checks the configuration, then becomes apache2 in the
# foreground (SIGTERM stops it at once; `docker stop` takes a fraction of a second).
# Environment:
#   MPR_ROUTES  optional static routes, ';'-separated ("10.231.2.0/24 via 10.231.1.254"),
#               for topologies whose gateway is another container; needs NET_ADMIN,
#               which is then dropped before apache2 starts.
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
if setpriv --bounding-set -net_admin true 2>/dev/null; then
  exec setpriv --bounding-set -net_admin apache2 -D FOREGROUND
fi
exec apache2 -D FOREGROUND
