//! What happens when dialers are missing, die, or misbehave: a bounded 503,
//! never a connection to the sentinel worker address, and never a request
//! written to an unauthenticated peer.

mod common;

use common::*;
use reversed_proto as p;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "failure-modes secret of 33 bytes";

// ---------------------------------------------------------------------------
// No dialer
// ---------------------------------------------------------------------------

#[test]
fn no_dialer_gives_503_within_wait() {
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 4);
    let web = RNode::new("web1", "http", "127.0.0.3:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=1s", secret.display());
    let h = b.conf(&ajp.conf(&opts)).conf(&web.conf(&opts)).conf(STATUS_LOCATION).start();
    // The children have bound their ports (nobody dials them).
    let mut last = Err(String::new());
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = status_json(&h);
            matches!(&last, Ok(s) if !s.children.is_empty()
                && s.children.iter().all(|c| c.nodes.iter().filter(|n| n.bound).count() == 2))
        }),
        "children did not bind both nodes: {last:?}"
    );
    let st = last.unwrap();
    assert_eq!(st.idle("ajp1") + st.idle("web1"), 0, "{st:?}");
    for round in 0..2 {
        for n in [&ajp, &web] {
            let t = Instant::now();
            let r = get_with(&client(Duration::from_secs(10)), &n.url_on(&h, "x"));
            let el = t.elapsed();
            let r = r.unwrap_or_else(|e| panic!("round {round} {}: no answer after {el:?}: {e}", n.name));
            assert_eq!(r.status, 503, "round {round} {}: {} {:?}", n.name, r.status, r.text());
            assert!(el < Duration::from_secs(3), "round {round} {}: 503 took {el:?} (wait=1s)", n.name);
            assert!(
                el >= Duration::from_millis(900),
                "round {round} {}: 503 after {el:?}, before wait=1s passed",
                n.name
            );
        }
    }
    // Concurrent requests do not queue behind each other beyond the wait.
    let t = Instant::now();
    let ths: Vec<_> = (0..16)
        .map(|i| {
            let u = if i % 2 == 0 { ajp.url_on(&h, "y") } else { web.url_on(&h, "y") };
            std::thread::spawn(move || get_with(&client(Duration::from_secs(10)), &u).map(|r| r.status))
        })
        .collect();
    for th in ths {
        assert_eq!(th.join().unwrap(), Ok(503));
    }
    assert!(t.elapsed() < Duration::from_secs(4), "16 concurrent 503s took {:?}", t.elapsed());
    // The server itself is still fine.
    assert_eq!(get(&h.url("/reversed-status")).unwrap().status, 200);
}

// ---------------------------------------------------------------------------
// The sentinel address is never dialled
// ---------------------------------------------------------------------------

/// Listens on `addr:port` and counts every connection accepted.
struct Trap {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<String>>>,
    th: Option<std::thread::JoinHandle<()>>,
}

impl Trap {
    fn new(l: TcpListener) -> Trap {
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (s, h) = (stop.clone(), hits.clone());
        let th = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((_c, peer)) => h.lock().unwrap().push(peer.to_string()),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Trap { stop, hits, th: Some(th) }
    }
    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.th.take() {
            let _ = t.join();
        }
    }
}

fn bind_trap(addr: &str) -> (TcpListener, u16) {
    for _ in 0..50 {
        let port = free_port();
        if let Ok(l) = TcpListener::bind((addr, port)) {
            return (l, port);
        }
    }
    panic!("cannot bind a trap listener on {addr}");
}

