//! Integration-test harness for mod_proxy_reversed: throw-away httpd
//! instances, reversed-agent processes, a Tomcat fixture, an HTTP client and
//! a small JSON reader for the status handler.
//!
//! Every process started here is stopped on Drop (SIGTERM, bounded wait,
//! then SIGKILL to its whole process group), and every temp dir is removed.
//! When a test panics, the logs of the processes it started are printed to
//! stderr before they are removed, so failures can be diagnosed.
#![allow(dead_code)]

pub mod load;

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
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` (or `make test`) first",
        p.display()
    );
    p
}

pub fn agent_path() -> PathBuf {
    let p = target_dir().join("debug").join("reversed-agent");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` (or `make test`) first",
        p.display()
    );
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
    assert!(n >= 1 && n < 200);
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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
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

// ---------------------------------------------------------------------------
// httpd
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mpm {
    Event,
    Worker,
    Prefork,
}

impl Mpm {
    pub fn name(self) -> &'static str {
        match self {
            Mpm::Event => "event",
            Mpm::Worker => "worker",
            Mpm::Prefork => "prefork",
        }
    }
    /// Most children this MPM's default settings (below) can run at once.
    pub fn max_children(self) -> u16 {
        match self {
            Mpm::Event | Mpm::Worker => 4,
            Mpm::Prefork => 8,
        }
    }
    fn default_settings(self) -> &'static str {
        match self {
            Mpm::Event | Mpm::Worker => {
                "StartServers 2\nServerLimit 4\nThreadLimit 16\nThreadsPerChild 16\n\
                 MaxRequestWorkers 64\nMinSpareThreads 16\nMaxSpareThreads 64\n\
                 MaxConnectionsPerChild 0\n"
            }
            Mpm::Prefork => {
                "StartServers 4\nMinSpareServers 2\nMaxSpareServers 4\nServerLimit 8\n\
                 MaxRequestWorkers 8\nMaxConnectionsPerChild 0\n"
            }
        }
    }
}

pub struct HttpdBuilder {
    mpm: Mpm,
    mpm_settings: Option<String>,
    extra: Vec<String>,
    modules: Vec<String>,
    load_ours: bool,
    dir: TempDir,
    port: u16,
    netns: Option<String>,
}

