//! Configuration: the `ProxyReversed*` directives, parsed and checked here.
//!
//! httpd reads its configuration in the parent (twice at start-up, once per
//! restart); `Builder` collects nodes during a read and is frozen into a
//! `Config` that every child inherits through fork.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use crate::liveness::{LiveOpts, Liveness};

pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_IDLE: usize = 32;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;
/// Registered nodes one ProxyReversedMCMP may hold at once.
pub const MAX_MCMP_NODES: usize = 48;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0}")]
    Msg(String),
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Msg(msg.into()))
}

/// An IPv4 or IPv6 network, `addr/prefix` or a single address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{s}': the prefix length must be 0 to {max}")),
            },
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 dialer on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `address:first-last` (or `address:port`); `*` means every IPv4 address,
/// IPv6 addresses go in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange {
    pub addr: IpAddr,
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let bad = || {
            format!(
                "'{s}' is not a listen address and port range (expected address:first-last, e.g. 0.0.0.0:9000-9015)"
            )
        };
        let (host, ports) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = if host == "*" {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            host.parse().map_err(|_| {
                format!("'{host}' in '{s}' is not an IP address (host names are not accepted for listening)")
            })?
        };
        let (a, b) = match ports.split_once('-') {
            Some((a, b)) => (a, b),
            None => (ports, ports),
        };
        let port = |p: &str| -> Result<u16, String> {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            match p.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(format!("port {p} in '{s}' is out of range (1-65535)")),
            }
        };
        let (first, last) = (port(a)?, port(b)?);
        if first > last {
            return Err(format!("the port range in '{s}' is empty ({first} is above {last})"));
        }
        if first < 1024 {
            return Err(format!(
                "port {first} in '{s}' is below 1024: httpd children bind their port after giving up root privileges, so use ports of 1024 or more"
            ));
        }
        Ok(PortRange { addr, first, last })
    }

    pub fn len(&self) -> usize {
        (self.last - self.first) as usize + 1
    }

    pub fn overlaps(&self, o: &PortRange) -> bool {
        let same_host = self.addr == o.addr || self.addr.is_unspecified() || o.addr.is_unspecified();
        same_host && self.first <= o.last && o.first <= self.last
    }

    pub fn socket_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.addr, port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V6(a) => write!(f, "[{a}]:{}-{}", self.first, self.last),
            IpAddr::V4(a) => write!(f, "{a}:{}-{}", self.first, self.last),
        }
    }
}

pub use crate::units::parse_duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Hmac,
    /// The explicit insecure opt-out: no handshake; the allow-list is the only gate.
    None,
}

#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub worker_url: String,
    pub range: PortRange,
    pub auth: Auth,
    /// Never printed: see the Debug impl.
    pub secret: Vec<u8>,
    pub allow: Vec<Net>,
    pub wait: Duration,
    pub max_idle: usize,
    /// Liveness keys of this node's own line.
    pub live_opts: LiveOpts,
    /// In effect: `live_opts` over `ProxyReversedLiveness` (see Builder::resolve).
    pub live: Liveness,
    /// `worker_url`, normalised.
    pub worker_id: WorkerId,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("worker_url", &self.worker_url)
            .field("range", &self.range.to_string())
            .field("auth", &self.auth)
            .field("secret", &"<hidden>")
            .field("allow", &self.allow)
            .field("wait", &self.wait)
            .field("max_idle", &self.max_idle)
            .field("live", &self.live)
            .finish()
    }
}

impl Node {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(ip))
    }
}

/// The address (None for a host name) and port of a worker URL `scheme://host:port/...`.
pub fn worker_host_port(url: &str) -> Option<(Option<IpAddr>, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
        _ => (authority, default_port(&scheme)?),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.parse().ok(), port))
}

/// Worker names compare as mod_proxy writes them: case-insensitively, and
/// without trailing slashes (`ajp://h:1/` and `ajp://h:1` name one worker).
/// A port that is the scheme's default is left out, as mod_proxy_cluster
/// names its workers (`ajp://h:8009` and `ajp://h` name one worker).
pub fn same_worker(a: &str, b: &str) -> bool {
    WorkerId::new(a) == WorkerId::new(b)
}

