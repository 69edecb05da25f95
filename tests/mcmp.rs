//! Reversed nodes registered at run time through MCMP (the standalone
//! receiver, `SetHandler proxy-reversed-mcmp`), against the real httpd
//! (event MPM): agent registration, STATUS following the live connections,
//! REMOVE-APP, malformed messages, and the exact bytes of mod_cluster's
//! Java side.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECRET: &str = "mcmp test secret 0123456789abcdef";

/// An MCMP reply: status, headers, body.
#[derive(Debug)]
struct McmpResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl McmpResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends raw request bytes and reads one response (Content-Length or EOF; ≤ 5 s).
fn raw_request(port: u16, bytes: &[u8]) -> McmpResp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to httpd");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let cl = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length:").or_else(|| l.strip_prefix("content-length:")))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(cl) = cl {
                if buf.len() >= end + 4 + cl {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "no complete reply in 5 s: {:?}", String::from_utf8_lossy(&buf));
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("reading the reply: {e}; so far {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("reply head");
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    McmpResp { status, headers, body: String::from_utf8_lossy(&buf[end + 4..]).to_string() }
}

/// An MCMP request as curl-like clients send it (with Connection: close).
fn mcmp(h: &Httpd, method: &str, path: &str, body: &str) -> McmpResp {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        h.port(),
        body.len()
    );
    raw_request(h.port(), req.as_bytes())
}

/// httpd with the MCMP receiver at /mcmp, a balancer `mycluster` with room
/// to grow, /app/ proxied to it, and `ports` ports for registered nodes.
struct Front {
    h: Httpd,
    secret: std::path::PathBuf,
    first: u16,
    last: u16,
}

fn front(extra: &str, mpm_settings: Option<&str>) -> Front {
    let first = free_ports(8);
    let last = first + 7;
    let mut b = Httpd::builder(Mpm::Event);
    if let Some(m) = mpm_settings {
        b = b.mpm_settings(m);
    }
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&format!(
            "ProxyReversedMCMP 127.0.0.1:{first}-{last} ports=4 wait=1s {extra}\n\
             <Proxy \"balancer://mycluster\">\n    ProxySet growth=4\n</Proxy>\n\
             ProxyPass \"/app/\" \"balancer://mycluster/\"\n\
             <Location \"/mcmp\">\n    SetHandler proxy-reversed-mcmp\n</Location>\n{STATUS_LOCATION}"
        ))
        .conf(&format!(
            "ProxyReversedNodeSecret node1 {}\nProxyReversedNodeSecret java1 {}",
            secret.display(),
            secret.display()
        ))
        .start();
    Front { h, secret, first, last }
}

/// Waits (≤ 5 s) until INFO no longer lists node1.
fn agent2_removed(h: &Httpd) -> bool {
    wait_until(Duration::from_secs(5), || {
        let i = mcmp(h, "INFO", "/mcmp", "");
        i.status == 200 && !i.body.contains("node1")
    })
}

fn registered_json(h: &Httpd) -> String {
    get(&h.url("/reversed-status?json")).map(|r| r.text()).unwrap_or_default()
}

