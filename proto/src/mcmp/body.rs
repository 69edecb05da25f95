//! The request bodies: CONFIG, the *-APP commands, STATUS and PING, each
//! parsed with mod_manager's rules and encoded as the Java side sends it.

use super::error::{smespar, text, Error};
use super::request::encode_body;
use super::rules::*;

/// `Load` of a STATUS that carries none: mod_manager starts from -2
/// (process_status, line 2394) and mod_proxy_cluster's `proxy_node_isup`
/// treats -2 as "only ping the node, keep its load".
pub const NO_LOAD: i32 = -2;

/// How a CONFIG key we keep in [`ConfigMsg::other`] is checked.
#[derive(Clone, Copy)]
enum Check {
    /// mod_manager takes any value (atoi, or a boolean it may ignore).
    Any,
    /// Byte length below the size, else the text.
    Size(usize, &'static str),
    /// `ap_timeout_parameter_parse` with this default unit, else the text.
    Timeout(&'static str, &'static str),
}

/// The CONFIG keys mod_manager knows and we keep without interpreting, in the
/// spelling the Java side uses (process_config_balancer, lines 982-1029;
/// process_config_node, lines 1031-1132).
const OTHER_KEYS: [(&str, Check); 13] = [
    ("StickySession", Check::Any),
    ("StickySessionCookie", Check::Size(COOKIE_SIZE, text::SBAFBIG)),
    ("StickySessionPath", Check::Size(PATH_SIZE, text::SBAFBIG)),
    ("StickySessionRemove", Check::Any),
    ("StickySessionForce", Check::Any),
    ("WaitWorker", Check::Any),
    ("Maxattempts", Check::Any),
    ("flushpackets", Check::Any),
    ("flushwait", Check::Timeout("ms", text::SFLUBAD)),
    ("ping", Check::Timeout("s", text::SPNGBAD)),
    ("smax", Check::Any),
    ("ttl", Check::Timeout("s", text::STTLBAD)),
    ("Timeout", Check::Timeout("s", text::STIMBAD)),
];

/// A CONFIG message: the node and its balancer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigMsg {
    pub jvm_route: String,
    /// Lower-cased as mod_manager's normalize_balancer_name does (line 513).
    /// None: httpd's default (`ManagerBalancerName` or `mycluster`).
    pub balancer: Option<String>,
    /// The load-balancing group ("LBGroup").
    pub domain: Option<String>,
    /// None: mod_manager's default `localhost`. A `[v6%zone]` loses its zone.
    pub host: Option<String>,
    /// None: mod_manager's default 8009.
    pub port: Option<u16>,
    /// `Type`: ajp, http, https, ... None: `ajp`.
    pub kind: Option<String>,
    /// `Reversed`: the node dials its connections into httpd.
    pub reversed: bool,
    /// Lower-cased (ASCII).
    pub aliases: Vec<String>,
    pub contexts: Vec<String>,
    /// The other keys of [`OTHER_KEYS`] in the order received, under their
    /// canonical spelling (`flushpackets`, `ping`, `smax`, `ttl`, `Timeout`,
    /// `flushwait`, `StickySession*`, `WaitWorker`, `Maxattempts`), values as
    /// received (decoded).
    pub other: Vec<(String, String)>,
}

