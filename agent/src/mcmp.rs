//! Registration of the node with httpd over MCMP, the way mod_cluster's Java
//! side does it (wire form: `reversed_proto::mcmp`).
//!
//! Per MCMP receiver (`--mcmp URL`), one task:
//! 1. `CONFIG` with JVMRoute = the node, Host/Port = the httpd front end and
//!    the first port of its range, Type, Balancer if given, `Reversed=true`;
//! 2. `ENABLE-APP` of the aliases/contexts, if any;
//! 3. every status interval a `STATUS` with `Load` ([`LoadSource`]).
//!
//! Any failure (connection, timeout, an error reply; a STATUS answered with
//! `Type: MEM` means httpd no longer knows the node: restarted, or the node
//! was removed) starts the registration again after a capped, jittered
//! exponential backoff, reset once a STATUS succeeds. On shutdown
//! [`remove_all`] sends `REMOVE-APP` to `<path>/*` to every receiver.
//!
//! One TCP connection per message, plain HTTP.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reversed_proto::mcmp::{self, AppMsg, Command, ConfigMsg, Reply, StatusMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::pool::Busy;

/// Longest wait for one MCMP exchange (connect, request, reply).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of the REMOVE-APP exchange on shutdown.
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of the backend connect check behind `Load=-1`.
pub const BACKEND_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// An MCMP receiver: `http://HOST[:PORT][/PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// The URL's path, "" when none (the Java side's `proxyURL`).
    pub path: String,
}

impl Receiver {
    pub fn parse(url: &str) -> Result<Receiver, String> {
        let bad = |why: &str| format!("invalid MCMP URL {url:?}: {why} (expected http://HOST[:PORT][/PATH])");
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(bad("only plain http is supported"))
            }
            _ => return Err(bad("not an http:// URL")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#', ' ', '*']) || path.bytes().any(|b| b.is_ascii_control()) {
            return Err(bad("bad path"));
        }
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains([' ', '[', ']', '/']) {
            return Err(bad("bad host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| bad("bad port"))?,
        };
        Ok(Receiver { host: host.to_string(), port, path: path.to_string() })
    }

    /// `host:port` (IPv6 in brackets): the address to connect to and the Host
    /// header (the Java side always names the port).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// What the node registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// JVMRoute: the node name.
    pub node: String,
    pub balancer: Option<String>,
    /// Type: the protocol httpd speaks over the connections (ajp or http).
    pub kind: String,
    /// Host: the httpd front end the agent dials (IPv6 in brackets, as Java).
    pub host: String,
    /// Port: the first port of that front end's range.
    pub port: u16,
    pub aliases: Vec<String>,
    pub contexts: Vec<String>,
}

impl Registration {
    pub fn config(&self) -> ConfigMsg {
        ConfigMsg {
            jvm_route: self.node.clone(),
            balancer: self.balancer.clone(),
            host: Some(self.host.clone()),
            port: Some(self.port),
            kind: Some(self.kind.clone()),
            reversed: true,
            ..ConfigMsg::default()
        }
    }

    /// The ENABLE-APP message, when there are contexts.
    pub fn enable(&self) -> Option<AppMsg> {
        (!self.contexts.is_empty()).then(|| AppMsg {
            jvm_route: self.node.clone(),
            aliases: self.aliases.clone(),
            contexts: self.contexts.clone(),
        })
    }

    pub fn remove(&self) -> AppMsg {
        AppMsg { jvm_route: self.node.clone(), ..AppMsg::default() }
    }

