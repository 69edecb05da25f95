"""Shared helpers for the mod_proxy_reversed benchmarks (stdlib only).

Processes started here are registered and stopped at exit (also on SIGINT /
SIGTERM): httpd (run in the foreground as our child), reversed-agents, Tomcat.
"""

import atexit
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RELEASE = os.environ.get("BENCH_RELEASE", os.path.join(ROOT, "target", "release"))
AGENT = os.environ.get("BENCH_AGENT", os.path.join(RELEASE, "reversed-agent"))
MODULE = os.environ.get("BENCH_MODULE", os.path.join(RELEASE, "libmod_proxy_reversed.so"))
HTTPD = os.environ.get("BENCH_HTTPD", "/usr/sbin/apache2")
TOMCAT_HOME = os.environ.get("BENCH_TOMCAT_HOME", "/usr/share/tomcat10")
RESULTS = os.path.join(HERE, "results")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def moddir():
    try:
        out = subprocess.run(["apxs", "-q", "LIBEXECDIR"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "/usr/lib/apache2/modules"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# process registry and cleanup
# ---------------------------------------------------------------------------

_procs = []  # (name, Popen, kill_group)


def register(name, p, group=False):
    _procs.append((name, p, group))
    return p


def stop_proc(p, group=False, timeout=10.0, sig=signal.SIGTERM):
    """Stops one process we started (by its pid, or its own process group)."""
    if p.poll() is not None:
        return
    try:
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            if group:
                os.killpg(p.pid, signal.SIGKILL)
            else:
                p.kill()
        except ProcessLookupError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def cleanup():
    while _procs:
        name, p, group = _procs.pop()
        stop_proc(p, group)


atexit.register(cleanup)


def _on_signal(signum, frame):
    cleanup()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


# ---------------------------------------------------------------------------
# /proc readings
# ---------------------------------------------------------------------------

def proc_stat(pid):
    """(ppid, utime+stime ticks) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    return int(rest[1]), int(rest[11]) + int(rest[12])


def children_of(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[0] == ppid:
                out.append(int(d))
    return sorted(out)


def cpu_seconds(pids):
    t = 0
    for pid in pids:
        st = proc_stat(pid)
        if st:
            t += st[1]
    return t / CLK_TCK


def proc_status(pid):
    """Dict of /proc/PID/status fields (VmRSS in KiB as int, Threads as int)."""
    d = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                d[k] = v.strip()
    except OSError:
        return {}
    out = {}
    if "VmRSS" in d:
        out["rss_kib"] = int(d["VmRSS"].split()[0])
    if "Threads" in d:
        out["threads"] = int(d["Threads"])
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def tcp_mem_kib():
    """Kernel TCP buffer memory (all sockets), from /proc/net/sockstat, in KiB."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1]) * PAGE // 1024
    except (OSError, ValueError):
        pass
    return None


def slab_kib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Slab:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------
# misc
# ---------------------------------------------------------------------------

def port_free(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def require_free(ports):
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise SystemExit(f"bench: ports already in use: {busy[:10]} (another bench running?)")


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, step=0.02):
    end = time.monotonic() + timeout
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() >= end:
            return r
        time.sleep(step)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def write_secret(path):
    with open(path, "w") as f:
        f.write(os.urandom(32).hex())
    os.chmod(path, 0o600)


def raise_nofile(want=65536):
    """Raises RLIMIT_NOFILE to `want` (hard limit too, when allowed), else to the hard limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft != inf and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want if hard != inf and hard < want else hard))
        except (ValueError, OSError):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---------------------------------------------------------------------------
# httpd
# ---------------------------------------------------------------------------

class Httpd:
    """A private httpd in the foreground (-DFOREGROUND) as our child."""

    def __init__(self, rundir, port, conf):
        self.dir = rundir
        self.port = port
        self.conf_path = os.path.join(rundir, "httpd.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.p = None
        self._conn = None

    def start(self, timeout=15):
        defs = [] if os.geteuid() == 0 else ["-DNO_USER"]
        t = subprocess.run([HTTPD, "-t", "-f", self.conf_path] + defs, capture_output=True, text=True)
        if t.returncode != 0:
            raise SystemExit(f"httpd configtest failed:\n{t.stderr}{t.stdout}")
        self.p = register("httpd", subprocess.Popen(
            [HTTPD, "-f", self.conf_path, "-DFOREGROUND"] + defs,
            stdin=subprocess.DEVNULL, stdout=open(os.path.join(self.dir, "httpd.out"), "w"),
            stderr=subprocess.STDOUT))
        ok = wait_until(lambda: self.p.poll() is not None or (port_accepts(self.port) and self.status()), timeout, 0.05)
        if self.p.poll() is not None or not ok:
            raise SystemExit(f"httpd did not start:\n{self.error_log()[-3000:]}")
        return self

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def children(self):
        return children_of(self.p.pid)

    def pids(self):
        return [self.p.pid] + self.children()

    def cpu(self):
        return cpu_seconds(self.pids())

    def children_rss_kib(self):
        return sum(proc_status(c).get("rss_kib", 0) for c in self.children())

    def graceful(self):
        os.kill(self.p.pid, signal.SIGUSR1)

    def stop(self):
        stop_proc(self.p, timeout=15)

    def get(self, path, timeout=10):
        """One GET on a fresh connection: (status, body)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def status(self):
        """/reversed-status?json parsed, over a kept-alive connection; None on failure."""
        for _ in range(2):
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self._conn.request("GET", "/reversed-status?json")
                r = self._conn.getresponse()
                body = r.read()
                if r.status != 200:
                    return None
                if r.getheader("Connection", "").lower() == "close":
                    self._conn.close()
                    self._conn = None
                return json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
        return None


def node_entries(st, node):
    """[(pid, node dict)] for `node` in a parsed status."""
    out = []
    for c in (st or {}).get("children", []):
        for n in c.get("nodes", []):
            if n.get("node") == node:
                out.append((c.get("pid"), n))
    return out


def node_sum(st, node, key):
    return sum(n.get(key, 0) for _, n in node_entries(st, node))


# ---------------------------------------------------------------------------
# agents
# ---------------------------------------------------------------------------

def agent_help():
    try:
        return subprocess.run([AGENT, "--help"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return ""


def start_agent(name, args, logdir):
    out = open(os.path.join(logdir, f"agent-{name}.log"), "w")
    p = subprocess.Popen([AGENT] + args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return register(f"agent-{name}", p)


def start_cmd(name, argv, logdir):
    out = open(os.path.join(logdir, f"{name}.log"), "w")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return register(name, p)


def unregister(p):
    for i, (_, q, _) in enumerate(_procs):
        if q is p:
            del _procs[i]
            return


def stop_agent(p):
    stop_proc(p, timeout=35)
    unregister(p)


def std_mpm_conf(children, threads):
    """event MPM settings that keep exactly `children` processes (no spare-thread reaping)."""
    total = children * threads
    return (
        f"StartServers {children}\nServerLimit {children * 2}\nThreadsPerChild {threads}\n"
        f"ThreadLimit {threads}\nMaxRequestWorkers {total}\nMinSpareThreads {threads}\n"
        f"MaxSpareThreads {total}\nMaxConnectionsPerChild 0\n"
    )


def base_conf(rundir, port, mods=()):
    md = moddir()
    loads = "\n".join(f"LoadModule {m}_module {md}/mod_{m}.so" for m in mods)
    return f"""ServerRoot "{rundir}"
ServerName localhost
Listen 127.0.0.1:{port}
PidFile "{rundir}/httpd.pid"
ErrorLog "{rundir}/error.log"
LogLevel warn
DocumentRoot "{rundir}/htdocs"
LoadModule mpm_event_module {md}/mod_mpm_event.so
LoadModule authz_core_module {md}/mod_authz_core.so
LoadModule authz_host_module {md}/mod_authz_host.so
LoadModule proxy_module {md}/mod_proxy.so
LoadModule proxy_ajp_module {md}/mod_proxy_ajp.so
LoadModule proxy_http_module {md}/mod_proxy_http.so
{loads}
LoadModule proxy_reversed_module {MODULE}
<IfDefine !NO_USER>
User www-data
Group www-data
</IfDefine>
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
<Directory "{rundir}/htdocs">
    Require all granted
</Directory>
<Location "/reversed-status">
    SetHandler proxy-reversed-status
    Require local
</Location>
"""


def make_rundir(name):
    base = os.environ.get("BENCH_DIR", "/var/tmp")
    d = os.path.join(base, f"mod_proxy_reversed-{name}")
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(os.path.join(d, "htdocs"))
    os.chmod(d, 0o755)
    return d


def save_json(name, data):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return path


def callgrind_module_ir(path):
    """Instructions spent in the module's own code (self cost, every function of its object)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines():
        if "libmod_proxy_reversed.so]" in line:
            try:
                total += int(line.split()[0].replace(",", ""))
            except ValueError:
                pass
    return total


def callgrind_total(path):
    """The `totals:` Ir of a callgrind output file (its header's `summary:` may be 0)."""
    total = None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
    if total is None:
        raise SystemExit(f"no totals in {path}")
    return total
