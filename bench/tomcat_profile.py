#!/usr/bin/env python3
"""Why the in-Tomcat connector differs from Tomcat's own connector: a profile.

Starts the same httpd and Tomcat as throughput.py (groups tcajp / tchttp), then
for every (group, size, connections) runs forward and reversed alternately
(BENCH_PAIRS rounds of BENCH_DURATION s) and records, per run:

- CPU per request of httpd (parent + children) and of Tomcat, and Tomcat's CPU
  split by thread role (processor "exec", Poller, Acceptor, the connector's
  Idle watcher / Keeper / Dialer, JIT, GC, other), from /proc/PID/task/*/stat;
  thread names come from `jcmd PID Thread.print` (nid -> name);
- voluntary and involuntary context switches per request, per role;
- the reversed node's counters on httpd's status page over the run
  (accepted = new links dialled, retired, waited = requests that had to wait
  for an idle link, ping_failed), and idle/busy at the end;
- with BENCH_STRACE=1, one extra run per variant under `strace -c -f` on
  Tomcat and on the httpd children: syscalls per request.

Writes bench/results/tomcat-profile.json (or BENCH_PROFILE_OUT).
Knobs: as throughput.py (BENCH_PORT_BASE, BENCH_SIZES, BENCH_CONNS,
BENCH_REV_OPTS, BENCH_DIR), BENCH_PROFILE_GROUPS (tcajp,tchttp).
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BENCH_GROUPS", os.environ.get("BENCH_PROFILE_GROUPS", "tcajp,tchttp"))
import common as C  # noqa: E402
import throughput as T  # noqa: E402

GROUPS = os.environ["BENCH_GROUPS"].split(",")
STRACE = os.environ.get("BENCH_STRACE") == "1"
OUT = os.environ.get("BENCH_PROFILE_OUT", "tomcat-profile.json")
PATHS = {"tcajp": ("/tc-fwd/", "/tc-in-ajp/", "rev-tcin-ajp", "/tc-keep-ajp/", "rev-tcin-ajp-keep"),
         "tchttp": ("/tc-fwd-http/", "/tc-in-http/", "rev-tcin-http", "/tc-keep-http/", "rev-tcin-http-keep")}


def role(name):
    n = name or ""
    if "-exec-" in n:
        return ("rev-" if "reversed" in n else "fwd-") + "exec"
    for key, r in [("-Poller", "Poller"), ("-Acceptor", "Acceptor"), ("-Idle", "Idle"), ("-Keeper", "Keeper"),
                   ("-Dialer-", "Dialer"), ("C2 Compiler", "JIT"), ("C1 Compiler", "JIT"), ("GC", "GC"),
                   ("G1", "GC")]:
        if key in n:
            if key in ("-Poller", "-Acceptor"):
                return ("rev-" if "reversed" in n else "fwd-") + r
            return r
    return "other"


def thread_names(pid):
    """{tid: java thread name} from jcmd Thread.print."""
    try:
        out = subprocess.run(["jcmd", str(pid), "Thread.print"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for m in re.finditer(r'^"([^"]+)".*? nid=(0x[0-9a-f]+|\d+)', out, re.M):
        nid = m.group(2)
        names[int(nid, 16) if nid.startswith("0x") else int(nid)] = m.group(1)
    return names


def task_stats(pid):
    """{tid: (cpu ticks, voluntary, involuntary)}."""
    d = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return d
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
            rest = s[s.rindex(")") + 2:].split()
            ticks = int(rest[11]) + int(rest[12])
            vol = inv = 0
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        inv = int(line.split()[1])
            d[int(t)] = (ticks, vol, inv)
        except (OSError, ValueError, IndexError):
            continue
    return d


def java_pid(tomcat):
    for pid in T.tree_pids(tomcat.pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "java":
                    return pid
        except OSError:
            pass
    return tomcat.pid


def metrics(h, node):
    """The node's lines of /reversed-status?metrics: {name{labels}: value}."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=5)
    try:
        c.request("GET", "/reversed-status?metrics")
        body = c.getresponse().read().decode(errors="replace")
    except OSError:
        return {}
    finally:
        c.close()
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or f'node="{node}"' not in line:
            continue
        k, _, v = line.rpartition(" ")
        k = re.sub(r'node="[^"]*",?', "", k).replace("{}", "")
        k = re.sub(r"^[a-z_]*?(requests_waited|connection_wait|connections_retired|ping_failures)", r"\1", k)
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def counters(h, node):
    st = h.status()
    keys = ["accepted", "retired", "ping_failed", "idle", "busy", "rejected"]
    out = {k: C.node_sum(st, node, k) for k in keys}
    out.update(metrics(h, node))
    return out


