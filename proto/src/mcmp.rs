//! MCMP, the Mod-Cluster Management Protocol: request bodies, replies and
//! errors, as mod_cluster's Java side sends them and as mod_manager (the httpd
//! module of mod_proxy_cluster) parses and answers them.
//!
//! Shared by the httpd module (parses requests, encodes replies) and
//! `reversed-agent` (encodes requests, parses replies).
//!
//! References (facts read from the sources, no code taken):
//! - `mod_manager.c` = `native/mod_manager/mod_manager.c` of
//!   modcluster/mod_proxy_cluster at 7514efd (HEAD after PR #385). Line
//!   numbers below refer to that file.
//! - `mod_clustersize.h` = `native/include/mod_clustersize.h` (field sizes).
//! - Java: `core/.../mcmp/impl/DefaultMCMPHandler.java` (request framing,
//!   `sendRequest` lines 435-520) and `DefaultMCMPRequestFactory.java`
//!   (parameters, held in a `TreeMap`, so sorted by key) of modcluster/mod_cluster.
//!
//! # Wire form
//! A request is an HTTP/1.1 request whose method is the command
//! (`CONFIG / HTTP/1.1`); the body is `NAME=VALUE` pairs joined by `&`, each
//! name and value through `java.net.URLEncoder.encode(.., "UTF-8")`
//! ([`form_encode`]). Success is HTTP 200 (CONFIG: empty body; STATUS, PING,
//! VERSION, INFO, DUMP and the non-wildcard *-APP commands: a `text/plain`
//! body, see the `*_rsp` functions). An error is HTTP 500 with the status line
//! reason `ERROR` and the headers `Version`, `Type`, `Mess` ([`error_headers`]).
//!
//! # Where this codec deliberately differs from mod_manager
//! Each is documented at the function concerned:
//! - a `%` not followed by two hex digits is rejected (mod_manager keeps it literally);
//! - a NUL (raw or `%00`) and bytes that are not UTF-8 are rejected;
//! - an odd number of `&`/`=`-separated tokens is rejected with `SMESPAR`
//!   (mod_manager reads past its token array for some commands);
//! - `Reversed` also accepts `true`/`1`/`false`/`0`, and rejects anything else;
//! - `Port` must be a decimal number 0-65535;
//! - `Alias`/`Context` lists are split on every `,` (mod_manager's splitter
//!   skips the character after each comma, see [`parse_config`]);
//! - a body longer than [`MAX_BODY`] is rejected (mod_manager truncates it).

use std::fmt;

/// Value of the `Version:` header of error replies and of VERSION replies
/// (`VERSION_PROTOCOL`, mod_manager.c line 69).
pub const PROTOCOL_VERSION: &str = "0.2.1";

/// Largest request body accepted, in bytes: 13 188.
///
/// mod_manager reads at most `MaxMCMPMessSize` bytes (manager_handler, lines
/// 3467-3491). Without that directive it computes
/// `9 + JVMROUTESZ + MaxHost * HOSTALIASZ + 7 + MaxContext * CONTEXTSZ + 8`
/// with the defaults `MaxHost` 20 and `MaxContext` 100 (lines 22-24, 3986-3988)
/// = 9 + 64 + 20*255 + 7 + 100*80 + 8 = 13 188, and never less than
/// `MAXMESSSIZE` 1024 (line 26). mod_manager silently drops what is beyond;
/// [`parse_pairs`] rejects a longer body with `SMESPAR`.
pub const MAX_BODY: usize = 9 + JVMROUTE_SIZE + 20 * ALIAS_SIZE + 7 + 100 * CONTEXT_SIZE + 8;

/// Field buffer sizes (mod_clustersize.h; JVMROUTESZ is httpd 2.4's
/// `PROXY_WORKER_MAX_ROUTE_SIZE`). mod_manager rejects a value whose length in
/// bytes is `>=` the size (room for the C string's NUL).
pub const JVMROUTE_SIZE: usize = 64;
pub const BALANCER_SIZE: usize = 40;
pub const DOMAIN_SIZE: usize = 20;
pub const HOST_SIZE: usize = 64;
pub const PORT_SIZE: usize = 7;
pub const TYPE_SIZE: usize = 16;
/// `HOSTALIASZ`: one alias is at most 254 bytes.
pub const ALIAS_SIZE: usize = 255;
/// `CONTEXTSZ`: one context is at most 79 bytes.
pub const CONTEXT_SIZE: usize = 80;
/// `COOKNAMESZ` / `PATHNAMESZ` (StickySessionCookie / StickySessionPath).
pub const COOKIE_SIZE: usize = 30;
pub const PATH_SIZE: usize = 30;

/// `Load` of a STATUS that carries none: mod_manager starts from -2
/// (process_status, line 2394) and mod_proxy_cluster's `proxy_node_isup`
/// treats -2 as "only ping the node, keep its load".
pub const NO_LOAD: i32 = -2;

/// The error texts mod_manager puts in the `Mess:` header (mod_manager.c lines
/// 32-66 and the literals noted). Clients parse these; they must stay byte
/// for byte. Texts with `%s` are produced by the [`Error`] constructors.
pub mod text {
    pub const SMESPAR: &str =
        "SYNTAX: Can't parse MCMP message. It might have contained illegal symbols or unknown elements.";
    pub const SBALBIG: &str = "SYNTAX: Balancer field too big";
    pub const SBAFBIG: &str = "SYNTAX: A field is too big";
    pub const SROUBIG: &str = "SYNTAX: JVMRoute field too big";
    pub const SROUBAD: &str = "SYNTAX: JVMRoute can't be empty";
    pub const SDOMBIG: &str = "SYNTAX: LBGroup field too big";
    pub const SHOSBIG: &str = "SYNTAX: Host field too big";
    pub const SPORBIG: &str = "SYNTAX: Port field too big";
    pub const STYPBIG: &str = "SYNTAX: Type field too big";
    pub const SALIBIG: &str = "SYNTAX: Alias field too big";
    pub const SCONBIG: &str = "SYNTAX: Context field too big";
    pub const SFLUBAD: &str = "SYNTAX: Flushwait field has bad value";
    pub const SPNGBAD: &str = "SYNTAX: Ping field has bad value";
    pub const STTLBAD: &str = "SYNTAX: TTL field has bad value";
    pub const STIMBAD: &str = "SYNTAX: Timeout field has bad value";
    pub const SALIBAD: &str = "SYNTAX: Alias without Context";
    pub const SCONBAD: &str = "SYNTAX: Context without Alias";
    pub const NOCONAL: &str = "SYNTAX: No Context and Alias in APP command";
    pub const SMISFLD: &str = "SYNTAX: Mandatory field(s) missing in message";
    pub const SCMDUNS: &str = "SYNTAX: Command is not supported";
    /// process_context_alias, line 1245 (literal, sic).
    pub const EMPTY_ALIAS: &str = "TODO: Empty Alias is not allowed";
    /// process_context_alias, line 1251 (literal, sic).
    pub const EMPTY_CONTEXT: &str = "TODO: Empty Context is not allowed";
    /// process_status, line 2413 (literal, sic).
    pub const BAD_LOAD: &str = "TODO: Bad value for Load";
    /// process_status, line 2424 (literal, sic).
    pub const NO_JVMROUTE: &str = "TODO: No JVMRoute given!";
    pub const MNODEET: &str = "MEM: Another for the same worker already exist";
    /// Ours (mod_manager stores any Port string of < 7 bytes).
    pub const PORT_BAD: &str = "SYNTAX: Port field has bad value";
    /// Ours (mod_manager leaves Reversed at 0 for a value it does not know).
    pub const REVERSED_BAD: &str = "SYNTAX: Reversed field has bad value";
}

