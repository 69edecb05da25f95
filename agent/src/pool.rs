//! Pool keeping: per front end, keep `idle` authenticated idle connections
//! spread over the ports of its range, replace them as they get used or closed,
//! and back off ports that fail.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reversed_proto::{PingParams, Refusal, Verdict, PONG};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::handshake::{self, HandshakeError};
use crate::responder;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_millis(50);
/// Authentication failures back off as if this many more failures had happened (50 ms << 4 = 800 ms).
const AUTH_BACKOFF_HEAD_START: u32 = 4;
/// Least backoff after an authentication failure.
const AUTH_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// An idle connection that httpd closes sooner than this counts as a failed dial.
const QUICK_CLOSE: Duration = Duration::from_secs(1);
/// Quick closes further apart than this start a new streak.
const QUICK_STREAK_WINDOW: Duration = Duration::from_secs(30);
/// Most dials in flight per front end.
const MAX_DIALS_IN_FLIGHT: usize = 64;
/// Longest wait before probing a refused port while other ports of its range are up.
const LIVE_RANGE_PROBE: Duration = Duration::from_millis(250);
/// A range counts as live this long after it last held an idle connection:
/// a graceful restart closes every idle connection at once and the new
/// children bind (often the same) ports about a second later.
const RECENTLY_LIVE: Duration = Duration::from_secs(30);
/// Probes of refused ports in a live range are spread at least this far apart.
const PROBE_SPACING: Duration = Duration::from_millis(25);
/// After httpd closed an idle connection (a child went away), refused ports are probed within this.
const RESTART_PROBE: Duration = Duration::from_millis(100);
/// Authentication errors are logged on the first failure of a streak and then every N attempts.
const AUTH_LOG_EVERY: u32 = 20;
/// Links found dead (no PING in time) are reported as a warning at most this often per front end.
const DEAD_LOG_EVERY: Duration = Duration::from_secs(10);

/// TCP settings of every link: keepalive probes keep a NAT's or firewall's
/// state of an idle flow alive, and the user timeout bounds how long written
/// data may stay unacknowledged before the kernel gives the connection up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOpts {
    /// (idle time before the first probe, interval between probes, probes); None: off.
    pub keepalive: Option<(Duration, Duration, u32)>,
    /// None: the kernel's default.
    pub user_timeout: Option<Duration>,
}

impl Default for TcpOpts {
    fn default() -> Self {
        TcpOpts {
            keepalive: Some((Duration::from_secs(60), Duration::from_secs(10), 3)),
            user_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl TcpOpts {
    /// Parses `IDLE,INTERVAL,COUNT` (seconds, seconds, probes) or `off`.
    pub fn parse_keepalive(s: &str) -> Result<Option<(Duration, Duration, u32)>, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || format!("invalid keepalive {s:?}: expected IDLE,INTERVAL,COUNT in seconds, seconds and probes (e.g. 60,10,3) or off");
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [a, b, c] = parts[..] else { return Err(bad()) };
        let secs = |x: &str| x.parse::<u64>().ok().filter(|n| (1..=32767).contains(n)).map(Duration::from_secs);
        match (secs(a), secs(b), c.parse::<u32>().ok().filter(|n| (1..=127).contains(n))) {
            (Some(i), Some(v), Some(n)) => Ok(Some((i, v, n))),
            _ => Err(bad()),
        }
    }
}

/// The links of one port, by id: a link leaves exactly once (used or
/// closed), so the count can neither drift nor go below zero.
#[derive(Debug, Default)]
struct Links(HashSet<u64>);

impl Links {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn add(&mut self, id: u64) {
        self.0.insert(id);
    }
    /// False if the link was not (or no longer) counted here.
    fn remove(&mut self, id: u64) -> bool {
        self.0.remove(&id)
    }
}

/// An httpd front end and its port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontEnd {
    pub host: String,
    pub first: u16,
    pub last: u16,
}

impl FrontEnd {
    /// Parses `HOST:FIRST-LAST` or `HOST:PORT` (IPv6 hosts in brackets).
    pub fn parse(s: &str) -> Result<FrontEnd, String> {
        let bad = |why: &str| {
            format!("invalid front end {s:?}: {why} (expected HOST:FIRST-LAST or HOST:PORT)")
        };
        let (host, ports) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(['[', ']', ' ', '/']) {
            return Err(bad("bad host"));
        }
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| bad("bad port"))
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if first > last {
            return Err(bad("the first port is above the last"));
        }
        Ok(FrontEnd {
            host: host.to_owned(),
            first,
            last,
        })
    }

    fn addr(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, port)
        } else {
            format!("{}:{}", self.host, port)
        }
    }
}

impl fmt::Display for FrontEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.first == self.last {
            write!(f, "{}:{}", h, self.first)
        } else {
            write!(f, "{}:{}-{}", h, self.first, self.last)
        }
    }
}

/// What to do with a connection once httpd writes a request into it.
#[derive(Debug, Clone)]
pub enum Mode {
    Splice { backend: String },
    Respond(responder::Config),
}

/// Counts connections carrying requests, for graceful shutdown.
#[derive(Default)]
pub struct Busy {
    n: AtomicUsize,
    zero: Notify,
}

pub struct BusyGuard(Arc<Busy>);

