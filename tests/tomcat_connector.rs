//! The in-Tomcat reversed connector (tomcat-connector/) against the real
//! module: Debian's tomcat10 in a private CATALINA_BASE whose only
//! connectors are `ReversedAjpProtocol` / `ReversedHttp11Protocol` dials
//! httpd itself; no agent in between. Each case prints
//! `FIGURE tomcat-connector-<case> | ...`.

mod common;

use common::load::{graceful_rounds_under_load, kill9_children_under_load, LoadOpts};
use common::tomcat::*;
use common::*;
use std::time::{Duration, Instant};

const SECRET: &str = "in-tomcat connector test secret, long enough";

/// The cases measure times on a small machine: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// GETs `url` until 200 or `within` passes; returns the time it took.
fn first_200(url: &str, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    let c = client(Duration::from_secs(5));
    while t.elapsed() < within {
        if matches!(get_with(&c, url), Ok(r) if r.status == 200) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Static file, JSP (GET and POST), a 10 MB POST echoed and checksummed,
/// and 64 concurrent clients, on one node; returns the figures.
fn exercise(h: &Httpd, node: &RNode) -> String {
    let what = format!("{} {}", h.mpm().name(), node.scheme);
    let r = get(&node.url_on(h, "hello.txt")).unwrap();
    assert_eq!((r.status, r.text()), (200, TOMCAT_HELLO_TXT.to_string()), "{what}: hello.txt");
    let r = get_with(&client(Duration::from_secs(60)), &node.url_on(h, "hello.jsp")).unwrap();
    assert_eq!((r.status, r.text().trim().to_string()), (200, "answer=42 method=GET".to_string()), "{what}: hello.jsp");
    let r = post(&node.url_on(h, "hello.jsp"), b"a=1").unwrap();
    assert_eq!(
        (r.status, r.text().trim().to_string()),
        (200, "answer=42 method=POST".to_string()),
        "{what}: POST hello.jsp"
    );
    let r = get(&node.url_on(h, "no-such-file.txt")).unwrap();
    assert_eq!(r.status, 404, "{what}: Tomcat's 404 passes through");

    // 10 MB POST, echoed by echo.jsp, checksummed.
    const SIZE: usize = 10 << 20;
    let data = pseudo_random_bytes(SIZE, 0x5eed ^ node.first as u64);
    let want = sha256_hex(&data);
    let t = Instant::now();
    let c = client(Duration::from_secs(120));
    let r = post_with(&c, &node.url_on(h, "echo.jsp"), &data).unwrap_or_else(|e| panic!("{what}: 10 MB POST: {e}"));
    let big = t.elapsed();
    assert_eq!(r.status, 200, "{what}: 10 MB POST status");
    assert_eq!(r.body.len(), SIZE, "{what}: 10 MB echo length");
    assert_eq!(sha256_hex(&r.body), want, "{what}: 10 MB echo checksum");

    // 64 concurrent clients, each its own connections, zero errors allowed.
    let clients = 64;
    let per = 6;
    let t = Instant::now();
    let ths: Vec<_> = (0..clients)
        .map(|i| {
            let txt = node.url_on(h, "hello.txt");
            let jsp = node.url_on(h, "hello.jsp");
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(30));
                let mut errs = Vec::new();
                for j in 0..per {
                    let (u, want) = if (i + j) % 2 == 0 {
                        (&txt, TOMCAT_HELLO_TXT.to_string())
                    } else {
                        (&jsp, "answer=42 method=GET\n".to_string())
                    };
                    match get_with(&c, u) {
                        Ok(r) if r.status == 200 && r.text() == want => {}
                        Ok(r) => errs.push(format!("{u}: {} {:?}", r.status, r.text())),
                        Err(e) => errs.push(format!("{u}: {e}")),
                    }
                }
                errs
            })
        })
        .collect();
    let mut errs = Vec::new();
    for t in ths {
        errs.extend(t.join().expect("client thread"));
    }
    let conc = t.elapsed();
    let total = clients * per;
    assert!(
        errs.is_empty(),
        "{what}: {} of {total} concurrent requests failed: {:?}",
        errs.len(),
        &errs[..errs.len().min(5)]
    );
    format!(
        "static + JSP GET/POST + 404 OK; 10 MiB POST echoed in {} ms, sha256 equal; {clients} concurrent clients: {total}/{total} OK in {} ms ({:.0} req/s)",
        ms(big),
        ms(conc),
        total as f64 / conc.as_secs_f64()
    )
}

