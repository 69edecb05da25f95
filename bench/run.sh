#!/bin/bash
# `make bench`: side-by-side throughput/latency (bench/throughput.py), then scale
# and cost (bench/scale.py); writes bench/results/{throughput,scale,latest}.json
# and bench/results/latest.md. Not part of the tests. Needs root (httpd runs
# as www-data), wrk, and tomcat10 for the Tomcat rows (installed when missing).
# Knobs (environment): BENCH_DURATION (s per run, 3), BENCH_PAIRS (5),
# BENCH_CONNS (32,256), BENCH_GROUPS (ajp,http,tomcat,tcajp,tchttp), BENCH_IDLE_CONNS (10000),
# BENCH_FWD_RESPONDER (forward responder command), BENCH_ONLY (throughput|scale|liveness|callgrind|tomcat-idle|tls),
# BENCH_LIVENESS_SECS (90), BENCH_LIVENESS_ROUNDS (2), BENCH_CG_REQUESTS (2000), BENCH_CG_RUNS (3),
# BENCH_TC_LINKS (idle links per front end of the in-Tomcat connector, 1000),
# BENCH_PORT_BASE (31000), BENCH_RATHOLE_ROOT (where rathole is looked for and
# installed with cargo when missing, outside the repository), BENCH_NO_TUNNEL (skip the rathole row),
# BENCH_REV_OPTS, BENCH_TC_ATTRS, BENCH_TC_IDLE, BENCH_MAXIDLE (see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

for f in target/release/reversed-agent target/release/libmod_proxy_reversed.so; do
  [ -e "$f" ] || { echo "bench: $f is missing: run 'make bench' (it builds first)" >&2; exit 1; }
done
if [ "$(id -u)" != 0 ]; then
  echo "bench: warning: not root; httpd keeps the current user (expect lower descriptor limits)" >&2
fi

missing=""
command -v wrk >/dev/null || missing="$missing wrk"
[ -x /usr/share/tomcat10/bin/catalina.sh ] || missing="$missing tomcat10"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && [ -z "${BENCH_NO_INSTALL:-}" ] && command -v apt-get >/dev/null; then
  echo "bench: installing$missing" >&2
  (apt-get install -y --no-install-recommends $missing || { apt-get update && apt-get install -y --no-install-recommends $missing; }) >&2 || true
fi
command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }

# Descriptors for 10 000 idle connections (each end); the hard limit may cap it.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

child=""
stop() { [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null; child=""; }
trap 'stop; exit 130' INT TERM
trap 'stop' EXIT
run() { python3 "$@" & child=$!; wait "$child"; child=""; }

start=$(date +%s)
case "${BENCH_ONLY:-all}" in
  throughput) run bench/throughput.py ;;
  scale) run bench/scale.py ;;
  liveness) run bench/liveness.py ;;
  callgrind) run bench/callgrind.py ;;
  tomcat-idle) run bench/tomcat_idle.py ;;
  tls) run bench/tls.py ;;
  *) run bench/throughput.py; run bench/scale.py; run bench/liveness.py; run bench/callgrind.py
     run bench/tomcat_idle.py || echo "bench: tomcat_idle.py failed (see above)" >&2
     run bench/tls.py || echo "bench: tls.py failed (see above)" >&2 ;;
esac
python3 bench/report.py
echo "bench: done in $(( $(date +%s) - start )) s; results in bench/results/latest.md" >&2
