//! The standalone MCMP receiver (`SetHandler proxy-reversed-mcmp`): registers
//! reversed nodes at run time, keeps their contexts and load, and answers
//! STATUS/PING from the node's live reversed connections. The wire format is
//! `reversed_proto::mcmp`; the C shim reads the body, writes the reply, and
//! adds the node's worker to its balancer when told to (`Join`).

use std::net::{IpAddr, Ipv4Addr};

use reversed_proto::mcmp::{self, AppMsg, Command, Error, NodeInfo, PingMsg};

use crate::api;
use crate::child::Child;
use crate::config::{McmpCfg, PortRange};
use crate::log;
use crate::registry::{AppState, Apps, Entry, Kind, RegisterError, Registered, Registry, ACTIVE};

/// What the shim must do in mod_proxy_balancer after the reply was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    None,
    /// Make the worker a member of the balancer (or enable it again), with this route.
    Add {
        node: usize,
        new: bool,
        balancer: String,
        worker: String,
        route: String,
    },
    /// Disable the member: the node was removed.
    Disable {
        node: usize,
        balancer: String,
        worker: String,
        route: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200, or 500 with `error`.
    pub status: u16,
    pub body: String,
    pub error: Option<Error>,
    pub join: Join,
}

impl Reply {
    fn ok(body: String) -> Reply {
        Reply { status: 200, body, error: None, join: Join::None }
    }
    fn err(e: Error) -> Reply {
        Reply { status: 500, body: String::new(), error: Some(e), join: Join::None }
    }
}

fn general(msg: String) -> Error {
    Error::general(format!("GENERAL: {msg}"))
}

/// Handles one MCMP request in this child. `id` is what mod_manager reports
/// as `id=` (the scoreboard's restart time).
pub fn handle(method: &str, uri: &str, body: &[u8], id: i64) -> Reply {
    let Some(child) = api::child() else {
        return Reply::err(general(
            "this httpd child serves no reversed nodes (ProxyReversedMCMP is not configured)".into(),
        ));
    };
    let (Some(cfg), Some(reg)) = (child.cfg.mcmp.as_ref(), child.registry()) else {
        return Reply::err(general("ProxyReversedMCMP is not configured: nodes cannot register".into()));
    };
    let Some(cmd) = Command::from_method(method) else {
        return Reply::err(Error::command_not_supported());
    };
    let r = Receiver { child, cfg, reg: &reg, id };
    let reply = match cmd {
        Command::Config => r.config(body),
        Command::EnableApp | Command::DisableApp | Command::StopApp | Command::RemoveApp => {
            r.app(cmd, body, mcmp::is_whole_node(uri))
        }
        Command::Status => r.status(body),
        Command::Ping => r.ping(body),
        Command::Info => Ok(Reply::ok(mcmp::info_text(&r.infos()))),
        Command::Dump => Ok(Reply::ok(mcmp::dump_text(&r.infos()))),
        Command::Version => Ok(Reply::ok(mcmp::version_rsp(concat!("mod_proxy_reversed/", env!("CARGO_PKG_VERSION"))))),
    };
    let reply = reply.unwrap_or_else(Reply::err);
    if let Some(e) = &reply.error {
        log::warn(26, &format!("MCMP {method} refused: {}", e.mess));
    }
    reply
}

/// The balancer member of a just-registered node could not be made: the
/// registration is undone (unless it existed before) and the sender told why.
pub fn join_failed(node: usize, new: bool, why: &str) -> Reply {
    if new {
        if let (Some(child), Some(reg)) = (api::child(), api::registry()) {
            if let Some(j) = node.checked_sub(child.registered_base()) {
                reg.forget(j);
                child.refresh();
            }
        }
    }
    Reply::err(general(why.to_string()))
}

struct Receiver<'a> {
    child: &'static Child,
    cfg: &'a McmpCfg,
    reg: &'a Registry,
    id: i64,
}

/// The address in a CONFIG's Host: an IP literal (IPv6 in brackets, any
/// `%zone` dropped) or `localhost`.
fn host_addr(host: &str) -> Option<IpAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.split('%').next().unwrap_or(h);
    if h.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    h.parse().ok()
}

