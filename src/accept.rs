//! The accept thread of a child: one per process, non-blocking I/O on one
//! epoll set. It accepts dialers, runs every handshake, pings idle links and
//! retires dead ones, and follows the registry of MCMP nodes. It is restarted
//! (a bounded number of times) if it panics; past that the child's nodes are
//! marked down so that requests fail fast and the status page says so.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reversed_proto as proto;

use crate::child::{
    idle_is_alive, lock, token, token_kind, token_node, Child, Idle, K_IDLE, K_LISTEN, K_SHAKE, K_WAKE,
};
use crate::config::{Auth, Config, Node};
use crate::log;
use crate::os::{self, EV_IN, EV_RDHUP};
use crate::registry::Registry;
use crate::shim;
use crate::stats::{NodeStats, Rejection, Retirement, Table};

/// How often the accept thread does its upkeep (re-binding, error-state refresh).
const TICK: Duration = Duration::from_millis(500);
const REBIND_EVERY: Duration = Duration::from_secs(1);
/// How often the accept thread looks for nodes registered or removed through MCMP.
const REGISTRY_POLL: Duration = Duration::from_millis(200);
/// A link whose PING is out: out of the queue until its PONG arrives.
struct Probe {
    node: usize,
    idle: Idle,
    sent: Instant,
    deadline: Instant,
    got: Vec<u8>,
}

/// Most often the accept thread looks for idle links due a PING.
const PING_SCAN_MAX: Duration = Duration::from_millis(100);
const PING_SCAN_MIN: Duration = Duration::from_millis(10);
/// A refused version-1 dialer is logged as a warning at most this often per node.
const V1_WARN_EVERY: Duration = Duration::from_secs(10);

/// Restarts of the accept loop after an internal error before the child gives up.
const MAX_RESTARTS: u32 = 5;
#[cfg(not(test))]
const RESTART_DELAY: Duration = Duration::from_secs(1);
#[cfg(test)]
const RESTART_DELAY: Duration = Duration::from_millis(20);

/// Starts the child's state and its accept thread.
pub fn start(
    cfg: Arc<Config>,
    table: Option<Arc<Table>>,
    registry: Option<Arc<Registry>>,
) -> io::Result<&'static Child> {
    let (child, listeners) = Child::new(cfg, table, registry)?;
    let handle = os::with_signals_blocked(|| {
        std::thread::Builder::new().name("proxy-reversed".into()).spawn(move || supervise(child, listeners))
    })?;
    child.set_thread(handle);
    Ok(child)
}

/// Runs the accept loop; after a panic (a bug) it binds again and restarts,
/// at most MAX_RESTARTS times. Then the child marks its nodes down: requests
/// get their 503 at once and the status page shows the ports unbound.
fn supervise(child: &'static Child, listeners: Vec<Option<TcpListener>>) {
    let mut listeners = Some(listeners);
    for attempt in 0..=MAX_RESTARTS {
        let ls = listeners.take().unwrap_or_else(|| (0..child.node_count()).map(|i| child.bind(i, true)).collect());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| AcceptLoop::new(child, ls).run()));
        if r.is_ok() || child.stop.load(SeqCst) {
            return;
        }
        if attempt < MAX_RESTARTS {
            log::error(1, &format!(
                "the reversed-connection accept thread of child {} failed with an internal error; restarting it ({} of {MAX_RESTARTS})",
                std::process::id(),
                attempt + 1
            ));
            std::thread::sleep(RESTART_DELAY);
        }
    }
    child.give_up();
    log::error(2, &format!(
        "the reversed-connection accept thread of child {} failed {} times; this child no longer serves its reversed nodes (503)",
        std::process::id(),
        MAX_RESTARTS + 1
    ));
}

enum Stage {
    Hello,
    Proof {
        version: u8,
        client_nonce: [u8; proto::NONCE_LEN],
        server_nonce: [u8; proto::NONCE_LEN],
        ping: proto::PingParams,
    },
}

struct Shake {
    stream: TcpStream,
    peer: SocketAddr,
    node: usize,
    deadline: Instant,
    buf: Vec<u8>,
    stage: Stage,
}

enum Outcome {
    Pending,
    /// Pooled; true if the dialer answers PINGs.
    Accepted(bool),
    Rejected(Rejection, String),
    /// A health check's probe, answered (or refused by closing): not a dialer.
    Probed,
}

