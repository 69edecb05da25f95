#!/bin/bash
# PID 1 of the backend image: starts Tomcat (as the tomcat user), waits until its AJP
# port accepts, then runs reversed-agent with the container's arguments. SIGTERM stops
# both at once (the agent closes its idle links and, with --mcmp, removes the node; Tomcat
# closes its connections, which ends the agent's spliced ones), so `docker stop` takes well
# under a second. When either process exits, the other is stopped and the container exits.
#
# Arguments: reversed-agent's flags (--node, --secret-file, --frontend ...). Unless they
# name --backend or --respond, the entrypoint adds --backend 127.0.0.1:8009 (8080 with
# --type http). With --respond, Tomcat is not started.
# Environment:
#   MPR_ROUTES           optional ';'-separated static routes ("10.231.1.0/24 via 10.231.2.254");
#                        needs NET_ADMIN, which is dropped before Tomcat and the agent start
#   TOMCAT_HTTP_ADDRESS  address of Tomcat's HTTP connector (default 127.0.0.1)
#   MPR_BACKEND_NAME     the name whoami.jsp reports (default: the host name)
#   MPR_STOP_GRACE_MS    how long SIGTERM waits for Tomcat and the agent before killing them (600)
set -euo pipefail
die() { echo "mpr-backend: $*" >&2; exit 2; }

[ $# -gt 0 ] || die "no arguments: give reversed-agent's flags, for example --node app1 --secret-file /run/secrets/app1.secret --frontend 10.231.1.11:9000-9015"

if [ -n "${MPR_ROUTES:-}" ]; then
  IFS=';' read -ra routes <<<"$MPR_ROUTES"
  for r in "${routes[@]}"; do
    [ -n "${r// /}" ] || continue
    # shellcheck disable=SC2086
    ip route replace $r 2>/dev/null || die "cannot add route '$r' (MPR_ROUTES needs --cap-add NET_ADMIN and a reachable gateway)"
  done
fi

respond=0 backend=0 type=ajp secret="" prev=""
for a in "$@"; do
  case $a in
    --respond) respond=1 ;;
    --backend|--backend=*) backend=1 ;;
  esac
  case $prev in
    --type) type=$a ;;
    --secret-file) secret=$a ;;
  esac
  case $a in
    --type=*) type=${a#--type=} ;;
    --secret-file=*) secret=${a#--secret-file=} ;;
  esac
  prev=$a
done
if [ -n "$secret" ]; then
  [ -e "$secret" ] || die "the secret file $secret does not exist: mount it (for example -v /path/app1.secret:$secret:ro)"
  [ -r "$secret" ] || die "the secret file $secret is not readable"
fi

# Capabilities the routes needed are not passed on.
drop=()
if setpriv --bounding-set -net_admin true 2>/dev/null; then drop=(setpriv --bounding-set -net_admin); fi

tomcat_pid="" agent_pid="" term=0
stop_all() {
  trap - TERM INT
  [ -z "$agent_pid" ] || kill -TERM "$agent_pid" 2>/dev/null || true
  [ -z "$tomcat_pid" ] || kill -TERM "$tomcat_pid" 2>/dev/null || true
}
trap 'term=1; stop_all' TERM INT

if [ $respond = 0 ]; then
  port=8009; [ "$type" = http ] && port=8080
  export CATALINA_HOME=/usr/share/tomcat10 CATALINA_BASE=/var/lib/tomcat10 CATALINA_TMPDIR=/tmp/tomcat10
  export CATALINA_OPTS="${CATALINA_OPTS:--Xmx256m -Xss512k -XX:TieredStopAtLevel=1} -Dmpr.http.address=${TOMCAT_HTTP_ADDRESS:-127.0.0.1}"
  mkdir -p "$CATALINA_TMPDIR"; chown tomcat:tomcat "$CATALINA_TMPDIR"
  "${drop[@]}" setpriv --reuid=tomcat --regid=tomcat --init-groups \
    /usr/share/tomcat10/bin/catalina.sh run &
  tomcat_pid=$!
  # Bounded wait for the connector: 90 s.
  for _ in $(seq 1 450); do
    kill -0 "$tomcat_pid" 2>/dev/null || { wait "$tomcat_pid" || true; die "Tomcat exited during start-up"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.2
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { stop_all; die "Tomcat's port $port did not open within 90 s"; }
  [ $backend = 1 ] || set -- "$@" --backend "127.0.0.1:$port"
  echo "mpr-backend: Tomcat answers on 127.0.0.1:$port after $SECONDS s" >&2
fi

# The epoch time is for tests that time the links from the agent's start.
echo "mpr-backend: reversed-agent starts at $(date +%s.%N)" >&2

"${drop[@]}" /usr/local/bin/reversed-agent "$@" &
agent_pid=$!

# Until one of them ends (or SIGTERM, which interrupts wait).
wait -n || true
stop_all
# Both usually end within ~0.2 s; a JVM slowed down by a busy host gets
# MPR_STOP_GRACE_MS, then both are killed, so that `docker stop` stays under 1 s.
grace=${MPR_STOP_GRACE_MS:-600}
[[ $grace =~ ^[0-9]+$ ]] || grace=600
for _ in $(seq 1 $(( grace / 50 + 1 ))); do
  alive=0
  for p in $agent_pid $tomcat_pid; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.05
done
for p in $agent_pid $tomcat_pid; do
  if kill -0 "$p" 2>/dev/null; then
    echo "mpr-backend: pid $p still running after ${grace} ms: killed" >&2
    kill -KILL "$p" 2>/dev/null || true
  fi
done
wait || true
[ $term = 1 ] || { echo "mpr-backend: Tomcat or reversed-agent exited; the container stops" >&2; exit 1; }
