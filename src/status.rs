//! The status page (`SetHandler proxy-reversed-status`): plain text, or JSON
//! (serde_json) with `?json`. One row per live child and node, read from the
//! shared table once per page (one liveness check per slot, whatever the
//! number of nodes), plus the nodes registered through MCMP. Also the
//! section this module adds to mod_status's /server-status.

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

/// The HTML page: readable without JavaScript; `refresh_s` > 0 reloads it
/// every that many seconds (a meta refresh, as balancer-manager pages do).
pub fn render_html(child: &Child, refresh_s: u32) -> String {
    child.with_children(|slots| html(child, slots, refresh_s))
}

fn html(child: &Child, slots: &[&Slot], refresh_s: u32) -> String {
    let nodes: Vec<_> = (0..child.node_count()).filter_map(|i| child.active(i).map(|n| (i, n))).collect();
    let totals = crate::metrics::node_totals(child, slots);
    let mut o = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    if refresh_s > 0 {
        o.push_str(&format!("<meta http-equiv=\"refresh\" content=\"{refresh_s}\">\n"));
    }
    o.push_str(
        "<title>mod_proxy_reversed status</title>\n<style>\n\
         body{font-family:sans-serif;margin:1em 2em;color:#222}\n\
         table{border-collapse:collapse;margin:.5em 0 1.5em}\n\
         th,td{border:1px solid #999;padding:.2em .6em;text-align:right}\n\
         th{background:#e8e8f0}td.name,th.name{text-align:left}\n\
         tr.unbound td{color:#a00}tr.warn td{background:#fff3f0}\n\
         </style>\n</head>\n<body>\n<h1>mod_proxy_reversed status</h1>\n",
    );
    o.push_str(&format!(
        "<p id=\"summary\">{} children, {} nodes{}. Also as <a href=\"?json\">JSON</a>, <a href=\"?metrics\">Prometheus metrics</a>, <a href=\"?text\">text</a>.</p>\n",
        slots.len(),
        nodes.len(),
        if refresh_s > 0 { format!("; this page reloads every {refresh_s} s") } else { String::new() }
    ));
    o.push_str("<h2>Nodes</h2>\n<table id=\"nodes\">\n<tr><th class=\"name\">node</th><th class=\"name\">worker</th><th class=\"name\">range</th><th>children bound</th><th>idle</th><th>busy</th><th>accepted</th><th>rejected</th><th>retired</th><th>ping failed</th><th>waited</th><th>503</th></tr>\n");
    for n in &totals {
        let cls = if n.idle == 0 { " class=\"warn\"" } else { "" };
        let cells =
            td_cells(&node_cells(n), &["name", "name", "name", "", "idle", "busy", "", "", "", "", "", "unavailable"]);
        o.push_str(&format!("<tr{cls} data-node=\"{}\">{cells}</tr>\n", escape_html(&n.name)));
    }
    o.push_str("</table>\n<h2>Per child</h2>\n<table id=\"children\">\n<tr><th>pid</th><th class=\"name\">node</th><th>port</th><th>idle</th><th>busy</th><th>accepted</th><th>rejected</th><th>retired</th><th>ping failed</th></tr>\n");
    for s in slots {
        for (i, node) in &nodes {
            let st = &s.nodes[*i];
            let bound = st.bound.load(Relaxed) != 0;
            o.push_str(&format!(
                "<tr{}><td>{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                if bound { "" } else { " class=\"unbound\"" },
                s.pid.load(Relaxed),
                escape_html(&node.name),
                if bound { st.port.load(Relaxed).to_string() } else { "unbound".into() },
                st.idle.load(Relaxed).max(0),
                st.busy.load(Relaxed).max(0),
                st.accepted.load(Relaxed),
                st.rejected.load(Relaxed),
                st.retired.load(Relaxed),
                st.ping_failed.load(Relaxed),
            ));
        }
    }
    o.push_str("</table>\n");
    let entries = registered(child);
    if child.registry().is_some() {
        let base = child.registered_base();
        o.push_str("<h2>Registered through MCMP</h2>\n<table id=\"registered\">\n<tr><th class=\"name\">node</th><th class=\"name\">balancer</th><th class=\"name\">worker</th><th class=\"name\">range</th><th>load</th><th>live</th><th class=\"name\">contexts</th></tr>\n");
        for (j, e) in &entries {
            let ctx: Vec<String> = e
                .apps
                .list
                .iter()
                .map(|(st, al, c)| format!("{} ({}; {})", escape_html(c), st.as_str(), escape_html(&al.join(", "))))
                .collect();
            o.push_str(&format!(
                "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td class=\"name\">{}</td></tr>\n",
                escape_html(&e.route),
                escape_html(&e.balancer),
                escape_html(&e.worker_url()),
                range_of(e),
                e.load,
                stats::live(slots, base + j),
                ctx.join("<br>")
            ));
        }
        o.push_str("</table>\n");
    }
    o.push_str("</body>\n</html>\n");
    o
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