/// An MCMP command: the HTTP method of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Config,
    EnableApp,
    DisableApp,
    StopApp,
    RemoveApp,
    Status,
    Ping,
    Info,
    Dump,
    Version,
}

impl Command {
    pub const ALL: [Command; 10] = [
        Command::Config,
        Command::EnableApp,
        Command::DisableApp,
        Command::StopApp,
        Command::RemoveApp,
        Command::Status,
        Command::Ping,
        Command::Info,
        Command::Dump,
        Command::Version,
    ];

    /// The command of a request method, compared case-insensitively as
    /// mod_manager's `is_our_method` does (lines 2653-2680).
    pub fn from_method(m: &str) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|c| c.method().eq_ignore_ascii_case(m))
    }

    pub fn method(self) -> &'static str {
        match self {
            Command::Config => "CONFIG",
            Command::EnableApp => "ENABLE-APP",
            Command::DisableApp => "DISABLE-APP",
            Command::StopApp => "STOP-APP",
            Command::RemoveApp => "REMOVE-APP",
            Command::Status => "STATUS",
            Command::Ping => "PING",
            Command::Info => "INFO",
            Command::Dump => "DUMP",
            Command::Version => "VERSION",
        }
    }

    /// ENABLE-APP, DISABLE-APP, STOP-APP or REMOVE-APP.
    pub fn is_app(self) -> bool {
        matches!(
            self,
            Command::EnableApp | Command::DisableApp | Command::StopApp | Command::RemoveApp
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}

/// The `Type:` header of an error reply (process_error, lines 3021-3038).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The message is wrong; mod_cluster's Java side marks the proxy DOWN.
    Syntax,
    /// The shared tables refused (e.g. unknown node); the Java side retries.
    Mem,
    General,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Syntax => "SYNTAX",
            ErrorType::Mem => "MEM",
            ErrorType::General => "GENERAL",
        }
    }

    /// The type named by a `Type:` header value; anything unknown is GENERAL
    /// (process_error's default branch).
    pub fn from_header(v: &str) -> ErrorType {
        match v.trim() {
            "SYNTAX" => ErrorType::Syntax,
            "MEM" => ErrorType::Mem,
            _ => ErrorType::General,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An MCMP error: its `Type:` and the exact `Mess:` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorType,
    pub mess: String,
}

impl Error {
    pub fn syntax(mess: impl Into<String>) -> Error {
        Error { kind: ErrorType::Syntax, mess: mess.into() }
    }
    pub fn mem(mess: impl Into<String>) -> Error {
        Error { kind: ErrorType::Mem, mess: mess.into() }
    }
    pub fn general(mess: impl Into<String>) -> Error {
        Error { kind: ErrorType::General, mess: mess.into() }
    }
    /// `SBADFLD` (line 51): a key STATUS or PING does not know.
    pub fn invalid_field(key: &str) -> Error {
        Error::syntax(format!("SYNTAX: Invalid field \"{key}\" in message"))
    }
    /// `SCMDUNS` (line 53): a method that is not an MCMP command.
    pub fn command_not_supported() -> Error {
        Error::syntax(text::SCMDUNS)
    }
    /// `SREADER` (line 56): the body could not be read; `method` as received.
    pub fn read_failed(method: &str) -> Error {
        Error::syntax(format!("SYNTAX: {method} can't read POST data"))
    }
    /// PING with an unknown `Scheme` (process_ping, line 2513). No "SYNTAX: "
    /// prefix in the text, but of type SYNTAX.
    pub fn unsupported_scheme(scheme: &str) -> Error {
        Error::syntax(format!("PING Unsupported scheme: {scheme}"))
    }
    /// `MNODERD` (line 62): the JVMRoute names no (live) node. This is what
    /// STATUS, PING and the *-APP commands answer after httpd lost the node.
    pub fn node_not_found(route: &str) -> Error {
        Error::mem(format!("MEM: Can't read node with \"{route}\" JVMRoute"))
    }
    /// A CONFIG that changes Balancer, Host, Port, Type, Reversed, smax or ttl
    /// of a node that still exists (process_config, lines 1370-1380; the route
    /// printed is the stored node's).
    pub fn node_exists(route: &str) -> Error {
        Error::mem(format!("MEM: Node with \"{route}\" JVMRoute already exists"))
    }
    /// `MNODEUI` (line 59).
    pub fn node_insert_failed(route: &str) -> Error {
        Error::mem(format!("MEM: Can't update or insert node with \"{route}\" JVMRoute"))
    }
    /// `MBALAUI` (line 61).
    pub fn balancer_insert_failed(route: &str) -> Error {
        Error::mem(format!("MEM: Can't update or insert balancer for node with \"{route}\" JVMRoute"))
    }
    /// `MNODEET` (line 66): another node already uses Type://Host:Port.
    pub fn same_worker() -> Error {
        Error::mem(text::MNODEET)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Type={} Mess={}", self.kind, self.mess)
    }
}

impl std::error::Error for Error {}

/// The three headers of an error reply, in mod_manager's order (process_error,
/// lines 3021-3038). The reply is HTTP 500 with the status line reason `ERROR`.
pub fn error_headers(e: &Error) -> [(&'static str, String); 3] {
    [
        ("Version", PROTOCOL_VERSION.to_string()),
        ("Type", e.kind.as_str().to_string()),
        ("Mess", e.mess.clone()),
    ]
}

fn smespar() -> Error {
    Error::syntax(text::SMESPAR)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// %-decodes one token and applies decodeenc's checks (lines 2613-2650): the
/// decoded text may not hold `<`, `>`, `"`, `'`, CR or LF; we also refuse NUL,
/// a `%` without two hex digits (mod_manager keeps such a `%` as is) and
/// bytes that are not UTF-8.
fn decode_token(tok: &[u8]) -> Result<String, Error> {
    let mut out = Vec::with_capacity(tok.len());
    let mut i = 0;
    while i < tok.len() {
        let mut c = tok[i];
        if c == b'%' {
            match (tok.get(i + 1).copied().and_then(hex), tok.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => c = h << 4 | l,
                _ => return Err(smespar()),
            }
            i += 3;
        } else {
            i += 1;
        }
        if matches!(c, b'<' | b'>' | b'"' | b'\'' | b'\r' | b'\n' | 0) {
            return Err(smespar());
        }
        out.push(c);
    }
    String::from_utf8(out).map_err(|_| smespar())
}

/// Splits a body into its `(key, value)` pairs and %-decodes them.
///
/// As mod_manager's `process_buff` (lines 690-723), the body is cut at every
/// `&` and every `=` alike, and the tokens are taken two by two as key and
/// value: `a=b&c=d`, but also `a&b=c=d`, give `(a,b) (c,d)`. Each token is then
/// decoded (`%xx`; `%26` and `%3D` are how a value holds `&` and `=`). A `+`
/// stays a `+`: mod_manager never turns it into a space (decodeenc), so the
/// space that Java's URLEncoder sends as `+` arrives as `+`.
///
/// An empty body gives no pairs. Errors (all `SMESPAR`): a body longer than
/// [`MAX_BODY`]; an odd number of tokens (e.g. a trailing `&`); and the
/// decoding errors of decodeenc plus ours (see [`decode_token`] rules: `<`
/// `>` `"` `'` CR LF, NUL, a bad `%xx`, non-UTF-8).
///
/// Keys keep their case; the parsers below compare them case-insensitively
/// (`strcasecmp`).
pub fn parse_pairs(body: &[u8]) -> Result<Vec<(String, String)>, Error> {
    if body.len() > MAX_BODY {
        return Err(smespar());
    }
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let tokens: Vec<&[u8]> = body.split(|&b| b == b'&' || b == b'=').collect();
    if !tokens.len().is_multiple_of(2) {
        return Err(smespar());
    }
    tokens
        .chunks_exact(2)
        .map(|kv| Ok((decode_token(kv[0])?, decode_token(kv[1])?)))
        .collect()
}

/// `yes`/`on`/`true`/`1` → true, `no`/`off`/`false`/`0` → false (ASCII
/// case-insensitive), else None.
///
/// mod_manager's `process_boolean_parameter` (lines 922-933) knows only
/// yes/on/no/off; the Java side sends `Reversed=true`, which mod_manager
/// therefore ignores. We accept both spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    let l = v.to_ascii_lowercase();
    match l.as_str() {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// `ap_timeout_parameter_parse` (httpd server/util.c) as mod_manager uses it
/// for flushwait/ping/ttl/Timeout: an `apr_strtoi64` number (leading white
/// space, a sign, digits; no digits at all leaves the whole text as the
/// unit) then a unit whose first letters must be `s`, `h`, `ms` or `mi`; no
/// unit means `default_unit`. Only success matters here.
fn timeout_ok(v: &str, default_unit: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let start = i;
    let mut n: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        // errno ERANGE on overflow: an error.
        match n.checked_mul(10).and_then(|n| n.checked_add((b[i] - b'0') as i64)) {
            Some(x) => n = x,
            None => return false,
        }
        i += 1;
    }
    let rest: &[u8] = if i == start { b } else { &b[i..] };
    let unit = if rest.is_empty() { default_unit.as_bytes() } else { rest };
    match unit.first() {
        Some(b's') | Some(b'h') => true,
        Some(b'm') => matches!(unit.get(1), Some(b's') | Some(b'i')),
        _ => false,
    }
}

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `sscanf("%d")`: white space, a sign, at least one digit, anything after
/// ignored. Values beyond i32 come back clamped (out of every valid range).
fn scan_int(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut n: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        n = (n * 10 + (b[i] - b'0') as i64).min(1 << 40);
        i += 1;
    }
    if i == start {
        return None;
    }
    Some(if neg { -n } else { n })
}

/// A port: ASCII digits only, 0-65535.
fn parse_port(v: &str) -> Result<u16, Error> {
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(Error::syntax(text::PORT_BAD));
    }
    v.parse::<u16>().map_err(|_| Error::syntax(text::PORT_BAD))
}

/// Removes an IPv6 zone from `[addr%zone]` as process_config_node does (lines
/// 1057-1069): in a value that starts with `[`, from the first `%` on only `]`
/// characters are kept.
fn strip_zone(v: &str) -> String {
    if !v.starts_with('[') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut zone = false;
    for c in v.chars() {
        if c == '%' {
            zone = true;
        }
        if !zone || c == ']' {
            out.push(c);
        }
    }
    out
}

/// One `Alias` or `Context` value: a comma-separated list (process_context_alias,
/// lines 1229-1262, with parse_list_to_array_with_checks, lines 1192-1222).
/// Aliases are lower-cased first (ASCII, as `apr_tolower`). An empty item is
/// `TODO: Empty Alias/Context is not allowed`, an item of `limit` bytes or more
/// `SALIBIG`/`SCONBIG`.
///
/// Unsure/deviation: mod_manager's splitter advances twice after a comma, so
/// it never looks at the character right after a comma: `a,b` is refused as
/// empty, `a,,b` yields `a` and `,b`, an item after a comma may be one byte
/// longer, and `a,` reads past the value. We split on every comma and apply
/// one limit to every item.
fn parse_list(v: &str, alias: bool, out: &mut Vec<String>) -> Result<(), Error> {
    let (limit, big, empty) = if alias {
        (ALIAS_SIZE, text::SALIBIG, text::EMPTY_ALIAS)
    } else {
        (CONTEXT_SIZE, text::SCONBIG, text::EMPTY_CONTEXT)
    };
    let lowered;
    let v = if alias {
        lowered = v.to_ascii_lowercase();
        lowered.as_str()
    } else {
        v
    };
    for item in v.split(',') {
        if item.is_empty() {
            return Err(Error::syntax(empty));
        }
        if item.len() >= limit {
            return Err(Error::syntax(big));
        }
        out.push(item.to_string());
    }
    Ok(())
}

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
                if let Some((canon, check)) =
                    OTHER_KEYS.iter().find(|(name, _)| name.eq_ignore_ascii_case(&key))
                {
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

fn both_or_neither(aliases: &[String], contexts: &[String]) -> Result<(), Error> {
    match (aliases.is_empty(), contexts.is_empty()) {
        (false, true) => Err(Error::syntax(text::SALIBAD)),
        (true, false) => Err(Error::syntax(text::SCONBAD)),
        _ => Ok(()),
    }
}

/// `JVMRoute=<r>` first, then the other pairs sorted by key (Java's
/// `TreeMap<String,String>`: UTF-16 order, which is byte order for ASCII
/// keys), each name and value through [`form_encode`].
fn encode_body(route: Option<&str>, mut rest: Vec<(&str, String)>) -> String {
    rest.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    if let Some(r) = route {
        out.push_str("JVMRoute=");
        out.push_str(&form_encode(r));
    }
    for (k, v) in rest {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&form_encode(k));
        out.push('=');
        out.push_str(&form_encode(&v));
    }
    out
}

impl ConfigMsg {
    /// The body as DefaultMCMPRequestFactory/DefaultMCMPHandler send it:
    /// `JVMRoute` first, then the present keys in `TreeMap` (sorted) order —
    /// Alias, Balancer, Context, Domain, Host, Maxattempts, Port, Reversed,
    /// StickySession*, Timeout, Type, WaitWorker, flushpackets, flushwait,
    /// ping, smax, ttl — names and values through [`form_encode`].
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
/// ended in `/*`, see [`is_whole_node`]): neither Alias nor Context is
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
        let rest = if self.load == NO_LOAD {
            Vec::new()
        } else {
            vec![("Load", self.load.to_string())]
        };
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
            if !["ajp", "http", "https", "ws", "wss"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&v))
            {
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
            PingMsg::Url { scheme, host, port } => encode_body(
                None,
                vec![("Scheme", scheme.clone()), ("Host", host.clone()), ("Port", port.to_string())],
            ),
        }
    }
}

