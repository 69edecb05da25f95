//! Child lifecycle: graceful restarts hand the agent over to the new
//! generation's ports, and children that find no free port say so once and
//! leave serving to the others.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SECRET: &str = "lifecycle secret: 0123456789abcdef";

fn graceful_restart(mpm: Mpm) {
    let nports = if mpm == Mpm::Prefork { 16 } else { 8 };
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", nports);
    let b = Httpd::builder(mpm);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&ajp.conf(&format!("secret={} wait=2s", secret.display()))).conf(STATUS_LOCATION).start();
    // --idle counts per front end (the whole range); give every child room
    // for two at the MPM's largest child count.
    let idle = 2 * mpm.max_children() as u32;
    let _a = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(idle).spawn(Some(h.dir()));
    let st = wait_all_idle(&h, &["ajp1"], Duration::from_secs(15));
    for i in 0..10 {
        assert_served(&ajp, &get(&ajp.url_on(&h, &format!("before/{i}"))), "before the restart");
    }
    let old: Vec<i64> = st.pids();

    for round in 0..2 {
        let old_now = status_json(&h).unwrap().pids();
        let t = Instant::now();
        h.graceful();
        let mut last = Err(String::new());
        let ok = wait_until(Duration::from_secs(20), || {
            last = status_json(&h);
            let Ok(s) = &last else { return false };
            !s.children.is_empty()
                && s.pids().iter().all(|p| !old_now.contains(p) && !old.contains(p))
                && s.all_children_idle(&["ajp1"])
                && matches!(get(&ajp.url_on(&h, "probe")), Ok(r) if r.status == 200)
        });
        assert!(
            ok,
            "round {round}: no new generation serving within 20 s of the graceful restart; old pids {old_now:?}, last status {last:?}"
        );
        eprintln!("{} graceful round {round}: new generation serving after {:?}", mpm.name(), t.elapsed());
        for i in 0..20 {
            let r = get(&ajp.url_on(&h, &format!("after/{round}/{i}")));
            if !matches!(&r, Ok(x) if x.status == 200) {
                eprintln!("request {i} after round {round} failed; status now: {:?}", status_json(&h));
            }
            assert_served(&ajp, &r, "after the restart");
        }
        // Every new child has its own port in the range.
        let s = last.unwrap();
        let ports = s.ports("ajp1");
        let mut d = ports.clone();
        d.dedup();
        assert_eq!(ports, d, "ports shared between children: {s:?}");
        assert!(ports.iter().all(|p| *p >= ajp.first && *p <= ajp.last), "{s:?}");
    }
    let log = h.error_log();
    assert!(!log.contains("AH00957"), "mod_proxy dialled the sentinel during the restart");
    assert!(!log.contains("panicked"), "a Rust panic in the error log");
}

#[test]
fn graceful_restart_event() {
    graceful_restart(Mpm::Event);
}

#[test]
fn graceful_restart_prefork() {
    graceful_restart(Mpm::Prefork);
}

/// prefork, 4 children, a range of 2 ports: 2 children bind, the others log
/// one clear error naming the node and the range, and the bound ones serve.
#[test]
fn more_children_than_ports() {
    let ajp = RNode::new("ajp1", "ajp", "127.0.0.2:1", 2);
    let b = Httpd::builder(Mpm::Prefork)
        .mpm_settings("StartServers 4\nMinSpareServers 4\nMaxSpareServers 4\nServerLimit 8\nMaxRequestWorkers 8\n");
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&ajp.conf(&format!("secret={} wait=1s", secret.display()))).conf(STATUS_LOCATION).start();
    let _a = AgentArgs::respond(&ajp.name, Some(&secret), &ajp.range()).idle(4).spawn(Some(h.dir()));

    // Two children hold the two ports and get idle connections.
    let mut last = Err(String::new());
    let ok = wait_until(Duration::from_secs(15), || {
        last = status_json(&h);
        matches!(&last, Ok(s) if s.ports("ajp1") == vec![ajp.first, ajp.last]
            && s.nodes("ajp1").filter(|(_, n)| n.bound && n.idle > 0).count() == 2)
    });
    assert!(ok, "the two ports were not bound and dialled: {last:?}");
    let st = last.unwrap();
    let unbound: Vec<i64> = st.nodes("ajp1").filter(|(_, n)| !n.bound).map(|(p, _)| p).collect();
    assert!(
        st.children.len() >= 3 && !unbound.is_empty(),
        "expected children without a port (StartServers 4, 2 ports): {st:?}"
    );

    // Requests: those reaching a bound child are served; the others end in
    // a bounded 503. Several served ones prove the bound children work.
    let mut served = 0;
    for i in 0..24 {
        let t = Instant::now();
        let r = get(&ajp.url_on(&h, &format!("r/{i}"))).unwrap();
        match r.status {
            200 => {
                assert_eq!(r.header("X-Responder"), Some("ajp"));
                served += 1;
            }
            503 => assert!(t.elapsed() < Duration::from_secs(3), "503 after {:?}", t.elapsed()),
            s => panic!("unexpected status {s}: {}", r.text()),
        }
    }
    assert!(served >= 1, "no request was served by the children that hold ports");

    // The error: at error level, naming the node and the range; once per
    // child, not repeated.
    let log = h.error_log();
    let range_forms = [ajp.range(), format!("{}-{}", ajp.first, ajp.last)];
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":error]") && l.contains("ajp1") && range_forms.iter().any(|r| l.contains(r.as_str())))
        .collect();
    assert!(
        !lines.is_empty(),
        "no error naming node ajp1 and range {} in the error log:\n{}",
        ajp.range(),
        log.lines().filter(|l| l.contains("proxy_reversed")).take(30).collect::<Vec<_>>().join("\n")
    );
    let mut per_pid: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let pid = l.split("[pid ").nth(1).and_then(|s| s.split([':', ']']).next()).unwrap_or("?");
        *per_pid.entry(pid.to_string()).or_default() += 1;
    }
    assert!(
        per_pid.values().all(|&n| n == 1),
        "the no-free-port error is repeated by a child: {per_pid:?}\n{}",
        lines.join("\n")
    );
    for p in &unbound {
        assert!(
            per_pid.contains_key(&p.to_string()),
            "child {p} has no port but logged no error; errors: {}",
            lines.join("\n")
        );
    }
}
