//! A real firewall: two network namespaces made here, `front` (httpd) and
//! `app` (the agent's responder as the backend, plus the agent); nftables
//! in `app` drops every inbound new connection. A forward ProxyPass to the
//! app then fails while the reversed worker serves.
//!
//! Skipped with a message (not failed) only where the machine forbids
//! namespaces; with CI set, missing `ip`/`nft` fail the test.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "namespace firewall secret 0123456789";

/// Deletes the namespaces (and with them the veth pair) on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = run(&["ip", "netns", "del", n], None);
        }
    }
}

fn tool(name: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(name).exists())
}

fn get_in(ns: &str, url: String, timeout: Duration) -> Result<Resp, String> {
    in_netns(ns, move || get_with(&client(timeout), &url))?
}

#[test]
fn firewall_forbids_forward_but_reversed_serves() {
    for t in ["ip", "nft"] {
        if !tool(t) {
            if std::env::var_os("CI").is_some() {
                panic!("`{t}` is missing and CI is set: install iproute2 and nftables");
            }
            eprintln!("SKIPPED: `{t}` is missing (install iproute2 nftables to run the firewall test)");
            return;
        }
    }
    if !is_root() {
        eprintln!("SKIPPED: network namespaces need root");
        return;
    }
    let id = std::process::id() % 100_000;
    let (front, app) = (format!("mprf{id}"), format!("mpra{id}"));
    if let Err(e) = run(&["ip", "netns", "add", &front], None) {
        eprintln!("SKIPPED: this machine forbids network namespaces: {e}");
        return;
    }
    let _ns = Namespaces(vec![front.clone(), app.clone()]);
    run(&["ip", "netns", "add", &app], None).unwrap();
    let (vf, va) = (format!("vf{id}"), format!("va{id}"));
    let (ip_front, ip_app) = ("10.213.0.1", "10.213.0.2");
    for cmd in [
        vec!["ip", "link", "add", &vf, "type", "veth", "peer", "name", &va],
        vec!["ip", "link", "set", &vf, "netns", &front],
        vec!["ip", "link", "set", &va, "netns", &app],
        vec!["ip", "-n", &front, "addr", "add", "10.213.0.1/24", "dev", &vf],
        vec!["ip", "-n", &app, "addr", "add", "10.213.0.2/24", "dev", &va],
        vec!["ip", "-n", &front, "link", "set", &vf, "up"],
        vec!["ip", "-n", &app, "link", "set", &va, "up"],
        vec!["ip", "-n", &front, "link", "set", "lo", "up"],
        vec!["ip", "-n", &app, "link", "set", "lo", "up"],
    ] {
        if let Err(e) = run(&cmd, None) {
            if cmd[2] == "add" && cmd[1] == "link" && e.contains("Operation not permitted") {
                eprintln!("SKIPPED: this machine forbids veth pairs: {e}");
                return;
            }
            panic!("{e}");
        }
    }

    // httpd in `front`: a forward ProxyPass to the app and a reversed node.
    let fwd_port = 18009;
    let (first, last) = (19100, 19103);
    let b = Httpd::builder(Mpm::Event).netns(&front);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&format!(
            "ProxyPass \"/fwd/\" \"ajp://{ip_app}:{fwd_port}/\" connectiontimeout=1 timeout=2 disablereuse=On retry=0\n\
             ProxyPass \"/app/\" \"ajp://127.0.0.2:1/\"\n\
             ProxyReversed app1 \"ajp://127.0.0.2:1/\" {ip_front}:{first}-{last} secret={} wait=2s\n",
            secret.display()
        ))
        .conf(STATUS_LOCATION)
        .start();
    let dir = TempDir::new("netns");
    // The app's forward backend: the responder listening in `app`.
    let _fwd = Agent::spawn_in(
        Some(&app),
        Some(dir.path()),
        &["--respond".into(), "--listen".into(), format!("{ip_app}:{fwd_port}")],
    );
    let fwd_url = h.url("/fwd/hello");
    let app_url = h.url("/app/hello");
    // Without the firewall the forward path works (the test's control).
    assert!(
        wait_until(
            Duration::from_secs(10),
            || matches!(get_in(&front, fwd_url.clone(), Duration::from_secs(5)), Ok(r) if r.status == 200)
        ),
        "the forward path does not work even without the firewall"
    );

    // The firewall: no inbound new connection into `app`.
    if let Err(e) = run(
        &["ip", "netns", "exec", &app, "nft", "-f", "-"],
        Some(
            "table inet mprfw {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    \
             iif \"lo\" accept\n    ct state established,related accept\n    ct state new counter drop\n  }\n}\n",
        ),
    ) {
        // A kernel without nf_tables, or a sandbox that forbids it.
        if e.contains("Operation not permitted") || e.contains("No such file or directory") {
            eprintln!("SKIPPED: this machine forbids nftables in a namespace: {e}");
            return;
        }
        panic!("{e}");
    }
    let t = Instant::now();
    let r = get_in(&front, fwd_url.clone(), Duration::from_secs(15)).expect("forward request");
    let fwd_took = t.elapsed();
    assert_eq!(r.status, 503, "the forward ProxyPass got through the firewall: {} {:?}", r.status, r.text());

    // The agent dials out from `app`; the reversed worker serves.
    let _agent = Agent::spawn_in(
        Some(&app),
        Some(dir.path()),
        &AgentArgs::respond("app1", Some(&secret), &format!("{ip_front}:{first}-{last}")).idle(8).args(),
    );
    let status_url = h.url("/reversed-status?json");
    let mut last = Err(String::new());
    let t = Instant::now();
    let ok = wait_until(Duration::from_secs(15), || {
        last = get_in(&front, status_url.clone(), Duration::from_secs(5)).and_then(|r| parse_status(&r.text()));
        matches!(&last, Ok(s) if s.all_children_idle(&["app1"]))
    });
    assert!(ok, "the agent did not get through: {last:?}");
    let ready = t.elapsed();
    let mut served = 0;
    for i in 0..20 {
        let r = get_in(&front, format!("{app_url}/{i}"), Duration::from_secs(10)).expect("reversed request");
        assert_eq!(r.status, 200, "reversed request {i}: {} {:?}", r.status, r.text());
        assert_eq!(r.header("X-Responder"), Some("ajp"));
        served += 1;
    }
    // The forward path is still closed.
    let r = get_in(&front, fwd_url, Duration::from_secs(15)).unwrap();
    assert_eq!(r.status, 503);
    let counters =
        run(&["ip", "netns", "exec", &app, "nft", "list", "chain", "inet", "mprfw", "input"], None).unwrap_or_default();
    let dropped = counters
        .lines()
        .find(|l| l.contains("drop"))
        .and_then(|l| l.split("packets").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    figure(
        "netns-firewall",
        &format!(
            "nftables in `app` drops inbound new connections ({dropped} packets dropped): forward ProxyPass → 503 after {:.2} s; reversed worker idle after {:.2} s and served {served}/20",
            fwd_took.as_secs_f64(),
            ready.as_secs_f64()
        ),
    );
}