#[test]
fn agent_registers_at_run_time_and_status_follows_connections() {
    let f = front("", None);
    let h = &f.h;
    // Nothing registered: the balancer has no member.
    let r = get(&h.url("/app/x")).unwrap();
    assert_eq!(r.status, 503, "before registration");

    let frontend = format!("127.0.0.1:{}-{}", f.first, f.first + 3);
    let mut args = AgentArgs::respond("node1", Some(&f.secret), &frontend).idle(4);
    args.extra = vec![
        "--mcmp".into(),
        h.url("/mcmp"),
        "--context".into(),
        "/app".into(),
        "--alias".into(),
        "localhost".into(),
        "--status-interval".into(),
        "1".into(),
    ];
    let started = Instant::now();
    let mut agent = args.spawn(Some(h.dir()));
    let mut served_at = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let ok = get(&h.url("/app/hello")).is_ok_and(|r| r.status == 200 && r.header("X-Responder") == Some("ajp"));
            if ok {
                served_at = Some(started.elapsed());
            }
            ok
        }),
        "the registered node never served /app/ through the balancer; status {}",
        registered_json(h)
    );
    let took = served_at.unwrap();
    assert!(took < Duration::from_secs(2), "first success through the balancer after {took:?} (want < 2 s)");

    // Both children bind a port of the node.
    let st = wait_all_idle(h, &["node1"], Duration::from_secs(5));
    assert_eq!(st.ports("node1").len(), st.pids().len(), "{st:?}");
    // The status page shows the registration and its context.
    let doc = registered_json(h);
    assert!(doc.contains("\"registered\":[{\"node\":\"node1\",\"balancer\":\"mycluster\""), "{doc}");
    assert!(doc.contains("\"context\":\"/app\",\"state\":\"ENABLED\""), "{doc}");

    // STATUS follows the live connections.
    let s = mcmp(h, "STATUS", "/mcmp", "JVMRoute=node1&Load=50");
    assert_eq!(s.status, 200, "{s:?}");
    assert!(s.body.starts_with("Type=STATUS-RSP&JVMRoute=node1&State=OK&id="), "{s:?}");
    agent.kill_hard();
    assert!(
        wait_until(Duration::from_secs(5), || mcmp(h, "STATUS", "/mcmp", "JVMRoute=node1&Load=50")
            .body
            .contains("State=NOTOK")),
        "STATUS stayed OK without connections"
    );
    let p = mcmp(h, "PING", "/mcmp", "JVMRoute=node1");
    assert!(p.body.contains("State=NOTOK"), "{p:?}");

    // A new agent brings it back; on SIGTERM it sends REMOVE-APP: 503 after.
    let mut agent2 = args.spawn(Some(h.dir()));
    assert!(
        wait_until(Duration::from_secs(10), || get(&h.url("/app/again")).is_ok_and(|r| r.status == 200)),
        "not served again after the agent came back"
    );
    agent2.stop();
    assert!(agent2_removed(h), "the agent's SIGTERM did not remove the node");
    let t = Instant::now();
    let r = get(&h.url("/app/after-remove")).unwrap();
    assert_eq!(r.status, 503, "a removed node still served");
    assert!(t.elapsed() < Duration::from_millis(1500), "503 took {:?}", t.elapsed());
    assert!(
        wait_until(Duration::from_secs(3), || !(f.first..=f.first + 3).any(|p| port_accepts("127.0.0.1", p))),
        "listeners of the removed node still accept"
    );
    let doc = registered_json(h);
    assert!(doc.contains("\"registered\":[]"), "{doc}");
    let s = mcmp(h, "STATUS", "/mcmp", "JVMRoute=node1&Load=50");
    assert_eq!(s.header("Type"), Some("MEM"), "{s:?}");

    // REMOVE-APP of the whole node by hand, without any agent.
    let c = mcmp(h, "CONFIG", "/mcmp", &format!("JVMRoute=node1&Host=127.0.0.1&Port={}&Reversed=yes", f.first));
    assert_eq!(c.status, 200, "{c:?}");
    assert!(
        wait_until(Duration::from_secs(3), || port_accepts("127.0.0.1", f.first)),
        "no listener after a CONFIG by hand"
    );
    let rm = mcmp(h, "REMOVE-APP", "/mcmp/*", "JVMRoute=node1");
    assert_eq!(rm.status, 200, "{rm:?}");
    assert!(rm.body.contains("REMOVE-APP"), "{rm:?}");
    let s = mcmp(h, "STATUS", "/mcmp", "JVMRoute=node1&Load=50");
    assert_eq!(s.header("Type"), Some("MEM"), "{s:?}");
    assert!(
        wait_until(Duration::from_secs(3), || !port_accepts("127.0.0.1", f.first)),
        "the listener stayed after REMOVE-APP"
    );
    assert!(!h.error_log().contains(SECRET), "the secret reached the error log");
}