impl Busy {
    pub fn enter(self: &Arc<Self>) -> BusyGuard {
        self.n.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.clone())
    }
    pub fn count(&self) -> usize {
        self.n.load(Ordering::SeqCst)
    }
    pub async fn wait_zero(&self) {
        loop {
            let notified = self.zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// Everything the dialers share.
pub struct Agent {
    pub node: String,
    /// None: `--no-auth`, the connection is idle right after connect.
    pub secret: Option<Vec<u8>>,
    pub mode: Mode,
    pub max_backoff: Duration,
    pub busy: Arc<Busy>,
    pub tcp: TcpOpts,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub dials: u64,
    pub accepted: u64,
    pub used: u64,
    /// Idle links that got no PING within the deadline httpd announced.
    pub dead: u64,
}

#[derive(Debug)]
enum Fail {
    /// Connection refused, timeout, I/O or protocol trouble.
    Net(String),
    /// Authentication / identity problem: the message is complete and logged as an error.
    Auth(String),
    /// Pool full or shutting down: try other ports.
    Busy(&'static str),
    /// Shutdown began while dialing.
    Cancelled,
}

enum Event {
    Dialed {
        port: u16,
        id: u64,
        /// When the dial began: a failure of a dial that was already in
        /// flight when the port last failed is the same event.
        started: Instant,
        result: Result<(), Fail>,
    },
    Used {
        port: u16,
        id: u64,
    },
    Closed {
        port: u16,
        id: u64,
        lived: Duration,
        why: Close,
    },
}

/// Why an idle link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// httpd closed it (a child went away, or it retired the link).
    ByHttpd,
    /// We did, on shutdown.
    ByUs,
    /// No PING arrived within the announced deadline: the path lost it.
    Dead,
    /// httpd wrote bytes that are neither a PING nor a request.
    Garbage,
}

#[derive(Debug)]
struct Port {
    port: u16,
    idle: Links,
    dialing: usize,
    /// Consecutive failures (Net/Auth), one per backoff round: dials that
    /// were in flight together and fail together count once.
    streak: u32,
    /// When the last counted failure arrived.
    last_fail: Option<Instant>,
    /// Refused with PoolFull/ShuttingDown since the last success.
    full: bool,
    /// Consecutive accepted connections that httpd closed right away (see QUICK_CLOSE);
    /// reset when a connection gets used or lives long.
    quick: u32,
    last_quick: Option<Instant>,
    next_allowed: Instant,
}

/// Resolves when shutdown begins (or its sender is gone).
pub async fn shutdown_begun(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Small xorshift generator for backoff jitter, seeded from the OS.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        Jitter(u64::from_le_bytes(b) | 1)
    }
    /// Uniform in [lo, hi].
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(if span == 0 { 0 } else { self.0 % (span + 1) })
    }
}

struct Keeper {
    fe: Arc<FrontEnd>,
    agent: Arc<Agent>,
    target: usize,
    ports: Vec<Port>,
    rotate: usize,
    jitter: Jitter,
    tx: mpsc::UnboundedSender<Event>,
    shutdown: watch::Receiver<bool>,
    ready: bool,
    full_logged: bool,
    stats: Stats,
    /// When the range last held an idle connection.
    last_live: Option<Instant>,
    next_id: u64,
    last_dead_log: Option<Instant>,
}

/// Keeps the pool of one front end until shutdown; returns its counters.
pub async fn run_frontend(
    fe: FrontEnd,
    target: usize,
    agent: Arc<Agent>,
    shutdown: watch::Receiver<bool>,
) -> Stats {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut k = Keeper::new(fe, target, agent, shutdown.clone(), tx);
    let mut sd = shutdown;
    loop {
        if *sd.borrow() {
            break;
        }
        k.fill();
        let wake = k.next_wake();
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => k.on_event(ev),
                None => break,
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            _ = shutdown_begun(&mut sd) => break,
        }
    }
    info!(
        "front end {}: stopping, closing idle connections ({} dials, {} accepted, {} used, {} found dead)",
        k.fe, k.stats.dials, k.stats.accepted, k.stats.used, k.stats.dead
    );
    k.stats
}

impl Keeper {
    fn new(
        fe: FrontEnd,
        target: usize,
        agent: Arc<Agent>,
        shutdown: watch::Receiver<bool>,
        tx: mpsc::UnboundedSender<Event>,
    ) -> Keeper {
        let now = Instant::now();
        let ports = (fe.first..=fe.last)
            .map(|port| Port {
                port,
                idle: Links::default(),
                dialing: 0,
                streak: 0,
                last_fail: None,
                full: false,
                quick: 0,
                last_quick: None,
                next_allowed: now,
            })
            .collect();
        Keeper {
            fe: Arc::new(fe),
            agent,
            target,
            ports,
            rotate: 0,
            jitter: Jitter::new(),
            tx,
            shutdown,
            ready: false,
            full_logged: false,
            stats: Stats::default(),
            last_live: None,
            next_id: 0,
            last_dead_log: None,
        }
    }

    fn idle(&self) -> usize {
        self.ports.iter().map(|p| p.idle.len()).sum()
    }

    /// Ports that are neither failing nor refusing as full.
    fn healthy(&self) -> usize {
        self.ports.iter().filter(|p| p.streak == 0 && !p.full).count()
    }

    fn start_dial(&mut self, i: usize) {
        self.ports[i].dialing += 1;
        self.stats.dials += 1;
        self.next_id += 1;
        tokio::spawn(dial_task(
            self.fe.clone(),
            self.agent.clone(),
            self.ports[i].port,
            self.next_id,
            Instant::now(),
            self.tx.clone(),
            self.shutdown.clone(),
        ));
    }

