//! httpd + reversed-agent (built-in echo responder) for each MPM: a reversed
//! AJP worker and a reversed HTTP worker, GETs, 10 MB POSTs whose echoed body
//! must hash the same, and 64 concurrent clients with zero errors.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "end-to-end secret, 32 bytes long";

fn run(mpm: Mpm) {
    let t0 = Instant::now();
    // prefork: every child may need its own port, so the range must cover
    // MaxRequestWorkers (8); event/worker run at most 4 children.
    let nports = if mpm == Mpm::Prefork { 12 } else { 8 };
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", nports);
    let web = RNode::new("web1", "http", "127.0.0.3:1", nports);
    let b = Httpd::builder(mpm);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=5s", secret.display());
    let h = b.conf(&ajp.conf(&opts)).conf(&web.conf(&opts)).conf(STATUS_LOCATION).start();
    let dir = h.dir().to_path_buf();
    let _a1 = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).echo().idle(16).spawn(Some(&dir));
    let _a2 = AgentArgs::respond(&web.name, Some(&secret), &web.range()).echo().idle(16).spawn(Some(&dir));

    let st = wait_all_idle(&h, &["ajp1", "web1"], Duration::from_secs(15));
    for (pid, n) in st.nodes("ajp1").chain(st.nodes("web1")) {
        let port = n.port.expect("bound node without port");
        let (lo, hi) = if n.node == "ajp1" { (ajp.first, ajp.last) } else { (web.first, web.last) };
        assert!(port >= lo && port <= hi, "child {pid} bound {port} outside {lo}-{hi}");
        assert!(n.accepted >= n.idle, "child {pid}: idle {} > accepted {}", n.idle, n.accepted);
    }
    for node in ["ajp1", "web1"] {
        let ports = st.ports(node);
        let mut dedup = ports.clone();
        dedup.dedup();
        assert_eq!(ports, dedup, "two children bound the same port for {node}: {st:?}");
    }

    // Plain GETs and status codes passed through.
    for n in [&ajp, &web] {
        let r = get(&n.url_on(&h, "hello"));
        assert_served(n, &r, &format!("GET via {}", n.name));
        let r = get(&n.url_on(&h, "status/404")).unwrap();
        assert_eq!(r.status, 404, "status/404 via {}", n.name);
        assert_eq!(r.header("X-Responder"), Some(n.responder()));
    }

    // 10 MB POST, echoed back intact, through both workers.
    let big = pseudo_random_bytes(10 << 20, 0x5eed_0000 + mpm as u64);
    let want = sha256_hex(&big);
    for n in [&ajp, &web] {
        let t = Instant::now();
        let r = post(&n.url_on(&h, "echo"), &big);
        assert_served(n, &r, &format!("10 MB POST via {}", n.name));
        let r = r.unwrap();
        assert_eq!(r.body.len(), big.len(), "echoed length via {}", n.name);
        assert_eq!(sha256_hex(&r.body), want, "echoed body differs via {}", n.name);
        eprintln!("{} 10 MB echo via {} in {:?}", mpm.name(), n.name, t.elapsed());
    }

    // 64 concurrent clients, a few requests each, alternating workers; each
    // body is unique so a response delivered to the wrong client shows.
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let (errors, done) = (errors.clone(), done.clone());
            let urls = [ajp.url_on(&h, "c"), web.url_on(&h, "c")];
            let responders = [ajp.responder(), web.responder()];
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(60));
                for j in 0..4 {
                    let k = (i + j) % 2;
                    let body = format!("client {i} request {j} {}", "x".repeat(i * 37 + j));
                    match post_with(&c, &urls[k], body.as_bytes()) {
                        Ok(r)
                            if r.status == 200
                                && r.body == body.as_bytes()
                                && r.header("X-Responder") == Some(responders[k]) =>
                        {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => errors.lock().unwrap().push(format!(
                            "client {i} req {j} via {}: status {} responder {:?} body {:?}",
                            urls[k],
                            r.status,
                            r.header("X-Responder"),
                            String::from_utf8_lossy(&r.body[..r.body.len().min(80)])
                        )),
                        Err(e) => errors.lock().unwrap().push(format!("client {i} req {j} via {}: {e}", urls[k])),
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} of 256 concurrent requests failed, e.g.:\n{}",
        errors.len(),
        errors.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(done.load(Ordering::SeqCst), 256);
    eprintln!("{} 256 concurrent requests in {:?}", mpm.name(), t.elapsed());

    // The status counters moved: both nodes accepted handshakes, none rejected.
    let st = status_json(&h).unwrap();
    for node in ["ajp1", "web1"] {
        assert!(st.accepted(node) > 0, "{node}: no accepted handshakes in {st:?}");
        assert_eq!(st.rejected(node), 0, "{node}: rejected handshakes with the right secret: {st:?}");
    }
    // The text form has one line per child and node, the same pairs as the
    // JSON (fetched around it; retried if a child came or went meanwhile).
    let pairs = |st: &Status| -> Vec<String> {
        let mut v: Vec<String> = st
            .children
            .iter()
            .flat_map(|c| c.nodes.iter().map(move |n| format!("child={} node={}", c.pid, n.node)))
            .collect();
        v.sort();
        v
    };
    let mut last = String::new();
    let same = wait_until(Duration::from_secs(5), || {
        let j1 = status_json(&h).unwrap();
        let txt = get(&h.url("/reversed-status")).unwrap();
        let j2 = status_json(&h).unwrap();
        assert_eq!(txt.status, 200);
        let body = txt.text();
        // Every per-child line carries all the fields.
        for l in body.lines().filter(|l| l.starts_with("child=")) {
            for k in ["child=", " node=", " port=", " idle=", " busy=", " accepted=", " rejected=", " retired="] {
                assert!(l.contains(k), "text status line lacks {k:?}: {l}");
            }
        }
        let mut tp: Vec<String> = body
            .lines()
            .filter(|l| l.starts_with("child="))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        tp.sort();
        last = format!("{body}\n{j1:?}");
        pairs(&j1) == pairs(&j2) && tp == pairs(&j1)
    });
    assert!(same, "text and JSON status disagree:\n{last}");
    let log = h.error_log();
    assert!(
        !log.contains("AH00957") && !log.contains("AH00959"),
        "mod_proxy tried to connect to the sentinel:\n{}",
        log.lines().filter(|l| l.contains("AH0095")).take(5).collect::<Vec<_>>().join("\n")
    );
    eprintln!("{} end-to-end in {:?}", mpm.name(), t0.elapsed());
}

#[test]
fn end_to_end_event() {
    run(Mpm::Event);
}

#[test]
fn end_to_end_worker() {
    run(Mpm::Worker);
}

#[test]
fn end_to_end_prefork() {
    run(Mpm::Prefork);
}
