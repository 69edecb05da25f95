//! Reversed nodes of a test configuration.
#![allow(dead_code, unused_imports)]

use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Reversed nodes
// ---------------------------------------------------------------------------

/// Event MPM settings for tests that need exactly one child (one port, one pool).
pub const ONE_EVENT_CHILD: &str =
    "StartServers 1\nServerLimit 1\nThreadLimit 16\nThreadsPerChild 16\nMaxRequestWorkers 16\n\
     MinSpareThreads 1\nMaxSpareThreads 16\n";

pub const STATUS_LOCATION: &str =
    "<Location \"/reversed-status\">\n    SetHandler proxy-reversed-status\n</Location>\n";

/// One reversed node: a ProxyPass of `/<name>/` to a sentinel worker URL
/// (`<scheme>://<sentinel>/`, never dialled) and a range of `nports` free
/// ports on 127.0.0.1 that the agent dials.
#[derive(Clone, Debug)]
pub struct RNode {
    pub name: String,
    pub scheme: &'static str,
    pub url: String,
    pub first: u16,
    pub last: u16,
}

impl RNode {
    pub fn new(name: &str, scheme: &'static str, sentinel: &str, nports: u16) -> RNode {
        let first = free_ports(nports);
        RNode { name: name.into(), scheme, url: format!("{scheme}://{sentinel}/"), first, last: first + nports - 1 }
    }
    /// "127.0.0.1:first-last"
    pub fn range(&self) -> String {
        format!("127.0.0.1:{}-{}", self.first, self.last)
    }
    pub fn prefix(&self) -> String {
        format!("/{}/", self.name)
    }
    /// ProxyPass + ProxyReversed lines; `opts` are appended to ProxyReversed
    /// (e.g. "secret=/x wait=1s").
    pub fn conf(&self, opts: &str) -> String {
        format!(
            "ProxyPass \"{}\" \"{}\"\nProxyReversed {} \"{}\" {} {}\n",
            self.prefix(),
            self.url,
            self.name,
            self.url,
            self.range(),
            opts
        )
    }
    pub fn url_on(&self, h: &Httpd, path: &str) -> String {
        h.url(&format!("/{}/{}", self.name, path.trim_start_matches('/')))
    }
    /// The X-Responder header value the agent's built-in responder sets.
    pub fn responder(&self) -> &'static str {
        self.scheme
    }
}

/// Waits (bounded) until every live child of `h` shows an idle,
/// authenticated connection for each of `nodes`; panics with the last
/// status seen otherwise.
pub fn wait_all_idle(h: &Httpd, nodes: &[&str], timeout: Duration) -> Status {
    let mut last = Err("no status fetched".to_string());
    let ok = wait_until(timeout, || {
        last = status_json(h);
        matches!(&last, Ok(s) if s.all_children_idle(nodes))
    });
    assert!(ok, "not every child got idle connections for {nodes:?} within {timeout:?}; last status: {last:?}");
    last.unwrap()
}

/// Waits (bounded) until the status shows idle connections for each of
/// `nodes` in at least one child.
pub fn wait_some_idle(h: &Httpd, nodes: &[&str], timeout: Duration) -> Status {
    let mut last = Err("no status fetched".to_string());
    let ok = wait_until(timeout, || {
        last = status_json(h);
        matches!(&last, Ok(s) if nodes.iter().all(|n| s.idle(n) > 0))
    });
    assert!(ok, "no idle connections for {nodes:?} within {timeout:?}; last status: {last:?}");
    last.unwrap()
}

/// Asserts a successful answer from the agent's built-in responder for
/// `node` (status 200, X-Responder naming the node's protocol).
pub fn assert_served(node: &RNode, r: &Result<Resp, String>, what: &str) {
    match r {
        Ok(r) => {
            assert_eq!(r.status, 200, "{what}: status {} body {:?}", r.status, r.text());
            assert_eq!(
                r.header("X-Responder"),
                Some(node.responder()),
                "{what}: not answered by the {} responder (headers {:?})",
                node.responder(),
                r.headers
            );
        }
        Err(e) => panic!("{what}: transport error: {e}"),
    }
}