/// Whether a request URI addresses the whole node: `*`, or ending in `/*`
/// (manager_trans, lines 2707-2712, which then maps it to `NODE_COMMAND`).
pub fn is_whole_node(uri: &str) -> bool {
    uri == "*" || uri.ends_with("/*")
}

/// The request target the Java side builds from its `proxyURL` setting
/// (DefaultMCMPHandler lines 497-515): the base (may be empty), a `/` unless
/// it already ends in one, then `*` for a whole-node command. `""` → `/`,
/// `"/mcmp"` → `/mcmp/`, whole node → `/*`, `/mcmp/*`.
pub fn request_path(base: &str, whole_node: bool) -> String {
    let mut p = base.to_string();
    if !p.ends_with('/') {
        p.push('/');
    }
    if whole_node {
        p.push('*');
    }
    p
}

/// STATUS reply body (print_status_response, lines 2377-2384):
/// `Type=STATUS-RSP&JVMRoute=<route>&State=OK|NOTOK&id=<id>\n`, where `id` is
/// httpd's scoreboard restart time (an `apr_time_t`, printed with `%ld`);
/// `ok` = the node answered the ping.
pub fn status_rsp(route: &str, ok: bool, id: i64) -> String {
    format!(
        "Type=STATUS-RSP&JVMRoute={route}&State={}&id={id}\n",
        if ok { "OK" } else { "NOTOK" }
    )
}