/// A worker's identity, normalised once: what every comparison of worker
/// names in the module uses (the shim hands over mod_proxy's name of a
/// worker, `name_ex` or `name`; registered nodes' names are made by
/// `registry::Entry::worker_url`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn new(url: &str) -> WorkerId {
        WorkerId(worker_key(url))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "ajp" => Some(8009),
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn worker_key(url: &str) -> String {
    let u = url.trim_end_matches('/').to_ascii_lowercase();
    if let Some((scheme, rest)) = u.split_once("://") {
        if let (Some(d), Some((host, port))) = (default_port(scheme), rest.rsplit_once(':')) {
            if !port.contains(']') && port.parse::<u16>() == Ok(d) {
                return format!("{scheme}://{host}");
            }
        }
    }
    u
}

const NODE_KEYS: &str =
    "secret, auth, allow, wait, maxidle, ping, pingtimeout, verify, reuse, keepalive, usertimeout, v1, tls";
const MCMP_KEYS: &str =
    "ports, balancer, secret, allow, wait, maxidle, nodes, ping, pingtimeout, verify, reuse, keepalive, usertimeout, v1, tls";

pub const DEFAULT_MCMP_PORTS: u16 = 10;
pub const DEFAULT_MCMP_BALANCER: &str = "mycluster";
pub const DEFAULT_MCMP_NODES: usize = 16;

/// `key=value`, with httpd's quotes around the value removed.
fn split_kv<'a>(kv: &'a str, keys: &str) -> Result<(String, &'a str), ConfigError> {
    let Some((k, v)) = kv.split_once('=') else {
        return err(format!("'{kv}' is not a key=value parameter (keys: {keys})"));
    };
    // httpd keeps quotes that do not start a word: key="a value".
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v);
    Ok((k.to_ascii_lowercase(), v))
}

fn load_secret(file: &str) -> Result<Vec<u8>, ConfigError> {
    reversed_proto::load_secret(Path::new(file)).map_err(ConfigError::Msg)
}

/// The per-node options that `ProxyReversed` and `ProxyReversedMCMP` share.
struct NodeOptions {
    secret_file: Option<String>,
    auth: Option<Auth>,
    allow: Vec<Net>,
    wait: Duration,
    max_idle: usize,
    live: LiveOpts,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            secret_file: None,
            auth: None,
            allow: Vec::new(),
            wait: DEFAULT_WAIT,
            max_idle: DEFAULT_MAX_IDLE,
            live: LiveOpts::default(),
        }
    }
}

impl NodeOptions {
    /// Takes one option; false if the key is not one of them.
    fn take(&mut self, k: &str, v: &str) -> Result<bool, ConfigError> {
        match k {
            "secret" => self.secret_file = Some(v.to_string()),
            "auth" => {
                self.auth = Some(match v.to_ascii_lowercase().as_str() {
                    "hmac" => Auth::Hmac,
                    "none" => Auth::None,
                    _ => return err(format!("auth={v}: use auth=hmac (the default) or auth=none")),
                })
            }
            "allow" => {
                for n in v.split(',').filter(|s| !s.is_empty()) {
                    self.allow.push(Net::parse(n).map_err(|e| ConfigError::Msg(format!("allow: {e}")))?);
                }
                if self.allow.is_empty() {
                    return err("allow= needs at least one address or network");
                }
            }
            "wait" => self.wait = parse_duration(v).map_err(|e| ConfigError::Msg(format!("wait: {e}")))?,
            "maxidle" => {
                self.max_idle = match v.parse::<usize>() {
                    Ok(n) if (1..=100_000).contains(&n) => n,
                    _ => return err(format!("maxidle={v}: expected a number from 1 to 100000")),
                }
            }
            _ => return self.live.take(k, v).map_err(ConfigError::Msg),
        }
        Ok(true)
    }
}

