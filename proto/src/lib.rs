//! The mod_proxy_reversed handshake (shared by the httpd module and
//! `reversed-agent`), versions 1 and 2, and the liveness frames of version 2.
//! The README's "Handshake wire format" section is the normative
//! description; this crate is the reference implementation.
//!
//! ```text
//! dialer -> httpd  HELLO      "RVRS" version:u8 node_len:u8 node[node_len] client_nonce[32]
//! httpd  -> dialer CHALLENGE  "RVRS" version:u8 status:u8
//!                  status 0, v1: server_nonce[32] server_proof[32]
//!                  status 0, v2: server_nonce[32] ping_interval_ms:u32be ping_timeout_ms:u32be server_proof[32]
//!                  status != 0: nothing more; httpd closes
//! dialer -> httpd  PROOF      client_proof[32]
//! httpd  -> dialer VERDICT    verdict:u8   (0 = accepted, the socket is now pooled)
//!
//! v1: T = node_len || node || client_nonce || server_nonce
//! v2: T = node_len || node || client_nonce || server_nonce || ping_interval_ms[4] || ping_timeout_ms[4]
//! server_proof = HMAC-SHA256(secret, "RVRS<v> httpd" || T)
//! client_proof = HMAC-SHA256(secret, "RVRS<v> agent" || T)
//!
//! v2, while the link is idle:  httpd -> dialer PING 0xFF 0x01;  dialer -> httpd PONG 0xFF 0x02
//! ```
//!
//! Both sides send a fresh random nonce, so neither proof can be replayed, and
//! the two proofs use different labels, so one cannot be reflected as the
//! other. The version is in the label and the ping parameters are in the
//! transcript, so neither can be changed on the way without the proofs failing.

#![deny(unsafe_code)]

pub mod mcmp;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const MAGIC: [u8; 4] = *b"RVRS";
/// The first version: no liveness frames.
pub const VERSION_1: u8 = 1;
/// The current version: ping parameters in the CHALLENGE, PING/PONG on idle links.
pub const VERSION_2: u8 = 2;
/// What dialers send.
pub const VERSION: u8 = VERSION_2;
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;
pub const MAX_NODE_LEN: usize = 64;
/// Shortest secret the module and the agent accept, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret file accepted (bytes, before trimming).
pub const MAX_SECRET_FILE: u64 = 4096;
/// HELLO length for a node name of `n` bytes (both versions).
pub const fn hello_len(n: usize) -> usize {
    4 + 1 + 1 + n + NONCE_LEN
}
/// Length of a CHALLENGE that continues the handshake (status 0), by version.
pub const fn challenge_ok_len(version: u8) -> usize {
    if version >= VERSION_2 {
        4 + 1 + 1 + NONCE_LEN + 8 + PROOF_LEN
    } else {
        4 + 1 + 1 + NONCE_LEN + PROOF_LEN
    }
}
/// The longest CHALLENGE of any version.
pub const CHALLENGE_MAX_LEN: usize = challenge_ok_len(VERSION_2);
/// Length of a CHALLENGE that refuses (status != 0).
pub const CHALLENGE_REFUSE_LEN: usize = 6;

/// First byte of every liveness frame: neither an AJP13 packet (0x12 0x34)
/// nor an HTTP request line (a method token) starts with it.
pub const FRAME_MARK: u8 = 0xFF;
/// httpd -> dialer on an idle link.
pub const PING: [u8; 2] = [FRAME_MARK, 0x01];
/// dialer -> httpd, one for each PING.
pub const PONG: [u8; 2] = [FRAME_MARK, 0x02];

/// The ping parameters httpd announces in a version-2 CHALLENGE.
/// `interval_ms == 0`: no pings on this link (the dialer keeps no deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PingParams {
    pub interval_ms: u32,
    pub timeout_ms: u32,
}

impl PingParams {
    pub const OFF: PingParams = PingParams { interval_ms: 0, timeout_ms: 0 };

