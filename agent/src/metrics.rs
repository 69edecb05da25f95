//! `--metrics-listen`: the agent's counters in the Prometheus text format
//! (version 0.0.4, through the `prometheus-client` crate), served over plain
//! HTTP on `GET /metrics`. The pool, the splicer and the MCMP registrars
//! update atomics here; a scrape reads them into a snapshot and encodes it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// What became of a dial (a bounded label pair `result`, `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dial {
    /// Authenticated and idle in httpd's pool.
    Accepted,
    /// Connect refused or timed out, I/O or protocol trouble in the handshake.
    Network,
    /// Wrong secret, wrong node, impostor, malformed hello.
    Auth,
    /// httpd's pool for the node was full (`maxidle`).
    PoolFull,
    /// The httpd child was shutting down.
    ShuttingDown,
    /// The agent began shutting down while dialing.
    Cancelled,
}

impl Dial {
    pub const ALL: [Dial; 6] =
        [Dial::Accepted, Dial::Network, Dial::Auth, Dial::PoolFull, Dial::ShuttingDown, Dial::Cancelled];

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Dial::Accepted => ("accepted", "ok"),
            Dial::Network => ("failed", "network"),
            Dial::Auth => ("failed", "auth"),
            Dial::PoolFull => ("refused", "pool_full"),
            Dial::ShuttingDown => ("refused", "shutting_down"),
            Dial::Cancelled => ("cancelled", "shutdown"),
        }
    }
}

/// Why an idle link ended without carrying a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleClose {
    ByHttpd,
    /// No PING within the interval + timeout httpd announced.
    Dead,
    /// httpd wrote bytes that are neither a PING nor a request.
    Garbage,
}

impl IdleClose {
    pub const ALL: [IdleClose; 3] = [IdleClose::ByHttpd, IdleClose::Dead, IdleClose::Garbage];

    fn label(self) -> &'static str {
        match self {
            IdleClose::ByHttpd => "closed_by_httpd",
            IdleClose::Dead => "no_ping",
            IdleClose::Garbage => "protocol",
        }
    }
}

/// The backoff state of one port, as its keeper last published it.
#[derive(Debug, Clone, Copy)]
pub struct PortState {
    pub port: u16,
    /// Consecutive failed dials (one per backoff round).
    pub failures: u32,
    /// Refused as full or shutting down since the last success.
    pub full: bool,
    /// No dial before this.
    pub next_allowed: Instant,
}

/// The counters of one front end.
#[derive(Debug)]
pub struct FrontMetrics {
    name: String,
    target: AtomicU64,
    dials: [AtomicU64; Dial::ALL.len()],
    idle_closed: [AtomicU64; IdleClose::ALL.len()],
    idle: AtomicU64,
    busy: AtomicI64,
    ports: Mutex<Vec<PortState>>,
}

impl FrontMetrics {
    pub fn dialed(&self, d: Dial) {
        self.dials[d as usize].fetch_add(1, Relaxed);
    }
    pub fn idle_closed(&self, c: IdleClose) {
        self.idle_closed[c as usize].fetch_add(1, Relaxed);
    }
    pub fn set_target(&self, n: usize) {
        self.target.store(n as u64, Relaxed);
    }
    pub fn set_idle(&self, n: usize) {
        self.idle.store(n as u64, Relaxed);
    }
    pub fn set_ports(&self, ports: impl Iterator<Item = PortState>) {
        let mut p = lock(&self.ports);
        p.clear();
        p.extend(ports);
    }
    /// Counts a link that carries a request until the guard drops.
    pub fn busy(self: &Arc<Self>) -> BusyLink {
        self.busy.fetch_add(1, Relaxed);
        BusyLink(self.clone())
    }
}

pub struct BusyLink(Arc<FrontMetrics>);

impl Drop for BusyLink {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

/// The state of the registration with one MCMP receiver.
#[derive(Debug)]
pub struct McmpMetrics {
    receiver: String,
    registered: AtomicBool,
    state_ok: AtomicBool,
    load: AtomicI64,
    register_failures: AtomicU64,
    status_failures: AtomicU64,
    statuses: AtomicU64,
}

impl McmpMetrics {
    pub fn registered(&self) {
        self.registered.store(true, Relaxed);
    }
    pub fn register_failed(&self) {
        self.registered.store(false, Relaxed);
        self.register_failures.fetch_add(1, Relaxed);
    }
    pub fn status_ok(&self, load: i32, state_ok: bool) {
        self.statuses.fetch_add(1, Relaxed);
        self.load.store(load as i64, Relaxed);
        self.state_ok.store(state_ok, Relaxed);
    }
    pub fn status_failed(&self) {
        self.registered.store(false, Relaxed);
        self.status_failures.fetch_add(1, Relaxed);
    }
}

/// Everything a scrape shows.
#[derive(Debug, Default)]
pub struct Metrics {
    fronts: Mutex<Vec<Arc<FrontMetrics>>>,
    mcmp: Mutex<Vec<Arc<McmpMetrics>>>,
    to_backend: AtomicU64,
    to_httpd: AtomicU64,
    splices: AtomicU64,
    backend_unreachable: AtomicU64,
    started: Mutex<Option<std::time::SystemTime>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let m = Metrics::default();
        *lock(&m.started) = Some(std::time::SystemTime::now());
        Arc::new(m)
    }

