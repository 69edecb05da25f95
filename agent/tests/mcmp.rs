//! MCMP registration against a fake MCMP receiver (a thread that records each
//! request and answers from a script): exact CONFIG bytes, ENABLE-APP,
//! periodic STATUS with a Load, re-registration after error replies and lost
//! connections, REMOVE-APP on shutdown (library and the real binary on SIGTERM).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reversed_agent::mcmp::{self, LoadSource, Receiver, Registration, Settings};
use reversed_agent::pool::Busy;
use reversed_proto::mcmp as proto;
use tokio::sync::watch;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    body: String,
    raw: Vec<u8>,
}

type Script = dyn Fn(&Req, usize) -> Option<Vec<u8>> + Send + Sync;

/// A fake MCMP receiver. `script(request, index of this request among those
/// of the same method)` gives the reply bytes, or None to close without one.
struct Fake {
    port: u16,
    reqs: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(script: impl Fn(&Req, usize) -> Option<Vec<u8>> + Send + Sync + 'static) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let (r2, script): (_, Arc<Script>) = (reqs.clone(), Arc::new(script));
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let (reqs, script) = (r2.clone(), script.clone());
                std::thread::spawn(move || {
                    let Some(req) = read_request(&mut c) else { return };
                    let n = {
                        let mut v = reqs.lock().unwrap();
                        let n = v.iter().filter(|r: &&Req| r.method == req.method).count();
                        v.push(req.clone());
                        n
                    };
                    if let Some(reply) = script(&req, n) {
                        let _ = c.write_all(&reply);
                    }
                });
            }
        });
        Fake { port, reqs }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn reqs(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    fn methods(&self) -> Vec<String> {
        self.reqs().into_iter().map(|r| r.method).collect()
    }

    /// Waits until `f` holds for the recorded requests.
    fn wait(&self, what: &str, f: impl Fn(&[Req]) -> bool) -> Vec<Req> {
        let t0 = Instant::now();
        loop {
            let r = self.reqs();
            if f(&r) {
                return r;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "timed out waiting for {what}; got {:?}", self.methods());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn read_request(c: &mut TcpStream) -> Option<Req> {
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut words = head.split(' ');
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        method,
        path,
        body: String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
        raw: buf[..head_end + len].to_vec(),
    })
}

fn ok(body: &str) -> Option<Vec<u8>> {
    Some(
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .into_bytes(),
    )
}

fn error(e: proto::Error) -> Option<Vec<u8>> {
    let mut s = "HTTP/1.1 500 ERROR\r\n".to_string();
    for (k, v) in proto::error_headers(&e) {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    Some(s.into_bytes())
}

/// What mod_manager would answer to a valid request.
fn healthy(r: &Req, _n: usize) -> Option<Vec<u8>> {
    match r.method.as_str() {
        "STATUS" => {
            let m = proto::parse_status(r.body.as_bytes()).unwrap();
            ok(&proto::status_rsp(&m.jvm_route, true, 1))
        }
        "ENABLE-APP" => {
            let m = proto::parse_app(r.body.as_bytes(), false).unwrap();
            ok(&proto::app_rsp(proto::Command::EnableApp, &m.jvm_route, &m.aliases, &m.contexts))
        }
        "CONFIG" => {
            proto::parse_config(r.body.as_bytes()).unwrap();
            ok("")
        }
        _ => ok(""),
    }
}

fn registration(aliases: &[&str], contexts: &[&str]) -> Registration {
    Registration {
        node: "app1".into(),
        balancer: None,
        kind: "ajp".into(),
        host: "127.0.0.1".into(),
        port: 9000,
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        contexts: contexts.iter().map(|s| s.to_string()).collect(),
    }
}

fn settings(fake: &Fake, path: &str, reg: Registration) -> Arc<Settings> {
    let mut s = Settings::new(vec![Receiver::parse(&fake.url(path)).unwrap()], reg, Duration::from_millis(100));
    s.backoff_min = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(100);
    Arc::new(s)
}

fn load_source(backend: Option<String>) -> (Arc<Busy>, Arc<LoadSource>) {
    let busy = Arc::new(Busy::default());
    (busy.clone(), Arc::new(LoadSource { busy, capacity: 8, backend }))
}

/// Runs one registrar on its own runtime thread until the returned sender says stop.
fn spawn_registrar(s: Arc<Settings>, load: Arc<LoadSource>) -> (watch::Sender<bool>, std::thread::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let h = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let rcv = s.receivers[0].clone();
        let m = reversed_agent::metrics::Metrics::new().mcmp(&rcv.to_string());
        rt.block_on(mcmp::run(s, load, rcv, m, rx));
    });
    (tx, h)
}

