//! AJP13 codec, container side (what Tomcat does): parse the packets httpd's
//! mod_proxy_ajp sends, encode the responses. Pure functions, no I/O.

use std::fmt;

/// Web server -> container packet magic.
pub const MAGIC_IN: [u8; 2] = [0x12, 0x34];
/// Container -> web server packet magic.
const MAGIC_OUT: [u8; 2] = *b"AB";
/// Largest request packet payload accepted (httpd's ProxyIOBufferSize can raise
/// the AJP packet size up to 64 KiB).
pub const MAX_PAYLOAD: usize = 65535;
/// Largest body chunk httpd sends in answer to GET_BODY_CHUNK (8 KiB packet).
pub const MAX_BODY_REQUEST: u16 = 8186;
/// Largest SEND_BODY_CHUNK payload (Tomcat's MAX_SEND_SIZE = 8192 - 8).
pub const MAX_SEND_CHUNK: usize = 8184;

pub const CODE_FORWARD_REQUEST: u8 = 2;
pub const CODE_SHUTDOWN: u8 = 7;
pub const CODE_CPING: u8 = 10;
pub const CPONG: [u8; 5] = [b'A', b'B', 0x00, 0x01, 0x09];

const SC_RESP_CONTENT_TYPE: u16 = 0xA001;
const SC_RESP_CONTENT_LENGTH: u16 = 0xA003;

#[derive(Debug, PartialEq, Eq)]
pub enum AjpError {
    BadMagic,
    TooLarge(usize),
    Truncated,
    BadCode(u8),
    BadHeaderCode(u16),
    BadAttribute(u8),
    BadUtf8,
    BadContentLength,
}

impl fmt::Display for AjpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AjpError::BadMagic => write!(f, "bad AJP packet magic"),
            AjpError::TooLarge(n) => write!(f, "AJP packet too large ({n} bytes)"),
            AjpError::Truncated => write!(f, "truncated AJP message"),
            AjpError::BadCode(c) => write!(f, "unexpected AJP packet code {c}"),
            AjpError::BadHeaderCode(c) => write!(f, "unknown AJP request header code 0x{c:04X}"),
            AjpError::BadAttribute(c) => write!(f, "unknown AJP attribute code 0x{c:02X}"),
            AjpError::BadUtf8 => write!(f, "AJP string is not UTF-8"),
            AjpError::BadContentLength => write!(f, "invalid content-length"),
        }
    }
}

/// Incremental packet framing: `Ok(Some((payload_start, total_len)))` when a full
/// packet is in `buf` (payload is `buf[4..total_len]`), `Ok(None)` if more bytes are needed.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, AjpError> {
    let have = buf.len().min(2);
    if buf[..have] != MAGIC_IN[..have] {
        return Err(AjpError::BadMagic);
    }
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(AjpError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(4 + len))
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, AjpError> {
        let v = *self.b.get(self.pos).ok_or(AjpError::Truncated)?;
        self.pos += 1;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, AjpError> {
        let hi = self.u8()?;
        let lo = self.u8()?;
        Ok(u16::from_be_bytes([hi, lo]))
    }
    fn peek_u16(&self) -> Result<u16, AjpError> {
        match self.b.get(self.pos..self.pos + 2) {
            Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
            None => Err(AjpError::Truncated),
        }
    }
    /// String: len16, bytes, NUL; 0xFFFF is null (returned as None).
    fn string(&mut self) -> Result<Option<String>, AjpError> {
        let len = self.u16()?;
        if len == 0xFFFF {
            return Ok(None);
        }
        let len = len as usize;
        let end = self.pos.checked_add(len + 1).ok_or(AjpError::Truncated)?;
        if end > self.b.len() {
            return Err(AjpError::Truncated);
        }
        let s = std::str::from_utf8(&self.b[self.pos..self.pos + len]).map_err(|_| AjpError::BadUtf8)?;
        self.pos = end;
        Ok(Some(s.to_owned()))
    }
}