impl HttpdBuilder {
    /// Runs httpd inside network namespace `ns` (`ip netns exec`); the
    /// readiness check then connects from inside it too.
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_string());
        self
    }
    /// The MPM's settings (replaces the small defaults of [`Mpm`]).
    pub fn mpm_settings(mut self, s: &str) -> Self {
        self.mpm_settings = Some(s.to_string());
        self
    }
    /// Appends configuration lines after the LoadModule lines.
    pub fn conf(mut self, lines: &str) -> Self {
        self.extra.push(lines.to_string());
        self
    }
    /// Loads an extra module from /usr/lib/apache2/modules, e.g.
    /// ("proxy_hcheck_module", "mod_proxy_hcheck.so"), before ours.
    pub fn module(mut self, name: &str, file: &str) -> Self {
        self.modules.push(format!("LoadModule {name} {APACHE_MODULES}/{file}"));
        self
    }
    /// Leave out our LoadModule line (to compare behaviour without it).
    pub fn without_our_module(mut self) -> Self {
        self.load_ours = false;
        self
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Writes a 0600 secret file in the temp dir and returns its path.
    pub fn secret(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        write_secret(&p, content);
        p
    }

    pub fn conf_text(&self) -> String {
        let d = self.dir.path();
        let mut c = String::new();
        let m = |c: &mut String, name: &str, file: &str| {
            // Debian builds some (mod_unixd, mod_so, core) into the binary.
            if !builtin_modules().contains(&file.replace(".so", ".c")) {
                c.push_str(&format!("LoadModule {name} {APACHE_MODULES}/{file}\n"));
            }
        };
        c.push_str(&format!("# generated by tests/common/mod.rs ({} MPM)\n", self.mpm.name()));
        c.push_str(&format!("ServerRoot \"{}\"\n", d.display()));
        c.push_str(&format!("DefaultRuntimeDir \"{}\"\n", d.join("run").display()));
        c.push_str(&format!("PidFile \"{}\"\n", d.join("run/httpd.pid").display()));
        c.push_str(&format!("ErrorLog \"{}\"\n", d.join("logs/error.log").display()));
        c.push_str("LogLevel info\n");
        c.push_str("ServerName localhost\n");
        c.push_str(&format!("Listen 127.0.0.1:{}\n", self.port));
        c.push_str(&format!("DocumentRoot \"{}\"\n", d.join("htdocs").display()));
        c.push_str("Timeout 30\nKeepAlive On\nKeepAliveTimeout 2\nGracefulShutdownTimeout 5\n");
        m(&mut c, &format!("mpm_{}_module", self.mpm.name()), &format!("mod_mpm_{}.so", self.mpm.name()));
        c.push_str(self.mpm_settings.as_deref().unwrap_or(self.mpm.default_settings()));
        c.push('\n');
        m(&mut c, "authz_core_module", "mod_authz_core.so");
        if is_root() {
            m(&mut c, "unixd_module", "mod_unixd.so");
            c.push_str("User www-data\nGroup www-data\n");
        }
        m(&mut c, "slotmem_shm_module", "mod_slotmem_shm.so");
        m(&mut c, "proxy_module", "mod_proxy.so");
        m(&mut c, "proxy_ajp_module", "mod_proxy_ajp.so");
        m(&mut c, "proxy_http_module", "mod_proxy_http.so");
        m(&mut c, "proxy_balancer_module", "mod_proxy_balancer.so");
        m(&mut c, "lbmethod_byrequests_module", "mod_lbmethod_byrequests.so");
        for l in &self.modules {
            c.push_str(l);
            c.push('\n');
        }
        if self.load_ours {
            c.push_str(&format!("LoadModule proxy_reversed_module \"{}\"\n", module_path().display()));
            // Per-module levels need the module loaded first.
            c.push_str("LogLevel info proxy_reversed:debug\n");
        }
        for e in &self.extra {
            c.push_str(e);
            c.push('\n');
        }
        c
    }

    fn write_conf(&self) -> PathBuf {
        let d = self.dir.path();
        for sub in ["run", "logs", "htdocs"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let conf = d.join("httpd.conf");
        fs::write(&conf, self.conf_text()).unwrap();
        conf
    }

    /// `apache2 -t -f CONF` on the generated config: (exit success, stdout+stderr).
    pub fn configtest(&self) -> (bool, String) {
        let conf = self.write_conf();
        configtest(&conf)
    }

    /// Starts httpd in the foreground and waits (≤ 10 s) until its Listen
    /// port accepts. Panics with its output and error log if it does not.
    pub fn start(self) -> Httpd {
        match self.try_start() {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn try_start(self) -> Result<Httpd, String> {
        let conf = self.write_conf();
        let d = self.dir.path().to_path_buf();
        let out = fs::File::create(d.join("logs/stdout.log")).unwrap();
        let err = fs::File::create(d.join("logs/stderr.log")).unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.as_str(), APACHE2]);
                c
            }
            None => Command::new(APACHE2),
        };
        let netns = self.netns.clone();
        let child = cmd
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .current_dir(&d)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {APACHE2}: {e}"))?;
        let mut h = Httpd {
            child,
            port: self.port,
            conf,
            mpm: self.mpm,
            dir: self.dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = h.child.try_wait() {
                return Err(format!(
                    "httpd exited during start-up ({st})\n--- stderr ---\n{}\n--- error log ---\n{}",
                    read_lossy(&h.dir.path().join("logs/stderr.log")),
                    tail(&h.error_log(), 8000)
                ));
            }
            let port = h.port;
            let up = match &netns {
                Some(ns) => in_netns(ns, move || port_accepts("127.0.0.1", port)).unwrap_or(false),
                None => port_accepts("127.0.0.1", port),
            };
            if up {
                return Ok(h);
            }
            if Instant::now() >= end {
                return Err(format!(
                    "httpd did not accept on 127.0.0.1:{} within 10 s\n--- stderr ---\n{}\n--- error log ---\n{}",
                    h.port,
                    read_lossy(&h.dir.path().join("logs/stderr.log")),
                    tail(&h.error_log(), 8000)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Modules compiled into apache2 (`apache2 -l`), e.g. "mod_unixd.c".
pub fn builtin_modules() -> &'static Vec<String> {
    static B: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let out = Command::new(APACHE2).arg("-l").output().expect("run apache2 -l");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| l.ends_with(".c"))
            .collect()
    })
}

/// `apache2 -t -f CONF`: (exit status success, stdout + stderr).
pub fn configtest(conf: &Path) -> (bool, String) {
    let out = Command::new(APACHE2)
        .arg("-t")
        .arg("-f")
        .arg(conf)
        .stdin(Stdio::null())
        .output()
        .expect("run apache2 -t");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

pub struct Httpd {
    child: Child,
    port: u16,
    conf: PathBuf,
    mpm: Mpm,
    // Last: removed after the process has been stopped (Drop below).
    dir: TempDir,
}

impl Httpd {
    pub fn builder(mpm: Mpm) -> HttpdBuilder {
        HttpdBuilder {
            mpm,
            mpm_settings: None,
            extra: Vec::new(),
            modules: Vec::new(),
            load_ours: true,
            dir: TempDir::new(&format!("httpd-{}", mpm.name())),
            port: free_port(),
            netns: None,
        }
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn mpm(&self) -> Mpm {
        self.mpm
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.path().join("logs/error.log"))
    }
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("logs/stderr.log"))
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Graceful restart: SIGUSR1 to the parent.
    pub fn graceful(&self) {
        signal(self.pid(), libc::SIGUSR1);
    }
    /// Graceful restart the way `apache2ctl -k graceful` does it: `apache2 -f
    /// CONF -k graceful` (reads the pid file, sends SIGUSR1). Falls back to
    /// the signal when that command fails. Returns whether the command did it.
    pub fn graceful_k(&self) -> bool {
        let ok = Command::new(APACHE2)
            .arg("-f")
            .arg(&self.conf)
            .args(["-k", "graceful"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            self.graceful();
        }
        ok
    }
    /// Pids of the processes in httpd's process group other than the parent.
    pub fn child_pids(&self) -> Vec<i32> {
        let mut v = Vec::new();
        let pgid = self.pid();
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
                if pid == pgid {
                    continue;
                }
                if unsafe { libc::getpgid(pid) } == pgid {
                    v.push(pid);
                }
            }
        }
        v.sort();
        v
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let pidfile_pid = fs::read_to_string(self.dir.path().join("run/httpd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let strays = self.child_pids();
        stop_child(&mut self.child, Duration::from_secs(8));
        if let Some(p) = pidfile_pid {
            if p != self.pid() && pid_alive(p) {
                signal(p, libc::SIGKILL);
            }
        }
        for p in strays {
            if pid_alive(p) {
                signal(p, libc::SIGKILL);
            }
        }
        if std::thread::panicking() || verbose() {
            eprintln!(
                "=== httpd ({}, port {}) error log tail ===\n{}\n=== httpd stderr ===\n{}",
                self.mpm.name(),
                self.port,
                tail(&self.error_log(), if verbose() { usize::MAX } else { 12000 }),
                tail(&self.stderr(), 4000)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// reversed-agent
// ---------------------------------------------------------------------------

static AGENT_SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
    _dir: Option<TempDir>,
    name: String,
}

impl Agent {
    /// Spawns target/debug/reversed-agent with `args`; its stderr (and
    /// stdout) go to a file in `dir` (or in a temp dir of its own).
    pub fn spawn(dir: Option<&Path>, args: &[String]) -> Agent {
        Agent::spawn_in(None, dir, args)
    }
    /// Like `spawn`, inside network namespace `ns` (`ip netns exec`, which
    /// execs in place: the pid is the agent's).
    pub fn spawn_in(ns: Option<&str>, dir: Option<&Path>, args: &[String]) -> Agent {
        let own = if dir.is_none() { Some(TempDir::new("agent")) } else { None };
        let d = dir.map(Path::to_path_buf).unwrap_or_else(|| own.as_ref().unwrap().path().to_path_buf());
        let n = AGENT_SEQ.fetch_add(1, Ordering::SeqCst);
        let log = d.join(format!("agent-{n}.log"));
        let f = fs::File::create(&log).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(agent_path());
                c
            }
            None => Command::new(agent_path()),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .process_group(0)
            .spawn()
            .expect("spawn reversed-agent");
        Agent {
            child: Some(child),
            log,
            _dir: own,
            name: format!("agent-{n} {}", args.join(" ")),
        }
    }
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
    /// SIGKILL at once (connections die without any goodbye).
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            signal(pid, libc::SIGKILL);
            let _ = c.wait();
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    /// SIGTERM, wait ≤ 3 s, then SIGKILL.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.take().and_then(|mut c| stop_child(&mut c, Duration::from_secs(3)))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || verbose() {
            eprintln!("=== {} log tail ===\n{}", self.name, tail(&self.log(), 6000));
        }
    }
}

/// Arguments for an agent of `node` dialing `frontends` ("127.0.0.1:P-Q").
pub struct AgentArgs {
    pub node: String,
    pub secret_file: Option<PathBuf>,
    pub frontends: Vec<String>,
    pub idle: Option<u32>,
    pub backend: Option<String>,
    pub respond: bool,
    pub echo: bool,
    pub body_size: Option<usize>,
    pub extra: Vec<String>,
}

impl AgentArgs {
    pub fn respond(node: &str, secret: Option<&Path>, frontend: &str) -> AgentArgs {
        AgentArgs {
            node: node.into(),
            secret_file: secret.map(Path::to_path_buf),
            frontends: vec![frontend.into()],
            idle: Some(8),
            backend: None,
            respond: true,
            echo: false,
            body_size: None,
            extra: Vec::new(),
        }
    }
    pub fn backend(node: &str, secret: Option<&Path>, frontend: &str, backend: &str) -> AgentArgs {
        let mut a = AgentArgs::respond(node, secret, frontend);
        a.respond = false;
        a.backend = Some(backend.into());
        a
    }
    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }
    pub fn idle(mut self, n: u32) -> Self {
        self.idle = Some(n);
        self
    }
    pub fn args(&self) -> Vec<String> {
        let mut v = vec!["--node".to_string(), self.node.clone()];
        match &self.secret_file {
            Some(s) => {
                v.push("--secret-file".into());
                v.push(s.display().to_string());
            }
            None => v.push("--no-auth".into()),
        }
        for f in &self.frontends {
            v.push("--frontend".into());
            v.push(f.clone());
        }
        if let Some(i) = self.idle {
            v.push("--idle".into());
            v.push(i.to_string());
        }
        if let Some(b) = &self.backend {
            v.push("--backend".into());
            v.push(b.clone());
        }
        if self.respond {
            v.push("--respond".into());
            if self.echo {
                v.push("--echo".into());
            }
            if let Some(n) = self.body_size {
                v.push("--body-size".into());
                v.push(n.to_string());
            }
        }
        v.extend(self.extra.iter().cloned());
        v
    }
    pub fn spawn(&self, dir: Option<&Path>) -> Agent {
        Agent::spawn(dir, &self.args())
    }
}

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
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect();
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
    finish(
        agent
            .post(url)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(body),
    )
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

// ---------------------------------------------------------------------------
// Reversed nodes
// ---------------------------------------------------------------------------

/// Event MPM settings for tests that need exactly one child (one port, one pool).
pub const ONE_EVENT_CHILD: &str = "StartServers 1\nServerLimit 1\nThreadLimit 16\nThreadsPerChild 16\nMaxRequestWorkers 16\n\
     MinSpareThreads 1\nMaxSpareThreads 16\n";

pub const STATUS_LOCATION: &str =
    "<Location \"/reversed-status\">\n    SetHandler proxy-reversed-status\n</Location>\n";

/// One reversed node: a ProxyPass of `/<name>/` to a sentinel worker URL
/// (`<scheme>://<sentinel>/`, never dialled) and a range of `nports` free
/// ports on 127.0.0.1 that the agent dials.
#[derive(Clone, Debug)]
pub struct RNode {
    pub name: String,
    pub scheme: &'static str,
    pub url: String,
    pub first: u16,
    pub last: u16,
}

impl RNode {
    pub fn new(name: &str, scheme: &'static str, sentinel: &str, nports: u16) -> RNode {
        let first = free_ports(nports);
        RNode {
            name: name.into(),
            scheme,
            url: format!("{scheme}://{sentinel}/"),
            first,
            last: first + nports - 1,
        }
    }
    /// "127.0.0.1:first-last"
    pub fn range(&self) -> String {
        format!("127.0.0.1:{}-{}", self.first, self.last)
    }
    pub fn prefix(&self) -> String {
        format!("/{}/", self.name)
    }
    /// ProxyPass + ProxyReversed lines; `opts` are appended to ProxyReversed
    /// (e.g. "secret=/x wait=1s").
    pub fn conf(&self, opts: &str) -> String {
        format!(
            "ProxyPass \"{}\" \"{}\"\nProxyReversed {} \"{}\" {} {}\n",
            self.prefix(),
            self.url,
            self.name,
            self.url,
            self.range(),
            opts
        )
    }
    pub fn url_on(&self, h: &Httpd, path: &str) -> String {
        h.url(&format!("/{}/{}", self.name, path.trim_start_matches('/')))
    }
    /// The X-Responder header value the agent's built-in responder sets.
    pub fn responder(&self) -> &'static str {
        self.scheme
    }
}

