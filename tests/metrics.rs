//! Prometheus metrics (issue 13), with the real httpd and the real agent:
//! traffic that succeeds, requests that get 503 for want of a link, a rogue
//! dialer, links closed after use and by the dialer; then `?metrics` is read
//! with a real parser (the Python `prometheus_client` package's) and the
//! values it finds are checked against what the test did.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const SECRET: &str = "metrics test secret, 32 bytes ok";

/// Parses `text` with prometheus_client's text parser (Python): every sample
/// as (name, sorted labels, value), with the family's type.
const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("%s\t%s\t%s\t%r" % (fam.type, s.name, labels, s.value))
"#;

#[derive(Debug, Default)]
struct Samples {
    /// (name, "k=v,k=v") -> value
    values: BTreeMap<(String, String), f64>,
    /// sample name -> family type
    types: BTreeMap<String, String>,
}

impl Samples {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        l.sort();
        self.values.get(&(name.to_string(), l.join(","))).copied()
    }
    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:#?}", self.values))
    }
}

/// The first Python that has prometheus_client: Debian's (python3-prometheus-client), or any on PATH.
fn python() -> &'static str {
    let ok = |py: &str| {
        Command::new(py).args(["-c", "import prometheus_client.parser"]).output().is_ok_and(|o| o.status.success())
    };
    ["/usr/bin/python3", "python3"].into_iter().find(|py| ok(py)).unwrap_or_else(|| {
        panic!("no python3 with prometheus_client (apt-get install python3-prometheus-client, or pip install prometheus_client)")
    })
}

fn parse_with_python(text: &str) -> Samples {
    let mut child = Command::new(python())
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (the metrics parser) does not run");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client's parser refused the exposition (is python3-prometheus-client installed?): {}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = Samples::default();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "parser output line {line:?}");
        s.types.insert(f[1].to_string(), f[0].to_string());
        s.values.insert((f[1].to_string(), f[2].to_string()), f[3].parse().unwrap());
    }
    assert!(!s.values.is_empty(), "the parser found no sample in:\n{text}");
    s
}

