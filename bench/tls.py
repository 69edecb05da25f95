#!/usr/bin/env python3
"""HTTPS: reversed vs forward to the same TLS responder, alternating, one session.

One private httpd (event MPM, mod_ssl as the client with SSLProxyVerify
require) and, per pair, ONE reversed-agent process that is at the same time
the forward backend (`--listen`, TLS) and the reversed one (it dials the node's
range; TLS over the dialled links), so that both variants reach the very same
rustls responder:

  https  forward  httpd -> https://localhost:FWD  (mod_proxy_http + mod_ssl, pooled, keep-alive)
         reversed httpd -> https://localhost:1    (ProxyReversed; TLS over the agent's links)
  cold   forward  the same, `disablereuse=On`: every request dials and makes a TLS handshake
         reversed the same node with `reuse=0`: every request takes a fresh, already
                  connected reversed link and makes a TLS handshake on it

`https` is the keep-alive case (req/s and p99 ratios; the node's reuse= is
BENCH_TLS_REUSE, 30s, see REUSE below); `cold` is the cost of a
first request on a cold link (TLS handshake included; the forward one adds the
TCP connect). wrk keeps its client connections alive in both. Results go to
bench/results/tls.json (BENCH_TLS_OUT), in throughput.json's shape (group,
medians, ratios). BENCH_TLS_REV_OPTS adds keys to both reversed nodes (for
example `verify=off`: the cold rows without the check-before-use PING).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
import throughput as T  # noqa: E402

BASE = int(os.environ.get("BENCH_TLS_PORT", "40080"))
PORT = BASE
FWD = {"https": BASE + 1, "cold": BASE + 2}
FIRST = {"https": BASE + 10, "cold": BASE + 20}
METRICS = {"https": BASE + 3, "cold": BASE + 4}
SENTINEL = {"https": 1, "cold": 2}
SIZE = int(os.environ.get("BENCH_TLS_SIZE", "1024"))
CONNS = {"https": [int(x) for x in os.environ.get("BENCH_TLS_CONNS", "32").split(",")],
         "cold": [int(x) for x in os.environ.get("BENCH_TLS_COLD_CONNS", "1,8").split(",")]}
# Kept links of the keep-alive node: mod_proxy reuses a kept reversed link only
# within reuse= of its last response (README, liveness). With the default 2 s,
# every link expires while the other variant runs its 3 s, and each reversed
# run starts with a TLS handshake per wrk connection that the forward one does
# not pay; 30 s keeps both variants in the steady state being compared.
REUSE = os.environ.get("BENCH_TLS_REUSE", "30s")
# Extra keys for both reversed nodes, e.g. `verify=off` to see what the
# check-before-use PING of every fresh link costs the cold rows.
REV_OPTS = os.environ.get("BENCH_TLS_REV_OPTS", "")
CHILDREN, THREADS = 2, 64
AGENT_IDLE = 64
MAXIDLE = AGENT_IDLE // CHILDREN


def openssl(d, *args):
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)


def pki(rundir):
    d = os.path.join(rundir, "pki")
    os.makedirs(d)
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=bench CA")
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
            "-subj", "/CN=localhost")
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "2", "-extfile", "srv.ext")
    subprocess.run(["chmod", "-R", "a+rX", d], check=True)
    return d


def httpd_conf(rundir, pkidir):
    c = C.base_conf(rundir, PORT, mods=("ssl",)) + C.std_mpm_conf(CHILDREN, THREADS)
    c += "ProxyReversedMaxHandshakes 512\n"
    c += (f'SSLProxyEngine on\nSSLProxyVerify require\nSSLProxyCheckPeerName on\n'
          f'SSLProxyCACertificateFile "{pkidir}/ca.pem"\n')
    for g in ("https", "cold"):
        fwd = f"https://localhost:{FWD[g]}/"
        c += f'ProxyPass "/fwd-{g}/" "{fwd}"' + (" disablereuse=On\n" if g == "cold" else "\n")
        rev = f"https://localhost:{SENTINEL[g]}/"
        c += f'ProxyPass "/rev-{g}/" "{rev}"\n'
        c += (f'ProxyReversed rev-{g} "{rev}" 127.0.0.1:{FIRST[g]}-{FIRST[g] + 3} '
              f'secret={rundir}/rev-{g}.secret wait=5s maxidle={MAXIDLE} tls=required'
              + (" reuse=0" if g == "cold" else f" reuse={REUSE}")
              + (f" {REV_OPTS}\n" if REV_OPTS else "\n"))
    return c


def handshakes(port):
    """The responder's completed TLS handshakes so far (its metrics), or None."""
    import http.client
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('reversed_agent_responder_tls_handshakes_total{result="ok"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def check(h, url):
    path = url.split(f":{PORT}", 1)[1]
    try:
        st, body = h.get(path)
    except OSError as e:
        return f"GET {path}: {e}"
    if st != 200 or len(body) != SIZE:
        return f"GET {path}: status {st}, {len(body)} bytes (want 200, {SIZE})"
    return None


def main():
    with open("/proc/loadavg") as f:
        load_start = f.read().split()[:3]
    C.raise_nofile(65536)
    rundir = C.make_rundir("bench-tls")
    C.require_free([PORT] + list(FWD.values()) + list(METRICS.values()) + [f + i for f in FIRST.values() for i in range(4)])
    pkidir = pki(rundir)
    for g in FWD:
        C.write_secret(os.path.join(rundir, f"rev-{g}.secret"))
    h = C.Httpd(rundir, PORT, httpd_conf(rundir, pkidir)).start()
    C.log(f"httpd {h.p.pid} on 127.0.0.1:{PORT}")
    agents = {}
    for g in FWD:
        agents[g] = C.start_agent(g, [
            "--node", f"rev-{g}", "--secret-file", f"{rundir}/rev-{g}.secret",
            "--frontend", f"127.0.0.1:{FIRST[g]}-{FIRST[g] + 3}", "--idle", str(AGENT_IDLE),
            "--listen", f"127.0.0.1:{FWD[g]}", "--respond", "--body-size", str(SIZE),
            "--tls-cert", f"{pkidir}/srv.pem", "--tls-key", f"{pkidir}/srv.key", "--log-level", "warn",
            "--metrics-listen", f"127.0.0.1:{METRICS[g]}"], rundir)
    notes = []

    def all_idle():
        st = h.status()
        return st and all(len(C.node_entries(st, f"rev-{g}")) == CHILDREN and
                          all(e["idle"] >= MAXIDLE // 2 for _, e in C.node_entries(st, f"rev-{g}")) for g in FWD)
    if not C.wait_until(all_idle, 20, 0.1):
        notes.append(f"not every child had idle links within 20 s: {h.status()}")
    base = f"http://127.0.0.1:{PORT}"
    results = []
    for g in ("https", "cold"):
        cases = [T.Case("forward", f"{base}/fwd-{g}/x", agent=agents[g]),
                 T.Case("reversed", f"{base}/rev-{g}/x", agent=agents[g])]
        bad = [e for e in (check(h, cs.url) for cs in cases) if e]
        if bad:
            notes.append(f"{g} skipped: {'; '.join(bad)}")
            C.log(notes[-1])
            continue
        for c in CONNS[g]:
            for cs in cases:
                T.wrk(cs.url, c, T.WARMUP)
            runs = []
            for rd in range(1, T.PAIRS + 1):
                for cs in cases:
                    h0 = handshakes(METRICS[g])
                    r = T.measure(h, cs, c, T.DURATION)
                    h1 = handshakes(METRICS[g])
                    r["tls_handshakes"] = (h1 - h0) if (h0 is not None and h1 is not None) else None
                    r["round"] = rd
                    runs.append(r)
                    C.log(f"{g:5} c={c:<3} round {rd} {cs.variant:8} {r['rps']:8.0f} req/s "
                          f"p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms httpd {r['cpu_httpd_pct']:5.1f}% "
                          f"agent {r['cpu_agent_pct']}% TLS handshakes {r['tls_handshakes']} "
                          f"err {r['errors'] + r['non_2xx']}")
            med, per_round, ratios = T.summarize(runs, ["forward", "reversed"])
            results.append({"group": g, "size": f"{SIZE}b", "size_bytes": SIZE, "conns": c,
                            "variants": ["forward", "reversed"], "medians": med, "ratios": ratios,
                            "per_round": per_round, "runs": runs})
            C.log(f"{g} c={c}: medians of per-round ratios {ratios}")
    err = h.error_log()
    if "AH00957" in err:
        notes.append(f"mod_proxy dialled a sentinel {err.count('AH00957')} time(s)")
    if "PRX1032" in err:
        notes.append(f"{err.count('PRX1032')} failed TLS handshakes (PRX1032)")
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[:3]
    doc = {"kind": "tls", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "loadavg_at_start": load_start, "loadavg_at_end": load_end},
           "settings": {"duration_s": T.DURATION, "pairs": T.PAIRS, "warmup_s": T.WARMUP,
                        "httpd": f"event MPM, {CHILDREN} children x {THREADS} threads, SSLProxyVerify require",
                        "agent_idle": AGENT_IDLE, "body_bytes": SIZE, "keepalive_node_reuse": REUSE},
           "notes": notes, "results": results}
    path = C.save_json(os.environ.get("BENCH_TLS_OUT", "tls.json"), doc)
    C.log(f"wrote {path}; load average {load_start} -> {load_end}")
    for n in notes:
        C.log("note: " + n)


if __name__ == "__main__":
    main()