    /// Starts dials, least-loaded eligible port first, until idle + dialing
    /// reaches the target and every healthy port holds its fair share
    /// (target / healthy ports, rounded up). A port that was failing gets one
    /// probe when its backoff ends, whatever the totals: that is how a new
    /// httpd child is found on a port that refused before.
    fn fill(&mut self) {
        let now = Instant::now();
        let n = self.ports.len();
        for i in 0..n {
            let p = &self.ports[i];
            if p.streak > 0 && p.dialing == 0 && p.next_allowed <= now {
                self.start_dial(i);
            }
        }
        loop {
            let held: usize = self.ports.iter().map(|p| p.idle.len() + p.dialing).sum();
            let dialing: usize = self.ports.iter().map(|p| p.dialing).sum();
            if dialing >= MAX_DIALS_IN_FLIGHT {
                return;
            }
            let share = self.target.div_ceil(self.healthy().max(1));
            let mut best: Option<(usize, usize)> = None;
            for k in 0..n {
                let i = (self.rotate + k) % n;
                let p = &self.ports[i];
                if p.next_allowed > now {
                    continue;
                }
                // A port that has been failing gets one probe at a time.
                if (p.streak > 0 || p.full || p.quick > 0) && p.dialing > 0 {
                    continue;
                }
                let load = p.idle.len() + p.dialing;
                if best.is_none_or(|(_, l)| load < l) {
                    best = Some((i, load));
                }
            }
            let Some((i, load)) = best else { return };
            if held >= self.target && load >= share {
                return;
            }
            self.rotate = (i + 1) % n;
            self.start_dial(i);
        }
    }

    /// When the keeper must look again: the end of a failing port's backoff
    /// (it is probed whatever the totals), or of any port's backoff while the
    /// pool is short.
    fn next_wake(&self) -> Option<Instant> {
        let held: usize = self.ports.iter().map(|p| p.idle.len() + p.dialing).sum();
        let short = held < self.target;
        let now = Instant::now();
        self.ports
            .iter()
            .filter(|p| short || (p.streak > 0 && p.dialing == 0))
            .map(|p| p.next_allowed)
            .filter(|&t| t > now)
            .min()
    }

    /// While other ports of the range hold connections, or did within
    /// RECENTLY_LIVE, the range is up and a refusing port is most likely a
    /// child that httpd has not started yet: probe it often, spreading the
    /// probes (at most ~40 per second per front end), instead of backing off
    /// to the maximum.
    fn live_range_probe(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if self.ports.iter().any(|p| p.idle.len() > 0) {
            self.last_live = Some(now);
        }
        if !self.last_live.is_some_and(|t| now.duration_since(t) < RECENTLY_LIVE) {
            return None;
        }
        let failing = self.ports.iter().filter(|p| p.streak > 0).count() as u32;
        let d = LIVE_RANGE_PROBE.max(PROBE_SPACING * failing);
        Some(self.jitter.between(d * 3 / 4, d * 5 / 4))
    }

    fn backoff(&mut self, streak: u32) -> Duration {
        let max = self.agent.max_backoff.max(BACKOFF_START);
        let exp = BACKOFF_START.saturating_mul(1u32 << streak.saturating_sub(1).min(16));
        let d = exp.min(max);
        // +-25 % jitter, capped at the maximum.
        self.jitter.between(d * 3 / 4, d * 5 / 4).min(max)
    }

