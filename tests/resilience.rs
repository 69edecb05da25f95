//! Reversed connections keep serving and lose nothing when things go wrong:
//! graceful restarts, a killed child, a killed agent, a restarted Tomcat,
//! dialers that close or stall mid-request, 10 MB bodies, and bursts of
//! dialers larger than ProxyReversedMaxHandshakes — each under a bounded
//! load generator that counts every non-2xx and every connection error.
//!
//! Each test prints its figures ("FIGURE case | ..."); MPR_SOAK=1 (`make
//! soak`) runs the same scenarios at full scale.

mod common;

use common::load::{graceful_rounds_under_load, kill9_children_under_load, Load, LoadOpts};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECRET: &str = "resilience secret 0123456789abcdef";

/// The scenarios measure recovery times on a small machine: one at a time,
/// whatever --test-threads says.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// Graceful restarts under load
// ---------------------------------------------------------------------------

fn graceful_restarts_under_load(mpm: Mpm, rounds: usize) {
    let _serial = serial();
    let nports = if mpm == Mpm::Prefork { 32 } else { 16 };
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", nports);
    let b = Httpd::builder(mpm);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&ajp.conf(&format!("secret={} wait=2s", secret.display()))).conf(STATUS_LOCATION).start();
    let idle = 2 * mpm.max_children() as u32;
    let _a = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(idle).spawn(Some(h.dir()));
    wait_all_idle(&h, &["ajp1"], Duration::from_secs(15));

    let (rep, took, via_k) = graceful_rounds_under_load(
        &h,
        "ajp1",
        rounds,
        vec![ajp.url_on(&h, "load/a"), ajp.url_on(&h, "sleep/20")],
        LoadOpts {
            threads: if mpm == Mpm::Prefork { 4 } else { 6 },
            duration: Duration::from_secs(300),
            ..Default::default()
        },
        Duration::from_millis(500),
    );
    let fails: Vec<_> = rep.failures().into_iter().take(10).cloned().collect();
    figure(
        &format!("graceful-{}", mpm.name()),
        &format!(
            "{rounds} graceful restarts ({via_k} by apache2 -k graceful, the rest by SIGUSR1) under load: {} failed of {} ({:.0} req/s, max latency {}); new generation idle after {:?}",
            rep.failed(),
            rep.total(),
            rep.rate(),
            secs(rep.max_latency()),
            took.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>()
        ),
    );
    assert!(rep.total() > 100, "too little load: {}", rep.summary());
    assert_eq!(rep.failed(), 0, "{}: failures {:?}", rep.summary(), fails);
    assert!(!h.error_log().contains("AH00957"), "mod_proxy dialled the sentinel");
}

#[test]
fn graceful_restarts_under_load_event() {
    graceful_restarts_under_load(Mpm::Event, scale(5, 20));
}

#[test]
fn graceful_restarts_under_load_prefork() {
    graceful_restarts_under_load(Mpm::Prefork, scale(5, 20));
}

// ---------------------------------------------------------------------------
// kill -9 of one child under load
// ---------------------------------------------------------------------------

#[test]
fn kill9_child_under_load() {
    let _serial = serial();
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 8);
    // MinSpareThreads above one child's threads: the parent replaces a dead child.
    let b = Httpd::builder(Mpm::Event).mpm_settings(
        "StartServers 2\nServerLimit 4\nThreadLimit 16\nThreadsPerChild 16\n\
         MaxRequestWorkers 64\nMinSpareThreads 32\nMaxSpareThreads 64\nMaxConnectionsPerChild 0\n",
    );
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&ajp.conf(&format!("secret={} wait=2s", secret.display()))).conf(STATUS_LOCATION).start();
    let _a = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(16).spawn(Some(h.dir()));
    let st = wait_all_idle(&h, &["ajp1"], Duration::from_secs(15));
    assert!(st.children.len() >= 2, "{st:?}");
    let k = kill9_children_under_load(&h, "ajp1", vec![ajp.url_on(&h, "sleep/50"), ajp.url_on(&h, "k")], scale(1, 5));
    figure("kill9-child", &k.describe(""));
    let rep = &k.report;
    assert!(rep.failed() <= k.in_flight, "more failures than requests in flight: {}", rep.summary());
    assert!(rep.failed() <= 16 * k.rounds, "more failures than one child's threads per kill: {}", rep.summary());
    assert!(k.late.is_empty(), "requests not in flight at a kill failed: {:?}", k.late);
}

// ---------------------------------------------------------------------------
// Agent killed and restarted under load
// ---------------------------------------------------------------------------

