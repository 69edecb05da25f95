//! Built-in responder (no backend): answers AJP13 or HTTP/1.1 requests itself,
//! many per connection, for tests and benchmarks.
//!
//! Paths: `/status/NNN` answers with status NNN (200..=599), `/sleep/MS` waits
//! MS milliseconds first; everything else is 200. The body is the request body
//! (`--echo`) or a fixed body of `--body-size` bytes.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::ajp::{self, AjpError};
use crate::http1::{self, BodyKind, ChunkedDecoder, HttpError};
use crate::tls::{self, Prefixed, Tls};

/// Largest request body kept for `--echo`.
const MAX_ECHO: u64 = 64 << 20;
const MAX_SLEEP_MS: u64 = 600_000;
const READ_CHUNK: usize = 16 * 1024;
const WRITE_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub body: Arc<[u8]>,
    pub echo: bool,
    /// Serve TLS (`--tls-cert`/`--tls-key`): every connection starts with a
    /// TLS handshake, requests follow inside it.
    pub tls: Option<Tls>,
}

impl Config {
    pub fn new(body_size: usize, echo: bool) -> Config {
        let body: Vec<u8> = (0..body_size).map(|i| b'a' + (i % 26) as u8).collect();
        Config { body: body.into(), echo, tls: None }
    }
    pub fn with_tls(mut self, tls: Option<Tls>) -> Config {
        self.tls = tls;
        self
    }
}

/// Longest a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS connection a request came on: its number and how many requests
/// it carried so far (the `X-TLS` response header: `conn=N req=M handshakes=H`).
#[derive(Debug, Clone, Copy)]
struct TlsConn {
    conn: u64,
    requests: u64,
}

#[derive(Debug)]
enum Error {
    Io(io::Error),
    Eof,
    Ajp(AjpError),
    Http(HttpError),
    EchoTooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Eof => write!(f, "connection closed in the middle of a request"),
            Error::Ajp(e) => write!(f, "malformed AJP request: {e}"),
            Error::Http(e) => write!(f, "malformed HTTP request: {e}"),
            Error::EchoTooLarge => write!(f, "request body too large to echo"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
impl From<AjpError> for Error {
    fn from(e: AjpError) -> Self {
        Error::Ajp(e)
    }
}
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        Error::Http(e)
    }
}

struct Conn<S> {
    s: S,
    buf: Vec<u8>,
    shutdown: watch::Receiver<bool>,
    tls: Option<TlsConn>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads more bytes into `buf`; false on EOF.
    async fn read_more(&mut self) -> Result<bool, Error> {
        self.buf.reserve(READ_CHUNK);
        Ok(self.s.read_buf(&mut self.buf).await? > 0)
    }

    /// Like `read_more`, between requests: shutdown also ends the wait (false).
    async fn read_more_idle(&mut self) -> Result<bool, Error> {
        if *self.shutdown.borrow() {
            return Ok(false);
        }
        self.buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            r = self.s.read_buf(&mut self.buf) => Ok(r? > 0),
            _ = self.shutdown.wait_for(|v| *v) => Ok(false),
        }
    }

    fn closing(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Next AJP packet payload. `idle`: between requests, where EOF or shutdown
    /// before any byte is a clean end (None).
    async fn packet(&mut self, idle: bool) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(total) = ajp::frame(&self.buf)? {
                let p = self.buf[4..total].to_vec();
                self.buf.drain(..total);
                return Ok(Some(p));
            }
            let more =
                if idle && self.buf.is_empty() { self.read_more_idle().await? } else { self.read_more().await? };
            if !more {
                return if idle && self.buf.is_empty() { Ok(None) } else { Err(Error::Eof) };
            }
        }
    }
}

/// Serves requests on `s` until the peer closes, a request asks to close,
/// input is malformed, or shutdown (after the current response).
pub async fn serve<S>(s: S, initial: Vec<u8>, cfg: &Config, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(t) = &cfg.tls else {
        return serve_on(s, initial, cfg, shutdown, None).await;
    };
    // The bytes already read (the ClientHello's first) go to rustls first.
    let accept = t.acceptor.accept(Prefixed::new(initial, s));
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(ts)) => {
            let conn = tls::handshake_done();
            debug!("responder: TLS connection {conn} established");
            serve_on(ts, Vec::new(), cfg, shutdown, Some(TlsConn { conn, requests: 0 })).await
        }
        Ok(Err(e)) => {
            tls::HANDSHAKES_FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            info!("responder: TLS handshake failed: {e}");
        }
        Err(_) => {
            tls::HANDSHAKES_FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            info!("responder: TLS handshake did not complete within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs());
        }
    }
}