/// PING reply body (print_ping_response, lines 2468-2482):
/// `Type=PING-RSP[&JVMRoute=<route>]&State=OK|NOTOK&id=<id>\n`; the JVMRoute
/// part only for a non-empty route. (For a PING without parameters
/// mod_manager answers `State=OK`: its "up" value is -1, which is true.)
pub fn ping_rsp(route: Option<&str>, ok: bool, id: i64) -> String {
    let state = if ok { "OK" } else { "NOTOK" };
    match route {
        Some(r) if !r.is_empty() => format!("Type=PING-RSP&JVMRoute={r}&State={state}&id={id}\n"),
        _ => format!("Type=PING-RSP&State={state}&id={id}\n"),
    }
}

/// Reply body of a non-wildcard *-APP command (print_app_cmd_response, lines
/// 2065-2109, HEAD after PR #385; also STOP-APP, whose 1.3.x form
/// `Type=STOP-APP-RSP&JvmRoute=..&Alias=..&Context=..&Requests=n` is gone):
///
/// ```text
/// Type=ENABLE-APP-RSP\nJvmRoute=<route>[\nAlias=<alias> Contexts=<c1>,<c2>\n]...\n
/// ```
///
/// one `Alias=` block per alias, each ending in its own `\n`, then a final
/// `\n`. mod_manager lists only the alias/context pairs it managed to update
/// (an alias with none is left out); here every pair counts. `cmd` that is
/// not an *-APP command is answered like REMOVE-APP (the C default branch).
/// A wildcard (`/*`) *-APP command has an empty reply body (lines 2176-2182).
pub fn app_rsp(cmd: Command, route: &str, aliases: &[String], contexts: &[String]) -> String {
    let t = match cmd {
        Command::EnableApp => "ENABLE-APP-RSP",
        Command::DisableApp => "DISABLE-APP-RSP",
        Command::StopApp => "STOP-APP-RSP",
        _ => "REMOVE-APP-RSP",
    };
    let mut s = format!("Type={t}\nJvmRoute={route}");
    if !contexts.is_empty() {
        for a in aliases {
            s.push_str(&format!("\nAlias={a} Contexts={}\n", contexts.join(",")));
        }
    }
    s.push('\n');
    s
}

/// VERSION reply body, text form (process_version, lines 2448-2465):
/// `release: <release>, protocol: 0.2.1\n` (mod_proxy_cluster's release is
/// `mod_proxy_cluster/2.0.0.Dev`). With `Accept: text/xml` mod_manager
/// answers XML instead.
pub fn version_rsp(release: &str) -> String {
    format!("release: {release}, protocol: {PROTOCOL_VERSION}\n")
}

/// A node as INFO and DUMP show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// The node's table id (mod_manager: its slot, 0-based).
    pub id: i32,
    pub route: String,
    pub balancer: String,
    pub domain: String,
    pub host: String,
    pub port: u16,
    /// Type: ajp, http, ...
    pub kind: String,
    pub load: i32,
    /// (context, state): state ENABLED, DISABLED or STOPPED (anything else
    /// shows as REMOVED, status 4, as context_status_to_string).
    pub contexts: Vec<(String, String)>,
    pub aliases: Vec<String>,
}

fn context_state(s: &str) -> (&'static str, i32) {
    match s {
        "ENABLED" => ("ENABLED", 1),
        "DISABLED" => ("DISABLED", 2),
        "STOPPED" => ("STOPPED", 3),
        _ => ("REMOVED", 4),
    }
}

/// mod_manager gives every alias its own virtual host (process_config lines
/// 1542-1577, process_app_cmd lines 2194-2235) and every context one entry per
/// virtual host. Yields (vhost, alias) with vhost 1.. ; a node with contexts
/// but no alias (impossible in mod_manager) gets one vhost without alias.
fn vhosts(n: &NodeInfo) -> Vec<(i32, Option<&str>)> {
    if n.aliases.is_empty() {
        if n.contexts.is_empty() {
            Vec::new()
        } else {
            vec![(1, None)]
        }
    } else {
        n.aliases
            .iter()
            .enumerate()
            .map(|(i, a)| (i as i32 + 1, Some(a.as_str())))
            .collect()
    }
}

