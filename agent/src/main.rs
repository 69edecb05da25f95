//! reversed-agent: dials authenticated idle connections into httpd
//! (mod_proxy_reversed) and splices them to a local backend once httpd writes a
//! request into them, or answers itself (`--respond`).

#![deny(unsafe_code)]

use reversed_agent::{debug, error, info, warn};
use reversed_agent::{logging, mcmp, metrics, pool, responder};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use tokio::sync::watch;

use reversed_agent::logging::Level;
use reversed_agent::pool::{Agent, Busy, FrontEnd, Mode};

const DEFAULT_IDLE: usize = 8;
const MAX_IDLE: usize = 100_000;
const DEFAULT_BODY_SIZE: usize = 1024;
const DEFAULT_MAX_BACKOFF_MS: u64 = 5000;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_STATUS_INTERVAL: u64 = 5;

/// How a command-line value goes over the config file's: a flag given wins.
trait Merge {
    fn merge(&mut self, file: Self);
}

impl<T> Merge for Option<T> {
    fn merge(&mut self, file: Self) {
        if self.is_none() {
            *self = file;
        }
    }
}

/// Repeatable flags: given at all, they replace the file's list.
impl<T> Merge for Vec<T> {
    fn merge(&mut self, file: Self) {
        if self.is_empty() {
            *self = file;
        }
    }
}

/// Switches: on if on either side.
impl Merge for bool {
    fn merge(&mut self, file: Self) {
        *self |= file;
    }
}

/// Declares the options struct and its `over` (command line over config
/// file) from one field list, so that no field can be left out of the merge.
macro_rules! options {
    ($(#[$m:meta])* struct $name:ident { $($(#[$fm:meta])* $f:ident: $t:ty,)* }) => {
        $(#[$m])*
        struct $name {
            $($(#[$fm])* $f: $t,)*
        }

        impl $name {
            /// `self` (the command line) over `file`.
            fn over(mut self, file: $name) -> $name {
                $(Merge::merge(&mut self.$f, file.$f);)*
                self
            }
        }
    };
}

// The options, once: clap reads them from the command line (flags) and serde
// from the TOML file (keys: the long flag names with '_' for '-'; `frontends`,
// or `frontend`, is a list; `config` is a flag only).
options! {
    /// Dials authenticated reversed connections into httpd (mod_proxy_reversed) and
    /// splices them to a local backend. Command-line flags override the config file.
    #[derive(Parser, Deserialize, Debug, Default, Clone)]
    #[command(name = "reversed-agent", version)]
    #[serde(default, deny_unknown_fields, rename_all = "snake_case")]
    struct Options {
        /// TOML config file (keys: the long flag names with '_' for '-'; `frontends` is a list).
        #[arg(long, value_name = "FILE")]
        #[serde(skip)]
        config: Option<PathBuf>,
        /// Check FILE (as --config, with the other flags given) and the secret
        /// file it names, print the outcome and exit: 0 valid, 2 not.
        #[arg(long, value_name = "FILE")]
        #[serde(skip)]
        check_config: Option<PathBuf>,
        /// Print the manual page (roff, generated from these flags) and exit.
        #[arg(long)]
        #[serde(skip)]
        man: bool,
        /// httpd front end and its port range, e.g. 127.0.0.1:9000-9003 or HOST:PORT (repeatable).
        #[arg(long = "frontend", value_name = "HOST:FIRST-LAST")]
        #[serde(alias = "frontend")]
        frontends: Vec<String>,
        /// Node name ([A-Za-z0-9._-], 1-64 bytes), as declared to httpd.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// File holding the node's shared secret (required unless --no-auth).
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
        /// Skip the handshake (nodes that httpd declares with auth=none).
        #[arg(long)]
        no_auth: bool,
        /// Idle connections to keep per front end [default: 8].
        #[arg(long, value_name = "N")]
        idle: Option<usize>,
        /// Local backend to splice requests to, e.g. 127.0.0.1:8009 (required unless --respond).
        #[arg(long, value_name = "HOST:PORT")]
        backend: Option<String>,
        /// Answer requests with the built-in AJP13/HTTP responder instead of a backend.
        #[arg(long)]
        respond: bool,
        /// Also (or only) serve the responder on a listening socket HOST:PORT, as an
        /// ordinary backend that httpd dials: the forward baseline of benchmarks.
        /// Needs --respond; --frontend and --node become optional.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Responder body size in bytes [default: 1024].
        #[arg(long, value_name = "N")]
        body_size: Option<usize>,
        /// Responder echoes the request body instead of the fixed body.
        #[arg(long)]
        echo: bool,
        /// Responder serves TLS with this PEM certificate chain (with --tls-key):
        /// for https:// workers, where httpd's mod_ssl is the TLS client. Needs --respond.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// Responder requires a client certificate issued by a CA of this PEM
        /// file (mutual TLS: httpd's SSLProxyMachineCertificateFile). Needs --tls-cert.
        #[arg(long, value_name = "FILE")]
        tls_client_ca: Option<PathBuf>,
        /// Longest backoff between dials to a failing port, in ms [default: 5000].
        #[arg(long, value_name = "MS")]
        max_backoff_ms: Option<u64>,
        /// error, warn, info or debug [default: info].
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
        /// Log lines as text or as one JSON object per line (timestamp, level, message, node) [default: text].
        #[arg(long, value_name = "text|json")]
        log_format: Option<String>,
        /// Register the node with httpd's MCMP receiver at this URL, like
        /// mod_cluster (repeatable), e.g. http://127.0.0.1:8090/mcmp. Plain http.
        #[arg(long = "mcmp", value_name = "URL")]
        #[serde(deserialize_with = "one_or_many")]
        mcmp: Vec<String>,
        /// MCMP: balancer to join [default: httpd's, not sent].
        #[arg(long, value_name = "NAME")]
        balancer: Option<String>,
        /// MCMP: the protocol httpd speaks over the connections, ajp, http or https [default: ajp].
        #[arg(long = "type", value_name = "ajp|http|https")]
        #[serde(rename = "type")]
        kind: Option<String>,
        /// MCMP: virtual host aliases, comma-separated (with --context).
        #[arg(long, value_name = "A,B")]
        #[serde(deserialize_with = "joined")]
        alias: Option<String>,
        /// MCMP: contexts to enable, comma-separated (with --alias).
        #[arg(long, value_name = "/X,/Y")]
        #[serde(deserialize_with = "joined")]
        context: Option<String>,
        /// MCMP: seconds between STATUS messages [default: 5].
        #[arg(long, value_name = "SECS")]
        status_interval: Option<u64>,
        /// MCMP: requests the backend can serve at once, the denominator of
        /// the Load that STATUS reports (e.g. Tomcat's maxThreads) [default:
        /// --idle x the number of front ends].
        #[arg(long, value_name = "N")]
        capacity: Option<usize>,
        /// TCP keepalive of every link: seconds idle before the first probe,
        /// seconds between probes, probes before the link is dropped; or `off`
        /// [default: 60,10,3].
        #[arg(long, value_name = "IDLE,INTERVAL,COUNT")]
        keepalive: Option<String>,
        /// TCP_USER_TIMEOUT of every link in seconds: written data never
        /// acknowledged for this long fails the link; 0 keeps the kernel's default [default: 30].
        #[arg(long, value_name = "SECS")]
        user_timeout: Option<u64>,
        /// Serve Prometheus metrics (text format 0.0.4) on GET /metrics at IP:PORT,
        /// e.g. 127.0.0.1:9464 [default: off].
        #[arg(long, value_name = "IP:PORT")]
        metrics_listen: Option<String>,
    }
}

/// A TOML value given as one string (comma-separated where lists are meant) or as a list.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
    fn joined(self) -> String {
        self.into_vec().join(",")
    }
}

/// `mcmp = "URL"` or `mcmp = ["URL", ...]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(OneOrMany::deserialize(d)?.into_vec())
}

/// `alias = "a,b"` or `alias = ["a", "b"]`.
fn joined<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(OneOrMany::deserialize(d)?.joined()))
}