const METHODS: [&str; 27] = [
    "OPTIONS",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "ACL",
    "REPORT",
    "VERSION-CONTROL",
    "CHECKIN",
    "CHECKOUT",
    "UNCHECKOUT",
    "SEARCH",
    "MKWORKSPACE",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
];

const REQ_HEADERS: [&str; 14] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "cookie2",
    "host",
    "pragma",
    "referer",
    "user-agent",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest {
    pub method: String,
    pub protocol: String,
    pub uri: String,
    pub remote_addr: String,
    pub remote_host: String,
    pub server_name: String,
    pub server_port: u16,
    pub is_ssl: bool,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// (code, name, value); name is only set for req_attribute (0x0A).
    pub attributes: Vec<(u8, String, String)>,
}

impl ForwardRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn content_length(&self) -> Result<Option<u64>, AjpError> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| AjpError::BadContentLength),
        }
    }
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// Parses a Forward Request payload (starting with the 0x02 code).
pub fn parse_forward_request(p: &[u8]) -> Result<ForwardRequest, AjpError> {
    let mut r = Reader { b: p, pos: 0 };
    let code = r.u8()?;
    if code != CODE_FORWARD_REQUEST {
        return Err(AjpError::BadCode(code));
    }
    let m = r.u8()?;
    let method = match m {
        1..=27 => METHODS[m as usize - 1].to_owned(),
        // SC_M_JK_STORED: the real method arrives as attribute 0x0D.
        0xFF => String::new(),
        _ => return Err(AjpError::BadCode(m)),
    };
    let s = |r: &mut Reader| r.string().map(Option::unwrap_or_default);
    let protocol = s(&mut r)?;
    let uri = s(&mut r)?;
    let remote_addr = s(&mut r)?;
    let remote_host = s(&mut r)?;
    let server_name = s(&mut r)?;
    let server_port = r.u16()?;
    let is_ssl = r.u8()? != 0;
    let n = r.u16()?;
    let mut headers = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        let name = if r.peek_u16()? & 0xFF00 == 0xA000 {
            let c = r.u16()?;
            let i = (c & 0xFF) as usize;
            match REQ_HEADERS.get(i.wrapping_sub(1)) {
                Some(h) if i >= 1 => (*h).to_owned(),
                _ => return Err(AjpError::BadHeaderCode(c)),
            }
        } else {
            r.string()?.ok_or(AjpError::Truncated)?.to_ascii_lowercase()
        };
        let value = s(&mut r)?;
        headers.push((name, value));
    }
    let mut attributes = Vec::new();
    let mut method = method;
    loop {
        let a = r.u8()?;
        match a {
            0xFF => break,
            0x0A => {
                let name = s(&mut r)?;
                let value = s(&mut r)?;
                attributes.push((a, name, value));
            }
            // ssl_key_size is an int16 in mod_proxy_ajp and Tomcat.
            0x0B => {
                let v = r.u16()?;
                attributes.push((a, String::new(), v.to_string()));
            }
            0x01..=0x0D => {
                let v = s(&mut r)?;
                if a == 0x0D {
                    method = v.clone();
                }
                attributes.push((a, String::new(), v));
            }
            _ => return Err(AjpError::BadAttribute(a)),
        }
    }
    if method.is_empty() {
        return Err(AjpError::BadCode(0xFF));
    }
    Ok(ForwardRequest {
        method,
        protocol,
        uri,
        remote_addr,
        remote_host,
        server_name,
        server_port,
        is_ssl,
        headers,
        attributes,
    })
}

/// The data of a request body packet payload (`len16 data`); an empty payload
/// or a zero length is the end of the body.
pub fn body_data(p: &[u8]) -> Result<&[u8], AjpError> {
    if p.is_empty() {
        return Ok(p);
    }
    if p.len() < 2 {
        return Err(AjpError::Truncated);
    }
    let n = u16::from_be_bytes([p[0], p[1]]) as usize;
    p.get(2..2 + n).ok_or(AjpError::Truncated)
}

