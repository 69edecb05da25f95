//! The Debian packages of `make deb` (target/deb/) on a clean Debian: a
//! container of the mpr/pkg image (debootstrapped mpr/base + Debian's apache2
//! and systemd, nothing of this project; scripts/docker-images.sh builds it).
//!
//! 1. `deb_install_demo_remove_purge`: apt-get installs both packages (the
//!    module is enabled by its postinst through apache2-maintscript-helper),
//!    the demo runs from them (httpd + a ProxyReversed node + reversed-agent
//!    with its built-in responder): a request is answered 200 over a reversed
//!    link; then `apt-get remove` and `apt-get purge` leave httpd running and
//!    serving, with the module and every file of the packages gone.
//! 2. `systemd_runs_the_agent_unit`: the same image booted with systemd as
//!    PID 1; `systemctl start reversed-agent` reaches active (Type=notify,
//!    READY=1), the secret reaches the DynamicUser service as a credential
//!    (LoadCredential, %d), requests pass, `systemctl reload` (SIGHUP)
//!    applies a new idle count, and `systemctl stop` ends with Result=success.
//!
//! Every container is removed on Drop, also when the test fails (its output
//! is printed first). Needs root, Docker (the project's private engine) and
//! the packages: `make deb` (make test runs it first).

mod common;
#[path = "common/docker.rs"]
mod dock;

use common::workspace_dir;
use dock::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
static SEQ: AtomicU32 = AtomicU32::new(0);

/// The engine up and mpr/pkg current; None: dockerd cannot start here.
fn setup() -> Option<(std::sync::MutexGuard<'static, ()>, Engine, PathBuf)> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let debs = workspace_dir().join("target/deb");
    for p in ["libapache2-mod-proxy-reversed_", "reversed-agent_"] {
        let found = std::fs::read_dir(&debs)
            .map(|d| d.flatten().any(|f| f.file_name().to_string_lossy().starts_with(p)))
            .unwrap_or(false);
        assert!(found, "{}/{p}*.deb is missing: run `make deb` (make test does it first)", debs.display());
    }
    let e = Engine::up()?;
    let t = Instant::now();
    let script = workspace_dir().join("scripts/docker-images.sh");
    let bin = workspace_dir().join("target/release");
    let mut env = e.env();
    env.push(("MPR_IMAGES", "pkg".into()));
    if let Err(err) = run_bounded(Duration::from_secs(1200), script.to_str().unwrap(), &[bin.to_str().unwrap()], &env) {
        panic!("building mpr/pkg failed: {err}");
    }
    eprintln!("deb: mpr/pkg ready in {:.1} s", t.elapsed().as_secs_f64());
    Some((g, e, debs))
}

/// A container of mpr/pkg, removed on Drop (its logs printed when failing).
struct Ctr<'e> {
    e: &'e Engine,
    name: String,
    systemd: bool,
}

impl<'e> Ctr<'e> {
    fn start(e: &'e Engine, debs: &std::path::Path, systemd: bool) -> Ctr<'e> {
        let name = format!("mpr-deb-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let c = Ctr { e, name, systemd };
        let label = format!("org.mpr.test={}", std::process::id());
        let vol = format!("{}:/debs:ro", debs.display());
        let mut args: Vec<&str> =
            vec!["run", "-d", "--name", &c.name, "--label", &label, "--network", "none", "-v", &vol];
        let cmd: Vec<&str> = if systemd {
            // systemd as PID 1 on this cgroup v1 host: the host's cgroup tree
            // (its name=systemd hierarchy), CAP_SYS_ADMIN for its mounts, and
            // / made shared first: systemd does not do it inside a container,
            // and without it the credential mounts of a service never reach
            // the service's mount namespace (its $CREDENTIALS_DIRECTORY is empty).
            args.extend([
                "--cap-add",
                "SYS_ADMIN",
                "--security-opt",
                "seccomp=unconfined",
                "--security-opt",
                "apparmor=unconfined",
                "--cgroupns=host",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                "-e",
                "container=docker",
            ]);
            vec!["sh", "-c", "mount --make-rshared / && exec /lib/systemd/systemd"]
        } else {
            vec!["sleep", "infinity"]
        };
        args.push("mpr/pkg");
        args.extend(cmd);
        if let Err(err) = e.docker(&args) {
            panic!("docker run failed: {err}");
        }
        c
    }

    /// `sh -c SCRIPT` in the container (bounded by 90 s): Ok(output) or Err(output).
    fn sh(&self, script: &str) -> Result<String, String> {
        self.e.docker(&["exec", &self.name, "sh", "-c", script])
    }

    fn must(&self, what: &str, script: &str) -> String {
        match self.sh(script) {
            Ok(o) => o,
            Err(e) => panic!("{what} failed in {}: {e}", self.name),
        }
    }
}

impl Drop for Ctr<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let extra = if self.systemd {
                "journalctl --no-pager -n 80 -o short-monotonic 2>&1; systemctl --failed --no-pager 2>&1"
            } else {
                "tail -n 40 /var/log/apache2/error.log /var/log/reversed-agent.log 2>&1"
            };
            eprintln!("=== {} ===\n{}", self.name, self.sh(extra).unwrap_or_else(|e| e));
        }
        let _ = self.e.docker(&["rm", "-f", &self.name]);
    }
}

