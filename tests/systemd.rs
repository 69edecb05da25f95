//! reversed-agent as a systemd service (issue 13): the real binary tells a
//! notify socket (what systemd's Type=notify listens on) READY=1 once it
//! runs, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM;
//! and systemd-analyze finds nothing to say about systemd/reversed-agent.service.
//! One test per file: it sets NOTIFY_SOCKET for the agent it starts.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SECRET: &str = "systemd test secret 0123456789abc";

/// The notify messages that arrive within `d`, joined; stops early once `until` is seen.
fn messages(sock: &UnixDatagram, d: Duration, until: &str) -> String {
    let end = Instant::now() + d;
    let mut all = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !all.contains(until) {
        sock.set_read_timeout(Some(end.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('\n');
        }
    }
    all
}

fn verify_unit(unit: &Path) -> (bool, String) {
    let o = Command::new("systemd-analyze").arg("verify").arg(unit).output().expect("systemd-analyze runs");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn agent_notifies_systemd_and_the_unit_verifies() {
    let node = RNode::new("app1", "http", "127.0.0.3:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={} wait=5s", secret.display()))).conf(STATUS_LOCATION).start();

    let sock_path = h.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &sock_path);
    let cfg = h.dir().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"app1\"\nsecret_file = \"{}\"\nfrontends = [\"{}\"]\nidle = 2\nrespond = true\n",
            secret.display(),
            node.range()
        ),
    )
    .unwrap();
    let mut agent = Agent::spawn(Some(h.dir()), &["--config".into(), cfg.display().to_string()]);
    std::env::remove_var("NOTIFY_SOCKET");

    let m = messages(&sock, Duration::from_secs(10), "READY=1");
    assert!(m.contains("READY=1"), "no READY=1: {m:?}; log:\n{}", agent.log());
    assert!(m.contains("STATUS=node app1: 1 front ends, 2 idle connections each"), "{m:?}");
    wait_all_idle(&h, &["app1"], Duration::from_secs(15));

    let pid = agent.pid().unwrap().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let m = messages(&sock, Duration::from_secs(10), "READY=1");
    let (reloading, ready) = (m.find("RELOADING=1"), m.find("READY=1"));
    assert!(reloading.is_some() && ready.is_some() && reloading < ready, "reload messages: {m:?}");
    assert!(m.contains("MONOTONIC_USEC="), "{m:?}");

    let st = agent.stop();
    let m = messages(&sock, Duration::from_secs(2), "STOPPING=1");
    assert!(m.contains("STOPPING=1"), "no STOPPING=1: {m:?}");
    assert!(st.is_some_and(|s| s.success()), "agent exit {st:?}");

    // The unit file, with the real binary's directory for @BINDIR@.
    let Some(_) = which("systemd-analyze") else {
        assert!(std::env::var_os("CI").is_none(), "systemd-analyze is missing and CI is set");
        eprintln!("SKIP: no systemd-analyze; the unit was not verified");
        return;
    };
    let bindir = agent_path().parent().unwrap().to_path_buf();
    let text = std::fs::read_to_string(workspace_dir().join("systemd/reversed-agent.service"))
        .unwrap()
        .replace("@BINDIR@", &bindir.display().to_string());
    let unit = h.dir().join("reversed-agent.service");
    std::fs::write(&unit, &text).unwrap();
    let (ok, out) = verify_unit(&unit);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
    for key in ["Type=notify", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure"] {
        assert!(text.contains(&format!("\n{key}\n")), "the unit lacks {key}");
    }
    // The check can fail: a unit systemd cannot parse is reported.
    std::fs::write(&unit, text.replace("Type=notify", "Type=notifyy")).unwrap();
    let (_, out) = verify_unit(&unit);
    assert!(out.contains("Failed to parse service type"), "systemd-analyze said nothing about a bad unit: {out}");
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(bin)).find(|p| p.exists())
}
