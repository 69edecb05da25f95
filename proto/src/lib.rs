//! The mod_proxy_reversed handshake, version 1 (shared by the httpd module and
//! `reversed-agent`). The README's "Handshake wire format" section is the
//! normative description; this crate is the reference implementation.
//!
//! ```text
//! dialer -> httpd  HELLO      "RVRS" 0x01 node_len:u8 node[node_len] client_nonce[32]
//! httpd  -> dialer CHALLENGE  "RVRS" 0x01 status:u8
//!                             status == 0: server_nonce[32] server_proof[32]
//!                             status != 0: nothing more; httpd closes
//! dialer -> httpd  PROOF      client_proof[32]
//! httpd  -> dialer VERDICT    verdict:u8   (0 = accepted, the socket is now pooled)
//!
//! server_proof = HMAC-SHA256(secret, "RVRS1 httpd" || node_len || node || client_nonce || server_nonce)
//! client_proof = HMAC-SHA256(secret, "RVRS1 agent" || node_len || node || client_nonce || server_nonce)
//! ```
//!
//! Both sides send a fresh random nonce, so neither proof can be replayed, and
//! the two proofs use different labels, so one cannot be reflected as the other.

pub mod mcmp;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const MAGIC: [u8; 4] = *b"RVRS";
pub const VERSION: u8 = 1;
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;
pub const MAX_NODE_LEN: usize = 64;
/// Shortest secret the module and the agent accept, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret file accepted (bytes, before trimming).
pub const MAX_SECRET_FILE: u64 = 4096;
/// HELLO length for a node name of `n` bytes.
pub const fn hello_len(n: usize) -> usize {
    4 + 1 + 1 + n + NONCE_LEN
}
/// Length of a CHALLENGE that continues the handshake (status 0).
pub const CHALLENGE_OK_LEN: usize = 4 + 1 + 1 + NONCE_LEN + PROOF_LEN;
/// Length of a CHALLENGE that refuses (status != 0).
pub const CHALLENGE_REFUSE_LEN: usize = 6;

const LABEL_HTTPD: &[u8] = b"RVRS1 httpd";
const LABEL_AGENT: &[u8] = b"RVRS1 agent";

/// CHALLENGE status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The HELLO names a node that does not own this port.
    WrongNode = 1,
    /// The HELLO is malformed (bad magic, version, or node name).
    BadHello = 2,
    /// This child is shutting down; dial another port.
    ShuttingDown = 4,
}

/// VERDICT byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    Accepted = 0,
    /// The client proof did not verify: the dialer's secret differs.
    BadProof = 1,
    /// The child already keeps its maximum of idle connections; dial another port later.
    PoolFull = 3,
    /// The child is shutting down.
    ShuttingDown = 4,
    /// Bytes arrived after the proof.
    TrailingBytes = 5,
}

impl Verdict {
    pub fn from_byte(b: u8) -> Option<Verdict> {
        Some(match b {
            0 => Verdict::Accepted,
            1 => Verdict::BadProof,
            3 => Verdict::PoolFull,
            4 => Verdict::ShuttingDown,
            5 => Verdict::TrailingBytes,
            _ => return None,
        })
    }
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::BadProof => "rejected: wrong secret",
            Verdict::PoolFull => "refused: the httpd child's idle pool is full",
            Verdict::ShuttingDown => "refused: the httpd child is shutting down",
            Verdict::TrailingBytes => "rejected: bytes after the proof",
        }
    }
}

impl Refusal {
    pub fn from_byte(b: u8) -> Option<Refusal> {
        Some(match b {
            1 => Refusal::WrongNode,
            2 => Refusal::BadHello,
            4 => Refusal::ShuttingDown,
            _ => return None,
        })
    }
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::WrongNode => "refused: this port belongs to another node",
            Refusal::BadHello => "refused: malformed hello",
            Refusal::ShuttingDown => "refused: the httpd child is shutting down",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("bad magic (not a mod_proxy_reversed peer)")]
    BadMagic,
    #[error("unsupported handshake version {0}")]
    BadVersion(u8),
    #[error("invalid node name")]
    BadNode,
    #[error("unknown refusal code {0}")]
    BadStatus(u8),
    #[error("operating system random source failed")]
    Random,
}

/// A node name is 1..=64 bytes of `[A-Za-z0-9._-]`.
pub fn valid_node(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_LEN
        && name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

pub fn nonce() -> Result<[u8; NONCE_LEN], ProtoError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut n).map_err(|_| ProtoError::Random)?;
    Ok(n)
}

pub fn encode_hello(node: &[u8], client_nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    debug_assert!(valid_node(node));
    let mut v = Vec::with_capacity(hello_len(node.len()));
    v.extend_from_slice(&MAGIC);
    v.push(VERSION);
    v.push(node.len() as u8);
    v.extend_from_slice(node);
    v.extend_from_slice(client_nonce);
    v
}

#[derive(Debug, PartialEq, Eq)]
pub struct Hello {
    pub node: Vec<u8>,
    pub client_nonce: [u8; NONCE_LEN],
}

