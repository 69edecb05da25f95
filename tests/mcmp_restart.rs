//! MCMP registrations survive restarts of the same httpd parent: a node
//! registered through the standalone receiver (`ProxyReversedMCMP` +
//! `proxy-reversed-mcmp`) keeps serving through its balancer member across
//! graceful restarts (event and prefork) and a `restart` (SIGHUP), without a
//! new CONFIG; a node removed before the restart stays removed. The CONFIG
//! is sent by hand once and the agent only dials (no --mcmp), so nothing
//! could register the node again behind the test's back.

mod common;

use common::load::{graceful_rounds_under_load, LoadOpts};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECRET: &str = "mcmp restart secret 0123456789abcdef";

/// One scenario at a time: each runs load on a 2-core machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: std::sync::Mutex<()> = std::sync::Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// One MCMP exchange (Connection: close): (status, Type header, body).
fn mcmp(h: &Httpd, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", h.port())).expect("connect to httpd");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tmp = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let ty = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("type")).map(|(_, v)| v.trim()))
        .unwrap_or("")
        .to_string();
    (status, ty, body.to_string())
}

fn info(h: &Httpd) -> String {
    let (st, _, body) = mcmp(h, "INFO", "/mcmp", "");
    assert_eq!(st, 200, "INFO: {body}");
    body
}

