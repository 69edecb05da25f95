#!/usr/bin/env python3
"""What a non-reversed ProxyPass pays for the module being loaded beside
reversed nodes (issue 14, fault 11). Writes bench/results/callgrind.json.

httpd -X (one process) under valgrind's callgrind, instruction counts only
(stable where seconds are not), with collection switched on after a warm-up
and off after N requests on one keep-alive connection to a forward
`ProxyPass /f/ http://127.0.0.1:PORT/` (the agent's responder in --listen
mode). Variants, each run BENCH_CG_RUNS times, alternating:
  without  the module not loaded at all;
  beside   the module loaded with two reversed nodes (one dialled in by an agent)
           and 20 more non-reversed workers, so the per-worker lookup has company.
Reported: instructions per request of each, and their difference (absolute
and as a share of the request).
"""

import http.client
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

PORT = 32095
BACKEND = 32096
NODE_FIRST = 32500
N = int(os.environ.get("BENCH_CG_REQUESTS", "2000"))
WARM = 200
RUNS = int(os.environ.get("BENCH_CG_RUNS", "3"))


def conf(rundir, with_module):
    md = C.moddir()
    c = f"""ServerRoot "{rundir}"
ServerName localhost
Listen 127.0.0.1:{PORT}
PidFile "{rundir}/httpd.pid"
ErrorLog "{rundir}/error.log"
LogLevel warn
LoadModule mpm_event_module {md}/mod_mpm_event.so
LoadModule authz_core_module {md}/mod_authz_core.so
LoadModule proxy_module {md}/mod_proxy.so
LoadModule proxy_ajp_module {md}/mod_proxy_ajp.so
LoadModule proxy_http_module {md}/mod_proxy_http.so
KeepAlive On
MaxKeepAliveRequests 0
ProxyPass "/f/" "http://127.0.0.1:{BACKEND}/"
"""
    for k in range(20):
        c += f'ProxyPass "/other{k}/" "http://127.0.0.1:{BACKEND}/o{k}/"\n'
    # The same ProxyPass lines in both variants: only the module differs.
    c += 'ProxyPass "/r/" "http://127.0.0.41:1/"\n'
    c += 'ProxyPass "/q/" "ajp://127.0.0.42:1/"\n'
    if with_module:
        c += f"LoadModule proxy_reversed_module {C.MODULE}\n"
        c += (f'ProxyReversed r "http://127.0.0.41:1/" 127.0.0.1:{NODE_FIRST}-{NODE_FIRST + 1} '
              f'secret={rundir}/r.secret\n')
        c += (f'ProxyReversed q "ajp://127.0.0.42:1/" 127.0.0.1:{NODE_FIRST + 2} '
              f'secret={rundir}/r.secret\n')
    return c


def one(label, with_module):
    rundir = C.make_rundir(f"callgrind-{label}")
    C.write_secret(f"{rundir}/r.secret")
    with open(f"{rundir}/httpd.conf", "w") as f:
        f.write(conf(rundir, with_module))
    out = f"{rundir}/callgrind.out"
    p = C.register("httpd-callgrind", subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         C.HTTPD, "-X", "-f", f"{rundir}/httpd.conf", "-DNO_USER"],
        stdout=open(f"{rundir}/valgrind.log", "w"), stderr=subprocess.STDOUT))
    agent = None
    try:
        if not C.wait_until(lambda: C.port_accepts(PORT), 60, 0.2):
            raise SystemExit(f"httpd under valgrind did not start: {open(rundir + '/error.log').read()[-2000:]}")
        if with_module:
            agent = C.start_agent(f"cg-{label}", [
                "--node", "r", "--secret-file", f"{rundir}/r.secret",
                "--frontend", f"127.0.0.1:{NODE_FIRST}-{NODE_FIRST + 1}", "--idle", "4",
                "--respond", "--body-size", "64", "--log-level", "warn"], rundir)
            time.sleep(1)
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)

        def get(path):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            return r.status
        for _ in range(WARM):
            assert get("/f/x") == 200
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True, capture_output=True)
        for _ in range(N):
            assert get("/f/x") == 200
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True, capture_output=True)
        conn.close()
    finally:
        if agent:
            C.stop_agent(agent)
        C.stop_proc(p, timeout=60)
    return C.callgrind_total(out) / N, C.callgrind_module_ir(out) / N


def main():
    fwd = C.start_agent("cg-backend", ["--respond", "--listen", f"127.0.0.1:{BACKEND}", "--body-size", "64",
                                       "--log-level", "warn"], C.make_rundir("callgrind-backend"))
    res = {"without": [], "beside": []}
    own = []
    try:
        for k in range(RUNS):
            for label, mod in ([("without", False), ("beside", True)] if k % 2 == 0
                               else [("beside", True), ("without", False)]):
                v, m = one(f"{label}{k}", mod)
                res[label].append(v)
                if mod:
                    own.append(m)
                C.log(f"{label} run {k}: {v:,.0f} instructions per request ({m:,.0f} in the module's own code)")
    finally:
        C.stop_agent(fwd)
        C.cleanup()
    w, b = C.median(res["without"]), C.median(res["beside"])
    m = C.median(own)
    out = {"requests_per_run": N, "runs": res, "without_ir_per_request": w, "beside_ir_per_request": b,
           "difference_ir_per_request": b - w, "difference_share": (b - w) / w,
           "module_own_ir_per_request": m, "module_own_share": m / b}
    path = C.save_json("callgrind.json", out)
    C.log(f"wrote {path}: without {w:,.0f}, beside {b:,.0f} instructions per request "
          f"({100 * (b - w) / w:+.3f} %); the module's own code {m:,.0f} per request ({100 * m / b:.3f} %)")


if __name__ == "__main__":
    main()