#[test]
fn agent_kill_and_restart_under_load() {
    let _serial = serial();
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 8);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let wait = Duration::from_secs(1);
    let h = b.conf(&ajp.conf(&format!("secret={} wait=1s", secret.display()))).conf(STATUS_LOCATION).start();
    let args = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(16);
    let mut a = args.spawn(Some(h.dir()));
    wait_all_idle(&h, &["ajp1"], Duration::from_secs(15));
    let load = Load::start(
        vec![ajp.url_on(&h, "a"), ajp.url_on(&h, "sleep/10")],
        LoadOpts { threads: 6, duration: Duration::from_secs(60), ..Default::default() },
    );
    std::thread::sleep(Duration::from_millis(1500));
    let t_kill = load.now();
    a.kill_hard();
    std::thread::sleep(Duration::from_secs(3));
    let t_up = load.now();
    let _a2 = args.spawn(Some(h.dir()));
    std::thread::sleep(Duration::from_secs(3));
    let rep = load.stop();

    // While no connection exists: prompt 503s.
    let down: Vec<_> =
        rep.samples.iter().filter(|s| s.start >= t_kill + Duration::from_millis(300) && s.end <= t_up).collect();
    let bad_down: Vec<_> =
        down.iter().filter(|s| s.outcome != Ok(503) || s.took() > wait + Duration::from_millis(500)).collect();
    let max_503 = down.iter().map(|s| s.took()).max().unwrap_or_default();
    // Full service: the first instant after which every request succeeded.
    let recovered_at = rep.samples.iter().rev().take_while(|s| s.ok()).last().map(|s| s.start).unwrap_or(rep.elapsed);
    let recovery = recovered_at.saturating_sub(t_up);
    let first_ok = rep.samples.iter().filter(|s| s.start >= t_kill && s.ok()).map(|s| s.end).min();
    let at_kill = rep.in_flight_at(t_kill).iter().filter(|s| !s.ok()).count();
    figure(
        "agent-kill-restart",
        &format!(
            "agent kill -9 for 3 s under load: {} requests while down, all 503: {} (slowest {}, wait=1s); {} failures in flight at the kill; full service {} after restart (first success {} after); totals {}",
            down.len(),
            bad_down.is_empty(),
            secs(max_503),
            at_kill,
            secs(recovery),
            first_ok.map(|t| secs(t.saturating_sub(t_up))).unwrap_or("never".into()),
            rep.summary()
        ),
    );
    assert!(down.len() >= 5, "too few requests while the agent was down: {}", rep.summary());
    assert!(
        bad_down.is_empty(),
        "requests while down that were not a prompt 503: {:?}",
        &bad_down[..bad_down.len().min(10)]
    );
    assert!(recovery <= Duration::from_secs(1), "full service returned {recovery:?} after the agent restart");
    assert!(rep.samples.iter().filter(|s| s.start >= t_up + Duration::from_secs(1)).count() > 20);
}

// ---------------------------------------------------------------------------
// Tomcat restarted behind the agent
// ---------------------------------------------------------------------------