#[derive(Debug)]
struct Settings {
    frontends: Vec<FrontEnd>,
    node: String,
    secret_file: Option<PathBuf>,
    idle: usize,
    mode: ModeSetting,
    max_backoff: Duration,
    log_level: Level,
    log_format: logging::Format,
    listen: Option<String>,
    mcmp: Option<McmpSettings>,
    tcp: pool::TcpOpts,
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, PartialEq)]
struct McmpSettings {
    receivers: Vec<mcmp::Receiver>,
    registration: mcmp::Registration,
    status_interval: Duration,
    /// `--capacity`; None: `--idle` x front ends.
    capacity: Option<usize>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
}

/// The `--mcmp` group of settings (None without `--mcmp`).
#[allow(clippy::too_many_arguments)]
fn mcmp_settings(
    urls: Vec<String>,
    balancer: Option<String>,
    kind: Option<String>,
    alias: Option<String>,
    context: Option<String>,
    status_interval: Option<u64>,
    capacity: Option<usize>,
    node: &str,
    frontends: &[FrontEnd],
) -> Result<Option<McmpSettings>, String> {
    if urls.is_empty() {
        if balancer.is_some()
            || kind.is_some()
            || alias.is_some()
            || context.is_some()
            || status_interval.is_some()
            || capacity.is_some()
        {
            return Err(
                "--balancer, --type, --alias, --context, --status-interval and --capacity need --mcmp URL".into()
            );
        }
        return Ok(None);
    }
    let receivers = urls.iter().map(|u| mcmp::Receiver::parse(u)).collect::<Result<Vec<_>, _>>()?;
    let fe = frontends.first().ok_or("--mcmp registers the node with the first --frontend: give one")?;
    let kind = kind.unwrap_or_else(|| "ajp".into()).to_ascii_lowercase();
    if kind != "ajp" && kind != "http" && kind != "https" {
        return Err(format!("invalid --type {kind:?}: ajp, http or https"));
    }
    let aliases = alias.as_deref().map(split_list).unwrap_or_default();
    let contexts = context.as_deref().map(split_list).unwrap_or_default();
    if aliases.is_empty() != contexts.is_empty() {
        return Err("--alias and --context go together (MCMP needs both or neither)".into());
    }
    let secs = status_interval.unwrap_or(DEFAULT_STATUS_INTERVAL);
    if !(1..=3600).contains(&secs) {
        return Err("--status-interval must be between 1 and 3600 seconds".into());
    }
    if capacity.is_some_and(|c| !(1..=1_000_000).contains(&c)) {
        return Err("--capacity must be between 1 and 1000000 (requests the backend serves at once)".into());
    }
    let registration = mcmp::Registration {
        node: node.to_string(),
        balancer,
        kind,
        host: if fe.host.contains(':') { format!("[{}]", fe.host) } else { fe.host.clone() },
        port: fe.first,
        aliases,
        contexts,
    };
    registration.validate()?;
    Ok(Some(McmpSettings { receivers, registration, status_interval: Duration::from_secs(secs), capacity }))
}

