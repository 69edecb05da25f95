//! The Java side's request form: how DefaultMCMPHandler and
//! DefaultMCMPRequestFactory encode, order and frame a request.

use super::Command;

/// `JVMRoute=<r>` first, then the other pairs sorted by key (Java's
/// `TreeMap<String,String>`: UTF-16 order, which is byte order for ASCII
/// keys), each name and value through [`form_encode`].
pub(super) fn encode_body(route: Option<&str>, mut rest: Vec<(&str, String)>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_is_javas() {
        assert_eq!(form_encode("azAZ09.-*_"), "azAZ09.-*_");
        assert_eq!(form_encode("a b+c"), "a+b%2Bc");
        assert_eq!(form_encode("/x,/y"), "%2Fx%2C%2Fy");
        assert_eq!(form_encode("[::1]:8009"), "%5B%3A%3A1%5D%3A8009");
        assert_eq!(form_encode("~&=%é"), "%7E%26%3D%25%C3%A9");
        assert_eq!(form_encode(""), "");
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
}
