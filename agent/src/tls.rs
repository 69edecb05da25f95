//! TLS of the built-in responder (rustls): `--tls-cert`, `--tls-key` and,
//! for mutual TLS, `--tls-client-ca`. With it the responder is a TLS server
//! on every link httpd writes into (an `https://` worker) and on `--listen`.
//!
//! Splicing (`--backend`) never needs this: TLS bytes are copied unchanged to
//! a backend that serves TLS itself.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;

/// The files of the responder's TLS (flags `--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require a client certificate issued by one of these CAs (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// A ready TLS server configuration.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub mutual: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls {{ mutual: {} }}", self.mutual)
    }
}

/// Handshakes completed and failed, and requests answered over TLS, by the
/// responder of this process (shown by `--metrics-listen`).
pub static HANDSHAKES_OK: AtomicU64 = AtomicU64::new(0);
pub static HANDSHAKES_FAILED: AtomicU64 = AtomicU64::new(0);
pub static REQUESTS: AtomicU64 = AtomicU64::new(0);
static CONN_SEQ: AtomicU64 = AtomicU64::new(0);

/// A new TLS connection's number (1, 2, ...), counted as a completed handshake.
pub fn handshake_done() -> u64 {
    HANDSHAKES_OK.fetch_add(1, Relaxed);
    CONN_SEQ.fetch_add(1, Relaxed) + 1
}

fn read(p: &Path, flag: &str) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()))
}

fn certs(p: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(p, flag)?;
    let v = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: not a PEM certificate file: {e}", p.display()))?;
    if v.is_empty() {
        return Err(format!("{flag} {}: no certificate in the file", p.display()));
    }
    Ok(v)
}

/// Loads the files and builds the server configuration; errors name the flag.
pub fn load(f: &TlsFiles) -> Result<Tls, String> {
    let chain = certs(&f.cert, "--tls-cert")?;
    let key_pem = read(&f.key, "--tls-key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("--tls-key {}: no PEM private key in the file: {e}", f.key.display()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &f.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca, "--tls-client-ca")? {
                roots.add(c).map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            }
            let v = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg =
        builder.with_single_cert(chain, key).map_err(|e| format!("--tls-cert/--tls-key {}: {e}", f.cert.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(cfg)), mutual: f.client_ca.is_some() })
}

/// A stream whose first bytes were already read (the link's first request
/// bytes: here the TLS ClientHello) and are replayed before the rest.
pub struct Prefixed<S> {
    first: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(first: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed { first, pos: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos < self.first.len() {
            let n = (self.first.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.first[start..start + n]);
            self.pos += n;
            if self.pos == self.first.len() {
                self.first = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefixed_replays_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut p = Prefixed::new(b"hello ".to_vec(), b);
        a.write_all(b"world").await.unwrap();
        drop(a);
        let mut got = Vec::new();
        p.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello world");
    }

    #[test]
    fn missing_and_bad_files_name_the_flag() {
        let f = TlsFiles { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into(), client_ca: None };
        assert!(load(&f).unwrap_err().starts_with("--tls-cert /nonexistent/c.pem"));
        let d = std::env::temp_dir().join(format!("agent-tls-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let junk = d.join("junk.pem");
        fs::write(&junk, "not pem\n").unwrap();
        let f = TlsFiles { cert: junk.clone(), key: junk.clone(), client_ca: None };
        assert!(load(&f).unwrap_err().contains("no certificate"), "{:?}", load(&f).unwrap_err());
        let _ = fs::remove_dir_all(&d);
    }
}