#[derive(Debug, PartialEq)]
enum ModeSetting {
    Splice(String),
    Respond { body_size: usize, echo: bool, tls: Option<reversed_agent::tls::TlsFiles> },
}

/// Reads `--config` (if given) and puts the command line over it.
fn merged(cli: Options) -> Result<Options, String> {
    let Some(p) = &cli.config else { return Ok(cli) };
    let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {}: {e}", p.display()))?;
    let file = toml::from_str::<Options>(&text).map_err(|e| format!("config file {}: {e}", p.display()))?;
    Ok(cli.over(file))
}

fn settings(cli: Options) -> Result<Settings, String> {
    let o = merged(cli)?;
    let fe_strings = o.frontends;
    let listen = o.listen;
    if fe_strings.is_empty() && listen.is_none() {
        return Err("at least one --frontend HOST:FIRST-LAST is required".into());
    }
    let frontends = fe_strings.iter().map(|s| FrontEnd::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let node = match (o.node, &listen) {
        (Some(n), _) => n,
        (None, Some(_)) if fe_strings.is_empty() => "listener".to_string(),
        (None, _) => return Err("--node NAME is required".into()),
    };
    if !reversed_proto::valid_node(node.as_bytes()) {
        return Err(format!("invalid node name {node:?}: 1-64 bytes of [A-Za-z0-9._-]"));
    }
    let no_auth = o.no_auth || fe_strings.is_empty();
    let secret_file =
        if no_auth { None } else { Some(o.secret_file.ok_or("--secret-file PATH is required (or --no-auth)")?) };
    let idle = o.idle.unwrap_or(DEFAULT_IDLE);
    if idle == 0 || idle > MAX_IDLE {
        return Err(format!("--idle must be between 1 and {MAX_IDLE}"));
    }
    let respond = o.respond;
    if let Some(l) = &listen {
        if !respond {
            return Err("--listen serves the built-in responder: it needs --respond".into());
        }
        if l.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("invalid --listen {l:?}: expected IP:PORT"));
        }
    }
    let echo = o.echo;
    let body_size = o.body_size;
    let tls = match (o.tls_cert, o.tls_key, o.tls_client_ca) {
        (None, None, None) => None,
        (Some(cert), Some(key), client_ca) => {
            let f = reversed_agent::tls::TlsFiles { cert, key, client_ca };
            reversed_agent::tls::load(&f)?;
            Some(f)
        }
        (None, _, Some(_)) => return Err("--tls-client-ca needs --tls-cert and --tls-key".into()),
        (Some(_), None, _) => return Err("--tls-cert needs --tls-key".into()),
        (None, Some(_), _) => return Err("--tls-key needs --tls-cert".into()),
    };
    let mode = if respond {
        ModeSetting::Respond { body_size: body_size.unwrap_or(DEFAULT_BODY_SIZE), echo, tls }
    } else {
        if echo || body_size.is_some() {
            return Err("--echo and --body-size need --respond".into());
        }
        if tls.is_some() {
            return Err(
                "--tls-cert/--tls-key serve TLS from the built-in responder: they need --respond (spliced links carry the backend's own TLS unchanged)"
                    .into(),
            );
        }
        let b = o.backend.ok_or("--backend HOST:PORT is required (or --respond)")?;
        match b.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return Err(format!("invalid backend {b:?}: expected HOST:PORT")),
        }
        ModeSetting::Splice(b)
    };
    let max_backoff_ms = o.max_backoff_ms.unwrap_or(DEFAULT_MAX_BACKOFF_MS);
    if !(50..=3_600_000).contains(&max_backoff_ms) {
        return Err("--max-backoff-ms must be between 50 and 3600000".into());
    }
    let lvl = o.log_level.unwrap_or_else(|| "info".into());
    let log_level =
        Level::parse(&lvl).ok_or_else(|| format!("invalid log level {lvl:?}: error, warn, info or debug"))?;
    let fmt = o.log_format.unwrap_or_else(|| "text".into());
    let log_format =
        logging::Format::parse(&fmt).ok_or_else(|| format!("invalid --log-format {fmt:?}: text or json"))?;
    let mcmp = mcmp_settings(
        o.mcmp,
        o.balancer,
        o.kind,
        o.alias,
        o.context,
        o.status_interval,
        o.capacity,
        &node,
        &frontends,
    )?;
    let mut tcp = pool::TcpOpts::default();
    if let Some(k) = o.keepalive {
        tcp.keepalive = pool::TcpOpts::parse_keepalive(&k).map_err(|e| format!("--keepalive: {e}"))?;
    }
    match o.user_timeout {
        Some(0) => tcp.user_timeout = None,
        Some(n) if n <= 3600 => tcp.user_timeout = Some(Duration::from_secs(n)),
        Some(_) => return Err("--user-timeout must be between 0 and 3600 seconds".into()),
        None => {}
    }
    let metrics_listen = match o.metrics_listen {
        Some(a) => Some(
            a.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("invalid --metrics-listen {a:?}: expected IP:PORT"))?,
        ),
        None => None,
    };
    Ok(Settings {
        metrics_listen,
        frontends,
        node,
        secret_file,
        idle,
        mode,
        max_backoff: Duration::from_millis(max_backoff_ms),
        log_level,
        log_format,
        listen,
        mcmp,
        tcp,
    })
}

