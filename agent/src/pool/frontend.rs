//! An httpd front end and its port range (`--frontend HOST:FIRST-LAST`).

use std::fmt;

/// An httpd front end and its port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontEnd {
    pub host: String,
    pub first: u16,
    pub last: u16,
}

impl FrontEnd {
    /// Parses `HOST:FIRST-LAST` or `HOST:PORT` (IPv6 hosts in brackets).
    pub fn parse(s: &str) -> Result<FrontEnd, String> {
        let bad = |why: &str| format!("invalid front end {s:?}: {why} (expected HOST:FIRST-LAST or HOST:PORT)");
        let (host, ports) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() || host.contains(['[', ']', ' ', '/']) {
            return Err(bad("bad host"));
        }
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| bad("bad port"));
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if first > last {
            return Err(bad("the first port is above the last"));
        }
        Ok(FrontEnd { host: host.to_owned(), first, last })
    }

    pub(super) fn addr(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, port)
        } else {
            format!("{}:{}", self.host, port)
        }
    }
}

impl fmt::Display for FrontEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.first == self.last {
            write!(f, "{}:{}", h, self.first)
        } else {
            write!(f, "{}:{}-{}", h, self.first, self.last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_front_ends() {
        assert_eq!(
            FrontEnd::parse("127.0.0.1:9000-9003").unwrap(),
            FrontEnd { host: "127.0.0.1".into(), first: 9000, last: 9003 }
        );
        let f = FrontEnd::parse("web1:8080").unwrap();
        assert_eq!((f.first, f.last), (8080, 8080));
        assert_eq!(f.to_string(), "web1:8080");
        let f = FrontEnd::parse("[::1]:9000-9001").unwrap();
        assert_eq!(f.host, "::1");
        assert_eq!(f.to_string(), "[::1]:9000-9001");
        assert_eq!(f.addr(9001), "[::1]:9001");
        for bad in ["127.0.0.1", "h:0", "h:9003-9000", ":9000", "h:x", "h:1-2-3", "h:70000"] {
            assert!(FrontEnd::parse(bad).is_err(), "{bad}");
        }
    }
}
