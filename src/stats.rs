//! Per-child, per-node counters in a table shared by all children of one
//! generation, so that the status page of any child shows every child.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use std::sync::Arc;

use crate::config::Node;
use crate::ffi::{self, SharedArray};

/// Reversed nodes one configuration may declare.
pub const MAX_NODES: usize = 64;

#[repr(C)]
#[derive(Default)]
pub struct NodeStats {
    pub port: AtomicU32,
    pub bound: AtomicU32,
    pub idle: AtomicI64,
    pub busy: AtomicI64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub retired: AtomicU64,
    /// Idle links retired because a PING got no PONG in time (also in `retired`).
    pub ping_failed: AtomicU64,
    /// When this child last authenticated a connection of the node (ms since the epoch).
    pub last_accept_ms: AtomicU64,
}

impl NodeStats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}

#[repr(C)]
pub struct Slot {
    pub pid: AtomicI32,
    pub _reserved: AtomicU32,
    pub nodes: [NodeStats; MAX_NODES],
}

impl Default for Slot {
    fn default() -> Slot {
        Slot { pid: AtomicI32::new(0), _reserved: AtomicU32::new(0), nodes: std::array::from_fn(|_| NodeStats::default()) }
    }
}

pub struct Table {
    slots: SharedArray<Slot>,
}

impl Table {
    pub fn new(max_children: usize) -> std::io::Result<Table> {
        // Room for a whole old generation still finishing beside the new one.
        Ok(Table { slots: SharedArray::new(max_children.saturating_mul(2).clamp(2, 8192))? })
    }

    /// Claims a slot for this process: a free one, else one whose process is gone.
    pub fn claim(&self, pid: i32) -> Option<usize> {
        let slots = self.slots.get();
        for pass in 0..2 {
            for (i, s) in slots.iter().enumerate() {
                let cur = s.pid.load(Relaxed);
                let free = cur == 0 || (pass == 1 && !ffi::pid_alive(cur));
                if free && s.pid.compare_exchange(cur, pid, Relaxed, Relaxed).is_ok() {
                    for n in &s.nodes {
                        for c in [&n.accepted, &n.rejected, &n.retired, &n.ping_failed] {
                            c.store(0, Relaxed);
                        }
                        n.idle.store(0, Relaxed);
                        n.busy.store(0, Relaxed);
                        n.port.store(0, Relaxed);
                        n.bound.store(0, Relaxed);
                        n.last_accept_ms.store(0, Relaxed);
                    }
                    return Some(i);
                }
            }
        }
        None
    }

    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots.get()[i]
    }

    pub fn release(&self, i: usize, pid: i32) {
        let _ = self.slots.get()[i].pid.compare_exchange(pid, 0, Relaxed, Relaxed);
    }

    /// The slots of every live child of this generation, by pid.
    pub fn live(&self) -> Vec<&Slot> {
        let mut children: Vec<&Slot> = self
            .slots
            .get()
            .iter()
            .filter(|s| {
                let p = s.pid.load(Relaxed);
                p != 0 && ffi::pid_alive(p)
            })
            .collect();
        children.sort_by_key(|s| s.pid.load(Relaxed));
        children
    }
}

pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A connection authenticated this recently counts as live even if in use:
/// a node whose connections are all busy keeps dialling replacements.
pub const RECENT_ACCEPT_MS: u64 = 2000;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Live connections of node `i` over these children: the idle ones (watched
/// by the accept threads, so a dialer that went away is not counted), plus
/// one per child that authenticated one in the last RECENT_ACCEPT_MS.
/// Connections mod_proxy keeps between requests are not counted: nothing
/// tells whether their dialer is still there.
pub fn live(children: &[&Slot], i: usize) -> i64 {
    let now = now_ms();
    children
        .iter()
        .filter_map(|s| s.nodes.get(i))
        .map(|n| {
            let recent = now.saturating_sub(n.last_accept_ms.load(Relaxed)) <= RECENT_ACCEPT_MS;
            n.idle.load(Relaxed).max(0) + recent as i64
        })
        .sum()
}

/// The status document: one row per child and node; `extra` is appended
/// (JSON: more members of the top-level object, starting with a comma).
pub fn render(nodes: &[Option<Arc<Node>>], children: &[&Slot], json: bool, extra: &str) -> String {
    let mut out = String::new();
    let listed = || nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, n)));
    if json {
        out.push_str("{\"children\":[");
        for (ci, s) in children.iter().enumerate() {
            if ci > 0 {
                out.push(',');
            }
            out.push_str(&format!("{{\"pid\":{},\"nodes\":[", s.pid.load(Relaxed)));
            for (ni, (i, node)) in listed().enumerate() {
                let st = &s.nodes[i];
                if ni > 0 {
                    out.push(',');
                }
                out.push_str(&format!(
                    "{{\"node\":{},\"worker\":{},\"range\":{},\"bound\":{},\"port\":{},\"idle\":{},\"busy\":{},\"accepted\":{},\"rejected\":{},\"retired\":{},\"ping_failed\":{}}}",
                    json_str(&node.name),
                    json_str(&node.worker_url),
                    json_str(&node.range.to_string()),
                    st.bound.load(Relaxed) != 0,
                    st.port.load(Relaxed),
                    st.idle.load(Relaxed).max(0),
                    st.busy.load(Relaxed).max(0),
                    st.accepted.load(Relaxed),
                    st.rejected.load(Relaxed),
                    st.retired.load(Relaxed),
                    st.ping_failed.load(Relaxed),
                ));
            }
            out.push_str("]}");
        }
        out.push(']');
        out.push_str(extra);
        out.push_str("}\n");
    } else {
        out.push_str(&format!("mod_proxy_reversed: {} children, {} nodes\n", children.len(), listed().count()));
        for s in children {
            for (i, node) in listed() {
                let st = &s.nodes[i];
                out.push_str(&format!(
                    "child={} node={} port={} idle={} busy={} accepted={} rejected={} retired={} pingfail={}\n",
                    s.pid.load(Relaxed),
                    node.name,
                    if st.bound.load(Relaxed) != 0 { st.port.load(Relaxed).to_string() } else { "unbound".into() },
                    st.idle.load(Relaxed).max(0),
                    st.busy.load(Relaxed).max(0),
                    st.accepted.load(Relaxed),
                    st.rejected.load(Relaxed),
                    st.retired.load(Relaxed),
                    st.ping_failed.load(Relaxed),
                ));
            }
        }
    }
    if !json {
        out.push_str(extra);
    }
    out
}