/// Parses a CONFIG body with mod_manager's rules (process_config, lines
/// 1277-1343, and the helpers it calls per pair, in message order):
/// - every value must be non-empty, else `SMESPAR` (line 1307); an empty body
///   also gives `SMESPAR` (its single empty token has no value);
/// - keys case-insensitive; unknown keys ignored; a repeated key: the last one
///   counts (Alias and Context add to their lists);
/// - limits (bytes, exclusive): JVMRoute 64 `SROUBIG`, Balancer 40 `SBALBIG`,
///   Domain 20 `SDOMBIG`, Host 64 `SHOSBIG` (checked before the zone is
///   stripped), Port 7 `SPORBIG`, Type 16 `STYPBIG`, StickySessionCookie and
///   StickySessionPath 30 `SBAFBIG`; flushwait/ping/ttl/Timeout must pass
///   `ap_timeout_parameter_parse` (`SFLUBAD`/`SPNGBAD`/`STTLBAD`/`STIMBAD`);
///   Alias/Context lists as [`parse_list`];
/// - then a missing JVMRoute is `SROUBAD`, aliases without contexts `SALIBAD`
///   and contexts without aliases `SCONBAD` (lines 1331-1343).
///
/// Ours: `Port` must be a number 0-65535 ([`text::PORT_BAD`]), and
/// `Reversed` must be a [`parse_bool`] value ([`text::REVERSED_BAD`]):
/// mod_manager would leave the node forward for a value it does not know, and
/// a reversed node registered as forward makes httpd dial the node's Host:Port
/// (its own address, for a reversed node). We reject instead of guessing.
pub fn parse_config(body: &[u8]) -> Result<ConfigMsg, Error> {
    let pairs = parse_pairs(body)?;
    if pairs.is_empty() {
        return Err(smespar());
    }
    let mut m = ConfigMsg::default();
    for (k, v) in pairs {
        if v.is_empty() {
            return Err(smespar());
        }
        let big = |limit: usize, t: &'static str| -> Result<(), Error> {
            if v.len() >= limit {
                Err(Error::syntax(t))
            } else {
                Ok(())
            }
        };
        let key = k.to_ascii_lowercase();
        match key.as_str() {
            "jvmroute" => {
                big(JVMROUTE_SIZE, text::SROUBIG)?;
                m.jvm_route = v;
            }
            "balancer" => {
                big(BALANCER_SIZE, text::SBALBIG)?;
                m.balancer = Some(v.to_ascii_lowercase());
            }
            "domain" => {
                big(DOMAIN_SIZE, text::SDOMBIG)?;
                m.domain = Some(v);
            }
            "host" => {
                big(HOST_SIZE, text::SHOSBIG)?;
                m.host = Some(strip_zone(&v));
            }
            "port" => {
                big(PORT_SIZE, text::SPORBIG)?;
                m.port = Some(parse_port(&v)?);
            }
            "type" => {
                big(TYPE_SIZE, text::STYPBIG)?;
                m.kind = Some(v);
            }
            "reversed" => {
                m.reversed = parse_bool(&v).ok_or_else(|| Error::syntax(text::REVERSED_BAD))?;
            }
            "alias" => parse_list(&v, true, &mut m.aliases)?,
            "context" => parse_list(&v, false, &mut m.contexts)?,
            _ => {
                if let Some((canon, check)) = OTHER_KEYS.iter().find(|(name, _)| name.eq_ignore_ascii_case(&key)) {
                    match *check {
                        Check::Any => {}
                        Check::Size(limit, t) => big(limit, t)?,
                        Check::Timeout(unit, t) => {
                            if !timeout_ok(&v, unit) {
                                return Err(Error::syntax(t));
                            }
                        }
                    }
                    m.other.push((canon.to_string(), v));
                }
            }
        }
    }
    if m.jvm_route.is_empty() {
        return Err(Error::syntax(text::SROUBAD));
    }
    both_or_neither(&m.aliases, &m.contexts)?;
    Ok(m)
}

impl ConfigMsg {
    /// The body as DefaultMCMPRequestFactory/DefaultMCMPHandler send it:
    /// `JVMRoute` first, then the present keys in `TreeMap` (sorted) order —
    /// Alias, Balancer, Context, Domain, Host, Maxattempts, Port, Reversed,
    /// StickySession*, Timeout, Type, WaitWorker, flushpackets, flushwait,
    /// ping, smax, ttl — names and values through [`form_encode`](super::form_encode).
    /// `Reversed=true` only when reversed (as the Java side). Lists are joined
    /// with `,` (the Java side sends Alias/Context in ENABLE-APP only).
    pub fn encode(&self) -> String {
        let mut rest: Vec<(&str, String)> = Vec::new();
        if !self.aliases.is_empty() {
            rest.push(("Alias", self.aliases.join(",")));
        }
        if !self.contexts.is_empty() {
            rest.push(("Context", self.contexts.join(",")));
        }
        if let Some(b) = &self.balancer {
            rest.push(("Balancer", b.clone()));
        }
        if let Some(d) = &self.domain {
            rest.push(("Domain", d.clone()));
        }
        if let Some(h) = &self.host {
            rest.push(("Host", h.clone()));
        }
        if let Some(p) = self.port {
            rest.push(("Port", p.to_string()));
        }
        if let Some(t) = &self.kind {
            rest.push(("Type", t.clone()));
        }
        if self.reversed {
            rest.push(("Reversed", "true".to_string()));
        }
        for (k, v) in &self.other {
            rest.push((k.as_str(), v.clone()));
        }
        encode_body(Some(&self.jvm_route), rest)
    }
}