impl Receiver<'_> {
    fn find(&self, route: &str) -> Result<(usize, Entry), Error> {
        self.reg.find_route(route).ok_or_else(|| Error::node_not_found(route))
    }

    fn connections(&self, slot: usize) -> i64 {
        self.child.connections(self.child.registered_base() + slot)
    }

    fn config(&self, body: &[u8]) -> Result<Reply, Error> {
        let m = mcmp::parse_config(body)?;
        let route = m.jvm_route.clone();
        if !m.reversed {
            return Err(general(format!(
                "node \"{route}\" is not Reversed: this receiver (mod_proxy_reversed) registers only reversed nodes; forward nodes need mod_cluster (mod_manager and mod_proxy_cluster)"
            )));
        }
        if !reversed_proto::valid_node(route.as_bytes()) {
            return Err(general(format!(
                "JVMRoute \"{route}\" cannot name a reversed node: use 1 to {} characters of A-Z a-z 0-9 . _ -",
                reversed_proto::MAX_NODE_LEN
            )));
        }
        if self.child.cfg.secret_for_route(&route).is_none() {
            return Err(general(format!(
                "no secret is configured for reversed node \"{route}\": set secret= on ProxyReversedMCMP or ProxyReversedNodeSecret {route} <file>"
            )));
        }
        let host = m.host.clone().unwrap_or_else(|| "localhost".into());
        let Some(addr) = host_addr(&host) else {
            return Err(general(format!(
                "Host \"{host}\" is not an IP address: for a reversed node, Host is the address httpd listens on"
            )));
        };
        let port = m.port.unwrap_or(8009);
        let last = port as u32 + self.cfg.ports as u32 - 1;
        let w = &self.cfg.window;
        let addr_ok = w.addr.is_unspecified() || w.addr == addr;
        if !addr_ok || port < w.first || last > w.last as u32 {
            return Err(general(format!(
                "node \"{route}\" asks for {}:{port}-{last}, outside the ports ProxyReversedMCMP allows ({w}, {} per node)",
                match addr {
                    IpAddr::V6(a) => format!("[{a}]"),
                    a => a.to_string(),
                },
                self.cfg.ports
            )));
        }
        let range = PortRange { addr, first: port, last: last as u16 };
        if let Some(n) = self.child.cfg.nodes.iter().find(|n| n.range.overlaps(&range)) {
            return Err(general(format!("the ports {range} of node \"{route}\" overlap those of node '{}'", n.name)));
        }
        let kind_s = m.kind.clone().unwrap_or_else(|| "ajp".into());
        let Some(kind) = Kind::parse(&kind_s) else {
            return Err(general(format!("Type \"{kind_s}\" is not supported for reversed nodes (ajp, http or https)")));
        };
        if self.cfg.tls_required && kind != Kind::Https {
            return Err(general(format!(
                "node \"{route}\" has Type \"{kind_s}\": ProxyReversedMCMP tls=required admits only Type=https \
                 (TLS from httpd to the backend over the reversed link; AJP cannot carry it)"
            )));
        }
        let balancer = m.balancer.clone().map(|b| b.to_ascii_lowercase()).unwrap_or_else(|| self.cfg.balancer.clone());
        let mut apps = Apps::default();
        // Contexts announced by CONFIG wait for ENABLE-APP, as in mod_manager.
        apps.set(&m.aliases, &m.contexts, AppState::Stopped);
        let entry = Entry {
            state: ACTIVE,
            gen: 0,
            route: route.clone(),
            balancer: balancer.clone(),
            host,
            addr,
            port,
            ports: self.cfg.ports,
            kind,
            load: 0,
            apps,
        };
        let worker = entry.worker_url();
        let (slot, new) = match self.reg.register(entry) {
            Ok(Registered::New(j)) => (j, true),
            Ok(Registered::Same(j)) => (j, false),
            Err(RegisterError::Exists) => {
                return Err(Error::node_exists(&route));
            }
            Err(RegisterError::Overlaps(other)) => {
                return Err(general(format!(
                    "the ports {range} of node \"{route}\" overlap those of registered node \"{other}\""
                )));
            }
            Err(RegisterError::Full) => {
                return Err(Error::mem(format!(
                    "MEM: Can't update or insert node with \"{route}\" JVMRoute ({} registered nodes at most: nodes= of ProxyReversedMCMP)",
                    self.cfg.nodes
                )));
            }
            Err(RegisterError::TooLong(what)) => {
                return Err(Error::mem(format!(
                    "MEM: Can't update or insert node with \"{route}\" JVMRoute ({what} too long)"
                )));
            }
        };
        self.child.refresh();
        if new {
            log::info(27, || {
                format!("MCMP: registered reversed node '{route}' ({worker}, ports {range}, balancer {balancer})")
            });
        }
        Ok(Reply {
            status: 200,
            body: String::new(),
            error: None,
            join: Join::Add { node: self.child.registered_base() + slot, new, balancer, worker, route },
        })
    }

    fn app(&self, cmd: Command, body: &[u8], whole: bool) -> Result<Reply, Error> {
        let a: AppMsg = mcmp::parse_app(body, whole)?;
        let (slot, e) = self.find(&a.jvm_route)?;
        let state = match cmd {
            Command::EnableApp => Some(AppState::Enabled),
            Command::DisableApp => Some(AppState::Disabled),
            Command::StopApp => Some(AppState::Stopped),
            _ => None,
        };
        let mut join = Join::None;
        let update = |f: &dyn Fn(&mut Apps)| {
            self.reg.update_apps(slot, |apps| f(apps)).map_err(|_| {
                Error::mem(format!("MEM: Can't update or insert context for node with \"{}\" JVMRoute", a.jvm_route))
            })
        };
        match (state, whole && a.contexts.is_empty()) {
            (Some(st), true) => {
                update(&|apps| apps.set_all(st))?;
            }
            (Some(st), false) => {
                update(&|apps| apps.set(&a.aliases, &a.contexts, st))?;
            }
            (None, true) => {
                self.reg.remove(slot);
                self.child.refresh();
                log::info(28, || format!("MCMP: removed reversed node '{}'", a.jvm_route));
                join = Join::Disable {
                    node: self.child.registered_base() + slot,
                    balancer: e.balancer.clone(),
                    worker: e.worker_url(),
                    route: e.route.clone(),
                };
            }
            (None, false) => {
                update(&|apps| apps.remove(&a.contexts))?;
            }
        }
        let mut reply = Reply::ok(mcmp::app_rsp(cmd, &a.jvm_route, &a.aliases, &a.contexts));
        reply.join = join;
        Ok(reply)
    }

    fn status(&self, body: &[u8]) -> Result<Reply, Error> {
        let s = mcmp::parse_status(body)?;
        let (slot, _) = self.find(&s.jvm_route)?;
        self.reg.set_load(slot, s.load);
        let ok = self.connections(slot) > 0;
        Ok(Reply::ok(mcmp::status_rsp(&s.jvm_route, ok, self.id)))
    }

    fn ping(&self, body: &[u8]) -> Result<Reply, Error> {
        match mcmp::parse_ping(body)? {
            PingMsg::Any => Ok(Reply::ok(mcmp::ping_rsp(None, true, self.id))),
            PingMsg::Route(route) => {
                let (slot, _) = self.find(&route)?;
                Ok(Reply::ok(mcmp::ping_rsp(Some(&route), self.connections(slot) > 0, self.id)))
            }
            PingMsg::Url { scheme, host, port } => {
                // Nothing is dialled: a URL is up if it is a registered
                // node's and that node has live reversed connections.
                let addr = host_addr(&host);
                let ok = self.reg.entries().into_iter().any(|(j, e)| {
                    e.state == ACTIVE
                        && e.kind.as_str().eq_ignore_ascii_case(&scheme)
                        && Some(e.addr) == addr
                        && e.port == port
                        && self.connections(j) > 0
                });
                Ok(Reply::ok(mcmp::ping_rsp(None, ok, self.id)))
            }
        }
    }

    fn infos(&self) -> Vec<NodeInfo> {
        self.reg
            .entries()
            .into_iter()
            .filter(|(_, e)| e.state == ACTIVE)
            .map(|(j, e)| NodeInfo {
                id: j as i32 + 1,
                route: e.route.clone(),
                balancer: e.balancer.clone(),
                domain: String::new(),
                host: e.host.clone(),
                port: e.port,
                kind: e.kind.as_str().to_string(),
                load: e.load,
                contexts: e.apps.list.iter().map(|(st, _, c)| (c.clone(), st.as_str().to_string())).collect(),
                aliases: {
                    let mut al: Vec<String> = Vec::new();
                    for (_, a, _) in &e.apps.list {
                        for x in a {
                            if !al.contains(x) {
                                al.push(x.clone());
                            }
                        }
                    }
                    al
                },
            })
            .collect()
    }
}

