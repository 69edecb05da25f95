//! The HTTP client of the tests.
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
// HTTP client
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A ureq agent that never reuses connections (every request its own
/// connection) and whose requests are bounded by `timeout` overall.
pub fn client(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .redirects(0)
        .build()
}

fn finish(r: Result<ureq::Response, ureq::Error>) -> Result<Resp, String> {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let headers =
        resp.headers_names().into_iter().filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string()))).collect();
    let mut body = Vec::new();
    resp.into_reader()
        .take(256 << 20)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the body (status {status}): {e}"))?;
    Ok(Resp { status, headers, body })
}

/// GET with a 30 s bound; Ok for any HTTP status, Err for transport errors.
pub fn get(url: &str) -> Result<Resp, String> {
    get_with(&client(Duration::from_secs(30)), url)
}

pub fn get_with(agent: &ureq::Agent, url: &str) -> Result<Resp, String> {
    finish(agent.get(url).call())
}

pub fn post(url: &str, body: &[u8]) -> Result<Resp, String> {
    post_with(&client(Duration::from_secs(60)), url, body)
}

pub fn post_with(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<Resp, String> {
    finish(agent.post(url).set("Content-Type", "application/octet-stream").send_bytes(body))
}

/// Deterministic pseudo-random bytes (xorshift), cheap to make in bulk.
pub fn pseudo_random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(b);
    d.iter().map(|x| format!("{x:02x}")).collect()
}
