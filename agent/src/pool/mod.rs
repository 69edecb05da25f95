//! Pool keeping: per front end, keep `idle` authenticated idle connections
//! spread over the ports of its range, replace them as they get used or closed,
//! and back off ports that fail.
//!
//! - `frontend`: a front end and its port range (`--frontend`).
//! - `tcp`: the TCP options of every link (`--keepalive`, `--user-timeout`).
//! - `keeper`: one task per front end: the ports' bookkeeping, backoff and fill.
//! - `link`: one task per link: dial, handshake, idle wait answering PINGs,
//!   then splice or respond.
//!
//! This file holds what they share: the agent's settings, the busy count, and
//! the events a link task reports to its keeper.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::responder;

mod frontend;
mod keeper;
mod link;
mod tcp;
#[cfg(test)]
mod testutil;

pub use frontend::FrontEnd;
pub use keeper::{run_frontend, run_frontend_watch};
pub use tcp::TcpOpts;

/// What to do with a connection once httpd writes a request into it.
#[derive(Debug, Clone)]
pub enum Mode {
    Splice { backend: String },
    Respond(responder::Config),
}

/// Counts connections carrying requests, for graceful shutdown, and the
/// requests in flight among them, for the MCMP Load.
#[derive(Default)]
pub struct Busy {
    n: AtomicUsize,
    zero: Notify,
    /// Spliced links whose last bytes went from httpd to the backend: a
    /// request (or its body) was sent and its response has not begun. A link
    /// mod_proxy keeps between requests (AJP reuse, HTTP keep-alive) is busy
    /// but carries no request in flight.
    inflight: AtomicUsize,
}

/// The request-in-flight state of one spliced link (see `Busy::inflight`).
pub struct Flight<'a> {
    busy: &'a Busy,
    on: std::sync::atomic::AtomicBool,
}

impl Flight<'_> {
    /// httpd wrote request bytes: a request is in flight.
    pub fn request(&self) {
        if !self.on.swap(true, Ordering::AcqRel) {
            self.busy.inflight.fetch_add(1, Ordering::AcqRel);
        }
    }
    /// The backend answered: its response began.
    pub fn response(&self) {
        if self.on.swap(false, Ordering::AcqRel) {
            self.busy.inflight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.response();
    }
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
    /// Requests in flight: sent by httpd, their response not begun.
    pub fn in_flight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }
    pub fn flight(&self) -> Flight<'_> {
        Flight { busy: self, on: std::sync::atomic::AtomicBool::new(false) }
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
    pub metrics: Arc<crate::metrics::Metrics>,
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

/// Resolves when shutdown begins (or its sender is gone).
pub async fn shutdown_begun(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