    pub fn enabled(&self) -> bool {
        self.interval_ms > 0
    }

    /// How long an idle link may go without a PING before the dialer
    /// declares it dead: one interval plus the timeout (None: pings off).
    pub fn dialer_deadline(&self) -> Option<std::time::Duration> {
        self.enabled().then(|| std::time::Duration::from_millis(self.interval_ms as u64 + self.timeout_ms as u64))
    }
}

fn label(version: u8, httpd: bool) -> &'static [u8] {
    match (version >= VERSION_2, httpd) {
        (false, true) => b"RVRS1 httpd",
        (false, false) => b"RVRS1 agent",
        (true, true) => b"RVRS2 httpd",
        (true, false) => b"RVRS2 agent",
    }
}

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
    /// httpd does not serve this handshake version (sent framed as version 1).
    VersionNotServed = 5,
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
            5 => Refusal::VersionNotServed,
            _ => return None,
        })
    }
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::WrongNode => "refused: this port belongs to another node",
            Refusal::BadHello => "refused: malformed hello",
            Refusal::ShuttingDown => "refused: the httpd child is shutting down",
            Refusal::VersionNotServed => "refused: httpd does not serve this handshake version",
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
    #[error("malformed liveness frame 0xff 0x{0:02x}")]
    BadFrame(u8),
}

/// A node name is 1..=64 bytes of `[A-Za-z0-9._-]`.
pub fn valid_node(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_NODE_LEN && name.iter().all(|&c| node_char(c))
}

fn node_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
}

pub fn nonce() -> Result<[u8; NONCE_LEN], ProtoError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut n).map_err(|_| ProtoError::Random)?;
    Ok(n)
}

pub fn encode_hello(version: u8, node: &[u8], client_nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    debug_assert!(valid_node(node));
    let mut v = Vec::with_capacity(hello_len(node.len()));
    v.extend_from_slice(&MAGIC);
    v.push(version);
    v.push(node.len() as u8);
    v.extend_from_slice(node);
    v.extend_from_slice(client_nonce);
    v
}

#[derive(Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    pub node: Vec<u8>,
    pub client_nonce: [u8; NONCE_LEN],
}

/// The common start of HELLO and CHALLENGE: magic, version, then one byte
/// (node length or status); `Ok(None)` until they have arrived.
fn parse_header(buf: &[u8]) -> Result<Option<(u8, u8)>, ProtoError> {
    let have = buf.len().min(4);
    if buf[..have] != MAGIC[..have] {
        return Err(ProtoError::BadMagic);
    }
    if buf.len() >= 5 && !(VERSION_1..=VERSION_2).contains(&buf[4]) {
        return Err(ProtoError::BadVersion(buf[4]));
    }
    if buf.len() < 6 {
        return Ok(None);
    }
    Ok(Some((buf[4], buf[5])))
}

/// Incremental HELLO parser (versions 1 and 2). `Ok(None)`: more bytes are
/// needed; `Ok(Some((hello, used)))`: a complete HELLO of `used` bytes.
pub fn parse_hello(buf: &[u8]) -> Result<Option<(Hello, usize)>, ProtoError> {
    let Some((version, n)) = parse_header(buf)? else { return Ok(None) };
    let n = n as usize;
    if n == 0 || n > MAX_NODE_LEN {
        return Err(ProtoError::BadNode);
    }
    let total = hello_len(n);
    // Validate the node name as far as it has arrived, so garbage fails early.
    let node_end = (6 + n).min(buf.len());
    if !buf[6..node_end].iter().all(|&c| node_char(c)) {
        return Err(ProtoError::BadNode);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut client_nonce = [0u8; NONCE_LEN];
    client_nonce.copy_from_slice(&buf[6 + n..total]);
    Ok(Some((Hello { version, node: buf[6..6 + n].to_vec(), client_nonce }, total)))
}

/// What both proofs cover.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    pub version: u8,
    pub node: &'a [u8],
    pub client_nonce: &'a [u8; NONCE_LEN],
    pub server_nonce: &'a [u8; NONCE_LEN],
    /// Covered from version 2 on.
    pub ping: PingParams,
}

