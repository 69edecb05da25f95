#!/usr/bin/env python3
"""Side-by-side throughput and latency: forward vs reversed, same session.

One private httpd (event MPM) carries every case at once, each under its own
path, so that A and B alternate without restarts:

  ajp     forward  httpd -> mod_proxy_ajp  -> reversed-agent responder listening on loopback
          reversed httpd -> reversed AJP worker -> the same responder binary, dialing in
          static   httpd serving a file of the same size (the ceiling)
  http    the same with mod_proxy_http
  tomcat  forward  httpd -> mod_proxy_ajp -> Tomcat's AJP connector
          reversed httpd -> reversed AJP worker -> agent bridge (splice) -> the same connector
  tcajp   forward  httpd -> mod_proxy_ajp -> Tomcat's AJP connector (as above)
          reversed httpd -> reversed AJP worker -> the in-Tomcat connector (ReversedAjpProtocol,
                   tomcat-connector/) of the same Tomcat process, which dialled httpd itself
  tchttp  forward  httpd -> mod_proxy_http -> Tomcat's HTTP/1.1 connector
          reversed httpd -> reversed HTTP worker -> ReversedHttp11Protocol in the same Tomcat

For every (group, size, connections) combination: a warm-up of each variant,
then BENCH_PAIRS rounds of A B (ajp: A B S) wrk runs of BENCH_DURATION
seconds. Writes bench/results/throughput.json.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

DURATION = float(os.environ.get("BENCH_DURATION", "3"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "5"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1"))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
ALL_SIZES = {"1k": 1024, "64k": 65536}
SIZES = {k: v for k, v in ALL_SIZES.items() if k in os.environ.get("BENCH_SIZES", "1k,64k").split(",")}
CONNS = [int(x) for x in os.environ.get("BENCH_CONNS", "32,256").split(",")]
GROUPS = os.environ.get("BENCH_GROUPS", "ajp,http,tomcat,tcajp,tchttp").split(",")
# The results file under bench/results/.
OUT = os.environ.get("BENCH_OUT", "throughput.json")
# The forward responder: the agent's built-in responder listening on loopback.
# {agent} {addr} {size} are substituted.
FWD_RESPONDER = os.environ.get(
    "BENCH_FWD_RESPONDER", "{agent} --listen {addr} --respond --body-size {size} --log-level warn")

# Every port is BENCH_PORT_BASE (31000) plus a fixed offset, so that a run can
# be moved out of another one's way.
BASE = int(os.environ.get("BENCH_PORT_BASE", "31000"))
PORT = BASE + 80
FWD_PORT = {"1k": BASE + 1, "64k": BASE + 2}
TC_PORT = BASE + 9
TC_HTTP_PORT = BASE + 10
# The in-Tomcat connector's jar (`make tomcat-connector`, part of `make build`).
TC_JAR = os.path.join(os.path.dirname(C.HERE), "target/tomcat-connector/mod_proxy_reversed-tomcat.jar")
# Idle links the in-Tomcat connectors keep per front end (as the agent's --idle).
TC_IDLE = int(os.environ.get("BENCH_TC_IDLE", "64"))
# Extra attributes for the in-Tomcat connectors (e.g. 'dialerThreads="32"').
TC_ATTRS = (" " + os.environ["BENCH_TC_ATTRS"]) if os.environ.get("BENCH_TC_ATTRS") else ""
CHILDREN, THREADS = 2, 160
# Extra keys for every ProxyReversed line (e.g. "verify=off" to measure the check before use).
REV_OPTS = (" " + os.environ["BENCH_REV_OPTS"]) if os.environ.get("BENCH_REV_OPTS") else ""
AGENT_IDLE = 64
# Per child: the agent's --idle is per front end, so a cap per child keeps every child supplied.
MAXIDLE = int(os.environ.get("BENCH_MAXIDLE", str(AGENT_IDLE // CHILDREN)))
# reversed nodes: name -> (scheme, sentinel host:port, first port of a 4-port range)
NODES = {
    "rev-ajp-1k": ("ajp", "127.0.0.21:1", BASE + 100),
    "rev-ajp-64k": ("ajp", "127.0.0.22:1", BASE + 110),
    "rev-http-1k": ("http", "127.0.0.23:1", BASE + 120),
    "rev-http-64k": ("http", "127.0.0.24:1", BASE + 130),
    "rev-tc": ("ajp", "127.0.0.25:1", BASE + 140),
    # Dialled by Tomcat itself (no agent).
    "rev-tcin-ajp": ("ajp", "127.0.0.26:1", BASE + 150),
    "rev-tcin-http": ("http", "127.0.0.27:1", BASE + 160),
    # The same, with the node's reuse= window as long as the forward
    # connectors keep an idle connection (connectionTimeout 60 s).
    "rev-tcin-ajp-keep": ("ajp", "127.0.0.28:1", BASE + 170),
    "rev-tcin-http-keep": ("http", "127.0.0.29:1", BASE + 180),
}
IN_TOMCAT = {"rev-tcin-ajp": "org.proxyreversed.tomcat.ReversedAjpProtocol",
             "rev-tcin-http": "org.proxyreversed.tomcat.ReversedHttp11Protocol",
             "rev-tcin-ajp-keep": "org.proxyreversed.tomcat.ReversedAjpProtocol",
             "rev-tcin-http-keep": "org.proxyreversed.tomcat.ReversedHttp11Protocol"}
# Per-node ProxyReversed keys beyond the defaults.
NODE_OPTS = {"rev-tcin-ajp-keep": " reuse=60s", "rev-tcin-http-keep": " reuse=60s"}
# The peer row: forward mod_proxy over a reverse TCP tunnel (rathole): its
# server beside httpd, its client beside Tomcat dialling out to it.
TUN_CTRL, TUN_AJP, TUN_HTTP = BASE + 190, BASE + 191, BASE + 192
RATHOLE_ROOT = os.environ.get("BENCH_RATHOLE_ROOT",
                              os.path.join(os.path.expanduser("~"), ".cache/mod_proxy_reversed-bench/rathole"))


def httpd_conf(rundir):
    c = C.base_conf(rundir, PORT) + C.std_mpm_conf(CHILDREN, THREADS)
    c += "AsyncRequestWorkerFactor 4\nProxyReversedMaxHandshakes 512\n"
    for s, p in FWD_PORT.items():
        c += f'ProxyPass "/fwd-ajp-{s}/" "ajp://127.0.0.1:{p}/"\n'
        c += f'ProxyPass "/fwd-http-{s}/" "http://127.0.0.1:{p}/"\n'
    c += f'ProxyPass "/tc-fwd/" "ajp://127.0.0.1:{TC_PORT}/"\n'
    c += f'ProxyPass "/tc-fwd-http/" "http://127.0.0.1:{TC_HTTP_PORT}/"\n'
    c += f'ProxyPass "/tc-tun/" "ajp://127.0.0.1:{TUN_AJP}/"\n'
    c += f'ProxyPass "/tc-tun-http/" "http://127.0.0.1:{TUN_HTTP}/"\n'
    paths = {"rev-ajp-1k": "/rev-ajp-1k/", "rev-ajp-64k": "/rev-ajp-64k/",
             "rev-http-1k": "/rev-http-1k/", "rev-http-64k": "/rev-http-64k/", "rev-tc": "/tc-rev/",
             "rev-tcin-ajp": "/tc-in-ajp/", "rev-tcin-http": "/tc-in-http/",
             "rev-tcin-ajp-keep": "/tc-keep-ajp/", "rev-tcin-http-keep": "/tc-keep-http/"}
    for n, (scheme, sent, first) in NODES.items():
        c += f'ProxyPass "{paths[n]}" "{scheme}://{sent}/"\n'
        c += (f'ProxyReversed {n} "{scheme}://{sent}/" 127.0.0.1:{first}-{first + 3} '
              f'secret={rundir}/{n}.secret wait=5s maxidle={MAXIDLE}{NODE_OPTS.get(n, "")}{REV_OPTS}\n')
    return c


def tomcat_start(rundir):
    if not os.path.exists(os.path.join(TOMCAT_HOME_BIN, "catalina.sh")) or not shutil.which("java"):
        return None, "Tomcat 10 not installed (apt-get install tomcat10)"
    base = os.path.join(rundir, "tomcat")
    for sub in ["conf", "logs", "temp", "work", "lib", "webapps/ROOT"]:
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    # The same Tomcat process serves the forward connectors and the in-Tomcat
    # reversed ones (same threads settings, same webapp).
    extra = ""
    if os.path.exists(TC_JAR):
        shutil.copy(TC_JAR, os.path.join(base, "lib"))
        for n, proto in IN_TOMCAT.items():
            first = NODES[n][2]
            extra += f"""    <Connector protocol="{proto}" node="{n}" secretFile="{rundir}/{n}.secret"
               address="127.0.0.1" port="{first}" ports="4" idleConnections="{TC_IDLE}"
               maxThreads="300" maxConnections="2000"{' secretRequired="false"' if 'Ajp' in proto else ''}{TC_ATTRS} />
