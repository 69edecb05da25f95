//! HTTP/1.1 server-side codec for the responder: request heads, bodies
//! (Content-Length or chunked) and response heads. Pure functions, no I/O.

use std::fmt;

/// Largest request head accepted (request line + headers).
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

#[derive(Debug, PartialEq, Eq)]
pub enum HttpError {
    HeadTooLarge,
    BadRequestLine,
    BadVersion,
    BadHeader,
    TooManyHeaders,
    BadContentLength,
    BadTransferEncoding,
    BadChunk,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            HttpError::HeadTooLarge => "request head larger than 64 KiB",
            HttpError::BadRequestLine => "malformed request line",
            HttpError::BadVersion => "unsupported HTTP version",
            HttpError::BadHeader => "malformed header line",
            HttpError::TooManyHeaders => "too many headers",
            HttpError::BadContentLength => "invalid Content-Length",
            HttpError::BadTransferEncoding => "unsupported Transfer-Encoding",
            HttpError::BadChunk => "malformed chunked body",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// Minor version: 0 or 1.
    pub minor: u8,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: BodyKind,
    /// The connection must be closed after the response.
    pub close: bool,
    pub expect_continue: bool,
}

impl Request {
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    // Returns (end of head excluding the blank line, total length including it).
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&c| c == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some((nl, next + 1));
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some((nl, next + 2));
        }
        i = next;
    }
    None
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete (read more);
/// `Ok(Some((req, used)))`: the head took `used` bytes. Leading empty lines are skipped.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let skip = buf.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
    let b = &buf[skip..];
    let Some((head_end, total)) = find_head_end(b) else {
        if buf.len() > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        return Ok(None);
    };
    if total > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let head = std::str::from_utf8(&b[..head_end]).map_err(|_| HttpError::BadHeader)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().ok_or(HttpError::BadRequestLine)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    if method.is_empty()
        || !method.bytes().all(is_tchar)
        || target.is_empty()
        || target.bytes().any(|c| c <= b' ' || c == 0x7F)
    {
        return Err(HttpError::BadRequestLine);
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(HttpError::BadVersion),
    };
    let mut headers = Vec::new();
    for l in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::TooManyHeaders);
        }
        let (n, v) = l.split_once(':').ok_or(HttpError::BadHeader)?;
        if n.is_empty() || !n.bytes().all(is_tchar) {
            // Also rejects obsolete line folding (a line starting with white space).
            return Err(HttpError::BadHeader);
        }
        if v.bytes().any(|c| (c < b' ' && c != b'\t') || c == 0x7F) {
            return Err(HttpError::BadHeader);
        }
        headers.push((n.to_ascii_lowercase(), v.trim_matches([' ', '\t']).to_owned()));
    }
    let mut cl: Option<u64> = None;
    let mut te: Option<String> = None;
    let mut conn_close = minor == 0;
    let mut expect_continue = false;
    for (n, v) in &headers {
        match n.as_str() {
            "content-length" => {
                for part in v.split(',') {
                    let p = part.trim();
                    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                        return Err(HttpError::BadContentLength);
                    }
                    let x: u64 = p.parse().map_err(|_| HttpError::BadContentLength)?;
                    if cl.is_some_and(|c| c != x) {
                        return Err(HttpError::BadContentLength);
                    }
                    cl = Some(x);
                }
            }
            "transfer-encoding" => {
                let t = te.get_or_insert_with(String::new);
                if !t.is_empty() {
                    t.push(',');
                }
                t.push_str(&v.to_ascii_lowercase());
            }
            "connection" => {
                for tok in v.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                    if tok == "close" {
                        conn_close = true;
                    } else if tok == "keep-alive" && minor == 0 {
                        conn_close = false;
                    }
                }
            }
            "expect" => expect_continue = v.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    let body = match te {
        Some(t) => {
            // Only "chunked" as the final coding is understood; other codings are not decoded.
            let last = t.rsplit(',').next().unwrap_or("").trim();
            if last != "chunked" || minor == 0 {
                return Err(HttpError::BadTransferEncoding);
            }
            // Transfer-Encoding overrides Content-Length (RFC 9112 6.3); close afterwards.
            if cl.is_some() {
                conn_close = true;
            }
            BodyKind::Chunked
        }
        None => match cl {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        },
    };
    Ok(Some((
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            minor,
            headers,
            body,
            close: conn_close,
            expect_continue,
        },
        skip + total,
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size {
        digits: usize,
        value: u64,
    },
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section: `line_len` bytes of the current line seen.
    Trailer {
        line_len: usize,
    },
    TrailerLf {
        line_len: usize,
    },
    Done,
}

/// Incremental decoder of a chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: ChunkState::Size { digits: 0, value: 0 }, trailer_bytes: 0 }
    }
}

