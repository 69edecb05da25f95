#!/bin/sh
# Starts (or stops) the mod_proxy_reversed demo: a private httpd on
# 127.0.0.1:8088 with the installed module, and three reversed-agents in
# responder mode that dial into it (an AJP node, an HTTP node, an HTTPS node).
# Usage: scripts/demo.sh start|stop      (`make demo` installs first)
set -eu
DIR=${DEMO_DIR:-/var/tmp/mod_proxy_reversed-demo}
PORT=${DEMO_PORT:-8088}
APXS=${APXS:-apxs}
MODDIR=$($APXS -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
HTTPD=${HTTPD:-$(command -v apache2 || command -v httpd)}
AGENT=${AGENT:-$(command -v reversed-agent || echo /usr/local/bin/reversed-agent)}
here=$(cd "$(dirname "$0")/.." && pwd)

stop() {
  for f in "$DIR"/agent-*.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  if [ -f "$DIR/httpd.pid" ]; then
    "$HTTPD" -f "$DIR/httpd.conf" -k stop 2>/dev/null || true
    i=0
    while [ -f "$DIR/httpd.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  fi
}

case "${1:-start}" in
stop)
  stop
  echo "demo stopped"
  exit 0
  ;;
start) ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

stop
mkdir -p "$DIR"
rm -f "$DIR"/error.log "$DIR"/agent-*.log
for n in app-ajp app-http app-https; do
  [ -s "$DIR/$n.secret" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/$n.secret")
done
# The HTTPS node's certificates: a private CA that httpd trusts, and the
# backend's certificate for "localhost" (the worker URL's host).
if [ ! -s "$DIR/pki/srv.pem" ]; then
  mkdir -p "$DIR/pki"
  (cd "$DIR/pki" &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 365 -subj "/CN=demo CA" &&
    openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj "/CN=localhost" &&
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > srv.ext &&
    openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 365 -extfile srv.ext
  ) > "$DIR/pki.log" 2>&1 || { cat "$DIR/pki.log" >&2; exit 1; }
  chmod 0644 "$DIR/pki/ca.pem"
fi
sed -e "s#@DIR@#$DIR#g" -e "s#@MODDIR@#$MODDIR#g" -e "s#@PORT@#$PORT#g" \
  "$here/httpd-conf/standalone.conf" > "$DIR/httpd.conf"
defs=""
[ "$(id -u)" = 0 ] || defs="-DNO_USER"
"$HTTPD" -t -f "$DIR/httpd.conf" $defs
"$HTTPD" -f "$DIR/httpd.conf" $defs -k start

start_agent() { # node range [flags]
  n=$1 r=$2
  shift 2
  nohup "$AGENT" --node "$n" --secret-file "$DIR/$n.secret" --frontend "127.0.0.1:$r" \
    --idle 8 --respond --body-size 64 "$@" > "$DIR/agent-$n.log" 2>&1 &
  echo $! > "$DIR/agent-$n.pid"
}
start_agent app-ajp 19100-19103
start_agent app-http 19110-19113
start_agent app-https 19120-19123 --tls-cert "$DIR/pki/srv.pem" --tls-key "$DIR/pki/srv.key"

# Wait (at most 10 s) until both nodes have connections in some child.
i=0
while [ $i -lt 100 ]; do
  st=$(curl -s "http://127.0.0.1:$PORT/reversed-status" || true)
  if echo "$st" | grep -q 'node=app-ajp .*idle=[1-9]' && echo "$st" | grep -q 'node=app-http .*idle=[1-9]' \
    && echo "$st" | grep -q 'node=app-https .*idle=[1-9]'; then
    break
  fi
  sleep 0.1
  i=$((i + 1))
done
curl -s "http://127.0.0.1:$PORT/reversed-status"
cat <<MSG

The demo runs in $DIR (httpd on 127.0.0.1:$PORT; agents dial 127.0.0.1:19100-19103, 19110-19113 and 19120-19123).
Try:
  curl http://127.0.0.1:$PORT/ajp/hello     # through mod_proxy_ajp over a reversed connection
  curl http://127.0.0.1:$PORT/http/hello    # through mod_proxy_http over a reversed connection
  curl -i http://127.0.0.1:$PORT/https/hello  # TLS from httpd to the backend over a reversed connection (X-TLS header)
  curl http://127.0.0.1:$PORT/reversed-status
Stop it with: make demo-stop
MSG