/// The common start of HELLO and CHALLENGE: magic, version, then one byte
/// (node length or status) that is returned; `Ok(None)` until it has arrived.
fn parse_header(buf: &[u8]) -> Result<Option<u8>, ProtoError> {
    let have = buf.len().min(4);
    if buf[..have] != MAGIC[..have] {
        return Err(ProtoError::BadMagic);
    }
    if buf.len() < 6 {
        return Ok(None);
    }
    if buf[4] != VERSION {
        return Err(ProtoError::BadVersion(buf[4]));
    }
    Ok(Some(buf[5]))
}

/// Incremental HELLO parser. `Ok(None)`: more bytes are needed;
/// `Ok(Some((hello, used)))`: a complete HELLO of `used` bytes.
pub fn parse_hello(buf: &[u8]) -> Result<Option<(Hello, usize)>, ProtoError> {
    let Some(n) = parse_header(buf)? else { return Ok(None) };
    let n = n as usize;
    if n == 0 || n > MAX_NODE_LEN {
        return Err(ProtoError::BadNode);
    }
    let total = hello_len(n);
    // Validate the node name as far as it has arrived, so garbage fails early.
    let node_end = (6 + n).min(buf.len());
    if !buf[6..node_end]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return Err(ProtoError::BadNode);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut client_nonce = [0u8; NONCE_LEN];
    client_nonce.copy_from_slice(&buf[6 + n..total]);
    Ok(Some((
        Hello {
            node: buf[6..6 + n].to_vec(),
            client_nonce,
        },
        total,
    )))
}

fn proof(label: &[u8], secret: &[u8], node: &[u8], cn: &[u8; NONCE_LEN], sn: &[u8; NONCE_LEN]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(&[node.len() as u8]);
    mac.update(node);
    mac.update(cn);
    mac.update(sn);
    mac
}

pub fn server_proof(secret: &[u8], node: &[u8], cn: &[u8; NONCE_LEN], sn: &[u8; NONCE_LEN]) -> [u8; PROOF_LEN] {
    proof(LABEL_HTTPD, secret, node, cn, sn).finalize().into_bytes().into()
}

pub fn client_proof(secret: &[u8], node: &[u8], cn: &[u8; NONCE_LEN], sn: &[u8; NONCE_LEN]) -> [u8; PROOF_LEN] {
    proof(LABEL_AGENT, secret, node, cn, sn).finalize().into_bytes().into()
}

/// Constant-time check of a proof sent by httpd.
pub fn verify_server_proof(secret: &[u8], node: &[u8], cn: &[u8; NONCE_LEN], sn: &[u8; NONCE_LEN], got: &[u8]) -> bool {
    proof(LABEL_HTTPD, secret, node, cn, sn).verify_slice(got).is_ok()
}

/// Constant-time check of a proof sent by the dialer.
pub fn verify_client_proof(secret: &[u8], node: &[u8], cn: &[u8; NONCE_LEN], sn: &[u8; NONCE_LEN], got: &[u8]) -> bool {
    proof(LABEL_AGENT, secret, node, cn, sn).verify_slice(got).is_ok()
}

pub fn encode_challenge_ok(server_nonce: &[u8; NONCE_LEN], server_proof: &[u8; PROOF_LEN]) -> [u8; CHALLENGE_OK_LEN] {
    let mut v = [0u8; CHALLENGE_OK_LEN];
    v[..4].copy_from_slice(&MAGIC);
    v[4] = VERSION;
    v[5] = 0;
    v[6..6 + NONCE_LEN].copy_from_slice(server_nonce);
    v[6 + NONCE_LEN..].copy_from_slice(server_proof);
    v
}

pub fn encode_refusal(r: Refusal) -> [u8; CHALLENGE_REFUSE_LEN] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION, r as u8]
}

#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Continue {
        server_nonce: [u8; NONCE_LEN],
        server_proof: [u8; PROOF_LEN],
    },
    Refused(Refusal),
}

/// Incremental CHALLENGE parser for the dialer, same contract as [`parse_hello`].
pub fn parse_challenge(buf: &[u8]) -> Result<Option<(Challenge, usize)>, ProtoError> {
    let Some(status) = parse_header(buf)? else { return Ok(None) };
    if status != 0 {
        let r = Refusal::from_byte(status).ok_or(ProtoError::BadStatus(status))?;
        return Ok(Some((Challenge::Refused(r), CHALLENGE_REFUSE_LEN)));
    }
    if buf.len() < CHALLENGE_OK_LEN {
        return Ok(None);
    }
    let mut server_nonce = [0u8; NONCE_LEN];
    let mut server_proof = [0u8; PROOF_LEN];
    server_nonce.copy_from_slice(&buf[6..6 + NONCE_LEN]);
    server_proof.copy_from_slice(&buf[6 + NONCE_LEN..CHALLENGE_OK_LEN]);
    Ok(Some((Challenge::Continue { server_nonce, server_proof }, CHALLENGE_OK_LEN)))
}

