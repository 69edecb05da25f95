//! httpd's own status (issue 13): with mod_status and `ExtendedStatus On`,
//! /server-status carries a reversed-links table per node and `?auto` its
//! indexed lines; with `ExtendedStatus Off`, neither. Real httpd, real agent.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "server-status secret 0123456789ab";

const SERVER_STATUS: &str = "<Location \"/server-status\">\n    SetHandler server-status\n</Location>\n";

fn auto_lines(h: &Httpd) -> BTreeMap<String, String> {
    let r = get(&h.url("/server-status?auto")).expect("GET /server-status?auto");
    assert_eq!(r.status, 200);
    r.text().lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn start(extended: bool) -> (Httpd, RNode, RNode, Agent) {
    let web = RNode::new("web1", "http", "127.0.0.3:1", 4);
    let dead = RNode::new("dead1", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD).module("status_module", "mod_status.so");
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&format!("ExtendedStatus {}\n", if extended { "On" } else { "Off" }))
        .conf(&web.conf(&format!("secret={} wait=5s", secret.display())))
        .conf(&dead.conf(&format!("secret={} wait=100ms", secret.display())))
        .conf(SERVER_STATUS)
        .conf(STATUS_LOCATION)
        .start();
    let agent = AgentArgs::respond(&web.name, Some(&secret), &web.range()).idle(3).spawn(Some(h.dir()));
    wait_all_idle(&h, &["web1"], Duration::from_secs(15));
    (h, web, dead, agent)
}

#[test]
fn extended_status_shows_reversed_links_per_node() {
    let (h, web, dead, _agent) = start(true);
    assert_served(&web, &get(&web.url_on(&h, "hello")), "GET via web1");
    assert_eq!(get(&dead.url_on(&h, "x")).unwrap().status, 503);

    // ?auto: mod_proxy's indexed style, one index per node.
    let mut a = BTreeMap::new();
    let ok = wait_until(Duration::from_secs(5), || {
        a = auto_lines(&h);
        a.get("ProxyReversedNode[0]Idle").map(String::as_str) == Some("3")
    });
    assert!(ok, "?auto never showed 3 idle links for web1: {a:#?}");
    assert_eq!(a.get("ProxyReversedNodes").map(String::as_str), Some("2"), "{a:#?}");
    let want = [
        ("ProxyReversedNode[0]Name", "web1".to_string()),
        ("ProxyReversedNode[0]Range", web.range()),
        ("ProxyReversedNode[0]BoundChildren", "1".into()),
        ("ProxyReversedNode[0]Unavailable", "0".into()),
        ("ProxyReversedNode[0]Rejected", "0".into()),
        ("ProxyReversedNode[1]Name", "dead1".into()),
        ("ProxyReversedNode[1]Idle", "0".into()),
        ("ProxyReversedNode[1]Waited", "1".into()),
        ("ProxyReversedNode[1]Unavailable", "1".into()),
    ];
    for (k, v) in want {
        assert_eq!(a.get(k), Some(&v), "{k} in {a:#?}");
    }
    // 3 at start and the replacement of the used link.
    let accepted: u64 = a["ProxyReversedNode[0]Accepted"].parse().unwrap();
    assert_eq!(accepted, 4, "{a:#?}");
    // mod_status's own lines are still there.
    assert!(a.contains_key("BusyWorkers") && a.contains_key("Scoreboard"), "{a:#?}");

    // The HTML page: a table with a row per node.
    let html = get(&h.url("/server-status")).unwrap().text();
    assert!(html.contains("<h2 id=\"proxy-reversed\">Reversed links (mod_proxy_reversed)</h2>"), "{html}");
    let row = format!("<tr><td>web1</td><td>{}</td><td>{}</td><td>1</td><td>3</td>", web.url, web.range());
    assert!(html.contains(&row), "no row {row:?} in\n{html}");
    assert!(html.contains("<tr><td>dead1</td>"), "{html}");
    assert!(html.trim_end().ends_with("</html>"), "the section sits inside mod_status's page");
}

#[test]
fn without_extended_status_the_section_is_absent() {
    let (h, _web, _dead, _agent) = start(false);
    let a = auto_lines(&h);
    assert!(a.contains_key("BusyWorkers"), "mod_status answers: {a:#?}");
    assert!(!a.keys().any(|k| k.starts_with("ProxyReversed")), "{a:#?}");
    let html = get(&h.url("/server-status")).unwrap().text();
    assert!(!html.contains("Reversed links"), "{html}");
}