async fn serve_on<S>(s: S, initial: Vec<u8>, cfg: &Config, shutdown: watch::Receiver<bool>, tls: Option<TlsConn>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = Conn { s, buf: initial, shutdown, tls };
    while c.buf.len() < 2 {
        match c.read_more().await {
            Ok(true) => {}
            _ => return,
        }
    }
    let r = if c.buf[..2] == ajp::MAGIC_IN { serve_ajp(&mut c, cfg).await } else { serve_http(&mut c, cfg).await };
    if let Err(e) = r {
        debug!("responder: closing the connection: {e}");
    }
    let _ = c.s.shutdown().await;
}

fn route(uri: &str) -> (u16, Option<u64>) {
    let path = uri.split('?').next().unwrap_or("");
    let digits = |s: &str| -> Option<u64> {
        let d: &str = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
        d.parse().ok()
    };
    if let Some(rest) = path.strip_prefix("/status/") {
        match digits(rest) {
            Some(s @ 200..=599) => (s as u16, None),
            _ => (400, None),
        }
    } else if let Some(rest) = path.strip_prefix("/sleep/") {
        match digits(rest) {
            Some(ms) => (200, Some(ms.min(MAX_SLEEP_MS))),
            None => (400, None),
        }
    } else {
        (200, None)
    }
}

fn append(body: &mut Vec<u8>, data: &[u8], echo: bool) -> Result<(), Error> {
    if echo {
        if (body.len() + data.len()) as u64 > MAX_ECHO {
            return Err(Error::EchoTooLarge);
        }
        body.extend_from_slice(data);
    }
    Ok(())
}