struct AcceptLoop {
    child: &'static Child,
    listeners: Vec<Option<TcpListener>>,
    shakes: HashMap<u64, Shake>,
    next_id: u64,
    last_rebind: Instant,
    last_flood_log: Option<Instant>,
    paused: bool,
    /// Per node: the registry generation its listener was set up for.
    bound_gen: Vec<u32>,
    last_poll: Instant,
    /// Idle links whose PING is out, by token.
    probing: HashMap<u64, Probe>,
    next_ping_scan: Instant,
    /// Per node: when a refused version-1 dialer was last logged as a warning.
    last_v1_warn: Vec<Option<Instant>>,
    /// Per node: idle links retired since the last pass of the loop, and the
    /// first one's peer and reason (one info line per node and pass).
    retired: HashMap<usize, (u32, String, String)>,
}

impl Drop for AcceptLoop {
    /// Also on a panic: links whose PING was out close with the loop.
    fn drop(&mut self) {
        for (_, p) in self.probing.drain() {
            self.child.epoll.delete(&p.idle.stream);
            self.child.stats(p.node).idle.fetch_sub(1, Relaxed);
        }
    }
}

impl AcceptLoop {
    fn new(child: &'static Child, listeners: Vec<Option<TcpListener>>) -> AcceptLoop {
        AcceptLoop {
            child,
            listeners,
            shakes: HashMap::new(),
            next_id: 1,
            last_rebind: Instant::now(),
            last_flood_log: None,
            paused: false,
            bound_gen: child.nodes.iter().map(|n| n.seen_gen.load(SeqCst)).collect(),
            last_poll: Instant::now(),
            probing: HashMap::new(),
            next_ping_scan: Instant::now(),
            last_v1_warn: vec![None; child.nodes.len()],
            retired: HashMap::new(),
        }
    }

    fn run(mut self) {
        let mut events = Vec::with_capacity(256);
        let mut next_tick = Instant::now() + TICK;
        loop {
            #[cfg(test)]
            if self.child.test_panics.load(SeqCst) > 0 {
                self.child.test_panics.fetch_sub(1, SeqCst);
                panic!("injected by a test");
            }
            if !self.child.close_listeners.load(SeqCst) && self.child.graceful_close_due(Instant::now()) {
                self.child.close_listeners.store(true, SeqCst);
            }
            if self.child.close_listeners.load(SeqCst) && self.listeners.iter().any(Option::is_some) {
                for l in self.listeners.iter_mut() {
                    if let Some(l) = l.take() {
                        self.child.epoll.delete(&l);
                    }
                }
                for i in 0..self.child.nodes.len() {
                    self.child.stats(i).bound.store(0, Relaxed);
                }
            }
            if self.child.stop.load(SeqCst) {
                break;
            }
            let now = Instant::now();
            let mut until = next_tick;
            if self.child.registry.is_some() {
                until = until.min(self.last_poll + REGISTRY_POLL);
            }
            if lock(&self.child.graceful_since).is_some() && !self.child.close_listeners.load(SeqCst) {
                // A graceful stop is pending: look again soon.
                until = until.min(now + Duration::from_millis(50));
            }
            for s in self.shakes.values() {
                until = until.min(s.deadline);
            }
            for p in self.probing.values() {
                until = until.min(p.deadline);
            }
            until = until.min(self.next_ping_scan);
            if let Err(e) = self.child.epoll.wait(&mut events, until.saturating_duration_since(now)) {
                log::error(3, &format!("epoll_wait failed: {e}; the accept thread stops"));
                break;
            }
            for &(tok, ev) in events.iter() {
                match token_kind(tok) {
                    K_WAKE => self.child.wake.drain(),
                    K_LISTEN => self.accept_all(token_node(tok)),
                    K_SHAKE => self.progress(tok),
                    K_IDLE if self.probing.contains_key(&tok) => self.probe_event(tok),
                    K_IDLE => self.idle_event(tok, ev),
                    _ => {}
                }
            }
            let now = Instant::now();
            self.expire(now);
            self.expire_probes(now);
            if now >= self.next_ping_scan || self.child.nodes.iter().any(|n| n.sweep.load(Relaxed)) {
                self.ping_scan(now);
            }
            self.resume_if_room();
            if self.child.registry.is_some() && now >= self.last_poll + REGISTRY_POLL {
                self.last_poll = now;
                self.follow_registry();
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.upkeep(now);
            }
            if !self.retired.is_empty() {
                self.log_retired();
            }
        }
        for (_, s) in self.shakes.drain() {
            self.child.epoll.delete(&s.stream);
        }
    }

