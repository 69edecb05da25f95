#!/usr/bin/env python3
"""Merges bench/results/throughput.json and scale.json into latest.json and
writes the Markdown tables of latest.md (targets first)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402


def load(name):
    try:
        with open(os.path.join(C.RESULTS, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def f(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def fi(x):
    return "–" if x is None else f"{x:,.0f}"


def static_for(tp, size, conns):
    for r in tp["results"]:
        if r["size"] == size and r["conns"] == conns and "static" in r["medians"]:
            return r["medians"]["static"]
    return None


def targets(tp, sc):
    out = []  # (target, measured text, met: True/False/None)

    def combos(group):
        return [r for r in (tp or {}).get("results", []) if r["group"] == group]

    for group, label in [("ajp", "AJP"), ("http", "HTTP")]:
        rs = [r for r in combos(group) if r["ratios"].get("rps_rev_fwd") is not None]
        if rs:
            v = [r["ratios"]["rps_rev_fwd"] for r in rs]
            out.append((f"{label} responder: reversed/forward req/s ≥ 1.00 (every size × connections)",
                        ", ".join(f"{r['size']}/c{r['conns']}: {r['ratios']['rps_rev_fwd']:.3f}" for r in rs),
                        min(v) >= 1.0))
            v = [r["ratios"]["p99_rev_fwd"] for r in rs if r["ratios"].get("p99_rev_fwd") is not None]
            out.append((f"{label} responder: reversed/forward p99 latency ≤ 1.00",
                        ", ".join(f"{r['size']}/c{r['conns']}: {f(r['ratios']['p99_rev_fwd'], 3)}" for r in rs),
                        bool(v) and max(v) <= 1.0))
        elif combos(group):
            out.append((f"{label} responder: reversed/forward ≥ 1.00, p99 ≤ 1.00",
                        "not measured (no forward responder)", None))
    rs = [r for r in combos("tomcat") if r["ratios"].get("rps_rev_fwd") is not None]
    if rs:
        v = [r["ratios"]["rps_rev_fwd"] for r in rs]
        out.append(("Tomcat: reversed via agent bridge / forward direct req/s ≥ 0.95",
                    ", ".join(f"{r['size']}/c{r['conns']}: {r['ratios']['rps_rev_fwd']:.3f}" for r in rs),
                    min(v) >= 0.95))
    else:
        out.append(("Tomcat: reversed via agent bridge / forward direct req/s ≥ 0.95", "not measured", None))
    for group, label in [("tcajp", "AJP"), ("tchttp", "HTTP/1.1")]:
        rs = [r for r in combos(group) if r["ratios"].get("rps_rev_fwd") is not None]
        if not rs:
            out.append((f"Tomcat {label}: in-Tomcat reversed connector / forward req/s ≥ 1.00, p99 ≤ 1.00", "not measured", None))
            continue
        v = [r["ratios"]["rps_rev_fwd"] for r in rs]
        out.append((f"Tomcat {label}: in-Tomcat reversed connector / forward direct req/s ≥ 1.00",
                    ", ".join(f"{r['size']}/c{r['conns']}: {r['ratios']['rps_rev_fwd']:.3f}" for r in rs),
                    min(v) >= 1.0))
        v = [r["ratios"]["p99_rev_fwd"] for r in rs if r["ratios"].get("p99_rev_fwd") is not None]
        out.append((f"Tomcat {label}: in-Tomcat reversed connector / forward p99 latency ≤ 1.00",
                    ", ".join(f"{r['size']}/c{r['conns']}: {f(r['ratios']['p99_rev_fwd'], 3)}" for r in rs),
                    bool(v) and max(v) <= 1.0))
        for key, what, lim, ge in [("rps_keep_fwd", "req/s ≥ 1.00", 1.0, True),
                                   ("p99_keep_fwd", "p99 latency ≤ 1.00", 1.0, False)]:
            ks = [r for r in rs if r["ratios"].get(key) is not None]
            if ks:
                v = [r["ratios"][key] for r in ks]
                out.append((f"Tomcat {label} (information): in-Tomcat connector with `reuse=60s` / forward {what}",
                            ", ".join(f"{r['size']}/c{r['conns']}: {r['ratios'][key]:.3f}" for r in ks),
                            (min(v) >= lim) if ge else (max(v) <= lim)))
        ts = [r for r in rs if r["ratios"].get("rps_rev_tunnel") is not None]
        if ts:
            v = [r["ratios"]["rps_rev_tunnel"] for r in ts]
            out.append((f"Tomcat {label}: in-Tomcat reversed connector / forward over a rathole tunnel (peer) req/s ≥ 1.5",
                        ", ".join(f"{r['size']}/c{r['conns']}: {r['ratios']['rps_rev_tunnel']:.3f}" for r in ts),
                        min(v) >= 1.5))
        elif rs:
            out.append((f"Tomcat {label}: in-Tomcat reversed connector / rathole tunnel (peer) req/s ≥ 1.5",
                        "not measured (see notes)", None))
    for group, label in [("ajp", "AJP"), ("http", "HTTP")]:
        parts, vals = [], []
        for r in combos(group):
            st = static_for(tp, r["size"], r["conns"])
            rev = r["medians"].get("reversed", {}).get("rps")
            if st and rev and st.get("rps"):
                q = rev / st["rps"]
                vals.append(q)
                parts.append(f"{r['size']}/c{r['conns']}: {q:.3f}")
        if vals:
            out.append((f"{label} responder reversed ≥ 0.5 × static-file ceiling (req/s)", ", ".join(parts), min(vals) >= 0.5))
    if sc:
        ic = sc.get("idle_connections") or {}
        if ic:
            out.append((f"{ic.get('target'):,} idle reversed connections held", f"{ic.get('held'):,}",
                        ic.get("held", 0) >= ic.get("target", 1)))
            out.append(("agent threads ≤ 4 (with them)", f(ic.get("agent_threads")),
                        ic.get("agent_threads") is not None and ic["agent_threads"] <= 4))
            a, h = ic.get("agent_bytes_per_idle_conn"), ic.get("httpd_bytes_per_idle_conn")
            out.append(("agent resident memory per idle connection ≤ 16 KiB", f"{a:,} B" if a is not None else "–",
                        a is not None and a <= 16384))
            out.append(("httpd resident memory per idle connection ≤ 16 KiB", f"{h:,} B" if h is not None else "–",
                        h is not None and h <= 16384))
        rf = sc.get("refill") or {}
        if rf.get("n"):
            out.append(("refill latency p50 ≤ 1 ms (upper bound, see method)",
                        f"p50 {f(rf['p50_ms'], 3)} ms, p99 {f(rf['p99_ms'], 3)} ms", rf["p50_ms"] <= 1.0))
        g = sc.get("graceful_to_full_pool") or {}
        if g.get("n"):
            out.append(("graceful restart → every new child has its full idle pool ≤ 1 s",
                        f"median {f(g['p50_ms'] / 1000, 3)} s, max {f(g['max_ms'] / 1000, 3)} s ({g['n']} rounds)",
                        g["max_ms"] <= 1000))
        elif "graceful_to_full_pool" in sc:
            out.append(("graceful restart → every new child has its full idle pool ≤ 1 s", "never reached (see notes)", False))
    return out


def md_throughput(tp):
    L = []
    s = tp["settings"]
    L.append(f"{s['pairs']} rounds per row after a warm-up, {s['duration_s']:g} s wrk runs "
             f"({s['wrk_threads']} threads, keep-alive), alternating forward, reversed"
             f"{', static' if any('static' in r['variants'] for r in tp['results']) else ''} "
             f"in every round; httpd {s['httpd']}; reversed agents `--idle {s['agent_idle']}`. "
             "Figures are medians of the rounds; ratios are medians of the per-round ratios; "
             "CPU is % of one core during the run (httpd: parent + children; agent: the responder "
             "or bridge process serving that variant; Tomcat in the backend column).")
    L.append("")
    names = {"ajp": "AJP, agent responder", "http": "HTTP, agent responder", "tomcat": "AJP, Tomcat connector via agent bridge",
             "tcajp": "AJP, in-Tomcat reversed connector", "tchttp": "HTTP/1.1, in-Tomcat reversed connector"}
    L.append("| path | body | conns | forward req/s | reversed req/s | **rev/fwd** | fwd p50 / p99 ms | rev p50 / p99 ms "
             "| **p99 rev/fwd** | static req/s | rev/static | CPU httpd fwd / rev | CPU agent fwd / rev | CPU Tomcat fwd / rev | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in tp["results"]:
        m = r["medians"]
        fw, rv = m.get("forward", {}), m.get("reversed", {})
        st = static_for(tp, r["size"], r["conns"]) if r["group"] in ("ajp", "http") else None
        rs = (rv.get("rps") / st["rps"]) if (st and rv.get("rps") and st.get("rps")) else None
        errs = sum(v.get("errors", 0) for v in m.values())
        L.append(
            f"| {names.get(r['group'], r['group'])} | {r['size']} | {r['conns']} | {fi(fw.get('rps'))} | {fi(rv.get('rps'))} "
            f"| **{f(r['ratios'].get('rps_rev_fwd'), 3)}** | {f(fw.get('p50_ms'))} / {f(fw.get('p99_ms'))} "
            f"| {f(rv.get('p50_ms'))} / {f(rv.get('p99_ms'))} | **{f(r['ratios'].get('p99_rev_fwd'), 3)}** "
            f"| {fi(st.get('rps')) if st else '–'} | {f(rs, 3)} "
            f"| {f(fw.get('cpu_httpd_pct'), 0)} / {f(rv.get('cpu_httpd_pct'), 0)} % "
            f"| {f(fw.get('cpu_agent_pct'), 0)} / {f(rv.get('cpu_agent_pct'), 0)} % "
            f"| {f(fw.get('cpu_backend_pct'), 0)} / {f(rv.get('cpu_backend_pct'), 0)} % | {errs} |")
    L.append("")
    L.append("Per-round ratios, reversed/forward (each round: forward then reversed, back to back):")
    L.append("")
    L.append("| path | body | conns | req/s per round | p99 latency per round |")
    L.append("|---|---|---|---|---|")
    for r in tp["results"]:
        pr = [p.get("rps_rev_fwd") for p in r["per_round"]]
        pl = [p.get("p99_rev_fwd") for p in r["per_round"]]
        if any(x is not None for x in pr):
            L.append(f"| {names.get(r['group'], r['group'])} | {r['size']} | {r['conns']} | "
                     + " ".join(f(x, 3) for x in pr) + " | " + " ".join(f(x, 3) for x in pl) + " |")
    return L


def path_cpu(med):
    """CPU per request of every process on the path: httpd + Tomcat (+ the tunnel's two ends)."""
    h, b = med.get("cpu_httpd_us_per_req"), med.get("cpu_backend_us_per_req")
    if h is None or b is None:
        return None
    return h + b + (med.get("cpu_agent_us_per_req") or 0)


def ratio_or_none(a, b):
    return a / b if (a is not None and b) else None


def md_in_tomcat(tp):
    """The in-Tomcat rows with every variant: forward, reversed (module
    defaults), reversed with reuse=60s, and the rathole tunnel (peer row)."""
    rs = [r for r in tp["results"] if r["group"] in ("tcajp", "tchttp")
          and any(v in r["variants"] for v in ("keep", "tunnel"))]
    if not rs:
        return []
    names = {"tcajp": "AJP", "tchttp": "HTTP/1.1"}
    L = ["Every variant of the in-Tomcat rows, alternating in each round: *forward* (mod_proxy to Tomcat's "
         "own connector), *reversed* (the in-Tomcat reversed connector, module defaults), *reuse=60s* (the same "
         "connector, a node with `reuse=60s`: a kept link is reused as long as forward's idle connections live), "
         f"*tunnel* (forward mod_proxy over a reverse TCP tunnel, {tp['settings'].get('tunnel') or 'rathole'} as "
         "shipped: its visitor and local sockets have no TCP_NODELAY, rathole-org/rathole#171). "
         "CPU per request from /proc (utime+stime over the run / requests); *path CPU* adds every process on the "
         "path (httpd, Tomcat, both tunnel ends; not wrk): on a shared machine it is steadier than req/s.", ""]
    ss = tp.get("in_tomcat_sessions")
    if ss:
        L.append(f"These rows pool {sum(x['pairs'] for x in ss)} rounds of {len(ss)} separate sessions (`bench/tomcat_merge.py`): "
                 + "; ".join(f"{x['when']}, load average {(x.get('loadavg_at_start') or ['?'])[0]} at the start, "
                             f"{(x.get('loadavg_at_end') or ['?'])[0]} at the end" for x in ss) + ".")
        try:
            busy = max(float((x.get("loadavg_at_start") or ["0"])[0]) for x in ss)
        except ValueError:
            busy = 0
        cpus = (tp.get("machine") or {}).get("cpus") or 1
        if busy > 1.5 * cpus:
            L.append("")
            L.append(f"**The machine was busy during these sessions (load average up to {busy:g} at a start, on "
                     f"{cpus} CPUs): req/s and p99 ratios are within the noise; CPU per request here and "
                     "`bench/tomcat_profile.py` / `bench/tomcat_callgrind.py` are the steadier measures.**")
        L.append("")
    L.append("| path | body | conns | req/s fwd / rev / reuse=60s / tunnel | **rev/fwd** | reuse=60s/fwd | **rev/tunnel** "
             "| p99 ms fwd / rev / reuse=60s / tunnel | **p99 rev/fwd** | p99 reuse=60s/fwd | p99 rev/tunnel "
             "| Tomcat µs/req fwd / rev / reuse=60s / tunnel | httpd µs/req fwd / rev / reuse=60s / tunnel | tunnel µs/req "
             "| **path CPU µs/req** fwd / rev / reuse=60s / tunnel | path CPU rev/fwd | **path CPU tunnel/rev** | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        m, q = r["medians"], r["ratios"]
        vs = ["forward", "reversed", "keep", "tunnel"]

        def row(k, nd=0):
            return " / ".join(fi(m.get(v, {}).get(k)) if nd == 0 else f(m.get(v, {}).get(k), nd) for v in vs)
        errs = sum(v.get("errors", 0) for v in m.values())
        pc = {v: path_cpu(m.get(v, {})) for v in vs}
        L.append(f"| {names[r['group']]} | {r['size']} | {r['conns']} | {row('rps')} | **{f(q.get('rps_rev_fwd'), 3)}** "
                 f"| {f(q.get('rps_keep_fwd'), 3)} | **{f(q.get('rps_rev_tunnel'), 3)}** | {row('p99_ms', 1)} "
                 f"| **{f(q.get('p99_rev_fwd'), 3)}** | {f(q.get('p99_keep_fwd'), 3)} | {f(q.get('p99_rev_tunnel'), 3)} "
                 f"| {row('cpu_backend_us_per_req', 1)} | {row('cpu_httpd_us_per_req', 1)} "
                 f"| {f(m.get('tunnel', {}).get('cpu_agent_us_per_req'), 1)} "
                 f"| {' / '.join(f(pc[v], 1) for v in vs)} | {f(ratio_or_none(pc['reversed'], pc['forward']), 3)} "
                 f"| **{f(ratio_or_none(pc['tunnel'], pc['reversed']), 3)}** | {errs} |")
    L.append("")
    L.append("Per-round ratios (rounds in order):")
    L.append("")
    L.append("| path | body | conns | rev/fwd req/s | reuse=60s/fwd req/s | rev/tunnel req/s | rev/fwd p99 | reuse=60s/fwd p99 |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in rs:
        def pr(k):
            return " ".join(f(p.get(k), 3) for p in r["per_round"])
        L.append(f"| {names[r['group']]} | {r['size']} | {r['conns']} | {pr('rps_rev_fwd')} | {pr('rps_keep_fwd')} "
                 f"| {pr('rps_rev_tunnel')} | {pr('p99_rev_fwd')} | {pr('p99_keep_fwd')} |")
    return L


def md_scale(sc):
    L = []
    ic = sc.get("idle_connections") or {}
    L.append(f"httpd {sc['settings']['httpd']}; open file limit {sc['settings'].get('nofile')}.")
    L.append("")
    L.append("| measure | value |")
    L.append("|---|---|")
    if ic:
        L.append(f"| idle reversed connections held (target) | {ic['held']:,} ({ic['target']:,}); per child {ic.get('per_child')} |")
        L.append(f"| time for the agent to fill them | {ic.get('fill_time_s')} s |")
        L.append(f"| agent threads | {ic.get('agent_threads')} |")
        L.append(f"| agent RSS | {ic.get('agent_rss_kib'):,} KiB (a 64-connection agent: {ic.get('agent_baseline_rss_kib'):,} KiB) |")
        L.append(f"| agent RSS per idle connection | {ic.get('agent_bytes_per_idle_conn'):,} B (incl. the base: {ic.get('agent_bytes_per_idle_conn_incl_base'):,} B) |")
        L.append(f"| httpd children RSS before / after | {ic.get('httpd_children_rss_kib_before'):,} / {ic.get('httpd_children_rss_kib_after'):,} KiB |")
        L.append(f"| httpd RSS per idle connection | {ic.get('httpd_bytes_per_idle_conn'):,} B (open descriptors per child: {ic.get('httpd_children_fds')}) |")
        if ic.get("kernel_slab_bytes_per_conn_pair") is not None:
            L.append(f"| kernel slab per connection (both ends, machine-wide, information) | {ic['kernel_slab_bytes_per_conn_pair']:,} B |")
    for key, label in [("agent_start_to_first_request", "agent start → first successful request"),
                       ("agent_start_to_full_pool", "agent start → every child has its full idle pool"),
                       ("refill", "refill: idle connection taken → replacement idle and authenticated (upper bound)"),
                       ("graceful_to_full_pool", "graceful restart → every new child has its full idle pool"),
                       ("graceful_to_full_pool_max_backoff_100ms",
                        "the same, agent `--max-backoff-ms 100` (information)")]:
        v = sc.get(key) or {}
        if v.get("n"):
            L.append(f"| {label} | p50 {f(v['p50_ms'], 3)} ms, p99 {f(v['p99_ms'], 3)} ms, max {f(v['max_ms'], 3)} ms (n={v['n']}) |")
        elif key in sc:
            L.append(f"| {label} | not reached (see notes) |")
    g = sc.get("graceful_to_full_pool_with_bulk")
    if g:
        L.append(f"| graceful restart with {g['idle_connections']:,} idle → all new pools full (information) | "
                 f"{str(g['seconds']) + ' s' if g['ok'] else 'not within 60 s'} |")
    return L


def md_liveness(lv):
    L = []
    sm = lv.get("summary") or {}
    L.append(f"{lv.get('idle_links', 0):,} idle reversed links held for {lv.get('window_s')} s, default liveness "
             f"(`ping=30s`, keepalive 60,10,3) against `ping=off`, alternating; medians of "
             f"{len(lv.get('rounds', []))} rounds.")
    L.append("")
    L.append("| measure | ping=30s | ping=off |")
    L.append("|---|---|---|")
    for key, label in [("httpd_cpu_pct_of_core", "httpd CPU (% of a core, parent + children)"),
                       ("agent_cpu_pct_of_core", "agent CPU (% of a core)"),
                       ("wire_bytes_per_s", "bytes/s on the wire (both directions, IP headers included)"),
                       ("wire_packets_per_s", "packets/s on the wire")]:
        v = sm.get(key) or {}
        L.append(f"| {label} | {f(v.get('ping_on'), 3)} | {f(v.get('ping_off'), 3)} |")
    return L


METHOD = """## Method

- **Throughput** (`bench/throughput.py`): one private httpd (event MPM, loopback, no access log)
  carries every variant under its own path, so variants alternate within one session
  without restarts. *forward*: `ProxyPass` to `ajp://` / `http://127.0.0.1:PORT` where the
  agent's built-in responder listens; *reversed*: a reversed worker whose connections the
  same binary dials in (`--respond`, same body); *static*: httpd's own file handler on a
  file of the same size; *Tomcat*: forward `ajp://127.0.0.1:31009` against a reversed
  worker whose agent splices to that same connector. Load: `wrk` with keep-alive clients;
  latency percentiles from wrk's histogram via `bench/wrk-report.lua`. CPU from
  `/proc/PID/stat` (utime+stime) before and after each run.
- **Idle connections** (`bench/scale.py`): one agent `--idle 10000` over 4 children
  (`maxidle=2500` each); RSS from `/proc/PID/status` (VmRSS): agent minus a 64-connection
  agent's RSS, httpd children after minus before, divided by the connections held.
  Kernel socket memory is not in RSS (machine-wide slab delta shown for information).
- **Refill latency**: 4 children with 16 idle each (`--idle 64`, `maxidle=16`); a request
  to a path with `proxy-nokeepalive` is *sent* (its response is read later), then
  `/reversed-status?json` is polled until the node's `accepted` counter has grown by one
  and every child again has 16 idle. The time from sending the request includes the
  request reaching the child and one status poll (median poll shown in the JSON), so it is
  an upper bound of take → replacement idle and authenticated.
- **Graceful restart**: SIGUSR1 to httpd from a steady pool (connections older than 2 s),
  then status polls until 4 children, none of the old generation, each with 16 idle.
- **Cost of liveness** (`bench/liveness.py`): 10 000 idle links (4 children, one agent),
  held idle for the window, once with `ping=30s` and once with `ping=off`, alternating
  the order per round; CPU from `/proc/PID/stat` over the window; wire bytes and packets
  from nftables counters on the node's ports (loopback, both directions).
- **Cost for other workers** (`bench/callgrind.py`): httpd -X under callgrind (instruction
  counts), N GETs on one keep-alive connection to a forward `ProxyPass` with 22 other
  workers, once without the module and once with it loaded beside two reversed nodes
  (one with an agent dialled in), alternating; instrumentation on only for the N requests.
  The module's own share is the self cost of every function of its object.
- **Agent start → first request**: a request is already waiting in httpd (node `wait=5s`)
  when the agent process is spawned; measured from the spawn to the response.
"""


def main():
    tp, sc, lv = load("throughput.json"), load("scale.json"), load("liveness.json")
    cg = load("callgrind.json")
    ti = load("tomcat_idle.json")
    tg = targets(tp, sc)
    if cg:
        tg.append(("a non-reversed ProxyPass beside reversed nodes: the module's cost unmeasurable (callgrind)",
                   f"{cg['difference_ir_per_request']:+,.0f} instructions per request "
                   f"({100 * cg['difference_share']:+.2f} %), {cg['module_own_ir_per_request']:,.0f} in the module's code",
                   abs(cg["difference_share"]) < 0.005))
    if ti and ti.get("many"):
        few, many = ti["few"], ti["many"]
        tg.append((f"in-Tomcat connector: Tomcat threads independent of idle links (2 front ends x {few['links_per_front_end']} "
                   f"vs x {many['links_per_front_end']})",
                   f"{few.get('threads')} vs {many.get('threads')} threads", abs(ti.get("thread_difference", 99)) <= 2))
        b = ti.get("rss_bytes_per_idle_link")
        tg.append(("in-Tomcat connector: resident memory per idle link reported (≤ 16 KiB)",
                   f"{b:,} B" if b is not None else "–", b is not None and b <= 16384))
    if lv and lv.get("summary"):
        sm = lv["summary"]
        dh = sm["httpd_cpu_pct_of_core"]["ping_on"] - sm["httpd_cpu_pct_of_core"]["ping_off"]
        da = sm["agent_cpu_pct_of_core"]["ping_on"] - sm["agent_cpu_pct_of_core"]["ping_off"]
        tg.append((f"liveness with {lv['idle_links']:,} idle links: CPU cost of pings < 1 % of a core each",
                   f"httpd +{dh:.2f} %, agent +{da:.2f} % of a core", dh < 1 and da < 1))
    doc = {"throughput": tp, "scale": sc, "liveness": lv, "callgrind": cg, "tomcat_idle": ti,
           "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in tg]}
    C.save_json("latest.json", doc)
    L = ["# mod_proxy_reversed benchmarks: latest run", ""]
    when = (tp or sc or {}).get("when")
    mach = (tp or {}).get("machine", {})
    L.append(f"Run {when}; {mach.get('cpus')} CPUs ({mach.get('cpu', '?')}), kernel {mach.get('kernel', '?')}, "
             f"{mach.get('httpd', 'httpd')}; load average at the start {' '.join(mach.get('loadavg_at_start') or [])}, "
             f"at the end {' '.join(mach.get('loadavg_at_end', []))} (the end figure includes the benchmark's own "
             "wrk and httpd threads). "
             "Re-run with `make bench`; raw figures in [latest.json](latest.json).")
    L.append("")
    try:
        # Only the load before the benchmark tells of other work: during and
        # after it, wrk and httpd's many threads raise the load average themselves.
        busy = float((mach.get("loadavg_at_start") or ["0"])[0])
    except ValueError:
        busy = 0
    if mach.get("cpus") and busy > 1.5 * mach["cpus"]:
        L.append(f"**The machine was busy (load average {busy:g} on {mach['cpus']} CPUs): other work competed "
                 "with the benchmark, so ratios near 1 are within the noise. Re-run on a quiet machine.**")
        L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    for t, m, ok in tg:
        L.append(f"| {t} | {m} | {'yes' if ok else ('–' if ok is None else '**no**')} |")
    L.append("")
    if tp:
        L.append("## Throughput and latency")
        L.append("")
        L += md_throughput(tp)
        L.append("")
        it = md_in_tomcat(tp)
        if it:
            L.append("## In-Tomcat connector: all variants")
            L.append("")
            L += it
            L.append("")
    if sc:
        L.append("## Scale and cost")
        L.append("")
        L += md_scale(sc)
        L.append("")
    if lv:
        L.append("## Cost of liveness")
        L.append("")
        L += md_liveness(lv)
        L.append("")
    if ti and ti.get("many"):
        L.append("## Idle links held by the in-Tomcat connector")
        L.append("")
        L.append("| idle links (2 front ends) | start to full pools | Tomcat threads | Tomcat RSS | descriptors | served after |")
        L.append("|---|---|---|---|---|---|")
        for r in (ti["few"], ti["many"]):
            L.append(f"| {r['links_total']:,} | {r['start_to_full_s']:.2f} s (includes the JVM start) | {r.get('threads')} "
                     f"| {r.get('rss_kib', 0) / 1024:.0f} MiB | {r.get('fds')} | {r.get('served')} |")
        L.append("")
        L.append(f"Resident memory per extra idle link: {ti.get('rss_bytes_per_idle_link')} B "
                 f"(heap {ti['settings'].get('heap')}; `bench/tomcat_idle.py`).")
        L.append("")
    notes = (tp or {}).get("notes", []) + (sc or {}).get("notes", []) + (ti or {}).get("notes", [])
    if notes:
        L.append("## Notes")
        L.append("")
        for n in notes:
            L.append(f"- {n[:600]}")
        L.append("")
    L.append(METHOD)
    path = os.path.join(C.RESULTS, "latest.md")
    with open(path, "w") as fh:
        fh.write("\n".join(L))
    C.log(f"wrote {path} and {os.path.join(C.RESULTS, 'latest.json')}")


if __name__ == "__main__":
    main()
