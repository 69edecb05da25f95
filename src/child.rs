//! Inside one httpd child: a listener per node (the first free port of its
//! range), one accept thread that runs every handshake with non-blocking I/O
//! and watches the idle connections, and a queue of authenticated idle
//! connections per node from which request threads take.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reversed_proto as proto;

use crate::config::{same_worker, Auth, Config, Node};
use crate::ffi::{self, Epoll, EventFd, EV_IN, EV_RDHUP};
use crate::liveness;
use crate::log;
use crate::registry::{self, Registry};
use crate::stats::{NodeStats, Table};

// epoll tokens: kind in the top byte, node in the next two, an id below.
const K_WAKE: u64 = 1;
const K_LISTEN: u64 = 2;
const K_SHAKE: u64 = 3;
const K_IDLE: u64 = 4;

fn token(kind: u64, node: usize, id: u64) -> u64 {
    (kind << 56) | ((node as u64 & 0xffff) << 40) | (id & 0xff_ffff_ffff)
}
fn token_kind(t: u64) -> u64 {
    t >> 56
}
fn token_node(t: u64) -> usize {
    ((t >> 40) & 0xffff) as usize
}

/// How often the accept thread does its upkeep (re-binding, error-state refresh).
const TICK: Duration = Duration::from_millis(500);
const REBIND_EVERY: Duration = Duration::from_secs(1);
/// How often the accept thread looks for nodes registered or removed through MCMP.
const REGISTRY_POLL: Duration = Duration::from_millis(200);
/// A gracefully stopping child keeps its listeners at least this long, and
/// then while requests of its own wait for a connection (see `stopping`).
const GRACEFUL_LINGER: Duration = Duration::from_millis(250);

struct Idle {
    token: u64,
    stream: TcpStream,
    /// The dialer answers PINGs (handshake version 2 with pings on).
    pingable: bool,
    /// The last sign of life: the verdict, or the last PONG.
    life: Instant,
    /// The last PING sent (or the verdict): the next is due one interval later.
    pinged: Instant,
}

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

struct NodeRt {
    idle: Mutex<VecDeque<Idle>>,
    cond: Condvar,
    /// What the node is: fixed for ProxyReversed nodes, set from the shared
    /// registry for nodes registered through MCMP.
    desc: RwLock<Option<Desc>>,
    /// The registry generation `desc` was last brought in line with.
    seen_gen: std::sync::atomic::AtomicU32,
    /// A PING of this node failed at this time: links that showed no life
    /// since may be dead as well (a NAT lost them all) and are handed out
    /// only once a PING of the sweep below has answered.
    suspect: Mutex<Option<Instant>>,
    /// Asks the accept thread to ping every suspect idle link now.
    sweep: AtomicBool,
}

/// A node as this child knows it.
#[derive(Clone)]
pub struct Desc {
    pub node: Arc<Node>,
    /// False for a registered node that was removed: its worker answers 503.
    pub active: bool,
}

/// Where the counters of this child live: the shared table, or a private copy.
enum StatsHome {
    Shared { table: Arc<Table>, slot: usize, pid: i32 },
    Private(Box<crate::stats::Slot>),
}

