//! The status handler, read as JSON.
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

/// JSON as the status handler writes it (serde_json).
pub type Json = serde_json::Value;

// ---------------------------------------------------------------------------
// Status handler
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub node: String,
    pub bound: bool,
    pub port: Option<u16>,
    pub idle: u64,
    pub busy: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub retired: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChildStatus {
    pub pid: i64,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub children: Vec<ChildStatus>,
}

impl Status {
    pub fn nodes<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (i64, &'a NodeStatus)> + 'a {
        self.children.iter().flat_map(move |c| c.nodes.iter().filter(move |n| n.node == node).map(move |n| (c.pid, n)))
    }
    pub fn idle(&self, node: &str) -> u64 {
        self.nodes(node).map(|(_, n)| n.idle).sum()
    }
    pub fn accepted(&self, node: &str) -> u64 {
        self.nodes(node).map(|(_, n)| n.accepted).sum()
    }
    pub fn rejected(&self, node: &str) -> u64 {
        self.nodes(node).map(|(_, n)| n.rejected).sum()
    }
    /// Ports bound for `node`, one per child that has one.
    pub fn ports(&self, node: &str) -> Vec<u16> {
        let mut v: Vec<u16> = self.nodes(node).filter(|(_, n)| n.bound).filter_map(|(_, n)| n.port).collect();
        v.sort();
        v
    }
    pub fn pids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.children.iter().map(|c| c.pid).collect();
        v.sort();
        v
    }
    /// Every child has at least one idle connection for each of `nodes`.
    pub fn all_children_idle(&self, nodes: &[&str]) -> bool {
        !self.children.is_empty()
            && self
                .children
                .iter()
                .all(|c| nodes.iter().all(|nn| c.nodes.iter().any(|n| &n.node == nn && n.bound && n.idle > 0)))
    }
}

/// GET /reversed-status?json and parse it.
pub fn status_json(h: &Httpd) -> Result<Status, String> {
    let r = get_with(&client(Duration::from_secs(5)), &h.url("/reversed-status?json"))?;
    if r.status != 200 {
        return Err(format!("status handler answered {}: {}", r.status, r.text()));
    }
    parse_status(&r.text())
}

pub fn parse_status(text: &str) -> Result<Status, String> {
    let j: Json = serde_json::from_str(text).map_err(|e| format!("bad JSON from the status handler ({e}): {text}"))?;
    let children =
        j.get("children").and_then(Json::as_array).ok_or_else(|| format!("no \"children\" array in {text}"))?;
    let mut out = Vec::new();
    for c in children {
        let pid = c.get("pid").and_then(Json::as_i64).ok_or("child without pid")?;
        let mut nodes = Vec::new();
        for n in c.get("nodes").and_then(Json::as_array).ok_or("child without nodes")? {
            let num = |k: &str| -> Result<u64, String> {
                n.get(k)
                    .and_then(Json::as_i64)
                    .map(|v| v as u64)
                    .ok_or_else(|| format!("node entry without numeric {k:?}: {text}"))
            };
            nodes.push(NodeStatus {
                node: n.get("node").and_then(Json::as_str).ok_or("node entry without name")?.to_string(),
                bound: n.get("bound").and_then(Json::as_bool).ok_or("node entry without bound")?,
                port: n.get("port").and_then(Json::as_i64).map(|p| p as u16),
                idle: num("idle")?,
                busy: num("busy")?,
                accepted: num("accepted")?,
                rejected: num("rejected")?,
                retired: num("retired")?,
            });
        }
        out.push(ChildStatus { pid, nodes });
    }
    Ok(Status { children: out })
}