fn packet(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC_OUT);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

fn put_string(v: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(0xFFFE)];
    v.extend_from_slice(&(b.len() as u16).to_be_bytes());
    v.extend_from_slice(b);
    v.push(0);
}

/// GET_BODY_CHUNK asking for up to `n` bytes.
pub fn get_body_chunk(n: u16) -> [u8; 7] {
    let n = n.min(MAX_BODY_REQUEST).to_be_bytes();
    [b'A', b'B', 0x00, 0x03, 0x06, n[0], n[1]]
}

/// SEND_HEADERS with Content-Type, Content-Length and the extra headers.
pub fn send_headers(
    status: u16,
    msg: &str,
    content_type: &str,
    content_length: u64,
    extra: &[(&str, &str)],
    out: &mut Vec<u8>,
) {
    let mut p = Vec::with_capacity(64);
    p.push(4);
    p.extend_from_slice(&status.to_be_bytes());
    put_string(&mut p, msg);
    p.extend_from_slice(&(2 + extra.len() as u16).to_be_bytes());
    p.extend_from_slice(&SC_RESP_CONTENT_TYPE.to_be_bytes());
    put_string(&mut p, content_type);
    p.extend_from_slice(&SC_RESP_CONTENT_LENGTH.to_be_bytes());
    put_string(&mut p, &content_length.to_string());
    for (n, v) in extra {
        put_string(&mut p, n);
        put_string(&mut p, v);
    }
    packet(&p, out);
}

/// SEND_BODY_CHUNK packets for `data` (each at most MAX_SEND_CHUNK bytes).
pub fn send_body(data: &[u8], out: &mut Vec<u8>) {
    for c in data.chunks(MAX_SEND_CHUNK) {
        out.extend_from_slice(&MAGIC_OUT);
        out.extend_from_slice(&((c.len() + 4) as u16).to_be_bytes());
        out.push(3);
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
        out.push(0);
    }
}

pub fn end_response(reuse: bool, out: &mut Vec<u8>) {
    packet(&[5, reuse as u8], out);
}

/// Encoder of the web server side, for tests (what mod_proxy_ajp sends).
#[cfg(test)]
pub mod client {
    use super::*;

    pub fn forward_request(r: &ForwardRequest) -> Vec<u8> {
        let mut p = vec![CODE_FORWARD_REQUEST];
        let m = METHODS.iter().position(|m| *m == r.method).map(|i| i as u8 + 1).unwrap_or(0xFF);
        p.push(m);
        for s in [&r.protocol, &r.uri, &r.remote_addr, &r.remote_host, &r.server_name] {
            put_string(&mut p, s);
        }
        p.extend_from_slice(&r.server_port.to_be_bytes());
        p.push(r.is_ssl as u8);
        p.extend_from_slice(&(r.headers.len() as u16).to_be_bytes());
        for (n, v) in &r.headers {
            match REQ_HEADERS.iter().position(|h| h == n) {
                Some(i) => p.extend_from_slice(&(0xA001 + i as u16).to_be_bytes()),
                None => put_string(&mut p, n),
            }
            put_string(&mut p, v);
        }
        for (c, n, v) in &r.attributes {
            p.push(*c);
            if *c == 0x0A {
                put_string(&mut p, n);
            }
            if *c == 0x0B {
                p.extend_from_slice(&v.parse::<u16>().unwrap().to_be_bytes());
            } else {
                put_string(&mut p, v);
            }
        }
        p.push(0xFF);
        wrap(&p)
    }

    pub fn wrap(p: &[u8]) -> Vec<u8> {
        let mut v = MAGIC_IN.to_vec();
        v.extend_from_slice(&(p.len() as u16).to_be_bytes());
        v.extend_from_slice(p);
        v
    }