pub struct Child {
    pub cfg: Arc<Config>,
    nodes: Vec<NodeRt>,
    registry: Option<Arc<Registry>>,
    stats: StatsHome,
    epoll: Arc<Epoll>,
    wake: EventFd,
    stop: AtomicBool,
    close_listeners: AtomicBool,
    /// When a graceful stop asked for the listeners to close.
    graceful_since: Mutex<Option<Instant>>,
    /// Request threads waiting in `take` for a connection.
    waiting: AtomicUsize,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Links that mod_proxy kept after a response, by fd: when that response ended.
    released: Mutex<HashMap<i32, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection waiting in the pool is alive if it has neither data nor EOF.
/// (The dialer must not speak before httpd does.)
fn idle_is_alive(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.peek(&mut b), Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

impl Child {
    pub fn start(cfg: Arc<Config>, table: Option<Arc<Table>>, registry: Option<Arc<Registry>>) -> io::Result<&'static Child> {
        let pid = std::process::id() as i32;
        let stats = match table.and_then(|t| t.claim(pid).map(|slot| (t, slot))) {
            Some((table, slot)) => StatsHome::Shared { table, slot, pid },
            None => StatsHome::Private(Box::default()),
        };
        let child = Child {
            nodes: (0..cfg.nodes.len() + registry.as_ref().map_or(0, |r| r.len()))
                .map(|i| NodeRt {
                    idle: Mutex::new(VecDeque::new()),
                    cond: Condvar::new(),
                    desc: RwLock::new(cfg.nodes.get(i).map(|n| Desc { node: Arc::new(n.clone()), active: true })),
                    seen_gen: Default::default(),
                    suspect: Mutex::new(None),
                    sweep: AtomicBool::new(false),
                })
                .collect(),
            registry,
            cfg,
            stats,
            epoll: Arc::new(Epoll::new()?),
            wake: EventFd::new()?,
            stop: AtomicBool::new(false),
            close_listeners: AtomicBool::new(false),
            graceful_since: Mutex::new(None),
            waiting: AtomicUsize::new(0),
            thread: Mutex::new(None),
            released: Mutex::new(HashMap::new()),
        };
        child.epoll.add(&child.wake, EV_IN, token(K_WAKE, 0, 0))?;
        // The child lives in a static for the rest of the process.
        let child: &'static Child = Box::leak(Box::new(child));
        child.refresh();
        let listeners: Vec<Option<TcpListener>> = (0..child.nodes.len()).map(|i| child.bind(i, true)).collect();
        let handle = ffi::with_signals_blocked(|| {
            std::thread::Builder::new().name("proxy-reversed".into()).spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    AcceptLoop::new(child, listeners).run()
                }));
                if r.is_err() {
                    log::error("the reversed-connection accept thread stopped after an internal error");
                }
            })
        })?;
        *lock(&child.thread) = Some(handle);
        Ok(child)
    }

    pub fn stats(&self, node: usize) -> &NodeStats {
        match &self.stats {
            StatsHome::Shared { table, slot, .. } => &table.slot(*slot).nodes[node],
            StatsHome::Private(s) => &s.nodes[node],
        }
    }

    pub fn desc(&self, i: usize) -> Option<Desc> {
        self.nodes.get(i)?.desc.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The node, if it is one this child serves now.
    fn active(&self, i: usize) -> Option<Arc<Node>> {
        self.desc(i).filter(|d| d.active).map(|d| d.node)
    }

    pub fn registry(&self) -> Option<Arc<Registry>> {
        self.registry.clone()
    }

    /// Index of the first registered node (after the ProxyReversed ones).
    pub fn registered_base(&self) -> usize {
        self.cfg.nodes.len()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The node whose worker this is. Registered nodes match also once removed
    /// (they answer 503 rather than letting mod_proxy dial the address).
    pub fn node_for_worker(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.cfg.node_for_worker(name) {
            return Some(i);
        }
        let find = || {
            (self.cfg.nodes.len()..self.nodes.len())
                .find(|&i| self.desc(i).is_some_and(|d| same_worker(&d.node.worker_url, name)))
        };
        find().or_else(|| {
            // Registered a moment ago, before the accept thread looked.
            if self.registry.is_some() && self.refresh() {
                find()
            } else {
                None
            }
        })
    }

    /// Brings the registered nodes' descriptions in line with the shared
    /// registry. True if any changed. (Listeners follow in the accept thread.)
    pub fn refresh(&self) -> bool {
        let Some(reg) = &self.registry else { return false };
        let base = self.cfg.nodes.len();
        let gens = reg.gens();
        let mut changed = false;
        for (j, g) in gens.iter().enumerate() {
            let i = base + j;
            if self.nodes[i].seen_gen.load(SeqCst) == *g {
                continue;
            }
            let new = reg.get(j).and_then(|e| self.describe(&e));
            *self.nodes[i].desc.write().unwrap_or_else(|e| e.into_inner()) = new;
            self.nodes[i].seen_gen.store(*g, SeqCst);
            changed = true;
        }
        changed
    }

    /// The node of a registry entry, with the secret and limits of this configuration.
    fn describe(&self, e: &registry::Entry) -> Option<Desc> {
        let m = self.cfg.mcmp.as_ref()?;
        let secret = self.cfg.secret_for_route(&e.route)?.to_vec();
        let node = Node {
            name: e.route.clone(),
            worker_url: e.worker_url(),
            range: crate::config::PortRange { addr: e.addr, first: e.port, last: e.last_port() },
            auth: Auth::Hmac,
            secret,
            allow: m.allow.clone(),
            wait: m.wait,
            max_idle: m.max_idle,
            live_opts: m.live_opts,
            live: m.live,
        };
        Some(Desc { node: Arc::new(node), active: e.state == registry::ACTIVE })
    }

    /// Binds the first free port of the node's range.
    fn bind(&self, i: usize, first_time: bool) -> Option<TcpListener> {
        let node = self.active(i)?;
        let node = &*node;
        let mut last_err = None;
        for port in node.range.first..=node.range.last {
            match TcpListener::bind(node.range.socket_addr(port)) {
                Ok(l) => {
                    if let Err(e) = l.set_nonblocking(true).and_then(|_| self.epoll.add(&l, EV_IN, token(K_LISTEN, i, 0))) {
                        log::error(&format!("node '{}': cannot watch port {port}: {e}", node.name));
                        return None;
                    }
                    let st = self.stats(i);
                    st.port.store(port as u32, Relaxed);
                    st.bound.store(1, Relaxed);
                    log::info(|| format!("node '{}': child {} listens on {}", node.name, std::process::id(), node.range.socket_addr(port)));
                    return Some(l);
                }
                Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
        if first_time {
            match last_err {
                Some(e) => log::error(&format!(
                    "node '{}': cannot listen on {}: {e}; this child answers 503 for the node",
                    node.name, node.range
                )),
                None => log::error(&format!(
                    "node '{}': every port of {} is taken (by other httpd children or other programs); child {} answers 503 for the node until a port frees up (the range needs a port per child)",
                    node.name,
                    node.range,
                    std::process::id()
                )),
            }
        }
        None
    }

    /// Takes an authenticated idle connection, waiting up to `wait`. A
    /// link whose last sign of life is older than the node's `verify` age is
    /// pinged first (bounded by `pingtimeout`); one that does not answer is
    /// retired, the node's other idle links are pinged at once by the accept
    /// thread, and the request takes a link that answered or a new one.
    pub fn take(&self, i: usize, wait: Duration) -> Option<TcpStream> {
        let rt = &self.nodes[i];
        let st = self.stats(i);
        let live = self.desc(i).map(|d| d.node.live).unwrap_or_default();
        let deadline = Instant::now() + wait;
        let mut q = lock(&rt.idle);
        let mut told_wait = false;
        'outer: loop {
            let suspect = *lock(&rt.suspect);
            // Most recent sign of life first (the back); links older than a
            // failed ping wait for the sweep.
            let usable = |c: &Idle| !(c.pingable && suspect.is_some_and(|t| c.life <= t));
            while let Some(pos) = q.iter().rposition(usable) {
                let Some(c) = q.remove(pos) else { break };
                self.epoll.delete(&c.stream);
                st.idle.fetch_sub(1, Relaxed);
                if !idle_is_alive(&c.stream) {
                    NodeStats::inc(&st.retired);
                    log::debug(|| format!("node {}: discarded an idle connection the dialer had closed", self.name(i)));
                    continue;
                }
                let check = c.pingable && live.verify.is_some_and(|v| c.life.elapsed() >= v);
                if !check {
                    if c.stream.set_nonblocking(false).is_err() {
                        NodeStats::inc(&st.retired);
                        continue;
                    }
                    st.busy.fetch_add(1, Relaxed);
                    return Some(c.stream);
                }
                drop(q);
                let sent = Instant::now();
                let t = if wait.is_zero() {
                    live.ping_timeout
                } else {
                    live.ping_timeout.min(deadline.saturating_duration_since(sent))
                };
                match liveness::verify(&c.stream, t) {
                    Ok(()) => {
                        st.busy.fetch_add(1, Relaxed);
                        return Some(c.stream);
                    }
                    Err(why) => {
                        NodeStats::inc(&st.retired);
                        NodeStats::inc(&st.ping_failed);
                        log::info(|| {
                            format!(
                                "node {}: idle connection from {} failed its check before use ({why}); retired, pinging the others",
                                self.name(i),
                                c.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default()
                            )
                        });
                        self.suspect_since(i, sent);
                    }
                }
                q = lock(&rt.idle);
                continue 'outer;
            }
            if self.stop.load(Relaxed) {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                if !wait.is_zero() {
                    let (n, suspects) = (q.len(), q.iter().filter(|c| !usable(c)).count());
                    log::debug(|| {
                        format!(
                            "node {}: no usable idle link for {} ms in child {} (port {}, {n} idle of which {suspects} wait for a ping, {} other requests waiting, last link accepted {} ms ago)",
                            self.name(i),
                            wait.as_millis(),
                            std::process::id(),
                            st.port.load(Relaxed),
                            self.waiting.load(SeqCst),
                            crate::stats::now_ms().saturating_sub(st.last_accept_ms.load(Relaxed))
                        )
                    });
                }
                return None;
            }
            if !told_wait {
                told_wait = true;
                log::debug(|| {
                format!(
                    "node {}: a request waits for an idle link in child {} (port {}, {} idle, {} requests waiting)",
                    self.name(i),
                    std::process::id(),
                    st.port.load(Relaxed),
                    q.len(),
                    self.waiting.load(SeqCst)
                )
                });
            }
            self.waiting.fetch_add(1, SeqCst);
            q = rt.cond.wait_timeout(q, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            self.waiting.fetch_sub(1, SeqCst);
        }
    }

    /// A PING sent at `t` failed: every idle link of node `i` that showed
    /// no life since is suspect until the accept thread has pinged it.
    fn suspect_since(&self, i: usize, t: Instant) {
        let rt = &self.nodes[i];
        {
            let mut s = lock(&rt.suspect);
            if s.is_none_or(|old| old < t) {
                *s = Some(t);
            }
        }
        rt.sweep.store(true, SeqCst);
        self.wake.signal();
    }

    /// mod_proxy kept link `fd` of node `i` after a response.
    pub fn link_released(&self, fd: i32) {
        lock(&self.released).insert(fd, Instant::now());
    }

    /// Whether mod_proxy may send a request on link `fd` again: only within
    /// the node's `reuse` time after its last response.
    pub fn link_reusable(&self, i: usize, fd: i32) -> bool {
        let reuse = self.desc(i).map(|d| d.node.live.reuse).unwrap_or_default();
        lock(&self.released).get(&fd).is_some_and(|t| t.elapsed() < reuse)
    }

    fn name(&self, i: usize) -> String {
        self.desc(i).map(|d| format!("'{}'", d.node.name)).unwrap_or_else(|| format!("#{i}"))
    }

    pub fn retired(&self, i: usize, fd: i32) {
        if fd >= 0 {
            lock(&self.released).remove(&fd);
        }
        let st = self.stats(i);
        st.busy.fetch_sub(1, Relaxed);
        NodeStats::inc(&st.retired);
    }

    /// A hard stop closes the listeners at once. A graceful one lets the
    /// requests this child accepted before the restart still get connections:
    /// the listeners stay open GRACEFUL_LINGER, then while a request waits in
    /// `take` (at most the node's wait), so that the dialer's replacement for
    /// a connection just used can still arrive. Closing at once made such a
    /// request wait its whole `wait` in vain and answer 503.
    pub fn stopping(&self, graceful: bool) {
        log::debug(|| {
            format!(
                "child {} stopping: {}",
                std::process::id(),
                if graceful {
                    "reversed listeners close once its waiting requests are served"
                } else {
                    "closing reversed listeners"
                }
            )
        });
        if graceful {
            lock(&self.graceful_since).get_or_insert_with(Instant::now);
        } else {
            self.close_listeners.store(true, SeqCst);
        }
        self.wake.signal();
    }

    /// Whether a pending graceful stop may close the listeners now.
    fn graceful_close_due(&self, now: Instant) -> bool {
        let Some(since) = *lock(&self.graceful_since) else { return false };
        let longest = (0..self.nodes.len()).filter_map(|i| self.desc(i)).map(|d| d.node.wait).max().unwrap_or_default();
        let waited = now.saturating_duration_since(since);
        waited >= GRACEFUL_LINGER + longest || (waited >= GRACEFUL_LINGER && self.waiting.load(SeqCst) == 0)
    }

    /// Stops and joins the accept thread, then closes the idle connections.
    pub fn exit(&self) {
        self.stop.store(true, SeqCst);
        self.close_listeners.store(true, SeqCst);
        self.wake.signal();
        if let Some(h) = lock(&self.thread).take() {
            // Never join oneself (exit() runs from a pool cleanup of the child).
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        for (i, rt) in self.nodes.iter().enumerate() {
            let drained: Vec<Idle> = lock(&rt.idle).drain(..).collect();
            let st = self.stats(i);
            st.idle.fetch_sub(drained.len() as i64, Relaxed);
            rt.cond.notify_all();
        }
        if let StatsHome::Shared { table, slot, pid } = &self.stats {
            table.release(*slot, *pid);
        }
    }

    /// The stats slots of every live child (or just this one without a shared table).
    fn with_children<R>(&self, f: impl FnOnce(&[&crate::stats::Slot]) -> R) -> R {
        match &self.stats {
            StatsHome::Shared { table, .. } => f(&table.live()),
            StatsHome::Private(s) => {
                s.pid.store(std::process::id() as i32, Relaxed);
                f(&[&**s])
            }
        }
    }

    /// Live authenticated connections of node `i` in all children (see stats::live).
    pub fn connections(&self, i: usize) -> i64 {
        self.with_children(|c| crate::stats::live(c, i))
    }

    pub fn render(&self, json: bool) -> String {
        let nodes: Vec<Option<Arc<Node>>> = (0..self.nodes.len()).map(|i| self.active(i)).collect();
        let extra = self.render_registered(json);
        self.with_children(|c| crate::stats::render(&nodes, c, json, &extra))
    }

    /// The nodes registered through MCMP, with their contexts.
    fn render_registered(&self, json: bool) -> String {
        use crate::stats::json_str;
        let Some(reg) = &self.registry else { return String::new() };
        let base = self.cfg.nodes.len();
        let entries: Vec<(usize, registry::Entry)> =
            reg.entries().into_iter().filter(|(_, e)| e.state == registry::ACTIVE).collect();
        let mut out = String::new();
        if json {
            out.push_str(",\"registered\":[");
            for (k, (j, e)) in entries.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                let apps: Vec<String> = e
                    .apps
                    .list
                    .iter()
                    .map(|(st, al, ctx)| {
                        let al: Vec<String> = al.iter().map(|a| json_str(a)).collect();
                        format!("{{\"context\":{},\"state\":\"{}\",\"aliases\":[{}]}}", json_str(ctx), st.as_str(), al.join(","))
                    })
                    .collect();
                out.push_str(&format!(
                    "{{\"node\":{},\"balancer\":{},\"worker\":{},\"range\":\"{}\",\"load\":{},\"live\":{},\"contexts\":[{}]}}",
                    json_str(&e.route),
                    json_str(&e.balancer),
                    json_str(&e.worker_url()),
                    crate::config::PortRange { addr: e.addr, first: e.port, last: e.last_port() },
                    e.load,
                    self.connections(base + j),
                    apps.join(",")
                ));
            }
            out.push(']');
        } else if !entries.is_empty() {
            out.push_str(&format!("registered through MCMP: {} nodes\n", entries.len()));
            for (j, e) in &entries {
                out.push_str(&format!(
                    "node={} balancer={} worker={} range={} load={} live={}\n",
                    e.route,
                    e.balancer,
                    e.worker_url(),
                    crate::config::PortRange { addr: e.addr, first: e.port, last: e.last_port() },
                    e.load,
                    self.connections(base + j)
                ));
                for (st, al, ctx) in &e.apps.list {
                    out.push_str(&format!("  context={} state={} aliases={}\n", ctx, st.as_str(), al.join(",")));
                }
            }
        }
        out
    }
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
    Rejected(String),
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
        }
    }

    fn run(mut self) {
        let mut events = Vec::with_capacity(256);
        let mut next_tick = Instant::now() + TICK;
        loop {
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
                log::error(&format!("epoll_wait failed: {e}; the accept thread stops"));
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
        }
        for (_, s) in self.shakes.drain() {
            self.child.epoll.delete(&s.stream);
        }
        for (_, p) in self.probing.drain() {
            self.child.epoll.delete(&p.idle.stream);
            self.child.stats(p.node).idle.fetch_sub(1, Relaxed);
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
            let suspect = if sweep { *lock(&rt.suspect) } else { None };
            let due = |c: &Idle| {
                c.pingable && (now >= c.pinged + interval || suspect.is_some_and(|t| c.life <= t))
            };
            let out: Vec<Idle> = {
                let mut q = lock(&rt.idle);
                if !q.iter().any(due) {
                    continue;
                }
                let (out, keep): (Vec<Idle>, Vec<Idle>) = q.drain(..).partition(|c| due(c));
                *q = VecDeque::from(keep);
                out
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
                self.probing.insert(c.token, Probe { node: i, idle: c, sent: now, deadline: now + timeout, got: Vec::new() });
            }
            r => {
                let why = match r {
                    Err(e) => format!("ping not sent: {e}"),
                    _ => "ping not sent: the socket buffer is full".into(),
                };
                self.retire_idle(i, c, &why, true);
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
                self.retire_idle(p.node, p.idle, &why, true);
                self.child.suspect_since(p.node, p.sent);
            }
        }
    }

    /// Takes a link out of service that was counted idle.
    fn retire_idle(&self, i: usize, c: Idle, why: &str, ping_failed: bool) {
        self.child.epoll.delete(&c.stream);
        let st = self.child.stats(i);
        st.idle.fetch_sub(1, Relaxed);
        NodeStats::inc(&st.retired);
        if ping_failed {
            NodeStats::inc(&st.ping_failed);
        }
        log::info(|| {
            format!(
                "node {}: idle connection from {} retired: {why}",
                self.child.name(i),
                c.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default()
            )
        });
    }

    /// A link whose PING is out became readable: its PONG, or trouble.
    fn probe_event(&mut self, tok: u64) {
        let Some(mut p) = self.probing.remove(&tok) else { return };
        let mut b = [0u8; 16];
        loop {
            match (&p.idle.stream).read(&mut b) {
                Ok(0) => return self.retire_idle(p.node, p.idle, "closed by the dialer", false),
                Ok(n) => {
                    p.got.extend_from_slice(&b[..n]);
                    if p.got.len() > proto::PONG.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.retire_idle(p.node, p.idle, &format!("read error: {e}"), false),
            }
        }
        if p.got.len() < proto::PONG.len() && proto::PONG.starts_with(&p.got) {
            self.probing.insert(tok, p);
            return;
        }
        if p.got != proto::PONG {
            return self.retire_idle(p.node, p.idle, "answered a ping with something else than a pong", false);
        }
        let i = p.node;
        let rt = &self.child.nodes[i];
        let mut idle = p.idle;
        idle.life = Instant::now();
        if self.child.active(i).is_none() {
            return self.retire_idle(i, idle, "the node was removed", false);
        }
        lock(&rt.idle).push_back(idle);
        rt.cond.notify_one();
        ffi::node_ready(i);
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
            let st = self.child.stats(i);
            for c in [&st.accepted, &st.rejected, &st.retired, &st.ping_failed] {
                c.store(0, Relaxed);
            }
            st.idle.store(0, Relaxed);
            st.bound.store(0, Relaxed);
            st.port.store(0, Relaxed);
            st.last_accept_ms.store(0, Relaxed);
            drop(drained);
            self.child.nodes[i].cond.notify_all();
            match self.child.desc(i) {
                Some(d) if d.active => {
                    if !self.child.close_listeners.load(SeqCst) {
                        self.listeners[i] = self.child.bind(i, true);
                        if let (true, Some(l)) = (self.paused, &self.listeners[i]) {
                            self.child.epoll.delete(l);
                        }
                    }
                }
                Some(d) => log::info(|| format!("node '{}' was removed: child {} closed its listener", d.node.name, std::process::id())),
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
                ffi::node_ready(i);
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
            if self.last_flood_log.map_or(true, |t| now.duration_since(t) >= Duration::from_secs(10)) {
                self.last_flood_log = Some(now);
                log::warn(&format!(
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
                    log::warn(&format!("node {}: accept failed: {e}", self.child.name(i)));
                    return;
                }
            }
        }
    }

    fn reject(&self, i: usize, peer: SocketAddr, why: &str) {
        NodeStats::inc(&self.child.stats(i).rejected);
        log::info(|| format!("node {}: rejected dialer {peer}: {why}", self.child.name(i)));
    }

    fn admit(&mut self, i: usize, stream: TcpStream, peer: SocketAddr) {
        let Some(node) = self.child.active(i) else { return };
        if !node.allows(peer.ip()) {
            self.reject(i, peer, "source address not in allow=");
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        if let Err(e) = node.live.apply_tcp(&stream) {
            log::debug(|| format!("node {}: cannot set keepalive/user timeout on {peer}: {e}", self.child.name(i)));
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
                self.reject(s.node, s.peer, "handshake not completed in time");
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
            Outcome::Rejected(why) => {
                self.child.epoll.delete(&s.stream);
                self.reject(s.node, s.peer, &why);
            }
            Outcome::Accepted(pingable) => {
                let (node, peer) = (s.node, s.peer);
                let idle_tok = token(K_IDLE, node, tok);
                if self.child.epoll.modify(&s.stream, EV_IN | EV_RDHUP, idle_tok).is_ok() {
                    if let Err(why) = self.pool_registered(node, s.stream, peer, idle_tok, pingable) {
                        self.reject(node, peer, &why);
                    }
                }
            }
        }
    }

    /// Reads what has arrived and advances the handshake.
    fn step(&mut self, s: &mut Shake) -> Outcome {
        let Some(node) = self.child.active(s.node) else {
            return Outcome::Rejected("the node was removed".into());
        };
        let node: &Node = &node;
        let mut tmp = [0u8; 256];
        loop {
            match s.stream.read(&mut tmp) {
                Ok(0) => return Outcome::Rejected("closed during the handshake".into()),
                Ok(n) => {
                    s.buf.extend_from_slice(&tmp[..n]);
                    if s.buf.len() > proto::hello_len(proto::MAX_NODE_LEN) {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Outcome::Rejected(format!("read error during the handshake: {e}")),
            }
        }
        match s.stage {
            Stage::Hello => {
                let (hello, used) = match proto::parse_hello(&s.buf) {
                    Ok(None) => return Outcome::Pending,
                    Ok(Some(h)) => h,
                    Err(e) => {
                        let v = if s.buf.get(4) == Some(&proto::VERSION_2) { proto::VERSION_2 } else { proto::VERSION_1 };
                        let _ = s.stream.write(&proto::encode_refusal(v, proto::Refusal::BadHello));
                        return Outcome::Rejected(format!("malformed hello: {e}"));
                    }
                };
                if hello.version == proto::VERSION_1 && !node.live.v1 {
                    let _ = s.stream.write(&proto::encode_refusal(proto::VERSION_1, proto::Refusal::VersionNotServed));
                    let now = Instant::now();
                    let why = "it speaks handshake version 1, which has no liveness pings (upgrade the dialer, or set v1=serve on the node or in ProxyReversedLiveness to serve it)";
                    if self.last_v1_warn[s.node].is_none_or(|t| now.duration_since(t) >= V1_WARN_EVERY) {
                        self.last_v1_warn[s.node] = Some(now);
                        log::warn(&format!("node '{}': refused dialer {}: {why}", node.name, s.peer));
                    }
                    return Outcome::Rejected(why.into());
                }
                if hello.node != node.name.as_bytes() {
                    let _ = s.stream.write(&proto::encode_refusal(hello.version, proto::Refusal::WrongNode));
                    return Outcome::Rejected(format!(
                        "it named node '{}' on a port of node '{}'",
                        String::from_utf8_lossy(&hello.node),
                        node.name
                    ));
                }
                if used != s.buf.len() {
                    return Outcome::Rejected("bytes after the hello, before the challenge".into());
                }
                let server_nonce = match proto::nonce() {
                    Ok(n) => n,
                    Err(e) => return Outcome::Rejected(e.to_string()),
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
                    return Outcome::Rejected("could not send the challenge".into());
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
                    proto::Verdict::Accepted => Outcome::Rejected("could not send the verdict".into()),
                    v => Outcome::Rejected(v.describe().into()),
                }
            }
        }
    }

    /// auth=none: straight into the pool after the allow-list check.
    fn pool(&self, i: usize, stream: TcpStream, peer: SocketAddr, tok: u64) -> Result<(), ()> {
        if self.child.epoll.add(&stream, EV_IN | EV_RDHUP, tok).is_err() {
            return Err(());
        }
        self.pool_registered(i, stream, peer, tok, false).map_err(|why| self.reject(i, peer, &why))
    }

    fn pool_registered(&self, i: usize, stream: TcpStream, peer: SocketAddr, tok: u64, pingable: bool) -> Result<(), String> {
        let rt = &self.child.nodes[i];
        let st = self.child.stats(i);
        {
            let mut q = lock(&rt.idle);
            if self.child.active(i).map_or(true, |n| q.len() >= n.max_idle) {
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
        ffi::node_ready(i);
        log::debug(|| format!("node {}: accepted a connection from {peer}", self.child.name(i)));
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
            NodeStats::inc(&st.retired);
            log::debug(|| {
                format!(
                    "node {}: idle connection from {} closed or spoke out of turn; retired",
                    self.child.name(i),
                    c.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default()
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let t = token(K_IDLE, 17, 123456);
        assert_eq!(token_kind(t), K_IDLE);
        assert_eq!(token_node(t), 17);
        assert_eq!(t & 0xff_ffff_ffff, 123456);
    }
}
