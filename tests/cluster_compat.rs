//! What running beside mod_cluster asks of the module and the agent (issue
//! 15), checked against the standalone MCMP receiver where the behaviour is
//! the same (mod_cluster's own modules are not packaged for Debian; the parts
//! that depend on mod_proxy_cluster were checked by hand, see the README's
//! "Beside mod_cluster"):
//! - CONFIG + ENABLE-APP + STATUS back to back before any link (as mod_cluster's
//!   Java side sends them): the node serves as soon as its first link is idle;
//! - a health check's AJP CPING or HTTP OPTIONS to the node's Host:Port (httpd's
//!   own listener) is answered only while the node has live links, and never
//!   gets a link or a request;
//! - the agent's dials to ports no child binds back off;
//! - an idle node's Load is 100 although mod_proxy keeps links between requests;
//! - mod_proxy_hcheck on a reversed worker is refused at configtest.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECRET: &str = "cluster compat secret 0123456789abcdef";

/// Sends one MCMP request (Connection: close) and returns the whole reply.
fn mcmp(h: &Httpd, method: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", h.port())).expect("connect to httpd");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "{method} /mcmp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nUser-Agent: ClusterListener/1.0\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// httpd with the standalone receiver at /mcmp, registered nodes on 4 ports
/// each, balancer://mycluster at /app/.
fn front(mpm: Option<&str>) -> (Httpd, u16) {
    let first = free_ports(8);
    let mut b = Httpd::builder(Mpm::Event);
    if let Some(m) = mpm {
        b = b.mpm_settings(m);
    }
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&format!(
            "ProxyReversedMCMP 127.0.0.1:{first}-{} ports=4 wait=1s secret={}\n\
             <Proxy \"balancer://mycluster\">\n    ProxySet growth=4\n</Proxy>\n\
             ProxyPass \"/app/\" \"balancer://mycluster/\"\n\
             <Location \"/mcmp\">\n    SetHandler proxy-reversed-mcmp\n</Location>\n{STATUS_LOCATION}",
            first + 7,
            secret.display()
        ))
        .start();
    (h, first)
}

/// The Load the status page shows for a registered node.
fn registered_load(h: &Httpd, node: &str) -> Option<i64> {
    let doc: Json = serde_json::from_str(&get(&h.url("/reversed-status?json")).ok()?.text()).ok()?;
    doc.get("registered")?
        .as_array()?
        .iter()
        .find(|n| n.get("node").and_then(Json::as_str) == Some(node))?
        .get("load")?
        .as_i64()
}

/// Reads what httpd writes into an idle link (PINGs are answered) up to a
/// request, for at most `t`.
fn request_on(link: &mut TcpStream, t: Duration) -> Result<Vec<u8>, String> {
    read_request_start(link, t)
}

#[test]
fn back_to_back_registration_serves_once_the_first_link_is_idle() {
    let (h, first) = front(Some(ONE_EVENT_CHILD));
    // As mod_cluster's Java side: CONFIG, ENABLE-APP, STATUS, before any link.
    let c = mcmp(
        &h,
        "CONFIG",
        &format!("JVMRoute=java1&Host=127.0.0.1&Port={first}&Type=http&Reversed=true&Context=%2Fapp&Alias=localhost"),
    );
    assert!(c.starts_with("HTTP/1.1 200"), "{c}");
    let e = mcmp(&h, "ENABLE-APP", "JVMRoute=java1&Context=%2Fapp&Alias=localhost");
    assert!(e.starts_with("HTTP/1.1 200"), "{e}");
    let s = mcmp(&h, "STATUS", "JVMRoute=java1&Load=50");
    assert!(s.contains("State=NOTOK"), "a node without links must not be OK: {s}");
    assert_eq!(registered_load(&h, "java1"), Some(50), "the STATUS Load is shown");
    // A request before any link: a prompt 503 (and the member is put in error).
    assert!(wait_until(Duration::from_secs(3), || port_accepts("127.0.0.1", first)), "no listener");
    assert_eq!(get(&h.url("/app/early")).unwrap().status, 503);

    let mut link = raw_dial(first, "java1", SECRET.as_bytes(), Duration::from_secs(3)).expect("first link");
    let idle_at = Instant::now();
    // Requests from now on, until one is served through the link.
    let url = h.url("/app/first");
    let client = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            match get(&url) {
                Ok(r) if r.status == 200 => return Ok((Instant::now(), r.text())),
                Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => return Err(format!("{other:?}")),
            }
        }
    });
    let req = request_on(&mut link, Duration::from_secs(8)).expect("a request on the first link");
    assert!(req.starts_with(b"GET /first"), "{:?}", String::from_utf8_lossy(&req));
    link.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfirst").unwrap();
    let (served_at, body) = client.join().unwrap().expect("served");
    let took = served_at.duration_since(idle_at);
    figure("back_to_back_registration", &format!("first 200 {} ms after the first link was idle", took.as_millis()));
    assert_eq!(body, "first");
    // The goal is 0.5 s; the bound leaves room for a loaded 2-core machine
    // and still fails the old behaviour (served only at the next STATUS, 5-10 s).
    assert!(took < Duration::from_millis(1500), "served {took:?} after the first link was idle");
    drop(link);
}

