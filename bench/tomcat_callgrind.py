#!/usr/bin/env python3
"""Stable per-request cost of the in-Tomcat connector against Tomcat's own
connector: httpd's instructions (callgrind) and Tomcat's CPU time, one
request at a time.

One Tomcat (throughput.py's: the forward AJP and HTTP connectors and the
in-Tomcat reversed ones, same webapp) stays up; for every run a fresh httpd
-X (one process) under valgrind's callgrind serves N GETs of the 1 KiB file on
one keep-alive client connection, on one path per run:
  ajp-fwd   ProxyPass ajp://  to Tomcat's AJP connector
  ajp-rev   the reversed AJP node (ReversedAjpProtocol dialled it)
  http-fwd  ProxyPass http:// to Tomcat's HTTP connector
  http-rev  the reversed HTTP node (ReversedHttp11Protocol)
Instrumentation is on only for the N requests (after a warm-up), so the
counts are httpd's work per request (all its threads: the reversed accept
thread too). Tomcat's CPU (utime+stime of the JVM over the N requests, from
/proc) is measured in the same window. Runs alternate, BENCH_CG_RUNS rounds.
Writes bench/results/tomcat-callgrind.json (BENCH_TC_CG_OUT).
"""

import http.client
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
import throughput as T  # noqa: E402

N = int(os.environ.get("BENCH_CG_REQUESTS", "2000"))
WARM = 300
RUNS = int(os.environ.get("BENCH_CG_RUNS", "2"))
OUT = os.environ.get("BENCH_TC_CG_OUT", "tomcat-callgrind.json")
VARIANTS = [("ajp-fwd", "/tc-fwd/1k.bin", None), ("ajp-rev", "/tc-in-ajp/1k.bin", "rev-tcin-ajp"),
            ("http-fwd", "/tc-fwd-http/1k.bin", None), ("http-rev", "/tc-in-http/1k.bin", "rev-tcin-http")]
# One httpd process: the connectors keep a few idle links in it.
T.TC_IDLE = 4
T.MAXIDLE = 8


def conf_first(rundir, path):
    """throughput.py's httpd.conf with this path's ProxyPass first: mod_proxy
    matches ProxyPass lines in order, and a later line costs more
    instructions (measured: ~600 per request between /tc-fwd/ and /tc-in-ajp/)."""
    lines = T.httpd_conf(rundir).splitlines(keepends=True)
    mine = [ln for ln in lines if ln.startswith(f'ProxyPass "{path.rsplit("/", 1)[0]}/"')]
    rest = [ln for ln in lines if ln not in mine]
    at = next(i for i, ln in enumerate(rest) if ln.startswith("ProxyPass "))
    return "".join(rest[:at] + mine + rest[at:])


def one(rundir, label, path, node, jvm_pids):
    out = f"{rundir}/callgrind-{label}.out"
    conf = f"{rundir}/httpd-{label}.conf"
    with open(conf, "w") as f:
        f.write(conf_first(rundir, path))
    p = C.register("httpd-callgrind", subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         C.HTTPD, "-X", "-f", conf, "-DNO_USER"],
        stdout=open(f"{rundir}/valgrind-{label}.log", "w"), stderr=subprocess.STDOUT))
    try:
        if not C.wait_until(lambda: p.poll() is not None or C.port_accepts(T.PORT), 180, 0.2) or p.poll() is not None:
            raise SystemExit(f"httpd under valgrind did not start (see {rundir}/error.log)")
        h = C.Httpd.__new__(C.Httpd)
        h.dir, h.port, h._conn, h.p = rundir, T.PORT, None, p
        if node:
            ok = C.wait_until(lambda: C.node_sum(h.status(), node, "idle") >= T.TC_IDLE, 30, 0.2)
            if not ok:
                raise SystemExit(f"{node}: the in-Tomcat connector did not dial the new httpd within 30 s")
        conn = http.client.HTTPConnection("127.0.0.1", T.PORT, timeout=60)

        def get():
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            return r.status, len(body)
        for _ in range(WARM):
            assert get() == (200, 1024), path
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True, capture_output=True)
        t0 = C.cpu_seconds(jvm_pids)
        for _ in range(N):
            assert get() == (200, 1024), path
        tc = C.cpu_seconds(jvm_pids) - t0
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True, capture_output=True)
        conn.close()
    finally:
        C.stop_proc(p, timeout=60)
        C.unregister(p)
    return C.callgrind_total(out) / N, 1e6 * tc / N, C.callgrind_module_ir(out) / N


def main():
    rundir = C.make_rundir("tccallgrind")
    for n in T.NODES:
        C.write_secret(os.path.join(rundir, f"{n}.secret"))
    os.makedirs(os.path.join(rundir, "htdocs/static"), exist_ok=True)
    tomcat, why = T.tomcat_start(rundir)
    if why:
        raise SystemExit(f"tomcat_callgrind: {why}")
    jvm = T.tree_pids(tomcat.pid)
    res = {v: {"ir": [], "tomcat_us": [], "module_ir": []} for v, _, _ in VARIANTS}
    # Tomcat's JIT first: a few thousand requests on every path.
    one(rundir, "warm", VARIANTS[1][1], VARIANTS[1][2], jvm)
    for k in range(RUNS):
        order = VARIANTS if k % 2 == 0 else list(reversed(VARIANTS))
        for label, path, node in order:
            ir, us, mod = one(rundir, label, path, node, jvm)
            res[label]["ir"].append(round(ir))
            res[label]["tomcat_us"].append(round(us, 1))
            res[label]["module_ir"].append(round(mod))
            C.log(f"{label} run {k}: httpd {ir:,.0f} instructions per request, Tomcat {us:.1f} us CPU per request")
    summary = {}
    for proto in ("ajp", "http"):
        f_, r_ = res[f"{proto}-fwd"], res[f"{proto}-rev"]
        fi, ri = C.median(f_["ir"]), C.median(r_["ir"])
        ft, rt = C.median(f_["tomcat_us"]), C.median(r_["tomcat_us"])
        summary[proto] = {"httpd_ir_fwd": fi, "httpd_ir_rev": ri, "httpd_ir_rev_fwd": round(ri / fi, 4),
                          "module_own_ir_rev": C.median(r_["module_ir"]),
                          "tomcat_us_fwd": ft, "tomcat_us_rev": rt, "tomcat_us_rev_fwd": round(rt / ft, 3)}
    path = C.save_json(OUT, {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "requests_per_run": N,
                             "runs": res, "summary": summary})
    C.log(f"wrote {path}: {summary}")


if __name__ == "__main__":
    main()
