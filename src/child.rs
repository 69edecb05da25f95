//! Inside one httpd child: a listener per node (the first free port of its
//! range), one accept thread that runs every handshake with non-blocking I/O
//! and watches the idle connections, and a queue of authenticated idle
//! connections per node from which request threads take.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Auth, Config, Node, WorkerId};
use crate::liveness;
use crate::log;
use crate::os::{Epoll, EventFd, EV_IN};
use crate::registry::{self, Registry};
use crate::stats::{NodeStats, Retirement, Table};

// epoll tokens: kind in the top byte, node in the next two, an id below.
pub(crate) const K_WAKE: u64 = 1;
pub(crate) const K_LISTEN: u64 = 2;
pub(crate) const K_SHAKE: u64 = 3;
pub(crate) const K_IDLE: u64 = 4;

pub(crate) fn token(kind: u64, node: usize, id: u64) -> u64 {
    (kind << 56) | ((node as u64 & 0xffff) << 40) | (id & 0xff_ffff_ffff)
}
pub(crate) fn token_kind(t: u64) -> u64 {
    t >> 56
}
pub(crate) fn token_node(t: u64) -> usize {
    ((t >> 40) & 0xffff) as usize
}

/// A gracefully stopping child keeps its listeners at least this long, and
/// then while requests of its own wait for a connection (see `stopping`).
const GRACEFUL_LINGER: Duration = Duration::from_millis(250);

pub(crate) struct Idle {
    pub(crate) token: u64,
    pub(crate) stream: TcpStream,
    /// The dialer answers PINGs (handshake version 2 with pings on).
    pub(crate) pingable: bool,
    /// The last sign of life: the verdict, or the last PONG.
    pub(crate) life: Instant,
    /// The last PING sent (or the verdict): the next is due one interval later.
    pub(crate) pinged: Instant,
}

