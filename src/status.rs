//! The status page (`SetHandler proxy-reversed-status`): plain text, or JSON
//! (serde_json) with `?json`. One row per live child and node, read from the
//! shared table once per page (one liveness check per slot, whatever the
//! number of nodes), plus the nodes registered through MCMP.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use crate::child::Child;
use crate::config::PortRange;
use crate::registry;
use crate::stats::{self, Slot};

/// The page for `child`'s view of its generation.
pub fn render(child: &Child, json: bool) -> String {
    child.with_children(|slots| if json { render_json(child, slots) } else { render_text(child, slots) })
}

fn registered(child: &Child) -> Vec<(usize, registry::Entry)> {
    match child.registry() {
        Some(reg) => reg.entries().into_iter().filter(|(_, e)| e.state == registry::ACTIVE).collect(),
        None => Vec::new(),
    }
}

fn range_of(e: &registry::Entry) -> PortRange {
    PortRange { addr: e.addr, first: e.port, last: e.last_port() }
}

fn render_json(child: &Child, slots: &[&Slot]) -> String {
    let nodes: Vec<_> = (0..child.node_count()).filter_map(|i| child.active(i).map(|n| (i, n))).collect();
    let children: Vec<Value> = slots
        .iter()
        .map(|s| {
            let rows: Vec<Value> = nodes
                .iter()
                .map(|(i, node)| {
                    let st = &s.nodes[*i];
                    json!({
                        "node": node.name,
                        "worker": node.worker_url,
                        "range": node.range.to_string(),
                        "bound": st.bound.load(Relaxed) != 0,
                        "port": st.port.load(Relaxed),
                        "idle": st.idle.load(Relaxed).max(0),
                        "busy": st.busy.load(Relaxed).max(0),
                        "accepted": st.accepted.load(Relaxed),
                        "rejected": st.rejected.load(Relaxed),
                        "retired": st.retired.load(Relaxed),
                        "ping_failed": st.ping_failed.load(Relaxed),
                    })
                })
                .collect();
            json!({ "pid": s.pid.load(Relaxed), "nodes": rows })
        })
        .collect();
    let mut doc = json!({ "children": children });
    if child.registry().is_some() {
        let base = child.registered_base();
        let reg: Vec<Value> = registered(child)
            .iter()
            .map(|(j, e)| {
                let apps: Vec<Value> = e
                    .apps
                    .list
                    .iter()
                    .map(|(st, al, ctx)| json!({ "context": ctx, "state": st.as_str(), "aliases": al }))
                    .collect();
                json!({
                    "node": e.route,
                    "balancer": e.balancer,
                    "worker": e.worker_url(),
                    "range": range_of(e).to_string(),
                    "load": e.load,
                    "live": stats::live(slots, base + j),
                    "contexts": apps,
                })
            })
            .collect();
        doc["registered"] = Value::Array(reg);
    }
    let mut out = doc.to_string();
    out.push('\n');
    out
}

fn render_text(child: &Child, slots: &[&Slot]) -> String {
    let nodes: Vec<_> = (0..child.node_count()).filter_map(|i| child.active(i).map(|n| (i, n))).collect();
    let mut out = format!("mod_proxy_reversed: {} children, {} nodes\n", slots.len(), nodes.len());
    for s in slots {
        for (i, node) in &nodes {
            let st = &s.nodes[*i];
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
    let entries = registered(child);
    if !entries.is_empty() {
        let base = child.registered_base();
        out.push_str(&format!("registered through MCMP: {} nodes\n", entries.len()));
        for (j, e) in &entries {
            out.push_str(&format!(
                "node={} balancer={} worker={} range={} load={} live={}\n",
                e.route,
                e.balancer,
                e.worker_url(),
                range_of(e),
                e.load,
                stats::live(slots, base + j)
            ));
            for (st, al, ctx) in &e.apps.list {
                out.push_str(&format!("  context={} state={} aliases={}\n", ctx, st.as_str(), al.join(",")));
            }
        }
    }
    out
}