fn sentinel_never_dialled(mpm: Mpm) {
    let (la, pa) = bind_trap("127.0.0.3");
    let (lw, pw) = bind_trap("127.0.0.4");
    let trap_a = Trap::new(la);
    let trap_w = Trap::new(lw);
    let nports = if mpm == Mpm::Prefork { 12 } else { 8 };
    let ajp = RNode::new("ajp1", "ajp", &format!("127.0.0.3:{pa}"), nports);
    let web = RNode::new("web1", "http", &format!("127.0.0.4:{pw}"), nports);
    let b = Httpd::builder(mpm);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=1s", secret.display());
    let h = b.conf(&ajp.conf(&opts)).conf(&web.conf(&opts)).conf(STATUS_LOCATION).start();
    let dir = h.dir().to_path_buf();
    let spawn = || {
        (
            AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(8).spawn(Some(&dir)),
            AgentArgs::respond(&web.name, Some(&secret), &web.range()).idle(8).spawn(Some(&dir)),
        )
    };
    let (mut a1, mut a2) = spawn();
    wait_all_idle(&h, &["ajp1", "web1"], Duration::from_secs(15));

    // Phase 1: traffic with live dialers.
    for i in 0..40 {
        let n = if i % 2 == 0 { &ajp } else { &web };
        assert_served(n, &get(&n.url_on(&h, &format!("p1/{i}"))), "phase 1");
    }

    // Phase 2: steady traffic (some of it slow) while the agents are killed
    // with SIGKILL, so pooled and in-flight connections die under mod_proxy.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let ths: Vec<_> = (0..8)
        .map(|i| {
            let (stop, answered) = (stop.clone(), answered.clone());
            let n = if i % 2 == 0 { ajp.clone() } else { web.clone() };
            let path = if i < 4 { "sleep/300".to_string() } else { format!("fast/{i}") };
            let u = n.url_on(&h, &path);
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(15));
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    match get_with(&c, &u) {
                        Ok(r) => {
                            assert!(
                                r.status == 200 || r.status == 502 || r.status == 503,
                                "{u}: unexpected status {}",
                                r.status
                            );
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("{u}: transport error {e} after {:?}", t.elapsed()),
                    }
                    assert!(t.elapsed() < Duration::from_secs(5), "{u}: a request took {:?}", t.elapsed());
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    a1.kill_hard();
    a2.kill_hard();
    std::thread::sleep(Duration::from_millis(2500));
    // With no dialer at all, requests end in 503.
    for n in [&ajp, &web] {
        let r = get(&n.url_on(&h, "after-kill")).unwrap();
        assert_eq!(r.status, 503, "{} without dialer", n.name);
    }

    // Phase 3: new agents; the workers recover (not stuck in an error state).
    let (_b1, _b2) = spawn();
    for n in [&ajp, &web] {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(15), || {
            let r = get(&n.url_on(&h, "recover"));
            let good = matches!(&r, Ok(x) if x.status == 200);
            last = Some(r.map(|x| x.status));
            good
        });
        assert!(ok, "{} did not recover within 15 s after new agents: last {last:?}", n.name);
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    for th in ths {
        th.join().expect("traffic thread failed");
    }
    assert!(answered.load(Ordering::SeqCst) > 8, "too little traffic ran");
    for i in 0..40 {
        let n = if i % 2 == 0 { &ajp } else { &web };
        assert_served(n, &get(&n.url_on(&h, &format!("p3/{i}"))), "phase 3");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(trap_a.hits().is_empty(), "the AJP sentinel 127.0.0.3:{pa} was dialled from {:?}", trap_a.hits());
    assert!(trap_w.hits().is_empty(), "the HTTP sentinel 127.0.0.4:{pw} was dialled from {:?}", trap_w.hits());
}

/// Control: without ProxyReversed, mod_proxy does dial the worker address,
/// and the trap sees it (so an empty trap above means something).
#[test]
fn trap_sees_plain_mod_proxy_connect() {
    let (l, port) = bind_trap("127.0.0.3");
    let trap = Trap::new(l);
    let h = Httpd::builder(Mpm::Event)
        .conf(&format!("ProxyPass \"/plain/\" \"http://127.0.0.3:{port}/\" timeout=1"))
        .start();
    let _ = get_with(&client(Duration::from_secs(10)), &h.url("/plain/x"));
    assert!(wait_until(Duration::from_secs(3), || !trap.hits().is_empty()), "the trap saw no connection");
}

#[test]
fn sentinel_never_dialled_event() {
    sentinel_never_dialled(Mpm::Event);
}

#[test]
fn sentinel_never_dialled_prefork() {
    sentinel_never_dialled(Mpm::Prefork);
}

// ---------------------------------------------------------------------------
// Rogue dialers
// ---------------------------------------------------------------------------

const HS_TIMEOUT_MS: u64 = 2000;
/// A peer that stalls must be dropped within the handshake timeout plus this.
const HS_MARGIN: Duration = Duration::from_millis(2500);

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
    s.set_nodelay(true).unwrap();
    s
}

/// Right node, wrong secret: a continuing CHALLENGE, a BadProof VERDICT,
/// then the connection closes.
fn rogue_wrong_secret(port: u16, right_secret: &[u8]) -> String {
    let what = format!("wrong-secret rogue on {port}");
    let mut s = connect(port);
    let cn = p::nonce().unwrap();
    s.write_all(&p::encode_hello(p::VERSION, b"ajp1", &cn)).unwrap();
    let (got, closed) = read_until_len(&mut s, p::challenge_ok_len(p::VERSION), Duration::from_secs(5));
    assert!(!closed || got.len() == p::challenge_ok_len(p::VERSION), "{what}: closed before the challenge: {got:02x?}");
    let (sn, sp, ping) = match p::parse_challenge(&got) {
        Ok(Some((p::Challenge::Continue { server_nonce, server_proof, ping, .. }, _))) => {
            (server_nonce, server_proof, ping)
        }
        other => panic!("{what}: expected a continuing challenge, got {other:?} from {got:02x?}"),
    };
    // httpd proves it knows the node's secret.
    assert!(
        p::Transcript { version: p::VERSION, node: b"ajp1", client_nonce: &cn, server_nonce: &sn, ping }
            .verify_server_proof(right_secret, &sp),
        "{what}: bad server proof"
    );
    let wrong = b"this is not the secret at all!!";
    assert!(!p::Transcript { version: p::VERSION, node: b"ajp1", client_nonce: &cn, server_nonce: &sn, ping }
        .verify_server_proof(wrong, &sp));
    s.write_all(
        &p::Transcript { version: p::VERSION, node: b"ajp1", client_nonce: &cn, server_nonce: &sn, ping }
            .client_proof(wrong),
    )
    .unwrap();
    let (rest, closed) = read_all_for(&mut s, Duration::from_secs(5));
    let mut all = got.clone();
    all.extend_from_slice(&rest);
    let desc = assert_only_handshake_refusal(&what, &all);
    assert_eq!(rest.first(), Some(&(p::Verdict::BadProof as u8)), "{what}: verdict {rest:02x?}");
    assert!(closed, "{what}: not closed after the rejected proof");
    desc
}

/// A HELLO for a node that does not own the port: refused, closed.
fn rogue_wrong_node(port: u16, node: &[u8]) -> String {
    let what = format!("wrong-node ({}) rogue on {port}", String::from_utf8_lossy(node));
    let mut s = connect(port);
    s.write_all(&p::encode_hello(p::VERSION, node, &p::nonce().unwrap())).unwrap();
    let (got, closed) = read_all_for(&mut s, Duration::from_secs(5));
    let desc = assert_only_handshake_refusal(&what, &got);
    assert!(
        matches!(p::parse_challenge(&got), Ok(Some((p::Challenge::Refused { refusal: p::Refusal::WrongNode, .. }, _)))),
        "{what}: expected a WrongNode refusal, got {got:02x?}"
    );
    assert!(closed, "{what}: not closed after the refusal");
    desc
}

/// Bytes that are no HELLO: nothing or a BadHello refusal, then closed.
fn rogue_garbage(port: u16, bytes: &[u8], label: &str) -> String {
    let what = format!("garbage ({label}) rogue on {port}");
    let mut s = connect(port);
    let t = Instant::now();
    let _ = s.write_all(bytes);
    let (got, closed) = read_all_for(&mut s, Duration::from_millis(HS_TIMEOUT_MS) + HS_MARGIN + Duration::from_secs(1));
    let desc = assert_only_handshake_refusal(&what, &got);
    if !got.is_empty() {
        assert!(
            matches!(
                p::parse_challenge(&got),
                Ok(Some((p::Challenge::Refused { refusal: p::Refusal::BadHello, .. }, _)))
            ),
            "{what}: expected nothing or a BadHello refusal, got {got:02x?}"
        );
    }
    assert!(closed, "{what}: still open after {:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_millis(HS_TIMEOUT_MS) + HS_MARGIN,
        "{what}: closed only after {:?}",
        t.elapsed()
    );
    desc
}

/// A valid HELLO, one byte every 500 ms: dropped at the handshake timeout.
fn rogue_slow(port: u16) -> String {
    let what = format!("slow rogue on {port}");
    let mut s = connect(port);
    let t = Instant::now();
    let hello = p::encode_hello(p::VERSION, b"ajp1", &p::nonce().unwrap());
    let mut got = Vec::new();
    let mut closed = false;
    for b in &hello {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let (g, c) = read_all_for(&mut s, Duration::from_millis(500));
        got.extend_from_slice(&g);
        if c {
            closed = true;
            break;
        }
        if t.elapsed() > Duration::from_millis(HS_TIMEOUT_MS) + HS_MARGIN + Duration::from_secs(2) {
            break;
        }
    }
    let el = t.elapsed();
    let desc = assert_only_handshake_refusal(&what, &got);
    assert!(closed, "{what}: still open after {el:?} (handshake timeout {HS_TIMEOUT_MS} ms)");
    assert!(el < Duration::from_millis(HS_TIMEOUT_MS) + HS_MARGIN, "{what}: closed only after {el:?}");
    desc
}

/// Connects and says nothing: dropped at the handshake timeout.
fn rogue_silent(port: u16) -> String {
    let what = format!("silent rogue on {port}");
    let mut s = connect(port);
    let t = Instant::now();
    let (got, closed) = read_all_for(&mut s, Duration::from_millis(HS_TIMEOUT_MS) + HS_MARGIN + Duration::from_secs(2));
    let el = t.elapsed();
    let desc = assert_only_handshake_refusal(&what, &got);
    assert!(closed, "{what}: still open after {el:?}");
    assert!(el < Duration::from_millis(HS_TIMEOUT_MS) + HS_MARGIN, "{what}: closed only after {el:?}");
    desc
}

fn read_until_len(s: &mut TcpStream, n: usize, timeout: Duration) -> (Vec<u8>, bool) {
    use std::io::Read;
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < n {
        let now = Instant::now();
        if now >= end {
            return (got, false);
        }
        s.set_read_timeout(Some(end - now)).unwrap();
        match s.read(&mut buf[..n - got.len()]) {
            Ok(0) => return (got, true),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

#[test]
fn rogue_dialers_get_no_requests() {
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 6);
    let web = RNode::new("web1", "http", "127.0.0.3:1", 6);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=3s", secret.display());
    let h = b
        .conf(&format!("ProxyReversedHandshakeTimeout {HS_TIMEOUT_MS}ms"))
        .conf(&ajp.conf(&opts))
        .conf(&web.conf(&opts))
        .conf(STATUS_LOCATION)
        .start();
    let dir = h.dir().to_path_buf();
    let _a = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).echo().idle(8).spawn(Some(&dir));
    let st = wait_all_idle(&h, &["ajp1"], Duration::from_secs(15));
    let ports = st.ports("ajp1");
    assert!(!ports.is_empty());
    let rejected_before = st.rejected("ajp1");

    // Good traffic all along.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let good = Arc::new(AtomicUsize::new(0));
    let traffic: Vec<_> = (0..4)
        .map(|i| {
            let (stop, failures, good) = (stop.clone(), failures.clone(), good.clone());
            let u = ajp.url_on(&h, &format!("traffic/{i}"));
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(20));
                let mut j = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let body = format!("traffic {i}/{j}");
                    match post_with(&c, &u, body.as_bytes()) {
                        Ok(r) if r.status == 200 && r.body == body.as_bytes() => {
                            good.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("{u}: status {} {:?}", r.status, r.text())),
                        Err(e) => failures.lock().unwrap().push(format!("{u}: {e}")),
                    }
                    j += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    let right = SECRET.as_bytes().to_vec();
    let mut rogues: Vec<std::thread::JoinHandle<String>> = Vec::new();
    for &port in &ports {
        let r = right.clone();
        rogues.push(std::thread::spawn(move || rogue_wrong_secret(port, &r)));
        rogues.push(std::thread::spawn(move || rogue_wrong_node(port, b"web1")));
        rogues.push(std::thread::spawn(move || rogue_wrong_node(port, b"nosuchnode")));
        rogues.push(std::thread::spawn(move || {
            rogue_garbage(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http request")
        }));
        rogues.push(std::thread::spawn(move || {
            rogue_garbage(port, &[0x12, 0x34, 0x00, 0x10, 0x02, 0x02, 0x00, 0x08, b'H', b'T', b'T', b'P'], "ajp bytes")
        }));
        rogues.push(std::thread::spawn(move || rogue_garbage(port, b"RVRS\x01\x05ajp1", "truncated hello")));
        rogues.push(std::thread::spawn(move || rogue_slow(port)));
        rogues.push(std::thread::spawn(move || rogue_silent(port)));
    }
    let mut panics = Vec::new();
    for r in rogues {
        match r.join() {
            Ok(desc) => eprintln!("rogue got: {desc}"),
            Err(e) => panics.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for t in traffic {
        t.join().unwrap();
    }
    assert!(panics.is_empty(), "rogue checks failed:\n{}", panics.join("\n"));
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "requests failed while rogues dialled:\n{}", failures.join("\n"));
    assert!(good.load(Ordering::SeqCst) >= 20, "too few good requests: {}", good.load(Ordering::SeqCst));
    let st = status_json(&h).unwrap();
    assert!(
        st.rejected("ajp1") >= rejected_before + ports.len() as u64,
        "wrong-secret handshakes not counted as rejected: {st:?}"
    );
    // Still serving afterwards.
    assert_served(&ajp, &get(&ajp.url_on(&h, "after")), "after the rogues");
}