#[test]
fn tomcat_restart_behind_the_agent() {
    let _serial = serial();
    if !tomcat_available() {
        return;
    }
    let tc = Tomcat::start();
    let port = tc.ajp_port;
    let ajp = RNode::new("tc1", "ajp", "127.0.0.2:1", 8);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&ajp.conf(&format!("secret={} wait=1s", secret.display()))).conf(STATUS_LOCATION).start();
    let _a = AgentArgs::backend(&ajp.name, Some(&secret), &ajp.range(), &format!("127.0.0.1:{port}"))
        .idle(16)
        .spawn(Some(h.dir()));
    wait_all_idle(&h, &["tc1"], Duration::from_secs(15));
    assert!(wait_until(
        Duration::from_secs(30),
        || matches!(get(&ajp.url_on(&h, "hello.txt")), Ok(r) if r.status == 200)
    ));
    let timeout = Duration::from_secs(10);
    let load = Load::start(
        vec![ajp.url_on(&h, "hello.txt")],
        LoadOpts {
            threads: 4,
            pace: Duration::from_millis(5),
            timeout,
            duration: Duration::from_secs(120),
            ..Default::default()
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let t_down = load.now();
    drop(tc); // SIGTERM, then SIGKILL after 10 s
    let t_gone = load.now();
    std::thread::sleep(Duration::from_secs(2));
    let tc = Tomcat::start_on(port);
    let t_back = load.now();
    let ok = wait_until(Duration::from_secs(20), || load.ok_since(t_back) > 0);
    std::thread::sleep(Duration::from_secs(2));
    let rep = load.stop();
    drop(tc);
    let recovered_at = rep.samples.iter().rev().take_while(|s| s.ok()).last().map(|s| s.start).unwrap_or(rep.elapsed);
    let hung: Vec<_> = rep.samples.iter().filter(|s| s.took() >= timeout - Duration::from_millis(100)).collect();
    let errors: Vec<_> = rep.samples.iter().filter(|s| s.outcome.is_err()).collect();
    figure(
        "tomcat-restart",
        &format!(
            "Tomcat stopped ({} to stop) and restarted ({} to start) under load: {} ({:?}); longest request {}; service back {} after Tomcat's port reopened",
            secs(t_gone - t_down),
            secs(t_back - t_gone),
            rep.summary(),
            rep.breakdown(),
            secs(rep.max_latency()),
            secs(recovered_at.saturating_sub(t_back))
        ),
    );
    assert!(ok, "no success after Tomcat came back: {}", rep.summary());
    assert!(hung.is_empty(), "requests hung: {:?}", &hung[..hung.len().min(5)]);
    assert!(errors.is_empty(), "transport errors (hung or reset): {:?}", &errors[..errors.len().min(5)]);
    assert!(
        recovered_at <= t_back + Duration::from_secs(3),
        "service back {:?} after Tomcat",
        recovered_at.saturating_sub(t_back)
    );
}

// ---------------------------------------------------------------------------
// Dialers that close or stall mid-request
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
#[allow(clippy::enum_variant_names)]
enum Misbehave {
    /// Reads the request, closes without a byte of response.
    CloseBeforeResponse,
    /// Sends the response head and part of the body, then closes.
    CloseMidResponse,
    /// Reads the request and never answers.
    StallBeforeResponse,
    /// Sends the head and part of the body, then nothing.
    StallMidResponse,
}

fn read_request(s: &mut TcpStream, scheme: &str) -> Result<Vec<u8>, String> {
    let mut got = read_request_start(s, Duration::from_secs(20))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut b = [0u8; 4096];
    loop {
        let done = if scheme == "ajp" {
            got.len() >= 4 && got.len() >= 4 + u16::from_be_bytes([got[2], got[3]]) as usize
        } else {
            got.windows(4).any(|w| w == b"\r\n\r\n")
        };
        if done {
            return Ok(got);
        }
        let n = s.read(&mut b).map_err(|e| format!("reading the request: {e}"))?;
        if n == 0 {
            return Err(format!("closed before a full request: {got:02x?}"));
        }
        got.extend_from_slice(&b[..n]);
    }
}

fn partial_response(scheme: &str) -> Vec<u8> {
    if scheme == "ajp" {
        let mut hdr = vec![4u8];
        hdr.extend_from_slice(&200u16.to_be_bytes());
        let s = "OK";
        hdr.extend_from_slice(&(s.len() as u16).to_be_bytes());
        hdr.extend_from_slice(s.as_bytes());
        hdr.push(0);
        hdr.extend_from_slice(&1u16.to_be_bytes());
        hdr.extend_from_slice(&0xA008u16.to_be_bytes());
        hdr.extend_from_slice(&4u16.to_be_bytes());
        hdr.extend_from_slice(b"1000\0");
        let mut body = vec![3u8];
        body.extend_from_slice(&100u16.to_be_bytes());
        body.extend_from_slice(&[b'x'; 100]);
        body.push(0);
        let mut out = Vec::new();
        for p in [hdr, body] {
            out.extend_from_slice(b"AB");
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(&p);
        }
        out
    } else {
        let mut v = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        v.extend_from_slice(&[b'x'; 100]);
        v
    }
}

/// One misbehaving dialer: authenticates, takes one request, misbehaves.
/// Returns whether httpd closed the connection afterwards (within 15 s).
fn misbehaving_dialer(
    port: u16,
    node: &str,
    scheme: &'static str,
    how: Misbehave,
) -> std::thread::JoinHandle<Result<bool, String>> {
    let mut s = raw_dial(port, node, SECRET.as_bytes(), Duration::from_secs(5)).expect("raw dialer handshake");
    std::thread::spawn(move || {
        read_request(&mut s, scheme)?;
        match how {
            Misbehave::CloseBeforeResponse => return Ok(true),
            Misbehave::CloseMidResponse => {
                s.write_all(&partial_response(scheme)).map_err(|e| e.to_string())?;
                return Ok(true);
            }
            Misbehave::StallBeforeResponse => {}
            Misbehave::StallMidResponse => s.write_all(&partial_response(scheme)).map_err(|e| e.to_string())?,
        }
        // Stalled: httpd must give up and close the connection.
        let (_, closed) = read_all_for(&mut s, Duration::from_secs(15));
        Ok(closed)
    })
}

#[test]
fn dialers_that_close_or_stall_mid_request() {
    let _serial = serial();
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 2);
    let web = RNode::new("web1", "http", "127.0.0.3:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=1s", secret.display());
    let h = b.conf("ProxyTimeout 2\n").conf(&ajp.conf(&opts)).conf(&web.conf(&opts)).conf(STATUS_LOCATION).start();
    let mut last = Err(String::new());
    assert!(wait_until(Duration::from_secs(10), || {
        last = status_json(&h);
        matches!(&last, Ok(s) if s.ports("ajp1").len() == 1 && s.ports("web1").len() == 1)
    }));
    let st = last.unwrap();
    let mut results = Vec::new();
    for node in [&ajp, &web] {
        let port = st.ports(&node.name)[0];
        for how in [
            Misbehave::CloseBeforeResponse,
            Misbehave::CloseMidResponse,
            Misbehave::StallBeforeResponse,
            Misbehave::StallMidResponse,
        ] {
            let before = status_json(&h).unwrap();
            let retired0: u64 = before.nodes(&node.name).map(|(_, n)| n.retired).sum();
            let d = misbehaving_dialer(port, &node.name, node.scheme, how);
            wait_some_idle(&h, &[&node.name], Duration::from_secs(5));
            let t = Instant::now();
            let r = get_with(&client(Duration::from_secs(20)), &node.url_on(&h, &format!("{how:?}")));
            let took = t.elapsed();
            let closed = d.join().unwrap().unwrap_or_else(|e| panic!("{} {how:?}: dialer: {e}", node.name));
            let outcome = match &r {
                Ok(r) => format!("status {} ({} body bytes)", r.status, r.body.len()),
                Err(e) => format!("client error: {}", e.chars().take(80).collect::<String>()),
            };
            // Clean: an error status, or a response cut short (never a
            // complete 200, never a hang), and the connection retired.
            let clean = match &r {
                Ok(r) => [502, 503, 504].contains(&r.status),
                Err(_) => matches!(how, Misbehave::CloseMidResponse | Misbehave::StallMidResponse),
            };
            assert!(clean, "{} {how:?}: not a clean failure: {outcome}", node.name);
            assert!(took < Duration::from_secs(8), "{} {how:?}: took {took:?}", node.name);
            assert!(closed, "{} {how:?}: httpd did not close the stalled connection", node.name);
            let mut retired = 0;
            assert!(
                wait_until(Duration::from_secs(5), || {
                    retired = status_json(&h).unwrap().nodes(&node.name).map(|(_, n)| n.retired).sum::<u64>();
                    retired > retired0
                }),
                "{} {how:?}: connection not counted as retired",
                node.name
            );
            let s = status_json(&h).unwrap();
            assert_eq!(s.idle(&node.name), 0, "{} {how:?}: the bad connection is idle again: {s:?}", node.name);
            results.push(format!("{} {how:?}: {outcome} in {}", node.name, secs(took)));
        }
    }
    // Later requests succeed once a well-behaved dialer is there.
    let _a1 = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(4).spawn(Some(h.dir()));
    let _a2 = AgentArgs::respond(&web.name, Some(&secret), &web.range()).idle(4).spawn(Some(h.dir()));
    wait_all_idle(&h, &["ajp1", "web1"], Duration::from_secs(10));
    for i in 0..10 {
        assert_served(&ajp, &get(&ajp.url_on(&h, &format!("after/{i}"))), "after the misbehaving dialers");
        assert_served(&web, &get(&web.url_on(&h, &format!("after/{i}"))), "after the misbehaving dialers");
    }
    figure("mid-request-close-stall", &format!("{}; afterwards 20/20 requests served", results.join("; ")));
    assert!(!h.error_log().contains("panicked"));
}