const SECRET: &str = "deb test secret 0123456789abcdef";

/// Installs both packages and configures the demo: a ProxyReversed node
/// app1 (inside <IfModule>, as a configuration that outlives the module
/// should be), its secret for httpd and for the agent, agent.toml with the
/// built-in responder. Prints "enabled:" lines for the checks.
fn install_and_configure(ctr: &Ctr<'_>) -> String {
    ctr.must(
        "installing the packages",
        &format!(
            r#"set -e
export DEBIAN_FRONTEND=noninteractive
cd /debs && apt-get install -y -q ./libapache2-mod-proxy-reversed_*.deb ./reversed-agent_*.deb 2>&1
echo "enabled: $(a2query -m proxy_reversed)"
test -f /usr/share/man/man1/reversed-agent.1.gz && echo "man page: yes"
test -f /usr/lib/systemd/system/reversed-agent.service && echo "unit: yes"
printf '%s\n' '{SECRET}' > /etc/apache2/reversed-app1.secret
chmod 0600 /etc/apache2/reversed-app1.secret
install -m 0600 /etc/apache2/reversed-app1.secret /etc/reversed-agent/secret
cat > /etc/apache2/conf-available/reversed-demo.conf <<'C'
ServerName localhost
<IfModule proxy_reversed_module>
    ProxyPass "/app/" "ajp://127.0.0.2:1/"
    ProxyReversed app1 "ajp://127.0.0.2:1/" 127.0.0.1:9000-9015 secret=/etc/apache2/reversed-app1.secret wait=2s
</IfModule>
C
a2enmod -q proxy_ajp
a2enconf -q reversed-demo
cat > /etc/reversed-agent/agent.toml <<'C'
node = "app1"
frontends = ["127.0.0.1:9000-9015"]
idle = 4
respond = true
C
reversed-agent --check-config /etc/reversed-agent/agent.toml --secret-file /etc/reversed-agent/secret
apache2ctl configtest 2>&1
"#
        ),
    )
}

/// Waits (≤ 10 s) for a 200 through the reversed link; prints the status line
/// and the responder header.
const REQUEST_THROUGH_LINK: &str = r#"
for i in $(seq 50); do
  if curl -fsS -o /dev/null http://127.0.0.1/app/hello; then break; fi
  sleep 0.2
done
curl -sS -D - -o /dev/null http://127.0.0.1/app/hello | tr -d '\r' | grep -E '^HTTP/|^X-Responder'
"#;

#[test]
fn deb_install_demo_remove_purge() {
    let Some((_g, e, debs)) = setup() else { return };
    let ctr = Ctr::start(&e, &debs, false);
    let out = install_and_configure(&ctr);
    assert!(out.contains("enabled: proxy_reversed (enabled by maintainer script)"), "{out}");
    assert!(out.contains("man page: yes") && out.contains("unit: yes"), "{out}");
    assert!(out.contains("Syntax OK"), "{out}");

    let out = ctr.must(
        "the demo",
        &format!(
            "set -e\napache2ctl start\n\
             nohup reversed-agent --config /etc/reversed-agent/agent.toml --secret-file /etc/reversed-agent/secret \
             >/var/log/reversed-agent.log 2>&1 &\necho $! > /run/reversed-agent.pid\n{REQUEST_THROUGH_LINK}"
        ),
    );
    assert!(
        out.contains("HTTP/1.1 200 OK") && out.contains("X-Responder: ajp"),
        "no 200 through the reversed link: {out}"
    );

    // Remove: the postinst's counterpart disables the module; httpd, restarted, serves on.
    let out = ctr.must(
        "apt-get remove",
        r#"set -e
kill "$(cat /run/reversed-agent.pid)"
pid=$(cat /var/run/apache2/apache2.pid)
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q libapache2-mod-proxy-reversed 2>&1
echo "module file: $(test -e /usr/lib/apache2/modules/mod_proxy_reversed.so && echo present || echo gone)"
echo "enabled link: $(test -e /etc/apache2/mods-enabled/proxy_reversed.load && echo present || echo gone)"
apache2ctl configtest 2>&1
apache2ctl graceful
sleep 1
echo "same parent: $(test "$pid" = "$(cat /var/run/apache2/apache2.pid)" && kill -0 "$pid" && echo yes)"
echo "loaded: $(apache2ctl -M 2>/dev/null | grep -c proxy_reversed || true)"
echo "root page: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/)"
"#,
    );
    for want in
        ["module file: gone", "enabled link: gone", "Syntax OK", "same parent: yes", "loaded: 0", "root page: 200"]
    {
        assert!(out.contains(want), "after apt-get remove, want {want:?}: {out}");
    }

    // Purge both: their conffiles go too; httpd still serves.
    let out = ctr.must(
        "apt-get purge",
        r#"set -e
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q libapache2-mod-proxy-reversed reversed-agent 2>&1
for f in /etc/apache2/mods-available/proxy_reversed.load /etc/apache2/mods-available/proxy_reversed.conf \
         /etc/reversed-agent/agent.toml /usr/bin/reversed-agent /usr/lib/systemd/system/reversed-agent.service; do
  test -e "$f" && echo "left: $f"
done
echo "packages: $(dpkg -l libapache2-mod-proxy-reversed reversed-agent 2>/dev/null | grep -c '^[ir]' || true)"
apache2ctl graceful
sleep 1
echo "root page: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/)"
"#,
    );
    assert!(!out.contains("left: "), "files left after purge: {out}");
    assert!(out.contains("packages: 0") && out.contains("root page: 200"), "after purge: {out}");
}