#[test]
fn ajp_and_http_under_event_and_prefork() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let ev_ajp = RNode::new("ev-ajp", "ajp", "127.0.0.2:1", 6);
    let ev_http = RNode::new("ev-http", "http", "127.0.0.3:1", 6);
    let pf_ajp = RNode::new("pf-ajp", "ajp", "127.0.0.4:1", 10);
    let pf_http = RNode::new("pf-http", "http", "127.0.0.5:1", 10);
    let be = Httpd::builder(Mpm::Event);
    let secret = be.secret("secret", SECRET);
    let opts = format!("secret={} wait=3s", secret.display());
    let he = be
        .conf("LimitRequestBody 0\n")
        .conf(&ev_ajp.conf(&opts))
        .conf(&ev_http.conf(&opts))
        .conf(STATUS_LOCATION)
        .start();
    let bp = Httpd::builder(Mpm::Prefork).mpm_settings(
        "StartServers 8\nMinSpareServers 8\nMaxSpareServers 8\nServerLimit 8\nMaxRequestWorkers 8\nMaxConnectionsPerChild 0\n",
    );
    let secret_p = bp.secret("secret", SECRET);
    let opts_p = format!("secret={} wait=3s", secret_p.display());
    let hp = bp
        .conf("LimitRequestBody 0\n")
        .conf(&pf_ajp.conf(&opts_p))
        .conf(&pf_http.conf(&opts_p))
        .conf(STATUS_LOCATION)
        .start();
    let t = Instant::now();
    let tc = ReversedTomcat::start(&[
        Conn::for_node(&ev_ajp, &secret).attr("idleConnections", "16"),
        Conn::for_node(&ev_http, &secret).attr("idleConnections", "16"),
        Conn::for_node(&pf_ajp, &secret_p).attr("idleConnections", "16"),
        Conn::for_node(&pf_http, &secret_p).attr("idleConnections", "16"),
    ]);
    wait_all_idle(&he, &["ev-ajp", "ev-http"], Duration::from_secs(20));
    wait_all_idle(&hp, &["pf-ajp", "pf-http"], Duration::from_secs(20));
    let ready = t.elapsed();
    let listening = tc.listening_ports();
    assert_eq!(listening, vec![tc.shutdown_port], "Tomcat listens on nothing but its shutdown port");
    figure(
        "tomcat-connector-start",
        &format!("4 reversed connectors, every httpd child holding idle links {} ms after catalina.sh run; Tomcat listens only on {:?} (shutdown)", ms(ready), listening),
    );
    let threads_idle = proc_threads(tc.pid()).unwrap_or(0);
    for (h, node) in [(&he, &ev_ajp), (&he, &ev_http), (&hp, &pf_ajp), (&hp, &pf_http)] {
        let f = exercise(h, node);
        figure(&format!("tomcat-connector-{}-{}", h.mpm().name(), node.scheme), &f);
    }
    for (h, nodes) in [(&he, ["ev-ajp", "ev-http"]), (&hp, ["pf-ajp", "pf-http"])] {
        let st = status_json(h).unwrap();
        for n in nodes {
            assert!(st.accepted(n) > 0 && st.rejected(n) == 0, "{n}: {st:?}");
        }
        assert!(!h.error_log().contains("AH00957"), "mod_proxy dialled the sentinel");
    }
    let log = tc.log();
    assert!(!log.contains("SEVERE"), "Tomcat logged errors:\n{}", log);
    figure(
        "tomcat-connector-threads",
        &format!(
            "Tomcat JVM threads with 4 connectors idle: {threads_idle}, after the load: {}",
            proc_threads(tc.pid()).unwrap_or(0)
        ),
    );
}