// ---------------------------------------------------------------------------
// 10 MB bodies
// ---------------------------------------------------------------------------

#[test]
fn ten_megabyte_bodies_every_byte_checked() {
    let _serial = serial();
    let transfers: usize = scale(20, 1000);
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 4);
    let web = RNode::new("web1", "http", "127.0.0.3:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=2s", secret.display());
    let h = b.conf("LimitRequestBody 0\n").conf(&ajp.conf(&opts)).conf(&web.conf(&opts)).conf(STATUS_LOCATION).start();
    let _a1 = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).echo().idle(8).spawn(Some(h.dir()));
    let _a2 = AgentArgs::respond(&web.name, Some(&secret), &web.range()).echo().idle(8).spawn(Some(h.dir()));
    wait_all_idle(&h, &["ajp1", "web1"], Duration::from_secs(15));
    const SIZE: usize = 10 << 20;
    let t = Instant::now();
    let threads = 2;
    let per = transfers.div_ceil(threads);
    let ths: Vec<_> = (0..threads)
        .map(|th| {
            let urls = [ajp.url_on(&h, "echo"), web.url_on(&h, "echo")];
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(120));
                let mut done = 0usize;
                let mut bytes = 0u64;
                let mut digest = 0u64;
                for i in 0..per {
                    let n = th * per + i;
                    let data = pseudo_random_bytes(SIZE, 0x9e37_79b9_7f4a_7c15 ^ n as u64);
                    let r = post_with(&c, &urls[n % 2], &data).unwrap_or_else(|e| panic!("transfer {n}: {e}"));
                    assert_eq!(r.status, 200, "transfer {n}: {}", r.status);
                    assert_eq!(r.body.len(), SIZE, "transfer {n}: body length");
                    if r.body != data {
                        let at = r.body.iter().zip(&data).position(|(a, b)| a != b);
                        panic!("transfer {n}: body differs at byte {at:?}");
                    }
                    // A checksum per transfer too (cheap FNV-1a over 8-byte words).
                    let mut f = 0xcbf2_9ce4_8422_2325u64;
                    for w in r.body.chunks(8) {
                        f = (f ^ u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))).wrapping_mul(0x100_0000_01b3);
                    }
                    digest ^= f;
                    done += 1;
                    bytes += 2 * SIZE as u64;
                }
                (done, bytes, digest)
            })
        })
        .collect();
    let (mut done, mut bytes) = (0, 0);
    for t in ths {
        let (d, b, _) = t.join().expect("transfer thread");
        done += d;
        bytes += b;
    }
    let el = t.elapsed();
    figure(
        "10MB-bodies",
        &format!(
            "{done} transfers of 10 MiB up + 10 MiB down (AJP and HTTP alternating), every byte compared: 0 mismatches, 0 failures, {:.1} s ({:.0} MB/s)",
            el.as_secs_f64(),
            bytes as f64 / 1e6 / el.as_secs_f64()
        ),
    );
    assert!(done >= transfers);
}

