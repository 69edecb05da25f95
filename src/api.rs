//! Process-wide state behind the C API (ffi.rs is its only caller).
//!
//! Parent: `BUILDER` collects one configuration read, `FROZEN` holds the final
//! configuration and the shared status table after post_config. Each child
//! inherits both through fork and starts its `Child` in child_init. Nothing
//! here is meant to survive a restart: pre_config resets it all.

use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use once_cell::sync::OnceCell;

use crate::child::Child;
use crate::config::{Builder, Config};
use crate::log;
use crate::registry::Registry;
use crate::stats::{Table, MAX_NODES};

struct Frozen {
    cfg: Arc<Config>,
    table: Option<Arc<Table>>,
    registry: Option<Arc<Registry>>,
}

static BUILDER: Mutex<Option<Builder>> = Mutex::new(None);
static FROZEN: Mutex<Option<Frozen>> = Mutex::new(None);
/// Set once per child process (child_init runs once in each child).
static CHILD: OnceCell<&'static Child> = OnceCell::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn cfg_reset() {
    *lock(&BUILDER) = Some(Builder::default());
}

fn with_builder<R>(f: impl FnOnce(&mut Builder) -> R) -> R {
    let mut g = lock(&BUILDER);
    f(g.get_or_insert_with(Builder::default))
}

/// A directive with a list of arguments, by its name.
pub fn cfg_args(name: &str, args: &[&str]) -> Result<(), String> {
    with_builder(|b| match name.to_ascii_lowercase().as_str() {
        "proxyreversed" => {
            if b.cfg.nodes.len() >= MAX_NODES {
                return Err(format!("at most {MAX_NODES} reversed nodes can be declared"));
            }
            b.add_node(args).map_err(|e| e.to_string())
        }
        "proxyreversedmcmp" => b.set_mcmp(args).map_err(|e| e.to_string()),
        "proxyreversednodesecret" => b.add_node_secret(args).map_err(|e| e.to_string()),
        "proxyreversedliveness" => b.set_liveness(args).map_err(|e| e.to_string()),
        _ => Err("unknown directive".into()),
    })
}

pub fn cfg_global(name: &str, value: &str) -> Result<(), String> {
    with_builder(|b| b.set_global(name, value).map_err(|e| e.to_string()))
}

pub fn cfg_saw_worker(name: &str) {
    with_builder(|b| b.saw_worker(name))
}

pub fn cfg_check() -> Result<(), String> {
    with_builder(|b| b.check().map_err(|e| e.to_string()))
}

pub fn post_config(server_limit: usize, max_children: usize, threads_per_child: usize) -> Result<(), String> {
    let cfg = Arc::new(with_builder(|b| b.resolve().map(|_| b.cfg.clone())).map_err(|e| e.to_string())?);
    if threads_per_child <= 1 {
        for n in &cfg.nodes {
            if n.range.len() < max_children {
                log::warn(13, &format!(
                    "node '{}': its range {} has {} ports, but this MPM runs one connection per child and up to {} children: children beyond the range answer 503 for the node (make the range cover MaxRequestWorkers)",
                    n.name,
                    n.range,
                    n.range.len(),
                    max_children
                ));
            }
        }
    }
    let table = match Table::new(server_limit.max(max_children)) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            log::warn(
                14,
                &format!("no shared status table ({e}): the status page shows only the child that serves it"),
            );
            None
        }
    };
    let registry = match &cfg.mcmp {
        Some(m) => Some(Arc::new(
            Registry::new(m.nodes).map_err(|e| format!("cannot create the table of MCMP-registered nodes: {e}"))?,
        )),
        None => None,
    };
    if let Some(reg) = &registry {
        restore_into(reg);
    }
    *lock(&FROZEN) = Some(Frozen { cfg, table, registry });
    Ok(())
}

pub fn pconf_cleanup() {
    *lock(&FROZEN) = None;
}

pub fn node_for_worker(name: &str) -> Option<usize> {
    if let Some(c) = CHILD.get() {
        return c.node_for_worker(name);
    }
    if let Some(f) = lock(&FROZEN).as_ref() {
        // Before the child's own state exists (child_init walks the workers
        // first): registrations kept across a restart already have members.
        return f.cfg.node_for_worker(name).or_else(|| {
            let id = crate::config::WorkerId::new(name);
            let reg = f.registry.as_ref()?;
            let (slot, _) =
                reg.entries().into_iter().find(|(_, e)| crate::config::WorkerId::new(&e.worker_url()) == id)?;
            Some(f.cfg.nodes.len() + slot)
        });
    }
    with_builder(|b| b.cfg.node_for_worker(name))
}

/// Whether nodes can be registered at run time (ProxyReversedMCMP).
pub fn nodes_dynamic() -> bool {
    if let Some(c) = CHILD.get() {
        return c.registry().is_some();
    }
    lock(&FROZEN).as_ref().is_some_and(|f| f.registry.is_some())
}