/// Beside mod_cluster: mod_manager answers MCMP, and this module only
/// watches the bodies it reads. A CONFIG with `Reversed` (yes/on/true/1)
/// registers the node here too, so that its listeners open and its
/// `Type://Host:Port` worker (which mod_proxy_cluster creates) is served over
/// reversed connections; REMOVE-APP of the whole node removes it; the APP
/// commands keep the contexts for the status page. Everything else, and any
/// message this module would refuse, is left to mod_manager (refusals are logged).
pub fn observe(method: &str, uri: &str, body: &[u8]) {
    let Some(cmd) = Command::from_method(method) else { return };
    match cmd {
        Command::Config => match mcmp::parse_config(body) {
            Ok(m) if m.reversed => {}
            _ => return,
        },
        Command::EnableApp | Command::DisableApp | Command::StopApp | Command::RemoveApp => {
            let Ok(a) = mcmp::parse_app(body, mcmp::is_whole_node(uri)) else { return };
            if api::registry().and_then(|r| r.find_route(&a.jvm_route)).is_none() {
                return;
            }
        }
        Command::Status => {
            // mod_manager answered it; the Load is kept for the status page.
            let (Ok(st), Some(reg)) = (mcmp::parse_status(body), api::registry()) else { return };
            if let Some((slot, _)) = reg.find_route(&st.jvm_route) {
                reg.set_load(slot, st.load);
            }
            return;
        }
        _ => return,
    }
    let reply = handle(method, uri, body, 0);
    if let Some(e) = reply.error {
        log::warn(
            29,
            &format!("reversed node in a {method} that mod_manager received: not registered here: {}", e.mess),
        );
    }
}