    /// Sends the PINGs that are due: each pingable idle link one interval
    /// after its last PING (or its verdict), and at once every suspect link
    /// of a node whose sweep was asked for. The scan runs at a tenth of the
    /// shortest interval (10..100 ms), so a PING is at most that late.
    fn ping_scan(&mut self, now: Instant) {
        // Without any node that pings, the upkeep tick is often enough.
        let mut every = TICK;
        for i in 0..self.child.nodes.len() {
            let rt = &self.child.nodes[i];
            let sweep = rt.sweep.swap(false, SeqCst);
            let Some(node) = self.child.active(i) else { continue };
            let Some(interval) = node.live.ping else { continue };
            every = every.min((interval / 10).clamp(PING_SCAN_MIN, PING_SCAN_MAX));
            let out: Vec<Idle> = {
                let mut q = lock(&rt.idle);
                if sweep {
                    // Rare (after a failed ping): every suspect link, wherever it is.
                    let suspect = *lock(&rt.suspect);
                    let due =
                        |c: &Idle| c.pingable && (now >= c.pinged + interval || suspect.is_some_and(|t| c.life <= t));
                    let (out, keep): (Vec<Idle>, Vec<Idle>) = q.drain(..).partition(|c| due(c));
                    *q = VecDeque::from(keep);
                    out
                } else {
                    // Links enter at the back (accepted, or back from a PONG),
                    // so the front holds the oldest PINGs: take from there
                    // while they are due, passing over links that are not
                    // pinged (version 1 or auth=none).
                    let mut out = Vec::new();
                    let mut k = 0;
                    while k < q.len() {
                        if !q[k].pingable {
                            k += 1;
                            continue;
                        }
                        if now < q[k].pinged + interval {
                            break;
                        }
                        if let Some(c) = q.remove(k) {
                            out.push(c);
                        }
                    }
                    out
                }
            };
            for c in out {
                self.send_ping(i, c, now, node.live.ping_timeout);
            }
        }
        self.next_ping_scan = now + every;
    }

    fn send_ping(&mut self, i: usize, mut c: Idle, now: Instant, timeout: Duration) {
        match (&c.stream).write(&proto::PING) {
            Ok(n) if n == proto::PING.len() => {
                c.pinged = now;
                self.probing
                    .insert(c.token, Probe { node: i, idle: c, sent: now, deadline: now + timeout, got: Vec::new() });
            }
            r => {
                let why = match r {
                    Err(e) => format!("ping not sent: {e}"),
                    _ => "ping not sent: the socket buffer is full".into(),
                };
                self.retire_idle(i, c, &why, Retirement::PingFailed);
            }
        }
    }

    /// Links whose PONG is overdue are retired, and the node's other links
    /// that showed no life since that PING are pinged at once.
    fn expire_probes(&mut self, now: Instant) {
        let late: Vec<u64> = self.probing.iter().filter(|(_, p)| p.deadline <= now).map(|(t, _)| *t).collect();
        for t in late {
            if let Some(p) = self.probing.remove(&t) {
                let why = format!("no pong within {} ms", p.deadline.duration_since(p.sent).as_millis());
                self.retire_idle(p.node, p.idle, &why, Retirement::PingFailed);
                self.child.suspect_since(p.node, p.sent);
            }
        }
    }

    /// Takes a link out of service that was counted idle.
    fn retire_idle(&mut self, i: usize, c: Idle, why: &str, reason: Retirement) {
        self.child.epoll.delete(&c.stream);
        let st = self.child.stats(i);
        st.idle.fetch_sub(1, Relaxed);
        st.retire(reason);
        let peer = c.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        log::debug(42, || format!("node {}: idle connection from {peer} retired: {why}", self.child.name(i)));
        self.retired.entry(i).or_insert_with(|| (0, peer, why.to_string())).0 += 1;
    }

    /// One info line per node for the links retired in this pass of the loop
    /// (a sweep after a total loss retires thousands at once).
    fn log_retired(&mut self) {
        for (i, (n, peer, why)) in self.retired.drain() {
            log::info(4, || match n {
                1 => format!("node {}: idle connection from {peer} retired: {why}", self.child.name(i)),
                n => {
                    format!("node {}: {n} idle connections retired (the first, from {peer}: {why})", self.child.name(i))
                }
            });
        }
    }