/// `tls=required|off` of `ProxyReversed`: `required` asserts that the node's
/// links carry TLS end to end, which only an `https://` worker does
/// (mod_proxy_http over mod_ssl's client filters). `off` asserts nothing.
fn check_tls(name: &str, worker_url: &str, v: &str) -> Result<(), ConfigError> {
    let scheme = worker_url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    match v.to_ascii_lowercase().as_str() {
        "off" => Ok(()),
        "required" => match scheme.as_str() {
            "https" => Ok(()),
            "ajp" => err(format!(
                "node '{name}': tls=required cannot hold for the AJP worker {worker_url}: mod_proxy_ajp writes AJP \
                 straight to the socket and never builds the backend connection on which mod_ssl's TLS filters \
                 run, so AJP over a reversed link is always in clear. Use an https:// worker (mod_proxy_http with \
                 SSLProxyEngine on) and the backend's HTTPS connector instead"
            )),
            _ => err(format!(
                "node '{name}': tls=required needs an https:// worker, not {worker_url} (mod_proxy_http runs TLS \
                 over the reversed link only for https://; add SSLProxyEngine on)"
            )),
        },
        _ => err(format!("tls={v}: use tls=required (the worker must be https://) or tls=off")),
    }
}

/// `ProxyReversedMCMP`: nodes that register at run time through MCMP.
#[derive(Clone)]
pub struct McmpCfg {
    /// Where registered nodes may listen: each node's range must lie inside.
    pub window: PortRange,
    /// Ports per registered node: `Port` .. `Port + ports - 1`.
    pub ports: u16,
    pub balancer: String,
    /// Default secret of registered nodes (never printed).
    pub secret: Option<Vec<u8>>,
    pub allow: Vec<Net>,
    pub wait: Duration,
    pub max_idle: usize,
    /// How many registered nodes can exist at once.
    pub nodes: usize,
    /// `tls=required`: only `Type=https` nodes may register.
    pub tls_required: bool,
    pub live_opts: LiveOpts,
    pub live: Liveness,
}

impl std::fmt::Debug for McmpCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McmpCfg")
            .field("window", &self.window.to_string())
            .field("ports", &self.ports)
            .field("balancer", &self.balancer)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("nodes", &self.nodes)
            .field("tls_required", &self.tls_required)
            .finish()
    }
}

/// A per-node secret for registered nodes (`ProxyReversedNodeSecret`).
#[derive(Clone)]
pub struct NodeSecret {
    pub route: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for NodeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeSecret({}, <hidden>)", self.route)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: Vec<Node>,
    pub handshake_timeout: Duration,
    pub max_handshakes: usize,
    pub mcmp: Option<McmpCfg>,
    pub node_secrets: Vec<NodeSecret>,
    /// `ProxyReversedLiveness`: defaults of every node's liveness keys.
    pub live_defaults: LiveOpts,
}

impl Config {
    /// The secret a registered node must prove, if the operator gave one.
    pub fn secret_for_route(&self, route: &str) -> Option<&[u8]> {
        if let Some(s) = self.node_secrets.iter().find(|s| s.route == route) {
            return Some(&s.secret);
        }
        self.mcmp.as_ref().and_then(|m| m.secret.as_deref())
    }

    pub fn node_for_worker(&self, worker_name: &str) -> Option<usize> {
        let id = WorkerId::new(worker_name);
        self.nodes.iter().position(|n| n.worker_id == id)
    }
}

/// Collects the directives of one configuration read.
#[derive(Debug)]
pub struct Builder {
    pub cfg: Config,
    seen_workers: Vec<bool>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cfg: Config {
                nodes: Vec::new(),
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                max_handshakes: DEFAULT_MAX_HANDSHAKES,
                mcmp: None,
                node_secrets: Vec::new(),
                live_defaults: LiveOpts::default(),
            },
            seen_workers: Vec::new(),
        }
    }
}

