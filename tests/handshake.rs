//! The module speaks the handshake of reversed-proto on the wire: a raw
//! dialer written here (no reversed-agent) authenticates, is pooled, and is
//! then handed an AJP13 request, which it answers by hand.

mod common;

use common::*;
use reversed_proto as p;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SECRET: &str = "raw handshake secret 0123456789";

fn read_exact_t(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    v
}

fn ajp_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn ajp_packet(payload: &[u8]) -> Vec<u8> {
    let mut v = b"AB".to_vec();
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn raw_dialer_is_pooled_and_gets_the_request() {
    let node = RNode::new("raw1", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", &format!("  {SECRET}\n"));
    let h = b.conf(&node.conf(&format!("secret={} wait=2s", secret.display()))).conf(STATUS_LOCATION).start();
    let mut last = Err(String::new());
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = status_json(&h);
            matches!(&last, Ok(s) if s.ports("raw1").len() == 1)
        }),
        "the child did not bind: {last:?}"
    );
    let port = last.unwrap().ports("raw1")[0];

    // HELLO / CHALLENGE / PROOF / VERDICT, by hand. The secret file's
    // surrounding white space is not part of the secret.
    let key = SECRET.as_bytes();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let cn = p::nonce().unwrap();
    s.write_all(&p::encode_hello(p::VERSION, b"raw1", &cn)).unwrap();
    let ch = read_exact_t(&mut s, p::challenge_ok_len(p::VERSION));
    let Ok(Some((p::Challenge::Continue { server_nonce, server_proof, ping, .. }, _))) = p::parse_challenge(&ch) else {
        panic!("no continuing challenge: {ch:02x?}")
    };
    assert_ne!(server_nonce, cn, "the server echoed the client nonce");
    assert!(
        p::Transcript { version: p::VERSION, node: b"raw1", client_nonce: &cn, server_nonce: &server_nonce, ping }
            .verify_server_proof(key, &server_proof),
        "server proof does not verify"
    );
    s.write_all(
        &p::Transcript { version: p::VERSION, node: b"raw1", client_nonce: &cn, server_nonce: &server_nonce, ping }
            .client_proof(key),
    )
    .unwrap();
    let v = read_exact_t(&mut s, 1);
    assert_eq!(p::Verdict::from_byte(v[0]), Some(p::Verdict::Accepted));

    let st = wait_some_idle(&h, &["raw1"], Duration::from_secs(5));
    assert_eq!(st.idle("raw1"), 1, "{st:?}");
    assert_eq!(st.accepted("raw1"), 1, "{st:?}");

    // A request through httpd arrives on this very socket as AJP13.
    let url = node.url_on(&h, "hand/made?x=1");
    let client = std::thread::spawn(move || get(&url));
    // With verify=0 (the default) an idle link is pinged before it is used.
    let ping = read_exact_t(&mut s, 2);
    assert_eq!(ping, p::PING, "no PING before the request: {ping:02x?}");
    s.write_all(&p::PONG).unwrap();
    let head = read_exact_t(&mut s, 4);
    assert_eq!(&head[..2], &[0x12, 0x34], "not an AJP13 packet: {head:02x?}");
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let fwd = read_exact_t(&mut s, len);
    assert_eq!(fwd[0], 2, "not a FORWARD_REQUEST");
    let text = String::from_utf8_lossy(&fwd);
    assert!(text.contains("/hand/made"), "request URI not forwarded: {text:?}");

    let mut hdr = vec![4u8];
    hdr.extend_from_slice(&200u16.to_be_bytes());
    ajp_string(&mut hdr, "OK");
    hdr.extend_from_slice(&1u16.to_be_bytes());
    hdr.extend_from_slice(&0xA008u16.to_be_bytes()); // Content-Length
    ajp_string(&mut hdr, "9");
    let mut body = vec![3u8];
    body.extend_from_slice(&9u16.to_be_bytes());
    body.extend_from_slice(b"by hand!\n");
    body.push(0);
    let mut out = ajp_packet(&hdr);
    out.extend(ajp_packet(&body));
    out.extend(ajp_packet(&[5, 1]));
    s.write_all(&out).unwrap();

    let r = client.join().unwrap().expect("client request");
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(r.text(), "by hand!\n");
    let st = status_json(&h).unwrap();
    assert_eq!(st.idle("raw1"), 0, "{st:?}");

    // The used connection is mod_proxy's now; closing it retires it and a
    // later request (no dialer left) ends in a bounded 503.
    drop(s);
    let r = get_with(&client_for(15), &node.url_on(&h, "again")).unwrap();
    assert_eq!(r.status, 503);
}

fn client_for(secs: u64) -> ureq::Agent {
    client(Duration::from_secs(secs))
}