fn scrape(h: &Httpd) -> Samples {
    let r = get(&h.url("/reversed-status?metrics")).expect("GET ?metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    parse_with_python(&r.text())
}

#[test]
fn module_metrics_count_what_happened() {
    let web = RNode::new("web1", "http", "127.0.0.3:1", 4);
    let dead = RNode::new("dead1", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD).module("env_module", "mod_env.so");
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&web.conf(&format!("secret={} wait=5s", secret.display())))
        .conf(&dead.conf(&format!("secret={} wait=300ms", secret.display())))
        // mod_proxy_http closes the link after each response: "after use".
        .conf("<Location \"/web1/\">\n    SetEnv proxy-nokeepalive 1\n</Location>\n")
        .conf(STATUS_LOCATION)
        .start();
    let mut agent = AgentArgs::respond(&web.name, Some(&secret), &web.range()).idle(4).spawn(Some(h.dir()));
    let st = wait_all_idle(&h, &["web1"], Duration::from_secs(15));
    let port = st.ports("web1")[0];

    for i in 0..5 {
        let r = get(&web.url_on(&h, &format!("hello/{i}")));
        assert_served(&web, &r, "GET via web1");
    }
    for _ in 0..3 {
        let r = get(&dead.url_on(&h, "x")).expect("GET via dead1");
        assert_eq!(r.status, 503, "a node without dialers answers 503");
    }
    // A rogue dialer that speaks HTTP instead of the handshake.
    {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        // Until httpd has answered and closed (so it read the bytes first).
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    }

    // Links retire and refill asynchronously: wait (bounded) for the end state.
    let mut m = Samples::default();
    let settled = wait_until(Duration::from_secs(10), || {
        m = scrape(&h);
        let web1 = [("node", "web1")];
        m.get("proxy_reversed_connections_retired_total", &[("node", "web1"), ("reason", "after_use")]) == Some(5.0)
            && m.get("proxy_reversed_idle_connections_current", &web1) == Some(4.0)
            && m.get(
                "proxy_reversed_handshakes_total",
                &[("node", "web1"), ("result", "rejected"), ("reason", "malformed")],
            ) == Some(1.0)
    });
    assert!(settled, "metrics did not settle: {m:#?}");

    let web1 = [("node", "web1")];
    let dead1 = [("node", "dead1")];
    assert_eq!(m.must("proxy_reversed_children", &[]), 1.0);
    assert_eq!(m.must("proxy_reversed_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(m.must("proxy_reversed_bound_children", &web1), 1.0);
    assert_eq!(m.must("proxy_reversed_used_connections_current", &web1), 0.0);
    assert_eq!(m.must("proxy_reversed_idle_connections_current", &dead1), 0.0);
    // 4 at start and one replacement per used link.
    let accepted =
        m.must("proxy_reversed_handshakes_total", &[("node", "web1"), ("result", "accepted"), ("reason", "ok")]);
    assert!((9.0..=10.0).contains(&accepted), "accepted handshakes: {accepted}");
    assert_eq!(
        m.must("proxy_reversed_handshakes_total", &[("node", "web1"), ("result", "rejected"), ("reason", "bad_proof")]),
        0.0
    );
    assert_eq!(
        m.must("proxy_reversed_connections_retired_total", &[("node", "web1"), ("reason", "dialer_closed")]),
        0.0
    );
    assert_eq!(m.must("proxy_reversed_ping_failures_total", &web1), 0.0);
    assert_eq!(m.must("proxy_reversed_requests_unavailable_total", &web1), 0.0);
    assert_eq!(m.must("proxy_reversed_requests_unavailable_total", &dead1), 3.0);
    assert_eq!(m.must("proxy_reversed_requests_waited_total", &dead1), 3.0);

    // The wait histogram: three waits of 300 ms for dead1, five short ones for web1.
    assert_eq!(m.types.get("proxy_reversed_connection_wait_seconds_bucket").map(String::as_str), Some("histogram"));
    assert_eq!(m.must("proxy_reversed_connection_wait_seconds_count", &dead1), 3.0);
    let sum = m.must("proxy_reversed_connection_wait_seconds_sum", &dead1);
    assert!((0.9..3.0).contains(&sum), "dead1 waited {sum} s in all");
    assert_eq!(m.must("proxy_reversed_connection_wait_seconds_bucket", &[("node", "dead1"), ("le", "0.25")]), 0.0);
    assert_eq!(m.must("proxy_reversed_connection_wait_seconds_bucket", &[("node", "dead1"), ("le", "0.5")]), 3.0);
    assert_eq!(m.must("proxy_reversed_connection_wait_seconds_bucket", &[("node", "dead1"), ("le", "+Inf")]), 3.0);
    assert_eq!(m.must("proxy_reversed_connection_wait_seconds_count", &web1), 5.0);
    assert_eq!(m.must("proxy_reversed_connection_wait_seconds_bucket", &[("node", "web1"), ("le", "0.25")]), 5.0);

    // The agent goes away: its idle links are closed by the dialer.
    agent.stop();
    let ok = wait_until(Duration::from_secs(10), || {
        m = scrape(&h);
        m.get("proxy_reversed_idle_connections_current", &web1) == Some(0.0)
    });
    assert!(ok, "idle links stayed after the agent stopped: {m:#?}");
    assert_eq!(
        m.must("proxy_reversed_connections_retired_total", &[("node", "web1"), ("reason", "dialer_closed")]),
        4.0
    );
    assert_eq!(m.must("proxy_reversed_connections_retired_total", &[("node", "web1"), ("reason", "after_use")]), 5.0);
    eprintln!("FIGURE metrics | module: accepted {accepted}, dead1 wait sum {sum:.3} s over 3 requests");
}

fn scrape_agent(port: u16) -> Samples {
    let r = get(&format!("http://127.0.0.1:{port}/metrics")).expect("GET the agent's /metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    parse_with_python(&r.text())
}

#[test]
fn agent_metrics_follow_dials_splices_and_registration() {
    // A node registered through MCMP: 4 ports, of which the one child binds one.
    let first = free_ports(4);
    let last = first + 3;
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD).module("env_module", "mod_env.so");
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&format!(
            "ProxyReversedMCMP 127.0.0.1:{first}-{last} ports=4 wait=1s\n\
             ProxyReversedNodeSecret node1 {}\n\
             <Proxy \"balancer://mycluster\">\n    ProxySet growth=4\n</Proxy>\n\
             ProxyPass \"/app/\" \"balancer://mycluster/\"\n\
             <Location \"/app/\">\n    SetEnv proxy-nokeepalive 1\n</Location>\n\
             <Location \"/mcmp\">\n    SetHandler proxy-reversed-mcmp\n</Location>\n{STATUS_LOCATION}",
            secret.display()
        ))
        .start();
    // The backend: the agent's responder on a listening socket (an ordinary HTTP server).
    let backend_port = free_port();
    let _backend =
        Agent::spawn(Some(h.dir()), &["--respond".into(), "--listen".into(), format!("127.0.0.1:{backend_port}")]);
    // A second front end where nothing listens: its dials fail and back off.
    let dead_port = free_port();
    let metrics_port = free_port();
    let fe1 = format!("127.0.0.1:{first}-{last}");
    let fe2 = format!("127.0.0.1:{dead_port}");
    let mut args = AgentArgs::backend("node1", Some(&secret), &fe1, &format!("127.0.0.1:{backend_port}")).idle(2);
    args.frontends.push(fe2.clone());
    args.extra = ["--mcmp", &h.url("/mcmp"), "--type", "http", "--status-interval", "1", "--max-backoff-ms", "60000"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--metrics-listen".to_string(), format!("127.0.0.1:{metrics_port}")])
        .collect();
    let _agent = args.spawn(Some(h.dir()));

    assert!(
        wait_until(Duration::from_secs(10), || get(&h.url("/app/hello")).is_ok_and(|r| r.status == 200)),
        "the registered node never served /app/"
    );
    for i in 0..3 {
        let r = get(&h.url(&format!("/app/x/{i}"))).expect("GET /app/");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 1024, "the responder's default body");
    }

    let fe1l = [("frontend", fe1.as_str())];
    let fe2l = [("frontend", fe2.as_str())];
    let dead = dead_port.to_string();
    let dead_l = [("frontend", fe2.as_str()), ("port", dead.as_str())];
    let mut m = Samples::default();
    let settled = wait_until(Duration::from_secs(10), || {
        m = scrape_agent(metrics_port);
        m.get("reversed_agent_idle_connections_current", &fe1l) == Some(2.0)
            && m.get("reversed_agent_used_connections_current", &fe1l) == Some(0.0)
            && m.get("reversed_agent_splices_total", &[("result", "done")]) == Some(4.0)
            && m.get("reversed_agent_port_failures", &dead_l).is_some_and(|v| v >= 2.0)
            && m.get("reversed_agent_port_backoff_seconds", &dead_l).is_some_and(|v| v > 0.0)
            && m.get("reversed_agent_mcmp_state_ok", &[("receiver", &h.url("/mcmp"))]) == Some(1.0)
    });
    assert!(settled, "agent metrics did not settle: {m:#?}");
    assert_eq!(m.must("reversed_agent_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(m.must("reversed_agent_idle_connections_target", &fe1l), 2.0);
    assert_eq!(m.must("reversed_agent_idle_connections_current", &fe2l), 0.0);
    // 2 at start, one replacement for each of the 4 requests (the first one
    // included), maybe one more while httpd's child refused at first.
    let ok = m.must("reversed_agent_dials_total", &[("frontend", &fe1), ("result", "accepted"), ("reason", "ok")]);
    assert!((6.0..=8.0).contains(&ok), "accepted dials of {fe1}: {ok}");
    let failed =
        m.must("reversed_agent_dials_total", &[("frontend", &fe2), ("result", "failed"), ("reason", "network")]);
    assert!(failed >= 2.0, "failed dials of {fe2}: {failed}");
    assert_eq!(
        m.must("reversed_agent_dials_total", &[("frontend", &fe2), ("result", "accepted"), ("reason", "ok")]),
        0.0
    );
    assert_eq!(
        m.must("reversed_agent_dials_total", &[("frontend", &fe1), ("result", "failed"), ("reason", "auth")]),
        0.0
    );
    // Four responses of 1024 bytes each (plus their heads) went to httpd.
    let down = m.must("reversed_agent_spliced_bytes_total", &[("direction", "to_httpd")]);
    let up = m.must("reversed_agent_spliced_bytes_total", &[("direction", "to_backend")]);
    assert!(down > 4.0 * 1024.0 && down < 4.0 * 2048.0, "bytes to httpd: {down}");
    assert!(up > 4.0 * 16.0, "bytes to the backend: {up}");
    assert_eq!(m.must("reversed_agent_splices_total", &[("result", "backend_unreachable")]), 0.0);
    let rcv = [("receiver", h.url("/mcmp"))];
    let rcv: Vec<(&str, &str)> = rcv.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(m.must("reversed_agent_mcmp_registered", &rcv), 1.0);
    let load = m.must("reversed_agent_mcmp_load", &rcv);
    assert!((1.0..=100.0).contains(&load), "load {load}");
    let mut st = rcv.clone();
    st.extend([("message", "status"), ("result", "ok")]);
    assert!(m.must("reversed_agent_mcmp_messages_total", &st) >= 1.0);

    // The module's view of the registered node.
    let mm = scrape(&h);
    let n = [("node", "node1"), ("balancer", "mycluster")];
    // Live: the idle links, plus one for a link authenticated in the last 2 s.
    let live = mm.must("proxy_reversed_mcmp_node_live_connections", &n);
    assert!((2.0..=3.0).contains(&live), "live links of node1: {live}");
    assert_eq!(mm.must("proxy_reversed_idle_connections_current", &[("node", "node1")]), 2.0);
    assert_eq!(mm.must("proxy_reversed_connections_retired_total", &[("node", "node1"), ("reason", "after_use")]), 4.0);
    eprintln!(
        "FIGURE metrics | agent: {ok} accepted dials, {failed} failed, {down} bytes to httpd, {up} to the backend"
    );
}