/// Reads a secret file's content: surrounding white space (a trailing newline
/// from `echo` or an editor) is not part of the secret. Errors never include
/// the file's content.
pub fn secret_from_bytes(raw: &[u8]) -> Result<Vec<u8>, String> {
    let start = raw.iter().position(|c| !c.is_ascii_whitespace());
    let end = raw.iter().rposition(|c| !c.is_ascii_whitespace());
    let s = match (start, end) {
        (Some(a), Some(b)) => raw[a..=b].to_vec(),
        _ => return Err("the secret file is empty".into()),
    };
    if s.len() < MIN_SECRET_LEN {
        return Err(format!(
            "the secret is {} bytes long; at least {} are required",
            s.len(),
            MIN_SECRET_LEN
        ));
    }
    Ok(s)
}

/// Loads a secret file (see [`secret_from_bytes`]).
pub fn load_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read secret file {}: {}", path.display(), e))?;
    let mut raw = Vec::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read secret file {}: {}", path.display(), e))?;
    if raw.len() as u64 > MAX_SECRET_FILE {
        return Err(format!("secret file {} is larger than {} bytes", path.display(), MAX_SECRET_FILE));
    }
    secret_from_bytes(&raw).map_err(|e| format!("secret file {}: {}", path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-secret";

    #[test]
    fn full_exchange_verifies_and_wrong_secret_fails() {
        let cn = nonce().unwrap();
        let sn = nonce().unwrap();
        let hello = encode_hello(b"app1", &cn);
        let (h, used) = parse_hello(&hello).unwrap().unwrap();
        assert_eq!(used, hello.len());
        assert_eq!(h.node, b"app1");
        let sp = server_proof(SECRET, &h.node, &h.client_nonce, &sn);
        let ch = encode_challenge_ok(&sn, &sp);
        let (c, used) = parse_challenge(&ch).unwrap().unwrap();
        assert_eq!(used, CHALLENGE_OK_LEN);
        let Challenge::Continue { server_nonce, server_proof: got } = c else { panic!("refused") };
        assert!(verify_server_proof(SECRET, b"app1", &cn, &server_nonce, &got));
        assert!(!verify_server_proof(b"another secret of length", b"app1", &cn, &server_nonce, &got));
        let cp = client_proof(SECRET, b"app1", &cn, &sn);
        assert!(verify_client_proof(SECRET, b"app1", &cn, &sn, &cp));
        // a server proof is not a client proof (no reflection)
        assert!(!verify_client_proof(SECRET, b"app1", &cn, &sn, &sp));
        // another node, another nonce: no replay
        assert!(!verify_client_proof(SECRET, b"app2", &cn, &sn, &cp));
        let sn2 = nonce().unwrap();
        assert!(!verify_client_proof(SECRET, b"app1", &cn, &sn2, &cp));
    }

    #[test]
    fn hello_parser_is_incremental_and_strict() {
        let cn = [7u8; NONCE_LEN];
        let hello = encode_hello(b"node-1.a_b", &cn);
        for cut in 0..hello.len() {
            assert_eq!(parse_hello(&hello[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(parse_hello(b"GET / HTTP/1.1\r\n"), Err(ProtoError::BadMagic));
        assert_eq!(parse_hello(b"RV"), Ok(None));
        assert_eq!(parse_hello(b"RX"), Err(ProtoError::BadMagic));
        assert_eq!(parse_hello(b"RVRS\x02\x04"), Err(ProtoError::BadVersion(2)));
        assert_eq!(parse_hello(b"RVRS\x01\x00"), Err(ProtoError::BadNode));
        assert_eq!(parse_hello(b"RVRS\x01\x41"), Err(ProtoError::BadNode));
        assert_eq!(parse_hello(b"RVRS\x01\x04ab/"), Err(ProtoError::BadNode));
    }

    #[test]
    fn challenge_refusals_parse() {
        let r = encode_refusal(Refusal::WrongNode);
        assert_eq!(parse_challenge(&r).unwrap(), Some((Challenge::Refused(Refusal::WrongNode), 6)));
        assert_eq!(parse_challenge(b"RVRS\x01\x09"), Err(ProtoError::BadStatus(9)));
    }

    #[test]
    fn secrets_are_trimmed_and_bounded() {
        assert_eq!(secret_from_bytes(b"  0123456789abcdef\n").unwrap(), b"0123456789abcdef");
        assert!(secret_from_bytes(b"\n\n").unwrap_err().contains("empty"));
        let e = secret_from_bytes(b"short-secret\n").unwrap_err();
        assert!(e.contains("at least 16"));
        assert!(!e.contains("short-secret"), "errors must not reveal the secret");
    }

    #[test]
    fn node_names() {
        assert!(valid_node(b"app-1.example_x"));
        assert!(!valid_node(b""));
        assert!(!valid_node(&[b'a'; 65]));
        assert!(!valid_node(b"a b"));
    }
}