impl Builder {
    /// `ProxyReversed <node> <worker-url> <addr>:<first>-<last> [key=value ...]`
    pub fn add_node(&mut self, args: &[&str]) -> Result<(), ConfigError> {
        if args.len() < 3 {
            return err(
                "expects <node> <worker-url> <listen-address>:<first>-<last> [secret=<file>] [auth=hmac|none] [allow=<net>,...] [wait=<time>] [maxidle=<n>]",
            );
        }
        let name = args[0];
        if !reversed_proto::valid_node(name.as_bytes()) {
            return err(format!(
                "node name '{name}' is invalid: use 1 to {} characters of A-Z a-z 0-9 . _ -",
                reversed_proto::MAX_NODE_LEN
            ));
        }
        if self.cfg.nodes.iter().any(|n| n.name == name) {
            return err(format!("node '{name}' is declared twice"));
        }
        let worker_url = args[1];
        if !worker_url.contains("://") {
            return err(format!(
                "'{worker_url}' is not a worker URL: give the URL of the ProxyPass or BalancerMember worker (e.g. ajp://127.0.0.2:1/)"
            ));
        }
        if let Some(other) = self.cfg.nodes.iter().find(|n| same_worker(&n.worker_url, worker_url)) {
            return err(format!("worker {worker_url} is already carried by node '{}'", other.name));
        }
        let range = PortRange::parse(args[2]).map_err(ConfigError::Msg)?;
        if let Some(other) = self.cfg.nodes.iter().find(|n| n.range.overlaps(&range)) {
            return err(format!(
                "the range {range} of node '{name}' overlaps the range {} of node '{}'",
                other.range, other.name
            ));
        }
        let mut o = NodeOptions::default();
        for kv in &args[3..] {
            let (k, v) = split_kv(kv, NODE_KEYS)?;
            if k == "tls" {
                check_tls(name, worker_url, v)?;
                continue;
            }
            if !o.take(&k, v)? {
                return err(format!("unknown parameter '{k}' (keys: {NODE_KEYS})"));
            }
        }
        let auth = o.auth.unwrap_or(Auth::Hmac);
        // Checked alone here (naming the line); again over the server-wide defaults in resolve().
        let live = o.live.apply_defaults().map_err(|e| ConfigError::Msg(format!("node '{name}': {e}")))?;
        let secret = match (auth, o.secret_file) {
            (Auth::Hmac, Some(f)) => load_secret(&f)?,
            (Auth::Hmac, None) => {
                return err(if range.addr.is_loopback() {
                    format!("node '{name}' has no secret=<file>: dialers must authenticate (or opt out explicitly with auth=none)")
                } else {
                    format!(
                        "node '{name}' listens on the non-loopback address {} with neither secret=<file> nor the explicit insecure opt-out auth=none",
                        range.addr
                    )
                });
            }
            (Auth::None, Some(_)) => return err("secret= and auth=none contradict each other"),
            (Auth::None, None) => Vec::new(),
        };
        let (allow, wait, max_idle) = (o.allow, o.wait, o.max_idle);
        self.cfg.nodes.push(Node {
            name: name.to_string(),
            worker_url: worker_url.to_string(),
            range,
            auth,
            secret,
            allow,
            wait,
            max_idle,
            live_opts: o.live,
            live,
            worker_id: WorkerId::new(worker_url),
        });
        self.seen_workers.push(false);
        Ok(())
    }

    /// `ProxyReversedMCMP <addr>:<first>-<last> [key=value ...]`
    pub fn set_mcmp(&mut self, args: &[&str]) -> Result<(), ConfigError> {
        if self.cfg.mcmp.is_some() {
            return err("may appear only once");
        }
        let Some(first) = args.first() else {
            return err(format!("expects <listen-address>:<first>-<last> [key=value ...] (keys: {MCMP_KEYS})"));
        };
        let window = PortRange::parse(first).map_err(ConfigError::Msg)?;
        let mut o = NodeOptions::default();
        let (mut ports, mut balancer, mut nodes) =
            (DEFAULT_MCMP_PORTS, DEFAULT_MCMP_BALANCER.to_string(), DEFAULT_MCMP_NODES);
        let mut tls_required = false;
        for kv in &args[1..] {
            let (k, v) = split_kv(kv, MCMP_KEYS)?;
            match k.as_str() {
                "ports" => {
                    ports = match v.parse::<u16>() {
                        Ok(n) if n >= 1 && (n as usize) <= window.len() => n,
                        _ => {
                            return err(format!(
                                "ports={v}: expected a number from 1 to {} (the size of {window})",
                                window.len()
                            ))
                        }
                    }
                }
                "balancer" => {
                    if v.is_empty()
                        || v.len() >= 40
                        || !v.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
                    {
                        return err(format!(
                            "balancer={v}: use 1 to 39 characters of A-Z a-z 0-9 . _ - (the name after balancer://)"
                        ));
                    }
                    balancer = v.to_string();
                }
                "nodes" => {
                    nodes = match v.parse::<usize>() {
                        Ok(n) if (1..=MAX_MCMP_NODES).contains(&n) => n,
                        _ => return err(format!("nodes={v}: expected a number from 1 to {MAX_MCMP_NODES}")),
                    }
                }
                "tls" => {
                    tls_required = match v.to_ascii_lowercase().as_str() {
                        "required" => true,
                        "off" => false,
                        _ => {
                            return err(format!(
                                "tls={v}: use tls=required (only Type=https nodes register) or tls=off"
                            ))
                        }
                    }
                }
                "auth" => return err("registered nodes always authenticate: auth= is not accepted here"),
                _ => {
                    if !o.take(&k, v)? {
                        return err(format!("unknown parameter '{k}' (keys: {MCMP_KEYS})"));
                    }
                }
            }
        }
        let secret = o.secret_file.as_deref().map(load_secret).transpose()?;
        let live = o.live.apply_defaults().map_err(ConfigError::Msg)?;
        self.cfg.mcmp = Some(McmpCfg {
            window,
            ports,
            balancer,
            secret,
            allow: o.allow,
            wait: o.wait,
            max_idle: o.max_idle,
            nodes,
            tls_required,
            live_opts: o.live,
            live,
        });
        Ok(())
    }