/// Waits (bounded) until every live child of `h` shows an idle,
/// authenticated connection for each of `nodes`; panics with the last
/// status seen otherwise.
pub fn wait_all_idle(h: &Httpd, nodes: &[&str], timeout: Duration) -> Status {
    let mut last = Err("no status fetched".to_string());
    let ok = wait_until(timeout, || {
        last = status_json(h);
        matches!(&last, Ok(s) if s.all_children_idle(nodes))
    });
    assert!(ok, "not every child got idle connections for {nodes:?} within {timeout:?}; last status: {last:?}");
    last.unwrap()
}

/// Waits (bounded) until the status shows idle connections for each of
/// `nodes` in at least one child.
pub fn wait_some_idle(h: &Httpd, nodes: &[&str], timeout: Duration) -> Status {
    let mut last = Err("no status fetched".to_string());
    let ok = wait_until(timeout, || {
        last = status_json(h);
        matches!(&last, Ok(s) if nodes.iter().all(|n| s.idle(n) > 0))
    });
    assert!(ok, "no idle connections for {nodes:?} within {timeout:?}; last status: {last:?}");
    last.unwrap()
}

/// Asserts a successful answer from the agent's built-in responder for
/// `node` (status 200, X-Responder naming the node's protocol).
pub fn assert_served(node: &RNode, r: &Result<Resp, String>, what: &str) {
    match r {
        Ok(r) => {
            assert_eq!(r.status, 200, "{what}: status {} body {:?}", r.status, r.text());
            assert_eq!(
                r.header("X-Responder"),
                Some(node.responder()),
                "{what}: not answered by the {} responder (headers {:?})",
                node.responder(),
                r.headers
            );
        }
        Err(e) => panic!("{what}: transport error: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Status handler
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub node: String,
    pub bound: bool,
    pub port: Option<u16>,
    pub idle: u64,
    pub busy: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub retired: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChildStatus {
    pub pid: i64,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub children: Vec<ChildStatus>,
}

impl Status {
    pub fn nodes<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (i64, &'a NodeStatus)> + 'a {
        self.children
            .iter()
            .flat_map(move |c| c.nodes.iter().filter(move |n| n.node == node).map(move |n| (c.pid, n)))
    }
    pub fn idle(&self, node: &str) -> u64 {
        self.nodes(node).map(|(_, n)| n.idle).sum()
    }
    pub fn accepted(&self, node: &str) -> u64 {
        self.nodes(node).map(|(_, n)| n.accepted).sum()
    }
    pub fn rejected(&self, node: &str) -> u64 {
        self.nodes(node).map(|(_, n)| n.rejected).sum()
    }
    /// Ports bound for `node`, one per child that has one.
    pub fn ports(&self, node: &str) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .nodes(node)
            .filter(|(_, n)| n.bound)
            .filter_map(|(_, n)| n.port)
            .collect();
        v.sort();
        v
    }
    pub fn pids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.children.iter().map(|c| c.pid).collect();
        v.sort();
        v
    }
    /// Every child has at least one idle connection for each of `nodes`.
    pub fn all_children_idle(&self, nodes: &[&str]) -> bool {
        !self.children.is_empty()
            && self.children.iter().all(|c| {
                nodes
                    .iter()
                    .all(|nn| c.nodes.iter().any(|n| &n.node == nn && n.bound && n.idle > 0))
            })
    }
}

/// GET /reversed-status?json and parse it.
pub fn status_json(h: &Httpd) -> Result<Status, String> {
    let r = get_with(&client(Duration::from_secs(5)), &h.url("/reversed-status?json"))?;
    if r.status != 200 {
        return Err(format!("status handler answered {}: {}", r.status, r.text()));
    }
    parse_status(&r.text())
}

pub fn parse_status(text: &str) -> Result<Status, String> {
    let j = Json::parse(text)?;
    let children = j
        .get("children")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("no \"children\" array in {text}"))?;
    let mut out = Vec::new();
    for c in children {
        let pid = c.get("pid").and_then(Json::as_i64).ok_or("child without pid")?;
        let mut nodes = Vec::new();
        for n in c.get("nodes").and_then(Json::as_array).ok_or("child without nodes")? {
            let num = |k: &str| -> Result<u64, String> {
                n.get(k)
                    .and_then(Json::as_i64)
                    .map(|v| v as u64)
                    .ok_or_else(|| format!("node entry without numeric {k:?}: {text}"))
            };
            nodes.push(NodeStatus {
                node: n.get("node").and_then(Json::as_str).ok_or("node entry without name")?.to_string(),
                bound: n.get("bound").and_then(Json::as_bool).ok_or("node entry without bound")?,
                port: n.get("port").and_then(Json::as_i64).map(|p| p as u16),
                idle: num("idle")?,
                busy: num("busy")?,
                accepted: num("accepted")?,
                rejected: num("rejected")?,
                retired: num("retired")?,
            });
        }
        out.push(ChildStatus { pid, nodes });
    }
    Ok(Status { children: out })
}

/// A minimal JSON value and reader (enough for the status handler).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = parse_value(b, &mut i)?;
        skip_ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing characters at {i} in JSON: {s}"));
        }
        Ok(v)
    }
    pub fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(k),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&Vec<Json>> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Num(n) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        }
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn parse_value(b: &[u8], i: &mut usize) -> Result<Json, String> {
    skip_ws(b, i);
    let err = |i: usize, what: &str| Err(format!("JSON: {what} at byte {i}"));
    match b.get(*i) {
        None => err(*i, "unexpected end"),
        Some(b'{') => {
            *i += 1;
            let mut m = BTreeMap::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Ok(Json::Obj(m));
            }
            loop {
                skip_ws(b, i);
                let Json::Str(k) = parse_value(b, i)? else { return err(*i, "object key is not a string") };
                skip_ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return err(*i, "expected ':'");
                }
                *i += 1;
                let v = parse_value(b, i)?;
                m.insert(k, v);
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(Json::Obj(m));
                    }
                    _ => return err(*i, "expected ',' or '}'"),
                }
            }
        }
        Some(b'[') => {
            *i += 1;
            let mut a = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Ok(Json::Arr(a));
            }
            loop {
                a.push(parse_value(b, i)?);
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(Json::Arr(a));
                    }
                    _ => return err(*i, "expected ',' or ']'"),
                }
            }
        }
        Some(b'"') => {
            *i += 1;
            let mut s = Vec::new();
            loop {
                match b.get(*i) {
                    None => return err(*i, "unterminated string"),
                    Some(b'"') => {
                        *i += 1;
                        return String::from_utf8(s).map(Json::Str).map_err(|e| e.to_string());
                    }
                    Some(b'\\') => {
                        let c = *b.get(*i + 1).ok_or("JSON: bad escape")?;
                        *i += 2;
                        match c {
                            b'"' => s.push(b'"'),
                            b'\\' => s.push(b'\\'),
                            b'/' => s.push(b'/'),
                            b'b' => s.push(8),
                            b'f' => s.push(12),
                            b'n' => s.push(b'\n'),
                            b'r' => s.push(b'\r'),
                            b't' => s.push(b'\t'),
                            b'u' => {
                                let h = b.get(*i..*i + 4).ok_or("JSON: short \\u escape")?;
                                let cp = u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16)
                                    .map_err(|e| e.to_string())?;
                                *i += 4;
                                let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                                let mut buf = [0u8; 4];
                                s.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            }
                            _ => return err(*i, "bad escape"),
                        }
                    }
                    Some(&c) => {
                        s.push(c);
                        *i += 1;
                    }
                }
            }
        }
        Some(b't') if b[*i..].starts_with(b"true") => {
            *i += 4;
            Ok(Json::Bool(true))
        }
        Some(b'f') if b[*i..].starts_with(b"false") => {
            *i += 5;
            Ok(Json::Bool(false))
        }
        Some(b'n') if b[*i..].starts_with(b"null") => {
            *i += 4;
            Ok(Json::Null)
        }
        Some(c) if *c == b'-' || c.is_ascii_digit() => {
            let st = *i;
            while *i < b.len() && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                *i += 1;
            }
            let t = std::str::from_utf8(&b[st..*i]).unwrap();
            t.parse::<f64>().map(Json::Num).map_err(|e| format!("JSON number {t:?}: {e}"))
        }
        Some(_) => err(*i, "unexpected character"),
    }
}

