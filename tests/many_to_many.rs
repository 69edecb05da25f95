//! The scaling example: two httpd front ends × two backends, any httpd to
//! any backend. Each backend's agent dials both front ends; requests
//! succeed through both; the agent's thread count does not grow with the
//! number of front ends it dials.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

const SECRET: &str = "many-to-many secret 0123456789ab";

struct Front {
    h: Httpd,
    b1: RNode,
    b2: RNode,
}

fn front(secret_text: &str) -> (Front, std::path::PathBuf) {
    let b1 = RNode::new("b1", "ajp", "127.0.0.2:1", 4);
    let b2 = RNode::new("b2", "ajp", "127.0.0.3:1", 4);
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", secret_text);
    let opts = format!("secret={} wait=2s", secret.display());
    // Each backend alone, and a balancer over both ("any backend").
    let h = b
        .conf(&b1.conf(&opts))
        .conf(&b2.conf(&opts))
        .conf(
            "<Proxy \"balancer://any\">\n  BalancerMember \"ajp://127.0.0.2:1\" route=b1\n  \
             BalancerMember \"ajp://127.0.0.3:1\" route=b2\n</Proxy>\nProxyPass \"/any/\" \"balancer://any/\"\n",
        )
        .conf(STATUS_LOCATION)
        .start();
    (Front { h, b1, b2 }, secret)
}

/// Threads of the agent once it has settled with idle connections.
fn settled_threads(a: &Agent) -> u64 {
    std::thread::sleep(Duration::from_millis(1500));
    proc_threads(a.pid().unwrap()).expect("agent threads")
}

#[test]
fn two_httpd_by_two_backends() {
    let (f1, secret) = front(SECRET);
    let (f2, _) = front(SECRET);
    let dir = TempDir::new("m2m");

    // Thread count with one front end, then with two.
    let mut one = AgentArgs::respond("b1", Some(&secret), &f1.b1.range());
    one.body_size = Some(111);
    let a = one.idle(8).spawn(Some(dir.path()));
    wait_all_idle(&f1.h, &["b1"], Duration::from_secs(15));
    let threads_one = settled_threads(&a);
    drop(a);

    // Backend 1 answers 111-byte bodies, backend 2 222-byte ones.
    let mut a1 = AgentArgs::respond("b1", Some(&secret), &f1.b1.range());
    a1.frontends.push(f2.b1.range());
    a1.body_size = Some(111);
    let mut a2 = AgentArgs::respond("b2", Some(&secret), &f1.b2.range());
    a2.frontends.push(f2.b2.range());
    a2.body_size = Some(222);
    let a1 = a1.idle(8).spawn(Some(dir.path()));
    let a2 = a2.idle(8).spawn(Some(dir.path()));
    for f in [&f1, &f2] {
        wait_all_idle(&f.h, &["b1", "b2"], Duration::from_secs(15));
    }
    let threads_two = settled_threads(&a1);
    let threads_two_b = proc_threads(a2.pid().unwrap()).unwrap();

    let mut served = 0;
    for (fi, f) in [&f1, &f2].into_iter().enumerate() {
        for i in 0..20 {
            let r = get(&f.b1.url_on(&f.h, &format!("x/{i}")));
            assert_served(&f.b1, &r, &format!("httpd {fi} → backend 1"));
            assert_eq!(r.unwrap().body.len(), 111);
            let r = get(&f.b2.url_on(&f.h, &format!("x/{i}")));
            assert_served(&f.b2, &r, &format!("httpd {fi} → backend 2"));
            assert_eq!(r.unwrap().body.len(), 222);
            served += 2;
        }
        // Through the balancer, each front end reaches both backends.
        let mut seen = BTreeSet::new();
        for i in 0..20 {
            let r = get(&f.h.url(&format!("/any/y/{i}"))).unwrap();
            assert_eq!(r.status, 200, "httpd {fi} balancer: {}", r.status);
            seen.insert(r.body.len());
            served += 1;
        }
        assert_eq!(seen, BTreeSet::from([111, 222]), "httpd {fi}: the balancer did not reach both backends");
    }
    figure(
        "many-to-many",
        &format!(
            "2 httpd × 2 backends: {served}/{served} requests served (each httpd reached both backends, also through one balancer); agent threads: {threads_one} with 1 front end, {threads_two} (and {threads_two_b}) with 2"
        ),
    );
    assert!(threads_two <= threads_one, "agent threads grew with the front ends: {threads_one} → {threads_two}");
}
