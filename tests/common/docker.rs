//! Docker fixtures for tests/docker.rs: the project's private engine (started
//! when none answers, stopped at the end), the images of scripts/docker-images.sh,
//! and a topology of containers on two networks that the test creates with
//! subnets it chooses, behind the router image's one-way firewall.
//!
//! Everything is removed on Drop (containers, then networks, then the engine
//! if this test started it), also when the test panics; then the logs of every
//! container are printed first. Every docker call is bounded by `timeout`.
#![allow(dead_code)]

use crate::common::{free_port, parse_status, wait_until, workspace_dir, write_secret, Resp, Status, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Runs a command bounded by `limit` (coreutils `timeout`, then SIGKILL);
/// Ok(stdout) on success, Err(stdout+stderr) otherwise.
pub fn run_bounded(limit: Duration, prog: &str, args: &[&str], env: &[(&str, String)]) -> Result<String, String> {
    let mut c = Command::new("timeout");
    c.arg("-k").arg("5").arg(format!("{}", limit.as_secs().max(1))).arg(prog).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("{prog} {}: {e}", args.join(" ")))?;
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(so)
    } else {
        Err(format!(
            "`{prog} {}` failed ({}): {so}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn have(tool: &str) -> bool {
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

/// The engine the tests use. `host` is its DOCKER_HOST (None: the default).
pub struct Engine {
    started: bool,
    host: Option<String>,
}

impl Engine {
    /// Starts the project's private engine (scripts/docker-engine.sh) unless
    /// one answers. Missing packages or root fail the test. Returns None, after
    /// a loud message, only when dockerd itself cannot start on this machine
    /// (for example a sandbox without the kernel features it needs); with
    /// MPR_DOCKER_REQUIRED=1 that fails too.
    pub fn up() -> Option<Engine> {
        for t in ["docker", "dockerd", "docker-compose", "debootstrap", "timeout"] {
            assert!(
                have(t),
                "`{t}` is missing: install the packages `docker.io docker-compose debootstrap` (as .ci/run does)"
            );
        }
        assert!(crate::common::is_root(), "the Docker tests need root (a private dockerd, debootstrap)");
        let script = workspace_dir().join("scripts/docker-engine.sh");
        let out =
            Command::new(&script).arg("start").stdin(Stdio::null()).output().expect("run scripts/docker-engine.sh");
        let so = String::from_utf8_lossy(&out.stdout).into_owned();
        let se = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let msg = format!("scripts/docker-engine.sh start failed ({}):\n{so}{se}", out.status);
            if out.status.code() == Some(3) && std::env::var_os("MPR_DOCKER_REQUIRED").is_none() {
                eprintln!("\n######## SKIPPED: dockerd cannot start on this machine ########\n{msg}\n(set MPR_DOCKER_REQUIRED=1 to make this a failure)\n");
                return None;
            }
            panic!("{msg}");
        }
        let host = so.lines().find_map(|l| l.strip_prefix("DOCKER_HOST=")).unwrap_or("").to_string();
        let started = so.lines().any(|l| l == "MPR_DOCKER_STARTED=1");
        let e = Engine { started, host: if host.is_empty() { None } else { Some(host) } };
        e.remove_leftovers();
        Some(e)
    }

    /// Containers and networks of earlier test processes that are gone (killed
    /// before their Drop ran): they carry the label org.mpr.test=<pid>.
    fn remove_leftovers(&self) {
        let dead = |line: &str| -> Option<String> {
            let (id, pid) = line.split_once(' ')?;
            let pid: i32 = pid.trim().parse().ok()?;
            let alive = pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists();
            (!alive).then(|| id.to_string())
        };
        let fmt = "{{.ID}} {{.Label \"org.mpr.test\"}}";
        let cs = self.docker(&["ps", "-a", "--filter", "label=org.mpr.test", "--format", fmt]).unwrap_or_default();
        let ids: Vec<String> = cs.lines().filter_map(dead).collect();
        if !ids.is_empty() {
            eprintln!("docker: removing {} containers left by earlier test runs", ids.len());
            let mut v = vec!["rm", "-f"];
            v.extend(ids.iter().map(String::as_str));
            let _ = self.docker(&v);
        }
        let ns = self.docker(&["network", "ls", "--filter", "label=org.mpr.test", "--format", fmt]).unwrap_or_default();
        for id in ns.lines().filter_map(dead) {
            eprintln!("docker: removing network {id} left by an earlier test run");
            let _ = self.docker(&["network", "rm", &id]);
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.host.iter().map(|h| ("DOCKER_HOST", h.clone())).collect()
    }

    /// `docker ARGS`, bounded by 90 s.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        run_bounded(Duration::from_secs(90), "docker", args, &self.env())
    }

    /// Builds (or finds up to date) the images from target/release. Returns
    /// how long that took.
    pub fn images(&self) -> Duration {
        let bin = workspace_dir().join("target/release");
        for f in ["libmod_proxy_reversed.so", "reversed-agent"] {
            assert!(
                bin.join(f).exists(),
                "{} is missing: run `cargo build --release --workspace` (make test and make test-docker do)",
                bin.join(f).display()
            );
        }
        let t = Instant::now();
        let script = workspace_dir().join("scripts/docker-images.sh");
        let r = run_bounded(Duration::from_secs(1200), script.to_str().unwrap(), &[bin.to_str().unwrap()], &self.env());
        if let Err(e) = r {
            panic!("building the images failed: {e}");
        }
        t.elapsed()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.started {
            let script = workspace_dir().join("scripts/docker-engine.sh");
            let _ = run_bounded(Duration::from_secs(60), script.to_str().unwrap(), &["stop"], &[]);
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Two networks (`front`, `back`) with subnets chosen here, the router
/// between them, and the containers a test adds. Hosts: the router is .254
/// on both networks.
pub struct Topo<'e> {
    pub e: &'e Engine,
    pub tag: String,
    /// First three octets of the front and back subnets.
    pub front_net: String,
    pub back_net: String,
    nets: Vec<String>,
    containers: Vec<String>,
    pub dir: TempDir,
}

pub struct Front {
    pub name: String,
    pub ip: String,
    /// Published on 127.0.0.1.
    pub port: u16,
}

impl Front {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn status(&self) -> Result<Status, String> {
        let r = crate::common::get_with(
            &crate::common::client(Duration::from_secs(3)),
            &self.url("/reversed-status?json"),
        )?;
        if r.status != 200 {
            return Err(format!("status page: HTTP {}", r.status));
        }
        parse_status(&r.text())
    }
    /// Whether every child of this front end holds idle links of every node.
    pub fn all_idle(&self, nodes: &[&str]) -> bool {
        matches!(self.status(), Ok(s) if s.all_children_idle(nodes))
    }
}

pub fn epoch_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

impl<'e> Topo<'e> {
    /// Creates the networks (10.232.N.0/24 and 10.232.N+1.0/24, N chosen from
    /// the pid and moved on when docker reports an overlap) and the router.
    pub fn new(e: &'e Engine, case: &str) -> Topo<'e> {
        let tag = format!("mprt-{case}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let mut t = Topo {
            e,
            tag: tag.clone(),
            front_net: String::new(),
            back_net: String::new(),
            nets: Vec::new(),
            containers: Vec::new(),
            dir: TempDir::new("docker"),
        };
        fs::create_dir_all(t.dir.path().join("secrets")).unwrap();
        let mut n = (std::process::id() * 2 + SEQ.load(Ordering::SeqCst) * 2) % 120 * 2;
        let mut last_err = String::new();
        let label = format!("org.mpr.test={}", std::process::id());
        for _ in 0..30 {
            let (f, b) = (format!("10.232.{n}"), format!("10.232.{}", n + 1));
            let fname = format!("{tag}-front");
            match e.docker(&["network", "create", "--label", &label, "--subnet", &format!("{f}.0/24"), &fname]) {
                Ok(_) => {
                    t.nets.push(fname);
                    let bname = format!("{tag}-back");
                    match e.docker(&["network", "create", "--label", &label, "--subnet", &format!("{b}.0/24"), &bname])
                    {
                        Ok(_) => {
                            t.nets.push(bname);
                            t.front_net = f;
                            t.back_net = b;
                            break;
                        }
                        Err(err) => {
                            last_err = err;
                            let fname = t.nets.pop().unwrap();
                            let _ = e.docker(&["network", "rm", &fname]);
                        }
                    }
                }
                Err(err) => last_err = err,
            }
            n = (n + 2) % 240;
        }
        assert!(!t.front_net.is_empty(), "could not create the test networks: {last_err}");
        let router = t.name("router");
        let (fs_, bs) = (format!("{}.0/24", t.front_net), format!("{}.0/24", t.back_net));
        let (back, bip) = (t.nets[1].clone(), format!("{}.254", t.back_net));
        t.docker_run(
            &[
                "--name",
                &router,
                "--network",
                &back,
                "--ip",
                &bip,
                "--cap-add",
                "NET_ADMIN",
                "--sysctl",
                "net.ipv4.ip_forward=1",
                "-e",
                &format!("FRONT_SUBNET={fs_}"),
                "-e",
                &format!("BACK_SUBNET={bs}"),
                "mpr/router",
            ],
            false,
        );
        // The second network before the router's entrypoint looks for it: create, connect, start.
        t.e.docker(&["network", "connect", "--ip", &format!("{}.254", t.front_net), &t.nets[0], &router]).unwrap();
        t.e.docker(&["start", &router]).unwrap();
        let ok = wait_until(Duration::from_secs(20), || {
            t.e.docker(&["exec", &router, "nft", "list", "table", "inet", "mpr_fw"]).is_ok()
        });
        assert!(ok, "the router did not set up its firewall: {}", t.logs("router"));
        t
    }

    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.tag)
    }
    pub fn front_ip(&self, host: u8) -> String {
        format!("{}.{host}", self.front_net)
    }
    pub fn back_ip(&self, host: u8) -> String {
        format!("{}.{host}", self.back_net)
    }
    pub fn router_front(&self) -> String {
        self.front_ip(254)
    }

    /// `docker create` (start=false) or `docker run -d`; remembers the container.
    fn docker_run(&mut self, args: &[&str], start: bool) {
        let name = args[args.iter().position(|a| *a == "--name").unwrap() + 1].to_string();
        let label = format!("org.mpr.test={}", std::process::id());
        let mut v = vec![if start { "run" } else { "create" }];
        if start {
            v.push("-d");
        }
        v.extend_from_slice(&["--label", &label]);
        v.extend_from_slice(args);
        self.containers.push(name.clone());
        if let Err(e) = self.e.docker(&v) {
            panic!("starting container {name}: {e}");
        }
    }

    /// A secret file (mode 0600) in the folder every container mounts read-only
    /// on /run/secrets; returns its path inside the containers.
    pub fn secret(&self, file: &str, content: &str) -> String {
        write_secret(&self.dir.path().join("secrets").join(file), content);
        format!("/run/secrets/{file}")
    }

    /// An httpd front end on the front network at .`host`, with `conf` as its
    /// /etc/apache2/reversed.d/test.conf, port 80 published on 127.0.0.1, and a
    /// route to the back network through the router (so a forward connection
    /// meets the firewall). Returns once it answers HTTP.
    pub fn httpd(&mut self, short: &str, host: u8, conf: &str) -> Front {
        let name = self.name(short);
        let ip = self.front_ip(host);
        let cfile = self.dir.path().join(format!("{short}.conf"));
        fs::write(&cfile, conf).unwrap();
        let port = free_port();
        let secrets = self.dir.path().join("secrets");
        let (net, vol_c, vol_s, publish) = (
            self.nets[0].clone(),
            format!("{}:/etc/apache2/reversed.d/test.conf:ro", cfile.display()),
            format!("{}:/run/secrets:ro", secrets.display()),
            format!("127.0.0.1:{port}:80"),
        );
        let routes = format!("MPR_ROUTES={}.0/24 via {}", self.back_net, self.router_front());
        self.docker_run(
            &[
                "--name",
                &name,
                "--network",
                &net,
                "--ip",
                &ip,
                "--cap-add",
                "NET_ADMIN",
                "-e",
                &routes,
                "-v",
                &vol_c,
                "-v",
                &vol_s,
                "-p",
                &publish,
                "mpr/httpd",
            ],
            true,
        );
        let f = Front { name: short.to_string(), ip, port };
        self.wait_http(&f, Duration::from_secs(30));
        f
    }

    /// Waits until `f` answers its status page (≤ `limit`).
    pub fn wait_http(&self, f: &Front, limit: Duration) {
        let ok = wait_until(limit, || f.status().is_ok());
        assert!(ok, "front end {} does not answer on 127.0.0.1:{}:\n{}", f.name, f.port, self.logs(&f.name));
    }

    /// A backend container (mpr/backend) on the back network at .`host`: the
    /// agent's flags in `args` (Tomcat starts unless they say --respond), a
    /// route to the front network through the router.
    pub fn backend(&mut self, short: &str, host: u8, args: &[String], env: &[(&str, &str)]) -> String {
        let name = self.name(short);
        let ip = self.back_ip(host);
        let secrets = self.dir.path().join("secrets");
        let vol_s = format!("{}:/run/secrets:ro", secrets.display());
        let net = self.nets[1].clone();
        let routes = format!("MPR_ROUTES={}.0/24 via {}", self.front_net, self.back_ip(254));
        let bname = format!("MPR_BACKEND_NAME={short}");
        let envs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut v: Vec<&str> = vec![
            "--name",
            &name,
            "--hostname",
            short,
            "--network",
            &net,
            "--ip",
            &ip,
            "--cap-add",
            "NET_ADMIN",
            "-e",
            &routes,
            "-e",
            &bname,
            "-v",
            &vol_s,
        ];
        for e in &envs {
            v.push("-e");
            v.push(e);
        }
        v.push("mpr/backend");
        v.extend(args.iter().map(String::as_str));
        self.docker_run(&v, true);
        name
    }

    pub fn exec(&self, short: &str, cmd: &[&str]) -> Result<String, String> {
        let name = self.name(short);
        let mut v = vec!["exec", name.as_str()];
        v.extend_from_slice(cmd);
        self.e.docker(&v)
    }

    /// `docker stop` (the image's own SIGTERM handling; docker's 10 s default
    /// before SIGKILL); returns how long it took.
    pub fn stop(&self, short: &str) -> Duration {
        let t = Instant::now();
        self.e.docker(&["stop", &self.name(short)]).unwrap();
        t.elapsed()
    }
    /// The exit code of a stopped container (137: docker had to SIGKILL it).
    pub fn exit_code(&self, short: &str) -> i64 {
        self.e
            .docker(&["inspect", "-f", "{{.State.ExitCode}}", &self.name(short)])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    }

    /// How long `docker stop` takes right now for a container that exits at
    /// once on SIGTERM (the engine's own latency on this host).
    pub fn stop_baseline(&mut self) -> Duration {
        let short = format!("baseline{}", SEQ.fetch_add(1, Ordering::SeqCst));
        let name = self.name(&short);
        self.docker_run(
            &[
                "--name",
                &name,
                "--network",
                "none",
                "--entrypoint",
                "sh",
                "mpr/router",
                "-c",
                "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
            ],
            true,
        );
        std::thread::sleep(Duration::from_millis(300));
        self.stop(&short)
    }

    pub fn kill(&self, short: &str) {
        self.e.docker(&["kill", &self.name(short)]).unwrap();
    }
    pub fn start(&self, short: &str) {
        self.e.docker(&["start", &self.name(short)]).unwrap();
    }
    pub fn running(&self, short: &str) -> bool {
        self.e
            .docker(&["inspect", "-f", "{{.State.Running}}", &self.name(short)])
            .map(|s| s.trim() == "true")
            .unwrap_or(false)
    }
    pub fn logs(&self, short: &str) -> String {
        let name = if short.starts_with(&self.tag) { short.to_string() } else { self.name(short) };
        let mut c = Command::new("timeout");
        c.args(["20", "docker", "logs", "--tail", "60", &name]);
        for (k, v) in self.e.env() {
            c.env(k, v);
        }
        match c.output() {
            Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            Err(e) => e.to_string(),
        }
    }

    /// The router's drop counters: (front → back, cut).
    pub fn fw_counters(&self) -> (u64, u64) {
        let s = self.exec("router", &["mpr-fw", "counters"]).unwrap_or_default();
        let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        (get("front_to_back "), get("cut "))
    }
}

impl Drop for Topo<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() || crate::common::verbose() {
            for c in &self.containers {
                eprintln!("----- docker logs {c} (tail) -----\n{}", self.logs(c));
            }
        }
        if !self.containers.is_empty() {
            let mut v = vec!["rm", "-f"];
            v.extend(self.containers.iter().map(String::as_str));
            let _ = self.e.docker(&v);
        }
        for n in self.nets.iter().rev() {
            let _ = self.e.docker(&["network", "rm", n]);
        }
    }
}

// ---------------------------------------------------------------------------
// A load balancer's view: clients that alternate over the front ends in
// rotation (a front end taken out of rotation gets no new requests).
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct LbSample {
    pub front: usize,
    pub path: usize,
    pub start: Duration,
    pub end: Duration,
    pub outcome: Result<u16, String>,
    pub backend: Option<String>,
}

impl LbSample {
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Ok(s) if (200..300).contains(&s))
    }
    pub fn took(&self) -> Duration {
        self.end - self.start
    }
}