#[test]
fn tomcat_stop_gives_prompt_503_and_start_serves_within_2s() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let node = RNode::new("tc-restart", "ajp", "127.0.0.2:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={} wait=1s", secret.display()))).conf(STATUS_LOCATION).start();
    let mut tc = ReversedTomcat::start(&[Conn::for_node(&node, &secret)]);
    wait_all_idle(&h, &["tc-restart"], Duration::from_secs(20));
    let url = node.url_on(&h, "hello.txt");
    let r = get(&url).unwrap();
    assert_eq!(r.status, 200);
    let slow = node.url_on(&h, "sleep.jsp?ms=1000");
    assert_eq!(get_with(&client(Duration::from_secs(60)), &node.url_on(&h, "sleep.jsp?ms=1")).unwrap().status, 200);

    // A request in progress when Tomcat stops finishes.
    let busy = std::thread::spawn(move || get_with(&client(Duration::from_secs(30)), &slow));
    std::thread::sleep(Duration::from_millis(300));
    let stop = tc.stop();
    let busy = busy.join().unwrap();
    let busy_status = busy.as_ref().map(|r| (r.status, r.text())).map_err(|e| e.clone());
    assert_eq!(busy_status, Ok((200, "slept 1000".to_string())), "the request in progress at stop");
    let t = Instant::now();
    let r = get(&url).unwrap();
    let first_503 = t.elapsed();
    assert_eq!(r.status, 503, "after Tomcat stopped: {} {:?}", r.status, r.text());
    // wait=1s: the 503 comes at most about a second later.
    assert!(first_503 < Duration::from_millis(2000), "503 after {first_503:?}");
    let idle_after_stop = status_json(&h).unwrap().idle("tc-restart");
    assert_eq!(idle_after_stop, 0, "httpd still holds idle links of a stopped Tomcat");

    let before = tc.console().matches("Starting ProtocolHandler").count();
    let t = Instant::now();
    tc.spawn();
    let saw = wait_until(Duration::from_secs(60), || tc.console().matches("Starting ProtocolHandler").count() > before);
    assert!(saw, "the connector did not start:\n{}", tc.log());
    let connector_up = t.elapsed();
    let served = first_200(&url, Duration::from_secs(10)).expect("not served within 10 s of the connector's start");
    figure(
        "tomcat-connector-restart",
        &format!(
            "Tomcat stop took {} ms, the 1 s request in progress finished (200); first request after it: 503 in {} ms (wait=1s), idle links left {idle_after_stop}; start: connector started {} ms after catalina.sh run, first 200 {} ms after that",
            ms(stop),
            ms(first_503),
            ms(connector_up),
            ms(served)
        ),
    );
    assert!(served <= Duration::from_secs(2), "served {served:?} after the connector started");
}

