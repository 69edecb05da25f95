//! HTTPS over reversed links (issue 11): after the reversed handshake, the
//! unmodified mod_proxy_http + mod_ssl (SSLProxyEngine on, verification
//! required) run TLS over the dialled socket, end to end to the backend.
//!
//! Certificates are made by the test with the openssl command. Backends: the
//! agent's built-in responder serving TLS (rustls), and Debian's Tomcat 10
//! HTTPS connector behind `reversed-agent --backend` (TLS spliced unchanged).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "tls test secret, at least 32 bytes";

// ---------------------------------------------------------------------------
// Certificates (openssl)
// ---------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).stdin(Stdio::null()).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test PKI in `dir`: two CAs, and leaf certificates signed by the first.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        for ca in ["ca", "otherca"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-days",
                    "3",
                    "-subj",
                    &format!("/CN=mpr test {ca}"),
                ],
            );
        }
        // httpd's children (www-data) read the CA and client files.
        let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(&dir).status();
        Pki { dir }
    }
    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
    fn p(&self, f: &str) -> String {
        self.path(f).display().to_string()
    }
    /// `name.pem`/`name.key`: a leaf for DNS `dns`, signed by `ca`; `days`
    /// -1 makes it expired; `client` for clientAuth. Also `name.both.pem`
    /// (certificate then key, as SSLProxyMachineCertificateFile wants).
    fn leaf(&self, name: &str, dns: &str, ca: &str, days: i32, client: bool) {
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={dns}"),
            ],
        );
        let eku = if client { "clientAuth" } else { "serverAuth" };
        std::fs::write(
            self.path(&format!("{name}.ext")),
            format!("subjectAltName=DNS:{dns}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={eku}\n"),
        )
        .unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                &days.to_string(),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
        let both = [
            std::fs::read(self.path(&format!("{name}.pem"))).unwrap(),
            std::fs::read(self.path(&format!("{name}.key"))).unwrap(),
        ]
        .concat();
        std::fs::write(self.path(&format!("{name}.both.pem")), both).unwrap();
        let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(&self.dir).status();
    }
}

// ---------------------------------------------------------------------------
// Configuration pieces
// ---------------------------------------------------------------------------

/// mod_ssl as the TLS client of every https:// worker, verification required.
fn ssl_proxy_conf(pki: &Pki) -> String {
    format!(
        "SSLProxyEngine on\nSSLProxyVerify require\nSSLProxyVerifyDepth 2\nSSLProxyCheckPeerName on\n\
         SSLProxyCheckPeerExpire on\nSSLProxyCACertificateFile \"{}\"\nLogLevel info ssl:info proxy_reversed:debug\n",
        pki.p("ca.pem")
    )
}

/// A reversed https node whose worker URL names the certificate's host,
/// `localhost` (resolves to loopback; port `sentinel_port` is closed, so a
/// stray connect fails at once).
fn https_node(name: &str, sentinel_port: u16, nports: u16) -> RNode {
    RNode::new(name, "https", &format!("localhost:{sentinel_port}"), nports)
}

fn responder_args(node: &RNode, secret: &Path, pki: &Pki, leaf: &str, metrics_port: u16) -> AgentArgs {
    let mut a = AgentArgs::respond(&node.name, Some(secret), &node.range()).echo().idle(8);
    a.extra = vec![
        "--tls-cert".into(),
        pki.p(&format!("{leaf}.pem")),
        "--tls-key".into(),
        pki.p(&format!("{leaf}.key")),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    a
}

/// The agent's responder TLS counters: (handshakes ok, failed, requests).
fn tls_counters(metrics_port: u16) -> (u64, u64, u64) {
    let r = get(&format!("http://127.0.0.1:{metrics_port}/metrics")).expect("agent metrics");
    let text = r.text();
    let val = |prefix: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in the agent's metrics:\n{text}"))
    };
    (
        val("reversed_agent_responder_tls_handshakes_total{result=\"ok\"}"),
        val("reversed_agent_responder_tls_handshakes_total{result=\"failed\"}"),
        val("reversed_agent_responder_tls_requests_total"),
    )
}

/// The responder's `X-TLS: conn=N req=M handshakes=H` header, as numbers.
fn x_tls(r: &Resp) -> (u64, u64, u64) {
    let h = r.header("X-TLS").unwrap_or_else(|| panic!("no X-TLS header: not answered over TLS ({:?})", r.headers));
    let f = |k: &str| -> u64 {
        h.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("X-TLS {h:?} lacks {k}"))
    };
    (f("conn="), f("req="), f("handshakes="))
}

