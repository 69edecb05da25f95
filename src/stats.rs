//! Per-child, per-node counters in a table shared by all children of one
//! generation, so that the status page of any child shows every child.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::os::{self, SharedArray};

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

crate::zero_shareable!(Slot);

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
                let free = cur == 0 || (pass == 1 && !os::pid_alive(cur));
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
                p != 0 && os::pid_alive(p)
            })
            .collect();
        children.sort_by_key(|s| s.pid.load(Relaxed));
        children
    }
}

/// A connection authenticated this recently counts as live even if in use:
/// a node whose connections are all busy keeps dialling replacements.
pub const RECENT_ACCEPT_MS: u64 = 2000;

/// Milliseconds of the monotonic clock all children share (a wall-clock
/// step must not make old stamps look recent).
pub fn now_ms() -> u64 {
    os::monotonic_ms()
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
            let at = n.last_accept_ms.load(Relaxed);
            // A stamp from the future is no sign of life (it cannot happen
            // with the monotonic clock; it did with the wall clock after a step back).
            let recent = at != 0 && at <= now && now - at <= RECENT_ACCEPT_MS;
            n.idle.load(Relaxed).max(0) + recent as i64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_past_accept_counts_as_live() {
        let s = Slot::default();
        let n = &s.nodes[0];
        assert_eq!(live(&[&s], 0), 0);
        n.last_accept_ms.store(now_ms(), Relaxed);
        assert_eq!(live(&[&s], 0), 1);
        // A stamp ahead of the clock (what a wall-clock step back made of every
        // older stamp) is no sign of life.
        n.last_accept_ms.store(now_ms() + 60_000, Relaxed);
        assert_eq!(live(&[&s], 0), 0);
        n.last_accept_ms.store(now_ms().saturating_sub(RECENT_ACCEPT_MS + 1000), Relaxed);
        assert_eq!(live(&[&s], 0), 0);
        n.idle.store(3, Relaxed);
        assert_eq!(live(&[&s], 0), 3);
    }
}