#[test]
fn wrong_secret_is_refused_and_logged_on_both_sides() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let node = RNode::new("tc-wrong", "ajp", "127.0.0.2:1", 2);
    let ok_node = RNode::new("tc-ok", "http", "127.0.0.3:1", 2);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let wrong = b.secret("wrong", "another secret, just as long as the first");
    let h = b
        .conf(&node.conf(&format!("secret={} wait=1s", secret.display())))
        .conf(&ok_node.conf(&format!("secret={} wait=1s", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    // One connector with the wrong secret, one correct, one misspelled attribute.
    let tc = ReversedTomcat::start(&[
        Conn::for_node(&node, &wrong).attr("idleConnections", "2").attr("maxBackoff", "5000"),
        Conn::for_node(&ok_node, &secret).attr("idleConnections", "2"),
        Conn::for_node(&ok_node, &secret).attr("node", "tc-typo").attr("idleConections", "2"),
    ]);
    wait_all_idle(&h, &["tc-ok"], Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let r = get(&node.url_on(&h, "hello.txt")).unwrap();
    assert_eq!(r.status, 503, "a node whose dialer has the wrong secret is not served");
    let st = status_json(&h).unwrap();
    assert_eq!(st.accepted("tc-wrong"), 0, "{st:?}");
    let rejected = st.rejected("tc-wrong");
    assert!(rejected >= 1, "httpd counted no rejected dialer: {st:?}");
    let elog = h.error_log();
    let httpd_lines = elog.lines().filter(|l| l.contains("tc-wrong") && l.contains("rejected dialer")).count();
    assert!(httpd_lines >= 1, "httpd did not log the rejection:\n{elog}");
    let log = tc.log();
    assert!(
        log.contains("failed to prove the secret for node tc-wrong") && log.contains("SEVERE"),
        "Tomcat did not report the wrong secret:\n{log}"
    );
    assert!(!log.contains(SECRET) && !log.contains("another secret"), "a secret was logged");
    assert!(!elog.contains(SECRET) && !elog.contains("another secret"), "a secret was logged by httpd");
    // Misspelled attribute: that connector fails, naming it; the others run.
    assert!(
        log.contains("unknown attribute \"idleConections\" (did you mean \"idleConnections\"?)"),
        "the misspelled attribute is not named:\n{log}"
    );
    let r = get(&ok_node.url_on(&h, "hello.txt")).unwrap();
    assert_eq!(r.status, 200);
    // Not redialled blindly: the first fill (one per port), then per port
    // probes >= 1 s apart and growing (1 s, ~1.6 s, ~3.2 s ...).
    assert!(rejected <= 10, "{rejected} rejected dials in ~4 s");
    figure(
        "tomcat-connector-wrong-secret",
        &format!("httpd rejected {rejected} dials in ~4 s and logged {httpd_lines} lines; Tomcat logged SEVERE 'failed to prove the secret'; client got 503; misspelled attribute named in the connector's start failure"),
    );
}

#[test]
fn two_front_ends_served_by_one_tomcat() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let n1 = RNode::new("tc-two", "ajp", "127.0.0.2:1", 3);
    let n2 = RNode::new("tc-two", "ajp", "127.0.0.2:1", 3);
    let b1 = Httpd::builder(Mpm::Event);
    let s1 = b1.secret("secret", SECRET);
    let h1 = b1.conf(&n1.conf(&format!("secret={} wait=2s", s1.display()))).conf(STATUS_LOCATION).start();
    let b2 = Httpd::builder(Mpm::Event);
    let s2 = b2.secret("secret", SECRET);
    let h2 = b2.conf(&n2.conf(&format!("secret={} wait=2s", s2.display()))).conf(STATUS_LOCATION).start();
    // One connector: address/port name the first front end, frontends adds the second.
    let tc = ReversedTomcat::start(&[Conn::for_node(&n1, &s1)
        .attr("frontends", &format!("127.0.0.1:{}-{}", n2.first, n2.last))
        .attr("idleConnections", "6")]);
    wait_all_idle(&h1, &["tc-two"], Duration::from_secs(20));
    wait_all_idle(&h2, &["tc-two"], Duration::from_secs(20));
    let mut served = [0, 0];
    for i in 0..40 {
        let (h, n) = if i % 2 == 0 { (&h1, &n1) } else { (&h2, &n2) };
        let r = get(&n.url_on(h, "hello.txt")).unwrap();
        assert_eq!((r.status, r.text()), (200, TOMCAT_HELLO_TXT.to_string()), "front end {}", i % 2 + 1);
        served[i % 2] += 1;
    }
    let (a1, a2) = (status_json(&h1).unwrap().accepted("tc-two"), status_json(&h2).unwrap().accepted("tc-two"));
    assert!(a1 > 0 && a2 > 0);
    assert!(tc.log().contains(&format!("127.0.0.1:{}-{}", n2.first, n2.last)));
    figure(
        "tomcat-connector-two-front-ends",
        &format!(
            "one connector, two httpds: {}/{} and {}/{} requests served; links accepted {a1} and {a2}",
            served[0], 20, served[1], 20
        ),
    );
}

#[test]
fn idle_links_answer_httpds_pings_themselves() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let node = RNode::new("tc-ping", "http", "127.0.0.3:1", 1);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&node.conf(&format!("secret={} wait=2s ping=250ms pingtimeout=200ms", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let tc = ReversedTomcat::start(&[Conn::for_node(&node, &secret)
        .attr("idleConnections", "4")
        // Tomcat's own timeouts, short: they must not touch links waiting for a request.
        .attr("connectionTimeout", "500")
        .attr("keepAliveTimeout", "500")]);
    wait_until(Duration::from_secs(20), || status_json(&h).map(|s| s.idle("tc-ping") >= 4).unwrap_or(false));
    let before = status_json(&h).unwrap();
    let retired = |s: &Status| s.nodes("tc-ping").map(|(_, n)| n.retired).sum::<u64>();
    std::thread::sleep(Duration::from_millis(3000));
    let after = status_json(&h).unwrap();
    // ~12 PING rounds on 4 links: every PONG in time (else httpd retires the
    // link and Tomcat dials a new one), nothing closed by connectionTimeout.
    assert_eq!(after.idle("tc-ping"), 4, "{after:?}");
    assert_eq!(after.accepted("tc-ping"), before.accepted("tc-ping"), "links were replaced: {before:?} -> {after:?}");
    assert_eq!(retired(&after), retired(&before), "httpd retired idle links: {after:?}");
    let r = get(&node.url_on(&h, "hello.txt")).unwrap();
    assert_eq!((r.status, r.text()), (200, TOMCAT_HELLO_TXT.to_string()));
    let log = tc.log();
    assert!(!log.contains("no PING from httpd"), "the connector saw a dead link:\n{log}");
    figure(
        "tomcat-connector-pings",
        &format!(
            "4 idle links, ping=250ms pingtimeout=200ms, Tomcat connectionTimeout=500: after 3 s still 4 idle, {} accepted before and after, {} retired; then served",
            after.accepted("tc-ping"),
            retired(&after)
        ),
    );
}

// ---------------------------------------------------------------------------
// httpd restarts and child deaths under load, Tomcat dialling itself
// ---------------------------------------------------------------------------

fn graceful_restarts_under_load(mpm: Mpm, rounds: usize) {
    let _s = serial();
    let node = RNode::new("tc-graceful", "ajp", "127.0.0.2:1", 16);
    let b = Httpd::builder(mpm);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={} wait=2s", secret.display()))).conf(STATUS_LOCATION).start();
    let idle = 2 * mpm.max_children() as u32;
    let _tc = ReversedTomcat::start(&[Conn::for_node(&node, &secret).attr("idleConnections", &idle.to_string())]);
    wait_all_idle(&h, &["tc-graceful"], Duration::from_secs(20));
    let sleep_url = node.url_on(&h, "sleep.jsp?ms=20");
    assert_eq!(get_with(&client(Duration::from_secs(60)), &sleep_url).unwrap().status, 200, "sleep.jsp compiles");
    let (rep, took, _) = graceful_rounds_under_load(
        &h,
        "tc-graceful",
        rounds,
        vec![node.url_on(&h, "hello.txt"), sleep_url],
        LoadOpts {
            threads: if mpm == Mpm::Prefork { 4 } else { 6 },
            duration: Duration::from_secs(300),
            ..Default::default()
        },
        Duration::from_millis(500),
    );
    let fails: Vec<_> = rep.failures().into_iter().take(10).cloned().collect();
    figure(
        &format!("tomcat-connector-graceful-{}", mpm.name()),
        &format!(
            "{rounds} graceful restarts under load, Tomcat dialling itself: {} failed of {} ({:.0} req/s, max latency {} ms); new generation idle after {:?}",
            rep.failed(),
            rep.total(),
            rep.rate(),
            ms(rep.max_latency()),
            took.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>()
        ),
    );
    assert!(rep.total() > 100, "too little load: {}", rep.summary());
    assert_eq!(rep.failed(), 0, "{}: failures {:?}", rep.summary(), fails);
    assert!(!h.error_log().contains("AH00957"), "mod_proxy dialled the sentinel");
}

#[test]
fn graceful_restarts_under_load_event() {
    if tomcat_available() {
        graceful_restarts_under_load(Mpm::Event, scale(3, 20));
    }
}

#[test]
fn graceful_restarts_under_load_prefork() {
    if tomcat_available() {
        graceful_restarts_under_load(Mpm::Prefork, scale(3, 20));
    }
}

#[test]
fn kill9_child_under_load() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let node = RNode::new("tc-kill9", "ajp", "127.0.0.2:1", 8);
    let b = Httpd::builder(Mpm::Event).mpm_settings(
        "StartServers 2\nServerLimit 4\nThreadLimit 16\nThreadsPerChild 16\n\
         MaxRequestWorkers 64\nMinSpareThreads 32\nMaxSpareThreads 64\nMaxConnectionsPerChild 0\n",
    );
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={} wait=2s", secret.display()))).conf(STATUS_LOCATION).start();
    let _tc = ReversedTomcat::start(&[Conn::for_node(&node, &secret).attr("idleConnections", "16")]);
    let st = wait_all_idle(&h, &["tc-kill9"], Duration::from_secs(20));
    assert!(st.children.len() >= 2, "{st:?}");
    let sleep_url = node.url_on(&h, "sleep.jsp?ms=50");
    assert_eq!(get_with(&client(Duration::from_secs(60)), &sleep_url).unwrap().status, 200, "sleep.jsp compiles");
    let k = kill9_children_under_load(&h, "tc-kill9", vec![sleep_url, node.url_on(&h, "hello.txt")], scale(1, 5));
    figure("tomcat-connector-kill9-child", &k.describe(", Tomcat dialling itself"));
    let rep = &k.report;
    assert!(rep.failed() <= k.in_flight, "more failures than requests in flight: {}", rep.summary());
    assert!(k.late.is_empty(), "requests not in flight at a kill failed: {:?}", k.late);
}

// ---------------------------------------------------------------------------
// Thousands of idle links on a handful of threads
// ---------------------------------------------------------------------------

/// Starts two httpds (one child each) and a Tomcat whose one connector keeps
/// `links` idle links per front end; returns (Tomcat threads, RSS KiB, time to fill).
fn idle_links_footprint(links: u32) -> (u64, u64, Duration) {
    let n1 = RNode::new("tc-idle", "ajp", "127.0.0.2:1", 1);
    let n2 = RNode::new("tc-idle", "ajp", "127.0.0.2:1", 1);
    let opts = |s: &std::path::Path| format!("secret={} wait=2s maxidle={}", s.display(), links + 50);
    let b1 = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let s1 = b1.secret("secret", SECRET);
    let h1 = b1.conf(&n1.conf(&opts(&s1))).conf(STATUS_LOCATION).start();
    let b2 = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let s2 = b2.secret("secret", SECRET);
    let h2 = b2.conf(&n2.conf(&opts(&s2))).conf(STATUS_LOCATION).start();
    let tc = ReversedTomcat::start(&[Conn::for_node(&n1, &s1)
        .attr("frontends", &format!("127.0.0.1:{}", n2.first))
        .attr("idleConnections", &links.to_string())]);
    let t = Instant::now();
    for h in [&h1, &h2] {
        let ok = wait_until(Duration::from_secs(60), || {
            status_json(h).map(|s| s.idle("tc-idle") >= links as u64).unwrap_or(false)
        });
        assert!(ok, "{links} idle links not reached: {:?}", status_json(h));
    }
    let fill = t.elapsed();
    // Settle, then measure.
    std::thread::sleep(Duration::from_millis(1500));
    let threads = proc_threads(tc.pid()).unwrap();
    let rss = proc_rss_kb(tc.pid()).unwrap();
    for (h, n) in [(&h1, &n1), (&h2, &n2)] {
        let r = get(&n.url_on(h, "hello.txt")).unwrap();
        assert_eq!(r.status, 200);
    }
    (threads, rss, fill)
}

#[test]
fn thousands_of_idle_links_on_a_handful_of_threads() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let few = 10;
    let many = scale(1000, 1000);
    let (t_few, rss_few, _) = idle_links_footprint(few);
    let (t_many, rss_many, fill) = idle_links_footprint(many);
    let per_link = (rss_many as f64 - rss_few as f64) * 1024.0 / (2.0 * (many - few) as f64);
    figure(
        "tomcat-connector-idle-links",
        &format!(
            "2 front ends x {few} idle links: {t_few} JVM threads, RSS {} MiB; 2 x {many}: {t_many} threads, RSS {} MiB (filled in {} ms); ~{:.0} bytes RSS per idle link",
            rss_few / 1024,
            rss_many / 1024,
            ms(fill),
            per_link
        ),
    );
    // Threads do not depend on the number of links (the JVM may start a
    // compiler or GC thread more or less).
    assert!(t_many <= t_few + 4, "threads grew with links: {t_few} -> {t_many}");
}

#[test]
fn pool_full_is_respected_without_hammering() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let node = RNode::new("tc-full", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(
        "StartServers 2\nServerLimit 2\nThreadLimit 16\nThreadsPerChild 16\nMaxRequestWorkers 32\n\
         MinSpareThreads 1\nMaxSpareThreads 32\nMaxConnectionsPerChild 0\n",
    );
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={} wait=2s maxidle=2", secret.display()))).conf(STATUS_LOCATION).start();
    // Tomcat wants 16 idle links; httpd's children keep 2 each.
    let tc = ReversedTomcat::start(&[Conn::for_node(&node, &secret).attr("idleConnections", "16")]);
    wait_all_idle(&h, &["tc-full"], Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1000));
    let before = status_json(&h).unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    let after = status_json(&h).unwrap();
    let full = after.rejected("tc-full") - before.rejected("tc-full");
    for (_, n) in after.nodes("tc-full") {
        assert_eq!(n.idle, 2, "each child holds its maxidle: {after:?}");
    }
    // Each full port is retried every 0.5-1 s: about 2 per port per second, not a loop.
    assert!(full <= 2 * 3 * 2 + 4, "{full} 'pool full' answers in 3 s");
    assert!(tc.log().contains("pool full"), "the connector did not report the full pool:\n{}", tc.log());
    let r = get(&node.url_on(&h, "hello.txt")).unwrap();
    assert_eq!(r.status, 200);
    figure(
        "tomcat-connector-pool-full",
        &format!("maxidle=2 per child, idleConnections=16: every child holds 2 idle, {full} 'pool full' refusals in 3 s (2 ports), served"),
    );
}