    pub fn body(data: &[u8]) -> Vec<u8> {
        let mut p = (data.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(data);
        wrap(&p)
    }

    pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> ForwardRequest {
        ForwardRequest {
            method: method.into(),
            protocol: "HTTP/1.1".into(),
            uri: uri.into(),
            remote_addr: "127.0.0.1".into(),
            remote_host: "".into(),
            server_name: "localhost".into(),
            server_port: 80,
            is_ssl: false,
            headers: headers.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            attributes: vec![],
        }
    }

    /// A parsed container response: (status, headers, body, reuse).
    pub type Response = (u16, Vec<(String, String)>, Vec<u8>, bool);
    /// The response (if complete) with the bytes it took, and the GET_BODY_CHUNK sizes seen.
    pub type Parsed = (Option<(Response, usize)>, Vec<u16>);

    /// Parses container packets from `buf`; `Ok(None)` when END_RESPONSE is not there yet.
    /// GET_BODY_CHUNK packets are returned in the second element.
    pub fn parse_response(buf: &[u8]) -> Result<Parsed, AjpError> {
        let mut pos = 0;
        let mut status = 0;
        let mut headers = Vec::new();
        let mut body = Vec::new();
        let mut gets = Vec::new();
        while buf.len() >= pos + 4 {
            if buf[pos..pos + 2] != MAGIC_OUT {
                return Err(AjpError::BadMagic);
            }
            let len = u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize;
            if buf.len() < pos + 4 + len {
                break;
            }
            let p = &buf[pos + 4..pos + 4 + len];
            pos += 4 + len;
            let mut r = Reader { b: p, pos: 0 };
            match r.u8()? {
                4 => {
                    status = r.u16()?;
                    r.string()?;
                    for _ in 0..r.u16()? {
                        let name = if r.peek_u16()? & 0xFF00 == 0xA000 {
                            match r.u16()? {
                                SC_RESP_CONTENT_TYPE => "content-type".to_owned(),
                                SC_RESP_CONTENT_LENGTH => "content-length".to_owned(),
                                c => format!("0x{c:04x}"),
                            }
                        } else {
                            r.string()?.unwrap_or_default().to_ascii_lowercase()
                        };
                        headers.push((name, r.string()?.unwrap_or_default()));
                    }
                }
                3 => {
                    let n = r.u16()? as usize;
                    assert!(n <= MAX_SEND_CHUNK);
                    body.extend_from_slice(&p[3..3 + n]);
                }
                6 => gets.push(r.u16()?),
                9 => {}
                5 => {
                    let reuse = r.u8()? != 0;
                    return Ok((Some(((status, headers, body, reuse), pos)), gets));
                }
                c => return Err(AjpError::BadCode(c)),
            }
        }
        Ok((None, gets))
    }
}

#[cfg(test)]
mod tests {
    use super::client::*;
    use super::*;

    #[test]
    fn forward_request_round_trip() {
        let mut r = request(
            "POST",
            "/app/x",
            &[("host", "example.org"), ("content-length", "5"), ("x-custom", "v"), ("user-agent", "t")],
        );
        r.is_ssl = true;
        r.attributes = vec![
            (0x05, String::new(), "a=b".into()),
            (0x0A, "AJP_REMOTE_PORT".into(), "5555".into()),
            (0x0B, String::new(), "256".into()),
        ];
        let pkt = forward_request(&r);
        let total = frame(&pkt).unwrap().unwrap();
        assert_eq!(total, pkt.len());
        for cut in 0..pkt.len() {
            assert_eq!(frame(&pkt[..cut]).unwrap(), None);
        }
        let got = parse_forward_request(&pkt[4..]).unwrap();
        assert_eq!(got, r);
        assert_eq!(got.content_length().unwrap(), Some(5));
        assert!(!got.is_chunked());
    }

