//! Idle links that a NAT or firewall silently forgets (issue 9), with the
//! real httpd, the real agent, and nftables / a forgetful relay on loopback:
//!
//! - state loss: every packet of every existing link is dropped (no RST),
//!   new links pass; requests must neither fail nor wait, and the pools
//!   must refill within ping interval + timeout + 1 s;
//! - blackhole: everything between agent and httpd is dropped for 10 s;
//!   requests get prompt 503s and service returns within 2 s of the heal;
//! - a relay that forgets flows idle for 2 s never breaks an idle link
//!   while pings run (and does without them: the control case), and both
//!   ends carry TCP keepalive timers as configured;
//! - a version-1 dialer is refused with a clear log line, or served.
//!
//! nftables rules live in a table of their own, removed on drop (also when
//! a test fails). Without `nft` the firewall cases are skipped with a
//! message, except under CI where they fail.

mod common;

use common::*;
use reversed_proto as p;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "liveness test secret 0123456789abcdef";

fn have_nft() -> bool {
    let found = ["/usr/sbin/nft", "/sbin/nft"].iter().any(|p| Path::new(p).exists()) && is_root();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "nft (nftables) is missing or not root, and CI is set");
        eprintln!("SKIPPED: nftables or root privileges are missing");
    }
    found
}

/// An nftables table of this test: a filter chain on input (loopback
/// packets of both directions pass it); deleted on drop.
struct Nft {
    table: String,
}

impl Nft {
    fn new(tag: &str) -> Result<Nft, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let table = format!("mprlive_{tag}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        run(
            &["nft", "-f", "-"],
            Some(&format!(
                "table inet {table} {{\n chain input {{ type filter hook input priority -5; policy accept; }}\n}}\n"
            )),
        )?;
        Ok(Nft { table })
    }
    fn rule(&self, r: &str) -> Result<(), String> {
        run(&["nft", &format!("add rule inet {} input {r}", self.table)], None).map(|_| ())
    }
    fn flush(&self) -> Result<(), String> {
        run(&["nft", &format!("flush chain inet {} input", self.table)], None).map(|_| ())
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        let _ = run(&["nft", &format!("delete table inet {}", self.table)], None);
    }
}

/// The established links whose httpd side is a port of `first..=last`:
/// (httpd port, dialer port).
fn links(first: u16, last: u16) -> Vec<(u16, u16)> {
    let out = run(&["ss", "-Htn", "state", "established"], None).unwrap_or_default();
    let port = |a: &str| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Recv-Q Send-Q Local Peer
            let (lp, pp) = (port(f.get(2)?)?, port(f.get(3)?)?);
            (first..=last).contains(&lp).then_some((lp, pp))
        })
        .collect()
}

fn timed_get(c: &ureq::Agent, url: &str) -> (Result<u16, String>, Duration) {
    let t = Instant::now();
    let r = get_with(c, url).map(|r| r.status);
    (r, t.elapsed())
}

fn ping_failed(h: &Httpd) -> i64 {
    let text = get(&h.url("/reversed-status")).map(|r| r.text()).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            l.split_whitespace().find_map(|w| w.strip_prefix("pingfail=")).and_then(|n| n.parse::<i64>().ok())
        })
        .sum()
}