"""
    with open(os.path.join(base, "conf/server.xml"), "w") as f:
        f.write(f"""<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{TC_PORT}"
               secretRequired="false" maxThreads="300" maxConnections="2000" connectionTimeout="60000" />
    <Connector protocol="HTTP/1.1" address="127.0.0.1" port="{TC_HTTP_PORT}"
               maxThreads="300" maxConnections="2000" connectionTimeout="60000"
               keepAliveTimeout="-1" maxKeepAliveRequests="-1" />
{extra}    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
""")
    web = next((p for p in [os.path.join(C.TOMCAT_HOME, "etc/web.xml"), "/etc/tomcat10/web.xml"]
                if os.path.exists(p)), None)
    if web is None:
        return None, "tomcat10 web.xml not found"
    shutil.copy(web, os.path.join(base, "conf/web.xml"))
    for f in ["catalina.properties", "context.xml", "logging.properties"]:
        src = os.path.join(C.TOMCAT_HOME, "etc", f)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(base, "conf", f))
    for s, n in ALL_SIZES.items():
        with open(os.path.join(base, "webapps/ROOT", f"{s}.bin"), "wb") as f:
            f.write(body_bytes(n))
    java = os.path.realpath(shutil.which("java"))
    env = dict(os.environ, CATALINA_HOME=C.TOMCAT_HOME, CATALINA_BASE=base,
               CATALINA_TMPDIR=os.path.join(base, "temp"),
               JAVA_HOME=os.path.dirname(os.path.dirname(java)),
               CATALINA_OPTS="-Xms256m -Xmx256m -Xss512k")
    out = open(os.path.join(base, "logs/console.log"), "w")
    p = subprocess.Popen([os.path.join(TOMCAT_HOME_BIN, "catalina.sh"), "run"], env=env,
                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True)
    C.register("tomcat", p, group=True)
    ok = C.wait_until(lambda: p.poll() is not None or (C.port_accepts(TC_PORT) and C.port_accepts(TC_HTTP_PORT)),
                      90, 0.2)
    if p.poll() is not None or not ok:
        # e.g. a port still held by the previous session's sockets: Tomcat logs
        # "Address already in use" and starts without that connector.
        return None, (f"Tomcat did not open its AJP ({TC_PORT}) and HTTP ({TC_HTTP_PORT}) ports within 90 s "
                      f"(see {base}/logs)")
    return p, None


TOMCAT_HOME_BIN = os.path.join(C.TOMCAT_HOME, "bin")


def rathole_binary():
    """rathole from PATH, ~/.cargo/bin or RATHOLE_ROOT; installed there with
    `cargo install rathole` (crates.io, outside the repository) when missing.
    (path, None) or (None, why)."""
    for cand in [shutil.which("rathole"), os.path.expanduser("~/.cargo/bin/rathole"),
                 os.path.join(RATHOLE_ROOT, "bin/rathole")]:
        if cand and os.access(cand, os.X_OK):
            return cand, None
    if os.environ.get("BENCH_NO_INSTALL"):
        return None, "rathole not found and BENCH_NO_INSTALL is set"
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.access(cargo, os.X_OK):
        return None, "rathole not found and no cargo to install it (cargo install rathole)"
    C.log(f"bench: installing rathole from crates.io into {RATHOLE_ROOT} (cargo install, a few minutes)")
    os.makedirs(RATHOLE_ROOT, exist_ok=True)
    logf = os.path.join(RATHOLE_ROOT, "install.log")
    with open(logf, "w") as out:
        try:
            r = subprocess.run([cargo, "install", "rathole", "--root", RATHOLE_ROOT,
                                "--target-dir", os.path.join(RATHOLE_ROOT, "target")],
                               stdout=out, stderr=subprocess.STDOUT, timeout=3600, cwd=RATHOLE_ROOT)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"cargo install rathole failed: {e} (see {logf})"
    b = os.path.join(RATHOLE_ROOT, "bin/rathole")
    if r.returncode != 0 or not os.access(b, os.X_OK):
        return None, f"cargo install rathole failed (exit {r.returncode}, see {logf})"
    return b, None


def rathole_version(b):
    try:
        out = subprocess.run([b, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Build Version:\s*(\S+)", out)
    return f"rathole {m.group(1)}" if m else (out.strip().splitlines() or [None])[0]


def tunnel_start(rundir):
    """rathole's server (httpd's side) and client (Tomcat's side, dialling
    out to it), as shipped: default TCP transport, no option changed (0.5.0
    sets no TCP_NODELAY on its sockets, rathole-org/rathole#171).
    ([server, client], version, None) or (None, None, why)."""
    b, why = rathole_binary()
    if why:
        return None, None, why
    token = os.urandom(16).hex()
    d = os.path.join(rundir, "rathole")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "server.toml"), "w") as f:
        f.write(f"""[server]
bind_addr = "127.0.0.1:{TUN_CTRL}"

[server.services.tcajp]
token = "{token}"
bind_addr = "127.0.0.1:{TUN_AJP}"

[server.services.tchttp]
token = "{token}"
bind_addr = "127.0.0.1:{TUN_HTTP}"
""")
    with open(os.path.join(d, "client.toml"), "w") as f:
        f.write(f"""[client]
remote_addr = "127.0.0.1:{TUN_CTRL}"

[client.services.tcajp]
token = "{token}"
local_addr = "127.0.0.1:{TC_PORT}"

[client.services.tchttp]
token = "{token}"
local_addr = "127.0.0.1:{TC_HTTP_PORT}"
""")
    env = dict(os.environ, RUST_LOG="warn")
    procs = []
    for side in ["server", "client"]:
        out = open(os.path.join(d, f"{side}.log"), "w")
        p = subprocess.Popen([b, f"--{side}", os.path.join(d, f"{side}.toml")], env=env,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        C.register(f"rathole-{side}", p)
        procs.append(p)
        if side == "server" and not C.wait_until(lambda: p.poll() is not None or C.port_accepts(TUN_CTRL), 10):
            return None, None, f"rathole server did not listen on {TUN_CTRL} (see {d}/server.log)"
    ok = C.wait_until(lambda: any(q.poll() is not None for q in procs)
                      or (C.port_accepts(TUN_AJP) and C.port_accepts(TUN_HTTP)), 15)
    if not ok or any(q.poll() is not None for q in procs):
        return None, None, f"rathole tunnel did not come up (see {d}/*.log)"
    return procs, rathole_version(b), None


def body_bytes(n):
    return bytes(b"abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(n))


def tree_pids(pid):
    out = [pid]
    i = 0
    while i < len(out):
        out += C.children_of(out[i])
        i += 1
    return out


WRK_RE = re.compile(r"BENCHRESULT (.*)")


def wrk(url, conns, duration):
    """One wrk run: the parsed BENCHRESULT line (dict) or raises."""
    lua = os.path.join(C.HERE, "wrk-report.lua")
    threads = min(WRK_THREADS, conns)
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", lua, url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    m = WRK_RE.search(r.stdout)
    if not m:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
    d = {}
    for kv in m.group(1).split():
        k, v = kv.split("=")
        d[k] = float(v)
    return d


class Case:
    """One variant: a URL plus the processes whose CPU it costs (agent: one
    process or a list, e.g. both ends of a tunnel)."""

    def __init__(self, variant, url, agent=None, backend=None):
        self.variant, self.url, self.agent, self.backend = variant, url, agent, backend


def measure(h, case, conns, duration):
    agents = case.agent if isinstance(case.agent, list) else ([case.agent] if case.agent else [])
    agent_pids = [q for a in agents for q in tree_pids(a.pid)]
    backend_pids = tree_pids(case.backend.pid) if case.backend else []
    hc0, ac0, bc0 = h.cpu(), C.cpu_seconds(agent_pids), C.cpu_seconds(backend_pids)
    t0 = time.monotonic()
    w = wrk(case.url, conns, duration)
    wall = time.monotonic() - t0
    hc, ac, bc = h.cpu() - hc0, C.cpu_seconds(agent_pids) - ac0, C.cpu_seconds(backend_pids) - bc0
    secs = w["duration_us"] / 1e6
    reqs = w["requests"]
    errors = int(w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"])
    r = {
        "variant": case.variant,
        "rps": round(reqs / secs, 1) if secs > 0 else 0.0,
        "p50_ms": round(w["p50_us"] / 1000, 3),
        "p90_ms": round(w["p90_us"] / 1000, 3),
        "p99_ms": round(w["p99_us"] / 1000, 3),
        "mean_ms": round(w["mean_us"] / 1000, 3),
        "max_ms": round(w["max_us"] / 1000, 3),
        "requests": int(reqs),
        "mib_per_s": round(w["bytes"] / secs / 1048576, 2) if secs > 0 else 0.0,
        "errors": errors,
        "errors_detail": {k: int(w["err_" + k]) for k in ["connect", "read", "write", "timeout"]},
        "non_2xx": int(w["err_status"]),
        # CPU as % of one core over the run, and per request.
        "cpu_httpd_pct": round(100 * hc / wall, 1),
        "cpu_agent_pct": round(100 * ac / wall, 1) if case.agent else None,
        "cpu_backend_pct": round(100 * bc / wall, 1) if case.backend else None,
        "cpu_httpd_us_per_req": round(1e6 * hc / reqs, 1) if reqs else None,
        "cpu_agent_us_per_req": round(1e6 * ac / reqs, 1) if (reqs and case.agent) else None,
        "cpu_backend_us_per_req": round(1e6 * bc / reqs, 1) if (reqs and case.backend) else None,
    }
    return r


def check(h, url, size):
    path = url.split(str(PORT), 1)[1]
    try:
        st, body = h.get(path)
    except OSError as e:
        return f"GET {path}: {e}"
    if st != 200 or len(body) != size:
        return f"GET {path}: status {st}, {len(body)} bytes (want 200, {size})"
    return None


def ratio(a, b):
    return round(a / b, 3) if (a is not None and b) else None


def summarize(runs, variants):
    """Medians per variant, per-round ratios and their medians."""
    by = {v: [r for r in runs if r["variant"] == v] for v in variants}
    med = {}
    for v, rs in by.items():
        med[v] = {k: C.median([r[k] for r in rs]) for k in
                  ["rps", "p50_ms", "p99_ms", "cpu_httpd_pct", "cpu_agent_pct", "cpu_backend_pct",
                   "cpu_httpd_us_per_req", "cpu_agent_us_per_req", "cpu_backend_us_per_req"]}
        med[v]["errors"] = sum(r["errors"] + r["non_2xx"] for r in rs)
    rounds = sorted({r["round"] for r in runs})
    per_round = []
    for rd in rounds:
        x = {r["variant"]: r for r in runs if r["round"] == rd}
        pr = {"round": rd}
        if "forward" in x and "reversed" in x:
            pr["rps_rev_fwd"] = ratio(x["reversed"]["rps"], x["forward"]["rps"])
            pr["p50_rev_fwd"] = ratio(x["reversed"]["p50_ms"], x["forward"]["p50_ms"])
            pr["p99_rev_fwd"] = ratio(x["reversed"]["p99_ms"], x["forward"]["p99_ms"])
        if "static" in x and "reversed" in x:
            pr["rps_rev_static"] = ratio(x["reversed"]["rps"], x["static"]["rps"])
        # The in-Tomcat rows' extra variants: reuse=60s against forward, and
        # reversed against the tunnel (the peer row).
        if "forward" in x and "keep" in x:
            pr["rps_keep_fwd"] = ratio(x["keep"]["rps"], x["forward"]["rps"])
            pr["p99_keep_fwd"] = ratio(x["keep"]["p99_ms"], x["forward"]["p99_ms"])
        if "tunnel" in x and "reversed" in x:
            pr["rps_rev_tunnel"] = ratio(x["reversed"]["rps"], x["tunnel"]["rps"])
            pr["p99_rev_tunnel"] = ratio(x["reversed"]["p99_ms"], x["tunnel"]["p99_ms"])
        if "tunnel" in x and "forward" in x:
            pr["rps_tunnel_fwd"] = ratio(x["tunnel"]["rps"], x["forward"]["rps"])
        per_round.append(pr)
    ratios = {}
    for k in ["rps_rev_fwd", "p50_rev_fwd", "p99_rev_fwd", "rps_rev_static", "rps_keep_fwd", "p99_keep_fwd",
              "rps_rev_tunnel", "p99_rev_tunnel", "rps_tunnel_fwd"]:
        vals = [p[k] for p in per_round if p.get(k) is not None]
        ratios[k] = round(C.median(vals), 3) if vals else None
    return med, per_round, ratios


LOAD_AT_START = None


def main():
    global LOAD_AT_START
    with open("/proc/loadavg") as f:
        LOAD_AT_START = f.read().split()[:3]
    C.raise_nofile(65536)
    for tool in ["wrk"]:
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is missing (apt-get install {tool})")
    rundir = C.make_rundir("bench")
    ports = [PORT, TC_PORT, TC_HTTP_PORT, TUN_CTRL, TUN_AJP, TUN_HTTP] + list(FWD_PORT.values()) + [f + i for _, _, f in NODES.values() for i in range(4)]
    C.require_free(ports)
    os.makedirs(os.path.join(rundir, "htdocs/static"))
    for s, n in ALL_SIZES.items():
        with open(os.path.join(rundir, "htdocs/static", f"{s}.bin"), "wb") as f:
            f.write(body_bytes(n))
    for n in NODES:
        C.write_secret(os.path.join(rundir, f"{n}.secret"))
    h = C.Httpd(rundir, PORT, httpd_conf(rundir)).start()
    C.log(f"httpd {h.p.pid} on 127.0.0.1:{PORT}, children {h.children()}")
    notes = []

    # Forward responders (listening), if the agent can listen.
    fwd = {}
    help_text = C.agent_help()
    if "BENCH_FWD_RESPONDER" in os.environ or "--listen" in help_text:
        for s, p in FWD_PORT.items():
            argv = shlex.split(FWD_RESPONDER.format(agent=C.AGENT, addr=f"127.0.0.1:{p}", size=ALL_SIZES[s]))
            proc = C.start_cmd(f"fwd-responder-{s}", argv, rundir)
            if not C.wait_until(lambda: proc.poll() is not None or C.port_accepts(p), 10):
                pass
            if proc.poll() is not None or not C.port_accepts(p):
                notes.append(f"forward responder {s} did not start: {' '.join(argv)} (see {rundir}/fwd-responder-{s}.log)")
            else:
                fwd[s] = proc
    else:
        notes.append("forward responder cases skipped: reversed-agent has no --listen mode "
                     "(set BENCH_FWD_RESPONDER to a listening responder command)")

    # Tomcat
    tomcat = None
    if any(g in GROUPS for g in ("tomcat", "tcajp", "tchttp")):
        tomcat, why = tomcat_start(rundir)
        if why:
            notes.append(f"tomcat cases skipped: {why}")
        else:
            C.log(f"tomcat {tomcat.pid} on 127.0.0.1:{TC_PORT}")

    # The peer row's tunnel (in-Tomcat groups only).
    tunnel, tunnel_version = None, None
    if tomcat is not None and any(g in GROUPS for g in ("tcajp", "tchttp")) and not os.environ.get("BENCH_NO_TUNNEL"):
        tunnel, tunnel_version, why = tunnel_start(rundir)
        if why:
            notes.append(f"TUNNEL ROW SKIPPED (peer row, forward mod_proxy over rathole): {why}")
            C.log("bench: " + notes[-1])
        else:
            C.log(f"bench: rathole tunnel up ({tunnel_version})")

    # Reversed agents
    agents = {}
    in_tomcat = [n for n in IN_TOMCAT if tomcat is not None and os.path.exists(TC_JAR)]
    if tomcat is not None and not os.path.exists(TC_JAR):
        notes.append(f"in-Tomcat connector cases skipped: {TC_JAR} missing (make tomcat-connector)")
    for n in NODES:
        if n in IN_TOMCAT:
            continue
        if n == "rev-tc":
            if tomcat is None or "tomcat" not in GROUPS:
                continue
            mode = ["--backend", f"127.0.0.1:{TC_PORT}"]
        else:
            mode = ["--respond", "--body-size", str(ALL_SIZES[n.rsplit("-", 1)[1]])]
        first = NODES[n][2]
        agents[n] = C.start_agent(n, ["--node", n, "--secret-file", f"{rundir}/{n}.secret",
                                      "--frontend", f"127.0.0.1:{first}-{first + 3}",
                                      "--idle", str(AGENT_IDLE), "--log-level", "warn"] + mode, rundir)

    def all_idle():
        st = h.status()
        return st and len(st.get("children", [])) == CHILDREN and all(
            len(C.node_entries(st, n)) == CHILDREN and all(e["idle"] >= MAXIDLE for _, e in C.node_entries(st, n))
            for n in list(agents) + in_tomcat)
    if not C.wait_until(all_idle, 20, 0.1):
        notes.append(f"not every child reached {MAXIDLE} idle connections for every node within 20 s: {h.status()}")

    base = f"http://127.0.0.1:{PORT}"
    plan = []  # (group, size, conns, [Case...])
    for g in GROUPS:
        for s in SIZES:
            for c in CONNS:
                cases = []
                if g in ("ajp", "http"):
                    if s in fwd:
                        cases.append(Case("forward", f"{base}/fwd-{g}-{s}/x", agent=fwd[s]))
                    cases.append(Case("reversed", f"{base}/rev-{g}-{s}/x", agent=agents[f"rev-{g}-{s}"]))
                    # The static ceiling once per size and connection count (in the first responder group).
                    if g == next(x for x in GROUPS if x in ("ajp", "http")):
                        cases.append(Case("static", f"{base}/static/{s}.bin"))
                elif g == "tomcat" and tomcat is not None:
                    cases.append(Case("forward", f"{base}/tc-fwd/{s}.bin", backend=tomcat))
                    cases.append(Case("reversed", f"{base}/tc-rev/{s}.bin", agent=agents["rev-tc"], backend=tomcat))
                elif g == "tcajp" and "rev-tcin-ajp" in in_tomcat:
                    cases.append(Case("forward", f"{base}/tc-fwd/{s}.bin", backend=tomcat))
                    cases.append(Case("reversed", f"{base}/tc-in-ajp/{s}.bin", backend=tomcat))
                    cases.append(Case("keep", f"{base}/tc-keep-ajp/{s}.bin", backend=tomcat))
                    if tunnel:
                        cases.append(Case("tunnel", f"{base}/tc-tun/{s}.bin", agent=tunnel, backend=tomcat))
                elif g == "tchttp" and "rev-tcin-http" in in_tomcat:
                    cases.append(Case("forward", f"{base}/tc-fwd-http/{s}.bin", backend=tomcat))
                    cases.append(Case("reversed", f"{base}/tc-in-http/{s}.bin", backend=tomcat))
                    cases.append(Case("keep", f"{base}/tc-keep-http/{s}.bin", backend=tomcat))
                    if tunnel:
                        cases.append(Case("tunnel", f"{base}/tc-tun-http/{s}.bin", agent=tunnel, backend=tomcat))
                if cases:
                    plan.append((g, s, c, cases))
    nruns = sum(len(cs) for _, _, _, cs in plan) * PAIRS
    est = nruns * (DURATION + 0.3) + sum(len(cs) for _, _, _, cs in plan) * WARMUP
    C.log(f"{len(plan)} combinations, {nruns} measured runs of {DURATION:g} s: about {est / 60:.1f} min")

    results = []
    tomcat_warm = False
    for g, s, c, cases in plan:
        bad = [e for e in (check(h, cs.url, SIZES[s]) for cs in cases) if e]
        if bad:
            notes.append(f"{g} {s} c={c} skipped: {'; '.join(bad)}")
            C.log(notes[-1])
            continue
        warm = WARMUP
        if g in ("tomcat", "tcajp", "tchttp") and not tomcat_warm:
            warm, tomcat_warm = max(WARMUP, 5.0), True  # JIT
        for cs in cases:
            wrk(cs.url, c, warm)
        runs = []
        for rd in range(1, PAIRS + 1):
            for cs in cases:
                r = measure(h, cs, c, DURATION)
                r["round"] = rd
                runs.append(r)
                C.log(f"{g:6} {s:>3} c={c:<3} round {rd} {cs.variant:8} {r['rps']:9.0f} req/s "
                      f"p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms httpd {r['cpu_httpd_pct']:5.1f}% "
                      f"agent {r['cpu_agent_pct'] if r['cpu_agent_pct'] is not None else '-'}% "
                      f"err {r['errors'] + r['non_2xx']}")
        med, per_round, ratios = summarize(runs, [cs.variant for cs in cases])
        results.append({"group": g, "size": s, "size_bytes": SIZES[s], "conns": c,
                        "variants": [cs.variant for cs in cases], "medians": med,
                        "ratios": ratios, "per_round": per_round, "runs": runs})
        C.log(f"{g} {s} c={c}: medians of rounds {ratios}")
        C.save_json(OUT, doc(results, notes, h, tunnel_version))

    err = h.error_log()
    panics = err.count("panicked")
    if err.count("AH00957"):
        notes.append(f"mod_proxy dialled a sentinel worker URL {err.count('AH00957')} time(s) (AH00957 in the error log)")
    if panics:
        notes.append(f"httpd error log has {panics} Rust panics")
    path = C.save_json(OUT, doc(results, notes, h, tunnel_version))
    C.log(f"wrote {path}")
    for n in notes:
        C.log("note: " + n)


def doc(results, notes, h, tunnel_version=None):
    return {
        "kind": "throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "settings": {"duration_s": DURATION, "pairs": PAIRS, "warmup_s": WARMUP, "wrk_threads": WRK_THREADS,
                     "httpd": f"event MPM, {CHILDREN} children x {THREADS} threads, KeepAlive unlimited",
                     "agent_idle": AGENT_IDLE, "tomcat_idle": TC_IDLE, "fwd_responder": FWD_RESPONDER,
                     "rev_opts": REV_OPTS.strip(), "node_opts": NODE_OPTS, "tunnel": tunnel_version},
        "notes": notes,
        "results": results,
    }


def machine():
    m = {"cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
        m["kernel"] = os.uname().release
        v = subprocess.run([C.HTTPD, "-v"], capture_output=True, text=True).stdout.splitlines()
        m["httpd"] = v[0].split(":", 1)[1].strip() if v else None
        with open("/proc/loadavg") as f:
            m["loadavg_at_end"] = f.read().split()[:3]
        m["loadavg_at_start"] = LOAD_AT_START
    except (OSError, IndexError):
        pass
    return m


if __name__ == "__main__":
    main()
