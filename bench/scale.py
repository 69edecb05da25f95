#!/usr/bin/env python3
"""Scale and cost of reversed connections. Writes bench/results/scale.json.

A private httpd (event MPM, 4 children x 25 threads) with two reversed nodes:
  small  HTTP node, 127.0.0.1:32100-32107, maxidle=16 per child; one agent --idle 64
         (16 per child: the full pool). /small/close/* sets proxy-nokeepalive, so
         every such request retires its connection and takes a fresh idle one.
  bulk   AJP node, 127.0.0.1:32200-32207, maxidle=2500 per child; one agent --idle 10000.

Phases:
  1. time from agent start to the first successful request (a request already
     waiting in httpd when the agent is spawned), and to the full idle pool;
  2. refill latency: send a /small/close/ request, then poll the JSON status
     until the node's `accepted` counter has grown by one and every child is
     back to its full idle pool;
  3. graceful restart until every new child has its full idle pool (small node);
  4. 10 000 idle connections: agent threads, resident memory per idle
     connection on the agent and on httpd, time to fill; a graceful restart
     with them (information).
"""

import http.client
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

PORT = 32080
CHILDREN, THREADS = 4, 25
SMALL_FIRST, BULK_FIRST = 32100, 32200
SMALL_IDLE = 64
SMALL_MAXIDLE = SMALL_IDLE // CHILDREN
BULK_IDLE = int(os.environ.get("BENCH_IDLE_CONNS", "10000"))
BULK_MAXIDLE = -(-BULK_IDLE // CHILDREN)
FIRST_REPS = int(os.environ.get("BENCH_FIRST_REPS", "5"))
REFILL_SAMPLES = int(os.environ.get("BENCH_REFILL_SAMPLES", "300"))
GRACEFUL_ROUNDS = int(os.environ.get("BENCH_GRACEFUL_ROUNDS", "3"))


def conf(rundir):
    md = C.moddir()
    c = C.base_conf(rundir, PORT, mods=["env"]) + C.std_mpm_conf(CHILDREN, THREADS)
    c += "ProxyReversedMaxHandshakes 512\n"
    c += 'ProxyPass "/small/" "http://127.0.0.32:1/"\n'
    c += (f'ProxyReversed small "http://127.0.0.32:1/" 127.0.0.1:{SMALL_FIRST}-{SMALL_FIRST + 7} '
          f'secret={rundir}/small.secret wait=5s maxidle={SMALL_MAXIDLE}\n')
    c += '<Location "/small/close">\n    SetEnv proxy-nokeepalive 1\n</Location>\n'
    c += 'ProxyPass "/bulk/" "ajp://127.0.0.31:1/"\n'
    c += (f'ProxyReversed bulk "ajp://127.0.0.31:1/" 127.0.0.1:{BULK_FIRST}-{BULK_FIRST + 7} '
          f'secret={rundir}/bulk.secret wait=5s maxidle={BULK_MAXIDLE}\n')
    del md
    return c


def full_pool(st, node, per_child, old=()):
    """Every child (CHILDREN of them, none in `old`) is bound with `per_child` idle for node."""
    if not st:
        return False
    ch = st.get("children", [])
    if len(ch) != CHILDREN or any(c.get("pid") in old for c in ch):
        return False
    e = C.node_entries(st, node)
    return len(e) == CHILDREN and all(n.get("bound") and n.get("idle", 0) >= per_child for _, n in e)


def small_agent(rundir, tag, extra=()):
    return C.start_agent(f"small-{tag}", list(extra) + [
        "--node", "small", "--secret-file", f"{rundir}/small.secret",
        "--frontend", f"127.0.0.1:{SMALL_FIRST}-{SMALL_FIRST + 7}", "--idle", str(SMALL_IDLE),
        "--respond", "--body-size", "64", "--log-level", "warn"], rundir)


def ms(x):
    return None if x is None else round(x * 1000, 3)


def stats_ms(xs):
    return {"n": len(xs), "p50_ms": ms(C.percentile(xs, 50)), "p90_ms": ms(C.percentile(xs, 90)),
            "p99_ms": ms(C.percentile(xs, 99)), "max_ms": ms(max(xs)) if xs else None,
            "min_ms": ms(min(xs)) if xs else None}


def main():
    lim = C.raise_nofile(65536)
    rundir = C.make_rundir("scale")
    C.require_free([PORT] + [SMALL_FIRST + i for i in range(8)] + [BULK_FIRST + i for i in range(8)])
    for n in ["small", "bulk"]:
        C.write_secret(os.path.join(rundir, f"{n}.secret"))
    h = C.Httpd(rundir, PORT, conf(rundir)).start()
    C.log(f"scale: httpd {h.p.pid}, children {h.children()}, open file limit {lim[0]}")
    out = {"kind": "scale", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "settings": {"httpd": f"event MPM, {CHILDREN} children x {THREADS} threads",
                        "small_node": f"agent --idle {SMALL_IDLE}, maxidle={SMALL_MAXIDLE} per child",
                        "bulk_node": f"agent --idle {BULK_IDLE}, maxidle={BULK_MAXIDLE} per child",
                        "nofile": lim[0]},
           "notes": []}
    notes = out["notes"]

    # 1. agent start -> first successful request
    firsts, fulls = [], []
    agent = None
    for i in range(FIRST_REPS):
        if not C.wait_until(lambda: (lambda st: st and C.node_sum(st, "small", "idle") == 0)(h.status()), 10):
            notes.append("idle connections of a stopped agent were still counted after 10 s")
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=15)
        c.connect()
        t0 = time.monotonic()
        agent = small_agent(rundir, i)
        c.request("GET", f"/small/first/{i}")
        r = c.getresponse()
        r.read()
        t1 = time.monotonic()
        c.close()
        if r.status != 200:
            notes.append(f"first request after agent start answered {r.status}")
        else:
            firsts.append(t1 - t0)
        if C.wait_until(lambda: full_pool(h.status(), "small", SMALL_MAXIDLE), 15, 0.005):
            fulls.append(time.monotonic() - t0)
        else:
            notes.append(f"small pool not full 15 s after agent start: {h.status()}")
        if i < FIRST_REPS - 1:
            C.stop_agent(agent)
    out["agent_start_to_first_request"] = stats_ms(firsts)
    out["agent_start_to_full_pool"] = stats_ms(fulls)
    C.log(f"agent start -> first request {out['agent_start_to_first_request']}")
    C.log(f"agent start -> full idle pool {out['agent_start_to_full_pool']}")

    # 2. refill latency
    refills, polls = [], []
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=15)
    deadline = time.monotonic() + 60
    misses = 0
    for i in range(REFILL_SAMPLES):
        if time.monotonic() > deadline:
            notes.append(f"refill: stopped after {i} samples (60 s budget)")
            break
        st = C.wait_until(lambda: (lambda s: s if full_pool(s, "small", SMALL_MAXIDLE) else None)(h.status()), 5, 0.002)
        if not st:
            misses += 1
            continue
        acc0 = C.node_sum(st, "small", "accepted")
        t0 = time.monotonic()
        c.request("GET", f"/small/close/{i}")  # sent now; the response is read after the poll
        t1 = None
        end = t0 + 5
        while time.monotonic() < end:
            p0 = time.monotonic()
            s = h.status()
            polls.append(time.monotonic() - p0)
            if s and C.node_sum(s, "small", "accepted") >= acc0 + 1 and full_pool(s, "small", SMALL_MAXIDLE):
                t1 = time.monotonic()
                break
        r = c.getresponse()
        r.read()
        if r.status != 200:
            notes.append(f"refill request {i} answered {r.status}")
        if t1 is None:
            misses += 1
        else:
            refills.append(t1 - t0)
    c.close()
    out["refill"] = stats_ms(refills)
    out["refill"]["status_poll_p50_ms"] = ms(C.percentile(polls, 50))
    out["refill"]["misses"] = misses
    C.log(f"refill {out['refill']}")

    # 3. graceful restart -> every new child has its full idle pool
    def graceful_rounds(label):
        gr = []
        for rd in range(GRACEFUL_ROUNDS):
            # From a steady state: idle connections older than the agent's 1 s
            # "closed right after accepting" threshold.
            time.sleep(2)
            st = h.status()
            old = {ch["pid"] for ch in (st or {}).get("children", [])}
            t0 = time.monotonic()
            h.graceful()
            ok = C.wait_until(lambda: full_pool(h.status(), "small", SMALL_MAXIDLE, old), 30, 0.005)
            if ok:
                gr.append(time.monotonic() - t0)
            else:
                notes.append(f"graceful ({label}) round {rd}: new children without a full pool after 30 s: "
                             f"idle per child {[n.get('idle') for _, n in C.node_entries(h.status(), 'small')]}")
            st2, _ = h.get("/small/after-graceful")
            if st2 != 200:
                notes.append(f"graceful ({label}) round {rd}: request after the restart answered {st2}")
        return stats_ms(gr)
    out["graceful_to_full_pool"] = graceful_rounds("default agent")
    C.log(f"graceful -> full pool {out['graceful_to_full_pool']}")
    # The same with the agent's backoff capped at 100 ms (information: how much
    # of the time is the agent's wait before re-probing ports refused earlier).
    C.stop_agent(agent)
    agent = small_agent(rundir, "backoff100", ["--max-backoff-ms", "100"])
    if C.wait_until(lambda: full_pool(h.status(), "small", SMALL_MAXIDLE), 15, 0.01):
        out["graceful_to_full_pool_max_backoff_100ms"] = graceful_rounds("--max-backoff-ms 100")
        C.log(f"graceful -> full pool, --max-backoff-ms 100: {out['graceful_to_full_pool_max_backoff_100ms']}")

    # 4. 10 000 idle connections
    time.sleep(1)
    base_httpd = h.children_rss_kib()
    base_agent = C.proc_status(agent.pid)
    base_tcp, base_slab = C.tcp_mem_kib(), C.slab_kib()
    t0 = time.monotonic()
    bulk = C.start_agent("bulk", [
        "--node", "bulk", "--secret-file", f"{rundir}/bulk.secret",
        "--frontend", f"127.0.0.1:{BULK_FIRST}-{BULK_FIRST + 7}", "--idle", str(BULK_IDLE),
        "--respond", "--body-size", "64", "--log-level", "warn"], rundir)
    last = [None]

    def filled():
        last[0] = h.status()
        return last[0] and C.node_sum(last[0], "bulk", "idle") >= BULK_IDLE
    ok = C.wait_until(filled, 120, 0.05)
    fill = time.monotonic() - t0
    idle_now = C.node_sum(last[0], "bulk", "idle")
    if not ok:
        notes.append(f"bulk: only {idle_now} idle connections after 120 s")
    time.sleep(2)  # settle
    st = h.status()
    idle_now = C.node_sum(st, "bulk", "idle")
    a = C.proc_status(bulk.pid)
    rss_httpd = h.children_rss_kib()
    tcp, slab = C.tcp_mem_kib(), C.slab_kib()
    code, _ = h.get("/bulk/check")
    if code != 200:
        notes.append(f"bulk: request with {idle_now} idle connections answered {code}")
    n = max(idle_now, 1)
    out["idle_connections"] = {
        "target": BULK_IDLE,
        "held": idle_now,
        "per_child": [e.get("idle") for _, e in C.node_entries(st, "bulk")],
        "fill_time_s": round(fill, 2),
        "agent_threads": a.get("threads"),
        "agent_fds": C.fd_count(bulk.pid),
        "agent_rss_kib": a.get("rss_kib"),
        "agent_baseline_rss_kib": base_agent.get("rss_kib"),
        "agent_bytes_per_idle_conn": round((a.get("rss_kib", 0) - base_agent.get("rss_kib", 0)) * 1024 / n),
        "agent_bytes_per_idle_conn_incl_base": round(a.get("rss_kib", 0) * 1024 / n),
        "httpd_children_fds": [C.fd_count(p) for p in h.children()],
        "httpd_children_rss_kib_before": base_httpd,
        "httpd_children_rss_kib_after": rss_httpd,
        "httpd_bytes_per_idle_conn": round((rss_httpd - base_httpd) * 1024 / n),
        "kernel_tcp_buffers_kib_delta": (tcp - base_tcp) if tcp is not None and base_tcp is not None else None,
        "kernel_slab_bytes_per_conn_pair": round((slab - base_slab) * 1024 / n) if slab and base_slab else None,
    }
    C.log(f"idle connections {out['idle_connections']}")

    # graceful restart with them (information)
    time.sleep(1)
    old = {ch["pid"] for ch in (st or {}).get("children", [])}
    t0 = time.monotonic()
    h.graceful()
    ok = C.wait_until(lambda: full_pool(h.status(), "bulk", BULK_MAXIDLE, old)
                      and full_pool(h.status(), "small", SMALL_MAXIDLE, old), 60, 0.05)
    out["graceful_to_full_pool_with_bulk"] = {
        "idle_connections": BULK_IDLE, "ok": bool(ok),
        "seconds": round(time.monotonic() - t0, 3) if ok else None}
    if not ok:
        notes.append(f"bulk graceful: pools not full 60 s after the restart: "
                     f"bulk idle {C.node_sum(h.status(), 'bulk', 'idle')}")
    C.log(f"graceful with bulk {out['graceful_to_full_pool_with_bulk']}")

    C.stop_agent(bulk)
    C.stop_agent(agent)
    h.stop()
    err = h.error_log()
    sentinel = err.count("AH00957")
    if sentinel:
        notes.append(f"mod_proxy dialled a sentinel worker URL {sentinel} time(s) (AH00957 in the error log): "
                     "those requests got 503 at once")
    panics = err.count("panicked")
    if panics:
        notes.append(f"httpd error log has {panics} Rust panics")
    path = C.save_json("scale.json", out)
    C.log(f"wrote {path}")
    for x in notes:
        C.log("note: " + x)


if __name__ == "__main__":
    main()