    /// A link whose PING is out became readable: its PONG, or trouble.
    fn probe_event(&mut self, tok: u64) {
        let Some(mut p) = self.probing.remove(&tok) else { return };
        let mut b = [0u8; 16];
        loop {
            match (&p.idle.stream).read(&mut b) {
                Ok(0) => return self.retire_idle(p.node, p.idle, "closed by the dialer", Retirement::DialerClosed),
                Ok(n) => {
                    p.got.extend_from_slice(&b[..n]);
                    if p.got.len() >= proto::PONG.len() {
                        // Anything after the PONG is seen as speaking out of turn once back in the queue.
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.retire_idle(p.node, p.idle, &format!("read error: {e}"), Retirement::Error),
            }
        }
        if p.got.len() < proto::PONG.len() && proto::PONG.starts_with(&p.got) {
            self.probing.insert(tok, p);
            return;
        }
        if p.got != proto::PONG {
            return self.retire_idle(
                p.node,
                p.idle,
                "answered a ping with something else than a pong",
                Retirement::Protocol,
            );
        }
        let i = p.node;
        let rt = &self.child.nodes[i];
        let mut idle = p.idle;
        idle.life = Instant::now();
        if self.child.active(i).is_none() {
            return self.retire_idle(i, idle, "the node was removed", Retirement::NodeRemoved);
        }
        let was_empty = {
            let mut q = lock(&rt.idle);
            q.push_back(idle);
            q.len() == 1
        };
        // (A wake-up costs a system call: only when a request waits.)
        if self.child.waiting.load(SeqCst) > 0 {
            rt.cond.notify_one();
        }
        if was_empty {
            shim::node_ready(i);
        }
    }

    /// Opens, re-opens or closes the listeners of registered nodes whose
    /// registration changed. A node that goes away loses its listener, its
    /// handshakes and its idle connections; connections in use finish.
    fn follow_registry(&mut self) {
        self.child.refresh();
        for i in self.child.cfg.nodes.len()..self.child.nodes.len() {
            let gen = self.child.nodes[i].seen_gen.load(SeqCst);
            if self.bound_gen[i] == gen {
                continue;
            }
            self.bound_gen[i] = gen;
            if let Some(l) = self.listeners[i].take() {
                self.child.epoll.delete(&l);
            }
            let doomed: Vec<u64> = self.shakes.iter().filter(|(_, s)| s.node == i).map(|(t, _)| *t).collect();
            for t in doomed {
                if let Some(s) = self.shakes.remove(&t) {
                    self.child.epoll.delete(&s.stream);
                }
            }
            let mut drained: Vec<Idle> = lock(&self.child.nodes[i].idle).drain(..).collect();
            let probed: Vec<u64> = self.probing.iter().filter(|(_, p)| p.node == i).map(|(t, _)| *t).collect();
            for t in probed {
                if let Some(p) = self.probing.remove(&t) {
                    drained.push(p.idle);
                }
            }
            for c in &drained {
                self.child.epoll.delete(&c.stream);
            }
            self.child.stats(i).reset();
            drop(drained);
            self.child.nodes[i].cond.notify_all();
            match self.child.desc(i) {
                Some(d) if d.active && !self.child.close_listeners.load(SeqCst) => {
                    self.listeners[i] = self.child.bind(i, true);
                    if let (true, Some(l)) = (self.paused, &self.listeners[i]) {
                        self.child.epoll.delete(l);
                    }
                }
                Some(d) if d.active => {}
                Some(d) => log::info(5, || {
                    format!("node '{}' was removed: child {} closed its listener", d.node.name, std::process::id())
                }),
                None => {}
            }
        }
    }

    fn upkeep(&mut self, now: Instant) {
        let closing = self.child.close_listeners.load(SeqCst);
        if !closing && now.duration_since(self.last_rebind) >= REBIND_EVERY {
            self.last_rebind = now;
            for i in 0..self.listeners.len() {
                if self.listeners[i].is_none() {
                    self.listeners[i] = self.child.bind(i, false);
                    if let (true, Some(l)) = (self.paused, &self.listeners[i]) {
                        self.child.epoll.delete(l);
                    }
                }
            }
        }
        // While this child holds idle connections, a balancer member that
        // another child marked "in error" (it had none) is usable again.
        for (i, rt) in self.child.nodes.iter().enumerate() {
            if !lock(&rt.idle).is_empty() {
                shim::node_ready(i);
            }
        }
    }

    /// With ProxyReversedMaxHandshakes connections in handshake, the thread
    /// stops accepting: further dialers wait in the kernel's listen backlog
    /// (or are refused by it) instead of taking descriptors here.
    fn pause_if_full(&mut self) -> bool {
        if self.shakes.len() < self.child.cfg.max_handshakes {
            return false;
        }
        if !self.paused {
            self.paused = true;
            for l in self.listeners.iter().flatten() {
                self.child.epoll.delete(l);
            }
            let now = Instant::now();
            if self.last_flood_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                self.last_flood_log = Some(now);
                log::warn(6, &format!(
                    "{} connections are in handshake (ProxyReversedMaxHandshakes): not accepting more until some complete or time out",
                    self.shakes.len()
                ));
            }
        }
        true
    }

    fn resume_if_room(&mut self) {
        if self.paused && self.shakes.len() < self.child.cfg.max_handshakes {
            self.paused = false;
            for (i, l) in self.listeners.iter().enumerate() {
                if let Some(l) = l {
                    let _ = self.child.epoll.add(l, EV_IN, token(K_LISTEN, i, 0));
                }
            }
        }
    }

    fn accept_all(&mut self, i: usize) {
        loop {
            if self.pause_if_full() {
                return;
            }
            let Some(l) = self.listeners[i].as_ref() else { return };
            match l.accept() {
                Ok((stream, peer)) => self.admit(i, stream, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // Out of descriptors and the like: try again on the next event.
                    log::warn(7, &format!("node {}: accept failed: {e}", self.child.name(i)));
                    return;
                }
            }
        }
    }

    fn reject(&self, i: usize, peer: SocketAddr, reason: Rejection, why: &str) {
        self.child.stats(i).reject(reason);
        log::info(8, || format!("node {}: rejected dialer {peer}: {why}", self.child.name(i)));
    }

    fn admit(&mut self, i: usize, stream: TcpStream, peer: SocketAddr) {
        let Some(node) = self.child.active(i) else { return };
        if !node.allows(peer.ip()) {
            self.reject(i, peer, Rejection::NotAllowed, "source address not in allow=");
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        if let Err(e) = node.live.apply_tcp(&stream) {
            log::debug(9, || format!("node {}: cannot set keepalive/user timeout on {peer}: {e}", self.child.name(i)));
        }
        if node.auth == Auth::None {
            let tok = self.next_token(K_IDLE, i);
            let _ = self.pool(i, stream, peer, tok);
            return;
        }
        let tok = self.next_token(K_SHAKE, i);
        if self.child.epoll.add(&stream, EV_IN | EV_RDHUP, tok).is_err() {
            return;
        }
        self.shakes.insert(
            tok,
            Shake {
                stream,
                peer,
                node: i,
                deadline: Instant::now() + self.child.cfg.handshake_timeout,
                buf: Vec::with_capacity(proto::hello_len(proto::MAX_NODE_LEN)),
                stage: Stage::Hello,
            },
        );
    }

    fn next_token(&mut self, kind: u64, node: usize) -> u64 {
        self.next_id += 1;
        token(kind, node, self.next_id)
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self.shakes.iter().filter(|(_, s)| s.deadline <= now).map(|(t, _)| *t).collect();
        for t in late {
            if let Some(s) = self.shakes.remove(&t) {
                self.child.epoll.delete(&s.stream);
                self.reject(s.node, s.peer, Rejection::Timeout, "handshake not completed in time");
            }
        }
    }

    fn progress(&mut self, tok: u64) {
        let Some(mut s) = self.shakes.remove(&tok) else { return };
        let outcome = self.step(&mut s);
        match outcome {
            Outcome::Pending => {
                self.shakes.insert(tok, s);
            }
            Outcome::Rejected(reason, why) => {
                self.child.epoll.delete(&s.stream);
                self.reject(s.node, s.peer, reason, &why);
            }
            Outcome::Probed => {
                self.child.epoll.delete(&s.stream);
            }
            Outcome::Accepted(pingable) => {
                let (node, peer) = (s.node, s.peer);
                let idle_tok = token(K_IDLE, node, tok);
                if self.child.epoll.modify(&s.stream, EV_IN | EV_RDHUP, idle_tok).is_ok() {
                    if let Err(why) = self.pool_registered(node, s.stream, peer, idle_tok, pingable) {
                        self.reject(node, peer, Rejection::PoolFull, &why);
                    }
                }
            }
        }
    }

    /// Reads what has arrived and advances the handshake.
    fn step(&mut self, s: &mut Shake) -> Outcome {
        let Some(node) = self.child.active(s.node) else {
            return Outcome::Rejected(Rejection::ShuttingDown, "the node was removed".into());
        };
        let node: &Node = &node;
        let mut tmp = [0u8; 256];
        loop {
            match s.stream.read(&mut tmp) {
                Ok(0) => return Outcome::Rejected(Rejection::Closed, "closed during the handshake".into()),
                Ok(n) => {
                    s.buf.extend_from_slice(&tmp[..n]);
                    if s.buf.len() > proto::hello_len(proto::MAX_NODE_LEN) {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Outcome::Rejected(Rejection::Error, format!("read error during the handshake: {e}")),
            }
        }
        match s.stage {
            Stage::Hello => {
                // Only a registered node's Host:Port (its first port) is a
                // worker's address that health checks dial.
                let checked = s.node >= self.child.registered_base()
                    && s.stream.local_addr().is_ok_and(|a| a.port() == node.range.first);
                match if checked { health_probe(&s.buf) } else { HealthProbe::No } {
                    HealthProbe::No => {}
                    HealthProbe::Partial => return Outcome::Pending,
                    HealthProbe::Cping | HealthProbe::Http if !same_host(&s.stream, s.peer) => {
                        return Outcome::Rejected(
                            Rejection::Malformed,
                            "a health-check probe from another host (only httpd's own checks are answered)".into(),
                        );
                    }
                    p => return self.answer_probe(s, p),
                }
                let (hello, used) = match proto::parse_hello(&s.buf) {
                    Ok(None) => return Outcome::Pending,
                    Ok(Some(h)) => h,
                    Err(e) => {
                        let v =
                            if s.buf.get(4) == Some(&proto::VERSION_2) { proto::VERSION_2 } else { proto::VERSION_1 };
                        let _ = s.stream.write(&proto::encode_refusal(v, proto::Refusal::BadHello));
                        return Outcome::Rejected(Rejection::Malformed, format!("malformed hello: {e}"));
                    }
                };
                if hello.version == proto::VERSION_1 && !node.live.v1 {
                    let _ = s.stream.write(&proto::encode_refusal(proto::VERSION_1, proto::Refusal::VersionNotServed));
                    let now = Instant::now();
                    let why = "it speaks handshake version 1, which has no liveness pings (upgrade the dialer, or set v1=serve on the node or in ProxyReversedLiveness to serve it)";
                    if self.last_v1_warn[s.node].is_none_or(|t| now.duration_since(t) >= V1_WARN_EVERY) {
                        self.last_v1_warn[s.node] = Some(now);
                        log::warn(10, &format!("node '{}': refused dialer {}: {why}", node.name, s.peer));
                    }
                    return Outcome::Rejected(Rejection::Version, why.into());
                }
                if hello.node != node.name.as_bytes() {
                    let _ = s.stream.write(&proto::encode_refusal(hello.version, proto::Refusal::WrongNode));
                    return Outcome::Rejected(
                        Rejection::WrongNode,
                        format!(
                            "it named node '{}' on a port of node '{}'",
                            String::from_utf8_lossy(&hello.node),
                            node.name
                        ),
                    );
                }
                if used != s.buf.len() {
                    return Outcome::Rejected(
                        Rejection::Malformed,
                        "bytes after the hello, before the challenge".into(),
                    );
                }
                let server_nonce = match proto::nonce() {
                    Ok(n) => n,
                    Err(e) => return Outcome::Rejected(Rejection::Error, e.to_string()),
                };
                let ping = if hello.version >= proto::VERSION_2 { node.live.params() } else { proto::PingParams::OFF };
                let t = proto::Transcript {
                    version: hello.version,
                    node: &hello.node,
                    client_nonce: &hello.client_nonce,
                    server_nonce: &server_nonce,
                    ping,
                };
                let msg = proto::encode_challenge_ok(&t, &t.server_proof(&node.secret));
                if !matches!(s.stream.write(&msg), Ok(n) if n == msg.len()) {
                    return Outcome::Rejected(Rejection::Error, "could not send the challenge".into());
                }
                s.buf.clear();
                s.stage = Stage::Proof { version: hello.version, client_nonce: hello.client_nonce, server_nonce, ping };
                Outcome::Pending
            }
            Stage::Proof { version, client_nonce, server_nonce, ping } => {
                if s.buf.len() < proto::PROOF_LEN {
                    return Outcome::Pending;
                }
                let verdict = if s.buf.len() > proto::PROOF_LEN {
                    proto::Verdict::TrailingBytes
                } else if !(proto::Transcript {
                    version,
                    node: node.name.as_bytes(),
                    client_nonce: &client_nonce,
                    server_nonce: &server_nonce,
                    ping,
                })
                .verify_client_proof(&node.secret, &s.buf)
                {
                    proto::Verdict::BadProof
                } else if self.child.stop.load(Relaxed) || self.child.close_listeners.load(Relaxed) {
                    proto::Verdict::ShuttingDown
                } else if lock(&self.child.nodes[s.node].idle).len() >= node.max_idle {
                    proto::Verdict::PoolFull
                } else {
                    proto::Verdict::Accepted
                };
                let sent = matches!(s.stream.write(&[verdict as u8]), Ok(1));
                match verdict {
                    proto::Verdict::Accepted if sent => Outcome::Accepted(ping.enabled()),
                    proto::Verdict::Accepted => {
                        Outcome::Rejected(Rejection::Error, "could not send the verdict".into())
                    }
                    v => Outcome::Rejected(
                        match v {
                            proto::Verdict::BadProof => Rejection::BadProof,
                            proto::Verdict::PoolFull => Rejection::PoolFull,
                            proto::Verdict::ShuttingDown => Rejection::ShuttingDown,
                            _ => Rejection::Malformed,
                        },
                        v.describe().into(),
                    ),
                }
            }
        }
    }

    /// A health check of mod_proxy_cluster (or of mod_proxy_hcheck through
    /// its template) dialled a registered node's Host:Port, which is this listener:
    /// an AJP CPING is answered with a CPONG and an HTTP OPTIONS/HEAD/GET
    /// with a bodiless 200, only while the node has live links in some child
    /// (as STATUS answers); otherwise the probe is closed without a byte, so
    /// the check fails. Either way the connection closes: it never enters the
    /// pool and never carries a request.
    fn answer_probe(&self, s: &mut Shake, p: HealthProbe) -> Outcome {
        let live = self.child.connections(s.node) > 0;
        if live {
            let reply: &[u8] = match p {
                HealthProbe::Cping => &AJP_CPONG,
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            };
            let _ = s.stream.write(reply);
        }
        let _ = s.stream.shutdown(std::net::Shutdown::Write);
        log::debug(40, || {
            format!(
                "node {}: health-check {} from {} answered {}",
                self.child.name(s.node),
                if p == HealthProbe::Cping { "CPING" } else { "HTTP request" },
                s.peer,
                if live { "(the node has live links)" } else { "by closing (the node has no live link)" }
            )
        });
        Outcome::Probed
    }

    /// auth=none: straight into the pool after the allow-list check.
    fn pool(&self, i: usize, stream: TcpStream, peer: SocketAddr, tok: u64) -> Result<(), ()> {
        if self.child.epoll.add(&stream, EV_IN | EV_RDHUP, tok).is_err() {
            return Err(());
        }
        self.pool_registered(i, stream, peer, tok, false).map_err(|why| self.reject(i, peer, Rejection::PoolFull, &why))
    }

    fn pool_registered(
        &self,
        i: usize,
        stream: TcpStream,
        peer: SocketAddr,
        tok: u64,
        pingable: bool,
    ) -> Result<(), String> {
        let rt = &self.child.nodes[i];
        let st = self.child.stats(i);
        {
            let mut q = lock(&rt.idle);
            if self.child.active(i).is_none_or(|n| q.len() >= n.max_idle) {
                self.child.epoll.delete(&stream);
                return Err("the idle pool is full (maxidle)".into());
            }
            let now = Instant::now();
            q.push_back(Idle { token: tok, stream, pingable, life: now, pinged: now });
            st.idle.fetch_add(1, Relaxed);
        }
        NodeStats::inc(&st.accepted);
        st.last_accept_ms.store(crate::stats::now_ms(), Relaxed);
        rt.cond.notify_one();
        shim::node_ready(i);
        log::debug(11, || format!("node {}: accepted a connection from {peer}", self.child.name(i)));
        Ok(())
    }

    /// An idle connection became readable: the dialer closed it or spoke out
    /// of turn. Either way it leaves the pool.
    fn idle_event(&mut self, tok: u64, _ev: u32) {
        let i = token_node(tok);
        if i >= self.child.nodes.len() {
            return;
        }
        let rt = &self.child.nodes[i];
        let mut q = lock(&rt.idle);
        let Some(pos) = q.iter().position(|c| c.token == tok) else { return };
        if idle_is_alive(&q[pos].stream) {
            return;
        }
        if let Some(c) = q.remove(pos) {
            drop(q);
            self.child.epoll.delete(&c.stream);
            let st = self.child.stats(i);
            st.idle.fetch_sub(1, Relaxed);
            st.retire(Retirement::DialerClosed);
            log::debug(12, || {
                format!(
                    "node {}: idle connection from {} closed or spoke out of turn; retired",
                    self.child.name(i),
                    c.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default()
                )
            });
        }
    }
}

/// AJP13 CPING (httpd → container) and CPONG.
const AJP_CPING: [u8; 5] = [0x12, 0x34, 0x00, 0x01, 0x0a];
const AJP_CPONG: [u8; 5] = [0x41, 0x42, 0x00, 0x01, 0x09];
/// Longest HTTP health-check request head read.
const PROBE_HEAD_MAX: usize = 2048;

/// What the first bytes on a reversed port are, besides a HELLO ("RVRS"...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealthProbe {
    /// Not a health check: handled as a handshake (a HELLO, or garbage).
    No,
    /// The start of one: wait for more.
    Partial,
    /// Exactly an AJP CPING, nothing after it.
    Cping,
    /// A whole HTTP OPTIONS, HEAD or GET head without a body, nothing after it.
    Http,
}

fn health_probe(buf: &[u8]) -> HealthProbe {
    if buf.first() == Some(&AJP_CPING[0]) {
        return match buf.len() {
            n if n < AJP_CPING.len() => {
                if AJP_CPING.starts_with(buf) {
                    HealthProbe::Partial
                } else {
                    HealthProbe::No
                }
            }
            5 if buf == AJP_CPING => HealthProbe::Cping,
            _ => HealthProbe::No,
        };
    }
    for m in [&b"OPTIONS "[..], b"HEAD ", b"GET "] {
        if buf.len() < m.len() {
            if m.starts_with(buf) {
                return HealthProbe::Partial;
            }
            continue;
        }
        if !buf.starts_with(m) {
            continue;
        }
        return match buf.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) if end + 4 == buf.len() && !has_body(&buf[..end]) => HealthProbe::Http,
            Some(_) => HealthProbe::No,
            None if buf.len() < PROBE_HEAD_MAX => HealthProbe::Partial,
            None => HealthProbe::No,
        };
    }
    HealthProbe::No
}

/// A request head announcing a body (health checks send none).
fn has_body(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().skip(1).any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") || l.strip_prefix("content-length:").is_some_and(|v| v.trim() != "0")
    })
}

