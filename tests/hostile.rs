//! A flood of rogue dialers (garbage bytes, slow-loris handshakes, wrong
//! secret, a replayed proof captured from a good handshake, wrong node,
//! silent connections) while legitimate traffic flows: no rogue ever
//! receives a request byte, legitimate requests never fail, and httpd's
//! descriptors and memory stay bounded (peaks reported).
//!
//! 500 rogue dials here; 10 000 under MPR_SOAK=1 (`make soak`).

mod common;

use common::load::{Load, LoadOpts};
use common::*;
use reversed_proto as p;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "hostile secret, 0123456789abcdef";
const NODE: &str = "ajp1";
const HS_TIMEOUT: Duration = Duration::from_secs(1);
/// A rogue that stalls must be closed within the handshake timeout plus this.
const MARGIN: Duration = Duration::from_millis(3000);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Garbage,
    SlowLoris,
    WrongSecret,
    Replay,
    WrongNode,
    Silent,
}
const KINDS: [Kind; 6] =
    [Kind::Garbage, Kind::SlowLoris, Kind::WrongSecret, Kind::Replay, Kind::WrongNode, Kind::Silent];

/// A captured good handshake: the client nonce and proof a legitimate
/// dialer sent.
#[derive(Clone, Copy)]
struct Captured {
    cn: [u8; p::NONCE_LEN],
    proof: [u8; p::PROOF_LEN],
}

fn capture_good_handshake(port: u16) -> Captured {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cn = p::nonce().unwrap();
    s.write_all(&p::encode_hello(p::VERSION, NODE.as_bytes(), &cn)).unwrap();
    let mut ch = vec![0u8; p::challenge_ok_len(p::VERSION)];
    s.read_exact(&mut ch).unwrap();
    let Ok(Some((p::Challenge::Continue { server_nonce, ping, .. }, _))) = p::parse_challenge(&ch) else {
        panic!("{ch:02x?}")
    };
    let proof = p::Transcript {
        version: p::VERSION,
        node: NODE.as_bytes(),
        client_nonce: &cn,
        server_nonce: &server_nonce,
        ping,
    }
    .client_proof(SECRET.as_bytes());
    s.write_all(&proof).unwrap();
    let mut v = [0u8; 1];
    s.read_exact(&mut v).unwrap();
    assert_eq!(v[0], p::Verdict::Accepted as u8);
    Captured { cn, proof }
}

/// Reads until close (bounded), checking that only a refusal arrived.
fn finish(mut s: TcpStream, mut got: Vec<u8>, what: &str, t: Instant) -> Result<(), String> {
    let (rest, closed) = read_all_for(&mut s, HS_TIMEOUT + MARGIN + Duration::from_secs(1));
    got.extend_from_slice(&rest);
    std::panic::catch_unwind(|| assert_only_handshake_refusal(what, &got))
        .map_err(|e| e.downcast_ref::<String>().cloned().unwrap_or_else(|| format!("{what}: bad answer {got:02x?}")))?;
    if !closed {
        return Err(format!("{what}: still open after {:?}", t.elapsed()));
    }
    if t.elapsed() > HS_TIMEOUT + MARGIN {
        return Err(format!("{what}: closed only after {:?}", t.elapsed()));
    }
    Ok(())
}

