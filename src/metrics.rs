//! The status page's `?metrics`: Prometheus text exposition (version 0.0.4)
//! through the `prometheus-client` crate. One series per node (and reason),
//! summed over every live child of the generation: no per-process or
//! per-connection labels. The numbers are read once from the shared table
//! into a snapshot, which a `Collector` then encodes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::child::Child;
use crate::registry;
use crate::stats::{self, Rejection, Retirement, Slot, WAIT_BUCKETS_MS};

/// One node's numbers summed over the children (also mod_status's table).
#[derive(Debug, Default)]
pub(crate) struct NodeSnap {
    pub name: String,
    pub worker: String,
    pub range: String,
    pub bound_children: u64,
    pub idle: i64,
    pub busy: i64,
    pub accepted: u64,
    pub rejected_by: [u64; Rejection::ALL.len()],
    pub retired_by: [u64; Retirement::ALL.len()],
    pub ping_failed: u64,
    pub waited: u64,
    pub unavailable: u64,
    pub wait_buckets: [u64; WAIT_BUCKETS_MS.len()],
    pub wait_count: u64,
    pub wait_sum_us: u64,
}

impl NodeSnap {
    pub fn rejected(&self) -> u64 {
        self.rejected_by.iter().sum()
    }
    pub fn retired(&self) -> u64 {
        self.retired_by.iter().sum()
    }
}

/// A per-node series: name, help, how to read it from a node's snapshot.
type PerNode<T> = (&'static str, &'static str, fn(&NodeSnap) -> T);

#[derive(Debug)]
struct Registered {
    node: String,
    balancer: String,
    load: i64,
    live: i64,
}

#[derive(Debug)]
struct Snapshot {
    children: u64,
    nodes: Vec<NodeSnap>,
    registered: Vec<Registered>,
}

fn add(to: &mut [u64], from: &[AtomicU64]) {
    for (t, f) in to.iter_mut().zip(from) {
        *t += f.load(Relaxed);
    }
}

/// Every active node's numbers, summed over `slots`.
pub(crate) fn node_totals(child: &Child, slots: &[&Slot]) -> Vec<NodeSnap> {
    let mut nodes = Vec::new();
    for i in 0..child.node_count() {
        let Some(node) = child.active(i) else { continue };
        let mut n = NodeSnap {
            name: node.name.clone(),
            worker: node.worker_url.clone(),
            range: node.range.to_string(),
            ..NodeSnap::default()
        };
        for s in slots {
            let st = &s.nodes[i];
            n.bound_children += (st.bound.load(Relaxed) != 0) as u64;
            n.idle += st.idle.load(Relaxed).max(0);
            n.busy += st.busy.load(Relaxed).max(0);
            n.accepted += st.accepted.load(Relaxed);
            n.ping_failed += st.ping_failed.load(Relaxed);
            n.waited += st.waited.load(Relaxed);
            n.unavailable += st.unavailable.load(Relaxed);
            n.wait_count += st.wait_count.load(Relaxed);
            n.wait_sum_us += st.wait_sum_us.load(Relaxed);
            add(&mut n.rejected_by, &st.rejected_by);
            add(&mut n.retired_by, &st.retired_by);
            add(&mut n.wait_buckets, &st.wait_buckets);
        }
        nodes.push(n);
    }
    nodes
}