pub(crate) struct NodeRt {
    pub(crate) idle: Mutex<VecDeque<Idle>>,
    pub(crate) cond: Condvar,
    /// What the node is: fixed for ProxyReversed nodes, set from the shared
    /// registry for nodes registered through MCMP.
    pub(crate) desc: RwLock<Option<Desc>>,
    /// The registry generation `desc` was last brought in line with.
    pub(crate) seen_gen: std::sync::atomic::AtomicU32,
    /// A PING of this node failed at this time: links that showed no life
    /// since may be dead as well (a NAT lost them all) and are handed out
    /// only once a PING of the sweep below has answered.
    pub(crate) suspect: Mutex<Option<Instant>>,
    /// Asks the accept thread to ping every suspect idle link now.
    pub(crate) sweep: AtomicBool,
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
    pub(crate) nodes: Vec<NodeRt>,
    pub(crate) registry: Option<Arc<Registry>>,
    stats: StatsHome,
    pub(crate) epoll: Arc<Epoll>,
    pub(crate) wake: EventFd,
    pub(crate) stop: AtomicBool,
    pub(crate) close_listeners: AtomicBool,
    /// When a graceful stop asked for the listeners to close.
    pub(crate) graceful_since: Mutex<Option<Instant>>,
    /// Request threads waiting in `take` for a connection.
    pub(crate) waiting: AtomicUsize,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
    /// Links that mod_proxy kept after a response, by fd: when that response ended.
    /// When mod_proxy last kept each link, indexed by its fd (small integers:
    /// a vector is cheaper per request than a hashed map).
    pub(crate) released: Mutex<Vec<Option<Instant>>>,
    /// Serialises `refresh`, so that an older description never overwrites a newer one.
    refresh_lock: Mutex<()>,
    /// Set by `exit`: the shared stats slot is released and may belong to
    /// another child now, so late updates (mod_proxy closing pooled
    /// sockets after our pre-cleanup) go nowhere.
    exited: AtomicBool,
    /// The accept thread gave up (it failed too often): requests fail at once.
    pub(crate) down: AtomicBool,
    /// Tests: panics the accept loop this many times.
    #[cfg(test)]
    pub(crate) test_panics: std::sync::atomic::AtomicU32,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection waiting in the pool is alive if it has neither data nor EOF.
/// (The dialer must not speak before httpd does.)
pub(crate) fn idle_is_alive(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.peek(&mut b), Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

impl Child {
    /// The child's state, in a static for the rest of the process, and the
    /// listeners it bound (accept::start runs the accept thread on them).
    pub fn new(
        cfg: Arc<Config>,
        table: Option<Arc<Table>>,
        registry: Option<Arc<Registry>>,
    ) -> io::Result<(&'static Child, Vec<Option<TcpListener>>)> {
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
            released: Mutex::new(Vec::new()),
            refresh_lock: Mutex::new(()),
            exited: AtomicBool::new(false),
            down: AtomicBool::new(false),
            #[cfg(test)]
            test_panics: Default::default(),
        };
        child.epoll.add(&child.wake, EV_IN, token(K_WAKE, 0, 0))?;
        // The child lives in a static for the rest of the process.
        let child: &'static Child = Box::leak(Box::new(child));
        child.refresh();
        let listeners: Vec<Option<TcpListener>> = (0..child.nodes.len()).map(|i| child.bind(i, true)).collect();
        Ok((child, listeners))
    }

    /// The accept thread, joined by `exit`.
    pub fn set_thread(&self, h: JoinHandle<()>) {
        *lock(&self.thread) = Some(h);
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
    pub(crate) fn active(&self, i: usize) -> Option<Arc<Node>> {
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
        let id = WorkerId::new(name);
        let find =
            || (self.cfg.nodes.len()..self.nodes.len()).find(|&i| self.desc(i).is_some_and(|d| d.node.worker_id == id));
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
        let _serial = lock(&self.refresh_lock);
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
    pub(crate) fn describe(&self, e: &registry::Entry) -> Option<Desc> {
        let m = self.cfg.mcmp.as_ref()?;
        let secret = self.cfg.secret_for_route(&e.route)?.to_vec();
        let node = Node {
            name: e.route.clone(),
            worker_url: e.worker_url(),
            worker_id: WorkerId::new(&e.worker_url()),
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
    pub(crate) fn bind(&self, i: usize, first_time: bool) -> Option<TcpListener> {
        let node = self.active(i)?;
        let node = &*node;
        let mut last_err = None;
        for port in node.range.first..=node.range.last {
            match TcpListener::bind(node.range.socket_addr(port)) {
                Ok(l) => {
                    if let Err(e) =
                        l.set_nonblocking(true).and_then(|_| self.epoll.add(&l, EV_IN, token(K_LISTEN, i, 0)))
                    {
                        log::error(17, &format!("node '{}': cannot watch port {port}: {e}", node.name));
                        return None;
                    }
                    let st = self.stats(i);
                    st.port.store(port as u32, Relaxed);
                    st.bound.store(1, Relaxed);
                    log::info(18, || {
                        format!(
                            "node '{}': child {} listens on {}",
                            node.name,
                            std::process::id(),
                            node.range.socket_addr(port)
                        )
                    });
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
                Some(e) => log::error(19, &format!(
                    "node '{}': cannot listen on {}: {e}; this child answers 503 for the node",
                    node.name, node.range
                )),
                None => log::error(20, &format!(
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
        let t0 = Instant::now();
        let got = self.take_within(i, wait);
        // Requests only: a retry (no wait) does not count.
        if !wait.is_zero() {
            let st = self.stats(i);
            st.observe_wait(t0.elapsed());
            if got.is_none() {
                NodeStats::inc(&st.unavailable);
            }
        }
        got
    }

    fn take_within(&self, i: usize, wait: Duration) -> Option<TcpStream> {
        if self.down.load(Relaxed) {
            return None;
        }
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
                    st.retire(Retirement::DialerClosed);
                    log::debug(21, || {
                        format!("node {}: discarded an idle connection the dialer had closed", self.name(i))
                    });
                    continue;
                }
                let check = c.pingable && live.verify.is_some_and(|v| c.life.elapsed() >= v);
                if !check {
                    if c.stream.set_nonblocking(false).is_err() {
                        st.retire(Retirement::Error);
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
                        st.retire(Retirement::PingFailed);
                        log::info(22, || {
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
                    log::debug(23, || {
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
                NodeStats::inc(&st.waited);
                log::debug(24, || {
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
    pub(crate) fn suspect_since(&self, i: usize, t: Instant) {
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
        let Ok(i) = usize::try_from(fd) else { return };
        let now = Instant::now();
        let mut r = lock(&self.released);
        if r.len() <= i {
            r.resize(i + 1, None);
        }
        r[i] = Some(now);
    }

    /// Whether mod_proxy may send a request on link `fd` again: only within
    /// the node's `reuse` time after its last response.
    pub fn link_reusable(&self, i: usize, fd: i32) -> bool {
        let reuse = self.desc(i).map(|d| d.node.live.reuse).unwrap_or_default();
        let Ok(fd) = usize::try_from(fd) else { return false };
        lock(&self.released).get(fd).copied().flatten().is_some_and(|t| t.elapsed() < reuse)
    }

    pub(crate) fn name(&self, i: usize) -> String {
        self.desc(i).map(|d| format!("'{}'", d.node.name)).unwrap_or_else(|| format!("#{i}"))
    }

    pub fn retired(&self, i: usize, fd: i32) {
        if let Ok(fd) = usize::try_from(fd) {
            if let Some(t) = lock(&self.released).get_mut(fd) {
                *t = None;
            }
        }
        if self.exited.load(SeqCst) {
            return;
        }
        let st = self.stats(i);
        st.busy.fetch_sub(1, Relaxed);
        st.retire(Retirement::AfterUse);
    }

    /// A hard stop closes the listeners at once. A graceful one lets the
    /// requests this child accepted before the restart still get connections:
    /// the listeners stay open GRACEFUL_LINGER, then while a request waits in
    /// `take` (at most the node's wait), so that the dialer's replacement for
    /// a connection just used can still arrive. Closing at once made such a
    /// request wait its whole `wait` in vain and answer 503.
    pub fn stopping(&self, graceful: bool) {
        log::debug(25, || {
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
    pub(crate) fn graceful_close_due(&self, now: Instant) -> bool {
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
        self.exited.store(true, SeqCst);
        if let StatsHome::Shared { table, slot, pid } = &self.stats {
            table.release(*slot, *pid);
        }
    }

    /// The accept thread gave up: no listener, no idle link, requests fail at once.
    pub(crate) fn give_up(&self) {
        self.down.store(true, SeqCst);
        self.close_listeners.store(true, SeqCst);
        for (i, rt) in self.nodes.iter().enumerate() {
            let drained: Vec<Idle> = lock(&rt.idle).drain(..).collect();
            for c in &drained {
                self.epoll.delete(&c.stream);
            }
            let st = self.stats(i);
            st.idle.fetch_sub(drained.len() as i64, Relaxed);
            st.bound.store(0, Relaxed);
            rt.cond.notify_all();
        }
    }

    /// The stats slots of every live child (or just this one without a shared table).
    pub(crate) fn with_children<R>(&self, f: impl FnOnce(&[&crate::stats::Slot]) -> R) -> R {
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Builder;

    /// A configuration with one auth=none node on a free loopback port.
    pub(crate) fn one_node_config() -> Arc<Config> {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut b = Builder::default();
        b.add_node(&["n1", "ajp://127.0.0.2:1/", &format!("127.0.0.1:{port}"), "auth=none"]).unwrap();
        b.resolve().unwrap();
        Arc::new(b.cfg.clone())
    }

    /// mod_proxy closes pooled sockets after the child's pre-cleanup released
    /// its stats slot; by then the slot may be another child's.
    #[test]
    fn late_retirements_after_exit_leave_a_reused_slot_alone() {
        let table = Arc::new(Table::new(1).unwrap());
        let (a, _listeners) = Child::new(one_node_config(), Some(table.clone()), None).unwrap();
        a.stats(0).busy.store(1, Relaxed);
        a.exit();
        let other = table.claim(4_194_303).expect("the freed slot");
        table.slot(other).nodes[0].busy.store(5, Relaxed);
        a.retired(0, -1);
        let n = &table.slot(other).nodes[0];
        assert_eq!(
            (n.busy.load(Relaxed), n.retired.load(Relaxed)),
            (5, 0),
            "a late retirement landed in another child's slot"
        );
    }

    #[test]
    fn tokens_round_trip() {
        let t = token(K_IDLE, 17, 123456);
        assert_eq!(token_kind(t), K_IDLE);
        assert_eq!(token_node(t), 17);
        assert_eq!(t & 0xff_ffff_ffff, 123456);
    }
}