/// INFO reply body, `text/plain` (process_info, lines 1817-1998): one `Node:`
/// line per node, then one `Vhost:` line per alias of every node, then one
/// `Context:` line per context and virtual host. Fields this codec has no
/// value for are printed with mod_manager's defaults: Flushpackets Off,
/// Flushwait 10 (PROXY_FLUSH_WAIT 10 ms), Ping 10, Smax -1, Ttl 60; Elected,
/// Read, Transfered, Connected 0 (mod_manager's zeros when it finds no worker
/// statistics); Load is the node's. Host and context table ids are numbered
/// from 0 in output order, as in a fresh mod_manager table.
pub fn info_text(nodes: &[NodeInfo]) -> String {
    let mut s = String::new();
    for n in nodes {
        s.push_str(&format!(
            "Node: [{}],Name: {},Balancer: {},LBGroup: {},Host: {},Port: {},Type: {}\
             ,Flushpackets: Off,Flushwait: 10,Ping: 10,Smax: -1,Ttl: 60\
             ,Elected: 0,Read: 0,Transfered: 0,Connected: 0,Load: {}\n",
            n.id, n.route, n.balancer, n.domain, n.host, n.port, n.kind, n.load
        ));
    }
    let mut hid = 0;
    for n in nodes {
        for (v, a) in vhosts(n) {
            if let Some(a) = a {
                s.push_str(&format!("Vhost: [{}:{}:{}], Alias: {}\n", n.id, v, hid, a));
                hid += 1;
            }
        }
    }
    let mut cid = 0;
    for n in nodes {
        for (v, _) in vhosts(n) {
            for (c, st) in &n.contexts {
                s.push_str(&format!(
                    "Context: [{}:{}:{}], Context: {}, Status: {}\n",
                    n.id,
                    v,
                    cid,
                    c,
                    context_state(st).0
                ));
                cid += 1;
            }
        }
    }
    s
}

/// DUMP reply body, `text/plain` (process_dump, lines 1614-1795): `balancer:`
/// lines (one per distinct balancer, in order of first use, with the defaults
/// Sticky 1, [JSESSIONID]/[jsessionid], remove 0, force 1, Timeout 0,
/// maxAttempts 1), `node:` lines (flushpackets 0, flushwait 10, ping 10,
/// smax -1, ttl 60, timeout 0), `host:` lines, `context:` lines (numeric
/// status: 1 ENABLED, 2 DISABLED, 3 STOPPED, 4 REMOVED). Table ids as in
/// [`info_text`].
pub fn dump_text(nodes: &[NodeInfo]) -> String {
    let mut s = String::new();
    let mut balancers: Vec<&str> = Vec::new();
    for n in nodes {
        if !balancers.contains(&n.balancer.as_str()) {
            balancers.push(&n.balancer);
        }
    }
    for (i, b) in balancers.iter().enumerate() {
        s.push_str(&format!(
            "balancer: [{i}] Name: {b} Sticky: 1 [JSESSIONID]/[jsessionid] remove: 0 force: 1 Timeout: 0 maxAttempts: 1\n"
        ));
    }
    for n in nodes {
        s.push_str(&format!(
            "node: [{}:{}],Balancer: {},JVMRoute: {},LBGroup: [{}],Host: {},Port: {},Type: {}\
             ,flushpackets: 0,flushwait: 10,ping: 10,smax: -1,ttl: 60,timeout: 0\n",
            n.id, n.id, n.balancer, n.route, n.domain, n.host, n.port, n.kind
        ));
    }
    let mut hid = 0;
    for n in nodes {
        for (v, a) in vhosts(n) {
            if let Some(a) = a {
                s.push_str(&format!("host: {hid} [{a}] vhost: {v} node: {}\n", n.id));
                hid += 1;
            }
        }
    }
    let mut cid = 0;
    for n in nodes {
        for (v, _) in vhosts(n) {
            for (c, st) in &n.contexts {
                s.push_str(&format!(
                    "context: {cid} [{c}] vhost: {v} node: {} status: {}\n",
                    n.id,
                    context_state(st).1
                ));
                cid += 1;
            }
        }
    }
    s
}

/// `java.net.URLEncoder.encode(s, "UTF-8")`: `A-Z a-z 0-9 . - * _` unchanged,
/// space → `+`, every other byte of the UTF-8 form → `%XX` (upper-case hex).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                const H: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(H[(b >> 4) as usize] as char);
                out.push(H[(b & 15) as usize] as char);
            }
        }
    }
    out
}