fn snapshot(child: &Child, slots: &[&Slot]) -> Snapshot {
    let nodes = node_totals(child, slots);
    let mut registered = Vec::new();
    if let Some(reg) = child.registry() {
        let base = child.registered_base();
        for (j, e) in reg.entries() {
            if e.state == registry::ACTIVE {
                registered.push(Registered {
                    node: e.route.clone(),
                    balancer: e.balancer.clone(),
                    load: e.load as i64,
                    live: stats::live(slots, base + j),
                });
            }
        }
    }
    Snapshot { children: slots.len() as u64, nodes, registered }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = MetricType::Gauge;
        let counter = MetricType::Counter;

        let mut m = enc.encode_descriptor("build", "Version of the module", None, MetricType::Info)?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;

        let mut m = enc.encode_descriptor("children", "httpd children whose counters are summed here", None, gauge)?;
        m.encode_gauge(&self.children)?;

        let per_node_gauges: [PerNode<i64>; 3] = [
            ("idle_connections_current", "Idle authenticated links waiting for a request", |n| n.idle),
            ("used_connections_current", "Links handed to mod_proxy and still open", |n| n.busy),
            ("bound_children", "Children that have bound a port of the node", |n| n.bound_children as i64),
        ];
        for (name, help, get) in per_node_gauges {
            let mut m = enc.encode_descriptor(name, help, None, gauge)?;
            for n in &self.nodes {
                m.encode_family(&[("node", n.name.as_str())])?.encode_gauge(&get(n))?;
            }
        }

        let mut m =
            enc.encode_descriptor("handshakes", "Handshakes of dialers, by result and reason", None, counter)?;
        for n in &self.nodes {
            let ok = [("node", n.name.as_str()), ("result", "accepted"), ("reason", "ok")];
            m.encode_family(&ok)?.encode_counter::<NoLabelSet, _, u64>(&n.accepted, None)?;
            for (r, v) in Rejection::ALL.iter().zip(&n.rejected_by) {
                let l = [("node", n.name.as_str()), ("result", "rejected"), ("reason", r.label())];
                m.encode_family(&l)?.encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
        }

        let mut m =
            enc.encode_descriptor("connections_retired", "Links taken out of service, by reason", None, counter)?;
        for n in &self.nodes {
            for (r, v) in Retirement::ALL.iter().zip(&n.retired_by) {
                let l = [("node", n.name.as_str()), ("reason", r.label())];
                m.encode_family(&l)?.encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
        }

        let per_node_counters: [PerNode<u64>; 3] = [
            ("ping_failures", "Idle links whose PING got no PONG in time (periodic or before use)", |n| n.ping_failed),
            ("requests_waited", "Requests that found no usable idle link at once and waited for one", |n| n.waited),
            ("requests_unavailable", "Requests answered 503 because no link came within the node's wait", |n| {
                n.unavailable
            }),
        ];
        for (name, help, get) in per_node_counters {
            let mut m = enc.encode_descriptor(name, help, None, counter)?;
            for n in &self.nodes {
                m.encode_family(&[("node", n.name.as_str())])?.encode_counter::<NoLabelSet, _, u64>(&get(n), None)?;
            }
        }

        let mut m = enc.encode_descriptor(
            "connection_wait",
            "Time requests spent getting a link (including the check before use), successful or not",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for n in &self.nodes {
            let buckets: Vec<(f64, u64)> =
                WAIT_BUCKETS_MS.iter().zip(&n.wait_buckets).map(|(le, c)| (*le as f64 / 1000.0, *c)).collect();
            m.encode_family(&[("node", n.name.as_str())])?.encode_histogram::<NoLabelSet>(
                n.wait_sum_us as f64 / 1e6,
                n.wait_count,
                &buckets,
                None,
            )?;
        }

        if !self.registered.is_empty() {
            let mut m = enc.encode_descriptor(
                "mcmp_node_load",
                "Load a node registered through MCMP last reported",
                None,
                gauge,
            )?;
            for r in &self.registered {
                m.encode_family(&[("node", r.node.as_str()), ("balancer", r.balancer.as_str())])?
                    .encode_gauge(&r.load)?;
            }
            let mut m = enc.encode_descriptor(
                "mcmp_node_live_connections",
                "Live links of a node registered through MCMP",
                None,
                gauge,
            )?;
            for r in &self.registered {
                m.encode_family(&[("node", r.node.as_str()), ("balancer", r.balancer.as_str())])?
                    .encode_gauge(&r.live)?;
            }
        }
        Ok(())
    }
}

/// The exposition for `child`'s view of its generation.
pub fn render(child: &Child) -> String {
    let snap = child.with_children(|slots| snapshot(child, slots));
    let mut reg = Registry::with_prefix("proxy_reversed");
    reg.register_collector(Box::new(snap));
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shim_sends_the_crates_content_type() {
        let shim = include_str!("../c-shim/mod_proxy_reversed.c");
        let ct = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
        assert!(shim.contains(&format!("\"{ct}\"")), "c-shim/mod_proxy_reversed.c does not send {ct}");
    }
}