/// Changes whenever the registered nodes change (0 without ProxyReversedMCMP).
pub fn nodes_gen() -> u32 {
    if let Some(c) = CHILD.get() {
        return c.registry().map_or(0, |r| r.gen());
    }
    lock(&FROZEN).as_ref().and_then(|f| f.registry.as_ref().map(|r| r.gen())).unwrap_or(0)
}

/// Static nodes plus the slots for MCMP-registered ones: 0 means the module has nothing to do.
pub fn node_count() -> usize {
    fn total(c: &Config) -> usize {
        c.nodes.len() + c.mcmp.as_ref().map_or(0, |m| m.nodes)
    }
    if let Some(c) = CHILD.get() {
        return c.node_count();
    }
    if let Some(f) = lock(&FROZEN).as_ref() {
        return total(&f.cfg);
    }
    with_builder(|b| total(&b.cfg))
}

pub fn child_init() {
    let (cfg, table, registry) = match lock(&FROZEN).as_ref() {
        Some(f) => (f.cfg.clone(), f.table.clone(), f.registry.clone()),
        None => {
            log::error(15, "child_init before post_config: reversed nodes are not served in this child");
            return;
        }
    };
    if cfg.nodes.is_empty() && registry.is_none() {
        return;
    }
    match crate::accept::start(cfg, table, registry) {
        Ok(c) => {
            let _ = CHILD.set(c);
        }
        Err(e) => log::error(16, &format!("cannot start the reversed-connection listener thread: {e}")),
    }
}

pub fn child_stopping(graceful: bool) {
    if let Some(c) = CHILD.get() {
        c.stopping(graceful);
    }
}

pub fn child_exit() {
    if let Some(c) = CHILD.get() {
        c.exit();
    }
}

/// An idle authenticated connection for node `node`, and the node's wait time.
pub fn take_fd(node: usize, nowait: bool) -> (Option<TcpStream>, Duration) {
    match CHILD.get().and_then(|c| c.desc(node).map(|d| (c, d))) {
        Some((c, d)) if d.active => {
            let wait = d.node.wait;
            (c.take(node, if nowait { Duration::ZERO } else { wait }), wait)
        }
        // A removed node: no connection will come.
        _ => (None, Duration::ZERO),
    }
}

pub fn fd_retired(node: usize, fd: i32) {
    if let Some(c) = CHILD.get() {
        c.retired(node, fd);
    }
}

pub fn link_released(fd: i32) {
    if let Some(c) = CHILD.get() {
        c.link_released(fd);
    }
}

pub fn link_reusable(node: usize, fd: i32) -> bool {
    CHILD.get().is_some_and(|c| c.link_reusable(node, fd))
}

/// mod_status's section (see status::mod_status); empty in a process without nodes.
pub fn status_fragment(short: bool) -> String {
    CHILD.get().map(|c| crate::status::mod_status(c, short)).unwrap_or_default()
}

/// What the status handler asked for (`prx_status_render`'s `format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    Text,
    Json,
    Metrics,
    Html,
}

impl StatusFormat {
    pub fn from_code(code: i32) -> StatusFormat {
        match code {
            1 => StatusFormat::Json,
            2 => StatusFormat::Metrics,
            3 => StatusFormat::Html,
            _ => StatusFormat::Text,
        }
    }
}

pub fn status_render(format: StatusFormat, refresh_s: u32) -> String {
    match (CHILD.get(), format) {
        (Some(c), StatusFormat::Metrics) => crate::metrics::render(c),
        (Some(c), StatusFormat::Html) => crate::status::render_html(c, refresh_s),
        (None, StatusFormat::Html) => "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mod_proxy_reversed status</title></head><body><p>mod_proxy_reversed: no reversed nodes in this process</p></body></html>\n".into(),
        (Some(c), f) => crate::status::render(c, f == StatusFormat::Json),
        (None, StatusFormat::Json) => "{\"children\":[]}\n".into(),
        (None, StatusFormat::Metrics) => String::new(),
        (None, StatusFormat::Text) => "mod_proxy_reversed: no reversed nodes in this process\n".into(),
    }
}

/// The child's state, for the MCMP receiver.
pub fn child() -> Option<&'static Child> {
    CHILD.get().copied()
}

pub fn registry() -> Option<Arc<Registry>> {
    CHILD.get().and_then(|c| c.registry())
}

/// Whether a worker URL points at a port where httpd itself listens for
/// reversed connections (see prx_worker_reserved).
pub fn worker_reserved(name: &str) -> bool {
    let Some(c) = CHILD.get() else { return false };
    let Some((host, port)) = crate::config::worker_host_port(name) else { return false };
    let inside = |r: &crate::config::PortRange| {
        (r.addr.is_unspecified() || host.is_none_or(|h| h == r.addr)) && (r.first..=r.last).contains(&port)
    };
    c.cfg.nodes.iter().any(|n| inside(&n.range)) || c.cfg.mcmp.as_ref().is_some_and(|m| inside(&m.window))
}

// --- MCMP registrations across a restart (see registry::snapshot_text) ---

/// One registration of the previous generation, checked against this
/// configuration in check_config; None once dropped. The C strings are what
/// the shim reads to make the node's balancer member again.
struct Pending {
    slot: usize,
    entry: crate::registry::Entry,
    c: [std::ffi::CString; 3],
}