    /// Checks what httpd would check (mod_manager's limits), through the codec.
    pub fn validate(&self) -> Result<(), String> {
        let why = |e: mcmp::Error| format!("the MCMP registration would be refused: {}", e.mess);
        for v in [Some(&self.node), self.balancer.as_ref(), Some(&self.host)]
            .into_iter()
            .flatten()
            .chain(&self.aliases)
            .chain(&self.contexts)
        {
            if v.contains(' ') {
                return Err(format!("{v:?}: MCMP values cannot hold a space (it would reach httpd as '+')"));
            }
        }
        let c = mcmp::parse_config(self.config().encode().as_bytes()).map_err(why)?;
        if c.balancer != self.balancer {
            return Err("--balancer must be lower case (httpd lower-cases balancer names)".into());
        }
        if let Some(e) = self.enable() {
            let back = mcmp::parse_app(e.encode().as_bytes(), false).map_err(why)?;
            if back.aliases != self.aliases {
                return Err("--alias must be lower case (httpd lower-cases aliases)".into());
            }
        } else if !self.aliases.is_empty() {
            return Err(why(mcmp::Error::syntax(mcmp::text::SALIBAD)));
        }
        Ok(())
    }
}

/// How the node's `Load` is reckoned.
pub struct LoadSource {
    pub busy: Arc<Busy>,
    /// Idle connections the agent keeps (per front end × front ends).
    pub capacity: usize,
    /// The local backend (`--backend`); None in responder mode (always healthy).
    pub backend: Option<String>,
}

/// The share of the capacity left, 1..=100: 100 with no request in flight,
/// 50 with half the capacity in flight, 1 at or beyond it.
pub fn load_factor(in_flight: usize, capacity: usize) -> i32 {
    let cap = capacity.max(1) as u64;
    let used = (in_flight as u64).min(cap);
    let l = (100 * (cap - used) + cap / 2) / cap;
    l.clamp(1, 100) as i32
}

impl LoadSource {
    /// The `Load` to send: -1 when the backend does not accept a connection
    /// within [`BACKEND_CHECK_TIMEOUT`], else [`load_factor`].
    pub async fn load(&self) -> i32 {
        if let Some(b) = &self.backend {
            let ok =
                matches!(tokio::time::timeout(BACKEND_CHECK_TIMEOUT, TcpStream::connect(b.as_str())).await, Ok(Ok(_)));
            if !ok {
                return -1;
            }
        }
        load_factor(self.busy.in_flight(), self.capacity)
    }
}

/// Everything the registrars need.
pub struct Settings {
    pub receivers: Vec<Receiver>,
    pub registration: Registration,
    pub status_interval: Duration,
    /// First and longest retry delay (before jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Settings {
    pub fn new(receivers: Vec<Receiver>, registration: Registration, status_interval: Duration) -> Settings {
        Settings {
            receivers,
            registration,
            status_interval,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Connect, I/O, timeout or an unreadable reply.
    Net(String),
    /// httpd answered an MCMP error.
    Mcmp(mcmp::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Net(e) => f.write_str(e),
            Failure::Mcmp(e) => write!(f, "error reply Type={} Mess={:?}", e.kind, e.mess),
        }
    }
}

/// One exchange: connects, sends the request, reads the reply. An error reply
/// is [`Failure::Mcmp`].
pub async fn send(rcv: &Receiver, cmd: Command, path: &str, body: &str, timeout: Duration) -> Result<Reply, Failure> {
    let req = mcmp::encode_request(cmd, path, &rcv.authority(), body);
    let exchange = async {
        let mut s = TcpStream::connect(rcv.authority()).await.map_err(|e| format!("cannot connect: {e}"))?;
        let _ = s.set_nodelay(true);
        s.write_all(&req).await.map_err(|e| format!("write failed: {e}"))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((r, _)) = mcmp::parse_reply(&buf)? {
                return Ok(r);
            }
            let n = s.read(&mut chunk).await.map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return mcmp::parse_reply_at_eof(&buf).map(|(r, _)| r);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let reply = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(Failure::Net(format!("{cmd}: {e}"))),
        Err(_) => return Err(Failure::Net(format!("{cmd}: no reply within {} ms", timeout.as_millis()))),
    };
    match &reply.error {
        Some(e) => Err(Failure::Mcmp(e.clone())),
        None => Ok(reply),
    }
}

/// CONFIG, then ENABLE-APP when there are contexts.
pub async fn register(s: &Settings, rcv: &Receiver) -> Result<(), (Command, Failure)> {
    let reg = &s.registration;
    let path = mcmp::request_path(&rcv.path, false);
    send(rcv, Command::Config, &path, &reg.config().encode(), MESSAGE_TIMEOUT)
        .await
        .map_err(|f| (Command::Config, f))?;
    if let Some(en) = reg.enable() {
        send(rcv, Command::EnableApp, &path, &en.encode(), MESSAGE_TIMEOUT)
            .await
            .map_err(|f| (Command::EnableApp, f))?;
    }
    Ok(())
}

/// Capped exponential backoff with jitter: the n-th delay is uniform in
/// [d/2, d] with d = min(min << n, max).
struct Backoff {
    min: Duration,
    max: Duration,
    n: u32,
    rng: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        Backoff { min, max, n: 0, rng: u64::from_le_bytes(b) | 1 }
    }
    fn reset(&mut self) {
        self.n = 0;
    }
    fn next(&mut self) -> Duration {
        let d = self.min.saturating_mul(1u32 << self.n.min(20)).min(self.max);
        self.n = self.n.saturating_add(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        let span = (d - half).as_micros() as u64;
        half + Duration::from_micros(if span == 0 { 0 } else { self.rng % (span + 1) })
    }
}

/// Sleeps `d`; false when `stop` turned true (or its sender is gone) first.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|v| *v) => false,
    }
}