#[test]
fn malformed_mcmp_requests_get_mcmp_errors_and_change_nothing() {
    let f = front("", None);
    let h = &f.h;
    let p = f.first;
    let good = format!("JVMRoute=node1&Host=127.0.0.1&Port={p}&Type=ajp&Reversed=true");
    let table: Vec<(&str, &str, String, &str, &str)> = vec![
        ("CONFIG", "/mcmp", format!("Host=127.0.0.1&Port={p}&Reversed=true"), "SYNTAX", "JVMRoute can't be empty"),
        ("CONFIG", "/mcmp", format!("JVMRoute=no%3Cde&Port={p}&Reversed=true"), "SYNTAX", "Can't parse MCMP message"),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=node1&Balancer={}&Port={p}&Reversed=true", "b".repeat(41)),
            "SYNTAX",
            "Balancer field too big",
        ),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=node1&Host={}&Reversed=true", "h".repeat(70)),
            "SYNTAX",
            "Host field too big",
        ),
        ("CONFIG", "/mcmp", format!("{good}&Alias=localhost"), "SYNTAX", "Alias without Context"),
        ("CONFIG", "/mcmp", format!("{good}&Context=/x"), "SYNTAX", "Context without Alias"),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=node1&Host=127.0.0.1&Port={p}&Type=ajp"),
            "GENERAL",
            "forward nodes need mod_cluster",
        ),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=node1&Host=127.0.0.1&Port={p}&Reversed=maybe"),
            "SYNTAX",
            "Reversed field has bad value",
        ),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=stranger&Host=127.0.0.1&Port={p}&Reversed=yes"),
            "GENERAL",
            "no secret is configured",
        ),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=node1&Host=127.0.0.1&Port={}&Reversed=yes", f.last - 1),
            "GENERAL",
            "outside the ports",
        ),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=node1&Host=127.0.0.9&Port={p}&Reversed=yes"),
            "GENERAL",
            "outside the ports",
        ),
        (
            "CONFIG",
            "/mcmp",
            format!("JVMRoute=node1&Host=example.com&Port={p}&Reversed=yes"),
            "GENERAL",
            "not an IP address",
        ),
        ("CONFIG", "/mcmp", format!("{good}&Type=fcgi"), "GENERAL", "not supported for reversed nodes"),
        ("CONFIG", "/mcmp", format!("{good}&Balancer=nosuch"), "GENERAL", "balancer://nosuch does not exist"),
        ("FROBNICATE", "/mcmp", good.clone(), "SYNTAX", "Command is not supported"),
        ("STATUS", "/mcmp", "JVMRoute=node1&Load=10".into(), "MEM", "Can't read node with \"node1\" JVMRoute"),
        ("STATUS", "/mcmp", "JVMRoute=node1&Load=10&Color=red".into(), "SYNTAX", "Invalid field \"Color\" in message"),
        ("ENABLE-APP", "/mcmp", "JVMRoute=node1&Alias=localhost&Context=/x".into(), "MEM", "Can't read node"),
    ];
    for (method, path, body, ty, mess) in &table {
        let r = mcmp(h, method, path, body);
        assert_eq!(r.status, 500, "{method} {body}: {r:?}");
        assert_eq!(r.header("Version"), Some("0.2.1"), "{method} {body}: {r:?}");
        assert_eq!(r.header("Type"), Some(*ty), "{method} {body}: {r:?}");
        let m = r.header("Mess").unwrap_or_default();
        assert!(m.contains(mess), "{method} {body}: Mess {m:?} lacks {mess:?}");
        // Nothing was registered by a refused message.
        let info = mcmp(h, "INFO", "/mcmp", "");
        assert_eq!(info.status, 200, "{info:?}");
        assert!(!info.body.contains("Node: ["), "{method} {body} registered something: {}", info.body);
        assert!(!(f.first..=f.last).any(|p| port_accepts("127.0.0.1", p)), "{method} {body}: something listens");
    }
    // The same receiver then registers a good CONFIG; a conflicting one changes nothing.
    let ok = mcmp(h, "CONFIG", "/mcmp", &good);
    assert_eq!(ok.status, 200, "{ok:?}");
    let clash = mcmp(h, "CONFIG", "/mcmp", &format!("JVMRoute=node1&Host=127.0.0.1&Port={}&Reversed=yes", p + 4));
    assert_eq!(clash.header("Type"), Some("MEM"), "{clash:?}");
    assert!(clash.header("Mess").unwrap_or_default().contains("already exists"), "{clash:?}");
    let info = mcmp(h, "INFO", "/mcmp", "");
    assert!(info.body.contains(&format!("Port: {p}")), "{}", info.body);
    assert!(!info.body.contains(&format!("Port: {}", p + 4)), "{}", info.body);
    let v = mcmp(h, "VERSION", "/mcmp", "");
    assert_eq!(v.status, 200);
    assert!(v.body.contains("protocol: 0.2.1"), "{v:?}");
}

