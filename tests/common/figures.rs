//! FIGURE lines, soak scaling, /proc readings.
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
// Figures, scale, /proc
// ---------------------------------------------------------------------------

/// MPR_SOAK=1 (`make soak`): the scenarios run at full scale.
pub fn soak() -> bool {
    std::env::var_os("MPR_SOAK").is_some_and(|v| v != "0" && !v.is_empty())
}

/// `ci` normally, `soak` under MPR_SOAK=1.
pub fn scale<T>(ci: T, soak_value: T) -> T {
    if soak() {
        soak_value
    } else {
        ci
    }
}

/// Prints a measured figure ("FIGURE case | text") and appends it to the
/// file named by MPR_FIGURES (the summary table of `make soak`).
pub fn figure(case: &str, text: &str) {
    let line = format!("FIGURE {case} | {text}");
    eprintln!("{line}");
    if let Some(p) = std::env::var_os("MPR_FIGURES") {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(p) {
            let _ = writeln!(f, "{}{line}", if soak() { "soak " } else { "" });
        }
    }
}

/// Open descriptors of `pid` (None when it is gone).
pub fn proc_fds(pid: i32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

fn proc_status_field(pid: i32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

/// Resident memory of `pid` in KiB.
pub fn proc_rss_kb(pid: i32) -> Option<u64> {
    proc_status_field(pid, "VmRSS:")
}

/// Threads of `pid`.
pub fn proc_threads(pid: i32) -> Option<u64> {
    proc_status_field(pid, "Threads:")
}

/// Runs `f` on a thread that has joined network namespace `ns`
/// (/var/run/netns/NS); only that thread changes namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "netns thread panicked".to_string())?
}

/// A raw dialer: connects to 127.0.0.1:`port` and completes the handshake
/// as `node` with `secret`. Returns the idle, authenticated stream, or the
/// refusal/verdict/error as text.
/// Reads what httpd writes into an idle (version-2) link, answering each
/// PING with a PONG, until request bytes arrive: returns them (at least one
/// byte), or Err on close, error or timeout.
pub fn read_request_start(s: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, String> {
    let end = Instant::now() + timeout;
    let mut pending = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no request within {timeout:?}"));
        }
        s.set_read_timeout(Some(left)).unwrap();
        let mut b = [0u8; 4096];
        let n = s.read(&mut b).map_err(|e| format!("reading the request: {e}"))?;
        if n == 0 {
            return Err(format!("closed before a request: {pending:02x?}"));
        }
        pending.extend_from_slice(&b[..n]);
        let input = reversed_proto::scan_idle(&pending).map_err(|e| format!("bad frame from httpd: {e}"))?;
        for _ in 0..input.pings {
            s.write_all(&reversed_proto::PONG).map_err(|e| format!("pong: {e}"))?;
        }
        if let Some(at) = input.request_at {
            s.set_read_timeout(None).unwrap();
            return Ok(pending.split_off(at));
        }
        pending = if input.partial { vec![reversed_proto::FRAME_MARK] } else { Vec::new() };
    }
}

pub fn raw_dial(port: u16, node: &str, secret: &[u8], timeout: Duration) -> Result<TcpStream, String> {
    use reversed_proto as p;
    let sa: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    let cn = p::nonce().unwrap();
    s.write_all(&p::encode_hello(p::VERSION, node.as_bytes(), &cn)).map_err(|e| format!("hello: {e}"))?;
    let mut buf = Vec::new();
    let (sn, sp, ping) = loop {
        let mut b = [0u8; 128];
        let n = s.read(&mut b).map_err(|e| format!("challenge: {e}"))?;
        if n == 0 {
            return Err("closed before the challenge".into());
        }
        buf.extend_from_slice(&b[..n]);
        match p::parse_challenge(&buf) {
            Ok(Some((p::Challenge::Continue { server_nonce, server_proof, ping, .. }, _))) => {
                break (server_nonce, server_proof, ping)
            }
            Ok(Some((p::Challenge::Refused { refusal: r, .. }, _))) => return Err(format!("refused: {r:?}")),
            Ok(None) => continue,
            Err(e) => return Err(format!("bad challenge: {e}")),
        }
    };
    if !(p::Transcript { version: p::VERSION, node: node.as_bytes(), client_nonce: &cn, server_nonce: &sn, ping })
        .verify_server_proof(secret, &sp)
    {
        return Err("server proof does not verify".into());
    }
    s.write_all(
        &p::Transcript { version: p::VERSION, node: node.as_bytes(), client_nonce: &cn, server_nonce: &sn, ping }
            .client_proof(secret),
    )
    .map_err(|e| format!("proof: {e}"))?;
    let mut v = [0u8; 1];
    s.read_exact(&mut v).map_err(|e| format!("verdict: {e}"))?;
    match p::Verdict::from_byte(v[0]) {
        Some(p::Verdict::Accepted) => {
            s.set_read_timeout(None).unwrap();
            Ok(s)
        }
        other => Err(format!("verdict {other:?}")),
    }
}

/// Runs a command (stdin optional) and returns its stdout and stderr, or an
/// error that names the command and carries its output.
pub fn run(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::process::{Command, Stdio};
    let mut c = Command::new(args[0]);
    c.args(&args[1..]).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut ch = c.spawn().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if let Some(s) = stdin {
        ch.stdin.take().unwrap().write_all(s.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = ch.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("`{}` failed: {text}", args.join(" ")))
    }
}