    /// `ProxyReversedLiveness key=value ...`: the liveness defaults of every node.
    pub fn set_liveness(&mut self, args: &[&str]) -> Result<(), ConfigError> {
        if args.is_empty() {
            return err(format!("expects key=value parameters (keys: {})", crate::liveness::KEYS));
        }
        let mut o = LiveOpts::default();
        for kv in args {
            let (k, v) = split_kv(kv, crate::liveness::KEYS)?;
            if !o.take(&k, v).map_err(ConfigError::Msg)? {
                return err(format!("unknown parameter '{k}' (keys: {})", crate::liveness::KEYS));
            }
        }
        o.apply_defaults().map_err(ConfigError::Msg)?;
        self.cfg.live_defaults = o;
        Ok(())
    }

    /// Applies `ProxyReversedLiveness` under each node's own keys (whatever
    /// the order of the lines), checking each combination.
    pub fn resolve(&mut self) -> Result<(), ConfigError> {
        let base = self.cfg.live_defaults.apply_defaults().map_err(ConfigError::Msg)?;
        for n in &mut self.cfg.nodes {
            n.live = n.live_opts.over(&base).map_err(|e| ConfigError::Msg(format!("node '{}': {e}", n.name)))?;
        }
        if let Some(m) = &mut self.cfg.mcmp {
            m.live = m.live_opts.over(&base).map_err(|e| ConfigError::Msg(format!("ProxyReversedMCMP: {e}")))?;
        }
        Ok(())
    }

    /// `ProxyReversedNodeSecret <JVMRoute> <file>`
    pub fn add_node_secret(&mut self, args: &[&str]) -> Result<(), ConfigError> {
        let [route, file] = args else {
            return err("expects <JVMRoute> <secret-file>");
        };
        if !reversed_proto::valid_node(route.as_bytes()) {
            return err(format!(
                "'{route}' is not a usable JVMRoute: use 1 to {} characters of A-Z a-z 0-9 . _ -",
                reversed_proto::MAX_NODE_LEN
            ));
        }
        if self.cfg.node_secrets.iter().any(|s| s.route == *route) {
            return err(format!("JVMRoute '{route}' has a secret already"));
        }
        let secret = load_secret(file)?;
        self.cfg.node_secrets.push(NodeSecret { route: route.to_string(), secret });
        Ok(())
    }

    pub fn set_global(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        match name.to_ascii_lowercase().as_str() {
            "proxyreversedhandshaketimeout" => {
                self.cfg.handshake_timeout = parse_duration(value).map_err(ConfigError::Msg)?;
            }
            "proxyreversedmaxhandshakes" => {
                self.cfg.max_handshakes = match value.parse::<usize>() {
                    Ok(n) if (1..=10_000).contains(&n) => n,
                    _ => return err(format!("'{value}': expected a number from 1 to 10000")),
                }
            }
            _ => return err("unknown directive"),
        }
        Ok(())
    }

    pub fn saw_worker(&mut self, worker_name: &str) {
        if let Some(i) = self.cfg.node_for_worker(worker_name) {
            self.seen_workers[i] = true;
        }
    }