    #[test]
    fn hand_built_packet() {
        // GET / with one coded header (host), no attributes.
        let mut p = vec![0x02, 0x02];
        for s in ["HTTP/1.1", "/", "10.0.0.1", "", "srv"] {
            p.extend_from_slice(&(s.len() as u16).to_be_bytes());
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(&[0x00, 0x50, 0x00, 0x00, 0x01, 0xA0, 0x0B, 0x00, 0x01, b'h', 0x00, 0xFF]);
        let r = parse_forward_request(&p).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.uri, "/");
        assert_eq!(r.server_port, 80);
        assert_eq!(r.header("host"), Some("h"));
        assert_eq!(r.content_length().unwrap(), None);
        // Every truncation is an error, never a panic.
        for cut in 0..p.len() {
            assert!(parse_forward_request(&p[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert_eq!(frame(b"GET /"), Err(AjpError::BadMagic));
        assert_eq!(frame(&[0x12, 0x34, 0x00]), Ok(None));
        assert_eq!(parse_forward_request(&[0x03]), Err(AjpError::BadCode(3)));
        assert_eq!(parse_forward_request(&[0x02, 0x63]), Err(AjpError::BadCode(0x63)));
        let mut r = request("GET", "/", &[]);
        r.attributes.push((0x0C, String::new(), "s".into()));
        let mut pkt = forward_request(&r);
        let n = pkt.len();
        pkt[n - 1] = 0x42; // replace the terminator with an unknown attribute
        assert!(parse_forward_request(&pkt[4..]).is_err());
        // Bad header code
        let mut p = vec![0x02, 0x02];
        for _ in 0..5 {
            p.extend_from_slice(&[0, 0, 0]);
        }
        p.extend_from_slice(&[0, 80, 0, 0, 1, 0xA0, 0x20, 0, 0, 0, 0xFF]);
        assert_eq!(parse_forward_request(&p), Err(AjpError::BadHeaderCode(0xA020)));
        // String length past the end
        assert_eq!(parse_forward_request(&[0x02, 0x02, 0x00, 0x10, b'a']), Err(AjpError::Truncated));
        assert_eq!(body_data(&[0x00]), Err(AjpError::Truncated));
        assert_eq!(body_data(&[0x00, 0x05, 1, 2]), Err(AjpError::Truncated));
        let mut r = request("GET", "/", &[("content-length", "x")]);
        r.headers.push(("transfer-encoding".into(), "chunked".into()));
        assert_eq!(r.content_length(), Err(AjpError::BadContentLength));
        assert!(r.is_chunked());
    }

    #[test]
    fn body_packets_and_get_body_chunk() {
        let b = body(b"hello");
        let t = frame(&b).unwrap().unwrap();
        assert_eq!(body_data(&b[4..t]).unwrap(), b"hello");
        assert_eq!(body_data(&[]).unwrap(), b"");
        assert_eq!(body_data(&[0, 0]).unwrap(), b"");
        assert_eq!(get_body_chunk(100), [b'A', b'B', 0, 3, 6, 0, 100]);
        assert_eq!(get_body_chunk(60000), [b'A', b'B', 0, 3, 6, 0x1F, 0xFA]);
        let (r, gets) = parse_response(&get_body_chunk(8186)).unwrap();
        assert!(r.is_none());
        assert_eq!(gets, vec![8186]);
    }

    #[test]
    fn response_encoding() {
        let body: Vec<u8> = (0..20000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut out = Vec::new();
        send_headers(200, "OK", "application/octet-stream", body.len() as u64, &[("X-Responder", "ajp")], &mut out);
        send_body(&body, &mut out);
        end_response(true, &mut out);
        let (r, _) = parse_response(&out).unwrap();
        let ((status, headers, got, reuse), used) = r.unwrap();
        assert_eq!(used, out.len());
        assert_eq!(status, 200);
        assert!(reuse);
        assert_eq!(got, body);
        assert!(headers.contains(&("content-length".into(), "20000".into())));
        assert!(headers.contains(&("x-responder".into(), "ajp".into())));
        // Every chunk packet fits in 8 KiB.
        assert!(out.len() <= 3 * 8192 + 200);
    }
}