/// Text for HTML, with the five characters that matter escaped.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// mod_status's section (ExtendedStatus On): `short` gives the `?auto` lines,
/// in mod_proxy's indexed style (`ProxyReversedNode[0]Name: app1`), else an
/// HTML table, one row per node summed over the children.
pub fn mod_status(child: &Child, short: bool) -> String {
    let nodes = child.with_children(|slots| crate::metrics::node_totals(child, slots));
    let mut out = String::new();
    if short {
        out.push_str(&format!("ProxyReversedNodes: {}\n", nodes.len()));
        for (i, n) in nodes.iter().enumerate() {
            let p = format!("ProxyReversedNode[{i}]");
            for (k, v) in [
                ("Name", n.name.clone()),
                ("Worker", n.worker.clone()),
                ("Range", n.range.clone()),
                ("BoundChildren", n.bound_children.to_string()),
                ("Idle", n.idle.to_string()),
                ("Busy", n.busy.to_string()),
                ("Accepted", n.accepted.to_string()),
                ("Rejected", n.rejected().to_string()),
                ("Retired", n.retired().to_string()),
                ("PingFailed", n.ping_failed.to_string()),
                ("Waited", n.waited.to_string()),
                ("Unavailable", n.unavailable.to_string()),
            ] {
                out.push_str(&format!("{p}{k}: {v}\n"));
            }
        }
        return out;
    }
    out.push_str("<hr />\n<h2 id=\"proxy-reversed\">Reversed links (mod_proxy_reversed)</h2>\n");
    if nodes.is_empty() {
        out.push_str("<p>No reversed nodes.</p>\n");
        return out;
    }
    out.push_str(
        "<table border=\"1\" class=\"proxy-reversed\">\n<tr><th>Node</th><th>Worker</th><th>Range</th>\
         <th>Children bound</th><th>Idle</th><th>Busy</th><th>Accepted</th><th>Rejected</th>\
         <th>Retired</th><th>Ping failed</th><th>Waited</th><th>503</th></tr>\n",
    );
    for n in &nodes {
        out.push_str(&format!("<tr>{}</tr>\n", td_cells(&node_cells(n), &[])));
    }
    out.push_str("</table>\n");
    out
}

/// A node's values in the column order of both HTML tables (the status page's
/// and mod_status's): node, worker, range, children bound, idle, busy,
/// accepted, rejected, retired, ping failed, waited, 503. Escaped.
fn node_cells(n: &crate::metrics::NodeSnap) -> [String; 12] {
    [
        escape_html(&n.name),
        escape_html(&n.worker),
        escape_html(&n.range),
        n.bound_children.to_string(),
        n.idle.to_string(),
        n.busy.to_string(),
        n.accepted.to_string(),
        n.rejected().to_string(),
        n.retired().to_string(),
        n.ping_failed.to_string(),
        n.waited.to_string(),
        n.unavailable.to_string(),
    ]
}

/// `<td>` cells; a non-empty `classes[i]` becomes cell i's class.
fn td_cells(cells: &[String], classes: &[&str]) -> String {
    cells
        .iter()
        .enumerate()
        .map(|(i, c)| match classes.get(i) {
            Some(k) if !k.is_empty() => format!("<td class=\"{k}\">{c}</td>"),
            _ => format!("<td>{c}</td>"),
        })
        .collect()
}
