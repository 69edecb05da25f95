//! Dialer side of the mod_proxy_reversed handshake (wire format: `reversed_proto`).

use std::fmt;
use std::io;

use reversed_proto::{
    challenge_ok_len, encode_hello, nonce, parse_challenge, Challenge, PingParams, ProtoError, Refusal, Transcript,
    Verdict, CHALLENGE_MAX_LEN, CHALLENGE_REFUSE_LEN, VERSION, VERSION_1,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug)]
pub enum HandshakeError {
    Io(io::Error),
    /// httpd closed the connection in the middle of the handshake.
    Closed,
    Proto(ProtoError),
    /// CHALLENGE with a non-zero status.
    Refused(Refusal),
    /// httpd's proof did not verify: it does not know our secret. Our proof was not sent.
    Impostor,
    /// VERDICT other than accepted.
    Rejected(Verdict),
    /// httpd answered in handshake version 1 only: it predates version 2.
    OldHttpd,
    UnknownVerdict(u8),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "handshake I/O error: {e}"),
            HandshakeError::Closed => write!(f, "httpd closed the connection during the handshake"),
            HandshakeError::Proto(e) => write!(f, "handshake protocol error: {e}"),
            HandshakeError::Refused(r) => write!(f, "httpd {}", r.describe()),
            HandshakeError::Impostor => write!(f, "httpd failed to prove the secret (wrong secret or impostor)"),
            HandshakeError::Rejected(v) => write!(f, "httpd {}", v.describe()),
            HandshakeError::OldHttpd => {
                write!(f, "httpd speaks only handshake version 1 (upgrade mod_proxy_reversed there)")
            }
            HandshakeError::UnknownVerdict(b) => write!(f, "unknown handshake verdict {b}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HandshakeError::Closed
        } else {
            HandshakeError::Io(e)
        }
    }
}

impl From<ProtoError> for HandshakeError {
    fn from(e: ProtoError) -> Self {
        HandshakeError::Proto(e)
    }
}

/// Runs the dialer side of the handshake (version 2) on a fresh connection.
/// It reads exactly the CHALLENGE and VERDICT bytes, never more, so a PING or
/// a request that httpd writes right after the verdict stays in the socket.
/// `Ok(ping)`: the connection now sits idle in httpd's pool, and httpd pings
/// it as `ping` says.
pub async fn dial<S>(s: &mut S, node: &[u8], secret: &[u8]) -> Result<PingParams, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cn = nonce()?;
    s.write_all(&encode_hello(VERSION, node, &cn)).await?;

    let mut buf = [0u8; CHALLENGE_MAX_LEN];
    let mut have = 0;
    let mut need = CHALLENGE_REFUSE_LEN;
    // At most two rounds: the 6-byte prefix, then the rest of a continuing CHALLENGE.
    let (sn, ping, sp) = loop {
        s.read_exact(&mut buf[have..need]).await?;
        have = need;
        match parse_challenge(&buf[..have])? {
            None if need < challenge_ok_len(buf[4]) => need = challenge_ok_len(buf[4]),
            None => return Err(HandshakeError::Closed),
            // An httpd of version 1 refuses a version-2 hello as malformed.
            Some((Challenge::Refused { version: VERSION_1, refusal: Refusal::BadHello }, _)) => {
                return Err(HandshakeError::OldHttpd)
            }
            Some((Challenge::Refused { refusal, .. }, _)) => return Err(HandshakeError::Refused(refusal)),
            Some((Challenge::Continue { version, .. }, _)) if version != VERSION => {
                return Err(HandshakeError::Proto(ProtoError::BadVersion(version)))
            }
            Some((Challenge::Continue { server_nonce, ping, server_proof, .. }, _)) => {
                break (server_nonce, ping, server_proof)
            }
        }
    };
    let t = Transcript { version: VERSION, node, client_nonce: &cn, server_nonce: &sn, ping };
    if !t.verify_server_proof(secret, &sp) {
        return Err(HandshakeError::Impostor);
    }
    s.write_all(&t.client_proof(secret)).await?;
    let mut v = [0u8; 1];
    s.read_exact(&mut v).await?;
    match Verdict::from_byte(v[0]) {
        Some(Verdict::Accepted) => Ok(ping),
        Some(other) => Err(HandshakeError::Rejected(other)),
        None => Err(HandshakeError::UnknownVerdict(v[0])),
    }
}

/// The httpd side, for tests: a fake front end built on `reversed_proto`.
#[cfg(test)]
pub mod fake_httpd {
    use super::*;
    use reversed_proto::{encode_challenge_ok, encode_refusal, parse_hello};

    #[derive(Debug, PartialEq, Eq)]
    pub enum Outcome {
        /// The agent's proof verified and `verdict` was sent.
        Proof {
            valid: bool,
        },
        /// The agent closed without sending a proof.
        NoProof,
        Refused,
    }

