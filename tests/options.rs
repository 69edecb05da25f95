//! ProxyReversed options beyond the defaults: auth=none, allow=, maxidle=,
//! and reversed BalancerMembers.

mod common;

use common::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECRET: &str = "options secret 0123456789abcdef";

#[test]
fn auth_none_node_serves_agent_without_handshake() {
    let ajp = RNode::new("open1", "ajp", "127.0.0.2:1", 4);
    let h = Httpd::builder(Mpm::Event).conf(&ajp.conf("auth=none wait=2s")).conf(STATUS_LOCATION).start();
    let _a = AgentArgs::respond(&ajp.name, None, &ajp.range()).idle(4).spawn(Some(h.dir()));
    wait_all_idle(&h, &["open1"], Duration::from_secs(15));
    for i in 0..10 {
        assert_served(&ajp, &get(&ajp.url_on(&h, &format!("n/{i}"))), "auth=none");
    }
}

#[test]
fn hmac_node_refuses_agent_without_handshake() {
    // An agent in --no-auth mode sends no HELLO: it waits for requests right
    // after connecting. A node with a secret must never pool such a socket.
    let ajp = RNode::new("sec1", "ajp", "127.0.0.2:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf("ProxyReversedHandshakeTimeout 1s")
        .conf(&ajp.conf(&format!("secret={} wait=1s", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let _a = AgentArgs::respond(&ajp.name, None, &ajp.range()).idle(4).spawn(Some(h.dir()));
    std::thread::sleep(Duration::from_secs(3));
    let st = status_json(&h).unwrap();
    assert_eq!(st.idle("sec1"), 0, "unauthenticated connections were pooled: {st:?}");
    assert_eq!(st.accepted("sec1"), 0, "{st:?}");
    let r = get(&ajp.url_on(&h, "x")).unwrap();
    assert_eq!(r.status, 503, "a request was served over an unauthenticated connection");
}

#[test]
fn allow_list_refuses_other_sources() {
    // Dialers come from 127.0.0.1: allowed for web1, not for ajp1.
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 4);
    let web = RNode::new("web1", "http", "127.0.0.3:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let s = secret.display().to_string();
    let h = b
        .conf(&ajp.conf(&format!("secret={s} wait=1s allow=127.0.0.9/32,10.0.0.0/8")))
        .conf(&web.conf(&format!("secret={s} wait=2s allow=127.0.0.0/8")))
        .conf(STATUS_LOCATION)
        .start();
    let _a1 = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(4).spawn(Some(h.dir()));
    let _a2 = AgentArgs::respond(&web.name, Some(&secret), &web.range()).idle(4).spawn(Some(h.dir()));
    let st = wait_all_idle(&h, &["web1"], Duration::from_secs(15));
    assert_served(&web, &get(&web.url_on(&h, "ok")), "allowed source");
    std::thread::sleep(Duration::from_secs(1));
    let st2 = status_json(&h).unwrap();
    assert_eq!(st2.idle("ajp1") + st2.accepted("ajp1"), 0, "a dialer outside allow= was accepted: {st2:?}");
    let r = get(&ajp.url_on(&h, "no")).unwrap();
    assert_eq!(r.status, 503);
    // A raw connection from the refused source is closed at once, without
    // even a challenge that would reveal a server proof.
    for port in st.ports("ajp1") {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let t = Instant::now();
        let (got, closed) = read_all_for(&mut c, Duration::from_secs(3));
        assert!(closed && t.elapsed() < Duration::from_millis(1500), "not closed at once ({:?})", t.elapsed());
        let what = format!("refused source on {port}");
        assert_only_handshake_refusal(&what, &got);
        assert!(
            !matches!(reversed_proto::parse_challenge(&got), Ok(Some((reversed_proto::Challenge::Continue { .. }, _)))),
            "{what}: got a continuing challenge"
        );
    }
}

#[test]
fn maxidle_caps_idle_connections_per_child() {
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&ajp.conf(&format!("secret={} wait=2s maxidle=3", secret.display()))).conf(STATUS_LOCATION).start();
    // The agent wants 32 idle connections over the range; each child keeps 3.
    let _a = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(32).spawn(Some(h.dir()));
    let mut last = Err(String::new());
    let full = wait_until(Duration::from_secs(15), || {
        last = status_json(&h);
        matches!(&last, Ok(s) if !s.children.is_empty() && s.nodes("ajp1").all(|(_, n)| n.bound && n.idle == 3))
    });
    assert!(full, "children did not fill up to maxidle=3: {last:?}");
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        let s = status_json(&h).unwrap();
        for (pid, n) in s.nodes("ajp1") {
            assert!(n.idle <= 3, "child {pid} keeps {} idle connections (maxidle=3): {s:?}", n.idle);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_served(&ajp, &get(&ajp.url_on(&h, "x")), "maxidle");
}

#[test]
fn balancer_members_over_reversed_connections() {
    let b1 = RNode::new("b1", "ajp", "127.0.0.4:1", 4);
    let b2 = RNode::new("b2", "ajp", "127.0.0.5:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let s = secret.display().to_string();
    let h = b
        .conf(&format!(
            "<Proxy \"balancer://pool\">\n  BalancerMember \"ajp://127.0.0.4:1\" route=b1\n  \
             BalancerMember \"ajp://127.0.0.5:1\" route=b2\n</Proxy>\nProxyPass \"/lb/\" \"balancer://pool/\"\n\
             ProxyReversed b1 \"ajp://127.0.0.4:1\" {} secret={s} wait=2s\n\
             ProxyReversed b2 \"ajp://127.0.0.5:1\" {} secret={s} wait=2s\n",
            b1.range(),
            b2.range()
        ))
        .conf(STATUS_LOCATION)
        .start();
    let _a1 = AgentArgs::respond("b1", Some(&secret), &b1.range()).idle(4).spawn(Some(h.dir()));
    let _a2 = AgentArgs::respond("b2", Some(&secret), &b2.range()).idle(4).spawn(Some(h.dir()));
    let before = wait_all_idle(&h, &["b1", "b2"], Duration::from_secs(15));
    let c = client(Duration::from_secs(30));
    for i in 0..40 {
        let r = get_with(&c, &h.url(&format!("/lb/x/{i}")));
        assert_served(&b1, &r, "via the balancer");
    }
    // Both members' reversed connections carried requests: each node has
    // connections that left the idle pool (busy or retired after use).
    let after = status_json(&h).unwrap();
    for node in ["b1", "b2"] {
        let used: u64 = after.nodes(node).map(|(_, n)| n.busy + n.retired).sum();
        assert!(used > 0, "balancer member {node} got no requests: before {before:?} after {after:?}");
    }
}