/// The registry slot of node index `node`, if it is a registered node.
fn registered_slot(node: usize) -> Option<(&'static Child, std::sync::Arc<Registry>, usize)> {
    let child = api::child()?;
    let reg = api::registry()?;
    let slot = node.checked_sub(child.registered_base())?;
    (slot < reg.len()).then_some((child, reg, slot))
}

/// Beside mod_proxy_cluster: a STATUS of a registered node with this Load
/// was answered `live` (OK) or not (NOTOK, for want of links). A refused
/// Load (0..=100) waits for the node's first link (`cluster_lift_load`);
/// an accepted one, or -1, cancels it.
pub fn cluster_status(node: usize, load: i32, live: bool) {
    if let Some((_, reg, slot)) = registered_slot(node) {
        reg.set_pending_load(slot, (!live).then_some(load));
    }
}

/// Whether some registered node has a pending Load and live links now.
pub fn cluster_lift_due() -> bool {
    let (Some(child), Some(reg)) = (api::child(), api::registry()) else { return false };
    reg.pending_loads().into_iter().any(|(j, _)| child.connections(child.registered_base() + j) > 0)
}

/// The pending Load of node `node` if it has live links now, else -1.
pub fn cluster_lift_load(node: usize) -> i32 {
    let Some((child, reg, slot)) = registered_slot(node) else { return -1 };
    match reg.pending_loads().into_iter().find(|(j, _)| *j == slot) {
        Some((_, load)) if child.connections(node) > 0 => load,
        _ => -1,
    }
}

/// The pending Load was applied to the node's worker.
pub fn cluster_lifted(node: usize, load: i32) {
    if let Some((child, reg, slot)) = registered_slot(node) {
        reg.pending_load_applied(slot, load);
        log::info(41, || {
            format!(
                "node {}: its first live link arrived: in service with Load {load} (its STATUS was answered NOTOK for want of links)",
                child.name(node)
            )
        });
    }
}

/// Authenticated connections of a node in all children (for health checks).
pub fn node_connections(node: usize) -> i64 {
    api::child().map_or(0, |c| c.connections(node))
}
