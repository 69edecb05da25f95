//! The HTML status page (issue 13): `?html`, or the bare URL for a client
//! that asks for text/html. A real headless Chromium (Debian's `chromium`)
//! loads it from a running httpd; the test asserts on the DOM Chromium
//! built (`--dump-dom`: the parser's `<tbody>` shows it is not the source)
//! and takes a screenshot (`--screenshot`), checked to be a PNG of some
//! size and copied to `$MPR_SCREENSHOT` when that is set. Without chromium
//! the browser part is skipped with a message, except under CI where it fails.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "status page secret 0123456789abcd";
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Runs headless Chromium with `args` in a process group of its own, bounded
/// by CHROMIUM_TIMEOUT (the whole group is killed then); returns stdout.
fn run_chromium(bin: &Path, profile: &Path, args: &[String]) -> String {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().expect("chromium does not start");
    let pgid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() >= end {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Helpers it left behind go with the group, also after a normal exit.
    kill_group(pgid);
    let _ = child.wait();
    let stdout = reader.join().unwrap_or_default();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.is_some(), "chromium did not finish within {CHROMIUM_TIMEOUT:?}; stderr:\n{err}");
    assert!(status.unwrap().success(), "chromium failed: {status:?}; stderr:\n{err}");
    stdout
}

/// `kill -KILL -- -PGID`: the process group the chromium run was started in.
fn kill_group(pgid: i32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
}

/// A raw GET of `path` with an Accept header; returns (head, body).
fn raw_get(h: &Httpd, path: &str, accept: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", h.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn html_status_page_renders_in_chromium() {
    let web = RNode::new("web1", "http", "127.0.0.3:1", 4);
    let dead = RNode::new("dead1", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&web.conf(&format!("secret={} wait=5s", secret.display())))
        .conf(&dead.conf(&format!("secret={} wait=100ms", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let _agent = AgentArgs::respond(&web.name, Some(&secret), &web.range()).idle(3).spawn(Some(h.dir()));
    wait_all_idle(&h, &["web1"], Duration::from_secs(15));
    assert_eq!(get(&dead.url_on(&h, "x")).unwrap().status, 503);

    // Content negotiation: a browser gets HTML at the bare URL, others text.
    let (head, body) = raw_get(&h, "/reversed-status", "text/html,application/xhtml+xml,*/*;q=0.8");
    assert!(head.contains("Content-Type: text/html; charset=utf-8"), "{head}");
    assert!(head.contains("Vary: Accept"), "{head}");
    assert!(body.contains("<table id=\"nodes\">"), "{body}");
    let (head, body) = raw_get(&h, "/reversed-status", "*/*");
    assert!(head.contains("Content-Type: text/plain; charset=utf-8"), "{head}");
    assert!(body.starts_with("mod_proxy_reversed: 1 children, 2 nodes"), "{body}");
    let (head, _) = raw_get(&h, "/reversed-status?html&refresh=0", "*/*");
    assert!(head.contains("Content-Type: text/html"), "{head}");

    let Some(bin) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "chromium is missing and CI is set");
        eprintln!("SKIP: no chromium (apt-get install chromium); the browser part did not run");
        return;
    };
    let profile = h.dir().join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let url = h.url("/reversed-status?html");
    let dom = run_chromium(&bin, &profile, &["--dump-dom".into(), url.clone()]);
    // The DOM as Chromium built it: the HTML parser adds <tbody>.
    assert!(dom.contains("<title>mod_proxy_reversed status</title>"), "{dom}");
    assert!(dom.contains("<meta http-equiv=\"refresh\" content=\"10\">"), "{dom}");
    assert!(dom.contains("<table id=\"nodes\">\n<tbody><tr><th class=\"name\">node</th>"), "not a parsed DOM:\n{dom}");
    let row_start = dom.find("<tr data-node=\"web1\">").unwrap_or_else(|| panic!("no row for web1 in\n{dom}"));
    let row = &dom[row_start..row_start + dom[row_start..].find("</tr>").unwrap()];
    assert!(row.contains("<td class=\"idle\">3</td>"), "web1 row: {row}");
    assert!(row.contains("<td class=\"busy\">0</td>"), "web1 row: {row}");
    assert!(row.contains(&format!("<td class=\"name\">{}</td>", web.range())), "web1 row: {row}");
    let dead_start = dom.find("data-node=\"dead1\"").unwrap_or_else(|| panic!("no row for dead1 in\n{dom}"));
    let dead_row = &dom[dead_start..dead_start + dom[dead_start..].find("</tr>").unwrap()];
    assert!(dom[..dead_start].ends_with("<tr class=\"warn\" "), "a node without idle links is marked: {dead_row}");
    assert!(dead_row.contains("<td class=\"unavailable\">1</td>"), "dead1 row: {dead_row}");
    assert!(dom.contains("<table id=\"children\">\n<tbody><tr><th>pid</th>"), "{dom}");
    assert!(!dom.contains("<script"), "the page needs no JavaScript");

    let shot = h.dir().join("status-page.png");
    run_chromium(&bin, &profile, &[format!("--screenshot={}", shot.display()), "--window-size=1280,720".into(), url]);
    let png = std::fs::read(&shot).expect("no screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a {} byte screenshot is too small to show the tables", png.len());
    let keep = std::env::var_os("MPR_SCREENSHOT").map(PathBuf::from);
    if let Some(k) = &keep {
        std::fs::copy(&shot, k).unwrap();
    }
    eprintln!(
        "FIGURE status_page | screenshot {} bytes{}",
        png.len(),
        keep.map(|k| format!(", kept at {}", k.display())).unwrap_or_default()
    );
}