/// Keeps the node registered with one receiver until `stop` turns true.
pub async fn run(
    s: Arc<Settings>,
    load: Arc<LoadSource>,
    rcv: Receiver,
    m: Arc<crate::metrics::McmpMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let node = &s.registration.node;
    let status_path = mcmp::request_path(&rcv.path, false);
    let mut backoff = Backoff::new(s.backoff_min, s.backoff_max);
    let mut last_state_ok = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let reg = tokio::select! {
            r = register(&s, &rcv) => r,
            _ = stop.wait_for(|v| *v) => return,
        };
        if let Err((cmd, f)) = reg {
            m.register_failed();
            let d = backoff.next();
            info!("mcmp {rcv}: registration of node {node} failed: {cmd} {f}; retrying in {} ms", d.as_millis());
            if !pause(d, &mut stop).await {
                return;
            }
            continue;
        }
        m.registered();
        let r = &s.registration;
        info!(
            "mcmp {rcv}: registered node {node} (Host={} Port={} Type={}{}{}, Reversed=true)",
            r.host,
            r.port,
            r.kind,
            r.balancer.as_deref().map(|b| format!(" Balancer={b}")).unwrap_or_default(),
            if r.contexts.is_empty() {
                String::new()
            } else {
                format!("; enabled {} on {}", r.contexts.join(","), r.aliases.join(","))
            }
        );
        // STATUS now, then every interval.
        loop {
            let l = load.load().await;
            let body = StatusMsg { jvm_route: node.clone(), load: l }.encode();
            let res = tokio::select! {
                r = send(&rcv, Command::Status, &status_path, &body, MESSAGE_TIMEOUT) => r,
                _ = stop.wait_for(|v| *v) => return,
            };
            match res {
                Ok(reply) => {
                    backoff.reset();
                    let ok = !reply.body.contains("State=NOTOK");
                    m.status_ok(l, ok);
                    if ok != last_state_ok {
                        if ok {
                            info!("mcmp {rcv}: httpd reports node {node} reachable again (State=OK)");
                        } else {
                            warn!("mcmp {rcv}: httpd reports node {node} unreachable (State=NOTOK)");
                        }
                        last_state_ok = ok;
                    }
                    debug!("mcmp {rcv}: STATUS Load={l}: {}", reply.body.trim_end());
                }
                Err(f) => {
                    m.status_failed();
                    let d = backoff.next();
                    if matches!(&f, Failure::Mcmp(e) if e.kind == mcmp::ErrorType::Mem) {
                        info!(
                            "mcmp {rcv}: httpd does not know node {node} (STATUS {f}); registering again in {} ms",
                            d.as_millis()
                        );
                    } else {
                        info!(
                            "mcmp {rcv}: STATUS of node {node} failed: {f}; registering again in {} ms",
                            d.as_millis()
                        );
                    }
                    if !pause(d, &mut stop).await {
                        return;
                    }
                    break;
                }
            }
            if !pause(s.status_interval, &mut stop).await {
                return;
            }
        }
    }
}

/// REMOVE-APP `<path>/*` of the node to every receiver at once, all within
/// `timeout`. Logs the outcome of each.
pub async fn remove_all(s: &Settings, timeout: Duration) {
    let node = &s.registration.node;
    let body = s.registration.remove().encode();
    let sends = s.receivers.iter().map(|rcv| {
        let body = body.clone();
        async move {
            let path = mcmp::request_path(&rcv.path, true);
            match send(rcv, Command::RemoveApp, &path, &body, timeout).await {
                Ok(_) => info!("mcmp {rcv}: removed node {node}"),
                Err(f) => info!("mcmp {rcv}: removing node {node} failed: {f}"),
            }
        }
    });
    let all = futures_join_all(sends.collect());
    if tokio::time::timeout(timeout, all).await.is_err() {
        info!("mcmp: removing node {node}: gave up after {} ms", timeout.as_millis());
    }
}