fn rogue(kind: Kind, port: u16, n: u64, cap: Captured) -> Result<(), String> {
    let what = format!("rogue {n} {kind:?} on {port}");
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("{what}: connect: {e}"))?;
    let _ = s.set_nodelay(true);
    let mut got = Vec::new();
    match kind {
        Kind::Garbage => {
            let len = 1 + (n as usize * 7919) % 300;
            let mut bytes = pseudo_random_bytes(len, n + 1);
            if n.is_multiple_of(3) {
                // Starts like a HELLO, then nonsense.
                bytes.splice(0..0, b"RVRS\x01".iter().copied());
            }
            let _ = s.write_all(&bytes);
        }
        Kind::SlowLoris => {
            let hello = p::encode_hello(p::VERSION, NODE.as_bytes(), &p::nonce().unwrap());
            for b in hello {
                if s.write_all(&[b]).is_err() {
                    break;
                }
                let (g, closed) = read_all_for(&mut s, Duration::from_millis(150));
                got.extend_from_slice(&g);
                if closed || t.elapsed() > HS_TIMEOUT + MARGIN {
                    break;
                }
            }
        }
        Kind::WrongSecret | Kind::Replay => {
            let cn = if kind == Kind::Replay { cap.cn } else { p::nonce().unwrap() };
            s.write_all(&p::encode_hello(p::VERSION, NODE.as_bytes(), &cn)).map_err(|e| format!("{what}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut ch = vec![0u8; p::challenge_ok_len(p::VERSION)];
            s.read_exact(&mut ch).map_err(|e| format!("{what}: challenge: {e}"))?;
            let Ok(Some((p::Challenge::Continue { server_nonce, server_proof, ping, .. }, _))) =
                p::parse_challenge(&ch)
            else {
                return Err(format!("{what}: no challenge: {ch:02x?}"));
            };
            if kind == Kind::Replay && server_nonce == [0u8; p::NONCE_LEN] {
                return Err(format!("{what}: zero server nonce"));
            }
            let proof = if kind == Kind::Replay {
                cap.proof
            } else {
                let wrong = b"not the secret, not even close";
                if (p::Transcript {
                    version: p::VERSION,
                    node: NODE.as_bytes(),
                    client_nonce: &cn,
                    server_nonce: &server_nonce,
                    ping,
                })
                .verify_server_proof(wrong, &server_proof)
                {
                    return Err(format!("{what}: server proof verified with a wrong secret"));
                }
                p::Transcript {
                    version: p::VERSION,
                    node: NODE.as_bytes(),
                    client_nonce: &cn,
                    server_nonce: &server_nonce,
                    ping,
                }
                .client_proof(wrong)
            };
            got.extend_from_slice(&ch);
            let _ = s.write_all(&proof);
        }
        Kind::WrongNode => {
            let _ = s.write_all(&p::encode_hello(p::VERSION, b"someone-else", &p::nonce().unwrap()));
        }
        Kind::Silent => {}
    }
    finish(s, got, &what, t)
}

struct Peaks {
    total_fds: usize,
    max_child_fds: usize,
    total_rss_kb: u64,
    max_child_rss_kb: u64,
}

fn sample(h: &Httpd) -> Peaks {
    let mut pk = Peaks { total_fds: 0, max_child_fds: 0, total_rss_kb: 0, max_child_rss_kb: 0 };
    let mut pids = h.child_pids();
    pids.push(h.pid());
    for pid in pids {
        let f = proc_fds(pid).unwrap_or(0);
        let r = proc_rss_kb(pid).unwrap_or(0);
        pk.total_fds += f;
        pk.total_rss_kb += r;
        if pid != h.pid() {
            pk.max_child_fds = pk.max_child_fds.max(f);
            pk.max_child_rss_kb = pk.max_child_rss_kb.max(r);
        }
    }
    pk
}

#[test]
fn rogue_flood_with_legitimate_traffic() {
    let total: u64 = scale(500, 10_000);
    let concurrency: usize = scale(24, 48);
    let ajp = RNode::new(NODE, "ajp", "127.0.0.2:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let h = Arc::new(
        b.conf(&format!("ProxyReversedHandshakeTimeout {}ms\n", HS_TIMEOUT.as_millis()))
            .conf(&ajp.conf(&format!("secret={} wait=2s", secret.display())))
            .conf(STATUS_LOCATION)
            .start(),
    );
    let _a = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(16).spawn(Some(h.dir()));
    let st = wait_all_idle(&h, &[NODE], Duration::from_secs(15));
    let ports = st.ports(NODE);
    let cap = capture_good_handshake(ports[0]);
    std::thread::sleep(Duration::from_millis(300));
    let base = sample(&h);
    let rejected0 = status_json(&h).unwrap().rejected(NODE);

    // Sampler.
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new(Mutex::new(Peaks { total_fds: 0, max_child_fds: 0, total_rss_kb: 0, max_child_rss_kb: 0 }));
    let sampler = {
        let (stop, peaks, h) = (stop.clone(), peaks.clone(), h.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let s = sample(&h);
                let mut pk = peaks.lock().unwrap();
                pk.total_fds = pk.total_fds.max(s.total_fds);
                pk.max_child_fds = pk.max_child_fds.max(s.max_child_fds);
                pk.total_rss_kb = pk.total_rss_kb.max(s.total_rss_kb);
                pk.max_child_rss_kb = pk.max_child_rss_kb.max(s.max_child_rss_kb);
                drop(pk);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let load = Load::start(
        vec![ajp.url_on(&h, "legit"), ajp.url_on(&h, "sleep/5")],
        LoadOpts {
            threads: 4,
            pace: Duration::from_millis(5),
            duration: Duration::from_secs(900),
            ..Default::default()
        },
    );
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let per_kind = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let ths: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, errors, per_kind, ports) = (next.clone(), errors.clone(), per_kind.clone(), ports.clone());
            std::thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::SeqCst) as u64;
                if n >= total || t.elapsed() > Duration::from_secs(1200) {
                    return;
                }
                let kind = KINDS[(n % KINDS.len() as u64) as usize];
                let port = ports[(n / KINDS.len() as u64) as usize % ports.len()];
                if let Err(e) = rogue(kind, port, n, cap) {
                    errors.lock().unwrap().push(e);
                }
                *per_kind.lock().unwrap().entry(format!("{kind:?}")).or_insert(0) += 1;
            })
        })
        .collect();
    for th in ths {
        th.join().unwrap();
    }
    let flood = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rep = load.stop();
    // Descriptors return to the baseline once the flood is over, give or
    // take the backend connections mod_proxy keeps per thread after the
    // legitimate load (at most ThreadsPerChild per child: 2 x 16).
    let settle = 40;
    let mut after = sample(&h);
    wait_until(Duration::from_secs(5), || {
        after = sample(&h);
        after.total_fds <= base.total_fds + settle
    });
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let pk = peaks.lock().unwrap();
    let st = status_json(&h).unwrap();
    let rejected = st.rejected(NODE) - rejected0;
    let errors = errors.lock().unwrap();
    figure(
        "rogue-flood",
        &format!(
            "{total} rogue dials ({:?}) in {:.1} s, {concurrency} at a time: {} got anything but a refusal (0 request bytes), {} rejected by httpd; legitimate: {}; httpd fds total {}→peak {}→{} after (max per child peak {}), RSS total {} MiB→peak {} MiB (max per child {} MiB)",
            per_kind.lock().unwrap(),
            flood.as_secs_f64(),
            errors.len(),
            rejected,
            rep.summary(),
            base.total_fds,
            pk.total_fds,
            after.total_fds,
            pk.max_child_fds,
            base.total_rss_kb / 1024,
            pk.total_rss_kb / 1024,
            pk.max_child_rss_kb / 1024
        ),
    );
    assert!(errors.is_empty(), "{} rogues misbehaved, first: {:?}", errors.len(), &errors[..errors.len().min(5)]);
    assert_eq!(rep.failed(), 0, "legitimate traffic failed: {}", rep.summary());
    assert!(rep.total() > 50, "{}", rep.summary());
    assert!(rejected >= total, "only {rejected} of {total} rogues counted as rejected");
    // Bounded: per child, handshakes in progress (≤ 64) + idle pool + threads.
    assert!(
        pk.max_child_fds <= base.max_child_fds + 64 + 32,
        "a child peaked at {} fds (baseline {})",
        pk.max_child_fds,
        base.max_child_fds
    );
    assert!(
        after.total_fds <= base.total_fds + settle,
        "fds did not return to the baseline: {} vs {}",
        after.total_fds,
        base.total_fds
    );
    assert!(
        pk.total_rss_kb <= base.total_rss_kb + 64 * 1024,
        "RSS grew from {} to {} KiB",
        base.total_rss_kb,
        pk.total_rss_kb
    );
    assert!(!h.error_log().contains("panicked"));
}
