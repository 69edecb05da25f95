//! Raw handshake peers (for rogue and hand-written dialers).
#![allow(dead_code, unused_imports)]

use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Raw handshake peers (for rogue dialers)
// ---------------------------------------------------------------------------

/// Reads whatever arrives on `s` until EOF, an error, or `timeout` passes.
/// Returns (bytes, closed_by_peer).
pub fn read_all_for(s: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= end {
            return (got, false);
        }
        s.set_read_timeout(Some((end - now).max(Duration::from_millis(10)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(_) => return (got, true),
        }
    }
}

/// What a dialer that does not complete a valid handshake may receive:
/// nothing, a refusing CHALLENGE, or a continuing CHALLENGE followed by at
/// most one VERDICT byte that is not "accepted". Anything else (in
/// particular an AJP13 request, magic 0x12 0x34, or an HTTP request line)
/// fails the test. Returns a description of what was received.
pub fn assert_only_handshake_refusal(what: &str, got: &[u8]) -> String {
    use reversed_proto as p;
    let has = |b: &[u8], pat: &[u8]| b.windows(pat.len()).any(|w| w == pat);
    let show =
        |b: &[u8]| format!("{:02x?} {:?}", &b[..b.len().min(120)], String::from_utf8_lossy(&b[..b.len().min(120)]));
    if got.is_empty() {
        return "nothing".into();
    }
    let rest: &[u8];
    let desc: String;
    match p::parse_challenge(got) {
        Ok(Some((p::Challenge::Refused { refusal: r, .. }, used))) => {
            rest = &got[used..];
            desc = format!("refusal {r:?}");
        }
        Ok(Some((p::Challenge::Continue { .. }, used))) => {
            let after = &got[used..];
            match after.first() {
                None => {
                    rest = after;
                    desc = "challenge without verdict".into();
                }
                Some(&v) => {
                    assert_ne!(v, p::Verdict::Accepted as u8, "{what}: the rogue was ACCEPTED: {}", show(got));
                    rest = &after[1..];
                    desc = format!("challenge, verdict {:?}", p::Verdict::from_byte(v));
                }
            }
        }
        Ok(None) => panic!("{what}: received a truncated handshake answer: {}", show(got)),
        Err(e) => panic!("{what}: received bytes that are no handshake answer ({e}): {}", show(got)),
    }
    assert!(
        !has(rest, &[0x12, 0x34]) && !has(rest, b"GET ") && !has(rest, b"POST ") && !has(rest, b"HTTP/1."),
        "{what}: received REQUEST bytes after the handshake: {}",
        show(rest)
    );
    assert!(
        rest.is_empty(),
        "{what}: received {} unexpected bytes after the handshake answer: {}",
        rest.len(),
        show(rest)
    );
    desc
}

pub fn write_file(p: &Path, content: &[u8]) {
    let mut f = fs::File::create(p).unwrap();
    f.write_all(content).unwrap();
}