    /// After every worker was reported: each node must carry an existing worker.
    pub fn check(&mut self) -> Result<(), ConfigError> {
        self.resolve()?;
        if let Some(m) = &self.cfg.mcmp {
            if let Some(n) = self.cfg.nodes.iter().find(|n| n.range.overlaps(&m.window)) {
                return err(format!(
                    "the ProxyReversedMCMP range {} overlaps the range {} of node '{}'",
                    m.window, n.range, n.name
                ));
            }
            if self.cfg.nodes.len() + m.nodes > crate::stats::MAX_NODES {
                return err(format!(
                    "{} ProxyReversed nodes and nodes={} of ProxyReversedMCMP exceed the limit of {} nodes",
                    self.cfg.nodes.len(),
                    m.nodes,
                    crate::stats::MAX_NODES
                ));
            }
        } else if !self.cfg.node_secrets.is_empty() {
            return err("ProxyReversedNodeSecret is set but ProxyReversedMCMP is not: nothing can register");
        }
        for (n, seen) in self.cfg.nodes.iter().zip(&self.seen_workers) {
            if !seen {
                return err(format!(
                    "node '{}': no ProxyPass or BalancerMember worker has the URL {} (write the same URL in both)",
                    n.name, n.worker_url
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn secret_file() -> tempfile_lite::TempFile {
        tempfile_lite::TempFile::with(b"0123456789abcdef0123\n")
    }

    mod tempfile_lite {
        pub struct TempFile(pub std::path::PathBuf);
        impl TempFile {
            pub fn with(content: &[u8]) -> TempFile {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "prx-cfg-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, content).unwrap();
                TempFile(p)
            }
            pub fn path(&self) -> &str {
                self.0.to_str().unwrap()
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn add(b: &mut Builder, line: &str) -> Result<(), String> {
        let args: Vec<&str> = line.split_whitespace().collect();
        b.add_node(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn ranges() {
        assert_eq!(PortRange::parse("0.0.0.0:9000-9015").unwrap().len(), 16);
        assert_eq!(PortRange::parse("[::1]:9000").unwrap().len(), 1);
        assert!(PortRange::parse("*:9000-9001").unwrap().addr.is_unspecified());
        assert!(PortRange::parse("127.0.0.1:abc").unwrap_err().contains("not a listen address"));
        assert!(PortRange::parse("127.0.0.1:9000-").is_err());
        assert!(PortRange::parse("127.0.0.1").is_err());
        assert!(PortRange::parse("127.0.0.1:9005-9000").unwrap_err().contains("empty"));
        assert!(PortRange::parse("127.0.0.1:80-90").unwrap_err().contains("below 1024"));
        assert!(PortRange::parse("127.0.0.1:9000-70000").unwrap_err().contains("out of range"));
        assert!(PortRange::parse("example.com:9000").unwrap_err().contains("not an IP"));
        let a = PortRange::parse("127.0.0.1:9000-9010").unwrap();
        assert!(a.overlaps(&PortRange::parse("0.0.0.0:9010-9020").unwrap()));
        assert!(!a.overlaps(&PortRange::parse("127.0.0.2:9000-9010").unwrap()));
        assert!(!a.overlaps(&PortRange::parse("127.0.0.1:9011-9020").unwrap()));
    }

    #[test]
    fn nets() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(Net::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("ten").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn node_rules() {
        let s = secret_file();
        let mut b = Builder::default();
        add(
            &mut b,
            &format!("app1 ajp://127.0.0.2:1/ 127.0.0.1:9000-9003 secret=\"{}\" wait=500ms maxidle=4", s.path()),
        )
        .unwrap();
        assert_eq!(b.cfg.nodes[0].secret, b"0123456789abcdef0123");
        assert_eq!(b.cfg.nodes[0].wait, Duration::from_millis(500));
        assert!(add(&mut b, &format!("app2 ajp://127.0.0.3:1/ 127.0.0.1:9003-9005 secret={}", s.path()))
            .unwrap_err()
            .contains("overlaps"));
        assert!(add(&mut b, &format!("app1 ajp://127.0.0.3:1/ 127.0.0.1:9100 secret={}", s.path()))
            .unwrap_err()
            .contains("twice"));
        assert!(add(&mut b, "app3 ajp://127.0.0.3:1/ 0.0.0.0:9200-9201").unwrap_err().contains("non-loopback"));
        assert!(add(&mut b, "app3 ajp://127.0.0.3:1/ 127.0.0.1:9200-9201").unwrap_err().contains("no secret"));
        add(&mut b, "app3 ajp://127.0.0.3:1/ 0.0.0.0:9200-9201 auth=none allow=10.0.0.0/8").unwrap();
        assert!(add(&mut b, "app4 ajp://127.0.0.4:1/ 127.0.0.1:9300 secret=/nonexistent/secret")
            .unwrap_err()
            .contains("cannot read secret file"));
        let short = tempfile_lite::TempFile::with(b"short\n");
        let e = add(&mut b, &format!("app4 ajp://127.0.0.4:1/ 127.0.0.1:9300 secret={}", short.path())).unwrap_err();
        assert!(e.contains("at least 16") && !e.contains("short\n"));
        assert!(add(&mut b, &format!("app4 ajp://127.0.0.4:1/ 127.0.0.1:9300 secret={} color=blue", s.path()))
            .unwrap_err()
            .contains("unknown parameter"));
        assert!(add(&mut b, &format!("app4 ajp://127.0.0.2:1 127.0.0.1:9300 secret={}", s.path()))
            .unwrap_err()
            .contains("already carried"));
        assert!(add(&mut b, "bad/name ajp://x:1/ 127.0.0.1:9400 auth=none").unwrap_err().contains("invalid"));
        // tls=required: only an https:// worker carries TLS; AJP never can.
        let e = add(&mut b, &format!("app5 ajp://127.0.0.5:1/ 127.0.0.1:9500 secret={} tls=required", s.path()))
            .unwrap_err();
        assert!(e.contains("mod_proxy_ajp") && e.contains("https://"), "{e}");
        let e = add(&mut b, &format!("app5 http://127.0.0.5:1/ 127.0.0.1:9500 secret={} tls=required", s.path()))
            .unwrap_err();
        assert!(e.contains("needs an https:// worker"), "{e}");
        assert!(add(&mut b, &format!("app5 https://localhost:5/ 127.0.0.1:9500 secret={} tls=maybe", s.path()))
            .unwrap_err()
            .contains("tls=maybe"));
        add(&mut b, &format!("app5 https://localhost:5/ 127.0.0.1:9500 secret={} tls=required", s.path())).unwrap();
        assert!(format!("{:?}", b.cfg.nodes[0]).contains("<hidden>"));
        assert!(!format!("{:?}", b.cfg.nodes[0]).contains("0123456789abcdef"));
    }

    #[test]
    fn worker_names_and_default_ports() {
        assert!(same_worker("AJP://127.0.0.1:8009/", "ajp://127.0.0.1"));
        assert!(same_worker("http://[::1]:80", "http://[::1]"));
        assert!(!same_worker("ajp://127.0.0.1:9100", "ajp://127.0.0.1"));
        assert!(!same_worker("http://127.0.0.1:8009", "http://127.0.0.1"));
        assert_eq!(worker_host_port("ajp://127.0.0.1"), Some((Some("127.0.0.1".parse().unwrap()), 8009)));
        assert_eq!(worker_host_port("https://[::1]/x"), Some((Some("::1".parse().unwrap()), 443)));
        assert_eq!(worker_host_port("ajp://h.example:9100/"), Some((None, 9100)));
        assert_eq!(worker_host_port("fcgi://h"), None);
    }

    #[test]
    fn workers_must_exist() {
        let s = secret_file();
        let mut b = Builder::default();
        add(&mut b, &format!("app1 AJP://127.0.0.2:1/ 127.0.0.1:9000 secret={}", s.path())).unwrap();
        assert!(b.check().unwrap_err().to_string().contains("app1"));
        b.saw_worker("ajp://127.0.0.2:1");
        b.check().unwrap();
        assert_eq!(b.cfg.node_for_worker("ajp://127.0.0.2:1/"), Some(0));
        assert_eq!(b.cfg.node_for_worker("ajp://127.0.0.2:2/"), None);
        let _ = std::io::stderr().flush();
    }
}