#[test]
fn httpd_full_restart_is_found_again() {
    if !tomcat_available() {
        return;
    }
    let _s = serial();
    let node = RNode::new("tc-again", "ajp", "127.0.0.2:1", 4);
    let start_httpd = || {
        let b = Httpd::builder(Mpm::Event);
        let secret = b.secret("secret", SECRET);
        let h = b.conf(&node.conf(&format!("secret={} wait=1s", secret.display()))).conf(STATUS_LOCATION).start();
        (h, secret)
    };
    let (h1, secret) = start_httpd();
    // The connector keeps its own copy of the secret file.
    let tc_secret = std::env::temp_dir().join(format!("tc-again-{}.secret", std::process::id()));
    write_secret(&tc_secret, SECRET);
    let tc = ReversedTomcat::start(&[Conn::for_node(&node, &tc_secret).attr("maxBackoff", "2000")]);
    drop(secret);
    wait_all_idle(&h1, &["tc-again"], Duration::from_secs(20));
    assert_eq!(get(&node.url_on(&h1, "hello.txt")).unwrap().status, 200);
    drop(h1); // httpd stops: every link closes, every port refuses
    std::thread::sleep(Duration::from_secs(3)); // the connector backs off to its 2 s cap meanwhile
    let t = Instant::now();
    let (h2, _s2) = start_httpd();
    let up = t.elapsed();
    let served = first_200(&node.url_on(&h2, "hello.txt"), Duration::from_secs(15));
    let _ = std::fs::remove_file(&tc_secret);
    let served = served.expect("not served within 15 s of httpd's new start");
    figure(
        "tomcat-connector-httpd-restart",
        &format!(
            "httpd stopped 3 s, started again (up after {} ms): first 200 {} ms after the start (maxBackoff=2000)",
            ms(up),
            ms(served)
        ),
    );
    assert!(served <= Duration::from_millis(2000 + 2000), "served {served:?} after httpd's start");
    // Tomcat's juli writes its log asynchronously: the line may land a moment after the first 200.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tc.log().contains("OK again after") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(tc.log().contains("OK again after"), "the connector did not report the recovery:\n{}", tc.log());
}