/// A health-check probe on the node's first port (its Host:Port).
fn probe(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

const CPING: [u8; 5] = [0x12, 0x34, 0x00, 0x01, 0x0a];
const CPONG: [u8; 5] = [0x41, 0x42, 0x00, 0x01, 0x09];
const OPTIONS: &[u8] = b"OPTIONS * HTTP/1.0\r\nUser-Agent: Apache (internal mod_cluster connection)\r\n\r\n";

#[test]
fn health_check_probes_are_answered_truthfully_and_get_nothing_else() {
    // Two children: the node's first port (its Host:Port) and the next.
    let (h, first) = front(None);
    let c = mcmp(&h, "CONFIG", &format!("JVMRoute=node1&Host=127.0.0.1&Port={first}&Type=ajp&Reversed=yes"));
    assert!(c.starts_with("HTTP/1.1 200"), "{c}");
    assert!(
        wait_until(Duration::from_secs(3), || port_accepts("127.0.0.1", first) && port_accepts("127.0.0.1", first + 1)),
        "no listeners"
    );

    let rejected = |h: &Httpd| h.error_log().matches("rejected dialer").count();
    std::thread::sleep(Duration::from_millis(300));
    let rejected_before = rejected(&h); // port_accepts' own connections, logged by now
                                        // No link: the probe is closed without a byte, so the check fails.
    assert_eq!(probe(first, &CPING), b"", "CPING answered for a node without links");
    assert_eq!(probe(first, OPTIONS), b"", "OPTIONS answered for a node without links");

    let mut link = raw_dial(first, "node1", SECRET.as_bytes(), Duration::from_secs(3)).expect("link");
    assert!(wait_until(Duration::from_secs(3), || mcmp(&h, "STATUS", "JVMRoute=node1&Load=1").contains("State=OK")));
    // Live: a CPONG, nothing more, then the close.
    assert_eq!(probe(first, &CPING), CPONG, "CPING of a live node");
    let o = String::from_utf8_lossy(&probe(first, OPTIONS)).into_owned();
    assert!(o.starts_with("HTTP/1.1 200 OK\r\n") && o.ends_with("\r\n\r\n") && o.contains("Connection: close"), "{o}");
    assert_eq!(rejected(&h), rejected_before, "a probe was taken for a bad handshake:\n{}", h.error_log());
    // Not exactly a probe (bytes after the CPING, a request with a body): no answer.
    // Only the Host:Port is a worker's address: on the other port a CPING is
    // a malformed handshake.
    let other = probe(first + 1, &CPING);
    assert_only_handshake_refusal("a CPING on the node's second port", &other);
    assert!(!other.is_empty(), "a CPING on the second port was not refused as a handshake");
    let mut more = CPING.to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert!(!probe(first, &more).starts_with(&CPONG[..2]), "a CPING with bytes after it was answered");
    let post = probe(first, b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    assert!(!post.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&post));

    // The probes took no link and sent none a byte: the link is idle.
    let st = status_json(&h).unwrap();
    assert_eq!(st.idle("node1"), 1, "{st:?}");
    link.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut b = [0u8; 64];
    match link.read(&mut b) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!("the idle link got bytes from a probe: {other:?} {:02x?}", &b[..8]),
    }

    // The link goes away: the probes fail again.
    drop(link);
    assert!(wait_until(Duration::from_secs(5), || probe(first, &CPING).is_empty()), "CPONG after the last link left");
}