    /// The counters of front end `name` (created on first use).
    pub fn front(&self, name: &str, target: usize) -> Arc<FrontMetrics> {
        let mut f = lock(&self.fronts);
        if let Some(x) = f.iter().find(|x| x.name == name) {
            x.target.store(target as u64, Relaxed);
            return x.clone();
        }
        let x = Arc::new(FrontMetrics {
            name: name.to_string(),
            target: AtomicU64::new(target as u64),
            dials: Default::default(),
            idle_closed: Default::default(),
            idle: AtomicU64::new(0),
            busy: AtomicI64::new(0),
            ports: Mutex::new(Vec::new()),
        });
        f.push(x.clone());
        x
    }

    /// The registration state with MCMP receiver `receiver` (created on first use).
    pub fn mcmp(&self, receiver: &str) -> Arc<McmpMetrics> {
        let mut v = lock(&self.mcmp);
        if let Some(x) = v.iter().find(|x| x.receiver == receiver) {
            return x.clone();
        }
        let x = Arc::new(McmpMetrics {
            receiver: receiver.to_string(),
            registered: AtomicBool::new(false),
            state_ok: AtomicBool::new(false),
            load: AtomicI64::new(0),
            register_failures: AtomicU64::new(0),
            status_failures: AtomicU64::new(0),
            statuses: AtomicU64::new(0),
        });
        v.push(x.clone());
        x
    }

    /// A spliced connection finished: bytes each way, or None when the backend was unreachable.
    pub fn spliced(&self, bytes: Option<(u64, u64)>) {
        match bytes {
            Some((up, down)) => {
                self.splices.fetch_add(1, Relaxed);
                self.to_backend.fetch_add(up, Relaxed);
                self.to_httpd.fetch_add(down, Relaxed);
            }
            None => {
                self.backend_unreachable.fetch_add(1, Relaxed);
            }
        }
    }

    /// The exposition.
    pub fn render(&self) -> String {
        let now = Instant::now();
        let snap = Snapshot {
            fronts: lock(&self.fronts)
                .iter()
                .map(|f| FrontSnap {
                    name: f.name.clone(),
                    target: f.target.load(Relaxed),
                    dials: Dial::ALL.map(|d| f.dials[d as usize].load(Relaxed)),
                    idle_closed: IdleClose::ALL.map(|c| f.idle_closed[c as usize].load(Relaxed)),
                    idle: f.idle.load(Relaxed),
                    busy: f.busy.load(Relaxed).max(0),
                    ports: lock(&f.ports)
                        .iter()
                        .map(|p| (p.port, p.failures, p.full, p.next_allowed.saturating_duration_since(now)))
                        .collect(),
                })
                .collect(),
            mcmp: lock(&self.mcmp)
                .iter()
                .map(|m| McmpSnap {
                    receiver: m.receiver.clone(),
                    registered: m.registered.load(Relaxed),
                    state_ok: m.state_ok.load(Relaxed),
                    load: m.load.load(Relaxed),
                    register_failures: m.register_failures.load(Relaxed),
                    status_failures: m.status_failures.load(Relaxed),
                    statuses: m.statuses.load(Relaxed),
                })
                .collect(),
            to_backend: self.to_backend.load(Relaxed),
            to_httpd: self.to_httpd.load(Relaxed),
            splices: self.splices.load(Relaxed),
            backend_unreachable: self.backend_unreachable.load(Relaxed),
            start_seconds: lock(&self.started)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        };
        let mut reg = Registry::with_prefix("reversed_agent");
        reg.register_collector(Box::new(snap));
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Debug)]
struct FrontSnap {
    name: String,
    target: u64,
    dials: [u64; Dial::ALL.len()],
    idle_closed: [u64; IdleClose::ALL.len()],
    idle: u64,
    busy: i64,
    /// port, failures, full, backoff left
    ports: Vec<(u16, u32, bool, Duration)>,
}