/// Runs the futures concurrently on this task (no extra dependency).
async fn futures_join_all<F: Future<Output = ()>>(futs: Vec<F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_urls() {
        let r = Receiver::parse("http://127.0.0.1:8090/mcmp").unwrap();
        assert_eq!(r, Receiver { host: "127.0.0.1".into(), port: 8090, path: "/mcmp".into() });
        assert_eq!(r.authority(), "127.0.0.1:8090");
        assert_eq!(r.to_string(), "http://127.0.0.1:8090/mcmp");
        let r = Receiver::parse("HTTP://[::1]:6666").unwrap();
        assert_eq!(r, Receiver { host: "::1".into(), port: 6666, path: "".into() });
        assert_eq!(r.authority(), "[::1]:6666");
        assert_eq!(Receiver::parse("http://proxy/").unwrap().port, 80);
        assert_eq!(Receiver::parse("http://[fe80::1]").unwrap().port, 80);
        for bad in [
            "https://h:1/",
            "h:1",
            "ftp://h/",
            "http://:1/",
            "http://h:0/",
            "http://h:x/",
            "http://h:1/a b",
            "http://h:1/*",
            "http://u@h:1/",
            "http://[::1:1/",
            "http://[::1]x/",
        ] {
            assert!(Receiver::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loads() {
        assert_eq!(load_factor(0, 8), 100);
        assert_eq!(load_factor(4, 8), 50);
        assert_eq!(load_factor(6, 8), 25);
        assert_eq!(load_factor(8, 8), 1);
        assert_eq!(load_factor(100_000, 8), 1);
        assert_eq!(load_factor(0, 0), 100);
        assert_eq!(load_factor(1, 0), 1);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let mut ds = Vec::new();
        for _ in 0..8 {
            ds.push(b.next());
        }
        let caps = [500u64, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000];
        for (d, c) in ds.iter().zip(caps) {
            assert!(*d >= Duration::from_millis(c / 2) && *d <= Duration::from_millis(c), "{d:?} vs {c}");
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(500));
    }

    fn reg() -> Registration {
        Registration {
            node: "app1".into(),
            balancer: None,
            kind: "ajp".into(),
            host: "127.0.0.1".into(),
            port: 9000,
            aliases: vec![],
            contexts: vec![],
        }
    }

    #[test]
    fn registration_messages_and_validation() {
        let r = reg();
        assert_eq!(r.config().encode(), "JVMRoute=app1&Host=127.0.0.1&Port=9000&Reversed=true&Type=ajp");
        assert!(r.enable().is_none());
        assert_eq!(r.remove().encode(), "JVMRoute=app1");
        assert!(r.validate().is_ok());
        let r2 = Registration {
            balancer: Some("shop".into()),
            aliases: vec!["localhost".into(), "www.example.com".into()],
            contexts: vec!["/app".into(), "/".into()],
            ..reg()
        };
        assert!(r2.validate().is_ok());
        assert_eq!(
            r2.enable().unwrap().encode(),
            "JVMRoute=app1&Alias=localhost%2Cwww.example.com&Context=%2Fapp%2C%2F"
        );
        let long = Registration { node: "n".repeat(64), ..reg() };
        assert!(long.validate().unwrap_err().contains("JVMRoute field too big"));
        assert!(Registration { balancer: Some("Shop".into()), ..reg() }.validate().is_err());
        assert!(Registration { aliases: vec!["A".into()], contexts: vec!["/".into()], ..reg() }.validate().is_err());
        assert!(Registration { aliases: vec!["a".into()], ..reg() }
            .validate()
            .unwrap_err()
            .contains("Alias without Context"));
        assert!(Registration { contexts: vec!["/".into()], ..reg() }
            .validate()
            .unwrap_err()
            .contains("Context without Alias"));
        assert!(Registration { contexts: vec!["/a b".into()], aliases: vec!["a".into()], ..reg() }.validate().is_err());
        let v6 = Registration { host: "[::1]".into(), ..reg() };
        assert_eq!(v6.config().encode(), "JVMRoute=app1&Host=%5B%3A%3A1%5D&Port=9000&Reversed=true&Type=ajp");
        assert!(v6.validate().is_ok());
    }
}