async fn serve_ajp<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>, cfg: &Config) -> Result<(), Error> {
    loop {
        let Some(p) = c.packet(true).await? else {
            return Ok(());
        };
        match p.first() {
            Some(&ajp::CODE_CPING) => {
                c.s.write_all(&ajp::CPONG).await?;
                continue;
            }
            Some(&ajp::CODE_FORWARD_REQUEST) => {}
            Some(&ajp::CODE_SHUTDOWN) => return Ok(()),
            Some(&x) => return Err(AjpError::BadCode(x).into()),
            // A stray empty body packet between requests.
            None => continue,
        }
        let req = ajp::parse_forward_request(&p)?;
        let cl = req.content_length()?;
        let mut body = Vec::new();
        let mut received: u64 = 0;
        let mut more = match cl {
            Some(n) if n > 0 => {
                // The first body packet follows the request without being asked for.
                let p = c.packet(false).await?.ok_or(Error::Eof)?;
                let d = ajp::body_data(&p)?;
                received += d.len() as u64;
                append(&mut body, d, cfg.echo)?;
                !d.is_empty() && received < n
            }
            Some(_) => false,
            None => req.is_chunked(),
        };
        while more {
            let ask = match cl {
                Some(n) => (n - received).min(ajp::MAX_BODY_REQUEST as u64) as u16,
                None => ajp::MAX_BODY_REQUEST,
            };
            c.s.write_all(&ajp::get_body_chunk(ask)).await?;
            let p = c.packet(false).await?.ok_or(Error::Eof)?;
            let d = ajp::body_data(&p)?;
            if d.is_empty() {
                break;
            }
            received += d.len() as u64;
            append(&mut body, d, cfg.echo)?;
            if let Some(n) = cl {
                more = received < n;
            }
        }
        let (status, sleep) = route(&req.uri);
        if let Some(ms) = sleep {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let data: &[u8] = if cfg.echo { &body } else { &cfg.body };
        let no_body = req.method == "HEAD" || http1::bodiless_status(status);
        let len = if http1::bodiless_status(status) { 0 } else { data.len() as u64 };
        let mut out = Vec::with_capacity(256 + data.len().min(WRITE_CHUNK));
        ajp::send_headers(
            status,
            http1::reason(status),
            "application/octet-stream",
            len,
            &[("X-Responder", "ajp")],
            &mut out,
        );
        if !no_body {
            for piece in data.chunks(ajp::MAX_SEND_CHUNK * 8) {
                ajp::send_body(piece, &mut out);
                if out.len() >= WRITE_CHUNK {
                    c.s.write_all(&out).await?;
                    out.clear();
                }
            }
        }
        let closing = c.closing();
        ajp::end_response(!closing, &mut out);
        c.s.write_all(&out).await?;
        if closing {
            return Ok(());
        }
    }
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>, cfg: &Config) -> Result<(), Error> {
    loop {
        let (req, used) = loop {
            if let Some(x) = http1::parse_request(&c.buf)? {
                break x;
            }
            let blank = c.buf.iter().all(|&b| b == b'\r' || b == b'\n');
            let more = if blank { c.read_more_idle().await? } else { c.read_more().await? };
            if !more {
                return if blank { Ok(()) } else { Err(Error::Eof) };
            }
        };
        c.buf.drain(..used);
        if req.expect_continue && req.body != BodyKind::None {
            c.s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let mut body = Vec::new();
        match req.body {
            BodyKind::None => {}
            BodyKind::Length(n) => {
                let mut rem = n;
                loop {
                    let take = rem.min(c.buf.len() as u64) as usize;
                    append(&mut body, &c.buf[..take], cfg.echo)?;
                    c.buf.drain(..take);
                    rem -= take as u64;
                    if rem == 0 {
                        break;
                    }
                    if !c.read_more().await? {
                        return Err(Error::Eof);
                    }
                }
            }
            BodyKind::Chunked => {
                let mut d = ChunkedDecoder::default();
                loop {
                    let used = d.decode(&c.buf, cfg.echo.then_some(&mut body))?;
                    if body.len() as u64 > MAX_ECHO {
                        return Err(Error::EchoTooLarge);
                    }
                    c.buf.drain(..used);
                    if d.done() {
                        break;
                    }
                    if !c.read_more().await? {
                        return Err(Error::Eof);
                    }
                }
            }
        }
        let (status, sleep) = route(&req.target);
        if let Some(ms) = sleep {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let data: &[u8] = if cfg.echo { &body } else { &cfg.body };
        let close = req.close || c.closing();
        let send_body = req.method != "HEAD" && !http1::bodiless_status(status);
        let mut out = Vec::with_capacity(256);
        http1::response_head(status, data.len() as u64, close, &mut out);
        if let Some(t) = c.tls.as_mut() {
            use std::sync::atomic::Ordering::Relaxed;
            t.requests += 1;
            tls::REQUESTS.fetch_add(1, Relaxed);
            // Before the blank line that ends the head.
            out.truncate(out.len() - 2);
            let h = tls::HANDSHAKES_OK.load(Relaxed);
            out.extend_from_slice(
                format!("X-TLS: conn={} req={} handshakes={h}\r\n\r\n", t.conn, t.requests).as_bytes(),
            );
        }
        if send_body && data.len() <= WRITE_CHUNK {
            out.extend_from_slice(data);
            c.s.write_all(&out).await?;
        } else {
            c.s.write_all(&out).await?;
            if send_body {
                c.s.write_all(data).await?;
            }
        }
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ajp::client;
    use tokio::io::DuplexStream;

    fn start(cfg: Config, initial: &[u8]) -> (DuplexStream, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (tx, rx) = watch::channel(false);
        let initial = initial.to_vec();
        let h = tokio::spawn(async move { serve(b, initial, &cfg, rx).await });
        (a, tx, h)
    }

    async fn read_http(s: &mut DuplexStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
        loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(buf[..p + 4].to_vec()).unwrap();
                let cl: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map(|v| v.parse().unwrap())
                    .unwrap_or(0);
                let body_len = if head.starts_with("HTTP/1.1 204") { 0 } else { cl };
                if buf.len() >= p + 4 + body_len {
                    let body = buf[p + 4..p + 4 + body_len].to_vec();
                    buf.drain(..p + 4 + body_len);
                    return (head, body);
                }
            }
            let mut t = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut t)).await.unwrap().unwrap();
            assert!(n > 0, "unexpected EOF");
            buf.extend_from_slice(&t[..n]);
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("/status/404"), (404, None));
        assert_eq!(route("/status/503/x?y"), (503, None));
        assert_eq!(route("/status/99"), (400, None));
        assert_eq!(route("/sleep/25"), (200, Some(25)));
        assert_eq!(route("/sleep/x"), (400, None));
        assert_eq!(route("/anything"), (200, None));
    }

    #[tokio::test]
    async fn http_pipelined_keepalive_chunked_and_close() {
        // The first request arrives as the dialled connection's first bytes.
        let (mut s, _tx, h) =
            start(Config::new(30, false), b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /status/404 HTTP/1.1\r\n\r\n");
        let mut buf = Vec::new();
        let (head, body) = read_http(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("X-Responder: http\r\n"));
        assert_eq!(body, b"abcdefghijklmnopqrstuvwxyzabcd");
        let (head, _) = read_http(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        s.write_all(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await.unwrap();
        let (head, body) = read_http(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"));
        assert_eq!(body.len(), 30);
        s.write_all(b"GET /sleep/20 HTTP/1.1\r\nConnection: close\r\n\r\n").await.unwrap();
        let (head, _) = read_http(&mut s, &mut buf).await;
        assert!(head.contains("Connection: close"));
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty());
        h.await.unwrap();
    }

    #[tokio::test]
    async fn http_echo_and_malformed() {
        let (mut s, _tx, h) = start(Config::new(10, true), b"POST /e HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello");
        s.write_all(b" world").await.unwrap();
        let mut buf = Vec::new();
        let (_, body) = read_http(&mut s, &mut buf).await;
        assert_eq!(body, b"hello world");
        s.write_all(b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n")
            .await
            .unwrap();
        let (_, body) = read_http(&mut s, &mut buf).await;
        assert_eq!(body, b"hello!");
        s.write_all(b"BROKEN\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty(), "malformed input closes without a response");
        h.await.unwrap();
    }

    async fn ajp_exchange(
        s: &mut DuplexStream,
        buf: &mut Vec<u8>,
        send_on_get: &[&[u8]],
    ) -> (client::Response, Vec<u16>) {
        let mut gets_all = Vec::new();
        let mut sent = 0;
        loop {
            let (r, gets) = client::parse_response(buf).unwrap();
            if let Some((resp, used)) = r {
                buf.drain(..used);
                gets_all.extend(gets);
                return (resp, gets_all);
            }
            // answer outstanding GET_BODY_CHUNKs once (they stay in buf until the response completes)
            while sent < gets.len() {
                s.write_all(&client::body(send_on_get[sent])).await.unwrap();
                sent += 1;
            }
            let mut t = [0u8; 16384];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut t)).await.unwrap().unwrap();
            assert!(n > 0, "unexpected EOF");
            buf.extend_from_slice(&t[..n]);
        }
    }

    #[tokio::test]
    async fn ajp_get_body_chunk_flow_echo_and_reuse() {
        let req = client::forward_request(&client::request("POST", "/echo", &[("content-length", "10")]));
        let mut first = req.clone();
        first.extend_from_slice(&client::body(b"0123"));
        let (mut s, _tx, h) = start(Config::new(5, true), &first);
        let mut buf = Vec::new();
        let ((status, headers, body, reuse), gets) = ajp_exchange(&mut s, &mut buf, &[b"456", b"789"]).await;
        assert_eq!(status, 200);
        assert!(reuse);
        assert_eq!(body, b"0123456789");
        assert_eq!(gets, vec![6, 3]);
        assert!(headers.contains(&("x-responder".into(), "ajp".into())));
        // CPing on the reused connection, then a GET for /status/503.
        s.write_all(&[0x12, 0x34, 0x00, 0x01, 0x0A]).await.unwrap();
        let mut t = [0u8; 5];
        s.read_exact(&mut t).await.unwrap();
        assert_eq!(t, ajp::CPONG);
        s.write_all(&client::forward_request(&client::request("GET", "/status/503", &[]))).await.unwrap();
        let ((status, _, body, _), gets) = ajp_exchange(&mut s, &mut buf, &[]).await;
        assert_eq!(status, 503);
        assert!(body.is_empty() && gets.is_empty());
        // Chunked request without content-length: read until an empty packet.
        s.write_all(&client::forward_request(&client::request("PUT", "/", &[("transfer-encoding", "chunked")])))
            .await
            .unwrap();
        let ((_, _, body, _), gets) = ajp_exchange(&mut s, &mut buf, &[b"xy", b""]).await;
        assert_eq!(body, b"xy");
        assert_eq!(gets, vec![8186, 8186]);
        drop(s);
        tokio::time::timeout(Duration::from_secs(3), h).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn ajp_fixed_body_large_and_malformed() {
        let req = client::forward_request(&client::request("GET", "/big", &[]));
        let (mut s, tx, h) = start(Config::new(100_000, false), &req);
        let mut buf = Vec::new();
        let ((status, _, body, _), _) = ajp_exchange(&mut s, &mut buf, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), 100_000);
        assert_eq!(&body[26..30], b"abcd");
        // Shutdown during a request: the response says reuse=0, then the connection closes.
        s.write_all(&client::forward_request(&client::request("GET", "/sleep/200", &[]))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await.unwrap().unwrap();
        let (r, _) = client::parse_response(&rest).unwrap();
        let ((status, _, _, reuse), used) = r.unwrap();
        assert_eq!((status, reuse, used), (200, false, rest.len()));
        h.await.unwrap();

        let (mut s, _tx, h) = start(Config::new(1, false), &[0x12, 0x34, 0x00, 0x03, 0x02, 0x63, 0x00]);
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty());
        h.await.unwrap();
    }
}
