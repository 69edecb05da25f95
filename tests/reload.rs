//! reversed-agent reloads its config file on SIGHUP (issue 13), with two real
//! httpds: front end A is replaced by front end B and the idle count raised
//! while a request runs on A; that request finishes, A's idle links close, B
//! fills. A file with a misspelt key is then refused naming the key, and the
//! running configuration stays.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "reload test secret 0123456789abcd";

fn httpd(node: &RNode) -> (Httpd, std::path::PathBuf) {
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD);
    let secret = b.secret("secret", SECRET);
    let h = b.conf(&node.conf(&format!("secret={} wait=5s", secret.display()))).conf(STATUS_LOCATION).start();
    (h, secret)
}

fn write_config(path: &Path, secret: &Path, frontend: &str, idle_line: &str, metrics: u16) {
    std::fs::write(
        path,
        format!(
            "node = \"app1\"\nsecret_file = \"{}\"\nfrontends = [\"{frontend}\"]\n{idle_line}\nrespond = true\n\
             log_level = \"debug\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n",
            secret.display()
        ),
    )
    .unwrap();
}

fn hup(agent: &Agent) {
    let pid = agent.pid().expect("agent running");
    assert!(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
}

fn idle_of(h: &Httpd) -> u64 {
    status_json(h).map(|s| s.idle("app1")).unwrap_or(0)
}

#[test]
fn sighup_swaps_front_ends_and_idle_without_dropping_busy_links() {
    // Each range is found free once the other httpd holds its own.
    let node_a = RNode::new("app1", "http", "127.0.0.3:1", 2);
    let (a, secret) = httpd(&node_a);
    let node_b = RNode::new("app1", "http", "127.0.0.3:1", 2);
    let (b, _) = httpd(&node_b); // its secret file holds the same text
    let cfg = a.dir().join("agent.toml");
    let metrics = free_port();
    write_config(&cfg, &secret, &node_a.range(), "idle = 2", metrics);
    let mut agent = Agent::spawn(Some(a.dir()), &["--config".into(), cfg.display().to_string()]);
    wait_all_idle(&a, &["app1"], Duration::from_secs(15));
    assert_eq!(idle_of(&b), 0);

    // A request that holds a link of A for 2 s.
    let url = node_a.url_on(&a, "sleep/2000");
    let slow = std::thread::spawn(move || {
        let t = Instant::now();
        (get(&url), t.elapsed())
    });
    assert!(
        wait_until(Duration::from_secs(5), || status_json(&a).is_ok_and(|s| s.nodes("app1").any(|(_, n)| n.busy == 1)))
    );

    write_config(&cfg, &secret, &node_b.range(), "idle = 3", metrics);
    hup(&agent);
    let b_full = wait_until(Duration::from_secs(10), || idle_of(&b) == 3);
    assert!(b_full, "B never got 3 idle links; agent log:\n{}", agent.log());
    assert!(wait_until(Duration::from_secs(5), || idle_of(&a) == 0), "A's idle links stayed: {:?}", status_json(&a));
    let (r, took) = slow.join().unwrap();
    let r = r.expect("the request that ran during the reload");
    assert_eq!(r.status, 200, "the busy link was dropped by the reload");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert_served(&node_b, &get(&node_b.url_on(&b, "hello")), "GET via B after the reload");
    assert!(agent.log().contains("SIGHUP: configuration reloaded"), "{}", agent.log());

    // A misspelt key: refused, naming it; B keeps its links, the agent runs on.
    write_config(&cfg, &secret, &node_a.range(), "idel = 5", metrics);
    hup(&agent);
    assert!(
        wait_until(Duration::from_secs(5), || agent.log().contains("unknown field `idel`")),
        "the refusal does not name the key:\n{}",
        agent.log()
    );
    assert!(agent.log().contains("configuration refused, the running one stays"));
    assert!(agent.is_running());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(idle_of(&b), 3);
    assert_eq!(idle_of(&a), 0);
    let m = get(&format!("http://127.0.0.1:{metrics}/metrics")).unwrap().text();
    let target_b = format!("reversed_agent_idle_connections_target{{frontend=\"{}\"}} 3\n", node_b.range());
    assert!(m.contains(&target_b), "{m}");

    // A setting that needs a restart is refused too.
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("idel = 5", "idle = 3\nbody_size = 10"))
        .unwrap();
    hup(&agent);
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .log()
            .contains("backend/respond/echo/body_size cannot change while the agent runs")),
        "{}",
        agent.log()
    );
    assert_eq!(idle_of(&b), 3);
}
