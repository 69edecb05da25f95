//! A dying connection does not take a request down with it while another is
//! idle: the connection handed to a GET is dropped by its dialer as soon as
//! the request arrives (mod_proxy_ajp answers 503 for an idempotent request
//! that got no response), and the module runs the request again on the next
//! idle connection.

mod common;

use common::*;
use std::sync::mpsc;
use std::time::Duration;

const SECRET: &str = "retry test secret 0123456789abcdef";

/// A dropper dials last (so it is handed out first), answers the check
/// before use, and dies with the request; returns (status, retried, got).
fn dropped_request(path: &str) -> (u16, bool, Vec<u8>) {
    let node = RNode::new("retry1", "ajp", "127.0.0.2:1", 1);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={} wait=2s", secret.display()))).conf(STATUS_LOCATION).start();
    let _agent = AgentArgs::respond("retry1", Some(&secret), &node.range()).idle(2).spawn(Some(h.dir()));
    assert!(wait_until(Duration::from_secs(10), || status_json(&h).is_ok_and(|s| s.idle("retry1") >= 2)));

    // The dropper dials last, so the child's LIFO pool hands it out first.
    let port = status_json(&h).unwrap().ports("retry1")[0];
    let mut dropper = raw_dial(port, "retry1", SECRET.as_bytes(), Duration::from_secs(5)).expect("dropper handshake");
    assert!(wait_until(Duration::from_secs(5), || status_json(&h).is_ok_and(|s| s.idle("retry1") >= 3)));
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        // It answers the check before use, then dies with the request.
        let got = read_request_start(&mut dropper, Duration::from_secs(10)).unwrap_or_default();
        drop(dropper);
        let _ = tx.send(got);
    });

    let r = get(&node.url_on(&h, path)).expect("GET through the reversed worker");
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("the dropper was never handed the request");
    t.join().unwrap();
    assert!(got.starts_with(&[0x12, 0x34]), "the dropper got no AJP request: {got:02x?}");
    if r.status == 200 {
        assert_eq!(r.header("X-Responder"), Some("ajp"));
    }
    (r.status, h.error_log().contains("retrying on another idle connection"), got)
}

#[test]
fn get_survives_a_connection_dropped_on_first_bytes() {
    let (status, retried, _) = dropped_request("/hello");
    assert_eq!(status, 200, "the GET failed with its dropped connection");
    assert!(retried, "no retry in the error log");
}

/// As mod_proxy_ajp's own rule: a GET with arguments may have side effects,
/// so it is not sent again after its connection died.
#[test]
fn get_with_arguments_is_not_retried() {
    let (status, retried, _) = dropped_request("/hello?order=1");
    assert_ne!(status, 200, "a GET with arguments ran again");
    assert!(!retried, "a GET with arguments was retried");
}