#[test]
fn java_side_config_bytes_register_a_reversed_node() {
    // Every child binds the registered node's port within about a second.
    let f = front("", None);
    let h = &f.h;
    let body = format!(
        "JVMRoute=java1&Host=127.0.0.1&Port={}&Type=ajp&Reversed=true&Balancer=mycluster&StickySession=Yes&StickySessionCookie=JSESSIONID&StickySessionPath=jsessionid&StickySessionRemove=No&StickySessionForce=No&WaitWorker=0&Maxattempts=1&flushpackets=Off&flushwait=10&ping=10&smax=-1&ttl=60&Timeout=0",
        f.first
    );
    // DefaultMCMPHandler: request line with the path, Host, Content-Length,
    // User-Agent, Connection: Keep-Alive; no Content-Type.
    let req = format!(
        "CONFIG / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nUser-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\n{body}",
        h.port(),
        body.len()
    );
    // The Java side posts to "/": the receiver is enabled for the whole server here.
    let _ = req;
    let req = req.replacen("CONFIG / ", "CONFIG /mcmp/ ", 1);
    let t = Instant::now();
    let r = raw_request(h.port(), req.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        wait_until(Duration::from_secs(3), || {
            status_json(h).is_ok_and(|s| !s.pids().is_empty() && s.ports("java1").len() == s.pids().len())
        }),
        "not every child bound a port of java1; status {}",
        registered_json(h)
    );
    let took = t.elapsed();
    assert!(took < Duration::from_millis(1500), "children bound after {took:?}");
    let info = mcmp(h, "DUMP", "/mcmp", "");
    assert!(info.body.contains("java1"), "{info:?}");
}

#[test]
fn tls_required_admits_only_https_nodes() {
    let f = front("tls=required", None);
    let h = &f.h;
    let p = f.first;
    for ty in ["ajp", "http"] {
        let r = mcmp(h, "CONFIG", "/mcmp", &format!("JVMRoute=node1&Host=127.0.0.1&Port={p}&Type={ty}&Reversed=true"));
        assert_eq!(r.status, 500, "Type={ty} under tls=required: {r:?}");
        assert_eq!(r.header("Type"), Some("GENERAL"), "{r:?}");
        let m = r.header("Mess").unwrap_or_default();
        assert!(m.contains("tls=required") && m.contains(&format!("\"{ty}\"")), "Type={ty}: Mess {m:?}");
        let info = mcmp(h, "INFO", "/mcmp", "");
        assert!(!info.body.contains("Node: ["), "Type={ty} registered something: {}", info.body);
    }
    // A CONFIG without Type means ajp (as in mod_manager): refused as well.
    let r = mcmp(h, "CONFIG", "/mcmp", &format!("JVMRoute=node1&Host=127.0.0.1&Port={p}&Reversed=true"));
    assert_eq!(r.header("Type"), Some("GENERAL"), "no Type under tls=required: {r:?}");
    let ok = mcmp(h, "CONFIG", "/mcmp", &format!("JVMRoute=node1&Host=127.0.0.1&Port={p}&Type=https&Reversed=true"));
    assert_eq!(ok.status, 200, "Type=https under tls=required: {ok:?}");
    let info = mcmp(h, "INFO", "/mcmp", "");
    assert!(info.body.contains("Node: [") && info.body.contains("node1"), "{}", info.body);
}