// ---------------------------------------------------------------------------
// ProxyReversedMaxHandshakes: a burst larger than the limit all gets in
// ---------------------------------------------------------------------------

#[test]
fn burst_larger_than_max_handshakes_is_all_accepted() {
    let _serial = serial();
    let burst: usize = scale(40, 200);
    let node = RNode::new("ajp1", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf("ProxyReversedMaxHandshakes 4\nProxyReversedHandshakeTimeout 2s\n")
        .conf(&node.conf(&format!("secret={} wait=2s maxidle={}", secret.display(), burst + 10)))
        .conf(STATUS_LOCATION)
        .start();
    let mut last = Err(String::new());
    assert!(wait_until(Duration::from_secs(10), || {
        last = status_json(&h);
        matches!(&last, Ok(s) if s.ports("ajp1").len() == 1)
    }));
    let port = last.unwrap().ports("ajp1")[0];
    // Four silent dialers take every handshake slot first.
    let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let ths: Vec<_> = (0..burst)
        .map(|_| {
            std::thread::spawn(move || {
                let t = Instant::now();
                raw_dial(port, "ajp1", SECRET.as_bytes(), Duration::from_secs(20)).map(|s| (s, t.elapsed()))
            })
        })
        .collect();
    let mut conns = Vec::new();
    let mut errs = Vec::new();
    let mut slowest = Duration::ZERO;
    for th in ths {
        match th.join().unwrap() {
            Ok((s, d)) => {
                slowest = slowest.max(d);
                conns.push(s);
            }
            Err(e) => errs.push(e),
        }
    }
    let el = t.elapsed();
    let st = wait_some_idle(&h, &["ajp1"], Duration::from_secs(5));
    figure(
        "max-handshakes-burst",
        &format!(
            "ProxyReversedMaxHandshakes 4, 4 silent dialers holding the slots, burst of {burst} legitimate dials: {} accepted, {} failed, all in {} (slowest {}); idle now {}",
            conns.len(),
            errs.len(),
            secs(el),
            secs(slowest),
            st.idle("ajp1")
        ),
    );
    assert!(errs.is_empty(), "dials failed: {errs:?}");
    assert_eq!(st.idle("ajp1"), burst as u64, "{st:?}");
    assert!(h.error_log().contains("ProxyReversedMaxHandshakes"), "no pause logged");
    drop(silent);
}