    fn slot(&mut self, port: u16) -> usize {
        (port - self.fe.first) as usize
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Dialed { port, id, started, result } => {
                let i = self.slot(port);
                self.ports[i].dialing = self.ports[i].dialing.saturating_sub(1);
                if result.is_ok() {
                    self.ports[i].idle.add(id);
                }
                let repeat = matches!(result, Err(Fail::Net(_) | Fail::Auth(_)))
                    && self.ports[i].last_fail.is_some_and(|t| started <= t);
                if repeat {
                    // In flight together with a dial that failed already: the
                    // backoff set then stands (escalating here made a port that
                    // refused for a moment at start-up wait the longest backoff).
                    debug!("{}: a dial begun before the last failure failed too; not counted", self.fe.addr(port));
                    return;
                }
                self.on_dialed(i, result);
            }
            Event::Used { port, id } => {
                self.last_live = Some(Instant::now());
                let i = self.slot(port);
                if !self.ports[i].idle.remove(id) {
                    debug!("{}: link {id} used but not counted idle", self.fe.addr(port));
                }
                self.ports[i].quick = 0;
                self.stats.used += 1;
            }
            Event::Closed { port, id, lived, why } => {
                self.last_live = Some(Instant::now());
                let i = self.slot(port);
                if !self.ports[i].idle.remove(id) {
                    debug!("{}: link {id} closed but not counted idle", self.fe.addr(port));
                }
                match why {
                    Close::ByUs => return,
                    Close::Dead | Close::Garbage => {
                        // Redial at once: nothing says the port is failing (a
                        // dial that fails backs off as usual).
                        if why == Close::Dead {
                            self.stats.dead += 1;
                        }
                        self.ready = false;
                        let now = Instant::now();
                        let what = if why == Close::Dead {
                            format!(
                                "got no ping within the interval + timeout httpd announced, {:.1} s after it was dialled (a NAT or firewall on the way lost it?)",
                                lived.as_secs_f64()
                            )
                        } else {
                            "received bytes that are neither a ping nor a request".to_string()
                        };
                        if self.last_dead_log.is_none_or(|t| now.duration_since(t) >= DEAD_LOG_EVERY) {
                            self.last_dead_log = Some(now);
                            warn!("{} (front end {}): an idle connection {what}; closed it and dialing a replacement", self.fe.addr(port), self.fe);
                        } else {
                            debug!("{}: an idle connection {what}; redialing", self.fe.addr(port));
                        }
                        return;
                    }
                    Close::ByHttpd => {}
                }
                let addr = self.fe.addr(port);
                self.ready = false;
                let now = Instant::now();
                // A child that goes away closes all its idle connections at
                // once: a connection that was already open at the last quick
                // close is part of that same event, not one more failure.
                let same_event = matches!(
                    (self.ports[i].last_quick, now.checked_sub(lived)),
                    (Some(t), Some(opened)) if opened <= t
                );
                if lived < QUICK_CLOSE && same_event {
                    debug!("{addr}: another connection closed in the same burst; not counted");
                } else if lived < QUICK_CLOSE {
                    // Accepted, then closed at once: pace the redials like failures.
                    let recent = self.ports[i]
                        .last_quick
                        .is_some_and(|t| now - t < QUICK_STREAK_WINDOW);
                    let quick = if recent { self.ports[i].quick + 1 } else { 1 };
                    self.ports[i].quick = quick;
                    self.ports[i].last_quick = Some(now);
                    let d = self.backoff(quick);
                    let p = &mut self.ports[i];
                    p.next_allowed = p.next_allowed.max(now + d);
                    if quick == 1 {
                        warn!(
                            "{addr} (front end {}): httpd closed the connection {} ms after accepting it; backing off",
                            self.fe,
                            lived.as_millis()
                        );
                    } else {
                        debug!("{addr}: closed right after accepting again ({quick} in a row); next try in {} ms", d.as_millis());
                    }
                } else {
                    self.ports[i].quick = 0;
                    debug!(
                        "idle connection to {addr} closed by httpd after {:.1} s; redialing",
                        lived.as_secs_f64()
                    );
                    // A child went away (graceful restart, or httpd shrinking
                    // its pool): new children may be binding refused ports now.
                    for p in self.ports.iter_mut().filter(|p| p.streak > 0) {
                        let soon = now + self.jitter.between(RESTART_PROBE / 2, RESTART_PROBE);
                        p.next_allowed = p.next_allowed.min(soon);
                    }
                }
            }
        }
        let idle = self.idle();
        if idle >= self.target && !self.ready {
            info!(
                "front end {} ready: {}/{} idle connections",
                self.fe, idle, self.target
            );
            self.ready = true;
            self.full_logged = false;
        }
    }

    fn on_dialed(&mut self, i: usize, result: Result<(), Fail>) {
        let addr = self.fe.addr(self.ports[i].port);
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.stats.accepted += 1;
                let p = &mut self.ports[i];
                if p.streak > 0 {
                    info!(
                        "{addr} (front end {}) OK again after {} failed attempts",
                        self.fe, p.streak
                    );
                    // The port refused in between: another process (a new
                    // child after a graceful restart) owns it now, and the
                    // quick closes of the old one say nothing about it.
                    p.quick = 0;
                    p.last_quick = None;
                }
                p.streak = 0;
                p.full = false;
                if p.quick > 0 {
                    // The last ones were closed right away: wait before trusting this one.
                    let q = p.quick;
                    let d = self.backoff(q);
                    self.ports[i].next_allowed = now + d;
                }
            }
            Err(Fail::Cancelled) => {}
            Err(Fail::Busy(what)) => {
                let d = self
                    .jitter
                    .between(Duration::from_millis(500), Duration::from_millis(1000));
                let p = &mut self.ports[i];
                p.full = true;
                p.next_allowed = now + d;
                debug!("{addr}: {what}; retrying this port in {} ms", d.as_millis());
                self.ready = false;
                if !self.full_logged {
                    self.full_logged = true;
                    info!(
                        "front end {} pool full: {} ({}/{} idle connections); backing off such ports and trying others",
                        self.fe,
                        what,
                        self.idle(),
                        self.target
                    );
                }
            }
            Err(Fail::Net(msg)) => {
                self.ports[i].streak += 1;
                self.ports[i].last_fail = Some(now);
                let streak = self.ports[i].streak;
                let mut d = self.backoff(streak);
                if let Some(probe) = self.live_range_probe() {
                    d = d.min(probe);
                }
                self.ports[i].next_allowed = now + d;
                self.ready = false;
                if streak == 1 {
                    warn!(
                        "dial {addr} (front end {}) failed: {msg}; backing off (up to {} ms)",
                        self.fe,
                        self.agent.max_backoff.as_millis()
                    );
                } else {
                    debug!(
                        "dial {addr} failed again ({streak} in a row): {msg}; next try in {} ms",
                        d.as_millis()
                    );
                }
            }
            Err(Fail::Auth(msg)) => {
                self.ports[i].streak += 1;
                self.ports[i].last_fail = Some(now);
                let streak = self.ports[i].streak;
                // Retrying cannot fix a wrong secret soon: start around 1 s and grow to the cap.
                let d = self
                    .backoff(streak + AUTH_BACKOFF_HEAD_START)
                    .max(AUTH_BACKOFF_MIN);
                self.ports[i].next_allowed = now + d;
                self.ready = false;
                if streak == 1 || streak.is_multiple_of(AUTH_LOG_EVERY) {
                    error!(
                        "{msg}; front end {}, attempt {streak}, backing off",
                        self.fe
                    );
                } else {
                    debug!("{msg}; next try in {} ms", d.as_millis());
                }
            }
        }
    }
}

fn classify(e: HandshakeError, addr: &str, node: &str) -> Fail {
    match e {
        HandshakeError::Impostor => {
            Fail::Auth(format!("httpd at {addr} failed to prove the secret for node {node} (wrong secret or impostor)"))
        }
        HandshakeError::Rejected(Verdict::BadProof) => {
            Fail::Auth(format!("httpd at {addr} rejected the proof of node {node}: wrong secret"))
        }
        HandshakeError::Refused(Refusal::WrongNode) => Fail::Auth(format!(
            "httpd at {addr} refused node {node}: this port belongs to another node (wrong --node or port range)"
        )),
        HandshakeError::Refused(Refusal::BadHello) => {
            Fail::Auth(format!("httpd at {addr} refused the hello of node {node} as malformed (version mismatch?)"))
        }
        HandshakeError::Refused(Refusal::ShuttingDown) => Fail::Busy(Refusal::ShuttingDown.describe()),
        HandshakeError::Rejected(v @ (Verdict::PoolFull | Verdict::ShuttingDown)) => Fail::Busy(v.describe()),
        other => Fail::Net(other.to_string()),
    }
}