/// `--check-config FILE`: the settings `--config FILE` would give, and
/// the secret file they name; the outcome on stdout (valid) or stderr.
fn check_config(mut cli: Options) -> ExitCode {
    let file = cli.check_config.take().unwrap_or_default();
    cli.config = Some(file.clone());
    let checked = settings(cli).and_then(|s| match &s.secret_file {
        Some(p) => reversed_proto::load_secret(p).map(|_| s).map_err(|e| e.to_string()),
        None => Ok(s),
    });
    match checked {
        Ok(s) => {
            println!(
                "{}: OK: node {}, {} front ends ({}), {} idle connections each{}",
                file.display(),
                s.node,
                s.frontends.len(),
                s.frontends.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", "),
                s.idle,
                s.metrics_listen.map(|a| format!(", metrics on {a}")).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reversed-agent: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Options::parse();
    if cli.man {
        use clap::CommandFactory;
        use std::io::Write;
        let mut out = Vec::new();
        if clap_mangen::Man::new(Options::command()).render(&mut out).is_err()
            || std::io::stdout().write_all(&out).is_err()
        {
            return ExitCode::from(1);
        }
        return ExitCode::SUCCESS;
    }
    if cli.check_config.is_some() {
        return check_config(cli);
    }
    let s = match settings(cli.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reversed-agent: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(s.log_level, s.log_format, &s.node);
    let secret = match &s.secret_file {
        Some(p) => match reversed_proto::load_secret(p) {
            Ok(k) => Some(k),
            Err(e) => {
                error!("{e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // Idle connections, plus a backend socket for each used one.
    let want = (s.idle * s.frontends.len()) as u64 * 3 + 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < want => {
            warn!("open file limit is {n}; {want} may be needed for {} idle connections per front end", s.idle)
        }
        Ok(n) => debug!("open file limit: {n}"),
        Err(e) => warn!("cannot raise the open file limit: {e}"),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(cli, s, secret))
}

/// Tells systemd (Type=notify: `NOTIFY_SOCKET`) how the agent is doing;
/// nothing without systemd.
fn notify(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        debug!("cannot notify systemd: {e}");
    }
}

fn notify_ready(s: &Settings) {
    let status = format!("node {}: {} front ends, {} idle connections each", s.node, s.frontends.len(), s.idle);
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
}

/// The keeper of one front end, with its own stop and idle target (a reload
/// changes them).
struct Front {
    fe: pool::FrontEnd,
    stop: watch::Sender<bool>,
    target: watch::Sender<usize>,
    task: tokio::task::JoinHandle<pool::Stats>,
}

fn start_front(fe: &pool::FrontEnd, idle: usize, agent: &Arc<Agent>) -> Front {
    let (stop, stop_rx) = watch::channel(false);
    let (target, target_rx) = watch::channel(idle);
    let task = tokio::spawn(pool::run_frontend_watch(fe.clone(), target_rx, agent.clone(), stop_rx));
    Front { fe: fe.clone(), stop, target, task }
}

/// SIGHUP: reads the configuration again (the command line over `--config`).
/// Front ends may come and go and `idle` may change: a removed front end's
/// idle links close, its busy ones finish; the log level applies at once.
/// Anything else needs a restart: then, or when the file is not valid, the
/// running configuration stays and the error says why.
fn reload(cli: &Options, cur: &mut Settings, fronts: &mut Vec<Front>, agent: &Arc<Agent>) {
    let new = match settings(cli.clone()) {
        Ok(n) => n,
        Err(e) => {
            error!("SIGHUP: configuration refused, the running one stays: {e}");
            return;
        }
    };
    if let Some(p) = &new.secret_file {
        if let Err(e) = reversed_proto::load_secret(p) {
            error!("SIGHUP: configuration refused, the running one stays: {e}");
            return;
        }
    }
    let fixed: Vec<&str> = [
        ("node", cur.node != new.node),
        ("secret_file", cur.secret_file != new.secret_file),
        ("backend/respond/echo/body_size", cur.mode != new.mode),
        ("max_backoff_ms", cur.max_backoff != new.max_backoff),
        ("listen", cur.listen != new.listen),
        ("mcmp settings", cur.mcmp != new.mcmp),
        ("keepalive/user_timeout", cur.tcp != new.tcp),
        ("metrics_listen", cur.metrics_listen != new.metrics_listen),
        ("log_format", cur.log_format != new.log_format),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(k, _)| k)
    .collect();
    if !fixed.is_empty() {
        error!(
            "SIGHUP: {} cannot change while the agent runs (restart it); the running configuration stays",
            fixed.join(", ")
        );
        return;
    }
    if new.log_level != cur.log_level {
        logging::set_level(new.log_level);
        cur.log_level = new.log_level;
    }
    let mut removed = Vec::new();
    fronts.retain(|f| {
        let keep = new.frontends.contains(&f.fe);
        if !keep {
            let _ = f.stop.send(true);
            removed.push(f.fe.to_string());
        }
        keep
    });
    for f in fronts.iter() {
        let _ = f.target.send(new.idle);
    }
    let mut added = Vec::new();
    for fe in &new.frontends {
        if !fronts.iter().any(|f| f.fe == *fe) {
            fronts.push(start_front(fe, new.idle, agent));
            added.push(fe.to_string());
        }
    }
    info!(
        "SIGHUP: configuration reloaded: front ends {} (added: {}; removed: {}), {} idle connections per front end",
        new.frontends.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", "),
        if added.is_empty() { "none".to_string() } else { added.join(", ") },
        if removed.is_empty() { "none".to_string() } else { removed.join(", ") },
        new.idle
    );
    cur.frontends = new.frontends;
    cur.idle = new.idle;
}

async fn run(cli: Options, mut s: Settings, secret: Option<Vec<u8>>) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let (mode, mode_desc) = match &s.mode {
        ModeSetting::Splice(b) => (Mode::Splice { backend: b.clone() }, format!("splice to {b}")),
        ModeSetting::Respond { body_size, echo, tls } => {
            let t = match tls.as_ref().map(reversed_agent::tls::load).transpose() {
                Ok(t) => t,
                Err(e) => {
                    error!("{e}");
                    return ExitCode::from(2);
                }
            };
            let desc = match &t {
                Some(t) if t.mutual => " over TLS (client certificates required)",
                Some(_) => " over TLS",
                None => "",
            };
            (
                Mode::Respond(responder::Config::new(*body_size, *echo).with_tls(t)),
                if *echo { format!("respond (echo){desc}") } else { format!("respond ({body_size}-byte body){desc}") },
            )
        }
    };
    let fe_list = s.frontends.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
    info!(
        "reversed-agent {} starting: node {}, front ends {}, {} idle connections per front end, mode {}, auth {}, max backoff {} ms",
        env!("CARGO_PKG_VERSION"),
        s.node,
        fe_list,
        s.idle,
        mode_desc,
        if secret.is_some() { "hmac" } else { "none" },
        s.max_backoff.as_millis()
    );
    let (mut term, mut int, mut hup) =
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup())) {
            (Ok(t), Ok(i), Ok(h)) => (t, i, h),
            _ => {
                error!("cannot install signal handlers");
                return ExitCode::from(1);
            }
        };
    let busy = Arc::new(Busy::default());
    let agent = Arc::new(Agent {
        node: s.node.clone(),
        secret,
        mode,
        max_backoff: s.max_backoff,
        busy: busy.clone(),
        tcp: s.tcp,
        metrics: metrics::Metrics::new(),
    });
    let (sd_tx, sd_rx) = watch::channel(false);
    if let Some(addr) = s.metrics_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                info!("metrics on http://{addr}/metrics");
                tokio::spawn(metrics::serve(l, agent.metrics.clone(), sd_rx.clone()));
            }
            Err(e) => {
                error!("cannot listen on {addr} for metrics: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let (Some(addr), Mode::Respond(cfg)) = (&s.listen, &agent.mode) {
        match tokio::net::TcpListener::bind(addr.as_str()).await {
            Ok(l) => {
                info!("responder listening on {addr}");
                tokio::spawn(listen_loop(l, cfg.clone(), busy.clone(), sd_rx.clone()));
            }
            Err(e) => {
                error!("cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut fronts: Vec<Front> = s.frontends.iter().map(|fe| start_front(fe, s.idle, &agent)).collect();
    let registrars = match &s.mcmp {
        Some(m) => {
            let ms = Arc::new(mcmp::Settings::new(m.receivers.clone(), m.registration.clone(), m.status_interval));
            let load = Arc::new(mcmp::LoadSource {
                busy: busy.clone(),
                capacity: m.capacity.unwrap_or(s.idle * s.frontends.len()),
                backend: match &s.mode {
                    ModeSetting::Splice(b) => Some(b.clone()),
                    ModeSetting::Respond { .. } => None,
                },
            });
            info!(
                "MCMP: registering node {} with {} (STATUS every {} s)",
                s.node,
                m.receivers.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "),
                m.status_interval.as_secs()
            );
            let (stop_tx, stop_rx) = watch::channel(false);
            let tasks: Vec<_> = m
                .receivers
                .iter()
                .map(|r| {
                    let m = agent.metrics.mcmp(&r.to_string());
                    tokio::spawn(mcmp::run(ms.clone(), load.clone(), r.clone(), m, stop_rx.clone()))
                })
                .collect();
            Some((ms, stop_tx, tasks))
        }
        None => None,
    };
    notify_ready(&s);
    let sig = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                match sd_notify::NotifyState::monotonic_usec_now() {
                    Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
                    Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
                }
                reload(&cli, &mut s, &mut fronts, &agent);
                notify_ready(&s);
            }
        }
    };
    notify(&[sd_notify::NotifyState::Stopping]);
    if let Some((ms, stop_tx, tasks)) = registrars {
        // No STATUS may follow the REMOVE-APP: stop the registrars first.
        let _ = stop_tx.send(true);
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        info!("{sig}: removing node {} from httpd (REMOVE-APP, up to {} ms)", s.node, mcmp::REMOVE_TIMEOUT.as_millis());
        mcmp::remove_all(&ms, mcmp::REMOVE_TIMEOUT).await;
    }
    info!(
        "{sig}: stopping: no more dials, closing idle connections, waiting for {} busy connections (up to {} s)",
        busy.count(),
        SHUTDOWN_GRACE.as_secs()
    );
    let _ = sd_tx.send(true);
    for f in &fronts {
        let _ = f.stop.send(true);
    }
    for f in fronts {
        let _ = f.task.await;
    }
    tokio::select! {
        _ = busy.wait_zero() => info!("all connections finished; exiting"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("{} busy connections still open after {} s; exiting anyway", busy.count(), SHUTDOWN_GRACE.as_secs()),
        _ = term.recv() => warn!("second signal: exiting now with {} busy connections", busy.count()),
        _ = int.recv() => warn!("second signal: exiting now with {} busy connections", busy.count()),
    }
    ExitCode::SUCCESS
}

/// `--listen`: the responder as an ordinary backend that httpd dials.
async fn listen_loop(l: tokio::net::TcpListener, cfg: responder::Config, busy: Arc<Busy>, sd: watch::Receiver<bool>) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                let (cfg, sd, guard) = (cfg.clone(), sd.clone(), busy.enter());
                tokio::spawn(async move {
                    responder::serve(s, Vec::new(), &cfg, sd).await;
                    drop(guard);
                });
            }
            Err(e) => {
                warn!("responder listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut v = vec!["reversed-agent"];
        v.extend_from_slice(args);
        settings(Options::try_parse_from(v).map_err(|e| e.to_string())?)
    }

    #[test]
    fn cli_defaults_and_validation() {
        let s = parse(&["--frontend", "127.0.0.1:9000-9003", "--node", "app1", "--no-auth", "--respond"]).unwrap();
        assert_eq!(s.idle, 8);
        assert_eq!(s.max_backoff, Duration::from_millis(5000));
        assert_eq!(s.mode, ModeSetting::Respond { body_size: 1024, echo: false, tls: None });
        assert!(s.secret_file.is_none());
        assert_eq!(s.log_level, Level::Info);
        assert!(parse(&["--node", "app1", "--no-auth", "--respond"]).unwrap_err().contains("--frontend"));
        assert!(parse(&["--frontend", "h:1", "--node", "a b", "--no-auth", "--respond"]).is_err());
        assert!(parse(&["--frontend", "h:1", "--node", "a", "--respond"]).unwrap_err().contains("--secret-file"));
        assert!(parse(&["--frontend", "h:1", "--node", "a", "--no-auth"]).unwrap_err().contains("--backend"));
        assert!(parse(&["--frontend", "h:1", "--node", "a", "--no-auth", "--backend", "b:0"]).is_err());
        assert!(parse(&["--frontend", "h:1", "--node", "a", "--no-auth", "--respond", "--idle", "0"]).is_err());
        assert!(parse(&["--frontend", "h:1", "--node", "a", "--no-auth", "--respond", "--log-level", "loud"]).is_err());
        let s = parse(&[
            "--frontend",
            "h:1",
            "--frontend",
            "g:5-6",
            "--node",
            "a",
            "--secret-file",
            "/s",
            "--backend",
            "127.0.0.1:8009",
        ])
        .unwrap();
        assert_eq!(s.frontends.len(), 2);
        assert_eq!(s.mode, ModeSetting::Splice("127.0.0.1:8009".into()));
    }

    #[test]
    fn config_file_and_overrides() {
        let dir = std::env::temp_dir().join(format!("reversed-agent-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("agent.toml");
        std::fs::write(
            &p,
            r#"
frontends = ["127.0.0.1:9000-9003", "10.0.0.2:9000"]
node = "app1"
secret_file = "/etc/reversed/app1.secret"
idle = 16
backend = "127.0.0.1:8009"
max_backoff_ms = 2000
log_level = "debug"
"#,
        )
        .unwrap();
        let ps = p.to_str().unwrap();
        let s = parse(&["--config", ps]).unwrap();
        assert_eq!(s.frontends.len(), 2);
        assert_eq!(s.idle, 16);
        assert_eq!(s.log_level, Level::Debug);
        assert_eq!(s.secret_file.as_deref(), Some(std::path::Path::new("/etc/reversed/app1.secret")));
        let s = parse(&["--config", ps, "--idle", "3", "--frontend", "h:1", "--respond", "--echo"]).unwrap();
        assert_eq!(s.idle, 3);
        assert_eq!(s.frontends, vec![FrontEnd::parse("h:1").unwrap()]);
        assert_eq!(s.mode, ModeSetting::Respond { body_size: 1024, echo: true, tls: None });
        std::fs::write(&p, "nodee = \"x\"\n").unwrap();
        assert!(parse(&["--config", ps]).unwrap_err().contains("nodee"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mcmp_flags() {
        let base = ["--frontend", "10.0.0.5:9000-9003", "--node", "app1", "--no-auth", "--respond"];
        let p = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            parse(&v)
        };
        assert!(p(&[]).unwrap().mcmp.is_none());
        let m = p(&["--mcmp", "http://127.0.0.1:8090/mcmp"]).unwrap().mcmp.unwrap();
        assert_eq!(m.receivers, vec![mcmp::Receiver::parse("http://127.0.0.1:8090/mcmp").unwrap()]);
        assert_eq!(m.status_interval, Duration::from_secs(5));
        assert_eq!(m.capacity, None);
        assert_eq!(
            m.registration,
            mcmp::Registration {
                node: "app1".into(),
                balancer: None,
                kind: "ajp".into(),
                host: "10.0.0.5".into(),
                port: 9000,
                aliases: vec![],
                contexts: vec![],
            }
        );
        let m = p(&[
            "--mcmp",
            "http://h1:1",
            "--mcmp",
            "http://h2:2/x",
            "--balancer",
            "shop",
            "--type",
            "HTTP",
            "--alias",
            "localhost, www",
            "--context",
            "/app,/",
            "--status-interval",
            "2",
            "--capacity",
            "200",
        ])
        .unwrap()
        .mcmp
        .unwrap();
        assert_eq!(m.receivers.len(), 2);
        assert_eq!(m.registration.balancer.as_deref(), Some("shop"));
        assert_eq!(m.registration.kind, "http");
        assert_eq!(m.registration.aliases, vec!["localhost", "www"]);
        assert_eq!(m.registration.contexts, vec!["/app", "/"]);
        assert_eq!(m.status_interval, Duration::from_secs(2));
        assert_eq!(m.capacity, Some(200));
        for (extra, want) in [
            (&["--capacity", "50"][..], "need --mcmp"),
            (&["--mcmp", "http://h/", "--capacity", "0"][..], "--capacity must be"),
            (&["--balancer", "b"][..], "need --mcmp"),
            (&["--status-interval", "3"][..], "need --mcmp"),
            (&["--mcmp", "https://h/"][..], "plain http"),
            (&["--mcmp", "http://h/", "--type", "fcgi"][..], "--type"),
            (&["--mcmp", "http://h/", "--alias", "a"][..], "--alias and --context"),
            (&["--mcmp", "http://h/", "--context", "/a"][..], "--alias and --context"),
            (&["--mcmp", "http://h/", "--status-interval", "0"][..], "--status-interval"),
            (&["--mcmp", "http://h/", "--balancer", "Shop"][..], "lower case"),
            (&["--mcmp", "http://h/", "--balancer", &"b".repeat(40)][..], "Balancer field too big"),
        ] {
            let e = p(extra).unwrap_err();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        // A 64-byte node name is valid for the handshake but too long for JVMRoute.
        let long = "n".repeat(64);
        let e = parse(&["--frontend", "h:1", "--node", &long, "--no-auth", "--respond", "--mcmp", "http://h/"])
            .unwrap_err();
        assert!(e.contains("JVMRoute field too big"), "{e}");
        // --listen alone has no front end to register.
        let e = parse(&["--listen", "127.0.0.1:18009", "--respond", "--mcmp", "http://h/"]).unwrap_err();
        assert!(e.contains("--frontend"), "{e}");
        // IPv6 front end: Host in brackets, as the Java side.
        let s =
            parse(&["--frontend", "[::1]:9100-9101", "--node", "a", "--no-auth", "--respond", "--mcmp", "http://h/"])
                .unwrap();
        assert_eq!(s.mcmp.unwrap().registration.host, "[::1]");
    }

    #[test]
    fn mcmp_config_file_keys() {
        let dir = std::env::temp_dir().join(format!("reversed-agent-mcmp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("agent.toml");
        std::fs::write(
            &p,
            r#"
frontends = ["127.0.0.1:9000-9003"]
node = "app1"
no_auth = true
respond = true
mcmp = ["http://127.0.0.1:8090/mcmp", "http://127.0.0.2:8090/"]
balancer = "shop"
type = "http"
alias = ["localhost", "www"]
context = "/app,/x"
status_interval = 7
capacity = 150
"#,
        )
        .unwrap();
        let ps = p.to_str().unwrap();
        let m = parse(&["--config", ps]).unwrap().mcmp.unwrap();
        assert_eq!(m.receivers.len(), 2);
        assert_eq!(m.registration.kind, "http");
        assert_eq!(m.registration.balancer.as_deref(), Some("shop"));
        assert_eq!(m.registration.aliases, vec!["localhost", "www"]);
        assert_eq!(m.registration.contexts, vec!["/app", "/x"]);
        assert_eq!(m.status_interval, Duration::from_secs(7));
        assert_eq!(m.capacity, Some(150));
        // Flags override; a single URL string works too.
        std::fs::write(
            &p,
            "frontends = [\"h:1\"]\nnode = \"a\"\nno_auth = true\nrespond = true\nmcmp = \"http://h:2/\"\n",
        )
        .unwrap();
        let m = parse(&["--config", ps, "--status-interval", "9"]).unwrap().mcmp.unwrap();
        assert_eq!(m.receivers[0].port, 2);
        assert_eq!(m.status_interval, Duration::from_secs(9));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn listen_mode_needs_respond_and_makes_frontends_optional() {
        let s = parse(&["--listen", "127.0.0.1:18009", "--respond"]).unwrap();
        assert_eq!(s.listen.as_deref(), Some("127.0.0.1:18009"));
        assert!(s.frontends.is_empty());
        assert!(parse(&["--listen", "127.0.0.1:18009"]).unwrap_err().contains("--respond"));
        assert!(parse(&["--listen", "nowhere", "--respond"]).unwrap_err().contains("--listen"));
        assert!(parse(&["--respond"]).unwrap_err().contains("--frontend"));
    }

    /// A deserializer that only takes the key list serde passes for a struct.
    struct Keys<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Keys<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("keys taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    /// The flags and the config file's keys cannot drift: every flag but
    /// `--config` has its key (the long name with '_' for '-'; `frontends`
    /// for `--frontend`), every key its flag, and the file accepts each key.
    #[test]
    fn every_flag_has_a_toml_key_and_every_key_a_flag() {
        use clap::CommandFactory;
        let mut keys: &'static [&'static str] = &[];
        let _ = Options::deserialize(Keys(&mut keys));
        assert!(keys.len() >= 20, "{keys:?}");
        let key_of = |long: &str| if long == "frontend" { "frontends".to_string() } else { long.replace('-', "_") };
        let cmd = Options::command();
        let flags: Vec<&str> =
            cmd.get_arguments().filter_map(|a| a.get_long()).filter(|l| !["help", "version"].contains(l)).collect();
        assert!(flags.contains(&"config") && flags.contains(&"user-timeout"), "{flags:?}");
        for long in &flags {
            if *long == "config" || *long == "check-config" || *long == "man" {
                assert!(
                    !keys.contains(&"config") && !keys.contains(&"check_config") && !keys.contains(&"man"),
                    "a config file cannot name another"
                );
                continue;
            }
            assert!(keys.contains(&key_of(long).as_str()), "--{long} has no config file key {:?}", key_of(long));
        }
        for key in keys {
            assert!(
                flags.iter().any(|l| key_of(l) == *key || l.replace('-', "_") == *key),
                "config file key {key:?} has no flag"
            );
            let e = toml::from_str::<Options>(&format!("{key} = 0")).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!e.contains("unknown field"), "{key}: {e}");
        }
        // And an unknown key is refused, naming it.
        let e = toml::from_str::<Options>("config = \"/x\"").unwrap_err().to_string();
        assert!(e.contains("unknown field `config`"), "{e}");
    }
}