static PENDING: Mutex<Vec<Option<Pending>>> = Mutex::new(Vec::new());

/// The active registrations of this generation, for the shim to keep in
/// httpd's retained data (parent, pconf cleanup). None without ProxyReversedMCMP.
pub fn registry_snapshot() -> Option<String> {
    let g = lock(&FROZEN);
    let reg = g.as_ref()?.registry.as_ref()?;
    Some(crate::registry::snapshot_text(&reg.entries()))
}

/// check_config: reads the registrations saved by the previous generation and
/// keeps those this configuration still admits (ProxyReversedMCMP present,
/// the ports inside its range, a secret for the route, no overlap with a
/// ProxyReversed node). Returns how many are pending (indices for
/// `restore_member`). Each one dropped is logged with the reason.
pub fn restore_begin(text: Option<&str>) -> usize {
    let mut pending = lock(&PENDING);
    pending.clear();
    let Some(text) = text.filter(|t| !t.is_empty()) else { return 0 };
    let (entries, bad) = crate::registry::parse_snapshot(text);
    for b in bad {
        log::warn(50, &format!("MCMP registration not kept across the restart: {b}"));
    }
    let kept = with_builder(|b| {
        let cfg = &b.cfg;
        let mut kept: Vec<(usize, crate::registry::Entry)> = Vec::new();
        for (slot, mut e) in entries {
            let why = match &cfg.mcmp {
                None => Some("ProxyReversedMCMP is no longer configured".to_string()),
                Some(m) => {
                    e.ports = m.ports;
                    let w = &m.window;
                    let range = crate::config::PortRange { addr: e.addr, first: e.port, last: e.last_port() };
                    if !(w.addr.is_unspecified() || w.addr == e.addr)
                        || e.port < w.first
                        || e.port as u32 + m.ports as u32 - 1 > w.last as u32
                    {
                        Some(format!("its ports {range} are outside ProxyReversedMCMP {w}"))
                    } else if m.tls_required && e.kind != crate::registry::Kind::Https {
                        Some(format!("it is Type={} and ProxyReversedMCMP has tls=required", e.kind.as_str()))
                    } else if cfg.secret_for_route(&e.route).is_none() {
                        Some("no secret is configured for it any more".to_string())
                    } else if let Some(n) = cfg.nodes.iter().find(|n| n.range.overlaps(&range)) {
                        Some(format!("its ports {range} overlap those of node '{}'", n.name))
                    } else if let Some((_, o)) = kept.iter().find(|(_, o)| {
                        crate::config::PortRange { addr: o.addr, first: o.port, last: o.last_port() }.overlaps(&range)
                    }) {
                        Some(format!("its ports {range} overlap those of registered node '{}'", o.route))
                    } else {
                        None
                    }
                }
            };
            match why {
                Some(w) => {
                    log::warn(50, &format!("MCMP registration of node '{}' not kept across the restart: {w}", e.route))
                }
                None => kept.push((slot, e)),
            }
        }
        kept
    });
    for (slot, entry) in kept {
        let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
        let strings = [c(&entry.balancer), c(&entry.worker_url()), c(&entry.route)];
        pending.push(Some(Pending { slot, entry, c: strings }));
    }
    pending.len()
}

/// Field `field` (0 balancer, 1 worker URL, 2 route) of pending registration
/// `i`, valid until the next `restore_begin` or post_config; None if dropped.
pub fn restore_member(i: usize, field: usize) -> Option<*const std::ffi::c_char> {
    let pending = lock(&PENDING);
    let p = pending.get(i)?.as_ref()?;
    // The CString's heap buffer does not move while it stays in PENDING.
    Some(p.c.get(field)?.as_ptr())
}

/// The shim could not make the balancer member: the registration is dropped.
pub fn restore_drop(i: usize, why: &str) {
    let mut pending = lock(&PENDING);
    if let Some(slot) = pending.get_mut(i) {
        if let Some(p) = slot.take() {
            log::warn(50, &format!("MCMP registration of node '{}' not kept across the restart: {why}", p.entry.route));
        }
    }
}

/// post_config: the pending registrations go into the new generation's table.
fn restore_into(reg: &Registry) {
    let pending: Vec<Pending> = lock(&PENDING).drain(..).flatten().collect();
    if pending.is_empty() {
        return;
    }
    let names: Vec<String> = pending.iter().map(|p| p.entry.route.clone()).collect();
    let left = reg.restore(pending.into_iter().map(|p| (p.slot, p.entry)).collect());
    for e in &left {
        log::warn(50, &format!("MCMP registration of node '{}' not kept across the restart: no free slot (nodes= of ProxyReversedMCMP)", e.route));
    }
    let kept: Vec<&String> = names.iter().filter(|n| !left.iter().any(|e| &e.route == *n)).collect();
    if !kept.is_empty() {
        log::info(51, || format!("MCMP: kept {} registered node(s) across the restart: {kept:?}", kept.len()));
    }
}