fn restarts_keep_registrations(mpm: Mpm) {
    let _serial = serial();
    // Prefork: every child of both generations binds a port of the node.
    let ports: u16 = if mpm == Mpm::Prefork { 32 } else { 16 };
    let first = free_ports(2 * ports);
    let last = first + 2 * ports - 1;
    let b = Httpd::builder(mpm);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&format!(
            "ProxyReversedMCMP 127.0.0.1:{first}-{last} ports={ports} wait=2s\n\
             ProxyReversedNodeSecret node1 {s}\nProxyReversedNodeSecret node2 {s}\n\
             <Proxy \"balancer://mycluster\">\n    ProxySet growth=4\n</Proxy>\n\
             ProxyPass \"/app/\" \"balancer://mycluster/\"\n\
             <Location \"/mcmp\">\n    SetHandler proxy-reversed-mcmp\n</Location>\n{STATUS_LOCATION}",
            s = secret.display()
        ))
        .start();
    let second = first + ports;
    // node1 registered by hand, once; node2 registered and removed again.
    for (route, port) in [("node1", first), ("node2", second)] {
        let (st, _, body) =
            mcmp(&h, "CONFIG", "/mcmp", &format!("JVMRoute={route}&Host=127.0.0.1&Port={port}&Reversed=yes"));
        assert_eq!(st, 200, "CONFIG {route}: {body}");
        let (st, _, body) = mcmp(&h, "ENABLE-APP", "/mcmp", &format!("JVMRoute={route}&Context=/app&Alias=localhost"));
        assert_eq!(st, 200, "ENABLE-APP {route}: {body}");
    }
    let (st, _, body) = mcmp(&h, "REMOVE-APP", "/mcmp/*", "JVMRoute=node2");
    assert_eq!(st, 200, "REMOVE-APP node2: {body}");
    assert!(!info(&h).contains("node2"), "node2 not removed");

    let range = format!("127.0.0.1:{first}-{}", first + ports - 1);
    let idle = 2 * mpm.max_children() as u32;
    let _agent = AgentArgs::respond("node1", Some(&secret), &range).idle(idle).spawn(Some(h.dir()));
    wait_all_idle(&h, &["node1"], Duration::from_secs(15));
    let r = get(&h.url("/app/hello")).unwrap();
    assert_eq!((r.status, r.header("X-Responder")), (200, Some("ajp")), "before the restart");
    // Both children serve it: the removed node2's member is disabled in each.
    let c = client(Duration::from_secs(5));
    let v: Vec<u16> =
        (0..20).map(|i| get_with(&c, &h.url(&format!("/app/ka{i}"))).map(|r| r.status).unwrap_or(0)).collect();
    assert!(v.iter().all(|&s| s == 200), "before the restart: {v:?}");

    let (rep, took, via_k) = graceful_rounds_under_load(
        &h,
        "node1",
        2,
        vec![h.url("/app/load/a")],
        LoadOpts { threads: 3, duration: Duration::from_secs(120), ..Default::default() },
        Duration::from_millis(300),
    );
    let fails: Vec<_> = rep.failures().into_iter().take(10).cloned().collect();
    eprintln!(
        "{}: 2 graceful restarts ({via_k} by -k graceful): {}; new generation idle after {took:?}",
        mpm.name(),
        rep.summary()
    );
    assert!(rep.total() > 50, "too little load: {}", rep.summary());
    assert_eq!(rep.failed(), 0, "{}: failures {:?}", rep.summary(), fails);

    // Still registered, with its context, in the new generation's table; node2 still removed.
    let i = info(&h);
    assert!(i.contains("JVMRoute: node1") || i.contains("node1"), "node1 forgotten: {i}");
    assert!(!i.contains("node2"), "the removed node2 came back: {i}");
    let doc = get(&h.url("/reversed-status?json")).unwrap().text();
    assert!(doc.contains("\"context\":\"/app\",\"state\":\"ENABLED\""), "{doc}");
    assert!(
        !(second..second + ports).any(|p| port_accepts("127.0.0.1", p)),
        "a listener of the removed node2 accepts after the restart"
    );
    let log = h.error_log();
    assert!(log.contains("PRX0051") && log.contains("\"node1\""), "no 'kept' line in the error log");
    assert_eq!(log.matches("registered reversed node 'node1'").count(), 1, "node1 was registered again");

    if mpm == Mpm::Event {
        // `apache2ctl restart` (SIGHUP): the children are killed, the parent stays.
        let old = status_json(&h).unwrap().pids();
        // SAFETY: a signal to the httpd parent this test started.
        unsafe { libc::kill(h.pid(), libc::SIGHUP) };
        let ok = wait_until(Duration::from_secs(20), || {
            status_json(&h).is_ok_and(|s| {
                !s.children.is_empty() && s.pids().iter().all(|p| !old.contains(p)) && s.all_children_idle(&["node1"])
            })
        });
        assert!(ok, "no new generation with idle node1 links after SIGHUP");
        let r = get(&h.url("/app/after-sighup")).unwrap();
        assert_eq!(r.status, 200, "after SIGHUP");
    }

    // The balancer still has room: node2 can register again (a new member).
    let (st, _, body) =
        mcmp(&h, "CONFIG", "/mcmp", &format!("JVMRoute=node2&Host=127.0.0.1&Port={second}&Reversed=yes"));
    assert_eq!(st, 200, "CONFIG node2 after the restarts: {body}");
    assert!(info(&h).contains("node2"));

    if mpm == Mpm::Event {
        // A configuration that no longer admits node1 (its secret is gone):
        // the restart drops it, logged, and keeps node2.
        let conf = h.dir().join("httpd.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with("ProxyReversedNodeSecret node1 "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(text.len(), without.len(), "no ProxyReversedNodeSecret node1 line in {}", conf.display());
        std::fs::write(&conf, without).unwrap();
        h.graceful();
        assert!(
            wait_until(Duration::from_secs(10), || h
                .error_log()
                .contains("node 'node1' not kept across the restart: no secret")),
            "no PRX0050 line for node1"
        );
        let ok = wait_until(Duration::from_secs(10), || {
            let (st, _, i) = mcmp(&h, "INFO", "/mcmp", "");
            st == 200 && i.contains("node2") && !i.contains("node1")
        });
        assert!(ok, "after the configuration change: {}", info(&h));
    }
    assert!(!h.error_log().contains(SECRET), "the secret reached the error log");
}

#[test]
fn graceful_restarts_keep_mcmp_registrations_event() {
    restarts_keep_registrations(Mpm::Event);
}

#[test]
fn graceful_restarts_keep_mcmp_registrations_prefork() {
    restarts_keep_registrations(Mpm::Prefork);
}