// ---------------------------------------------------------------------------
// Tomcat
// ---------------------------------------------------------------------------

/// Whether Tomcat tests can run. Outside CI a missing Tomcat skips them
/// (returns false after a message); in CI (env CI set) it fails.
pub fn tomcat_available() -> bool {
    if Path::new(TOMCAT_HOME).join("bin/catalina.sh").exists() && Path::new("/usr/bin/java").exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{TOMCAT_HOME} (or /usr/bin/java) is missing, and CI is set: install tomcat10");
    }
    eprintln!("SKIPPED: {TOMCAT_HOME} is missing (install tomcat10 to run this test)");
    false
}

pub const TOMCAT_HELLO_TXT: &str = "hello from tomcat via a reversed connection\n";

pub struct Tomcat {
    child: Child,
    pub ajp_port: u16,
    dir: TempDir,
}

impl Tomcat {
    /// A private CATALINA_BASE with only an AJP connector on
    /// 127.0.0.1:`ajp_port` (no secret required), webapps/ROOT holding
    /// hello.txt and hello.jsp; waits ≤ 60 s for the AJP port.
    pub fn start() -> Tomcat {
        Tomcat::start_on(free_port())
    }
    /// Stops this Tomcat (SIGTERM, then SIGKILL) and starts a new one on the
    /// same AJP port; returns it once the port accepts.
    pub fn restart(self) -> Tomcat {
        let port = self.ajp_port;
        drop(self);
        Tomcat::start_on(port)
    }
    /// Stops Tomcat now (the directory stays until drop).
    pub fn stop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
    pub fn start_on(ajp_port: u16) -> Tomcat {
        let dir = TempDir::new("tomcat");
        let base = dir.path();
        fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["conf", "logs", "temp", "work", "webapps/ROOT"] {
            fs::create_dir_all(base.join(sub)).unwrap();
        }
        let server_xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{ajp_port}"
               secretRequired="false" maxThreads="200" connectionTimeout="60000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#
        );
        fs::write(base.join("conf/server.xml"), server_xml).unwrap();
        let etc_web = [
            Path::new(TOMCAT_HOME).join("etc/web.xml"),
            PathBuf::from("/etc/tomcat10/web.xml"),
        ];
        let web = etc_web.iter().find(|p| p.exists()).expect("tomcat10 web.xml");
        fs::copy(web, base.join("conf/web.xml")).unwrap();
        for f in ["catalina.properties", "context.xml", "logging.properties"] {
            let src = Path::new(TOMCAT_HOME).join("etc").join(f);
            if src.exists() {
                fs::copy(&src, base.join("conf").join(f)).unwrap();
            }
        }
        fs::write(base.join("webapps/ROOT/hello.txt"), TOMCAT_HELLO_TXT).unwrap();
        fs::write(
            base.join("webapps/ROOT/hello.jsp"),
            "<%@ page contentType=\"text/plain\" %>answer=<%= 6*7 %> method=<%= request.getMethod() %>\n",
        )
        .unwrap();
        let out = fs::File::create(base.join("logs/console.log")).unwrap();
        let child = Command::new(Path::new(TOMCAT_HOME).join("bin/catalina.sh"))
            .arg("run")
            .env("CATALINA_HOME", TOMCAT_HOME)
            .env("CATALINA_BASE", base)
            .env("CATALINA_TMPDIR", base.join("temp"))
            .env("JAVA_HOME", java_home())
            .env("CATALINA_OPTS", "-Xmx256m -Xss512k")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start catalina.sh run");
        let mut t = Tomcat { child, ajp_port, dir };
        let ok = wait_until(Duration::from_secs(60), || {
            if let Ok(Some(_)) = t.child.try_wait() {
                return true;
            }
            port_accepts("127.0.0.1", ajp_port)
        });
        if let Ok(Some(st)) = t.child.try_wait() {
            panic!("tomcat exited during start-up ({st}):\n{}", tail(&t.log(), 8000));
        }
        assert!(ok, "tomcat's AJP port {ajp_port} did not open within 60 s:\n{}", tail(&t.log(), 8000));
        t
    }
    pub fn log(&self) -> String {
        let mut s = read_lossy(&self.dir.path().join("logs/console.log"));
        if let Ok(rd) = fs::read_dir(self.dir.path().join("logs")) {
            for e in rd.flatten() {
                if e.file_name() != "console.log" {
                    s.push_str(&format!("\n--- {} ---\n", e.file_name().to_string_lossy()));
                    s.push_str(&read_lossy(&e.path()));
                }
            }
        }
        s
    }
}