#[test]
fn state_loss_of_every_link_costs_no_request() {
    if !have_nft() {
        return;
    }
    let node = RNode::new("lost1", "http", "127.0.0.3:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&node.conf(&format!("secret={} wait=2s ping=400ms pingtimeout=150ms reuse=1s", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let _agent = AgentArgs::respond(&node.name, Some(&secret), &node.range()).idle(8).spawn(Some(h.dir()));
    let st = wait_until(Duration::from_secs(10), || status_json(&h).is_ok_and(|s| s.idle("lost1") >= 8));
    assert!(st, "the pool did not fill: {:?}", status_json(&h));
    let c = client(Duration::from_secs(30));
    for i in 0..5 {
        assert_served(&node, &get_with(&c, &node.url_on(&h, &format!("warm{i}"))), "warm-up");
    }
    // Let the pooled (used) links age past reuse= and the pool refill.
    std::thread::sleep(Duration::from_millis(1300));
    assert!(wait_until(Duration::from_secs(5), || status_json(&h).is_ok_and(|s| s.idle("lost1") >= 8)));
    let before = status_json(&h).unwrap().accepted("lost1");

    let fw = Nft::new("loss").expect("nft table");
    let old = links(node.first, node.last);
    assert!(old.len() >= 8, "expected the idle links in ss: {old:?}");
    for (hp, dp) in &old {
        fw.rule(&format!("tcp sport {dp} tcp dport {hp} drop")).unwrap();
        fw.rule(&format!("tcp sport {hp} tcp dport {dp} drop")).unwrap();
    }
    let t0 = Instant::now();

    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    for i in 0..50 {
        let (r, d) = timed_get(&c, &node.url_on(&h, &format!("after{i}")));
        slowest = slowest.max(d);
        match r {
            Ok(200) => {}
            other => failures.push(format!("request {i}: {other:?} after {d:?}")),
        }
    }
    let requests_done = t0.elapsed();
    let full = wait_until(Duration::from_secs(10), || {
        status_json(&h).is_ok_and(|s| s.idle("lost1") >= 8 && s.accepted("lost1") >= before + 8)
    });
    let refill = t0.elapsed();
    let failed_pings = ping_failed(&h);
    figure(
        "liveness-state-loss",
        &format!(
            "{} links dropped; 50 requests: {} failed, slowest {} ms (all done {} ms after the drop); pool full again {} ms after the drop (bound 1550 ms); pings failed {failed_pings}",
            old.len(),
            failures.len(),
            slowest.as_millis(),
            requests_done.as_millis(),
            refill.as_millis()
        ),
    );
    assert!(failures.is_empty(), "requests failed after the state loss: {failures:?}\n{}", h.error_log());
    assert!(slowest < Duration::from_secs(1), "a request took {slowest:?}");
    assert!(full, "the pool did not refill: {:?}", status_json(&h));
    assert!(refill <= Duration::from_millis(400 + 150 + 1000), "pool full again only after {refill:?}");
    assert!(failed_pings >= 1, "no failed ping was counted");
}

#[test]
fn blackhole_gives_prompt_503s_and_heals() {
    if !have_nft() {
        return;
    }
    let node = RNode::new("hole1", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&node.conf(&format!("secret={} wait=1s ping=500ms pingtimeout=200ms reuse=1s", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let _agent = AgentArgs::respond(&node.name, Some(&secret), &node.range()).idle(6).spawn(Some(h.dir()));
    assert!(wait_until(Duration::from_secs(10), || status_json(&h).is_ok_and(|s| s.idle("hole1") >= 6)));
    let c = client(Duration::from_secs(30));
    for i in 0..5 {
        assert_served(&node, &get_with(&c, &node.url_on(&h, &format!("warm{i}"))), "warm-up");
    }
    let fw = Nft::new("hole").expect("nft table");
    fw.rule(&format!("tcp dport {}-{} drop", node.first, node.last)).unwrap();
    fw.rule(&format!("tcp sport {}-{} drop", node.first, node.last)).unwrap();
    let t0 = Instant::now();
    // Requests that arrive once every link is older than reuse= (1 s).
    std::thread::sleep(Duration::from_millis(1200));
    let mut during = Vec::new();
    while t0.elapsed() < Duration::from_millis(9500) {
        during.push(timed_get(&c, &node.url_on(&h, "during")));
    }
    let slowest = during.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let not_503: Vec<_> = during.iter().filter(|(r, _)| !matches!(r, Ok(503))).collect();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()));
    fw.flush().unwrap();
    let healed = Instant::now();
    let mut back = None;
    while healed.elapsed() < Duration::from_secs(10) {
        if let (Ok(200), _) = timed_get(&c, &node.url_on(&h, "after")) {
            back = Some(healed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    figure(
        "liveness-blackhole",
        &format!(
            "10 s blackhole: {} requests during it, slowest {} ms (bound wait 1 s + 1 s), {} not 503; served again {} ms after the heal (bound 2000)",
            during.len(),
            slowest.as_millis(),
            not_503.len(),
            back.map_or("never".into(), |d| d.as_millis().to_string())
        ),
    );
    assert!(!during.is_empty());
    assert!(not_503.is_empty(), "requests during the blackhole that were not a prompt 503: {not_503:?}");
    assert!(slowest <= Duration::from_secs(2), "a request during the blackhole took {slowest:?}");
    let back = back.unwrap_or_else(|| panic!("not served within 10 s of the heal\n{}", h.error_log()));
    assert!(back <= Duration::from_secs(2), "served again only {back:?} after the heal");
}

/// A TCP relay for each port of a range that forgets a flow once it has
/// been idle for `forget`: from then on it discards what either side sends,
/// without closing or resetting anything (as a NAT that timed the flow out).
struct ForgetfulRelay {
    first: u16,
    forgotten: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ForgetfulRelay {
    fn start(to_first: u16, n: u16, forget: Duration) -> ForgetfulRelay {
        let first = free_ports(n);
        let forgotten = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        for k in 0..n {
            let l = TcpListener::bind(("127.0.0.1", first + k)).unwrap();
            l.set_nonblocking(true).unwrap();
            let (forgotten, stop) = (forgotten.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((a, _)) => {
                            let Ok(b) = TcpStream::connect(("127.0.0.1", to_first + k)) else { continue };
                            Self::flow(a, b, forget, forgotten.clone(), stop.clone());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        ForgetfulRelay { first, forgotten, stop }
    }

    fn flow(a: TcpStream, b: TcpStream, forget: Duration, forgotten: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
        let last = Arc::new(Mutex::new(Instant::now()));
        let gone = Arc::new(AtomicBool::new(false));
        for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
            let (last, gone, forgotten, stop) = (last.clone(), gone.clone(), forgotten.clone(), stop.clone());
            std::thread::spawn(move || {
                from.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                let mut buf = [0u8; 16384];
                while !stop.load(Ordering::Relaxed) {
                    if !gone.load(Ordering::Relaxed)
                        && last.lock().unwrap().elapsed() >= forget
                        && !gone.swap(true, Ordering::Relaxed)
                    {
                        forgotten.fetch_add(1, Ordering::Relaxed);
                    }
                    match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if gone.load(Ordering::Relaxed) {
                                continue; // forgotten: dropped on the floor
                            }
                            *last.lock().unwrap() = Instant::now();
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(_) => break,
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            });
        }
    }
}

impl Drop for ForgetfulRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `timer:(keepalive,6.9sec,0)` of the established sockets on `port` (either side).
fn keepalive_timers(port: u16) -> Vec<f64> {
    let out = run(&["ss", "-Htno", "state", "established"], None).unwrap_or_default();
    out.lines()
        .filter(|l| l.contains(&format!(":{port} ")))
        .filter_map(|l| {
            let t = l.split("timer:(keepalive,").nth(1)?;
            let v = t.split(',').next()?;
            // iproute2 writes "14sec", "1min5sec", "250ms", and "6.792ms" for 6.792 s.
            let secs = if let Some((m, rest)) = v.split_once("min") {
                m.parse::<f64>().ok()? * 60.0 + rest.trim_end_matches("sec").parse::<f64>().unwrap_or(0.0)
            } else if let Some(m) = v.strip_suffix("sec") {
                m.parse::<f64>().ok()?
            } else if let Some(m) = v.strip_suffix("ms") {
                let n = m.parse::<f64>().ok()?;
                if m.contains('.') {
                    n
                } else {
                    n / 1000.0
                }
            } else {
                return None;
            };
            Some(secs)
        })
        .collect()
}

type Timed = Vec<(Result<u16, String>, Duration)>;

/// (requests after 5 s idle, flows the relay forgot, keepalive timers of httpd's side, of the agent's side)
fn relay_case(ping: &str, requests: usize) -> (Timed, usize, Vec<f64>, Vec<f64>) {
    let node = RNode::new("relay1", "http", "127.0.0.3:1", 1);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf("ProxyTimeout 3\n")
        .conf(&node.conf(&format!("secret={} wait=1s {ping} reuse=1s keepalive=7,3,2", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let relay = ForgetfulRelay::start(node.first, 1, Duration::from_secs(2));
    let mut a = AgentArgs::respond(&node.name, Some(&secret), &format!("127.0.0.1:{}", relay.first)).idle(4);
    a.extra = vec!["--keepalive".into(), "8,3,2".into()];
    let _agent = a.spawn(Some(h.dir()));
    assert!(wait_until(Duration::from_secs(10), || status_json(&h).is_ok_and(|s| s.idle("relay1") >= 4)));
    let (httpd_side, agent_side) = (keepalive_timers(node.first), keepalive_timers(relay.first));
    // Idle well past the relay's memory.
    std::thread::sleep(Duration::from_secs(5));
    let c = client(Duration::from_secs(20));
    let results: Vec<_> = (0..requests).map(|i| timed_get(&c, &node.url_on(&h, &format!("r{i}")))).collect();
    let forgotten = relay.forgotten.load(Ordering::Relaxed);
    (results, forgotten, httpd_side, agent_side)
}

#[test]
fn pings_keep_links_through_a_relay_that_forgets_idle_flows() {
    let (ok, forgotten_with, httpd_timers, agent_timers) = relay_case("ping=500ms pingtimeout=200ms", 10);
    let slowest = ok.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let failed = ok.iter().filter(|(r, _)| !matches!(r, Ok(200))).count();
    // Control: without pings (and so without checks before use) the same relay breaks the links.
    let (bad, forgotten_without, _, _) = relay_case("ping=off", 3);
    let broken = bad.iter().filter(|(r, d)| !matches!(r, Ok(200)) || *d >= Duration::from_secs(2)).count();
    figure(
        "liveness-relay",
        &format!(
            "relay forgets flows idle 2 s, 5 s idle: with ping=500ms {failed}/10 failed, slowest {} ms, {forgotten_with} flows forgotten; with ping=off {broken}/3 failed or slow, {forgotten_without} flows forgotten; keepalive timers httpd side {:?} s (keepalive=7,3,2), agent side {:?} s (--keepalive 8,3,2)",
            slowest.as_millis(),
            httpd_timers,
            agent_timers
        ),
    );
    assert_eq!(failed, 0, "with pings: {ok:?}");
    assert!(slowest < Duration::from_secs(1), "with pings a request took {slowest:?}");
    assert_eq!(forgotten_with, 0, "the relay forgot {forgotten_with} flows although pings ran");
    assert!(
        forgotten_without >= 1 && broken >= 1,
        "the control case did not break: {bad:?} ({forgotten_without} forgotten)"
    );
    // Both ends set the keepalive they were configured with (≤ 7 s on httpd's side, ≤ 8 s on the agent's).
    assert!(
        !httpd_timers.is_empty() && !agent_timers.is_empty(),
        "no keepalive timers: {httpd_timers:?} {agent_timers:?}"
    );
    assert!(httpd_timers.iter().all(|&t| t > 0.0 && t <= 7.0), "httpd's keepalive not as configured: {httpd_timers:?}");
    assert!(
        agent_timers.iter().all(|&t| t > 0.0 && t <= 8.0),
        "the agent's keepalive not as configured: {agent_timers:?}"
    );
}

/// A version-1 dialer: HELLO, CHALLENGE (v1 framing), PROOF, VERDICT.
fn dial_v1(port: u16, node: &str) -> Result<TcpStream, Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cn = p::nonce().unwrap();
    s.write_all(&p::encode_hello(p::VERSION_1, node.as_bytes(), &cn)).unwrap();
    let mut got = vec![0u8; 6];
    s.read_exact(&mut got).unwrap();
    let (Ok(Some((p::Challenge::Continue { .. }, _))) | Ok(None)) = p::parse_challenge(&got) else {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        got.extend(rest);
        return Err(got);
    };
    let mut more = vec![0u8; p::challenge_ok_len(p::VERSION_1) - 6];
    s.read_exact(&mut more).unwrap();
    got.extend(more);
    let Ok(Some((p::Challenge::Continue { server_nonce, ping, server_proof, version }, _))) = p::parse_challenge(&got)
    else {
        return Err(got);
    };
    assert_eq!((version, ping), (p::VERSION_1, p::PingParams::OFF));
    let t = p::Transcript {
        version: p::VERSION_1,
        node: node.as_bytes(),
        client_nonce: &cn,
        server_nonce: &server_nonce,
        ping,
    };
    assert!(t.verify_server_proof(SECRET.as_bytes(), &server_proof));
    s.write_all(&t.client_proof(SECRET.as_bytes())).unwrap();
    let mut v = [0u8; 1];
    s.read_exact(&mut v).unwrap();
    assert_eq!(v[0], p::Verdict::Accepted as u8);
    s.set_read_timeout(None).unwrap();
    Ok(s)
}

#[test]
fn version_1_dialers_are_refused_or_served_as_configured() {
    let strict = RNode::new("strict1", "ajp", "127.0.0.2:1", 1);
    let old = RNode::new("old1", "ajp", "127.0.0.4:1", 1);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf("LogLevel proxy_reversed:info\n")
        .conf(&strict.conf(&format!("secret={}", secret.display())))
        .conf(&old.conf(&format!("secret={} v1=serve", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    assert!(wait_until(Duration::from_secs(10), || status_json(&h)
        .is_ok_and(|s| s.ports("strict1").len() == 1 && s.ports("old1").len() == 1)));

    // Refused: "RVRS" 0x01 0x05, closed, and a warning that says what to do.
    let got = dial_v1(strict.first, "strict1").expect_err("a version-1 dialer was accepted by default");
    assert_eq!(got, b"RVRS\x01\x05", "refusal bytes");
    assert!(wait_until(Duration::from_secs(5), || h.error_log().contains("speaks handshake version 1")));
    let log = h.error_log();
    assert!(log.contains("v1=serve"), "the log line does not say how to serve it:\n{log}");
    assert_eq!(status_json(&h).unwrap().idle("strict1"), 0);

    // Served where the operator chose so: pooled, no PING before the request.
    let mut s = dial_v1(old.first, "old1").expect("v1=serve refused a version-1 dialer");
    assert!(wait_until(Duration::from_secs(5), || status_json(&h).is_ok_and(|st| st.idle("old1") == 1)));
    let url = old.url_on(&h, "v1");
    let client = std::thread::spawn(move || get(&url));
    let mut head = [0u8; 4];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head[..2], &[0x12, 0x34], "a version-1 link got something else than the request first: {head:02x?}");
    drop(s);
    let _ = client.join();
}