impl ChunkedDecoder {
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending data to `out` (when given); returns the
    /// number of input bytes consumed. Stops right after the final CRLF.
    pub fn decode(&mut self, input: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            match self.state {
                ChunkState::Size { digits, value } => {
                    if let Some(d) = (c as char).to_digit(16) {
                        if digits >= 15 {
                            return Err(HttpError::BadChunk);
                        }
                        self.state = ChunkState::Size { digits: digits + 1, value: value * 16 + d as u64 };
                    } else if digits == 0 {
                        return Err(HttpError::BadChunk);
                    } else if c == b';' || c == b' ' || c == b'\t' {
                        self.state = ChunkState::Ext(value);
                        self.trailer_bytes = 0;
                    } else if c == b'\r' {
                        self.state = ChunkState::SizeLf(value);
                    } else if c == b'\n' {
                        self.after_size(value);
                    } else {
                        return Err(HttpError::BadChunk);
                    }
                    i += 1;
                }
                ChunkState::Ext(value) => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > 4096 {
                        return Err(HttpError::BadChunk);
                    }
                    if c == b'\r' {
                        self.state = ChunkState::SizeLf(value);
                    } else if c == b'\n' {
                        self.after_size(value);
                    }
                    i += 1;
                }
                ChunkState::SizeLf(value) => {
                    if c != b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    self.after_size(value);
                    i += 1;
                }
                ChunkState::Data(rem) => {
                    let n = (rem as usize).min(input.len() - i);
                    if let Some(o) = out.as_deref_mut() {
                        o.extend_from_slice(&input[i..i + n]);
                    }
                    i += n;
                    let left = rem - n as u64;
                    self.state = if left == 0 { ChunkState::DataCr } else { ChunkState::Data(left) };
                }
                ChunkState::DataCr => {
                    self.state = match c {
                        b'\r' => ChunkState::DataLf,
                        b'\n' => ChunkState::Size { digits: 0, value: 0 },
                        _ => return Err(HttpError::BadChunk),
                    };
                    i += 1;
                }
                ChunkState::DataLf => {
                    if c != b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    self.state = ChunkState::Size { digits: 0, value: 0 };
                    i += 1;
                }
                ChunkState::Trailer { line_len } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_HEAD {
                        return Err(HttpError::BadChunk);
                    }
                    self.state = match c {
                        b'\r' => ChunkState::TrailerLf { line_len },
                        b'\n' if line_len == 0 => ChunkState::Done,
                        b'\n' => ChunkState::Trailer { line_len: 0 },
                        _ => ChunkState::Trailer { line_len: line_len + 1 },
                    };
                    i += 1;
                    if self.state == ChunkState::Done {
                        return Ok(i);
                    }
                }
                ChunkState::TrailerLf { line_len } => {
                    if c != b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    i += 1;
                    if line_len == 0 {
                        self.state = ChunkState::Done;
                        return Ok(i);
                    }
                    self.state = ChunkState::Trailer { line_len: 0 };
                }
                ChunkState::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn after_size(&mut self, size: u64) {
        self.trailer_bytes = 0;
        self.state = if size == 0 { ChunkState::Trailer { line_len: 0 } } else { ChunkState::Data(size) };
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Whether a response with this status carries no body at all.
pub fn bodiless_status(status: u16) -> bool {
    status == 204 || status == 304 || (100..200).contains(&status)
}

/// Response head with Content-Length, Content-Type and X-Responder.
pub fn response_head(status: u16, content_length: u64, close: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status, reason(status));
    if !bodiless_status(status) {
        let _ = write!(out, "Content-Length: {content_length}\r\n");
    }
    out.extend_from_slice(b"Content-Type: application/octet-stream\r\nX-Responder: http\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_get_and_pipelining() {
        let buf = b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-A:  v \r\n\r\nGET /second HTTP/1.1\r\nConnection: close\r\n\r\n";
        let (r, used) = parse_request(buf).unwrap().unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/a?b");
        assert_eq!(r.header("x-a"), Some("v"));
        assert_eq!(r.body, BodyKind::None);
        assert!(!r.close);
        let (r2, used2) = parse_request(&buf[used..]).unwrap().unwrap();
        assert_eq!(r2.target, "/second");
        assert!(r2.close);
        assert_eq!(used + used2, buf.len());
        for cut in 0..used {
            assert_eq!(parse_request(&buf[..cut]).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn bodies_and_connection_semantics() {
        let (r, _) = parse_request(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.body, BodyKind::Length(12));
        let (r, _) = parse_request(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.body, BodyKind::Length(3));
        let (r, _) = parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        let (r, _) = parse_request(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(r.close);
        let (r, _) = parse_request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(!r.close);
        let (r, _) = parse_request(b"\r\nGET / HTTP/1.1\nExpect: 100-continue\n\n").unwrap().unwrap();
        assert!(r.expect_continue);
    }

    #[test]
    fn malformed_heads() {
        let bad: &[(&[u8], HttpError)] = &[
            (b"GET /\r\n\r\n", HttpError::BadRequestLine),
            (b"GET  / HTTP/1.1\r\n\r\n", HttpError::BadRequestLine),
            (b"GET / HTTP/2.0\r\n\r\n", HttpError::BadVersion),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", HttpError::BadHeader),
            (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", HttpError::BadHeader),
            (b"GET / HTTP/1.1\r\nBad Name: b\r\n\r\n", HttpError::BadHeader),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HttpError::BadContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HttpError::BadContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", HttpError::BadContentLength),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", HttpError::BadTransferEncoding),
            (b"\xff\xfe / HTTP/1.1\r\n\r\n", HttpError::BadHeader),
        ];
        for (b, e) in bad {
            assert_eq!(parse_request(b).unwrap_err(), *e, "{}", String::from_utf8_lossy(b));
        }
        let big = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(parse_request(&big).unwrap_err(), HttpError::HeadTooLarge);
    }

    #[test]
    fn chunked_decoding_incremental() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..=body.len() {
            let mut d = ChunkedDecoder::default();
            let mut out = Vec::new();
            let mut pos = 0;
            while !d.done() && pos < body.len() {
                let end = (pos + step).min(body.len());
                pos += d.decode(&body[pos..end], Some(&mut out)).unwrap();
            }
            assert!(d.done());
            assert_eq!(out, b"hello world");
            assert_eq!(&body[pos..], b"NEXT", "step {step}");
        }
        let mut d = ChunkedDecoder::default();
        assert_eq!(d.decode(b"0\r\n\r\n", None).unwrap(), 5);
        assert!(d.done());
    }

    #[test]
    fn chunked_errors() {
        for b in [&b"x\r\n"[..], b"5\r\nhelloX", b"5\rX", b"\r\n", b"ffffffffffffffffff\r\n"] {
            let mut d = ChunkedDecoder::default();
            assert!(d.decode(b, None).is_err(), "{}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn response_heads() {
        let mut v = Vec::new();
        response_head(404, 3, true, &mut v);
        let s = String::from_utf8(v).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }
}