/// A counter of the agent's Prometheus text, summed over the lines that match.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn agent_backs_off_ports_no_child_binds_and_logs_readiness_once() {
    // Two children, four ports: two ports stay refused.
    let node = RNode::new("storm", "ajp", "127.0.0.41:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={}", secret.display()))).conf(STATUS_LOCATION).start();
    let mport = free_port();
    let mut args = AgentArgs::respond("storm", Some(&secret), &node.range()).idle(4);
    args.extra = vec!["--metrics-listen".into(), format!("127.0.0.1:{mport}")];
    let mut agent = args.spawn(Some(h.dir()));
    let st = wait_all_idle(&h, &["storm"], Duration::from_secs(10));
    let bound = st.ports("storm").len();
    assert_eq!(bound, 2, "two children bind two of the four ports: {st:?}");
    let scrape = || get(&format!("http://127.0.0.1:{mport}/metrics")).map(|r| r.text()).unwrap_or_default();
    let failed = |t: &str| metric_sum(t, "reversed_agent_dials_total", &["result=\"failed\""]);
    // After the first few seconds (the backoff grows from 50 ms), 10 s.
    std::thread::sleep(Duration::from_secs(3));
    let window = Duration::from_secs(10);
    let (t0, f0) = (Instant::now(), failed(&scrape()));
    std::thread::sleep(window);
    let text = scrape();
    let f1 = failed(&text);
    let secs = t0.elapsed().as_secs_f64();
    let rate = (f1 - f0) / secs;
    figure(
        "agent_probe_backoff",
        &format!(
            "{} failed dials to {} unbound ports in {secs:.1} s ({rate:.2}/s); {f1} since start",
            f1 - f0,
            4 - bound
        ),
    );
    // Before: a probe of each unbound port about every 250 ms (8/s here).
    // Now the lowest refused port (where a new child would bind) is probed
    // every 0.75-1 s and the other backs off to --max-backoff-ms (5 s): ~1.4/s.
    assert!(rate <= 2.5, "{rate:.2} failed dials per second to ports no child binds");
    assert!(st.idle("storm") >= 4, "the pool is full: {st:?}");
    agent.stop();
    let log = agent.log();
    let ready = log.matches("ready: 4/4 idle connections").count();
    assert!(ready <= 2, "readiness logged {ready} times:\n{log}");
    let refused = log.matches("backing off (up to").count();
    assert!(refused <= 2 * (4 - bound), "each refused port is reported once, not on every probe ({refused}):\n{log}");
}

#[test]
fn an_idle_node_reports_full_load_although_mod_proxy_keeps_its_links() {
    let (h, first) = front(Some(ONE_EVENT_CHILD));
    let frontend = format!("127.0.0.1:{first}-{}", first + 3);
    let secret = h.dir().join("secret");
    // The backend: a responder on a port; the registered agent splices to it.
    let bport = free_port();
    let mut backend =
        Agent::spawn(Some(h.dir()), &["--listen".into(), format!("127.0.0.1:{bport}"), "--respond".into()]);
    assert!(wait_until(Duration::from_secs(5), || port_accepts("127.0.0.1", bport)), "backend not listening");
    let mut args = AgentArgs::backend("idle1", Some(&secret), &frontend, &format!("127.0.0.1:{bport}")).idle(4);
    args.extra = vec![
        "--mcmp".into(),
        h.url("/mcmp"),
        "--type".into(),
        "http".into(),
        "--context".into(),
        "/app".into(),
        "--alias".into(),
        "localhost".into(),
        "--status-interval".into(),
        "1".into(),
    ];
    let mut agent = args.spawn(Some(h.dir()));
    assert!(
        wait_until(Duration::from_secs(10), || get(&h.url("/app/warm")).is_ok_and(|r| r.status == 200)),
        "the registered node never served"
    );
    // Requests from 4 clients at once: mod_proxy_http keeps those links.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let url = h.url(&format!("/app/k{i}"));
            std::thread::spawn(move || (0..10).filter(|_| get(&url).is_ok_and(|r| r.status == 200)).count())
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(ok, 40);
    let busy: u64 = status_json(&h).unwrap().nodes("idle1").map(|(_, n)| n.busy).sum();
    assert!(busy >= 1, "mod_proxy kept no link between requests: nothing to check");
    // Two STATUS periods of idleness.
    std::thread::sleep(Duration::from_millis(2500));
    let load = registered_load(&h, "idle1");
    figure("idle_load", &format!("Load {load:?} with {busy} link(s) kept by mod_proxy, no request in flight"));
    assert_eq!(load, Some(100), "an idle node reports Load 100 (links kept by mod_proxy are not requests)");
    agent.stop();
    backend.stop();
}

#[test]
fn mod_proxy_hcheck_on_a_reversed_worker_is_refused_at_configtest() {
    let node = RNode::new("hc", "ajp", "127.0.0.42:1", 2);
    let mut b = Httpd::builder(Mpm::Event);
    if !builtin_modules().iter().any(|m| m == "mod_watchdog.c") {
        b = b.module("watchdog_module", "mod_watchdog.so");
    }
    b = b.module("proxy_hcheck_module", "mod_proxy_hcheck.so");
    let secret = b.secret("secret", SECRET);
    let b = b
        .conf(&format!(
            "<Proxy \"balancer://hcb\">\n    BalancerMember \"ajp://127.0.0.42:1\" route=hc hcmethod=CPING hcinterval=5\n</Proxy>\n\
             ProxyPass \"/hc/\" \"balancer://hcb/\"\n\
             ProxyReversed hc \"ajp://127.0.0.42:1\" {} secret={}\n",
            node.range(),
            secret.display()
        ));
    let (ok, out) = b.configtest();
    assert!(!ok, "configtest passed with hcmethod on a reversed worker:\n{out}");
    assert!(
        out.contains("PRX1015") && out.contains("hcmethod=CPING") && out.contains("ProxyReversedLiveness"),
        "{out}"
    );
}