/// ENABLE-APP, DISABLE-APP, STOP-APP, REMOVE-APP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppMsg {
    pub jvm_route: String,
    /// Lower-cased (ASCII).
    pub aliases: Vec<String>,
    pub contexts: Vec<String>,
}

/// Parses a *-APP body (process_app_cmd, lines 2112-2161): JVMRoute (limit 64,
/// `SROUBIG`), Alias and Context lists as in CONFIG; other keys are ignored,
/// and, unlike CONFIG, empty values are not an error by themselves. Then an
/// empty JVMRoute is `SROUBAD`; and unless `whole_node` (the URI was `*` or
/// ended in `/*`, see [`is_whole_node`](super::is_whole_node)): neither Alias nor Context is
/// `NOCONAL`, Alias alone `SALIBAD`, Context alone `SCONBAD`. With
/// `whole_node`, mod_manager applies the command to every context of the node
/// and ignores Alias/Context; they are still parsed (and checked) here.
pub fn parse_app(body: &[u8], whole_node: bool) -> Result<AppMsg, Error> {
    let mut m = AppMsg::default();
    for (k, v) in parse_pairs(body)? {
        if k.eq_ignore_ascii_case("JVMRoute") {
            if v.len() >= JVMROUTE_SIZE {
                return Err(Error::syntax(text::SROUBIG));
            }
            m.jvm_route = v;
        } else if k.eq_ignore_ascii_case("Alias") {
            parse_list(&v, true, &mut m.aliases)?;
        } else if k.eq_ignore_ascii_case("Context") {
            parse_list(&v, false, &mut m.contexts)?;
        }
    }
    if m.jvm_route.is_empty() {
        return Err(Error::syntax(text::SROUBAD));
    }
    if !whole_node {
        if m.aliases.is_empty() && m.contexts.is_empty() {
            return Err(Error::syntax(text::NOCONAL));
        }
        both_or_neither(&m.aliases, &m.contexts)?;
    }
    Ok(m)
}

impl AppMsg {
    /// `JVMRoute=..[&Alias=..&Context=..]` as the Java side's
    /// createContextRequest / createEngineRequest (lists joined with `,`; an
    /// empty list is left out).
    pub fn encode(&self) -> String {
        let mut rest = Vec::new();
        if !self.aliases.is_empty() {
            rest.push(("Alias", self.aliases.join(",")));
        }
        if !self.contexts.is_empty() {
            rest.push(("Context", self.contexts.join(",")));
        }
        encode_body(Some(&self.jvm_route), rest)
    }
}

/// STATUS: the node's load factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMsg {
    pub jvm_route: String,
    /// -1 broken, 0 standby, 1-100 load factor (higher: more capacity);
    /// [`NO_LOAD`] (-2) when the message had no `Load`.
    pub load: i32,
}

/// Parses a STATUS body (process_status, lines 2392-2440): JVMRoute (limit 64,
/// `SROUBIG`), Load (`sscanf %d`: leading white space and trailing text
/// allowed; each Load must leave the value in -1..=100, else
/// `TODO: Bad value for Load`, so a Load without digits is that error unless an
/// earlier Load set a valid value, which then stays); any other key is
/// `SYNTAX: Invalid field "<key>" in message`. No (or an empty) JVMRoute:
/// `TODO: No JVMRoute given!`. No Load: [`NO_LOAD`].
///
/// Unsure: mod_manager does not initialise the route buffer when no JVMRoute
/// key comes (lines 2395, 2422), so its answer then is undefined; we answer as if
/// empty.
pub fn parse_status(body: &[u8]) -> Result<StatusMsg, Error> {
    let mut route = String::new();
    let mut load = NO_LOAD as i64;
    for (k, v) in parse_pairs(body)? {
        if k.eq_ignore_ascii_case("JVMRoute") {
            if v.len() >= JVMROUTE_SIZE {
                return Err(Error::syntax(text::SROUBIG));
            }
            route = v;
        } else if k.eq_ignore_ascii_case("Load") {
            if let Some(n) = scan_int(&v) {
                load = n;
            }
            if !(-1..=100).contains(&load) {
                return Err(Error::syntax(text::BAD_LOAD));
            }
        } else {
            return Err(Error::invalid_field(&k));
        }
    }
    if route.is_empty() {
        return Err(Error::syntax(text::NO_JVMROUTE));
    }
    Ok(StatusMsg { jvm_route: route, load: load as i32 })
}

