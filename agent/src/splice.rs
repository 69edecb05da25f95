//! Splices a used httpd connection to the local backend.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::pool::{Busy, Flight};

const BUF: usize = 64 * 1024;
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Set while the backend is unreachable, so that the warning is logged once per outage.
static BACKEND_DOWN: AtomicBool = AtomicBool::new(false);

/// Connects to `backend`, writes `first` (the request bytes already read from
/// httpd), then copies both ways until the exchange ends. If the backend cannot
/// be reached the httpd connection is closed (httpd answers 502/503).
/// Returns the bytes copied (to the backend, to httpd), or None when the
/// backend could not be reached.
pub async fn run(httpd: TcpStream, first: Vec<u8>, backend: &str, busy: &Busy) -> Option<(u64, u64)> {
    let be = match tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            backend_down(backend, &e.to_string());
            return None;
        }
        Err(_) => {
            backend_down(backend, "connect timed out");
            return None;
        }
    };
    if BACKEND_DOWN.swap(false, Ordering::Relaxed) {
        info!("backend {backend} is reachable again");
    }
    let _ = be.set_nodelay(true);
    let (up, down) = pump(httpd, be, &first, &busy.flight()).await;
    debug!("spliced connection finished: {up} bytes to the backend, {down} bytes to httpd");
    Some((up, down))
}

fn backend_down(backend: &str, why: &str) {
    if !BACKEND_DOWN.swap(true, Ordering::Relaxed) {
        warn!("backend {backend} unreachable ({why}); closing httpd connections that carry requests until it is back");
    } else {
        debug!("backend {backend} unreachable ({why}); closing the httpd connection");
    }
}

/// A writer that tells `flight` which way bytes go.
struct Told<'a, W> {
    w: W,
    flight: &'a Flight<'a>,
    request: bool,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Told<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !buf.is_empty() {
            if self.request {
                self.flight.request();
            } else {
                self.flight.response();
            }
        }
        Pin::new(&mut self.w).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_shutdown(cx)
    }
}

async fn copy<R, W>(r: &mut R, w: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut r = BufReader::with_capacity(BUF, r);
    tokio::io::copy_buf(&mut r, w).await
}

/// Copies `httpd` <-> `backend`. When httpd half-closes, the backend's write
/// half is shut down and the backend's remaining response still flows back;
/// when the backend closes (or fails), the httpd connection is closed entirely.
/// Returns (bytes to the backend, bytes to httpd). `flight` follows whether a
/// request is in flight: request bytes to the backend start one, response
/// bytes to httpd end it.
pub async fn pump(mut httpd: TcpStream, mut backend: TcpStream, first: &[u8], flight: &Flight<'_>) -> (u64, u64) {
    flight.request();
    if backend.write_all(first).await.is_err() {
        return (0, 0);
    }
    let (mut hr, hw) = httpd.split();
    let (mut br, bw) = backend.split();
    let mut hw = Told { w: hw, flight, request: false };
    let mut bw = Told { w: bw, flight, request: true };
    let (up_n, down_n) = {
        let up = async {
            let n = copy(&mut hr, &mut bw).await.unwrap_or(0);
            let _ = bw.shutdown().await;
            n
        };
        let down = async { copy(&mut br, &mut hw).await.unwrap_or(0) };
        tokio::pin!(up, down);
        tokio::select! {
            n = &mut up => (n, down.await),
            // The backend is done: stop reading from httpd, close it.
            m = &mut down => (0, m),
        }
    };
    let _ = hw.shutdown().await;
    (up_n + first.len() as u64, down_n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn splices_both_ways_and_closes_httpd_when_backend_closes() {
        // backend: uppercases one request then closes
        let bl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let baddr = bl.local_addr().unwrap().to_string();
        let backend = tokio::spawn(async move {
            let (mut s, _) = bl.accept().await.unwrap();
            let mut b = vec![0u8; 11];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b.to_ascii_uppercase()).await.unwrap();
        });
        let (mut httpd, agent_side) = pair().await;
        let t = tokio::spawn(async move { run(agent_side, b"hello".to_vec(), &baddr, &Busy::default()).await });
        httpd.write_all(b" world").await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), httpd.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, b"HELLO WORLD");
        backend.await.unwrap();
        t.await.unwrap();
    }

    #[tokio::test]
    async fn half_close_from_httpd_lets_the_response_through() {
        let bl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let baddr = bl.local_addr().unwrap().to_string();
        let backend = tokio::spawn(async move {
            let (mut s, _) = bl.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap(); // waits for the half-close
            s.write_all(&all).await.unwrap();
        });
        let (mut httpd, agent_side) = pair().await;
        let t = tokio::spawn(async move { run(agent_side, b"abc".to_vec(), &baddr, &Busy::default()).await });
        httpd.write_all(b"def").await.unwrap();
        httpd.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), httpd.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, b"abcdef");
        backend.await.unwrap();
        t.await.unwrap();
    }

    /// A request is in flight from its bytes to the first response bytes; a
    /// link kept open after the response (keep-alive) carries none.
    #[tokio::test]
    async fn a_kept_link_has_no_request_in_flight() {
        let bl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let baddr = bl.local_addr().unwrap().to_string();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let backend = tokio::spawn(async move {
            let (mut s, _) = bl.accept().await.unwrap();
            let mut b = [0u8; 3];
            s.read_exact(&mut b).await.unwrap();
            go_rx.await.unwrap();
            s.write_all(b"ok").await.unwrap();
            let _ = s.read(&mut b).await; // kept open until httpd closes
        });
        let busy = std::sync::Arc::new(Busy::default());
        let (mut httpd, agent_side) = pair().await;
        let b2 = busy.clone();
        let t = tokio::spawn(async move { run(agent_side, b"req".to_vec(), &baddr, &b2).await });
        let wait_for = |want: usize| {
            let busy = busy.clone();
            async move {
                for _ in 0..300 {
                    if busy.in_flight() == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        assert!(wait_for(1).await, "the request is in flight while the backend works");
        go_tx.send(()).unwrap();
        let mut r = [0u8; 2];
        httpd.read_exact(&mut r).await.unwrap();
        assert!(wait_for(0).await, "answered, kept open: nothing in flight");
        drop(httpd);
        t.await.unwrap();
        backend.await.unwrap();
        assert_eq!(busy.in_flight(), 0);
    }

    #[tokio::test]
    async fn unreachable_backend_closes_httpd_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = l.local_addr().unwrap().to_string();
        drop(l);
        let (mut httpd, agent_side) = pair().await;
        let t =
            tokio::spawn(
                async move { run(agent_side, b"GET / HTTP/1.1\r\n\r\n".to_vec(), &dead, &Busy::default()).await },
            );
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), httpd.read_to_end(&mut got)).await.unwrap().unwrap();
        assert!(got.is_empty());
        t.await.unwrap();
    }
}
