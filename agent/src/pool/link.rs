//! One link: dial, handshake, wait idle for a request while answering
//! httpd's PINGs, then splice to the backend or respond; each step is
//! reported to the keeper as an `Event`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use reversed_proto::{PingParams, Refusal, Verdict, PONG};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::tcp::set_sockopts;
use super::{shutdown_begun, Agent, Close, Event, Fail, FrontEnd, Mode};
use crate::handshake::{self, HandshakeError};
use crate::metrics::FrontMetrics;
use crate::responder;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

fn classify(e: HandshakeError, addr: &str, node: &str) -> Fail {
    match e {
        HandshakeError::Impostor => {
            Fail::Auth(format!("httpd at {addr} failed to prove the secret for node {node} (wrong secret or impostor)"))
        }
        HandshakeError::Rejected(Verdict::BadProof) => {
            Fail::Auth(format!("httpd at {addr} rejected the proof of node {node}: wrong secret"))
        }
        HandshakeError::Refused(Refusal::WrongNode) => Fail::Auth(format!(
            "httpd at {addr} refused node {node}: this port belongs to another node (wrong --node or port range)"
        )),
        HandshakeError::Refused(Refusal::BadHello) => {
            Fail::Auth(format!("httpd at {addr} refused the hello of node {node} as malformed (version mismatch?)"))
        }
        HandshakeError::Refused(Refusal::ShuttingDown) => Fail::Busy(Refusal::ShuttingDown.describe()),
        HandshakeError::Rejected(v @ (Verdict::PoolFull | Verdict::ShuttingDown)) => Fail::Busy(v.describe()),
        other => Fail::Net(other.to_string()),
    }
}

async fn connect(fe: &FrontEnd, agent: &Agent, port: u16) -> Result<(TcpStream, PingParams), Fail> {
    let addr = fe.addr(port);
    let mut s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((fe.host.as_str(), port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Fail::Net(e.to_string())),
        Err(_) => return Err(Fail::Net(format!("connect timed out after {} s", CONNECT_TIMEOUT.as_secs()))),
    };
    if let Err(e) = set_sockopts(&s, &agent.tcp) {
        debug!("{addr}: cannot set socket options: {e}");
    }
    let mut ping = PingParams::OFF;
    if let Some(secret) = &agent.secret {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::dial(&mut s, agent.node.as_bytes(), secret)).await {
            Ok(Ok(p)) => ping = p,
            Ok(Err(e)) => return Err(classify(e, &addr, &agent.node)),
            Err(_) => return Err(Fail::Net(format!("handshake timed out after {} s", HANDSHAKE_TIMEOUT.as_secs()))),
        }
    }
    Ok((s, ping))
}

/// How an idle link ended.
enum IdleEnd {
    /// httpd wrote the first bytes of a request.
    Request(Vec<u8>),
    Closed(Close),
}

/// Waits on an idle link for the first request bytes, answering httpd's
/// PINGs; a link that gets no PING within the deadline httpd announced is
/// dead. No buffer is held while nothing arrives.
async fn idle_wait(s: &mut TcpStream, ping: PingParams, shutdown: &mut watch::Receiver<bool>) -> IdleEnd {
    let deadline = ping.dialer_deadline();
    let mut due = deadline.map(|d| Instant::now() + d);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            biased;
            r = s.readable() => {
                if r.is_err() {
                    return IdleEnd::Closed(Close::ByHttpd);
                }
                let mut buf = vec![0u8; 16 * 1024];
                let n = match s.try_read(&mut buf) {
                    Ok(0) => return IdleEnd::Closed(Close::ByHttpd),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return IdleEnd::Closed(Close::ByHttpd),
                };
                buf.truncate(n);
                if pending.is_empty() && buf[0] != reversed_proto::FRAME_MARK {
                    return IdleEnd::Request(buf);
                }
                pending.extend_from_slice(&buf);
                let input = match reversed_proto::scan_idle(&pending) {
                    Ok(i) => i,
                    Err(_) => return IdleEnd::Closed(Close::Garbage),
                };
                for _ in 0..input.pings {
                    if s.write_all(&PONG).await.is_err() {
                        return IdleEnd::Closed(Close::ByHttpd);
                    }
                }
                if input.pings > 0 {
                    due = deadline.map(|d| Instant::now() + d);
                }
                if let Some(at) = input.request_at {
                    return IdleEnd::Request(pending.split_off(at));
                }
                pending = if input.partial { vec![reversed_proto::FRAME_MARK] } else { Vec::new() };
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                return IdleEnd::Closed(Close::Dead);
            }
            _ = shutdown_begun(shutdown) => return IdleEnd::Closed(Close::ByUs),
        }
    }
}

