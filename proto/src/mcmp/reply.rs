//! Replies: the bodies httpd answers with (as mod_manager prints them), and
//! the parser of a whole HTTP reply for the sending side.

use super::{Command, Error, ErrorType, PROTOCOL_VERSION};

/// STATUS reply body (print_status_response, lines 2377-2384):
/// `Type=STATUS-RSP&JVMRoute=<route>&State=OK|NOTOK&id=<id>\n`, where `id` is
/// httpd's scoreboard restart time (an `apr_time_t`, printed with `%ld`);
/// `ok` = the node answered the ping.
pub fn status_rsp(route: &str, ok: bool, id: i64) -> String {
    format!("Type=STATUS-RSP&JVMRoute={route}&State={}&id={id}\n", if ok { "OK" } else { "NOTOK" })
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
        n.aliases.iter().enumerate().map(|(i, a)| (i as i32 + 1, Some(a.as_str()))).collect()
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
                let n: usize = value.parse().map_err(|_| format!("bad Content-Length: {:?}", truncate(value)))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err("conflicting Content-Length headers".into());
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case("Transfer-Encoding") {
                chunked = value.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
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
                let size =
                    usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size: {:?}", truncate(&l)))?;
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
        return Ok(Some((Reply { status, error, body: String::from_utf8_lossy(&body).into_owned() }, end)));
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

    #[test]
    fn replies_byte_for_byte() {
        assert_eq!(
            status_rsp("n1", true, 1700000000123456),
            "Type=STATUS-RSP&JVMRoute=n1&State=OK&id=1700000000123456\n"
        );
        assert_eq!(status_rsp("n1", false, -1), "Type=STATUS-RSP&JVMRoute=n1&State=NOTOK&id=-1\n");
        assert_eq!(ping_rsp(Some("n1"), true, 7), "Type=PING-RSP&JVMRoute=n1&State=OK&id=7\n");
        assert_eq!(ping_rsp(None, true, 7), "Type=PING-RSP&State=OK&id=7\n");
        assert_eq!(ping_rsp(Some(""), false, 7), "Type=PING-RSP&State=NOTOK&id=7\n");
        assert_eq!(
            version_rsp("mod_proxy_cluster/2.0.0.Dev"),
            "release: mod_proxy_cluster/2.0.0.Dev, protocol: 0.2.1\n"
        );
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
    fn reply_parsing() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 49\r\n\r\nType=STATUS-RSP&JVMRoute=n1&State=OK&id=12345678\nEXTRA";
        let (r, n) = parse_reply(ok).unwrap().unwrap();
        assert_eq!(
            r,
            Reply { status: 200, error: None, body: "Type=STATUS-RSP&JVMRoute=n1&State=OK&id=12345678\n".into() }
        );
        assert_eq!(&ok[n..], b"EXTRA");
        for cut in 0..n {
            assert_eq!(parse_reply(&ok[..cut]).unwrap(), None, "{cut}");
        }
        let err = b"HTTP/1.1 500 ERROR\r\nVersion: 0.2.1\r\nType: MEM\r\nMess: MEM: Can't read node with \"n1\" JVMRoute\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        let (r, _) = parse_reply(err).unwrap().unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.error, Some(Error::node_not_found("n1")));
        let chunked =
            b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\nrest";
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