#[test]
fn systemd_runs_the_agent_unit() {
    let Some((_g, e, debs)) = setup() else { return };
    let ctr = Ctr::start(&e, &debs, true);
    let mut state = String::new();
    let booted = (0..60).any(|_| {
        state = ctr.sh("systemctl is-system-running 2>&1; true").unwrap_or_else(|e| e);
        let up = matches!(state.trim(), "running" | "degraded");
        if !up {
            std::thread::sleep(Duration::from_millis(500));
        }
        up
    });
    assert!(booted, "systemd did not finish booting as PID 1 within 30 s: {state}");
    let out = install_and_configure(&ctr);
    assert!(out.contains("Syntax OK"), "{out}");

    // httpd under systemd too (the image masks it so that it does not start at boot).
    ctr.must("starting apache2", "systemctl unmask -q apache2 && systemctl start apache2");
    let t = Instant::now();
    let out = ctr.must(
        "systemctl start reversed-agent",
        "systemctl start reversed-agent && systemctl show -p ActiveState,SubState,Type,StatusText,MainPID reversed-agent",
    );
    assert!(out.contains("ActiveState=active") && out.contains("Type=notify"), "{out}");
    // The agent's own READY=1 status line: systemctl start returned because it arrived.
    assert!(out.contains("StatusText=node app1: 1 front ends, 4 idle connections each"), "{out}");
    eprintln!("deb: reversed-agent.service active {:.2} s after systemctl start", t.elapsed().as_secs_f64());
    let main_pid = out.lines().find_map(|l| l.strip_prefix("MainPID=")).unwrap_or("").to_string();
    // The secret came through LoadCredential (%d/secret): the links authenticate.
    let out = ctr.must("a request", REQUEST_THROUGH_LINK);
    assert!(out.contains("HTTP/1.1 200 OK") && out.contains("X-Responder: ajp"), "{out}");
    let out = ctr.must("the unit's user", "ps -o user= -p \"$(systemctl show -p MainPID --value reversed-agent)\"");
    assert!(!out.trim().is_empty() && out.trim() != "root", "the agent runs as root: {out}");

    // Reload: SIGHUP through ExecReload; the same process applies idle = 6.
    let out = ctr.must(
        "systemctl reload",
        r#"set -e
sed -i 's/^idle = 4/idle = 6/' /etc/reversed-agent/agent.toml
systemctl reload reversed-agent
for i in $(seq 50); do
  journalctl -u reversed-agent --no-pager -o cat | grep -q 'configuration reloaded' && break
  sleep 0.2
done
journalctl -u reversed-agent --no-pager -o cat | grep 'configuration reloaded' | tail -1
systemctl show -p ActiveState,MainPID reversed-agent
"#,
    );
    assert!(out.contains("6 idle connections per front end"), "reload not applied: {out}");
    assert!(out.contains("ActiveState=active") && out.contains(&format!("MainPID={main_pid}")), "{out}");

    // Stop: SIGTERM, the agent closes its links and exits 0 in time.
    let t = Instant::now();
    let out = ctr.must(
        "systemctl stop",
        "systemctl stop reversed-agent && systemctl show -p ActiveState,Result,ExecMainCode,ExecMainStatus reversed-agent",
    );
    assert!(t.elapsed() < Duration::from_secs(20), "systemctl stop took {:?}", t.elapsed());
    for want in ["ActiveState=inactive", "Result=success", "ExecMainStatus=0"] {
        assert!(out.contains(want), "after systemctl stop, want {want}: {out}");
    }
    let log = ctr.must("the journal", "journalctl -u reversed-agent --no-pager -o cat");
    assert!(!log.contains(SECRET), "the secret reached the journal");
}
