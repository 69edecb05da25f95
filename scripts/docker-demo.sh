#!/usr/bin/env bash
# The compose demo (docker/compose.yml): two httpd front ends, two backends (Tomcat +
# reversed-agent) behind a one-way firewall.
#   scripts/docker-demo.sh start   engine (private one unless an engine answers), images, secrets,
#                                  `docker-compose up`, waits until every link is up, prints curl lines
#   scripts/docker-demo.sh stop    removes the containers and networks (and the engine it started)
# Environment: MPR_DEMO_PROJECT (compose project, default mpr-demo), MPR_FRONT_NET / MPR_BACK_NET
# (first three octets, default 10.231.1 / 10.231.2), MPR_FRONT1_PORT / MPR_FRONT2_PORT (published
# on 127.0.0.1; default: the first free ports from 8091).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${MPR_DOCKER_ROOT:-/var/lib/mpr-docker}
PROJECT=${MPR_DEMO_PROJECT:-mpr-demo}
STATE=$ROOT/demo-$PROJECT
die() { echo "docker-demo: $*" >&2; exit 1; }

compose() {
  # shellcheck disable=SC1091
  . "$STATE/env"
  docker-compose -p "$PROJECT" -f "$here/docker/compose.yml" "$@"
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
free_port_from() {
  local p=$1
  while [ "$p" -lt $(( $1 + 200 )) ]; do
    if port_free "$p" && [ "$p" != "${taken:-}" ]; then echo "$p"; return 0; fi
    p=$(( p + 1 ))
  done
  die "no free port from $1"
}

start() {
  command -v docker-compose >/dev/null || die "docker-compose is missing: apt-get install docker-compose"
  [ -f "$here/target/release/reversed-agent" ] || (cd "$here" && cargo build --release --workspace)
  mkdir -p "$STATE/secrets"
  local out; out=$(MPR_DOCKER_OWNER=demo "$here/scripts/docker-engine.sh" start) || exit 1
  export DOCKER_HOST; DOCKER_HOST=$(echo "$out" | sed -n 's/^DOCKER_HOST=//p')
  [ -n "$DOCKER_HOST" ] || unset DOCKER_HOST
  echo "$out" | grep -q '^MPR_DOCKER_STARTED=1' && touch "$STATE/engine-started"
  "$here/scripts/docker-images.sh"
  for n in back1 back2; do
    [ -s "$STATE/secrets/$n.secret" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/secrets/$n.secret"; }
    chmod 0600 "$STATE/secrets/$n.secret"
  done
  local p1 p2 taken
  p1=${MPR_FRONT1_PORT:-$(free_port_from 8091)}; taken=$p1
  p2=${MPR_FRONT2_PORT:-$(free_port_from $(( p1 + 1 )))}
  cat >"$STATE/env" <<ENV
export MPR_FRONT_NET=${MPR_FRONT_NET:-10.231.1} MPR_BACK_NET=${MPR_BACK_NET:-10.231.2}
export MPR_FRONT1_PORT=$p1 MPR_FRONT2_PORT=$p2 MPR_DEMO_SECRETS=$STATE/secrets
${DOCKER_HOST:+export DOCKER_HOST=$DOCKER_HOST}
ENV
  compose up -d --no-build || die "docker-compose up failed"
  # Bounded wait: both nodes idle in every child of both front ends.
  local ok=0 i f
  for i in $(seq 1 120); do
    ok=1
    for f in $p1 $p2; do
      s=$(curl -s -m 2 "http://127.0.0.1:$f/reversed-status?json" || true)
      for n in back1 back2; do echo "$s" | grep -q "\"node\":\"$n\"[^}]*\"idle\":[1-9]" || ok=0; done
    done
    [ $ok = 1 ] && break
    # A container that exited will not come back by waiting.
    if compose ps | grep -q ' Exit '; then break; fi
    sleep 0.5
  done
  if [ $ok != 1 ]; then
    compose ps; compose logs --tail=20
    die "the backends' links did not come up (a container exited, or 60 s passed) (containers left running: scripts/docker-demo.sh stop)"
  fi
  cat <<TXT

mod_proxy_reversed compose demo ($PROJECT) is up: the backends dialled both front ends through the firewall.
  curl http://127.0.0.1:$p1/back1/hello.txt          # front1 -> back1's Tomcat (AJP over a reversed connection)
  curl http://127.0.0.1:$p2/back2/whoami.jsp         # front2 -> back2
  curl http://127.0.0.1:$p1/app/whoami.jsp           # front1's balancer over back1 and back2 (repeat it)
  curl http://127.0.0.1:$p1/reversed-status          # links per child and node
  curl -m 10 http://127.0.0.1:$p1/forward/hello.txt  # a forward ProxyPass to back1: 503, the firewall drops it
Stop it with: make docker-demo-stop
TXT
}

stop() {
  [ -f "$STATE/env" ] || { echo "docker-demo: $PROJECT is not running"; return 0; }
  compose down --remove-orphans -t 5 || true
  if [ -f "$STATE/engine-started" ]; then "$here/scripts/docker-engine.sh" stop; fi
  rm -rf "$STATE"
  echo "docker-demo: $PROJECT stopped and removed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