#[test]
fn config_bytes_enable_app_and_periodic_status() {
    let fake = Fake::start(healthy);
    let s = settings(&fake, "", registration(&["localhost", "www.example.com"], &["/app", "/"]));
    let (_busy, load) = load_source(None);
    let (stop, h) = spawn_registrar(s, load);
    let reqs = fake.wait("3 STATUS", |r| r.iter().filter(|r| r.method == "STATUS").count() >= 3);
    let body = "JVMRoute=app1&Host=127.0.0.1&Port=9000&Reversed=true&Type=ajp";
    let want = format!(
        "CONFIG / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nUser-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\n{body}",
        fake.port,
        body.len()
    );
    assert_eq!(String::from_utf8(reqs[0].raw.clone()).unwrap(), want);
    assert!(!want.to_ascii_lowercase().contains("content-type"));
    assert_eq!(reqs[1].method, "ENABLE-APP");
    assert_eq!(reqs[1].path, "/");
    assert_eq!(reqs[1].body, "JVMRoute=app1&Alias=localhost%2Cwww.example.com&Context=%2Fapp%2C%2F");
    let statuses: Vec<_> = reqs.iter().skip(2).collect();
    assert!(
        statuses.iter().all(|r| r.method == "STATUS" && r.path == "/" && r.body == "JVMRoute=app1&Load=100"),
        "{statuses:?}"
    );
    assert!(String::from_utf8_lossy(&statuses[0].raw).starts_with(&format!(
        "STATUS / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 22\r\nUser-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        fake.port
    )));
    let _ = stop.send(true);
    h.join().unwrap();
    // Stopped: nothing more is sent.
    let n = fake.reqs().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.reqs().len(), n);
}

#[test]
fn status_interval_is_kept() {
    let fake = Fake::start(healthy);
    let s = settings(&fake, "/mcmp", registration(&[], &[]));
    let (_busy, load) = load_source(None);
    let t0 = Instant::now();
    let (stop, h) = spawn_registrar(s, load);
    let reqs = fake.wait("5 STATUS", |r| r.iter().filter(|r| r.method == "STATUS").count() >= 5);
    let took = t0.elapsed();
    // First STATUS right after CONFIG, then every 100 ms: 4 intervals.
    assert!(took >= Duration::from_millis(400) && took < Duration::from_millis(2000), "{took:?}");
    assert_eq!(reqs[0].method, "CONFIG");
    assert_eq!(reqs[0].path, "/mcmp/");
    assert_eq!(reqs[1].method, "STATUS", "no ENABLE-APP without contexts");
    let _ = stop.send(true);
    h.join().unwrap();
}

#[test]
fn load_follows_the_pool_and_the_backend() {
    // A backend that accepts: load from the requests in flight. 8 links busy
    // (kept by mod_proxy between requests too), 4 of them carrying a request,
    // of capacity 8: 50.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = Fake::start(healthy);
    let s = settings(&fake, "", registration(&[], &[]));
    let (busy, load) = load_source(Some(backend.local_addr().unwrap().to_string()));
    let guards: Vec<_> = (0..8).map(|_| busy.enter()).collect();
    let flights: Vec<_> = (0..4).map(|_| busy.flight()).collect();
    for f in &flights {
        f.request();
    }
    let (stop, h) = spawn_registrar(s, load);
    let reqs = fake.wait("STATUS", |r| r.iter().any(|r| r.method == "STATUS"));
    assert_eq!(reqs.iter().find(|r| r.method == "STATUS").unwrap().body, "JVMRoute=app1&Load=50");
    let _ = stop.send(true);
    h.join().unwrap();
    drop(flights);
    drop(guards);
    assert_eq!(busy.in_flight(), 0);
    // The backend gone: Load=-1.
    let dead = backend.local_addr().unwrap().to_string();
    drop(backend);
    let fake = Fake::start(healthy);
    let s = settings(&fake, "", registration(&[], &[]));
    let (_busy, load) = load_source(Some(dead));
    let (stop, h) = spawn_registrar(s, load);
    let reqs = fake.wait("STATUS", |r| r.iter().any(|r| r.method == "STATUS"));
    assert_eq!(reqs.iter().find(|r| r.method == "STATUS").unwrap().body, "JVMRoute=app1&Load=-1");
    let _ = stop.send(true);
    h.join().unwrap();
}

#[test]
fn re_registers_after_error_replies() {
    // CONFIG refused once, ENABLE-APP refused once, then the second STATUS
    // says the node is unknown (httpd restarted): each time the whole
    // registration starts again.
    let fake = Fake::start(|r, n| match (r.method.as_str(), n) {
        ("CONFIG", 0) => error(proto::Error::node_exists("app1")),
        ("ENABLE-APP", 0) => error(proto::Error::node_not_found("app1")),
        ("STATUS", 1) => error(proto::Error::node_not_found("app1")),
        _ => healthy(r, n),
    });
    let s = settings(&fake, "", registration(&["localhost"], &["/app"]));
    let (_busy, load) = load_source(None);
    let (stop, h) = spawn_registrar(s, load);
    let reqs = fake.wait("4 STATUS", |r| r.iter().filter(|r| r.method == "STATUS").count() >= 4);
    let m: Vec<_> = reqs.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        &m[..8],
        ["CONFIG", "CONFIG", "ENABLE-APP", "CONFIG", "ENABLE-APP", "STATUS", "STATUS", "CONFIG"],
        "{m:?}"
    );
    assert_eq!(&m[8..10], ["ENABLE-APP", "STATUS"], "{m:?}");
    let _ = stop.send(true);
    h.join().unwrap();
}