/// Dials one connection, reports the result, waits idle for a request, then
/// splices or responds.
#[allow(clippy::too_many_arguments)]
pub(super) async fn dial_task(
    fe: Arc<FrontEnd>,
    fm: Arc<FrontMetrics>,
    agent: Arc<Agent>,
    port: u16,
    id: u64,
    started: Instant,
    tx: mpsc::UnboundedSender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let r = tokio::select! {
        r = connect(&fe, &agent, port) => r,
        _ = shutdown_begun(&mut shutdown) => Err(Fail::Cancelled),
    };
    let (mut s, ping) = match r {
        Ok(s) => s,
        Err(f) => {
            let _ = tx.send(Event::Dialed { port, id, started, result: Err(f) });
            return;
        }
    };
    let _ = tx.send(Event::Dialed { port, id, started, result: Ok(()) });
    let since = Instant::now();
    let first = match idle_wait(&mut s, ping, &mut shutdown).await {
        IdleEnd::Request(first) => first,
        IdleEnd::Closed(why) => {
            let _ = tx.send(Event::Closed { port, id, lived: since.elapsed(), why });
            return;
        }
    };
    // Busy before the pool learns about it, so that shutdown cannot miss it.
    let _guard = agent.busy.enter();
    let _counted = fm.busy();
    let _ = tx.send(Event::Used { port, id });
    match &agent.mode {
        Mode::Splice { backend } => agent.metrics.spliced(crate::splice::run(s, first, backend, &agent.busy).await),
        Mode::Respond(cfg) => responder::serve(s, first, cfg, shutdown).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::fake_httpd;
    use crate::pool::run_frontend;
    use crate::pool::testutil::*;
    use std::sync::atomic::AtomicU64;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_fills_refills_after_use_and_responds() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(l, SECRET, ctx, Arc::new(AtomicU64::new(0))));
        let (sd_tx, sd_rx) = watch::channel(false);
        let fe = one_port(port);
        let keeper = tokio::spawn(run_frontend(fe, 2, agent(Some(SECRET), 1000), sd_rx));

        let mut c1 = recv(&mut crx).await;
        let _c2 = recv(&mut crx).await;
        // No third connection while both are idle.
        assert!(tokio::time::timeout(Duration::from_millis(200), crx.recv()).await.is_err());

        // httpd writes a request into an idle connection: a replacement gets dialled
        // and the responder answers, keeping the connection alive.
        c1.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let _c3 = recv(&mut crx).await;
        let mut buf = Vec::new();
        while !buf.ends_with(b"abcdefghijklmnopqrstuvwxyz") {
            let mut t = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(3), c1.read(&mut t)).await.unwrap().unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&t[..n]);
        }
        let head = String::from_utf8_lossy(&buf);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("X-Responder: http"));
        // Keep-alive: a second request on the same connection.
        c1.write_all(b"GET /status/404 HTTP/1.1\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), c1.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 404 Not Found\r\n"));

        tokio::time::sleep(Duration::from_millis(100)).await;
        sd_tx.send(true).unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap();
        assert_eq!(stats.accepted, 3);
        assert_eq!(stats.used, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_close_on_shutdown_and_are_replaced_on_eof() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        tokio::spawn(fake_httpd(l, SECRET, ctx, Arc::new(AtomicU64::new(0))));
        let (sd_tx, sd_rx) = watch::channel(false);
        let fe = one_port(port);
        let keeper = tokio::spawn(run_frontend(fe, 1, agent(Some(SECRET), 1000), sd_rx));
        let c1 = recv(&mut crx).await;
        // httpd child exits: the agent redials (paced: the close came quickly, so after a backoff).
        drop(c1);
        let mut c2 = recv(&mut crx).await;
        // (let the agent read the verdict byte first: a dial cancelled mid-handshake resets)
        tokio::time::sleep(Duration::from_millis(100)).await;
        sd_tx.send(true).unwrap();
        let mut t = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(3), c2.read(&mut t)).await.unwrap();
        assert!(matches!(r, Ok(0)), "idle connection closed on shutdown: {r:?}");
        tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap();
    }

    /// A fake httpd that announces `ping` and hands each authenticated link out.
    async fn pinging_httpd(l: TcpListener, ping: PingParams, conns: mpsc::UnboundedSender<TcpStream>) {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let conns = conns.clone();
            tokio::spawn(async move {
                let o = fake_httpd::serve_with(&mut s, b"app1", SECRET, None, Verdict::Accepted, ping).await;
                if let Ok(fake_httpd::Outcome::Proof { valid: true }) = o {
                    let _ = conns.send(s);
                }
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pings_are_answered_and_a_link_without_pings_is_replaced() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let ping = PingParams { interval_ms: 300, timeout_ms: 100 };
        let (ctx, mut crx) = mpsc::unbounded_channel();
        tokio::spawn(pinging_httpd(l, ping, ctx));
        let (sd_tx, sd_rx) = watch::channel(false);
        let keeper = tokio::spawn(run_frontend(one_port(port), 1, agent(Some(SECRET), 1000), sd_rx));
        let mut c1 = recv(&mut crx).await;
        // Three pings, each answered at once with exactly one pong; the link stays.
        let mut last_ping = Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            last_ping = Instant::now();
            c1.write_all(&reversed_proto::PING).await.unwrap();
            let mut b = [0u8; 2];
            tokio::time::timeout(Duration::from_secs(1), c1.read_exact(&mut b)).await.unwrap().unwrap();
            assert_eq!(b, PONG);
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(150), recv(&mut crx)).await.is_err(),
            "a replacement was dialled while pings ran"
        );
        // httpd stops pinging (the path lost the link): the agent closes it
        // after interval + timeout (400 ms) and dials a replacement at once.
        let mut c2 = tokio::time::timeout(Duration::from_secs(2), crx.recv()).await.unwrap().unwrap();
        let waited = last_ping.elapsed();
        assert!(
            waited >= Duration::from_millis(380) && waited < Duration::from_millis(1200),
            "replacement {waited:?} after the last ping"
        );
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(1), c1.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0)), "the dead link was not closed: {r:?}");
        // A frame mark followed by garbage closes the link, and it is replaced too.
        c2.write_all(&[0xFF, 0x07]).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(1), c2.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0)), "a link with a bad frame stayed open: {r:?}");
        let mut c3 = recv(&mut crx).await;
        // PINGs and then a request in one write: one pong, then the responder answers.
        let mut w = reversed_proto::PING.to_vec();
        w.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        c3.write_all(&w).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(2), c3.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got[..2], &PONG, "no pong before the response: {:?}", String::from_utf8_lossy(&got));
        assert!(String::from_utf8_lossy(&got[2..]).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
        sd_tx.send(true).unwrap();
        let st = tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap();
        assert!(st.dead >= 1, "{st:?}");
    }
}