impl Transcript<'_> {
    fn mac(&self, secret: &[u8], httpd: bool) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(label(self.version, httpd));
        mac.update(&[self.node.len() as u8]);
        mac.update(self.node);
        mac.update(self.client_nonce);
        mac.update(self.server_nonce);
        if self.version >= VERSION_2 {
            mac.update(&self.ping.interval_ms.to_be_bytes());
            mac.update(&self.ping.timeout_ms.to_be_bytes());
        }
        mac
    }

    pub fn server_proof(&self, secret: &[u8]) -> [u8; PROOF_LEN] {
        self.mac(secret, true).finalize().into_bytes().into()
    }

    pub fn client_proof(&self, secret: &[u8]) -> [u8; PROOF_LEN] {
        self.mac(secret, false).finalize().into_bytes().into()
    }

    /// Constant-time check of a proof sent by httpd.
    pub fn verify_server_proof(&self, secret: &[u8], got: &[u8]) -> bool {
        self.mac(secret, true).verify_slice(got).is_ok()
    }

    /// Constant-time check of a proof sent by the dialer.
    pub fn verify_client_proof(&self, secret: &[u8], got: &[u8]) -> bool {
        self.mac(secret, false).verify_slice(got).is_ok()
    }
}

/// A continuing CHALLENGE (status 0) for the transcript `t`.
pub fn encode_challenge_ok(t: &Transcript<'_>, server_proof: &[u8; PROOF_LEN]) -> Vec<u8> {
    let mut v = Vec::with_capacity(challenge_ok_len(t.version));
    v.extend_from_slice(&MAGIC);
    v.push(t.version);
    v.push(0);
    v.extend_from_slice(t.server_nonce);
    if t.version >= VERSION_2 {
        v.extend_from_slice(&t.ping.interval_ms.to_be_bytes());
        v.extend_from_slice(&t.ping.timeout_ms.to_be_bytes());
    }
    v.extend_from_slice(server_proof);
    v
}

/// A refusing CHALLENGE, framed in `version`.
pub fn encode_refusal(version: u8, r: Refusal) -> [u8; CHALLENGE_REFUSE_LEN] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], version, r as u8]
}

#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Continue { version: u8, server_nonce: [u8; NONCE_LEN], ping: PingParams, server_proof: [u8; PROOF_LEN] },
    Refused { version: u8, refusal: Refusal },
}

/// Incremental CHALLENGE parser for the dialer, same contract as [`parse_hello`].
pub fn parse_challenge(buf: &[u8]) -> Result<Option<(Challenge, usize)>, ProtoError> {
    let Some((version, status)) = parse_header(buf)? else { return Ok(None) };
    if status != 0 {
        let refusal = Refusal::from_byte(status).ok_or(ProtoError::BadStatus(status))?;
        return Ok(Some((Challenge::Refused { version, refusal }, CHALLENGE_REFUSE_LEN)));
    }
    let len = challenge_ok_len(version);
    if buf.len() < len {
        return Ok(None);
    }
    let mut server_nonce = [0u8; NONCE_LEN];
    let mut server_proof = [0u8; PROOF_LEN];
    server_nonce.copy_from_slice(&buf[6..6 + NONCE_LEN]);
    let mut at = 6 + NONCE_LEN;
    let mut ping = PingParams::OFF;
    if version >= VERSION_2 {
        let be = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        ping = PingParams { interval_ms: be(at), timeout_ms: be(at + 4) };
        at += 8;
    }
    server_proof.copy_from_slice(&buf[at..len]);
    Ok(Some((Challenge::Continue { version, server_nonce, ping, server_proof }, len)))
}