pub struct Lb {
    t0: Instant,
    pub in_rotation: Arc<Vec<AtomicBool>>,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<LbSample>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Lb {
    /// `threads` clients, each request to the next front end in rotation and
    /// the next of `paths`; at most `max` requests and `limit` in all; each
    /// request bounded by `timeout`; `pace` between a client's requests.
    pub fn start(
        fronts: Vec<String>,
        paths: Vec<String>,
        threads: usize,
        max: u64,
        limit: Duration,
        timeout: Duration,
        pace: Duration,
    ) -> Lb {
        let t0 = Instant::now();
        let in_rotation: Arc<Vec<AtomicBool>> = Arc::new(fronts.iter().map(|_| AtomicBool::new(true)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let issued = Arc::new(AtomicU64::new(0));
        let (fronts, paths) = (Arc::new(fronts), Arc::new(paths));
        let threads = (0..threads)
            .map(|_| {
                let (rot, stop, samples, issued, fronts, paths) =
                    (in_rotation.clone(), stop.clone(), samples.clone(), issued.clone(), fronts.clone(), paths.clone());
                std::thread::spawn(move || {
                    let c = crate::common::client(timeout);
                    while !stop.load(Ordering::SeqCst) && t0.elapsed() < limit {
                        let n = issued.fetch_add(1, Ordering::SeqCst);
                        if n >= max {
                            break;
                        }
                        // The next front end in rotation (none: wait a little).
                        let k = fronts.len() as u64;
                        let Some(front) =
                            (0..k).map(|i| ((n + i) % k) as usize).find(|&i| rot[i].load(Ordering::SeqCst))
                        else {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        };
                        let path = (n / k % paths.len() as u64) as usize;
                        let url = format!("{}{}", fronts[front], paths[path]);
                        let start = t0.elapsed();
                        let r: Result<Resp, String> = crate::common::get_with(&c, &url);
                        let end = t0.elapsed();
                        let backend = r.as_ref().ok().and_then(|r| r.header("X-Backend").map(str::to_string));
                        let outcome = r.map(|r| r.status);
                        samples.lock().unwrap().push(LbSample { front, path, start, end, outcome, backend });
                        if !pace.is_zero() {
                            std::thread::sleep(pace);
                        }
                    }
                })
            })
            .collect();
        Lb { t0, in_rotation, stop, samples, threads }
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }
    pub fn set_rotation(&self, front: usize, on: bool) {
        self.in_rotation[front].store(on, Ordering::SeqCst);
    }
    pub fn done(&self) -> usize {
        self.samples.lock().unwrap().len()
    }
    /// The epoch time of the load's clock origin (to compare with container logs).
    pub fn epoch_of(&self, at: Duration) -> f64 {
        epoch_now() - (self.t0.elapsed().as_secs_f64() - at.as_secs_f64())
    }
    pub fn stop(mut self) -> Vec<LbSample> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut v = std::mem::take(&mut *self.samples.lock().unwrap());
        v.sort_by_key(|s| s.start);
        v
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Failures counted by kind ("status 503", "error ...").
pub fn breakdown(v: &[&LbSample]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in v.iter().filter(|s| !s.ok()) {
        let k = match &s.outcome {
            Ok(st) => format!("status {st}"),
            Err(e) => format!("error {}", e.chars().take(50).collect::<String>()),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

pub fn max_took(v: &[&LbSample]) -> Duration {
    v.iter().map(|s| s.took()).max().unwrap_or_default()
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn path_of(p: &Path) -> PathBuf {
    p.to_path_buf()
}