fn set_sockopts(s: &TcpStream, tcp: &TcpOpts) -> io::Result<()> {
    s.set_nodelay(true)?;
    let sock = socket2::SockRef::from(s);
    if let Some((idle, interval, count)) = tcp.keepalive {
        let ka = socket2::TcpKeepalive::new().with_time(idle).with_interval(interval).with_retries(count);
        sock.set_tcp_keepalive(&ka)?;
    }
    if let Some(t) = tcp.user_timeout {
        sock.set_tcp_user_timeout(Some(t))?;
    }
    Ok(())
}

async fn connect(fe: &FrontEnd, agent: &Agent, port: u16) -> Result<(TcpStream, PingParams), Fail> {
    let addr = fe.addr(port);
    let mut s = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((fe.host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Fail::Net(e.to_string())),
        Err(_) => {
            return Err(Fail::Net(format!(
                "connect timed out after {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    };
    if let Err(e) = set_sockopts(&s, &agent.tcp) {
        debug!("{addr}: cannot set socket options: {e}");
    }
    let mut ping = PingParams::OFF;
    if let Some(secret) = &agent.secret {
        match tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            handshake::dial(&mut s, agent.node.as_bytes(), secret),
        )
        .await
        {
            Ok(Ok(p)) => ping = p,
            Ok(Err(e)) => return Err(classify(e, &addr, &agent.node)),
            Err(_) => {
                return Err(Fail::Net(format!(
                    "handshake timed out after {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )))
            }
        }
    }
    Ok((s, ping))
}

/// How an idle link ended.
enum IdleEnd {
    /// httpd wrote the first bytes of a request.
    Request(Vec<u8>),
    Closed(Close),
}

/// Waits on an idle link for the first request bytes, answering httpd's
/// PINGs; a link that gets no PING within the deadline httpd announced is
/// dead. No buffer is held while nothing arrives.
async fn idle_wait(s: &mut TcpStream, ping: PingParams, shutdown: &mut watch::Receiver<bool>) -> IdleEnd {
    let deadline = ping.dialer_deadline();
    let mut due = deadline.map(|d| Instant::now() + d);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            biased;
            r = s.readable() => {
                if r.is_err() {
                    return IdleEnd::Closed(Close::ByHttpd);
                }
                let mut buf = vec![0u8; 16 * 1024];
                let n = match s.try_read(&mut buf) {
                    Ok(0) => return IdleEnd::Closed(Close::ByHttpd),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return IdleEnd::Closed(Close::ByHttpd),
                };
                buf.truncate(n);
                if pending.is_empty() && buf[0] != reversed_proto::FRAME_MARK {
                    return IdleEnd::Request(buf);
                }
                pending.extend_from_slice(&buf);
                let input = match reversed_proto::scan_idle(&pending) {
                    Ok(i) => i,
                    Err(_) => return IdleEnd::Closed(Close::Garbage),
                };
                for _ in 0..input.pings {
                    if s.write_all(&PONG).await.is_err() {
                        return IdleEnd::Closed(Close::ByHttpd);
                    }
                }
                if input.pings > 0 {
                    due = deadline.map(|d| Instant::now() + d);
                }
                if let Some(at) = input.request_at {
                    return IdleEnd::Request(pending.split_off(at));
                }
                pending = if input.partial { vec![reversed_proto::FRAME_MARK] } else { Vec::new() };
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                return IdleEnd::Closed(Close::Dead);
            }
            _ = shutdown_begun(shutdown) => return IdleEnd::Closed(Close::ByUs),
        }
    }
}

/// Dials one connection, reports the result, waits idle for a request, then
/// splices or responds.
async fn dial_task(
    fe: Arc<FrontEnd>,
    agent: Arc<Agent>,
    port: u16,
    id: u64,
    started: Instant,
    tx: mpsc::UnboundedSender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let r = tokio::select! {
        r = connect(&fe, &agent, port) => r,
        _ = shutdown_begun(&mut shutdown) => Err(Fail::Cancelled),
    };
    let (mut s, ping) = match r {
        Ok(s) => s,
        Err(f) => {
            let _ = tx.send(Event::Dialed { port, id, started, result: Err(f) });
            return;
        }
    };
    let _ = tx.send(Event::Dialed { port, id, started, result: Ok(()) });
    let since = Instant::now();
    let first = match idle_wait(&mut s, ping, &mut shutdown).await {
        IdleEnd::Request(first) => first,
        IdleEnd::Closed(why) => {
            let _ = tx.send(Event::Closed { port, id, lived: since.elapsed(), why });
            return;
        }
    };
    // Busy before the pool learns about it, so that shutdown cannot miss it.
    let _guard = agent.busy.enter();
    let _ = tx.send(Event::Used { port, id });
    match &agent.mode {
        Mode::Splice { backend } => crate::splice::run(s, first, backend).await,
        Mode::Respond(cfg) => responder::serve(s, first, cfg, shutdown).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::fake_httpd;
    use std::sync::atomic::AtomicU64;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const SECRET: &[u8] = b"0123456789abcdef-pool-secret";

    fn agent(secret: Option<&[u8]>, max_backoff_ms: u64) -> Arc<Agent> {
        Arc::new(Agent {
            node: "app1".into(),
            secret: secret.map(|s| s.to_vec()),
            mode: Mode::Respond(responder::Config::new(26, false)),
            max_backoff: Duration::from_millis(max_backoff_ms),
            busy: Arc::new(Busy::default()),
            tcp: TcpOpts::default(),
        })
    }

    fn one_port(port: u16) -> FrontEnd {
        FrontEnd { host: "127.0.0.1".into(), first: port, last: port }
    }

    /// Keeps `fe` for `d`, then shuts the keeper down and returns its counters.
    async fn keep_for(fe: FrontEnd, idle: usize, agent: Arc<Agent>, d: Duration) -> Stats {
        let (sd_tx, sd_rx) = watch::channel(false);
        let keeper = tokio::spawn(run_frontend(fe, idle, agent, sd_rx));
        tokio::time::sleep(d).await;
        sd_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap()
    }

    #[test]
    fn parse_front_ends() {
        assert_eq!(
            FrontEnd::parse("127.0.0.1:9000-9003").unwrap(),
            FrontEnd {
                host: "127.0.0.1".into(),
                first: 9000,
                last: 9003
            }
        );
        let f = FrontEnd::parse("web1:8080").unwrap();
        assert_eq!((f.first, f.last), (8080, 8080));
        assert_eq!(f.to_string(), "web1:8080");
        let f = FrontEnd::parse("[::1]:9000-9001").unwrap();
        assert_eq!(f.host, "::1");
        assert_eq!(f.to_string(), "[::1]:9000-9001");
        assert_eq!(f.addr(9001), "[::1]:9001");
        for bad in [
            "127.0.0.1",
            "h:0",
            "h:9003-9000",
            ":9000",
            "h:x",
            "h:1-2-3",
            "h:70000",
        ] {
            assert!(FrontEnd::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut j = Jitter::new();
        for _ in 0..100 {
            let d = j.between(Duration::from_millis(500), Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }

    /// Fake httpd: accepts, handshakes with `secret`, keeps accepted connections
    /// and hands them to the test.
    async fn fake_httpd(
        l: TcpListener,
        secret: &'static [u8],
        conns: mpsc::UnboundedSender<TcpStream>,
        proofs: Arc<AtomicU64>,
    ) {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let conns = conns.clone();
            let proofs = proofs.clone();
            tokio::spawn(async move {
                let o = fake_httpd::serve(&mut s, b"app1", secret, None, Verdict::Accepted).await;
                match o {
                    Ok(fake_httpd::Outcome::Proof { valid: true }) => {
                        let _ = conns.send(s);
                    }
                    Ok(fake_httpd::Outcome::Proof { valid: false }) => {
                        proofs.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            });
        }
    }

    async fn recv(rx: &mut mpsc::UnboundedReceiver<TcpStream>) -> TcpStream {
        tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("no connection in time")
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_fills_refills_after_use_and_responds() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(l, SECRET, ctx, Arc::new(AtomicU64::new(0))));
        let (sd_tx, sd_rx) = watch::channel(false);
        let fe = one_port(port);
        let keeper = tokio::spawn(run_frontend(fe, 2, agent(Some(SECRET), 1000), sd_rx));

        let mut c1 = recv(&mut crx).await;
        let _c2 = recv(&mut crx).await;
        // No third connection while both are idle.
        assert!(tokio::time::timeout(Duration::from_millis(200), crx.recv())
            .await
            .is_err());

        // httpd writes a request into an idle connection: a replacement gets dialled
        // and the responder answers, keeping the connection alive.
        c1.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let _c3 = recv(&mut crx).await;
        let mut buf = Vec::new();
        while !buf.ends_with(b"abcdefghijklmnopqrstuvwxyz") {
            let mut t = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(3), c1.read(&mut t))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&t[..n]);
        }
        let head = String::from_utf8_lossy(&buf);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("X-Responder: http"));
        // Keep-alive: a second request on the same connection.
        c1.write_all(b"GET /status/404 HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), c1.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 404 Not Found\r\n"));

        tokio::time::sleep(Duration::from_millis(100)).await;
        sd_tx.send(true).unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(3), keeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.accepted, 3);
        assert_eq!(stats.used, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_close_on_shutdown_and_are_replaced_on_eof() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(l, SECRET, ctx, Arc::new(AtomicU64::new(0))));
        let (sd_tx, sd_rx) = watch::channel(false);
        let fe = one_port(port);
        let keeper = tokio::spawn(run_frontend(fe, 1, agent(Some(SECRET), 1000), sd_rx));
        let c1 = recv(&mut crx).await;
        // httpd child exits: the agent redials (paced: the close came quickly, so after a backoff).
        drop(c1);
        let mut c2 = recv(&mut crx).await;
        // (let the agent read the verdict byte first: a dial cancelled mid-handshake resets)
        tokio::time::sleep(Duration::from_millis(100)).await;
        sd_tx.send(true).unwrap();
        let mut t = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(3), c2.read(&mut t))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0)),
            "idle connection closed on shutdown: {r:?}"
        );
        tokio::time::timeout(Duration::from_secs(3), keeper)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn idle_accounting_cannot_drift_or_underflow() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_sd_tx, sd_rx) = watch::channel(false);
        let mut k = Keeper::new(one_port(9), 2, agent(Some(SECRET), 1000), sd_rx, tx);
        let p = 9;
        for id in [1, 2] {
            k.ports[0].dialing += 1;
            k.on_event(Event::Dialed { port: p, id, started: Instant::now(), result: Ok(()) });
        }
        assert_eq!(k.idle(), 2);
        // Link 1 is used, and a stray close of the same link follows (the old
        // `idle -= 1` counted both and wrapped below zero in release builds).
        k.on_event(Event::Used { port: p, id: 1 });
        k.on_event(Event::Closed { port: p, id: 1, lived: Duration::from_secs(5), why: Close::ByHttpd });
        assert_eq!(k.idle(), 1);
        k.on_event(Event::Closed { port: p, id: 2, lived: Duration::from_secs(5), why: Close::Dead });
        k.on_event(Event::Closed { port: p, id: 2, lived: Duration::from_secs(5), why: Close::Dead });
        k.on_event(Event::Used { port: p, id: 77 });
        assert_eq!(k.idle(), 0);
        assert_eq!(k.stats.dead, 2);
        // A dial result arriving with nothing counted in flight does not wrap either.
        k.on_event(Event::Dialed { port: p, id: 3, started: Instant::now(), result: Err(Fail::Cancelled) });
        assert_eq!(k.ports[0].dialing, 0);
    }

    /// A fake httpd that announces `ping` and hands each authenticated link out.
    async fn pinging_httpd(l: TcpListener, ping: PingParams, conns: mpsc::UnboundedSender<TcpStream>) {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let conns = conns.clone();
            tokio::spawn(async move {
                let o = fake_httpd::serve_with(&mut s, b"app1", SECRET, None, Verdict::Accepted, ping).await;
                if let Ok(fake_httpd::Outcome::Proof { valid: true }) = o {
                    let _ = conns.send(s);
                }
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pings_are_answered_and_a_link_without_pings_is_replaced() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let ping = PingParams { interval_ms: 300, timeout_ms: 100 };
        let (ctx, mut crx) = mpsc::unbounded_channel();
        tokio::spawn(pinging_httpd(l, ping, ctx));
        let (sd_tx, sd_rx) = watch::channel(false);
        let keeper = tokio::spawn(run_frontend(one_port(port), 1, agent(Some(SECRET), 1000), sd_rx));
        let mut c1 = recv(&mut crx).await;
        // Three pings, each answered at once with exactly one pong; the link stays.
        let mut last_ping = Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            last_ping = Instant::now();
            c1.write_all(&reversed_proto::PING).await.unwrap();
            let mut b = [0u8; 2];
            tokio::time::timeout(Duration::from_secs(1), c1.read_exact(&mut b)).await.unwrap().unwrap();
            assert_eq!(b, PONG);
        }
        assert!(tokio::time::timeout(Duration::from_millis(150), recv(&mut crx)).await.is_err(), "a replacement was dialled while pings ran");
        // httpd stops pinging (the path lost the link): the agent closes it
        // after interval + timeout (400 ms) and dials a replacement at once.
        let mut c2 = tokio::time::timeout(Duration::from_secs(2), crx.recv()).await.unwrap().unwrap();
        let waited = last_ping.elapsed();
        assert!(waited >= Duration::from_millis(380) && waited < Duration::from_millis(1200), "replacement {waited:?} after the last ping");
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(1), c1.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0)), "the dead link was not closed: {r:?}");
        // A frame mark followed by garbage closes the link, and it is replaced too.
        c2.write_all(&[0xFF, 0x07]).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(1), c2.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0)), "a link with a bad frame stayed open: {r:?}");
        let mut c3 = recv(&mut crx).await;
        // PINGs and then a request in one write: one pong, then the responder answers.
        let mut w = reversed_proto::PING.to_vec();
        w.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        c3.write_all(&w).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(2), c3.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got[..2], &PONG, "no pong before the response: {:?}", String::from_utf8_lossy(&got));
        assert!(String::from_utf8_lossy(&got[2..]).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
        sd_tx.send(true).unwrap();
        let st = tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap();
        assert!(st.dead >= 1, "{st:?}");
    }

    /// The burst of issue 9: the agent started before httpd's children had
    /// bound, all the dials it had in flight to one port were refused at
    /// once, and each counted as one more failure: the port's backoff jumped
    /// to the 5 s maximum within a millisecond, and the child that bound it
    /// a moment later got no link for 5 s while others held all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dials_refused_together_count_once() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let (sd_tx, sd_rx) = watch::channel(false);
        let keeper = tokio::spawn(run_frontend(one_port(port), 8, agent(Some(SECRET), 5000), sd_rx));
        // httpd's child binds the port 50 ms later.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let t = Instant::now();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(l, SECRET, ctx, Arc::new(AtomicU64::new(0))));
        let c = tokio::time::timeout(Duration::from_secs(5), crx.recv()).await.expect("no dial within 5 s").unwrap();
        let waited = t.elapsed();
        assert!(waited < Duration::from_millis(600), "the first link came {waited:?} after the port opened");
        drop(c);
        sd_tx.send(true).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(3), keeper).await;
    }

    #[test]
    fn keepalive_flag_parses() {
        assert_eq!(
            TcpOpts::parse_keepalive("60,10,3").unwrap(),
            Some((Duration::from_secs(60), Duration::from_secs(10), 3))
        );
        assert_eq!(TcpOpts::parse_keepalive("off").unwrap(), None);
        for bad in ["60,10", "0,10,3", "60,10,0", "a,b,c", "60,10,3,1"] {
            assert!(TcpOpts::parse_keepalive(bad).unwrap_err().contains("IDLE,INTERVAL,COUNT"), "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_secret_backs_off_without_hammering() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (ctx, _crx) = mpsc::unbounded_channel();
        let proofs = Arc::new(AtomicU64::new(0));
        tokio::spawn(fake_httpd(
            l,
            b"the-httpd-has-another-secret",
            ctx,
            proofs.clone(),
        ));
        let stats = keep_for(one_port(port), 4, agent(Some(SECRET), 5000), Duration::from_millis(1500)).await;
        // The first round dials `idle` (4) at once; then auth failures back off at
        // least 1 s, one probe at a time.
        assert!((4..=6).contains(&stats.dials), "{stats:?}");
        assert_eq!(stats.accepted, 0);
        // The agent never sent a proof to the impostor.
        assert_eq!(proofs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_port_backs_off_exponentially() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let stats = keep_for(one_port(port), 8, agent(Some(SECRET), 400), Duration::from_millis(1500)).await;
        // The first round dials 8 at once (their refusals count as one
        // failure); then one probe at a time, 50, 100, 200 ms apart and then
        // every ~400 ms (the cap): about 14 attempts in 1.5 s, never a flood.
        assert!((10..=16).contains(&stats.dials), "{stats:?}");
        assert_eq!(stats.accepted, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_full_port_is_retried_slowly() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let verdicts = Arc::new(AtomicU64::new(0));
        let v2 = verdicts.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let v2 = v2.clone();
                tokio::spawn(async move {
                    let o =
                        fake_httpd::serve(&mut s, b"app1", SECRET, None, Verdict::PoolFull).await;
                    if matches!(o, Ok(fake_httpd::Outcome::Proof { valid: true })) {
                        v2.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        let stats = keep_for(one_port(port), 4, agent(Some(SECRET), 5000), Duration::from_millis(1500)).await;
        // 4 at once, then one probe every 500-1000 ms.
        assert!((5..=8).contains(&stats.dials), "{stats:?}");
        assert_eq!(stats.accepted, 0);
        assert!(verdicts.load(Ordering::SeqCst) >= 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_dial_backoff_doubles() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let stats = keep_for(one_port(port), 1, agent(Some(SECRET), 5000), Duration::from_millis(1600)).await;
        // Attempts at ~0, 50, 150, 350, 750, 1550 ms (+-25 % each step).
        assert!((4..=7).contains(&stats.dials), "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accept_then_close_is_paced() {
        // A listener that accepts and immediately closes (e.g. not an httpd at all).
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicU64::new(0));
        let a2 = accepts.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                a2.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        let (sd_tx, sd_rx) = watch::channel(false);
        let fe = one_port(port);
        // --no-auth: the connection counts as idle at once; the quick EOF must still be paced.
        let keeper = tokio::spawn(run_frontend(fe, 8, agent(None, 400), sd_rx));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sd_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(3), keeper)
            .await
            .unwrap()
            .unwrap();
        let n = accepts.load(Ordering::SeqCst);
        assert!((1..=20).contains(&n), "{n} accepts in 1.5 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_child_on_a_refused_port_gets_its_share_soon() {
        // Two adjacent free ports: A serves at once, B refuses until "its child starts".
        let (la, port_a, port_b) = loop {
            let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let pa = la.local_addr().unwrap().port();
            if pa < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", pa + 1)).is_ok() {
                break (la, pa, pa + 1);
            }
        };
        let (ctx_a, mut crx_a) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(la, SECRET, ctx_a, Arc::new(AtomicU64::new(0))));
        let (sd_tx, sd_rx) = watch::channel(false);
        let fe = FrontEnd { host: "127.0.0.1".into(), first: port_a, last: port_b };
        // A 5 s maximum backoff: without the live-range probing, B would wait seconds.
        let keeper = tokio::spawn(run_frontend(fe, 4, agent(Some(SECRET), 5000), sd_rx));
        let mut held_a = Vec::new();
        for _ in 0..4 {
            held_a.push(recv(&mut crx_a).await);
        }
        // Let B fail for a while (plain exponential backoff would reach 1.6-3.2 s),
        // then start its "child".
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let lb = TcpListener::bind(("127.0.0.1", port_b)).await.unwrap();
        let started = Instant::now();
        let (ctx_b, mut crx_b) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(lb, SECRET, ctx_b, Arc::new(AtomicU64::new(0))));
        // B gets its fair share (4 over 2 ports) although the total target was met.
        let mut held_b = Vec::new();
        for _ in 0..2 {
            held_b.push(recv(&mut crx_b).await);
        }
        assert!(started.elapsed() < Duration::from_millis(700), "B found after {:?}", started.elapsed());
        sd_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graceful_restart_on_the_same_port_is_found_soon() {
        // A graceful restart as the agent sees it: the child closes its
        // listener and all its (young) idle connections at once; a second
        // later the new child binds the same port. Regression: the burst of
        // closes counted as 4 "quick closes" and, with no idle connection
        // left in the range, the refusals backed off exponentially, so the
        // new child waited seconds (up to the 5 s maximum).
        let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = la.local_addr().unwrap().port();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        let old = tokio::spawn(fake_httpd(la, SECRET, ctx, Arc::new(AtomicU64::new(0))));
        let (sd_tx, sd_rx) = watch::channel(false);
        let fe = one_port(port);
        let keeper = tokio::spawn(run_frontend(fe, 4, agent(Some(SECRET), 5000), sd_rx));
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(recv(&mut crx).await);
        }
        old.abort();
        let _ = old.await;
        drop(held);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let lb = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let started = Instant::now();
        let (ctx_b, mut crx_b) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(lb, SECRET, ctx_b, Arc::new(AtomicU64::new(0))));
        let mut held_b = Vec::new();
        for _ in 0..4 {
            held_b.push(recv(&mut crx_b).await);
        }
        assert!(started.elapsed() < Duration::from_millis(800), "new child filled after {:?}", started.elapsed());
        sd_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap();
    }

}
