//! The keeper of one front end: which port holds how many idle links and how
//! many dials, which ports fail and how long they wait (backoff, quick
//! closes, probing a live range), and which port the next dial goes to.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::link::dial_task;
use super::{shutdown_begun, Agent, Close, Event, Fail, FrontEnd, Stats};
use crate::metrics::{Dial, FrontMetrics, IdleClose, PortState};

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
/// Longest wait before probing a refused port while httpd's children change.
const LIVE_RANGE_PROBE: Duration = Duration::from_millis(250);
/// httpd's children are changing for this long after a sign of it (a link
/// that had lived closed by httpd: a child went away, as in a graceful
/// restart; or a refused port accepting again: a new child bound it). Then
/// refused ports are probed every LIVE_RANGE_PROBE; otherwise they back off
/// exponentially to --max-backoff-ms, for a port no child binds stays refused.
const CHILDREN_CHANGING: Duration = Duration::from_secs(5);
/// The lowest refused port of a range (where httpd's next child binds: each
/// child takes the first free port) is probed at least this often; the other
/// refused ports back off to --max-backoff-ms.
const LOWEST_REFUSED_PROBE: Duration = Duration::from_secs(1);
/// Probes (dials of ports that refused last time) of one front end: at most
/// PROBE_RATE per second on average, PROBE_BURST at once (a token bucket), so
/// that the ports a graceful restart leaves refused are all probed together
/// while a wide range never makes a flood.
const PROBE_RATE: f64 = 40.0;
const PROBE_BURST: f64 = 16.0;
/// Spread of the per-port probe interval with many refused ports (1 / PROBE_RATE).
const PROBE_SPACING: Duration = Duration::from_millis(25);
/// After httpd closed an idle connection (a child went away), refused ports are probed within this.
const RESTART_PROBE: Duration = Duration::from_millis(100);
/// Authentication errors are logged on the first failure of a streak and then every N attempts.
const AUTH_LOG_EVERY: u32 = 20;
/// Links found dead (no PING in time) are reported as a warning at most this often per front end.
const DEAD_LOG_EVERY: Duration = Duration::from_secs(10);

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
    metrics: Arc<FrontMetrics>,
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
    /// The last sign that httpd's children change (see CHILDREN_CHANGING).
    last_change: Option<Instant>,
    /// Probe tokens left (see PROBE_RATE) as of `probe_refill`.
    probe_tokens: f64,
    probe_refill: Instant,
    next_id: u64,
    last_dead_log: Option<Instant>,
}

/// Keeps the pool of one front end until shutdown; returns its counters.
pub async fn run_frontend(fe: FrontEnd, target: usize, agent: Arc<Agent>, shutdown: watch::Receiver<bool>) -> Stats {
    let (_keep, target) = watch::channel(target);
    run_frontend_watch(fe, target, agent, shutdown).await
}