    /// Serves one handshake. `verdict`: what to answer to a valid proof
    /// (an invalid proof always gets BadProof).
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        node: &[u8],
        secret: &[u8],
        refuse: Option<Refusal>,
        verdict: Verdict,
    ) -> io::Result<Outcome> {
        serve_with(s, node, secret, refuse, verdict, PingParams::OFF).await
    }

    /// As `serve`, announcing `ping`.
    pub async fn serve_with<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        node: &[u8],
        secret: &[u8],
        refuse: Option<Refusal>,
        verdict: Verdict,
        ping: PingParams,
    ) -> io::Result<Outcome> {
        let mut buf = Vec::new();
        let hello = loop {
            let mut b = [0u8; 128];
            let n = s.read(&mut b).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&b[..n]);
            match parse_hello(&buf) {
                Ok(Some((h, _))) => break h,
                Ok(None) => continue,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        };
        if let Some(r) = refuse {
            s.write_all(&encode_refusal(hello.version, r)).await?;
            return Ok(Outcome::Refused);
        }
        let wrong_node = hello.node != node;
        let sn = nonce().unwrap();
        let t = Transcript {
            version: hello.version,
            node: &hello.node,
            client_nonce: &hello.client_nonce,
            server_nonce: &sn,
            ping,
        };
        s.write_all(&encode_challenge_ok(&t, &t.server_proof(secret))).await?;
        let mut proof = [0u8; 32];
        let mut got = 0;
        while got < proof.len() {
            let n = s.read(&mut proof[got..]).await?;
            if n == 0 {
                return Ok(Outcome::NoProof);
            }
            got += n;
        }
        let valid = !wrong_node && t.verify_client_proof(secret, &proof);
        let v = if valid { verdict } else { Verdict::BadProof };
        s.write_all(&[v as u8]).await?;
        Ok(Outcome::Proof { valid })
    }
}

#[cfg(test)]
mod tests {
    use super::fake_httpd::{serve, Outcome};
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    const SECRET: &[u8] = b"0123456789abcdef-test-secret";

    async fn run(
        server_secret: &'static [u8],
        refuse: Option<Refusal>,
        verdict: Verdict,
    ) -> (Result<PingParams, HandshakeError>, io::Result<Outcome>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            serve(&mut s, b"app1", server_secret, refuse, verdict).await
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        let r = dial(&mut c, b"app1", SECRET).await;
        drop(c);
        let o = tokio::time::timeout(std::time::Duration::from_secs(3), server).await.unwrap().unwrap();
        (r, o)
    }

    #[tokio::test]
    async fn accepted() {
        let (r, o) = run(SECRET, None, Verdict::Accepted).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(o.unwrap(), Outcome::Proof { valid: true });
    }

    #[tokio::test]
    async fn wrong_secret_is_detected_and_no_proof_is_sent() {
        let (r, o) = run(b"another-secret-of-enough-length", None, Verdict::Accepted).await;
        assert!(matches!(r, Err(HandshakeError::Impostor)), "{r:?}");
        assert_eq!(o.unwrap(), Outcome::NoProof);
    }

    #[tokio::test]
    async fn bad_proof_verdict() {
        // httpd proves itself but rejects us anyway (e.g. rotated secret on one side).
        let (r, _) = run(SECRET, None, Verdict::BadProof).await;
        assert!(matches!(r, Err(HandshakeError::Rejected(Verdict::BadProof))), "{r:?}");
        let (r, _) = run(SECRET, None, Verdict::PoolFull).await;
        assert!(matches!(r, Err(HandshakeError::Rejected(Verdict::PoolFull))), "{r:?}");
    }

    #[tokio::test]
    async fn refusals() {
        let (r, o) = run(SECRET, Some(Refusal::WrongNode), Verdict::Accepted).await;
        assert!(matches!(r, Err(HandshakeError::Refused(Refusal::WrongNode))), "{r:?}");
        assert_eq!(o.unwrap(), Outcome::Refused);
        let (r, _) = run(SECRET, Some(Refusal::ShuttingDown), Verdict::Accepted).await;
        assert!(matches!(r, Err(HandshakeError::Refused(Refusal::ShuttingDown))), "{r:?}");
    }

    #[tokio::test]
    async fn ping_parameters_come_back_and_an_old_httpd_is_named() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let p = PingParams { interval_ms: 1234, timeout_ms: 56 };
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            fake_httpd::serve_with(&mut s, b"app1", SECRET, None, Verdict::Accepted, p).await
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(dial(&mut c, b"app1", SECRET).await.unwrap(), p);
        server.await.unwrap().unwrap();

        // A version-1 httpd: "RVRS" 0x01 0x02 (malformed hello) to our version-2 hello.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let t = tokio::spawn(async move {
            let mut h = [0u8; 42];
            b.read_exact(&mut h).await.unwrap();
            assert_eq!(h[4], 2, "the agent sends version 2");
            b.write_all(b"RVRS\x01\x02").await.unwrap();
        });
        let r = dial(&mut a, b"app1", SECRET).await;
        assert!(matches!(r, Err(HandshakeError::OldHttpd)), "{r:?}");
        assert!(r.unwrap_err().to_string().contains("version 1"));
        t.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_and_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let t = tokio::spawn(async move {
            let mut h = [0u8; 42];
            b.read_exact(&mut h).await.unwrap();
            b.write_all(b"HTTP/1.1 400 Bad Request\r\n").await.unwrap();
        });
        let r = dial(&mut a, b"app1", SECRET).await;
        assert!(matches!(r, Err(HandshakeError::Proto(ProtoError::BadMagic))), "{r:?}");
        t.await.unwrap();

        let (mut a, b) = tokio::io::duplex(1024);
        drop(b);
        let r = dial(&mut a, b"app1", SECRET).await;
        assert!(r.is_err());
    }
}