def strace_run(pids, url, conns, duration):
    """strace -c -f on the given pids during one wrk run: {syscall: calls}."""
    procs = []
    outs = []
    for pid in pids:
        o = f"/tmp/tcprofile-strace-{pid}.txt"
        outs.append(o)
        procs.append(subprocess.Popen(["strace", "-c", "-f", "-o", o, "-p", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.5)
    w = T.wrk(url, conns, duration)
    for p in procs:
        p.send_signal(2)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    calls = {}
    for o in outs:
        try:
            with open(o) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                        name = parts[-1]
                        n = int(parts[3])
                        calls[name] = calls.get(name, 0) + n
            os.unlink(o)
        except (OSError, ValueError):
            pass
    reqs = w["requests"] or 1
    return {"requests": int(w["requests"]), "per_req": {k: round(v / reqs, 3) for k, v in
                                                        sorted(calls.items(), key=lambda kv: -kv[1])[:25]}}


def one(h, tomcat, jpid, url, conns, node):
    names = thread_names(jpid)
    t0, c0, hc0 = task_stats(jpid), counters(h, node) if node else None, h.cpu()
    w = T.wrk(url, conns, T.DURATION)
    t1, c1, hc1 = task_stats(jpid), counters(h, node) if node else None, h.cpu()
    names.update({k: v for k, v in thread_names(jpid).items()})
    reqs = w["requests"] or 1
    roles = {}
    for tid, (ticks, vol, inv) in t1.items():
        a = t0.get(tid, (0, 0, 0))
        r = role(names.get(tid))
        x = roles.setdefault(r, [0, 0, 0])
        x[0] += ticks - a[0]
        x[1] += vol - a[1]
        x[2] += inv - a[2]
    tc_ticks = sum(v[0] for v in roles.values())
    r = {
        "rps": round(reqs / (w["duration_us"] / 1e6), 1),
        "p50_ms": round(w["p50_us"] / 1000, 3), "p99_ms": round(w["p99_us"] / 1000, 3),
        "max_ms": round(w["max_us"] / 1000, 3),
        "errors": int(w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"] + w["err_status"]),
        "httpd_us_per_req": round(1e6 * (hc1 - hc0) / reqs, 1),
        "tomcat_us_per_req": round(1e6 * tc_ticks / C.CLK_TCK / reqs, 1),
        "tomcat_roles_us_per_req": {k: round(1e6 * v[0] / C.CLK_TCK / reqs, 1) for k, v in sorted(roles.items())
                                    if v[0] or v[1]},
        "tomcat_csw_per_req": {k: [round(v[1] / reqs, 3), round(v[2] / reqs, 3)] for k, v in sorted(roles.items())
                               if v[1] or v[2]},
    }
    if node:
        r["node_delta"] = {k: c1[k] - c0.get(k, 0) for k in c1 if k not in ("idle", "busy") and c1[k] != c0.get(k, 0)}
        r["node_end"] = {k: c1[k] for k in ["idle", "busy"]}
    return r


def main():
    C.raise_nofile(65536)
    rundir = C.make_rundir("tcprofile")
    for n in T.NODES:
        C.write_secret(os.path.join(rundir, f"{n}.secret"))
    os.makedirs(os.path.join(rundir, "htdocs/static"), exist_ok=True)
    h = C.Httpd(rundir, T.PORT, T.httpd_conf(rundir)).start()
    tomcat, why = T.tomcat_start(rundir)
    if why:
        raise SystemExit(f"profile: {why}")
    jpid = java_pid(tomcat)
    nodes = [PATHS[g][i] for g in GROUPS for i in (2, 4)]

    def all_idle():
        st = h.status()
        return st and all(len(C.node_entries(st, n)) == T.CHILDREN and
                          all(e["idle"] >= T.MAXIDLE for _, e in C.node_entries(st, n)) for n in nodes)
    if not C.wait_until(all_idle, 30, 0.1):
        C.log(f"not every pool full: {h.status()}")
    base = f"http://127.0.0.1:{T.PORT}"
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[:3]
    results = []
    warmed = False
    for g in GROUPS:
        fwd, rev, node, keep, knode = PATHS[g]
        for s in T.SIZES:
            for c in T.CONNS:
                urls = [("forward", f"{base}{fwd}{s}.bin", None), ("reversed", f"{base}{rev}{s}.bin", node),
                        ("keep", f"{base}{keep}{s}.bin", knode)]
                bad = [e for e in (T.check(h, u, T.SIZES[s]) for _, u, _ in urls) if e]
                if bad:
                    raise SystemExit(f"profile: {'; '.join(bad)}")
                for _, u, _ in urls:
                    T.wrk(u, c, 8.0 if not warmed else T.WARMUP)
                warmed = True
                runs = []
                for rd in range(1, T.PAIRS + 1):
                    for v, u, n in urls:
                        r = one(h, tomcat, jpid, u, c, n)
                        r.update({"variant": v, "round": rd})
                        runs.append(r)
                        C.log(f"{g} {s} c={c} {rd} {v:8} {r['rps']:8.0f} req/s p99 {r['p99_ms']:8.2f} ms "
                              f"httpd {r['httpd_us_per_req']:6.1f} us/req tomcat {r['tomcat_us_per_req']:6.1f} "
                              f"us/req {r.get('node_delta', '')}")
                st = {}
                if STRACE:
                    children = h.children()
                    for v, u, _ in urls:
                        st[v] = {"tomcat": strace_run([jpid], u, c, T.DURATION),
                                 "httpd": strace_run(children, u, c, T.DURATION)}
                results.append({"group": g, "size": s, "conns": c, "runs": runs, "strace": st})
                C.save_json(OUT, {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "loadavg_at_start": load0, "rev_opts": T.REV_OPTS.strip(),
                                  "results": results})
    with open("/proc/loadavg") as f:
        C.log(f"load {load0} -> {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
