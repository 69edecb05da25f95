//! `--log-format json`: every line the agent writes is one JSON object with
//! its timestamp, level, message and node, and events about one httpd address
//! carry it as the field `peer`; the text form names the node (and peer) too.

use std::process::{Command, Stdio};
use std::time::Duration;

fn run(format: &str) -> (String, u16) {
    // A closed port: the agent logs its start, a failed dial, and its stop.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = Command::new(env!("CARGO_BIN_EXE_reversed-agent"))
        .args(["--node", "logtest-1", "--no-auth", "--respond", "--log-format", format])
        .args(["--frontend", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SIGTERM through the kill(1) command (no unsafe in this crate).
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let out = c.wait_with_output().unwrap();
    (String::from_utf8(out.stderr).unwrap(), port)
}

#[test]
fn json_lines_carry_level_message_and_node() {
    let (text, port) = run("json");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    let mut levels = Vec::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
        assert_eq!(v["node"], "logtest-1", "{l}");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{l}");
        levels.push(v["level"].as_str().unwrap().to_string());
    }
    assert!(levels.contains(&"INFO".to_string()) && levels.contains(&"WARN".to_string()), "{levels:?}");
    assert!(text.contains("failed: Connection refused"), "{text}");
    // The failed dial names its peer in a field of its own; events about no
    // single peer (start, stop) have none.
    let peer = format!("127.0.0.1:{port}");
    let parsed: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let dial = parsed
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains("Connection refused")))
        .unwrap_or_else(|| panic!("no failed dial: {text}"));
    assert_eq!(dial["peer"], peer.as_str(), "{dial}");
    assert_eq!(dial["level"], "WARN", "{dial}");
    assert!(parsed.iter().any(|v| v["peer"].is_null()), "every line has a peer: {text}");

    let (plain, port) = run("text");
    assert!(plain.lines().all(|l| l.contains("node=\"logtest-1\"")), "{plain}");
    assert!(
        plain.lines().any(|l| l.contains("Connection refused") && l.contains(&format!("peer=127.0.0.1:{port}"))),
        "{plain}"
    );
    assert!(!plain.contains('\u{1b}'), "colour codes in a log file: {plain:?}");
}