/// A whole request as DefaultMCMPHandler writes it (lines 435-452, 497-531):
///
/// ```text
/// <CMD> <path> HTTP/1.1\r\n
/// Host: <host_header>\r\n
/// Content-Length: <n>\r\n          (only when the body is not empty)
/// User-Agent: ClusterListener/1.0\r\n
/// Connection: Keep-Alive\r\n
/// \r\n
/// <body>
/// ```
///
/// No Content-Type. `path` is used as given (see [`request_path`] for the
/// Java rule); `host_header` is `host:port` (the Java side always adds the
/// port, IPv6 in brackets).
pub fn encode_request(cmd: Command, path: &str, host_header: &str, body: &str) -> Vec<u8> {
    let mut s = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", cmd.method(), path, host_header);
    if !body.is_empty() {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("User-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    s.push_str(body);
    s.into_bytes()
}

/// An HTTP reply to an MCMP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Some for every status other than 200 (the Java side's rule): its kind
    /// from the `Type:` header (missing or unknown: GENERAL) and its text from
    /// `Mess:` (missing: `HTTP <status> <reason>`).
    pub error: Option<Error>,
    /// The body (chunked coding removed; not UTF-8 bytes replaced).
    pub body: String,
}

/// Longest reply head accepted.
const MAX_REPLY_HEAD: usize = 64 * 1024;
/// Longest reply body accepted (INFO/DUMP of a big cluster stays far below).
const MAX_REPLY_BODY: usize = 16 * 1024 * 1024;

/// Parses one HTTP/1.x reply from the start of `bytes`: `Ok(None)` while
/// incomplete, else the reply and the number of bytes it used. The body is
/// delimited by `Content-Length` or chunked coding; a reply with neither (and
/// not 204/304) ends at connection close: [`parse_reply_at_eof`]. Interim 1xx
/// replies are skipped. Lines may end in CRLF or LF.
pub fn parse_reply(bytes: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_reply_impl(bytes, false)
}

/// As [`parse_reply`] once the peer has closed: a reply without length takes
/// everything that came; anything incomplete is an error.
pub fn parse_reply_at_eof(bytes: &[u8]) -> Result<(Reply, usize), String> {
    match parse_reply_impl(bytes, true)? {
        Some(r) => Ok(r),
        None => Err(if bytes.is_empty() {
            "connection closed without a reply".to_string()
        } else {
            "connection closed in the middle of the reply".to_string()
        }),
    }
}

/// One line from `pos`: (line without its CRLF/LF, position after it), or None.
fn line_at(b: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rel = b.get(pos..)?.iter().position(|&c| c == b'\n')?;
    let mut line = &b[pos..pos + rel];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    Some((line, pos + rel + 1))
}

fn parse_reply_impl(bytes: &[u8], eof: bool) -> Result<Option<(Reply, usize)>, String> {
    let mut start = 0;
    loop {
        // Status line and headers.
        let Some((status_line, mut pos)) = line_at(bytes, start) else {
            return too_long(bytes.len() - start).map(|_| None);
        };
        let sl = String::from_utf8_lossy(status_line);
        let mut parts = sl.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(format!("not an HTTP/1.x reply: {:?}", truncate(&sl)));
        }
        let code = parts.next().unwrap_or("");
        let status: u16 = match code.parse() {
            Ok(s) if code.len() == 3 && (100..=999).contains(&s) => s,
            _ => return Err(format!("bad status line: {:?}", truncate(&sl))),
        };
        let reason = parts.next().unwrap_or("").trim().to_string();
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let (mut etype, mut mess) = (None, None);
        loop {
            let Some((line, next)) = line_at(bytes, pos) else {
                return too_long(bytes.len() - start).map(|_| None);
            };
            if next - start > MAX_REPLY_HEAD {
                return Err("reply head too long".into());
            }
            pos = next;
            if line.is_empty() {
                break;
            }
            let l = String::from_utf8_lossy(line);
            let Some((name, value)) = l.split_once(':') else {
                return Err(format!("bad header line: {:?}", truncate(&l)));
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("Content-Length") {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("bad Content-Length: {:?}", truncate(value)))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err("conflicting Content-Length headers".into());
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case("Transfer-Encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
                if !chunked {
                    return Err(format!("unsupported Transfer-Encoding: {:?}", truncate(value)));
                }
            } else if name.eq_ignore_ascii_case("Type") {
                etype = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("Mess") {
                mess = Some(value.to_string());
            }
        }
        if (100..200).contains(&status) {
            start = pos;
            continue;
        }
        // Body.
        let mut body = Vec::new();
        let end;
        if status == 204 || status == 304 {
            end = pos;
        } else if chunked {
            loop {
                let Some((line, next)) = line_at(bytes, pos) else {
                    return incomplete(bytes.len() - pos);
                };
                let l = String::from_utf8_lossy(line);
                let size_text = l.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| format!("bad chunk size: {:?}", truncate(&l)))?;
                if size > MAX_REPLY_BODY || body.len() + size > MAX_REPLY_BODY {
                    return Err("reply body too long".into());
                }
                pos = next;
                if size == 0 {
                    // Trailers up to the empty line.
                    loop {
                        let Some((t, next)) = line_at(bytes, pos) else {
                            return incomplete(bytes.len() - pos);
                        };
                        pos = next;
                        if t.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                if bytes.len() < pos + size {
                    return incomplete(0);
                }
                body.extend_from_slice(&bytes[pos..pos + size]);
                pos += size;
                match bytes.get(pos..) {
                    Some([b'\r', b'\n', ..]) => pos += 2,
                    Some([b'\n', ..]) => pos += 1,
                    Some([]) | Some([b'\r']) => return incomplete(0),
                    _ => return Err("chunk not followed by CRLF".into()),
                }
            }
            end = pos;
        } else if let Some(n) = content_length {
            if n > MAX_REPLY_BODY {
                return Err("reply body too long".into());
            }
            if bytes.len() < pos + n {
                return Ok(None);
            }
            body.extend_from_slice(&bytes[pos..pos + n]);
            end = pos + n;
        } else {
            if !eof {
                return Ok(None);
            }
            if bytes.len() - pos > MAX_REPLY_BODY {
                return Err("reply body too long".into());
            }
            body.extend_from_slice(&bytes[pos..]);
            end = bytes.len();
        }
        let error = (status != 200).then(|| Error {
            kind: etype.as_deref().map(ErrorType::from_header).unwrap_or(ErrorType::General),
            mess: mess.unwrap_or_else(|| format!("HTTP {status} {reason}").trim_end().to_string()),
        });
        return Ok(Some((
            Reply { status, error, body: String::from_utf8_lossy(&body).into_owned() },
            end,
        )));
    }
}

fn too_long(n: usize) -> Result<(), String> {
    if n > MAX_REPLY_HEAD {
        Err("reply head too long".into())
    } else {
        Ok(())
    }
}

fn incomplete<T>(pending: usize) -> Result<Option<T>, String> {
    if pending > 4096 {
        // A chunk-size or trailer line this long is garbage.
        Err("chunk line too long".into())
    } else {
        Ok(None)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(t: &str) -> Error {
        Error::syntax(t)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn max_body_is_mod_managers_default() {
        assert_eq!(MAX_BODY, 13_188);
        assert!(parse_pairs(&vec![b'a'; MAX_BODY]).is_err()); // odd tokens
        let mut ok = b"a=".to_vec();
        ok.resize(MAX_BODY, b'b');
        assert_eq!(parse_pairs(&ok).unwrap()[0].1.len(), MAX_BODY - 2);
        ok.push(b'b');
        assert_eq!(parse_pairs(&ok).unwrap_err(), syn(text::SMESPAR));
    }

    #[test]
    fn commands() {
        for c in Command::ALL {
            assert_eq!(Command::from_method(c.method()), Some(c));
            assert_eq!(Command::from_method(&c.method().to_ascii_lowercase()), Some(c));
        }
        assert_eq!(Command::from_method("GET"), None);
        assert_eq!(Command::from_method("ENABLE_APP"), None);
        assert_eq!(Command::EnableApp.method(), "ENABLE-APP");
        assert!(Command::StopApp.is_app() && !Command::Status.is_app());
    }

    #[test]
    fn pairs_split_decode_and_reject() {
        assert_eq!(parse_pairs(b"").unwrap(), vec![]);
        assert_eq!(parse_pairs(b"a=b&c=d").unwrap(), pairs(&[("a", "b"), ("c", "d")]));
        // '&' and '=' are the same separator, as in process_buff.
        assert_eq!(parse_pairs(b"a&b=c=d").unwrap(), pairs(&[("a", "b"), ("c", "d")]));
        assert_eq!(parse_pairs(b"a=").unwrap(), pairs(&[("a", "")]));
        assert_eq!(parse_pairs(b"=x").unwrap(), pairs(&[("", "x")]));
        // %-decoding; %26/%3D are literal & and =; '+' stays '+'.
        assert_eq!(
            parse_pairs(b"K%65y=%2Fa%26b%3dc+d%C3%A9").unwrap(),
            pairs(&[("Key", "/a&b=c+dé")])
        );
        for bad in [
            &b"a"[..],
            b"a=b&",
            b"a=b&c",
            b"a=<",
            b"a=%3C",
            b"a=>",
            b"a=%3e",
            b"a=\"",
            b"a=%22",
            b"a='",
            b"a=%27",
            b"a=\r",
            b"a=%0D",
            b"a=\n",
            b"a=%0a",
            b"a=\0",
            b"a=%00",
            b"a=%",
            b"a=%4",
            b"a=%4g",
            b"a=%zz",
            b"a=\xff",
            b"a=%FF",
            b"%3C=b",
        ] {
            assert_eq!(parse_pairs(bad), Err(syn(text::SMESPAR)), "{:?}", String::from_utf8_lossy(bad));
        }
        // Tab and other controls pass (decodeenc only knows CR and LF).
        assert_eq!(parse_pairs(b"a=%09").unwrap(), pairs(&[("a", "\t")]));
    }

    #[test]
    fn booleans() {
        for t in ["yes", "YES", "On", "true", "TRUE", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["no", "No", "OFF", "false", "False", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for x in ["", "y", "2", "yess", " yes", "enabled"] {
            assert_eq!(parse_bool(x), None, "{x}");
        }
    }

    #[test]
    fn form_encoding_is_javas() {
        assert_eq!(form_encode("azAZ09.-*_"), "azAZ09.-*_");
        assert_eq!(form_encode("a b+c"), "a+b%2Bc");
        assert_eq!(form_encode("/x,/y"), "%2Fx%2C%2Fy");
        assert_eq!(form_encode("[::1]:8009"), "%5B%3A%3A1%5D%3A8009");
        assert_eq!(form_encode("~&=%é"), "%7E%26%3D%25%C3%A9");
        assert_eq!(form_encode(""), "");
    }

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
        let m = c("JVMRoute=R&Balancer=MyCluster&Alias=WWW.Example,B&Context=%2FApp&Host=%5Bfe80%3A%3A1%25eth0%5D").unwrap();
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
        for (key, t) in [("flushwait", text::SFLUBAD), ("ping", text::SPNGBAD), ("ttl", text::STTLBAD), ("Timeout", text::STIMBAD)] {
            for ok in ["10", "10s", "10ms", "2mi", "1h", "-5", "%205", "ms", "10sec", "0"] {
                assert!(c(&format!("JVMRoute=r&{key}={ok}")).is_ok(), "{key}={ok}");
            }
            for bad in ["abc", "10x", "10m", "%20", "99999999999999999999", "1.5"] {
                assert_eq!(c(&format!("JVMRoute=r&{key}={bad}")), Err(syn(t)), "{key}={bad}");
            }
        }
        // Kept keys, canonical spelling, in order.
        let m = c("JVMRoute=r&SMAX=5&flushPackets=auto&stickysession=no&WAITWORKER=3&maxattempts=x&StickySessionRemove=yes").unwrap();
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
        assert_eq!(
            s("JVMRoute=n1&Foo=1").unwrap_err().mess,
            "SYNTAX: Invalid field \"Foo\" in message"
        );
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
        assert_eq!(p("JVMRoute=&Scheme=wss&Host=h&Port=1").unwrap(), PingMsg::Url { scheme: "wss".into(), host: "h".into(), port: 1 });
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

    #[test]
    fn whole_node_and_paths() {
        assert!(is_whole_node("*"));
        assert!(is_whole_node("/*"));
        assert!(is_whole_node("/mcmp/*"));
        assert!(!is_whole_node("/"));
        assert!(!is_whole_node("/x*"));
        assert!(!is_whole_node(""));
        assert_eq!(request_path("", false), "/");
        assert_eq!(request_path("", true), "/*");
        assert_eq!(request_path("/", true), "/*");
        assert_eq!(request_path("/mcmp", false), "/mcmp/");
        assert_eq!(request_path("/mcmp/", true), "/mcmp/*");
    }

    #[test]
    fn replies_byte_for_byte() {
        assert_eq!(status_rsp("n1", true, 1700000000123456), "Type=STATUS-RSP&JVMRoute=n1&State=OK&id=1700000000123456\n");
        assert_eq!(status_rsp("n1", false, -1), "Type=STATUS-RSP&JVMRoute=n1&State=NOTOK&id=-1\n");
        assert_eq!(ping_rsp(Some("n1"), true, 7), "Type=PING-RSP&JVMRoute=n1&State=OK&id=7\n");
        assert_eq!(ping_rsp(None, true, 7), "Type=PING-RSP&State=OK&id=7\n");
        assert_eq!(ping_rsp(Some(""), false, 7), "Type=PING-RSP&State=NOTOK&id=7\n");
        assert_eq!(version_rsp("mod_proxy_cluster/2.0.0.Dev"), "release: mod_proxy_cluster/2.0.0.Dev, protocol: 0.2.1\n");
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            app_rsp(Command::EnableApp, "n1", &v(&["a"]), &v(&["/x", "/y"])),
            "Type=ENABLE-APP-RSP\nJvmRoute=n1\nAlias=a Contexts=/x,/y\n\n"
        );
        assert_eq!(
            app_rsp(Command::StopApp, "n1", &v(&["a", "b"]), &v(&["/"])),
            "Type=STOP-APP-RSP\nJvmRoute=n1\nAlias=a Contexts=/\n\nAlias=b Contexts=/\n\n"
        );
        assert_eq!(app_rsp(Command::DisableApp, "n1", &[], &[]), "Type=DISABLE-APP-RSP\nJvmRoute=n1\n");
        assert_eq!(app_rsp(Command::RemoveApp, "n1", &v(&["a"]), &[]), "Type=REMOVE-APP-RSP\nJvmRoute=n1\n");
        let e = Error::node_not_found("n1");
        assert_eq!(
            error_headers(&e),
            [
                ("Version", "0.2.1".to_string()),
                ("Type", "MEM".to_string()),
                ("Mess", "MEM: Can't read node with \"n1\" JVMRoute".to_string())
            ]
        );
        assert_eq!(e.to_string(), "Type=MEM Mess=MEM: Can't read node with \"n1\" JVMRoute");
        assert_eq!(Error::node_exists("n1").mess, "MEM: Node with \"n1\" JVMRoute already exists");
        assert_eq!(Error::node_insert_failed("n1").mess, "MEM: Can't update or insert node with \"n1\" JVMRoute");
        assert_eq!(Error::balancer_insert_failed("n1").mess, "MEM: Can't update or insert balancer for node with \"n1\" JVMRoute");
        assert_eq!(Error::same_worker().mess, "MEM: Another for the same worker already exist");
        assert_eq!(Error::command_not_supported(), syn("SYNTAX: Command is not supported"));
        assert_eq!(Error::read_failed("CONFIG").mess, "SYNTAX: CONFIG can't read POST data");
        assert_eq!(Error::general("x").kind.as_str(), "GENERAL");
        assert_eq!(ErrorType::from_header("SYNTAX"), ErrorType::Syntax);
        assert_eq!(ErrorType::from_header("weird"), ErrorType::General);
    }

    fn sample_nodes() -> Vec<NodeInfo> {
        vec![
            NodeInfo {
                id: 0,
                route: "n1".into(),
                balancer: "mycluster".into(),
                domain: "".into(),
                host: "10.0.0.1".into(),
                port: 9000,
                kind: "ajp".into(),
                load: 100,
                contexts: vec![("/app".into(), "ENABLED".into()), ("/x".into(), "STOPPED".into())],
                aliases: vec!["localhost".into(), "www".into()],
            },
            NodeInfo {
                id: 1,
                route: "n2".into(),
                balancer: "mycluster".into(),
                domain: "g".into(),
                host: "h2".into(),
                port: 8009,
                kind: "http".into(),
                load: -1,
                contexts: vec![],
                aliases: vec![],
            },
            NodeInfo {
                id: 3,
                route: "n3".into(),
                balancer: "other".into(),
                contexts: vec![("/".into(), "DISABLED".into())],
                aliases: vec!["a".into()],
                ..Default::default()
            },
        ]
    }

    #[test]
    fn info_text_format() {
        assert_eq!(info_text(&[]), "");
        let t = info_text(&sample_nodes());
        let want = "\
Node: [0],Name: n1,Balancer: mycluster,LBGroup: ,Host: 10.0.0.1,Port: 9000,Type: ajp,Flushpackets: Off,Flushwait: 10,Ping: 10,Smax: -1,Ttl: 60,Elected: 0,Read: 0,Transfered: 0,Connected: 0,Load: 100
Node: [1],Name: n2,Balancer: mycluster,LBGroup: g,Host: h2,Port: 8009,Type: http,Flushpackets: Off,Flushwait: 10,Ping: 10,Smax: -1,Ttl: 60,Elected: 0,Read: 0,Transfered: 0,Connected: 0,Load: -1
Node: [3],Name: n3,Balancer: other,LBGroup: ,Host: ,Port: 0,Type: ,Flushpackets: Off,Flushwait: 10,Ping: 10,Smax: -1,Ttl: 60,Elected: 0,Read: 0,Transfered: 0,Connected: 0,Load: 0
Vhost: [0:1:0], Alias: localhost
Vhost: [0:2:1], Alias: www
Vhost: [3:1:2], Alias: a
Context: [0:1:0], Context: /app, Status: ENABLED
Context: [0:1:1], Context: /x, Status: STOPPED
Context: [0:2:2], Context: /app, Status: ENABLED
Context: [0:2:3], Context: /x, Status: STOPPED
Context: [3:1:4], Context: /, Status: DISABLED
";
        assert_eq!(t, want);
    }

    #[test]
    fn dump_text_format() {
        assert_eq!(dump_text(&[]), "");
        let t = dump_text(&sample_nodes());
        let want = "\
balancer: [0] Name: mycluster Sticky: 1 [JSESSIONID]/[jsessionid] remove: 0 force: 1 Timeout: 0 maxAttempts: 1
balancer: [1] Name: other Sticky: 1 [JSESSIONID]/[jsessionid] remove: 0 force: 1 Timeout: 0 maxAttempts: 1
node: [0:0],Balancer: mycluster,JVMRoute: n1,LBGroup: [],Host: 10.0.0.1,Port: 9000,Type: ajp,flushpackets: 0,flushwait: 10,ping: 10,smax: -1,ttl: 60,timeout: 0
node: [1:1],Balancer: mycluster,JVMRoute: n2,LBGroup: [g],Host: h2,Port: 8009,Type: http,flushpackets: 0,flushwait: 10,ping: 10,smax: -1,ttl: 60,timeout: 0
node: [3:3],Balancer: other,JVMRoute: n3,LBGroup: [],Host: ,Port: 0,Type: ,flushpackets: 0,flushwait: 10,ping: 10,smax: -1,ttl: 60,timeout: 0
host: 0 [localhost] vhost: 1 node: 0
host: 1 [www] vhost: 2 node: 0
host: 2 [a] vhost: 1 node: 3
context: 0 [/app] vhost: 1 node: 0 status: 1
context: 1 [/x] vhost: 1 node: 0 status: 3
context: 2 [/app] vhost: 2 node: 0 status: 1
context: 3 [/x] vhost: 2 node: 0 status: 3
context: 4 [/] vhost: 1 node: 3 status: 2
";
        assert_eq!(t, want);
    }

    #[test]
    fn request_bytes() {
        let body = "JVMRoute=node1&Host=127.0.0.1&Port=9000&Reversed=true&Type=ajp";
        assert_eq!(
            String::from_utf8(encode_request(Command::Config, "/", "127.0.0.1:8090", body)).unwrap(),
            format!(
                "CONFIG / HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nContent-Length: 62\r\n\
                 User-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\n{body}"
            )
        );
        assert_eq!(body.len(), 62);
        assert_eq!(
            encode_request(Command::Info, "/", "h:1", ""),
            b"INFO / HTTP/1.1\r\nHost: h:1\r\nUser-Agent: ClusterListener/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        );
    }

    #[test]
    fn reply_parsing() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 49\r\n\r\nType=STATUS-RSP&JVMRoute=n1&State=OK&id=12345678\nEXTRA";
        let (r, n) = parse_reply(ok).unwrap().unwrap();
        assert_eq!(r, Reply { status: 200, error: None, body: "Type=STATUS-RSP&JVMRoute=n1&State=OK&id=12345678\n".into() });
        assert_eq!(&ok[n..], b"EXTRA");
        for cut in 0..n {
            assert_eq!(parse_reply(&ok[..cut]).unwrap(), None, "{cut}");
        }
        let err = b"HTTP/1.1 500 ERROR\r\nVersion: 0.2.1\r\nType: MEM\r\nMess: MEM: Can't read node with \"n1\" JVMRoute\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        let (r, _) = parse_reply(err).unwrap().unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.error, Some(Error::node_not_found("n1")));
        let chunked = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\nrest";
        let (r, n) = parse_reply(chunked).unwrap().unwrap();
        assert_eq!(r.body, "hello!");
        assert_eq!(&chunked[n..], b"rest");
        for cut in 0..n {
            assert_eq!(parse_reply(&chunked[..cut]).unwrap(), None, "{cut}");
        }
        let cont = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_reply(cont).unwrap().unwrap().1, cont.len());
        let nolen = b"HTTP/1.0 404 Not Found\r\n\r\nno such";
        assert_eq!(parse_reply(nolen).unwrap(), None);
        let (r, n) = parse_reply_at_eof(nolen).unwrap();
        assert_eq!(n, nolen.len());
        assert_eq!(r.error, Some(Error::general("HTTP 404 Not Found")));
        assert_eq!(r.body, "no such");
        assert!(parse_reply_at_eof(b"").is_err());
        assert!(parse_reply_at_eof(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(parse_reply(b"SSH-2.0\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n").is_err());
        assert!(parse_reply(&vec![b'H'; MAX_REPLY_HEAD + 10]).is_err());
        // 204: no body even without a length.
        assert_eq!(parse_reply(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap().1, 27);
    }
}