impl StatusMsg {
    /// `JVMRoute=<r>&Load=<n>` (createStatusRequest); without `Load` when it is
    /// [`NO_LOAD`].
    pub fn encode(&self) -> String {
        let rest = if self.load == NO_LOAD { Vec::new() } else { vec![("Load", self.load.to_string())] };
        encode_body(Some(&self.jvm_route), rest)
    }
}

/// PING: of httpd itself, of a node, or of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingMsg {
    /// No parameters: httpd answers OK.
    Any,
    /// Ping the node with this JVMRoute.
    Route(String),
    /// Ping `scheme://host:port` (scheme as received: ajp, http, https, ws, wss
    /// in any case).
    Url { scheme: String, host: String, port: u16 },
}

/// Parses a PING body (process_ping, lines 2487-2553). Pairs are read until
/// the first empty key; JVMRoute (limit 64, `SROUBIG`), Scheme (ajp, http,
/// https, ws or wss, case-insensitive, else `PING Unsupported scheme: <s>`),
/// Host, Port; any other key is `SBADFLD`. A non-empty JVMRoute wins over
/// Scheme/Host/Port (mod_manager pings the node's own address). Otherwise if
/// any of Scheme/Host/Port came, all three must (`SMISFLD`). Ours: the Port
/// must be a number 0-65535 ([`text::PORT_BAD`]; mod_manager `atoi`s it).
pub fn parse_ping(body: &[u8]) -> Result<PingMsg, Error> {
    let mut route = String::new();
    let (mut scheme, mut host, mut port) = (None, None, None);
    for (k, v) in parse_pairs(body)? {
        if k.is_empty() {
            break;
        }
        if k.eq_ignore_ascii_case("JVMRoute") {
            if v.len() >= JVMROUTE_SIZE {
                return Err(Error::syntax(text::SROUBIG));
            }
            route = v;
        } else if k.eq_ignore_ascii_case("Scheme") {
            if !["ajp", "http", "https", "ws", "wss"].iter().any(|s| s.eq_ignore_ascii_case(&v)) {
                return Err(Error::unsupported_scheme(&v));
            }
            scheme = Some(v);
        } else if k.eq_ignore_ascii_case("Host") {
            host = Some(v);
        } else if k.eq_ignore_ascii_case("Port") {
            port = Some(v);
        } else {
            return Err(Error::invalid_field(&k));
        }
    }
    if !route.is_empty() {
        return Ok(PingMsg::Route(route));
    }
    match (scheme, host, port) {
        (None, None, None) => Ok(PingMsg::Any),
        (Some(scheme), Some(host), Some(port)) => Ok(PingMsg::Url { scheme, host, port: parse_port(&port)? }),
        _ => Err(Error::syntax(text::SMISFLD)),
    }
}