/// A per-front-end gauge: name, help, how to read it.
type PerFront = (&'static str, &'static str, fn(&FrontSnap) -> i64);

#[derive(Debug)]
struct McmpSnap {
    receiver: String,
    registered: bool,
    state_ok: bool,
    load: i64,
    register_failures: u64,
    status_failures: u64,
    statuses: u64,
}

#[derive(Debug)]
struct Snapshot {
    fronts: Vec<FrontSnap>,
    mcmp: Vec<McmpSnap>,
    to_backend: u64,
    to_httpd: u64,
    splices: u64,
    backend_unreachable: u64,
    start_seconds: f64,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let mut m = enc.encode_descriptor("build", "Version of the agent", None, MetricType::Info)?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        let mut m = enc.encode_descriptor(
            "start_time",
            "When the agent started, since the epoch",
            Some(&Unit::Seconds),
            Gauge,
        )?;
        m.encode_gauge(&self.start_seconds)?;

        let mut m = enc.encode_descriptor("dials", "Dials into httpd, by result and reason", None, Counter)?;
        for f in &self.fronts {
            for (d, v) in Dial::ALL.iter().zip(&f.dials) {
                let (result, reason) = d.labels();
                let l = [("frontend", f.name.as_str()), ("result", result), ("reason", reason)];
                m.encode_family(&l)?.encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "idle_connections_closed",
            "Idle links that ended without carrying a request, by reason",
            None,
            Counter,
        )?;
        for f in &self.fronts {
            for (c, v) in IdleClose::ALL.iter().zip(&f.idle_closed) {
                let l = [("frontend", f.name.as_str()), ("reason", c.label())];
                m.encode_family(&l)?.encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
        }
        let gauges: [PerFront; 3] = [
            ("idle_connections_current", "Authenticated idle links in httpd's pool", |f| f.idle as i64),
            ("used_connections_current", "Links carrying a request (spliced or answered)", |f| f.busy),
            ("idle_connections_target", "Idle links the agent keeps (--idle)", |f| f.target as i64),
        ];
        for (name, help, get) in gauges {
            let mut m = enc.encode_descriptor(name, help, None, Gauge)?;
            for f in &self.fronts {
                m.encode_family(&[("frontend", f.name.as_str())])?.encode_gauge(&get(f))?;
            }
        }

        let mut m =
            enc.encode_descriptor("port_failures", "Consecutive failed dials of a port (0: healthy)", None, Gauge)?;
        for f in &self.fronts {
            for (port, failures, _, _) in &f.ports {
                let p = port.to_string();
                m.encode_family(&[("frontend", f.name.as_str()), ("port", p.as_str())])?.encode_gauge(failures)?;
            }
        }
        let mut m =
            enc.encode_descriptor("port_pool_full", "1 while a port refuses as full or shutting down", None, Gauge)?;
        for f in &self.fronts {
            for (port, _, full, _) in &f.ports {
                let p = port.to_string();
                m.encode_family(&[("frontend", f.name.as_str()), ("port", p.as_str())])?
                    .encode_gauge(&(*full as i64))?;
            }
        }
        let mut m = enc.encode_descriptor(
            "port_backoff",
            "Time left before the next dial of a port may start",
            Some(&Unit::Seconds),
            Gauge,
        )?;
        for f in &self.fronts {
            for (port, _, _, left) in &f.ports {
                let p = port.to_string();
                m.encode_family(&[("frontend", f.name.as_str()), ("port", p.as_str())])?
                    .encode_gauge(&left.as_secs_f64())?;
            }
        }

        let mut m = enc.encode_descriptor(
            "spliced",
            "Bytes spliced between httpd and the backend, counted when a connection ends",
            Some(&Unit::Bytes),
            Counter,
        )?;
        m.encode_family(&[("direction", "to_backend")])?
            .encode_counter::<NoLabelSet, _, u64>(&self.to_backend, None)?;
        m.encode_family(&[("direction", "to_httpd")])?.encode_counter::<NoLabelSet, _, u64>(&self.to_httpd, None)?;
        let mut m = enc.encode_descriptor("splices", "Used links spliced to the backend, by result", None, Counter)?;
        m.encode_family(&[("result", "done")])?.encode_counter::<NoLabelSet, _, u64>(&self.splices, None)?;
        m.encode_family(&[("result", "backend_unreachable")])?
            .encode_counter::<NoLabelSet, _, u64>(&self.backend_unreachable, None)?;

        if !self.mcmp.is_empty() {
            let mut m = enc.encode_descriptor(
                "mcmp_registered",
                "1 while the node is registered with the receiver",
                None,
                Gauge,
            )?;
            for r in &self.mcmp {
                m.encode_family(&[("receiver", r.receiver.as_str())])?.encode_gauge(&(r.registered as i64))?;
            }
            let mut m =
                enc.encode_descriptor("mcmp_state_ok", "1 while httpd's last STATUS reply said State=OK", None, Gauge)?;
            for r in &self.mcmp {
                m.encode_family(&[("receiver", r.receiver.as_str())])?.encode_gauge(&(r.state_ok as i64))?;
            }
            let mut m = enc.encode_descriptor(
                "mcmp_load",
                "Load the last STATUS sent (100 idle .. 1 busy, -1 backend down)",
                None,
                Gauge,
            )?;
            for r in &self.mcmp {
                m.encode_family(&[("receiver", r.receiver.as_str())])?.encode_gauge(&r.load)?;
            }
            let mut m =
                enc.encode_descriptor("mcmp_messages", "MCMP exchanges, by message and result", None, Counter)?;
            for r in &self.mcmp {
                let rc = r.receiver.as_str();
                m.encode_family(&[("receiver", rc), ("message", "status"), ("result", "ok")])?
                    .encode_counter::<NoLabelSet, _, u64>(&r.statuses, None)?;
                m.encode_family(&[("receiver", rc), ("message", "status"), ("result", "failed")])?
                    .encode_counter::<NoLabelSet, _, u64>(&r.status_failures, None)?;
                m.encode_family(&[("receiver", rc), ("message", "register"), ("result", "failed")])?
                    .encode_counter::<NoLabelSet, _, u64>(&r.register_failures, None)?;
            }
        }
        self.encode_tls(&mut enc)
    }
}

impl Snapshot {
    /// The responder's TLS (`--tls-cert`): handshakes by result, requests answered inside TLS.
    fn encode_tls(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use crate::tls::{HANDSHAKES_FAILED, HANDSHAKES_OK, REQUESTS};
        let (ok, failed, requests) =
            (HANDSHAKES_OK.load(Relaxed), HANDSHAKES_FAILED.load(Relaxed), REQUESTS.load(Relaxed));
        let mut m = enc.encode_descriptor(
            "responder_tls_handshakes",
            "TLS handshakes of the built-in responder, by result",
            None,
            MetricType::Counter,
        )?;
        m.encode_family(&[("result", "ok")])?.encode_counter::<NoLabelSet, _, u64>(&ok, None)?;
        m.encode_family(&[("result", "failed")])?.encode_counter::<NoLabelSet, _, u64>(&failed, None)?;
        let mut m = enc.encode_descriptor(
            "responder_tls_requests",
            "Requests the built-in responder answered over TLS",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&requests, None)?;
        Ok(())
    }
}

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` (and `/`) on `l` until shutdown; one request per connection.
pub async fn serve(l: TcpListener, m: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (s, _) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::pool::shutdown_begun(&mut shutdown) => return,
        };
        let m = m.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(s, &m)).await;
        });
    }
}

async fn answer(mut s: TcpStream, m: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, ctype, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics" | b"/") => {
            ("200 OK", prometheus_client::encoding::prometheus_text::CONTENT_TYPE, m.render())
        }
        (b"GET" | b"HEAD", _) => ("404 Not Found", "text/plain", "not found: GET /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET /metrics\n".to_string()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != b"HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    s.write_all(&out).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition() {
        let m = Metrics::new();
        let f = m.front("127.0.0.1:9000-9001", 4);
        f.dialed(Dial::Accepted);
        f.dialed(Dial::Accepted);
        f.dialed(Dial::Network);
        f.set_idle(2);
        let _b = f.busy();
        f.set_ports([PortState { port: 9000, failures: 3, full: false, next_allowed: Instant::now() }].into_iter());
        m.spliced(Some((10, 20)));
        let t = m.render();
        for want in [
            "reversed_agent_dials_total{frontend=\"127.0.0.1:9000-9001\",result=\"accepted\",reason=\"ok\"} 2\n",
            "reversed_agent_dials_total{frontend=\"127.0.0.1:9000-9001\",result=\"failed\",reason=\"network\"} 1\n",
            "reversed_agent_idle_connections_current{frontend=\"127.0.0.1:9000-9001\"} 2\n",
            "reversed_agent_used_connections_current{frontend=\"127.0.0.1:9000-9001\"} 1\n",
            "reversed_agent_port_failures{frontend=\"127.0.0.1:9000-9001\",port=\"9000\"} 3\n",
            "reversed_agent_spliced_bytes_total{direction=\"to_httpd\"} 20\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(!t.contains("mcmp"), "no MCMP series without --mcmp");
    }
}