fn java_home() -> PathBuf {
    // /usr/bin/java -> /etc/alternatives/java -> /usr/lib/jvm/X/bin/java
    let real = fs::canonicalize("/usr/bin/java").unwrap_or_else(|_| PathBuf::from("/usr/bin/java"));
    real.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr"))
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!("=== tomcat log tail ===\n{}", tail(&self.log(), 8000));
        }
    }
}

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
    let show = |b: &[u8]| format!("{:02x?} {:?}", &b[..b.len().min(120)], String::from_utf8_lossy(&b[..b.len().min(120)]));
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
    assert!(rest.is_empty(), "{what}: received {} unexpected bytes after the handshake answer: {}", rest.len(), show(rest));
    desc
}

pub fn write_file(p: &Path, content: &[u8]) {
    let mut f = fs::File::create(p).unwrap();
    f.write_all(content).unwrap();
}

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
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
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
            Ok(Some((p::Challenge::Continue { server_nonce, server_proof, ping, .. }, _))) => break (server_nonce, server_proof, ping),
            Ok(Some((p::Challenge::Refused { refusal: r, .. }, _))) => return Err(format!("refused: {r:?}")),
            Ok(None) => continue,
            Err(e) => return Err(format!("bad challenge: {e}")),
        }
    };
    if !(p::Transcript { version: p::VERSION, node: node.as_bytes(), client_nonce: &cn, server_nonce: &sn, ping }).verify_server_proof(secret, &sp) {
        return Err("server proof does not verify".into());
    }
    s.write_all(&p::Transcript { version: p::VERSION, node: node.as_bytes(), client_nonce: &cn, server_nonce: &sn, ping }.client_proof(secret)).map_err(|e| format!("proof: {e}"))?;
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