impl PingMsg {
    /// Empty, `JVMRoute=<r>`, or `Host=..&Port=..&Scheme=..` (createPingRequest;
    /// TreeMap order).
    pub fn encode(&self) -> String {
        match self {
            PingMsg::Any => String::new(),
            PingMsg::Route(r) => encode_body(Some(r), Vec::new()),
            PingMsg::Url { scheme, host, port } => {
                encode_body(None, vec![("Scheme", scheme.clone()), ("Host", host.clone()), ("Port", port.to_string())])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcmp::testutil::{pairs, syn};
    use crate::mcmp::ErrorType;

    /// The body the Java side sends for a reverse connector (TreeMap order).
    #[test]
    fn java_config_body_with_reversed() {
        let body = "JVMRoute=node1&Host=10.0.0.1&Port=9000&Reversed=true&Type=ajp";
        let m = parse_config(body.as_bytes()).unwrap();
        assert_eq!(
            m,
            ConfigMsg {
                jvm_route: "node1".into(),
                host: Some("10.0.0.1".into()),
                port: Some(9000),
                kind: Some("ajp".into()),
                reversed: true,
                ..Default::default()
            }
        );
        assert_eq!(m.encode(), body);
        let full = ConfigMsg {
            jvm_route: "n 1".into(),
            balancer: Some("shop".into()),
            domain: Some("g1".into()),
            host: Some("[::1]".into()),
            port: Some(8009),
            kind: Some("http".into()),
            reversed: true,
            aliases: vec!["a".into(), "b.example".into()],
            contexts: vec!["/x".into(), "/".into()],
            other: pairs(&[
                ("Maxattempts", "2"),
                ("StickySessionForce", "No"),
                ("Timeout", "20"),
                ("flushpackets", "On"),
                ("ping", "5"),
                ("ttl", "30"),
            ]),
        };
        assert_eq!(
            full.encode(),
            "JVMRoute=n+1&Alias=a%2Cb.example&Balancer=shop&Context=%2Fx%2C%2F&Domain=g1\
             &Host=%5B%3A%3A1%5D&Maxattempts=2&Port=8009&Reversed=true&StickySessionForce=No\
             &Timeout=20&Type=http&flushpackets=On&ping=5&ttl=30"
        );
        let mut back = full.clone();
        back.jvm_route = "n+1".into(); // mod_manager keeps Java's '+'
        assert_eq!(parse_config(full.encode().as_bytes()).unwrap(), back);
    }

    #[test]
    fn config_rules() {
        let c = |s: &str| parse_config(s.as_bytes());
        // Mandatory JVMRoute, empty values, empty body.
        assert_eq!(c(""), Err(syn(text::SMESPAR)));
        assert_eq!(c("Host=h"), Err(syn(text::SROUBAD)));
        assert_eq!(c("JVMRoute="), Err(syn(text::SMESPAR)));
        assert_eq!(c("JVMRoute=a&Unknown="), Err(syn(text::SMESPAR)));
        assert_eq!(c("JVMRoute=a&Foo=bar").unwrap().jvm_route, "a");
        assert_eq!(c("jvmroute=a&JVMROUTE=b").unwrap().jvm_route, "b");
        // Limits: size - 1 passes, size fails.
        for (key, size, t) in [
            ("JVMRoute", JVMROUTE_SIZE, text::SROUBIG),
            ("Balancer", BALANCER_SIZE, text::SBALBIG),
            ("Domain", DOMAIN_SIZE, text::SDOMBIG),
            ("Host", HOST_SIZE, text::SHOSBIG),
            ("Type", TYPE_SIZE, text::STYPBIG),
            ("StickySessionCookie", COOKIE_SIZE, text::SBAFBIG),
            ("StickySessionPath", PATH_SIZE, text::SBAFBIG),
            ("Alias", ALIAS_SIZE, text::SALIBIG),
            ("Context", CONTEXT_SIZE, text::SCONBIG),
        ] {
            let ok = format!("JVMRoute=r&Alias=a&Context=%2F&{key}={}", "x".repeat(size - 1));
            assert!(c(&ok).is_ok(), "{key}");
            let bad = format!("JVMRoute=r&Alias=a&Context=%2F&{key}={}", "x".repeat(size));
            assert_eq!(c(&bad), Err(syn(t)), "{key}");
        }
        assert_eq!(c("JVMRoute=r&Port=1234567"), Err(syn(text::SPORBIG)));
        assert_eq!(c("JVMRoute=r&Port=65535").unwrap().port, Some(65535));
        assert_eq!(c("JVMRoute=r&Port=65536"), Err(syn(text::PORT_BAD)));
        assert_eq!(c("JVMRoute=r&Port=%2B80"), Err(syn(text::PORT_BAD)));
        assert_eq!(c("JVMRoute=r&Port=ajp"), Err(syn(text::PORT_BAD)));
        // Balancer and aliases lower-cased; zone stripped.
        let m = c("JVMRoute=R&Balancer=MyCluster&Alias=WWW.Example,B&Context=%2FApp&Host=%5Bfe80%3A%3A1%25eth0%5D")
            .unwrap();
        assert_eq!(m.jvm_route, "R");
        assert_eq!(m.balancer.as_deref(), Some("mycluster"));
        assert_eq!(m.aliases, vec!["www.example", "b"]);
        assert_eq!(m.contexts, vec!["/App"]);
        assert_eq!(m.host.as_deref(), Some("[fe80::1]"));
        assert_eq!(c("JVMRoute=r&Host=h%25x").unwrap().host.as_deref(), Some("h%x"));
        // Alias/Context both or neither; empty list items.
        assert_eq!(c("JVMRoute=r&Alias=a"), Err(syn(text::SALIBAD)));
        assert_eq!(c("JVMRoute=r&Context=%2F"), Err(syn(text::SCONBAD)));
        assert_eq!(c("JVMRoute=r&Alias=a%2C&Context=%2F"), Err(syn(text::EMPTY_ALIAS)));
        assert_eq!(c("JVMRoute=r&Alias=a&Context=%2Fa%2C%2C%2Fb"), Err(syn(text::EMPTY_CONTEXT)));
        let m = c("JVMRoute=r&Alias=a&Alias=b,c&Context=%2Fx&Context=%2Fy").unwrap();
        assert_eq!(m.aliases, vec!["a", "b", "c"]);
        assert_eq!(m.contexts, vec!["/x", "/y"]);
        // Reversed.
        for (v, r) in [("true", true), ("yes", true), ("On", true), ("1", true), ("no", false), ("false", false)] {
            assert_eq!(c(&format!("JVMRoute=r&Reversed={v}")).unwrap().reversed, r, "{v}");
        }
        assert_eq!(c("JVMRoute=r&reversed=maybe"), Err(syn(text::REVERSED_BAD)));
        assert!(!c("JVMRoute=r").unwrap().reversed);
        // Timeouts.
        for (key, t) in
            [("flushwait", text::SFLUBAD), ("ping", text::SPNGBAD), ("ttl", text::STTLBAD), ("Timeout", text::STIMBAD)]
        {
            for ok in ["10", "10s", "10ms", "2mi", "1h", "-5", "%205", "ms", "10sec", "0"] {
                assert!(c(&format!("JVMRoute=r&{key}={ok}")).is_ok(), "{key}={ok}");
            }
            for bad in ["abc", "10x", "10m", "%20", "99999999999999999999", "1.5"] {
                assert_eq!(c(&format!("JVMRoute=r&{key}={bad}")), Err(syn(t)), "{key}={bad}");
            }
        }
        // Kept keys, canonical spelling, in order.
        let m = c(
            "JVMRoute=r&SMAX=5&flushPackets=auto&stickysession=no&WAITWORKER=3&maxattempts=x&StickySessionRemove=yes",
        )
        .unwrap();
        assert_eq!(
            m.other,
            pairs(&[
                ("smax", "5"),
                ("flushpackets", "auto"),
                ("StickySession", "no"),
                ("WaitWorker", "3"),
                ("Maxattempts", "x"),
                ("StickySessionRemove", "yes")
            ])
        );
        // The first failing pair decides.
        assert_eq!(c("JVMRoute=r&Type=xxxxxxxxxxxxxxxxxxxxx&Port=1234567"), Err(syn(text::STYPBIG)));
    }

    #[test]
    fn app_rules() {
        let a = |s: &str, w: bool| parse_app(s.as_bytes(), w);
        let m = a("JVMRoute=n1&Alias=Localhost%2Cexample.com&Context=%2Fmyapp", false).unwrap();
        assert_eq!(
            m,
            AppMsg {
                jvm_route: "n1".into(),
                aliases: vec!["localhost".into(), "example.com".into()],
                contexts: vec!["/myapp".into()]
            }
        );
        assert_eq!(m.encode(), "JVMRoute=n1&Alias=localhost%2Cexample.com&Context=%2Fmyapp");
        assert_eq!(a("JVMRoute=n1", true).unwrap(), AppMsg { jvm_route: "n1".into(), ..Default::default() });
        assert_eq!(a("JVMRoute=n1", false), Err(syn(text::NOCONAL)));
        assert_eq!(a("JVMRoute=n1&Alias=a", false), Err(syn(text::SALIBAD)));
        assert_eq!(a("JVMRoute=n1&Context=%2F", false), Err(syn(text::SCONBAD)));
        assert!(a("JVMRoute=n1&Alias=a", true).is_ok());
        assert_eq!(a("Alias=a&Context=%2F", false), Err(syn(text::SROUBAD)));
        assert_eq!(a("JVMRoute=&Alias=a&Context=%2F", false), Err(syn(text::SROUBAD)));
        assert_eq!(a(&format!("JVMRoute={}", "r".repeat(64)), true), Err(syn(text::SROUBIG)));
        assert_eq!(a("JVMRoute=n&Alias=&Context=%2F", false), Err(syn(text::EMPTY_ALIAS)));
        assert_eq!(a("JVMRoute=n&Alias=a&Context=", false), Err(syn(text::EMPTY_CONTEXT)));
        // Unknown keys and empty values of them are ignored.
        assert!(a("JVMRoute=n&Foo=&Alias=a&Context=%2F", false).is_ok());
        assert_eq!(a("", true), Err(syn(text::SROUBAD)));
    }

    #[test]
    fn status_rules() {
        let s = |b: &str| parse_status(b.as_bytes());
        assert_eq!(s("JVMRoute=n1&Load=55").unwrap(), StatusMsg { jvm_route: "n1".into(), load: 55 });
        assert_eq!(StatusMsg { jvm_route: "n1".into(), load: 55 }.encode(), "JVMRoute=n1&Load=55");
        assert_eq!(s("JVMRoute=n1").unwrap().load, NO_LOAD);
        assert_eq!(StatusMsg { jvm_route: "n1".into(), load: NO_LOAD }.encode(), "JVMRoute=n1");
        assert_eq!(s("load=-1&jvmroute=x").unwrap(), StatusMsg { jvm_route: "x".into(), load: -1 });
        assert_eq!(s("JVMRoute=n1&Load=%2050abc").unwrap().load, 50);
        assert_eq!(s("JVMRoute=n1&Load=%2B7").unwrap().load, 7);
        for bad in ["101", "-2", "abc", "", "99999999999999999999"] {
            assert_eq!(s(&format!("JVMRoute=n1&Load={bad}")), Err(syn(text::BAD_LOAD)), "{bad}");
        }
        // A later unparsable Load keeps the earlier valid one (sscanf leaves it).
        assert_eq!(s("JVMRoute=n1&Load=5&Load=x").unwrap().load, 5);
        assert_eq!(s("JVMRoute=n1&Load=5&Foo=1"), Err(Error::invalid_field("Foo")));
        assert_eq!(s("JVMRoute=n1&Foo=1").unwrap_err().mess, "SYNTAX: Invalid field \"Foo\" in message");
        assert_eq!(s("Load=5"), Err(syn(text::NO_JVMROUTE)));
        assert_eq!(s("JVMRoute=&Load=5"), Err(syn(text::NO_JVMROUTE)));
        assert_eq!(s(""), Err(syn(text::NO_JVMROUTE)));
        assert_eq!(s(&format!("JVMRoute={}", "r".repeat(64))), Err(syn(text::SROUBIG)));
        assert_eq!(s(&format!("JVMRoute={}", "r".repeat(63))).unwrap().jvm_route.len(), 63);
    }

    #[test]
    fn ping_rules() {
        let p = |b: &str| parse_ping(b.as_bytes());
        assert_eq!(p("").unwrap(), PingMsg::Any);
        assert_eq!(PingMsg::Any.encode(), "");
        assert_eq!(p("JVMRoute=n1").unwrap(), PingMsg::Route("n1".into()));
        assert_eq!(PingMsg::Route("n1".into()).encode(), "JVMRoute=n1");
        let u = PingMsg::Url { scheme: "ajp".into(), host: "10.0.0.1".into(), port: 8009 };
        assert_eq!(u.encode(), "Host=10.0.0.1&Port=8009&Scheme=ajp");
        assert_eq!(p("Scheme=ajp&Host=10.0.0.1&Port=8009").unwrap(), u);
        assert_eq!(p("JVMRoute=n1&Scheme=HTTP&Host=h&Port=1").unwrap(), PingMsg::Route("n1".into()));
        assert_eq!(
            p("JVMRoute=&Scheme=wss&Host=h&Port=1").unwrap(),
            PingMsg::Url { scheme: "wss".into(), host: "h".into(), port: 1 }
        );
        assert_eq!(p("Scheme=ajp&Host=h"), Err(syn(text::SMISFLD)));
        assert_eq!(p("Port=1"), Err(syn(text::SMISFLD)));
        assert_eq!(p("Scheme=ftp&Host=h&Port=1").unwrap_err().mess, "PING Unsupported scheme: ftp");
        assert_eq!(p("Scheme=ftp").unwrap_err().kind, ErrorType::Syntax);
        assert_eq!(p("Scheme=ajp&Host=h&Port=x"), Err(syn(text::PORT_BAD)));
        assert_eq!(p("Load=1"), Err(Error::invalid_field("Load")));
        assert_eq!(p(&format!("JVMRoute={}", "r".repeat(64))), Err(syn(text::SROUBIG)));
        // Reading stops at the first empty key.
        assert_eq!(p("=x&Foo=bar").unwrap(), PingMsg::Any);
    }
}
