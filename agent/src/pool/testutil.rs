//! Helpers of the pool's tests: an agent, a one-port front end, a fake httpd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reversed_proto::Verdict;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{run_frontend, Agent, Busy, FrontEnd, Mode, Stats, TcpOpts};
use crate::handshake::fake_httpd;
use crate::responder;

pub(super) const SECRET: &[u8] = b"0123456789abcdef-pool-secret";

pub(super) fn agent(secret: Option<&[u8]>, max_backoff_ms: u64) -> Arc<Agent> {
    Arc::new(Agent {
        node: "app1".into(),
        secret: secret.map(|s| s.to_vec()),
        mode: Mode::Respond(responder::Config::new(26, false)),
        max_backoff: Duration::from_millis(max_backoff_ms),
        busy: Arc::new(Busy::default()),
        tcp: TcpOpts::default(),
        metrics: crate::metrics::Metrics::new(),
    })
}

pub(super) fn one_port(port: u16) -> FrontEnd {
    FrontEnd { host: "127.0.0.1".into(), first: port, last: port }
}

/// Keeps `fe` for `d`, then shuts the keeper down and returns its counters.
pub(super) async fn keep_for(fe: FrontEnd, idle: usize, agent: Arc<Agent>, d: Duration) -> Stats {
    let (sd_tx, sd_rx) = watch::channel(false);
    let keeper = tokio::spawn(run_frontend(fe, idle, agent, sd_rx));
    tokio::time::sleep(d).await;
    sd_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(3), keeper).await.unwrap().unwrap()
}

/// Fake httpd: accepts, handshakes with `secret`, keeps accepted connections
/// and hands them to the test.
pub(super) async fn fake_httpd(
    l: TcpListener,
    secret: &'static [u8],
    conns: mpsc::UnboundedSender<TcpStream>,
    proofs: Arc<AtomicU64>,
) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let conns = conns.clone();
        let proofs = proofs.clone();
        tokio::spawn(async move {
            let o = fake_httpd::serve(&mut s, b"app1", secret, None, Verdict::Accepted).await;
            match o {
                Ok(fake_httpd::Outcome::Proof { valid: true }) => {
                    let _ = conns.send(s);
                }
                Ok(fake_httpd::Outcome::Proof { valid: false }) => {
                    proofs.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        });
    }
}

pub(super) async fn recv(rx: &mut mpsc::UnboundedReceiver<TcpStream>) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("no connection in time").unwrap()
}