fn assert_no_sentinel_dial(h: &Httpd) {
    let log = h.error_log();
    assert!(
        !log.contains("AH00957") && !log.contains("AH00959"),
        "mod_proxy dialled the sentinel:\n{}",
        log.lines().filter(|l| l.contains("AH0095")).take(5).collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------
// A relay that records every byte it carries (the tap)
// ---------------------------------------------------------------------------

struct Tap {
    port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tap {
    /// Listens on a free port and relays each connection to 127.0.0.1:`to`.
    fn start(to: u16) -> Tap {
        let port = free_port();
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bytes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut pipes = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let Ok(u) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                        for (mut from, mut into) in [
                            (c.try_clone().unwrap(), u.try_clone().unwrap()),
                            (u.try_clone().unwrap(), c.try_clone().unwrap()),
                        ] {
                            let (b, s) = (b.clone(), s.clone());
                            from.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                            pipes.push(std::thread::spawn(move || {
                                let mut buf = [0u8; 65536];
                                while !s.load(Ordering::SeqCst) {
                                    match from.read(&mut buf) {
                                        Ok(0) => break,
                                        Ok(n) => {
                                            b.lock().unwrap().extend_from_slice(&buf[..n]);
                                            if into.write_all(&buf[..n]).is_err() {
                                                break;
                                            }
                                        }
                                        Err(e)
                                            if e.kind() == std::io::ErrorKind::WouldBlock
                                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                                        Err(_) => break,
                                    }
                                }
                                let _ = into.shutdown(std::net::Shutdown::Write);
                            }));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for p in pipes {
                let _ = p.join();
            }
        });
        Tap { port, bytes, stop, thread: Some(thread) }
    }
    fn captured(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// GET, 10 MB POST and 64 clients through an https reversed worker
// ---------------------------------------------------------------------------

fn load(mpm: Mpm) {
    let t0 = Instant::now();
    let b = Httpd::builder(mpm).module("ssl_module", "mod_ssl.so");
    let pki = Pki::new(b.dir());
    pki.leaf("srv", "localhost", "ca", 3, false);
    let nports = if mpm == Mpm::Prefork { 12 } else { 8 };
    let node = https_node("tls1", 1, nports);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&ssl_proxy_conf(&pki))
        .conf(&node.conf(&format!("secret={} wait=5s tls=required", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let mport = free_port();
    let _a = responder_args(&node, &secret, &pki, "srv", mport).idle(16).spawn(Some(h.dir()));
    wait_all_idle(&h, &["tls1"], Duration::from_secs(15));

    let r = get(&node.url_on(&h, "hello")).unwrap();
    assert_eq!(r.status, 200, "GET over TLS: {} {:?}\n{}", r.status, r.text(), tail_of(&h));
    assert_eq!(r.header("X-Responder"), Some("http"));
    x_tls(&r);

    let big = pseudo_random_bytes(10 << 20, 0x7150_0000 + mpm as u64);
    let want = sha256_hex(&big);
    let t = Instant::now();
    let r = post(&node.url_on(&h, "echo"), &big)
        .unwrap_or_else(|e| panic!("10 MB POST over TLS ({}): {e}\n{}", mpm.name(), tail_of(&h)));
    assert_eq!(r.status, 200, "10 MB POST over TLS: {}", r.status);
    assert_eq!(r.body.len(), big.len());
    assert_eq!(sha256_hex(&r.body), want, "the echoed 10 MB differ");
    x_tls(&r);
    eprintln!("{} 10 MB echo over a reversed TLS link in {:?}", mpm.name(), t.elapsed());

    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let (errors, done, url) = (errors.clone(), done.clone(), node.url_on(&h, "c"));
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(60));
                for j in 0..4 {
                    let body = format!("tls client {i} request {j} {}", "y".repeat(i * 41 + j));
                    match post_with(&c, &url, body.as_bytes()) {
                        Ok(r) if r.status == 200 && r.body == body.as_bytes() && r.header("X-TLS").is_some() => {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => errors.lock().unwrap().push(format!(
                            "client {i} req {j}: status {} X-TLS {:?} body {:?}",
                            r.status,
                            r.header("X-TLS"),
                            String::from_utf8_lossy(&r.body[..r.body.len().min(80)])
                        )),
                        Err(e) => errors.lock().unwrap().push(format!("client {i} req {j}: {e}")),
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} of 256 concurrent requests over TLS failed, e.g.:\n{}",
        errors.len(),
        errors.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(done.load(Ordering::SeqCst), 256);
    let (ok, failed, requests) = tls_counters(mport);
    eprintln!(
        "{} 256 concurrent TLS requests in {:?}: {ok} handshakes, {failed} failed, {requests} requests",
        mpm.name(),
        t.elapsed()
    );
    assert_eq!(failed, 0, "TLS handshakes failed with the right CA and name");
    assert!(requests >= 258, "the responder answered {requests} requests over TLS, expected ≥ 258");
    assert!(ok < requests, "every request made its own TLS handshake ({ok} for {requests}): no link was reused");
    assert_no_sentinel_dial(&h);
    eprintln!("{} tls load in {:?}", mpm.name(), t0.elapsed());
}

fn tail_of(h: &Httpd) -> String {
    let l = h.error_log();
    l[l.len().saturating_sub(4000)..].to_string()
}

#[test]
fn tls_event() {
    load(Mpm::Event);
}

#[test]
fn tls_prefork() {
    load(Mpm::Prefork);
}

// ---------------------------------------------------------------------------
// Keep-alive reuse, the tap, and what must fail
// ---------------------------------------------------------------------------

#[test]
fn tls_reuse_tap_and_refusals() {
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD).module("ssl_module", "mod_ssl.so");
    let pki = Pki::new(b.dir());
    pki.leaf("srv", "localhost", "ca", 3, false);
    pki.leaf("expired", "localhost", "ca", -1, false);
    pki.leaf("other", "other.example", "ca", 3, false);
    pki.leaf("client", "httpd-client", "ca", 3, true);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=3s", secret.display());
    let good = https_node("good", 1, 1);
    let wrongca = https_node("wrongca", 2, 1);
    let expired = https_node("expired", 3, 1);
    let wrongname = https_node("wrongname", 4, 1);
    let mtls_none = https_node("mtlsnone", 5, 1);
    let mtls = https_node("mtls", 6, 1);
    let nodes = [&good, &wrongca, &expired, &wrongname, &mtls_none, &mtls];
    let mut conf = ssl_proxy_conf(&pki);
    for n in nodes {
        conf.push_str(&n.conf(&opts));
    }
    // Per worker: another CA for wrongca; a client certificate for mtls.
    conf.push_str(&format!(
        "<Proxy \"{}\">\n    SSLProxyCACertificateFile \"{}\"\n</Proxy>\n",
        wrongca.url,
        pki.p("otherca.pem")
    ));
    conf.push_str(&format!(
        "<Proxy \"{}\">\n    SSLProxyMachineCertificateFile \"{}\"\n</Proxy>\n",
        mtls.url,
        pki.p("client.both.pem")
    ));
    let h = b.conf(&conf).conf(STATUS_LOCATION).start();
    let dir = h.dir().to_path_buf();

    // The good node's agent dials through the tap.
    let tap = Tap::start(good.first);
    let mg = free_port();
    let mut ga = responder_args(&good, &secret, &pki, "srv", mg);
    ga.frontends = vec![format!("127.0.0.1:{}", tap.port)];
    let _ag = ga.idle(4).spawn(Some(&dir));
    let mut agents = Vec::new();
    let mut mports = Vec::new();
    for (n, leaf) in
        [(&wrongca, "srv"), (&expired, "expired"), (&wrongname, "other"), (&mtls_none, "srv"), (&mtls, "srv")]
    {
        let m = free_port();
        let mut a = responder_args(n, &secret, &pki, leaf, m).idle(2);
        if n.name.starts_with("mtls") {
            a.extra.extend(["--tls-client-ca".to_string(), pki.p("ca.pem")]);
        }
        agents.push(a.spawn(Some(&dir)));
        mports.push(m);
    }
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    wait_all_idle(&h, &names, Duration::from_secs(15));

    // Keep-alive: the second request reuses the TLS link, no new handshake.
    let r1 = get(&good.url_on(&h, "one")).unwrap();
    assert_eq!(r1.status, 200, "first GET: {} {:?}\n{}", r1.status, r1.text(), tail_of(&h));
    let r2 = get(&good.url_on(&h, "two")).unwrap();
    assert_eq!(r2.status, 200);
    let (c1, q1, h1) = x_tls(&r1);
    let (c2, q2, h2) = x_tls(&r2);
    assert_eq!((c2, q2), (c1, q1 + 1), "the second request came on another TLS connection");
    assert_eq!(h2, h1, "the second request on a kept link made a new TLS handshake");
    let (hs_before, _, _) = tls_counters(mg);

    // The tap: a marker in the request body and in the echoed response never
    // shows on the link, yet the bytes went through it (TLS records).
    let marker = b"MARKER-5f3c-never-in-clear";
    let mut body = b"prefix ".to_vec();
    for _ in 0..200 {
        body.extend_from_slice(marker);
    }
    let before = tap.captured().len();
    let r = post(&good.url_on(&h, "echo"), &body).unwrap();
    assert_eq!(r.status, 200);
    assert!(contains(&r.body, marker), "the client did not get the marker back");
    let cap = tap.captured();
    assert!(cap.len() - before >= 2 * body.len(), "the tap saw {} bytes: the request did not go through it", cap.len());
    assert!(contains(&cap, &[0x17, 0x03, 0x03]), "no TLS application data record on the link");
    assert!(!contains(&cap, marker), "the marker travelled in clear over the reversed link");
    assert!(!contains(&cap, b"POST /"), "the request line travelled in clear");
    let (hs_after, _, _) = tls_counters(mg);
    assert_eq!(hs_after, hs_before, "a request within the reuse window made a new TLS handshake");

    // Refusals: mod_proxy's usual error, a clear log line, nothing served, the link retired.
    let retired = |node: &str| -> u64 { status_json(&h).unwrap().nodes(node).map(|(_, n)| n.retired).sum() };
    let cases: [(&RNode, u16, &str); 4] = [
        (&wrongca, mports[0], "certificate verify failed"),
        (&expired, mports[1], "certificate has expired"),
        (&wrongname, mports[2], "AH02411"),
        (&mtls_none, mports[3], ""),
    ];
    for (n, m, why) in cases {
        let ret0 = retired(&n.name);
        let r = get(&n.url_on(&h, "must-not-be-served")).unwrap();
        assert!(r.status >= 500, "{}: status {} (expected a 5xx refusal)", n.name, r.status);
        assert!(r.header("X-TLS").is_none(), "{}: answered over TLS", n.name);
        eprintln!("{}: refused with {}", n.name, r.status);
        let (_, failed, served) = tls_counters(m);
        assert_eq!(served, 0, "{}: the responder served a request", n.name);
        // httpd aborts wrongname only after its side of the handshake ended
        // (the name check follows SSL_connect): the server saw it complete.
        if n.name != "wrongname" {
            assert!(wait_until(Duration::from_secs(3), || tls_counters(m).1 > 0), "{}: no failed handshake", n.name);
        }
        let _ = failed;
        assert!(wait_until(Duration::from_secs(3), || retired(&n.name) > ret0), "{}: link not retired", n.name);
        if n.name == "mtlsnone" {
            // TLS 1.3: the client's handshake ends before the server checks
            // for a certificate; the server's alert then ends the exchange.
            assert_eq!(r.status, 502, "mtlsnone: mod_proxy's error for a response that never came");
            assert!(h.error_log().contains("certificate required"), "mtlsnone: no alert in the log:\n{}", tail_of(&h));
        } else {
            assert_eq!(r.status, 500, "{}: mod_proxy's error for a failed TLS handshake", n.name);
            let log = h.error_log();
            assert!(log.contains(why), "{}: no {why:?} in the error log:\n{}", n.name, tail_of(&h));
            let worker = n.url.trim_end_matches('/');
            assert!(
                log.lines().any(|l| l.contains("PRX1032") && l.contains(worker)),
                "{}: no PRX1032 line naming {worker}:\n{}",
                n.name,
                tail_of(&h)
            );
        }
    }
    // mTLS: with httpd's client certificate the same backend serves.
    let r = get(&mtls.url_on(&h, "with-client-cert")).unwrap();
    assert_eq!(r.status, 200, "mtls with SSLProxyMachineCertificateFile: {} {:?}\n{}", r.status, r.text(), tail_of(&h));
    x_tls(&r);
    assert_no_sentinel_dial(&h);
}

// ---------------------------------------------------------------------------
// reversed-agent splicing to Tomcat's HTTPS connector
// ---------------------------------------------------------------------------

#[test]
fn tls_tomcat_https_connector() {
    if !tomcat_available() {
        return;
    }
    let b = Httpd::builder(Mpm::Event).module("ssl_module", "mod_ssl.so");
    let pki = Pki::new(b.dir());
    pki.leaf("tomcat", "localhost", "ca", 3, false);
    let tc = HttpsTomcat::start(&pki);
    let node = https_node("tc", 1, 6);
    let secret = b.secret("secret", SECRET);
    let h = b
        .conf(&ssl_proxy_conf(&pki))
        .conf(&node.conf(&format!("secret={} wait=5s tls=required", secret.display())))
        .conf(STATUS_LOCATION)
        .start();
    let backend = format!("127.0.0.1:{}", tc.port);
    let mp = free_port();
    let mut a = AgentArgs::backend(&node.name, Some(&secret), &node.range(), &backend).idle(6);
    a.extra = vec!["--metrics-listen".into(), format!("127.0.0.1:{mp}")];
    let _a = a.spawn(Some(h.dir()));
    wait_all_idle(&h, &["tc"], Duration::from_secs(20));

    let r = get(&node.url_on(&h, "hello.txt")).unwrap();
    assert_eq!(r.status, 200, "hello.txt over TLS from Tomcat: {} {:?}\n{}", r.status, r.text(), tail_of(&h));
    assert_eq!(r.text(), TOMCAT_HELLO_TXT);
    tomcat_tls_traffic(&h, &node, "Tomcat's HTTPS connector behind the agent", 0x70c4);
    // The links carrying those requests are the agent's spliced ones (kept
    // alive by httpd's pool; Tomcat's connector speaks nothing but TLS, and
    // secure.jsp saw the request arrive over TLS).
    let m = get(&format!("http://127.0.0.1:{mp}/metrics")).unwrap().text();
    assert!(
        m.lines().any(|l| l.starts_with("reversed_agent_used_connections_current{") && !l.ends_with(" 0")),
        "no spliced link in the agent's metrics:\n{m}"
    );
    assert_no_sentinel_dial(&h);
}

/// Debian's Tomcat with only an HTTPS connector (SSLHostConfig, PEM files)
/// on 127.0.0.1, in a private CATALINA_BASE.
struct HttpsTomcat {
    child: std::process::Child,
    port: u16,
    dir: TempDir,
}

impl HttpsTomcat {
    /// Tomcat's ordinary HTTPS connector on a free loopback port.
    fn start(pki: &Pki) -> HttpsTomcat {
        let port = free_port();
        let conn = format!(
            r#"    <Connector protocol="org.apache.coyote.http11.Http11NioProtocol" address="127.0.0.1" port="{port}"
               SSLEnabled="true" scheme="https" secure="true" maxThreads="50" connectionTimeout="60000">
      <SSLHostConfig>
        <Certificate certificateFile="{}" certificateKeyFile="{}" type="RSA" />
      </SSLHostConfig>
    </Connector>
"#,
            pki.p("tomcat.pem"),
            pki.p("tomcat.key")
        );
        HttpsTomcat::start_with(&conn, port, false)
    }

    /// Tomcat with the connector XML `conn`; waits for `port` to accept, or
    /// (port 0: a reversed connector listens on nothing) for "Server startup".
    fn start_with(conn: &str, port: u16, with_jar: bool) -> HttpsTomcat {
        let dir = TempDir::new("tomcat-https");
        let base = dir.path().to_path_buf();
        for sub in ["conf", "logs", "temp", "work", "lib", "webapps/ROOT"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        if with_jar {
            std::fs::copy(tomcat::connector_jar(), base.join("lib/mod_proxy_reversed-tomcat.jar")).unwrap();
        }
        let server_xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
{conn}    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#
        );
        std::fs::write(base.join("conf/server.xml"), server_xml).unwrap();
        copy_tomcat_conf(&base);
        let root = base.join("webapps/ROOT");
        std::fs::write(root.join("hello.txt"), TOMCAT_HELLO_TXT).unwrap();
        std::fs::write(root.join("echo.jsp"), tomcat::ECHO_JSP).unwrap();
        std::fs::write(
            root.join("secure.jsp"),
            "<%@ page session=\"false\" contentType=\"text/plain\" trimDirectiveWhitespaces=\"true\" %>secure=<%= request.isSecure() %> scheme=<%= request.getScheme() %>\n",
        )
        .unwrap();
        let java = std::fs::canonicalize("/usr/bin/java").unwrap();
        let java_home = java.parent().and_then(Path::parent).unwrap().to_path_buf();
        let out = std::fs::File::create(base.join("logs/console.log")).unwrap();
        use std::os::unix::process::CommandExt;
        let home = Path::new(TOMCAT_HOME);
        let child = Command::new(home.join("bin/catalina.sh"))
            .arg("run")
            .env("CATALINA_HOME", TOMCAT_HOME)
            .env("CATALINA_BASE", &base)
            .env("CATALINA_TMPDIR", base.join("temp"))
            .env("JAVA_HOME", java_home)
            .env("CATALINA_OPTS", "-Xmx256m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start catalina.sh run");
        let mut t = HttpsTomcat { child, port, dir };
        let ok = wait_until(Duration::from_secs(60), || {
            matches!(t.child.try_wait(), Ok(Some(_)))
                || if port > 0 { port_accepts("127.0.0.1", port) } else { t.log().contains("Server startup in") }
        });
        assert!(matches!(t.child.try_wait(), Ok(None)), "tomcat exited during start-up:\n{}", t.log());
        assert!(ok, "tomcat did not start within 60 s (port {port}):\n{}", t.log());
        t
    }
    fn log(&self) -> String {
        let p = self.dir.path().join("logs/console.log");
        let s = std::fs::read_to_string(p).unwrap_or_default();
        s[s.len().saturating_sub(8000)..].to_string()
    }
}

impl Drop for HttpsTomcat {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("=== https tomcat log tail ===\n{}", self.log());
        }
    }
}

// ---------------------------------------------------------------------------
// configtest
// ---------------------------------------------------------------------------

#[test]
fn tls_configtest_refusals() {
    // AJP cannot carry TLS: tls=required on an ajp:// node is refused with the reason.
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let ajp = RNode::new("ajptls", "ajp", "127.0.0.2:1", 1);
    let (ok, out) = b.conf(&ajp.conf(&format!("secret={} tls=required", secret.display()))).configtest();
    assert!(!ok, "configtest accepted tls=required on an AJP node:\n{out}");
    assert!(out.contains("ProxyReversed") && out.contains("mod_proxy_ajp") && out.contains("https://"), "{out}");
    // An https:// reversed worker without mod_ssl is refused, naming it.
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", SECRET);
    let n = https_node("nossl", 1, 1);
    let (ok, out) = b.conf(&n.conf(&format!("secret={}", secret.display()))).configtest();
    assert!(!ok, "configtest accepted an https:// reversed worker without mod_ssl:\n{out}");
    assert!(out.contains("PRX1030") && out.contains("https://localhost:1") && out.contains("mod_ssl"), "{out}");
    // With mod_ssl and tls=required it passes.
    let b = Httpd::builder(Mpm::Event).module("ssl_module", "mod_ssl.so");
    let secret = b.secret("secret", SECRET);
    let (ok, out) =
        b.conf("SSLProxyEngine on\n").conf(&n.conf(&format!("secret={} tls=required", secret.display()))).configtest();
    assert!(ok, "configtest refused a valid https:// node:\n{out}");
}

// ---------------------------------------------------------------------------
// Which name: ProxyPreserveHost, a balancer member, an MCMP Type=https node
// ---------------------------------------------------------------------------

/// GET `path` with `Host: host` on a fresh connection: (status, X-TLS header).
fn get_host(h: &Httpd, path: &str, host: &str) -> (u16, Option<String>) {
    let mut s = TcpStream::connect(("127.0.0.1", h.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let tls = text.lines().find_map(|l| l.strip_prefix("X-TLS: ")).map(str::to_string);
    (status, tls)
}

#[test]
fn tls_names_balancer_and_mcmp() {
    let b = Httpd::builder(Mpm::Event).mpm_settings(ONE_EVENT_CHILD).module("ssl_module", "mod_ssl.so");
    let pki = Pki::new(b.dir());
    pki.leaf("srv", "localhost", "ca", 3, false);
    // For the MCMP node, whose worker host is httpd's listen address.
    pki.leaf("addr", "127.0.0.1", "ca", 3, false);
    let secret = b.secret("secret", SECRET);
    let pres = https_node("pres", 1, 1);
    let member = https_node("member", 2, 1);
    let first = free_ports(4);
    let conf = format!(
        "{ssl}{pres}<Location \"/pres/\">\n    ProxyPreserveHost On\n</Location>\n\
         <Proxy \"balancer://tlsb\">\n    BalancerMember \"https://localhost:2\" route=m1\n</Proxy>\n\
         ProxyPass \"/tlsb/\" \"balancer://tlsb/\"\n\
         ProxyReversed member \"https://localhost:2\" {range} secret={s} wait=3s tls=required\n\
         ProxyReversedMCMP 127.0.0.1:{first}-{last} ports=4 wait=3s\n\
         ProxyReversedNodeSecret mc1 {s}\n\
         <Proxy \"balancer://mycluster\">\n    ProxySet growth=4\n</Proxy>\n\
         ProxyPass \"/mc/\" \"balancer://mycluster/\"\n\
         <Location \"/mcmp\">\n    SetHandler proxy-reversed-mcmp\n</Location>\n",
        ssl = ssl_proxy_conf(&pki),
        pres = pres.conf(&format!("secret={} wait=3s", secret.display())),
        range = member.range(),
        s = secret.display(),
        last = first + 3,
    );
    let h = b.conf(&conf).conf(STATUS_LOCATION).start();
    let dir = h.dir().to_path_buf();
    let _a1 = responder_args(&pres, &secret, &pki, "srv", free_port()).idle(3).spawn(Some(&dir));
    let _a2 = responder_args(&member, &secret, &pki, "srv", free_port()).idle(3).spawn(Some(&dir));
    let mc_node = RNode { name: "mc1".into(), scheme: "https", url: String::new(), first, last: first + 3 };
    let mut mc = responder_args(&mc_node, &secret, &pki, "addr", free_port()).idle(3);
    mc.extra.extend(
        [
            "--mcmp",
            &h.url("/mcmp"),
            "--type",
            "https",
            "--context",
            "/mc",
            "--alias",
            "localhost",
            "--status-interval",
            "1",
        ]
        .map(String::from),
    );
    let _a3 = mc.spawn(Some(&dir));
    wait_all_idle(&h, &["pres", "member"], Duration::from_secs(15));

    // ProxyPreserveHost: SNI and the check use the client's Host.
    let (st, t1) = get_host(&h, "/pres/a", "localhost");
    assert_eq!(st, 200, "Host: localhost with ProxyPreserveHost\n{}", tail_of(&h));
    let (st, _) = get_host(&h, "/pres/b", "other.example");
    assert_eq!(st, 500, "Host: other.example must fail the peer-name check (the certificate is for localhost)");
    let log = h.error_log();
    assert!(log.contains("AH02411") && log.contains("hostname other.example"), "{}", tail_of(&h));
    assert!(log.contains("PRX1031"), "the kept link made for localhost was not closed for other.example");
    let (st, t3) = get_host(&h, "/pres/c", "localhost");
    assert_eq!(st, 200, "back to Host: localhost\n{}", tail_of(&h));
    assert!(t1.is_some() && t3.is_some(), "not answered over TLS");

    // A balancer member.
    let r = get(&h.url("/tlsb/x")).unwrap();
    assert_eq!(r.status, 200, "https balancer member: {} {:?}\n{}", r.status, r.text(), tail_of(&h));
    x_tls(&r);

    // MCMP Type=https: the member https://127.0.0.1:<first> checks the name 127.0.0.1.
    let ok = wait_until(Duration::from_secs(15), || {
        get(&h.url("/mc/y")).is_ok_and(|r| r.status == 200 && r.header("X-TLS").is_some())
    });
    assert!(ok, "the MCMP Type=https node never served over TLS:\n{}", tail_of(&h));
    assert_no_sentinel_dial(&h);
}

// ---------------------------------------------------------------------------
// The in-Tomcat connector serving TLS on the links it dials
// ---------------------------------------------------------------------------

#[test]
fn tls_in_tomcat_connector() {
    if !tomcat_available() {
        return;
    }
    let b = Httpd::builder(Mpm::Event).module("ssl_module", "mod_ssl.so");
    let pki = Pki::new(b.dir());
    pki.leaf("tomcat", "localhost", "ca", 3, false);
    pki.leaf("client", "httpd-client", "ca", 3, true);
    // Tomcat's JSSE trusts the CA from a PKCS12 trust store (keytool, from the JDK).
    let out = Command::new("keytool")
        .args(["-importcert", "-noprompt", "-alias", "ca", "-file", &pki.p("ca.pem"), "-keystore", &pki.p("trust.p12")])
        .args(["-storetype", "PKCS12", "-storepass", "changeit"])
        .output()
        .expect("run keytool");
    assert!(out.status.success(), "keytool: {}", String::from_utf8_lossy(&out.stderr));
    let node = https_node("tcin", 1, 4);
    // Mutual TLS: Tomcat requires a client certificate; httpd presents one
    // for tcinm and none for tcinx.
    let mnode = https_node("tcinm", 2, 2);
    let xnode = https_node("tcinx", 3, 2);
    let secret = b.secret("secret", SECRET);
    let opts = format!("secret={} wait=5s tls=required", secret.display());
    let h = b
        .conf(&ssl_proxy_conf(&pki))
        .conf(&node.conf(&opts))
        .conf(&mnode.conf(&opts))
        .conf(&xnode.conf(&opts))
        .conf(&format!(
            "<Proxy \"{}\">\n    SSLProxyMachineCertificateFile \"{}\"\n</Proxy>\n",
            mnode.url,
            pki.p("client.both.pem")
        ))
        .conf(STATUS_LOCATION)
        .start();
    let connector = |n: &RNode, mutual: bool| {
        format!(
            r#"    <Connector protocol="{proto}" node="{name}" secretFile="{secret}" address="127.0.0.1"
               port="{first}" ports="{ports}" idleConnections="4" maxBackoff="1000"
               SSLEnabled="true" scheme="https" secure="true">
      <SSLHostConfig{verify}>
        <Certificate certificateFile="{cert}" certificateKeyFile="{key}" type="RSA" />
      </SSLHostConfig>
    </Connector>
"#,
            proto = tomcat::HTTP_PROTOCOL,
            name = n.name,
            secret = secret.display(),
            first = n.first,
            ports = n.last - n.first + 1,
            verify = if mutual {
                format!(
                    " certificateVerification=\"required\" truststoreFile=\"{}\" truststorePassword=\"changeit\" truststoreType=\"PKCS12\"",
                    pki.p("trust.p12")
                )
            } else {
                String::new()
            },
            cert = pki.p("tomcat.pem"),
            key = pki.p("tomcat.key"),
        )
    };
    let conn = connector(&node, false) + &connector(&mnode, true) + &connector(&xnode, true);
    let tc = HttpsTomcat::start_with(&conn, 0, true);
    wait_all_idle(&h, &["tcin", "tcinm", "tcinx"], Duration::from_secs(30));

    let r = get(&node.url_on(&h, "hello.txt")).unwrap();
    assert_eq!(
        r.status,
        200,
        "hello.txt over TLS from the in-Tomcat connector: {} {:?}\n{}\n{}",
        r.status,
        r.text(),
        tail_of(&h),
        tc.log()
    );
    assert_eq!(r.text(), TOMCAT_HELLO_TXT);
    tomcat_tls_traffic(&h, &node, "the in-Tomcat connector", 0x71c1);
    assert!(!h.error_log().contains("PRX1032"), "a TLS handshake failed:\n{}", tail_of(&h));

    // mTLS: with httpd's client certificate served, without it refused.
    let r = get(&mnode.url_on(&h, "secure.jsp")).unwrap();
    assert_eq!(r.status, 200, "mTLS to the in-Tomcat connector: {} {:?}\n{}", r.status, r.text(), tail_of(&h));
    assert_eq!(r.text().trim(), "secure=true scheme=https");
    let r = get(&xnode.url_on(&h, "secure.jsp")).unwrap();
    assert!(r.status >= 500, "no client certificate, yet Tomcat answered {} {:?}", r.status, r.text());
    assert_no_sentinel_dial(&h);
}

/// Through `node` to a Tomcat that serves TLS itself: secure.jsp sees the
/// request arrive over https, a 10 MB POST is echoed intact (sha256), and 16
/// clients x 4 POSTs pass with zero errors. `what` names the setup in failures.
fn tomcat_tls_traffic(h: &Httpd, node: &RNode, what: &str, seed: u64) {
    let r = get(&node.url_on(h, "secure.jsp")).unwrap();
    assert_eq!(r.status, 200, "{what}: secure.jsp: {} {:?}", r.status, r.text());
    assert_eq!(r.text().trim(), "secure=true scheme=https", "{what}: Tomcat did not see the request over TLS");
    let big = pseudo_random_bytes(10 << 20, seed);
    let r = post_with(&client(Duration::from_secs(120)), &node.url_on(h, "echo.jsp"), &big).unwrap();
    assert_eq!(r.status, 200, "{what}: 10 MB POST over TLS: {}", r.status);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&big), "{what}: the echo differs");
    let errors = Arc::new(AtomicUsize::new(0));
    let ths: Vec<_> = (0..16)
        .map(|i| {
            let (u, errors, tag) = (node.url_on(h, "echo.jsp"), errors.clone(), format!("{seed:x}"));
            std::thread::spawn(move || {
                let c = client(Duration::from_secs(60));
                for j in 0..4 {
                    let body = format!("tomcat tls {tag} {i} {j} {}", "z".repeat(i * 97 + j));
                    match post_with(&c, &u, body.as_bytes()) {
                        Ok(r) if r.status == 200 && r.body == body.as_bytes() => {}
                        _ => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    for t in ths {
        t.join().unwrap();
    }
    assert_eq!(errors.load(Ordering::SeqCst), 0, "{what}: concurrent requests over TLS failed");
}
