#!/usr/bin/env python3
"""Thousands of idle links held by the in-Tomcat connector (tomcat-connector/).

Two private httpds (event MPM, one child each), each with one reversed AJP
node on one port; one Tomcat whose single ReversedAjpProtocol connector dials
both front ends (`address`/`port` + `frontends`). Tomcat runs twice: with
BENCH_TC_FEW (10) and with BENCH_TC_LINKS (1000) idle links per front end.
For each run: time to fill both pools, Tomcat's threads and resident memory
once settled, and that a request is then served by each httpd. Reports the
thread difference and the resident memory per extra idle link.
Writes bench/results/tomcat_idle.json.
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

FEW = int(os.environ.get("BENCH_TC_FEW", "10"))
LINKS = int(os.environ.get("BENCH_TC_LINKS", "1000"))
HTTPD_PORTS = [32380, 32381]
NODE_PORTS = [32390, 32391]
JAR = os.path.join(os.path.dirname(C.HERE), "target/tomcat-connector/mod_proxy_reversed-tomcat.jar")
PROTO = "org.proxyreversed.tomcat.ReversedAjpProtocol"


def httpd_conf(rundir, port, node_port, secret):
    c = C.base_conf(rundir, port) + C.std_mpm_conf(1, 25)
    c += "ProxyReversedMaxHandshakes 512\n"
    c += 'ProxyPass "/tc/" "ajp://127.0.0.41:1/"\n'
    c += (f'ProxyReversed tcidle "ajp://127.0.0.41:1/" 127.0.0.1:{node_port} '
          f'secret={secret} wait=5s maxidle={LINKS + 100}\n')
    return c


def start_tomcat(base, secret, links):
    shutil.rmtree(base, ignore_errors=True)
    for sub in ["conf", "logs", "temp", "work", "lib", "webapps/ROOT"]:
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    shutil.copy(JAR, os.path.join(base, "lib"))
    with open(os.path.join(base, "conf/server.xml"), "w") as f:
        f.write(f"""<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="{PROTO}" node="tcidle" secretFile="{secret}" secretRequired="false"
               address="127.0.0.1" port="{NODE_PORTS[0]}" ports="1" frontends="127.0.0.1:{NODE_PORTS[1]}"
               idleConnections="{links}" maxConnections="{4 * links + 100}" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
""")
    web = next(p for p in [os.path.join(C.TOMCAT_HOME, "etc/web.xml"), "/etc/tomcat10/web.xml"] if os.path.exists(p))
    shutil.copy(web, os.path.join(base, "conf/web.xml"))
    for f in ["catalina.properties", "context.xml", "logging.properties"]:
        src = os.path.join(C.TOMCAT_HOME, "etc", f)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(base, "conf", f))
    with open(os.path.join(base, "webapps/ROOT/hello.txt"), "w") as f:
        f.write("hello\n")
    java = os.path.realpath(shutil.which("java"))
    env = dict(os.environ, CATALINA_HOME=C.TOMCAT_HOME, CATALINA_BASE=base, CATALINA_TMPDIR=os.path.join(base, "temp"),
               JAVA_HOME=os.path.dirname(os.path.dirname(java)), CATALINA_OPTS="-Xms256m -Xmx256m -Xss512k")
    out = open(os.path.join(base, "logs/console.log"), "w")
    p = subprocess.Popen([os.path.join(C.TOMCAT_HOME, "bin/catalina.sh"), "run"], env=env, stdin=subprocess.DEVNULL,
                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return C.register("tomcat", p, group=True)


def one_run(hs, base, secret, links, notes):
    t0 = time.monotonic()
    p = start_tomcat(base, secret, links)

    def filled():
        sts = [h.status() for h in hs]
        return all(st and C.node_sum(st, "tcidle", "idle") >= links for st in sts)
    ok = C.wait_until(lambda: p.poll() is not None or filled(), 120, 0.05)
    fill_s = time.monotonic() - t0
    if p.poll() is not None or not ok:
        notes.append(f"{links} links: pools not full within 120 s ({[h.status() for h in hs]})")
    time.sleep(2.0)
    st = C.proc_status(p.pid)
    served = [h.get("/tc/hello.txt")[0] for h in hs]
    r = {"links_per_front_end": links, "links_total": 2 * links,
         "start_to_full_s": round(fill_s, 3), "threads": st.get("threads"), "rss_kib": st.get("rss_kib"),
         "fds": C.fd_count(p.pid), "served": served}
    C.stop_proc(p, group=True, timeout=15)
    C.unregister(p)
    C.log(f"tomcat-idle: {r}")
    return r


def main():
    C.raise_nofile(65536)
    notes = []
    if not os.path.exists(JAR):
        raise SystemExit(f"tomcat_idle: {JAR} missing (make tomcat-connector)")
    if not os.path.exists(os.path.join(C.TOMCAT_HOME, "bin/catalina.sh")):
        raise SystemExit("tomcat_idle: tomcat10 is not installed")
    C.require_free(HTTPD_PORTS + NODE_PORTS)
    hs = []
    dirs = [C.make_rundir(f"tcidle-{i}") for i in range(2)]
    secret = os.path.join(dirs[0], "tcidle.secret")
    C.write_secret(secret)
    for i in range(2):
        hs.append(C.Httpd(dirs[i], HTTPD_PORTS[i], httpd_conf(dirs[i], HTTPD_PORTS[i], NODE_PORTS[i], secret)).start())
    base = os.path.join(dirs[0], "tomcat")
    few = one_run(hs, base, secret, FEW, notes)
    many = one_run(hs, base, secret, LINKS, notes)
    per_link = None
    if few.get("rss_kib") and many.get("rss_kib"):
        per_link = round((many["rss_kib"] - few["rss_kib"]) * 1024 / (many["links_total"] - few["links_total"]))
    out = {"kind": "tomcat_idle", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "settings": {"front_ends": 2, "few": FEW, "links": LINKS, "heap": "-Xms256m -Xmx256m"},
           "few": few, "many": many,
           "thread_difference": (many.get("threads") or 0) - (few.get("threads") or 0),
           "rss_bytes_per_idle_link": per_link, "notes": notes}
    path = C.save_json("tomcat_idle.json", out)
    C.log(f"wrote {path}")
    for h in hs:
        h.stop()


if __name__ == "__main__":
    main()
