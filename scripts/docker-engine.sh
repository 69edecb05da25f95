#!/usr/bin/env bash
# A private Docker engine for the project's images, demo and tests, which
# leaves the host's networking alone (no docker0, no firewall rules, no
# ip_forward change): dockerd --iptables=false --ip-forward=false --bridge=none.
#
#   scripts/docker-engine.sh start   start it unless an engine already answers; prints
#                                    "DOCKER_HOST=..." (empty value: the default engine)
#                                    and "MPR_DOCKER_STARTED=1" when this call started it
#   scripts/docker-engine.sh stop    stop the engine this script started (no-op otherwise)
#   scripts/docker-engine.sh env     print DOCKER_HOST for the engine in use
#   scripts/docker-engine.sh run CMD [ARG...]
#                                    CMD with DOCKER_HOST set, the engine started for it
#                                    (and stopped after it) when none answers
#
# Environment: MPR_DOCKER_ROOT (default /var/lib/mpr-docker): data root (the
# image cache, kept between runs); the socket, pid file and exec root live in
# $MPR_DOCKER_ROOT/run and are removed on stop. MPR_DOCKER_OWNER: who owns an
# engine started here (default: the calling process's pid; the demo says "demo").
# An engine whose owner pid is gone is adopted by the next `start`.
set -euo pipefail

ROOT=${MPR_DOCKER_ROOT:-/var/lib/mpr-docker}
RUN=$ROOT/run
SOCK=$RUN/docker.sock
PIDF=$RUN/dockerd.pid
LOG=$ROOT/dockerd.log

die() { echo "docker-engine: $*" >&2; exit 1; }

engine_answers() { timeout 10 docker ${1:+-H "$1"} info >/dev/null 2>&1; }

ours_running() {
  [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null && engine_answers "unix://$SOCK"
}

start() {
  command -v docker >/dev/null || die "the docker client is missing: apt-get install docker.io"
  if ours_running; then
    echo "DOCKER_HOST=unix://$SOCK"
    # Left running by a process that is gone (a test that was killed): adopt it,
    # so that this caller stops it. An engine owned by the demo stays the demo's.
    local owner; owner=$(cat "$RUN/owner" 2>/dev/null || true)
    if [ -n "$owner" ] && [ "$owner" -eq "$owner" ] 2>/dev/null && ! kill -0 "$owner" 2>/dev/null; then
      echo "${MPR_DOCKER_OWNER:-$PPID}" >"$RUN/owner"
      echo "MPR_DOCKER_STARTED=1"
    else
      echo "MPR_DOCKER_STARTED=0"
    fi
    return 0
  fi
  # An engine the user already runs (DOCKER_HOST or the default socket): reuse it.
  if engine_answers ""; then
    echo "DOCKER_HOST=${DOCKER_HOST:-}"; echo "MPR_DOCKER_STARTED=0"; return 0
  fi
  command -v dockerd >/dev/null || die "dockerd is missing: apt-get install docker.io"
  [ "$(id -u)" = 0 ] || die "starting a private dockerd needs root"
  cleanup_run
  mkdir -p "$ROOT/data" "$RUN/exec"
  setsid dockerd -H "unix://$SOCK" --data-root="$ROOT/data" --exec-root="$RUN/exec" \
    --pidfile="$PIDF" --storage-driver=overlay2 --iptables=false --ip-forward=false \
    --bridge=none >"$LOG" 2>&1 </dev/null &
  local pid=$! i
  for i in $(seq 1 150); do
    if engine_answers "unix://$SOCK"; then
      echo "${MPR_DOCKER_OWNER:-$PPID}" >"$RUN/owner"
      echo "DOCKER_HOST=unix://$SOCK"; echo "MPR_DOCKER_STARTED=1"; return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  echo "docker-engine: dockerd exited or did not answer within 30 s; the end of $LOG:" >&2
  tail -n 25 "$LOG" >&2 || true
  cleanup_run
  exit 3
}

cleanup_run() {
  # The engine's namespace mounts must go before the folders.
  if [ -d "$RUN" ]; then
    local m
    for m in $(awk -v run="$RUN" 'index($2, run) == 1 { print $2 }' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$RUN"
  fi
}

stop() {
  [ -f "$PIDF" ] || { cleanup_run; return 0; }
  local pid i
  pid=$(cat "$PIDF")
  if kill -0 "$pid" 2>/dev/null; then
    # Containers first (each stops in well under a second), then the daemon.
    local ids
    ids=$(docker -H "unix://$SOCK" ps -q 2>/dev/null || true)
    [ -z "$ids" ] || docker -H "unix://$SOCK" rm -f $ids >/dev/null 2>&1 || true
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    # containerd started by this dockerd exits with it; give it a moment.
    sleep 0.2
  fi
  cleanup_run
}

run_with() {
  local out st=0
  out=$(start) || exit $?
  DOCKER_HOST=$(echo "$out" | sed -n 's/^DOCKER_HOST=//p')
  if [ -n "$DOCKER_HOST" ]; then export DOCKER_HOST; else unset DOCKER_HOST; fi
  "$@" || st=$?
  if echo "$out" | grep -q '^MPR_DOCKER_STARTED=1'; then stop; fi
  return $st
}

case "${1:-}" in
  start) start ;;
  run) shift; [ $# -gt 0 ] || die "usage: $0 run CMD [ARG...]"; run_with "$@" ;;
  stop) stop ;;
  env) if ours_running; then echo "DOCKER_HOST=unix://$SOCK"; else echo "DOCKER_HOST=${DOCKER_HOST:-}"; fi ;;
  *) die "usage: $0 start|stop|env|run CMD..." ;;
esac