/// Whether the peer is this host (loopback, or the address it dialled):
/// health checks of httpd itself dial its own listener.
fn same_host(stream: &TcpStream, peer: SocketAddr) -> bool {
    peer.ip().is_loopback() || stream.local_addr().is_ok_and(|l| l.ip() == peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::tests::one_node_config;

    #[test]
    fn health_probes_are_told_from_hellos() {
        assert_eq!(health_probe(&AJP_CPING), HealthProbe::Cping);
        assert_eq!(health_probe(&AJP_CPING[..3]), HealthProbe::Partial);
        assert_eq!(health_probe(&[0x12, 0x34, 0x00, 0x01, 0x0a, 0x00]), HealthProbe::No);
        assert_eq!(health_probe(&[0x12, 0x34, 0x00, 0x02]), HealthProbe::No);
        assert_eq!(health_probe(b"RVRS\x02"), HealthProbe::No);
        assert_eq!(health_probe(b"OPT"), HealthProbe::Partial);
        assert_eq!(health_probe(b"OPTIONS * HTTP/1.0\r\nUser-Agent: x"), HealthProbe::Partial);
        assert_eq!(health_probe(b"OPTIONS * HTTP/1.0\r\nUser-Agent: x\r\n\r\n"), HealthProbe::Http);
        assert_eq!(health_probe(b"HEAD /ok HTTP/1.1\r\nHost: a\r\n\r\n"), HealthProbe::Http);
        assert_eq!(health_probe(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET"), HealthProbe::No, "pipelined bytes");
        assert_eq!(health_probe(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"), HealthProbe::No, "a body");
        assert_eq!(health_probe(b"POST / HTTP/1.1\r\n\r\n"), HealthProbe::No);
        assert_eq!(health_probe(&[b'G'; PROBE_HEAD_MAX]), HealthProbe::No);
        let mut long = b"GET /".to_vec();
        long.resize(PROBE_HEAD_MAX, b'a');
        assert_eq!(health_probe(&long), HealthProbe::No, "a head without end");
    }

    #[test]
    fn a_failing_accept_thread_restarts_then_gives_up() {
        let child = start(one_node_config(), None, None).unwrap();
        let port = child.desc(0).unwrap().node.range.first;
        let pooled = |n: i64| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if child.stats(0).idle.load(Relaxed) >= n {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        // Two failures: the loop comes back and still pools dialers (auth=none).
        child.test_panics.store(2, SeqCst);
        child.wake.signal();
        let t = Instant::now();
        while (child.test_panics.load(SeqCst) > 0 || child.stats(0).bound.load(Relaxed) == 0)
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        let _a = TcpStream::connect(("127.0.0.1", port)).expect("the listener is back");
        assert!(pooled(1), "the restarted loop did not pool a dialer");
        assert!(!child.down.load(SeqCst));
        // Failing every time: after MAX_RESTARTS the child marks its nodes down.
        child.test_panics.store(1000, SeqCst);
        child.wake.signal();
        let t = Instant::now();
        while !child.down.load(SeqCst) && t.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(child.down.load(SeqCst), "the child did not give up");
        assert_eq!(child.stats(0).bound.load(Relaxed), 0, "the status page would still say bound");
        let t = Instant::now();
        assert!(child.take(0, Duration::from_secs(2)).is_none());
        // Well under the 2 s it would wait for a link (the margin is for a loaded machine).
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "a request waited {:?} on a child that gave up",
            t.elapsed()
        );
    }
}