/// As `run_frontend`, with an idle target that may change while it runs
/// (a reload): a higher one is dialled at once, a lower one is reached as
/// links get used.
pub async fn run_frontend_watch(
    fe: FrontEnd,
    mut target: watch::Receiver<usize>,
    agent: Arc<Agent>,
    shutdown: watch::Receiver<bool>,
) -> Stats {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let first = *target.borrow_and_update();
    let mut k = Keeper::new(fe, first, agent, shutdown.clone(), tx);
    let mut sd = shutdown;
    let mut target_open = true;
    loop {
        if *sd.borrow() {
            break;
        }
        k.fill();
        k.publish();
        let wake = k.next_wake();
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => {
                    k.on_event(ev);
                    k.note_ready();
                }
                None => break,
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            r = target.changed(), if target_open => match r {
                Ok(()) => {
                    let t = *target.borrow_and_update();
                    if t != k.target {
                        info!("front end {}: idle connections {} -> {t}", k.fe, k.target);
                        k.target = t;
                        k.metrics.set_target(t);
                        k.ready = false;
                    }
                }
                Err(_) => target_open = false,
            },
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
            metrics: agent.metrics.front(&fe.to_string(), target),
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
            last_change: None,
            probe_tokens: PROBE_BURST,
            probe_refill: now,
            next_id: 0,
            last_dead_log: None,
        }
    }

    /// The idle count and each port's backoff state, for the metrics.
    fn publish(&self) {
        self.metrics.set_idle(self.idle());
        self.metrics.set_ports(self.ports.iter().map(|p| PortState {
            port: p.port,
            failures: p.streak,
            full: p.full,
            next_allowed: p.next_allowed,
        }));
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
            self.metrics.clone(),
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
        // Lowest port first: a new httpd child binds the first free port of the range.
        for i in 0..n {
            let p = &self.ports[i];
            if p.streak > 0 && p.dialing == 0 && p.next_allowed <= now {
                if !self.take_probe(now) {
                    break;
                }
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
                if p.streak > 0 && self.probe_at(now) > now {
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
            if self.ports[i].streak > 0 {
                self.take_probe(now);
            }
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
            .map(|p| if p.streak > 0 { p.next_allowed.max(self.probe_at(now)) } else { p.next_allowed })
            .filter(|&t| t > now)
            .min()
    }

    /// Tokens as of `now`.
    fn probe_tokens(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.probe_refill).as_secs_f64();
        (self.probe_tokens + dt * PROBE_RATE).min(PROBE_BURST)
    }

    /// When the next probe may start.
    fn probe_at(&self, now: Instant) -> Instant {
        let t = self.probe_tokens(now);
        if t >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - t) / PROBE_RATE)
        }
    }

    /// Takes a probe token if there is one.
    fn take_probe(&mut self, now: Instant) -> bool {
        let t = self.probe_tokens(now);
        self.probe_refill = now;
        if t >= 1.0 {
            self.probe_tokens = t - 1.0;
            true
        } else {
            self.probe_tokens = t;
            false
        }
    }

    /// Logs once when the pool reaches its target and once when it falls
    /// short of it (not on every probe of a refused port).
    fn note_ready(&mut self) {
        let idle = self.idle();
        if idle >= self.target && !self.ready {
            info!("front end {} ready: {}/{} idle connections", self.fe, idle, self.target);
            self.ready = true;
            self.full_logged = false;
        } else if idle < self.target && self.ready {
            debug!("front end {}: {}/{} idle connections, refilling", self.fe, idle, self.target);
        }
    }

    /// Within CHILDREN_CHANGING of a sign that httpd's children change, a
    /// refusing port is most likely a child that httpd has not started yet:
    /// probe it often (spread by PROBE_SPACING) instead of backing off to the
    /// maximum. Otherwise a refused port is one no child binds: it backs off.
    fn live_range_probe(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if self.last_change.is_none_or(|t| now.duration_since(t) >= CHILDREN_CHANGING) {
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
                self.metrics.dialed(match &result {
                    Ok(()) => Dial::Accepted,
                    Err(Fail::Net(_)) => Dial::Network,
                    Err(Fail::Auth(_)) => Dial::Auth,
                    Err(Fail::Busy(what)) if *what == reversed_proto::Verdict::PoolFull.describe() => Dial::PoolFull,
                    Err(Fail::Busy(_)) => Dial::ShuttingDown,
                    Err(Fail::Cancelled) => Dial::Cancelled,
                });
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
                let i = self.slot(port);
                if !self.ports[i].idle.remove(id) {
                    debug!("{}: link {id} used but not counted idle", self.fe.addr(port));
                }
                self.ports[i].quick = 0;
                self.stats.used += 1;
            }
            Event::Closed { port, id, lived, why } => {
                let i = self.slot(port);
                if !self.ports[i].idle.remove(id) {
                    debug!("{}: link {id} closed but not counted idle", self.fe.addr(port));
                }
                match why {
                    Close::ByHttpd => self.metrics.idle_closed(IdleClose::ByHttpd),
                    Close::Dead => self.metrics.idle_closed(IdleClose::Dead),
                    Close::Garbage => self.metrics.idle_closed(IdleClose::Garbage),
                    Close::ByUs => {}
                }
                match why {
                    Close::ByUs => return,
                    Close::Dead | Close::Garbage => {
                        // Redial at once: nothing says the port is failing (a
                        // dial that fails backs off as usual).
                        if why == Close::Dead {
                            self.stats.dead += 1;
                        }
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
                            warn_peer!(
                                self.fe.addr(port),
                                "{} (front end {}): an idle connection {what}; closed it and dialing a replacement",
                                self.fe.addr(port),
                                self.fe
                            );
                        } else {
                            debug_peer!(
                                self.fe.addr(port),
                                "{}: an idle connection {what}; redialing",
                                self.fe.addr(port)
                            );
                        }
                        return;
                    }
                    Close::ByHttpd => {}
                }
                let addr = self.fe.addr(port);
                let now = Instant::now();
                // A child that goes away closes all its idle connections at
                // once: a connection that was already open at the last quick
                // close is part of that same event, not one more failure.
                let same_event = matches!(
                    (self.ports[i].last_quick, now.checked_sub(lived)),
                    (Some(t), Some(opened)) if opened <= t
                );
                if lived < QUICK_CLOSE && same_event {
                    debug_peer!(addr, "{addr}: another connection closed in the same burst; not counted");
                } else if lived < QUICK_CLOSE {
                    // Accepted, then closed at once: pace the redials like failures.
                    let recent = self.ports[i].last_quick.is_some_and(|t| now - t < QUICK_STREAK_WINDOW);
                    let quick = if recent { self.ports[i].quick + 1 } else { 1 };
                    self.ports[i].quick = quick;
                    self.ports[i].last_quick = Some(now);
                    let d = self.backoff(quick);
                    let p = &mut self.ports[i];
                    p.next_allowed = p.next_allowed.max(now + d);
                    if quick == 1 {
                        warn_peer!(
                            addr,
                            "{addr} (front end {}): httpd closed the connection {} ms after accepting it; backing off",
                            self.fe,
                            lived.as_millis()
                        );
                    } else {
                        debug_peer!(
                            addr,
                            "{addr}: closed right after accepting again ({quick} in a row); next try in {} ms",
                            d.as_millis()
                        );
                    }
                } else {
                    self.ports[i].quick = 0;
                    debug_peer!(
                        addr,
                        "idle connection to {addr} closed by httpd after {:.1} s; redialing",
                        lived.as_secs_f64()
                    );
                    // A child went away (graceful restart, or httpd shrinking
                    // its pool): new children may be binding refused ports now.
                    self.last_change = Some(now);
                    for p in self.ports.iter_mut().filter(|p| p.streak > 0) {
                        let soon = now + self.jitter.between(RESTART_PROBE / 2, RESTART_PROBE);
                        p.next_allowed = p.next_allowed.min(soon);
                    }
                }
            }
        }
    }

    fn on_dialed(&mut self, i: usize, result: Result<(), Fail>) {
        let addr = self.fe.addr(self.ports[i].port);
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.stats.accepted += 1;
                if self.ports[i].streak > 0 {
                    // A new child bound it: others may be starting too.
                    self.last_change = Some(now);
                }
                let p = &mut self.ports[i];
                if p.streak > 0 {
                    info_peer!(addr, "{addr} (front end {}) OK again after {} failed attempts", self.fe, p.streak);
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
                let d = self.jitter.between(Duration::from_millis(500), Duration::from_millis(1000));
                let p = &mut self.ports[i];
                p.full = true;
                p.next_allowed = now + d;
                debug_peer!(addr, "{addr}: {what}; retrying this port in {} ms", d.as_millis());
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
                } else if self.ports[..i].iter().all(|p| p.streak == 0) {
                    let probe = self.jitter.between(LOWEST_REFUSED_PROBE * 3 / 4, LOWEST_REFUSED_PROBE);
                    d = d.min(probe);
                }
                self.ports[i].next_allowed = now + d;
                if streak == 1 {
                    warn_peer!(
                        addr,
                        "dial {addr} (front end {}) failed: {msg}; backing off (up to {} ms)",
                        self.fe,
                        self.agent.max_backoff.as_millis()
                    );
                } else {
                    debug_peer!(
                        addr,
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
                let d = self.backoff(streak + AUTH_BACKOFF_HEAD_START).max(AUTH_BACKOFF_MIN);
                self.ports[i].next_allowed = now + d;
                if streak == 1 || streak.is_multiple_of(AUTH_LOG_EVERY) {
                    error_peer!(addr, "{msg}; front end {}, attempt {streak}, backing off", self.fe);
                } else {
                    debug_peer!(addr, "{msg}; next try in {} ms", d.as_millis());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::fake_httpd;
    use crate::pool::testutil::*;
    use reversed_proto::Verdict;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::net::TcpListener;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut j = Jitter::new();
        for _ in 0..100 {
            let d = j.between(Duration::from_millis(500), Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_secret_backs_off_without_hammering() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (ctx, _crx) = mpsc::unbounded_channel();
        let proofs = Arc::new(AtomicU64::new(0));
        tokio::spawn(fake_httpd(l, b"the-httpd-has-another-secret", ctx, proofs.clone()));
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
    async fn refused_ports_beside_a_live_one_back_off() {
        // Port A serves; A+1..A+3 stay refused (no child binds them).
        let (la, a) = loop {
            let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = la.local_addr().unwrap().port();
            if a < u16::MAX - 3 && (1..=3).all(|k| std::net::TcpListener::bind(("127.0.0.1", a + k)).is_ok()) {
                break (la, a);
            }
        };
        let (ctx, _crx) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(la, SECRET, ctx, Arc::new(AtomicU64::new(0))));
        let fe = FrontEnd { host: "127.0.0.1".into(), first: a, last: a + 3 };
        let stats = keep_for(fe, 2, agent(Some(SECRET), 5000), Duration::from_secs(6)).await;
        // Before: every refused port about every 250 ms while A was live
        // (~70 dials in 6 s). Now A+1 (the lowest refused) every 0.75-1 s,
        // A+2 and A+3 backing off to 5 s: about 25.
        assert_eq!(stats.accepted, 2, "{stats:?}");
        assert!((15..=40).contains(&stats.dials), "{stats:?}");
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
                    let o = fake_httpd::serve(&mut s, b"app1", SECRET, None, Verdict::PoolFull).await;
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
        tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap();
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
        // A 5 s maximum backoff: B, the lowest refused port, is probed every second anyway.
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
        // B is the lowest refused port, probed at least every second.
        assert!(started.elapsed() < Duration::from_millis(1500), "B found after {:?}", started.elapsed());
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
