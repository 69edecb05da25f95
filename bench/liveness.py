#!/usr/bin/env python3
"""Cost of idle-link liveness (issue 9). Writes bench/results/liveness.json.

A private httpd (event MPM, 4 children x 25 threads) with one AJP node,
127.0.0.1:32300-32307, maxidle=2500 per child, and one agent --idle 10000:
10 000 idle links. Side by side, alternating in one run, the same setup with
the default liveness (ping=30s, keepalive 60,10,3) and with pings off
(ping=off): over a window of BENCH_LIVENESS_SECS (default 90 s) of idleness,
CPU seconds of httpd (parent and children) and of the agent, and the bytes
and packets on the wire in both directions of the node's ports (nftables
counters in a table of this bench, removed at the end).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

PORT = 32090
CHILDREN, THREADS = 4, 25
FIRST = 32300
IDLE = int(os.environ.get("BENCH_IDLE_CONNS", "10000"))
MAXIDLE = -(-IDLE // CHILDREN)
WINDOW = float(os.environ.get("BENCH_LIVENESS_SECS", "90"))
ROUNDS = int(os.environ.get("BENCH_LIVENESS_ROUNDS", "2"))
TABLE = f"mprbench_{os.getpid()}"


def nft(script):
    return subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)


def counters():
    """(bytes, packets) counted on the node's ports, both directions."""
    out = subprocess.run(["nft", "list", "table", "inet", TABLE], capture_output=True, text=True).stdout
    b = p = 0
    for line in out.splitlines():
        if "counter packets" in line:
            f = line.split()
            p += int(f[f.index("packets") + 1])
            b += int(f[f.index("bytes") + 1])
    return b, p


def conf(rundir, liveness):
    c = C.base_conf(rundir, PORT, mods=[]) + C.std_mpm_conf(CHILDREN, THREADS)
    c += "ProxyReversedMaxHandshakes 512\n"
    c += f"ProxyReversedLiveness {liveness}\n"
    c += 'ProxyPass "/bulk/" "ajp://127.0.0.33:1/"\n'
    c += (f'ProxyReversed bulk "ajp://127.0.0.33:1/" 127.0.0.1:{FIRST}-{FIRST + 7} '
          f'secret={rundir}/bulk.secret wait=5s maxidle={MAXIDLE}\n')
    return c


def one(label, liveness):
    rundir = C.make_rundir(f"liveness-{label}")
    C.write_secret(f"{rundir}/bulk.secret")
    h = C.Httpd(rundir, PORT, conf(rundir, liveness)).start()
    agent = C.start_agent(f"bulk-{label}", [
        "--node", "bulk", "--secret-file", f"{rundir}/bulk.secret",
        "--frontend", f"127.0.0.1:{FIRST}-{FIRST + 7}", "--idle", str(IDLE),
        "--respond", "--body-size", "64", "--log-level", "warn"], rundir)
    ok = C.wait_until(lambda: C.node_sum(h.status() or {}, "bulk", "idle") >= IDLE, 120, 0.1)
    time.sleep(3)  # settle: the fill's own work is not counted
    held = C.node_sum(h.status() or {}, "bulk", "idle")
    cpu_h0, cpu_a0 = h.cpu(), C.cpu_seconds([agent.pid])
    b0, p0 = counters()
    t0 = time.monotonic()
    time.sleep(WINDOW)
    dt = time.monotonic() - t0
    cpu_h1, cpu_a1 = h.cpu(), C.cpu_seconds([agent.pid])
    b1, p1 = counters()
    held_after = C.node_sum(h.status() or {}, "bulk", "idle")
    code, _ = h.get("/bulk/check")
    C.stop_agent(agent)
    h.stop()
    r = {
        "liveness": liveness,
        "filled": bool(ok),
        "idle_links": held,
        "idle_links_after": held_after,
        "window_s": round(dt, 1),
        "httpd_cpu_pct_of_core": round(100 * (cpu_h1 - cpu_h0) / dt, 3),
        "agent_cpu_pct_of_core": round(100 * (cpu_a1 - cpu_a0) / dt, 3),
        "wire_bytes_per_s": round((b1 - b0) / dt, 1),
        "wire_packets_per_s": round((p1 - p0) / dt, 1),
        "request_after": code,
    }
    C.log(f"{label}: {r}")
    return r


def main():
    C.raise_nofile(65536)
    r = nft(f"table inet {TABLE} {{\n chain input {{ type filter hook input priority 0; policy accept;\n"
            f"  tcp dport {FIRST}-{FIRST + 7} counter\n  tcp sport {FIRST}-{FIRST + 7} counter\n }}\n}}\n")
    if r.returncode != 0:
        raise SystemExit(f"bench liveness: nft failed (root and nftables needed): {r.stderr}")
    out = {"idle_links": IDLE, "window_s": WINDOW, "rounds": []}
    try:
        for k in range(ROUNDS):
            # alternate the order of the pair from round to round
            pair = [("off", "ping=off"), ("on", "ping=30s")]
            if k % 2:
                pair.reverse()
            rnd = {}
            for label, live in pair:
                rnd[label] = one(f"{label}{k}", live)
            out["rounds"].append(rnd)
    finally:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)
        C.cleanup()

    def med(key, label):
        return C.median([r[label][key] for r in out["rounds"]])
    out["summary"] = {
        k: {"ping_on": med(k, "on"), "ping_off": med(k, "off")}
        for k in ["httpd_cpu_pct_of_core", "agent_cpu_pct_of_core", "wire_bytes_per_s", "wire_packets_per_s"]
    }
    path = C.save_json("liveness.json", out)
    C.log(f"wrote {path}: {out['summary']}")


if __name__ == "__main__":
    main()
