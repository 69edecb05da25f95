//! Per-child, per-node counters in a table shared by all children of one
//! generation, so that the status page of any child shows every child.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    /// Failed handshakes by reason (`Rejection`); their sum is `rejected`.
    pub rejected_by: [AtomicU64; Rejection::ALL.len()],
    /// Retired links by reason (`Retirement`); their sum is `retired`.
    pub retired_by: [AtomicU64; Retirement::ALL.len()],
    /// Requests that found no usable idle link at once and waited.
    pub waited: AtomicU64,
    /// Requests that got no link within the node's wait (answered 503).
    pub unavailable: AtomicU64,
    /// The wait of every request for a link, in `WAIT_BUCKETS_MS` (not
    /// cumulative: a wait counts in the first bucket that holds it; longer
    /// ones only in `wait_count`), their number and their sum.
    pub wait_buckets: [AtomicU64; WAIT_BUCKETS_MS.len()],
    pub wait_count: AtomicU64,
    pub wait_sum_us: AtomicU64,
}

/// Upper bounds of the wait histogram's buckets, milliseconds.
pub const WAIT_BUCKETS_MS: [u64; 12] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// Why a handshake failed (a bounded label set for the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    NotAllowed,
    Timeout,
    Closed,
    Malformed,
    Version,
    WrongNode,
    BadProof,
    PoolFull,
    ShuttingDown,
    Error,
}

impl Rejection {
    pub const ALL: [Rejection; 10] = [
        Rejection::NotAllowed,
        Rejection::Timeout,
        Rejection::Closed,
        Rejection::Malformed,
        Rejection::Version,
        Rejection::WrongNode,
        Rejection::BadProof,
        Rejection::PoolFull,
        Rejection::ShuttingDown,
        Rejection::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::NotAllowed => "not_allowed",
            Rejection::Timeout => "timeout",
            Rejection::Closed => "closed",
            Rejection::Malformed => "malformed",
            Rejection::Version => "version",
            Rejection::WrongNode => "wrong_node",
            Rejection::BadProof => "bad_proof",
            Rejection::PoolFull => "pool_full",
            Rejection::ShuttingDown => "shutting_down",
            Rejection::Error => "error",
        }
    }
}

/// Why a link left service (a bounded label set for the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retirement {
    /// mod_proxy closed it after one or more requests.
    AfterUse,
    /// A PING (periodic, or the check before use) got no PONG in time.
    PingFailed,
    /// The dialer closed it while it was idle.
    DialerClosed,
    /// The dialer sent something else than a PONG while it was idle.
    Protocol,
    /// A socket error.
    Error,
    /// Its node was removed (MCMP REMOVE-APP).
    NodeRemoved,
}

impl Retirement {
    pub const ALL: [Retirement; 6] = [
        Retirement::AfterUse,
        Retirement::PingFailed,
        Retirement::DialerClosed,
        Retirement::Protocol,
        Retirement::Error,
        Retirement::NodeRemoved,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Retirement::AfterUse => "after_use",
            Retirement::PingFailed => "ping_failed",
            Retirement::DialerClosed => "dialer_closed",
            Retirement::Protocol => "protocol",
            Retirement::Error => "error",
            Retirement::NodeRemoved => "node_removed",
        }
    }
}

crate::zero_shareable!(Slot);

impl NodeStats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// A handshake failed.
    pub fn reject(&self, why: Rejection) {
        Self::inc(&self.rejected);
        Self::inc(&self.rejected_by[why as usize]);
    }

    /// A link left service (idle or used).
    pub fn retire(&self, why: Retirement) {
        Self::inc(&self.retired);
        Self::inc(&self.retired_by[why as usize]);
        if why == Retirement::PingFailed {
            Self::inc(&self.ping_failed);
        }
    }

    /// A request waited `d` for a link (got one or not).
    pub fn observe_wait(&self, d: Duration) {
        let us = d.as_micros();
        if let Some(b) = WAIT_BUCKETS_MS.iter().position(|&le| us <= le as u128 * 1000) {
            Self::inc(&self.wait_buckets[b]);
        }
        Self::inc(&self.wait_count);
        self.wait_sum_us.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Every counter and gauge but `busy` back to zero (a new process in the
    /// slot, a removed node whose used links may still finish).
    pub fn reset(&self) {
        for c in [&self.accepted, &self.rejected, &self.retired, &self.ping_failed, &self.last_accept_ms] {
            c.store(0, Relaxed);
        }
        for c in [&self.waited, &self.unavailable, &self.wait_count, &self.wait_sum_us] {
            c.store(0, Relaxed);
        }
        for c in self.rejected_by.iter().chain(&self.retired_by).chain(&self.wait_buckets) {
            c.store(0, Relaxed);
        }
        self.idle.store(0, Relaxed);
        self.port.store(0, Relaxed);
        self.bound.store(0, Relaxed);
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
        Slot {
            pid: AtomicI32::new(0),
            _reserved: AtomicU32::new(0),
            nodes: std::array::from_fn(|_| NodeStats::default()),
        }
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
                        n.reset();
                        n.busy.store(0, Relaxed);
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

    #[test]
    fn reasons_add_up_and_waits_land_in_their_bucket() {
        let s = Slot::default();
        let n = &s.nodes[0];
        n.retire(Retirement::PingFailed);
        n.retire(Retirement::AfterUse);
        n.reject(Rejection::BadProof);
        assert_eq!((n.retired.load(Relaxed), n.ping_failed.load(Relaxed), n.rejected.load(Relaxed)), (2, 1, 1));
        assert_eq!(n.retired_by[Retirement::AfterUse as usize].load(Relaxed), 1);
        assert_eq!(n.rejected_by[Rejection::BadProof as usize].load(Relaxed), 1);
        n.observe_wait(Duration::from_micros(300));
        n.observe_wait(Duration::from_millis(30));
        n.observe_wait(Duration::from_secs(20));
        // On a bound it belongs to that bucket; just above, to the next.
        n.observe_wait(Duration::from_millis(5));
        n.observe_wait(Duration::from_micros(5001));
        let b: Vec<u64> = n.wait_buckets.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(b, [1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(n.wait_count.load(Relaxed), 5);
        assert_eq!(n.wait_sum_us.load(Relaxed), 20_040_301);
        n.reset();
        assert_eq!((n.retired.load(Relaxed), n.wait_count.load(Relaxed)), (0, 0));
    }
}
