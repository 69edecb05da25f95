//! Integration-test harness for mod_proxy_reversed: throw-away httpd
//! instances (httpd.rs), reversed-agent processes (agent.rs), an HTTP client
//! (http.rs), reversed nodes and the status handler (nodes.rs, status.rs), a
//! Tomcat AJP fixture (tomcat_ajp.rs), raw handshake peers (raw.rs), figures
//! and /proc readings (figures.rs); paths, ports and small helpers here.
//!
//! Every process started here is stopped on Drop (SIGTERM, bounded wait,
//! then SIGKILL to its whole process group), and every temp dir is removed.
//! When a test panics, the logs of the processes it started are printed to
//! stderr before they are removed, so failures can be diagnosed.
#![allow(dead_code, unused_imports)]

mod agent;
mod figures;
mod http;
mod httpd;
pub mod load;
mod nodes;
mod raw;
mod status;
pub mod tomcat;
mod tomcat_ajp;

pub use agent::*;
pub use figures::*;
pub use http::*;
pub use httpd::*;
pub use nodes::*;
pub use raw::*;
pub use status::*;
pub use tomcat_ajp::*;

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

pub const APACHE2: &str = "/usr/sbin/apache2";
pub const APACHE_MODULES: &str = "/usr/lib/apache2/modules";
pub const TOMCAT_HOME: &str = "/usr/share/tomcat10";

// ---------------------------------------------------------------------------
// Paths of the artefacts under test
// ---------------------------------------------------------------------------

/// The workspace (CARGO_MANIFEST_DIR of the root package); MPR_WORKSPACE
/// overrides it (to run these tests from another crate against a build).
pub fn workspace_dir() -> PathBuf {
    match std::env::var_os("MPR_WORKSPACE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

fn target_dir() -> PathBuf {
    if std::env::var_os("MPR_WORKSPACE").is_some() {
        return workspace_dir().join("target");
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_dir().join(d)
            }
        }
        None => workspace_dir().join("target"),
    }
}

/// target/debug/libmod_proxy_reversed.so (absolute). Panics with a hint when
/// it has not been built: `cargo test` of the root package alone does not
/// build the agent, so the suite is run after `cargo build --workspace`.
pub fn module_path() -> PathBuf {
    let p = target_dir().join("debug").join("libmod_proxy_reversed.so");
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` (or `make test`) first", p.display());
    p
}

pub fn agent_path() -> PathBuf {
    let p = target_dir().join("debug").join("reversed-agent");
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` (or `make test`) first", p.display());
    p
}

/// MPR_TEST_VERBOSE=1: print every process's log tail when it is stopped,
/// not only when the test panics.
pub fn verbose() -> bool {
    std::env::var_os("MPR_TEST_VERBOSE").is_some_and(|v| v != "0" && !v.is_empty())
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Ports are taken from [10000, 32000) (below Linux's ephemeral range), from
/// a per-process base derived from the pid so that test binaries running at
/// the same time do not walk the same ports, and every port handed out is
/// checked free by binding it.
const PORT_LO: u32 = 10000;
const PORT_HI: u32 = 32000;
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);
static PORT_LOCK: Mutex<()> = Mutex::new(());

fn port_is_free(port: u16) -> bool {
    // The module binds 127.0.0.1 ports; a wildcard listener would also clash.
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// First port of `n` consecutive free ports on 127.0.0.1.
pub fn free_ports(n: u16) -> u16 {
    assert!((1..200).contains(&n));
    let _g = PORT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if NEXT_PORT.load(Ordering::SeqCst) == 0 {
        let span = PORT_HI - PORT_LO;
        let base = PORT_LO + (std::process::id().wrapping_mul(2654435761) % span) / 100 * 100;
        NEXT_PORT.store(base, Ordering::SeqCst);
    }
    for _ in 0..2000 {
        let mut start = NEXT_PORT.load(Ordering::SeqCst);
        if start + n as u32 >= PORT_HI {
            start = PORT_LO;
        }
        NEXT_PORT.store(start + n as u32, Ordering::SeqCst);
        if (start..start + n as u32).all(|p| port_is_free(p as u16)) {
            return start as u16;
        }
    }
    panic!("no {n} consecutive free ports found");
}

pub fn free_port() -> u16 {
    free_ports(1)
}

pub fn port_accepts(addr: &str, port: u16) -> bool {
    let sa: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&sa, Duration::from_millis(300)).is_ok()
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static TMP_SEQ: AtomicU32 = AtomicU32::new(0);

/// A directory under std::env::temp_dir(), removed (recursively) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "mpr-{tag}-{}-{}-{nanos}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&p).unwrap();
        // Children of httpd run as www-data; let them traverse (not list).
        fs::set_permissions(&p, fs::Permissions::from_mode(0o711)).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes a secret file readable by its owner only (mode 0600).
pub fn write_secret(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn read_lossy(p: &Path) -> String {
    fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        s
    } else {
        let mut i = s.len() - max;
        while !s.is_char_boundary(i) {
            i += 1;
        }
        &s[i..]
    }
}

fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// SIGTERM, wait up to `grace`, SIGKILL; then SIGKILL the process group it
/// leads (spawned with process_group(0)) to catch strays.
fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let pid = child.id() as i32;
    let mut status = child.try_wait().ok().flatten();
    if status.is_none() {
        signal(pid, libc::SIGTERM);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        if status.is_none() {
            signal(pid, libc::SIGKILL);
            status = child.wait().ok();
        }
    }
    // The group id equals the leader's pid; killing it reaches the children
    // of httpd (old generations included) and of catalina.sh.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    status
}