/// What the dialer made of the bytes httpd wrote into an idle link.
#[derive(Debug, PartialEq, Eq)]
pub struct IdleInput {
    /// Complete PINGs at the start (each wants a PONG).
    pub pings: usize,
    /// Where the request starts, if a byte other than a frame arrived:
    /// everything from there on is the request.
    pub request_at: Option<usize>,
    /// A frame is cut short: read more (only when `request_at` is None).
    pub partial: bool,
}

/// Scans what httpd wrote into an idle version-2 link: PINGs, then possibly
/// the start of a request. `FRAME_MARK` followed by anything but 0x01 is an error.
pub fn scan_idle(buf: &[u8]) -> Result<IdleInput, ProtoError> {
    let mut pings = 0;
    let mut i = 0;
    while i < buf.len() {
        if buf[i] != FRAME_MARK {
            return Ok(IdleInput { pings, request_at: Some(i), partial: false });
        }
        match buf.get(i + 1) {
            None => return Ok(IdleInput { pings, request_at: None, partial: true }),
            Some(&b) if b == PING[1] => {
                pings += 1;
                i += 2;
            }
            Some(&b) => return Err(ProtoError::BadFrame(b)),
        }
    }
    Ok(IdleInput { pings, request_at: None, partial: false })
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
        return Err(format!("the secret is {} bytes long; at least {} are required", s.len(), MIN_SECRET_LEN));
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
    const PING30: PingParams = PingParams { interval_ms: 30_000, timeout_ms: 2_000 };

    fn t<'a>(v: u8, node: &'a [u8], cn: &'a [u8; 32], sn: &'a [u8; 32], ping: PingParams) -> Transcript<'a> {
        Transcript { version: v, node, client_nonce: cn, server_nonce: sn, ping }
    }

    #[test]
    fn full_exchange_verifies_and_wrong_secret_fails() {
        for v in [VERSION_1, VERSION_2] {
            let cn = nonce().unwrap();
            let sn = nonce().unwrap();
            let hello = encode_hello(v, b"app1", &cn);
            let (h, used) = parse_hello(&hello).unwrap().unwrap();
            assert_eq!((used, h.version, &h.node[..]), (hello.len(), v, &b"app1"[..]));
            let tr = t(v, &h.node, &h.client_nonce, &sn, PING30);
            let sp = tr.server_proof(SECRET);
            let ch = encode_challenge_ok(&tr, &sp);
            assert_eq!(ch.len(), challenge_ok_len(v));
            let (c, used) = parse_challenge(&ch).unwrap().unwrap();
            assert_eq!(used, ch.len());
            let Challenge::Continue { version, server_nonce, ping, server_proof: got } = c else { panic!("refused") };
            assert_eq!(version, v);
            assert_eq!(ping, if v == VERSION_2 { PING30 } else { PingParams::OFF });
            let seen = t(v, b"app1", &cn, &server_nonce, ping);
            assert!(seen.verify_server_proof(SECRET, &got));
            assert!(!seen.verify_server_proof(b"another secret of length", &got));
            let cp = seen.client_proof(SECRET);
            assert!(tr.verify_client_proof(SECRET, &cp));
            // a server proof is not a client proof (no reflection)
            assert!(!tr.verify_client_proof(SECRET, &sp));
            // another node, another nonce: no replay
            assert!(!t(v, b"app2", &cn, &sn, PING30).verify_client_proof(SECRET, &cp));
            let sn2 = nonce().unwrap();
            assert!(!t(v, b"app1", &cn, &sn2, PING30).verify_client_proof(SECRET, &cp));
        }
    }

    #[test]
    fn version_and_ping_parameters_are_bound_into_the_proofs() {
        let (cn, sn) = ([1u8; 32], [2u8; 32]);
        let v2 = t(VERSION_2, b"app1", &cn, &sn, PING30);
        let p = v2.server_proof(SECRET);
        // a downgrade to version 1 or altered ping parameters break the proof
        assert!(!t(VERSION_1, b"app1", &cn, &sn, PING30).verify_server_proof(SECRET, &p));
        assert!(!t(VERSION_2, b"app1", &cn, &sn, PingParams { interval_ms: 0, timeout_ms: 2000 })
            .verify_server_proof(SECRET, &p));
        assert!(!t(VERSION_2, b"app1", &cn, &sn, PingParams { interval_ms: 30_000, timeout_ms: 2001 })
            .verify_server_proof(SECRET, &p));
        // version 1 ignores them
        let v1 = t(VERSION_1, b"app1", &cn, &sn, PING30).server_proof(SECRET);
        assert!(t(VERSION_1, b"app1", &cn, &sn, PingParams::OFF).verify_server_proof(SECRET, &v1));
    }

    #[test]
    fn hello_parser_is_incremental_and_strict() {
        let cn = [7u8; NONCE_LEN];
        for v in [VERSION_1, VERSION_2] {
            let hello = encode_hello(v, b"node-1.a_b", &cn);
            for cut in 0..hello.len() {
                assert_eq!(parse_hello(&hello[..cut]).unwrap(), None, "cut at {cut}");
            }
        }
        assert_eq!(parse_hello(b"GET / HTTP/1.1\r\n"), Err(ProtoError::BadMagic));
        assert_eq!(parse_hello(b"RV"), Ok(None));
        assert_eq!(parse_hello(b"RX"), Err(ProtoError::BadMagic));
        assert_eq!(parse_hello(b"RVRS\x03"), Err(ProtoError::BadVersion(3)));
        assert_eq!(parse_hello(b"RVRS\x00\x04"), Err(ProtoError::BadVersion(0)));
        assert_eq!(parse_hello(b"RVRS\x01\x00"), Err(ProtoError::BadNode));
        assert_eq!(parse_hello(b"RVRS\x02\x41"), Err(ProtoError::BadNode));
        assert_eq!(parse_hello(b"RVRS\x02\x04ab/"), Err(ProtoError::BadNode));
    }

    #[test]
    fn challenge_refusals_parse() {
        let r = encode_refusal(VERSION_2, Refusal::WrongNode);
        assert_eq!(
            parse_challenge(&r).unwrap(),
            Some((Challenge::Refused { version: 2, refusal: Refusal::WrongNode }, 6))
        );
        let r = encode_refusal(VERSION_1, Refusal::VersionNotServed);
        assert_eq!(&r, b"RVRS\x01\x05");
        assert_eq!(
            parse_challenge(&r).unwrap(),
            Some((Challenge::Refused { version: 1, refusal: Refusal::VersionNotServed }, 6))
        );
        assert_eq!(parse_challenge(b"RVRS\x01\x09"), Err(ProtoError::BadStatus(9)));
        // a v2 CHALLENGE is incremental too
        let (cn, sn) = ([3u8; 32], [4u8; 32]);
        let tr = t(VERSION_2, b"n", &cn, &sn, PING30);
        let ch = encode_challenge_ok(&tr, &tr.server_proof(SECRET));
        for cut in 0..ch.len() {
            assert_eq!(parse_challenge(&ch[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn idle_frames() {
        assert_eq!(scan_idle(&[]).unwrap(), IdleInput { pings: 0, request_at: None, partial: false });
        assert_eq!(scan_idle(&PING).unwrap(), IdleInput { pings: 1, request_at: None, partial: false });
        assert_eq!(scan_idle(&[0xFF]).unwrap(), IdleInput { pings: 0, request_at: None, partial: true });
        assert_eq!(scan_idle(&[0xFF, 1, 0xFF]).unwrap(), IdleInput { pings: 1, request_at: None, partial: true });
        let mut b = PING.to_vec();
        b.extend_from_slice(&PING);
        b.extend_from_slice(&[0x12, 0x34, 0, 5]);
        assert_eq!(scan_idle(&b).unwrap(), IdleInput { pings: 2, request_at: Some(4), partial: false });
        assert_eq!(
            scan_idle(b"GET / HTTP/1.1\r\n").unwrap(),
            IdleInput { pings: 0, request_at: Some(0), partial: false }
        );
        assert_eq!(scan_idle(&[0xFF, 0x02]), Err(ProtoError::BadFrame(2)));
        assert_eq!(scan_idle(&[0xFF, 0x01, 0xFF, 0x00]), Err(ProtoError::BadFrame(0)));
        // neither AJP13 nor an HTTP method token begins with the frame mark
        assert_ne!(FRAME_MARK, 0x12);
        assert!(!FRAME_MARK.is_ascii());
        assert_eq!(
            PingParams { interval_ms: 500, timeout_ms: 200 }.dialer_deadline(),
            Some(std::time::Duration::from_millis(700))
        );
        assert_eq!(PingParams::OFF.dialer_deadline(), None);
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

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The vectors every dialer implementation checks itself against
    /// (testdata/handshake-v2.vectors; the Tomcat connector's tests read the
    /// same file). PROTO_WRITE_VECTORS=1 writes it anew.
    fn vectors() -> String {
        // (version, secret, node, client nonce seed, server nonce seed, ping parameters)
        type Case = (u8, &'static [u8], &'static [u8], u8, u8, PingParams);
        let cases: [Case; 4] = [
            (2, b"0123456789abcdef-vector-secret", b"app1", 0x11, 0x22, PING30),
            (2, b"another secret, 32 bytes long!!!", b"node-7.example_x", 0xa5, 0x5a, PingParams::OFF),
            (2, b"0123456789abcdef", &[b'n'; 64], 0x00, 0xff, PingParams { interval_ms: 500, timeout_ms: 250 }),
            (1, b"0123456789abcdef-vector-secret", b"app1", 0x11, 0x22, PingParams::OFF),
        ];
        let mut out = String::from(
            "# mod_proxy_reversed handshake test vectors (written by proto/src/lib.rs tests; PROTO_WRITE_VECTORS=1 rewrites).\n\
             # One key=value a line, blank lines between cases; hex except node (ASCII) and the decimal numbers.\n\
             # client_nonce[i] = (client_seed + i) mod 256, server_nonce[i] = (server_seed + 3*i) mod 256.\n",
        );
        for (v, secret, node, cs, ss, ping) in cases {
            let cn: [u8; 32] = std::array::from_fn(|i| cs.wrapping_add(i as u8));
            let sn: [u8; 32] = std::array::from_fn(|i| ss.wrapping_add(3 * i as u8));
            let tr = t(v, node, &cn, &sn, ping);
            let sp = tr.server_proof(secret);
            out.push_str(&format!(
                "\nversion={v}\nsecret={}\nnode={}\nclient_nonce={}\nserver_nonce={}\nping_interval_ms={}\nping_timeout_ms={}\nhello={}\nchallenge={}\nserver_proof={}\nclient_proof={}\n",
                hex(secret),
                String::from_utf8_lossy(node),
                hex(&cn),
                hex(&sn),
                ping.interval_ms,
                ping.timeout_ms,
                hex(&encode_hello(v, node, &cn)),
                hex(&encode_challenge_ok(&tr, &sp)),
                hex(&sp),
                hex(&tr.client_proof(secret)),
            ));
        }
        out
    }

    #[test]
    fn shared_test_vectors_are_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/handshake-v2.vectors");
        let want = vectors();
        if std::env::var_os("PROTO_WRITE_VECTORS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have =
            std::fs::read_to_string(path).expect("testdata/handshake-v2.vectors (PROTO_WRITE_VECTORS=1 writes it)");
        assert_eq!(have, want, "the shared vectors differ from what this implementation computes");
    }
}
