//! The burst of issue 9: on a fresh start (event MPM growing from 2 to 4
//! children while the load runs, a balancer member as in the demo), 32 then
//! 64 concurrent clients. No request may wait for the node's whole `wait`
//! (that is a child starved of links while another holds idle ones), none
//! may fail. Repeated from a fresh httpd and agent each round.

mod common;

use common::load::{Load, LoadOpts};
use common::*;
use std::time::Duration;

const SECRET: &str = "burst test secret 0123456789abcdef";
/// As the demo: 2 children at start, up to 4 (MinSpareThreads makes the MPM spawn more at once).
const GROWING: &str = "StartServers 2\nServerLimit 4\nThreadLimit 25\nThreadsPerChild 25\nMaxRequestWorkers 100\n";

fn round(n: usize) -> (usize, usize, Duration, String) {
    let node = RNode::new("burst1", "ajp", "127.0.0.2:1", 4);
    let b = Httpd::builder(Mpm::Event).mpm_settings(GROWING);
    let secret = b.secret("secret", SECRET);
    let conf = format!(
        "LogLevel warn proxy_reversed:debug\n<Proxy \"balancer://app\">\n    BalancerMember \"ajp://127.0.0.2:1\" route=burst1\n</Proxy>\n\
         ProxyPass \"/burst1/\" \"balancer://app/\"\n\
         ProxyReversed burst1 \"ajp://127.0.0.2:1\" {} secret={} wait=2s maxidle=16\n",
        node.range(),
        secret.display()
    );
    // The agent starts first, as `make demo` starts it right after httpd's
    // parent: its first dials are refused until the children bind.
    let mut a = AgentArgs::respond(&node.name, Some(&secret), &node.range()).idle(8);
    a.extra = vec!["--log-level".into(), "debug".into()];
    let agent = a.spawn(Some(b.dir()));
    std::thread::sleep(Duration::from_millis(20));
    let h = b.conf(&conf).conf(STATUS_LOCATION).start();
    // The first load right after start, as a new user's first wrk.
    assert!(wait_until(Duration::from_secs(10), || status_json(&h).is_ok_and(|s| s.idle("burst1") >= 1)));
    let url = node.url_on(&h, "hello");
    let mut total = 0;
    let mut bad = Vec::new();
    let mut slowest = Duration::ZERO;
    for clients in [32, 64] {
        let load = Load::start(
            vec![url.clone()],
            LoadOpts {
                threads: clients,
                duration: Duration::from_millis(1500),
                timeout: Duration::from_secs(10),
                pace: Duration::ZERO,
                ..LoadOpts::default()
            },
        );
        std::thread::sleep(Duration::from_millis(1500));
        let r = load.stop();
        total += r.total();
        slowest = slowest.max(r.max_latency());
        for s in r.samples.iter().filter(|s| !s.ok() || s.took() >= Duration::from_millis(1900)) {
            bad.push(format!("{clients} clients: {:?} after {:?}", s.outcome, s.took()));
        }
    }
    let children = status_json(&h).map(|s| s.pids().len()).unwrap_or(0);
    let detail = if bad.is_empty() {
        String::new()
    } else {
        format!(
            "round {n}: {} bad: {:?}\n=== httpd error log ===\n{}\n=== agent log ===\n{}",
            bad.len(),
            &bad[..bad.len().min(10)],
            tail(&h.error_log(), 20000),
            tail(&agent.log(), 20000)
        )
    };
    (total, children, slowest, detail)
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
    &s[start..]
}

#[test]
fn burst_on_a_fresh_start_starves_no_child() {
    let rounds = scale(10, 30);
    let mut figures = Vec::new();
    for n in 0..rounds {
        let (total, children, slowest, detail) = round(n);
        figures.push(format!("{total} req/{children} children/slowest {} ms", slowest.as_millis()));
        assert!(detail.is_empty(), "{detail}");
    }
    figure(
        "burst-fresh-start",
        &format!("{rounds} rounds of 32 then 64 clients, 0 requests waited the full wait: {}", figures.join("; ")),
    );
}