#[test]
fn re_registers_after_lost_connections() {
    // The first CONFIG and the first STATUS get no reply (connection closed).
    let fake = Fake::start(|r, n| match (r.method.as_str(), n) {
        ("CONFIG", 0) | ("STATUS", 0) => None,
        _ => healthy(r, n),
    });
    let s = settings(&fake, "", registration(&[], &[]));
    let (_busy, load) = load_source(None);
    let (stop, h) = spawn_registrar(s, load);
    let reqs = fake.wait("2 STATUS", |r| r.iter().filter(|r| r.method == "STATUS").count() >= 2);
    let m: Vec<_> = reqs.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(&m[..5], ["CONFIG", "CONFIG", "STATUS", "CONFIG", "STATUS"], "{m:?}");
    let _ = stop.send(true);
    h.join().unwrap();
}

#[test]
fn unreachable_receiver_is_retried() {
    // Nothing listens yet: the registrar keeps retrying, then registers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let url = format!("http://127.0.0.1:{port}/");
    let mut s = Settings::new(vec![Receiver::parse(&url).unwrap()], registration(&[], &[]), Duration::from_millis(100));
    s.backoff_min = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(50);
    let (_busy, load) = load_source(None);
    let (stop, h) = spawn_registrar(Arc::new(s), load);
    std::thread::sleep(Duration::from_millis(200));
    // Now a receiver appears on that port.
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut c, _) = l.accept().unwrap();
    let r = read_request(&mut c).unwrap();
    assert_eq!(r.method, "CONFIG");
    let _ = stop.send(true);
    h.join().unwrap();
}

#[test]
fn remove_all_sends_remove_app_to_every_receiver_within_the_bound() {
    let a = Fake::start(healthy);
    let b = Fake::start(|_, _| error(proto::Error::node_not_found("app1")));
    // A receiver that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let s = Settings::new(
        vec![
            Receiver::parse(&a.url("/mcmp")).unwrap(),
            Receiver::parse(&b.url("")).unwrap(),
            Receiver::parse(&silent_url).unwrap(),
        ],
        registration(&["localhost"], &["/app"]),
        Duration::from_secs(5),
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t0 = Instant::now();
    rt.block_on(mcmp::remove_all(&s, Duration::from_millis(500)));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "{took:?}");
    let ra = a.wait("REMOVE-APP", |r| !r.is_empty());
    assert_eq!(
        String::from_utf8(ra[0].raw.clone()).unwrap(),
        format!(
            "REMOVE-APP /mcmp/* HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 13\r\nUser-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\nJVMRoute=app1",
            a.port
        )
    );
    let rb = b.wait("REMOVE-APP", |r| !r.is_empty());
    assert_eq!(
        (rb[0].method.as_str(), rb[0].path.as_str(), rb[0].body.as_str()),
        ("REMOVE-APP", "/*", "JVMRoute=app1")
    );
    drop(silent);
}

/// The real binary: registers at start, and on SIGTERM sends REMOVE-APP (and
/// no STATUS after it) before it exits.
#[test]
fn binary_registers_and_removes_on_sigterm() {
    let fake = Fake::start(healthy);
    // A front end nobody listens on: the pool just retries in the background.
    let fe = TcpListener::bind("127.0.0.1:0").unwrap();
    let fe_port = fe.local_addr().unwrap().port();
    drop(fe);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reversed-agent"))
        .args([
            "--frontend",
            &format!("127.0.0.1:{fe_port}-{}", fe_port.saturating_add(1)),
            "--node",
            "app1",
            "--no-auth",
            "--respond",
            "--idle",
            "1",
            "--mcmp",
            &fake.url("/"),
            "--alias",
            "localhost",
            "--context",
            "/app",
            "--status-interval",
            "1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reqs = fake.wait("2 STATUS", |r| r.iter().filter(|r| r.method == "STATUS").count() >= 2);
    let body = format!("JVMRoute=app1&Host=127.0.0.1&Port={fe_port}&Reversed=true&Type=ajp");
    assert_eq!(
        String::from_utf8(reqs[0].raw.clone()).unwrap(),
        format!(
            "CONFIG / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nUser-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\n{body}",
            fake.port,
            body.len()
        )
    );
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].body.as_str()),
        ("ENABLE-APP", "JVMRoute=app1&Alias=localhost&Context=%2Fapp")
    );
    assert_eq!(reqs[2].body, "JVMRoute=app1&Load=100");
    let st = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "agent did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    let reqs = fake.reqs();
    let last = reqs.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.body.as_str()),
        ("REMOVE-APP", "/*", "JVMRoute=app1"),
        "{:?}",
        fake.methods()
    );
    assert!(log.contains("registered node app1"), "{log}");
    assert!(log.contains("removed node app1"), "{log}");
}
