//! The handshake: proto's incremental HELLO and CHALLENGE parsers on
//! arbitrary bytes (consistent on every prefix, exact round trip), the
//! idle-link frame scanner (PING/PONG of version 2), and the agent's dialer
//! state machine (`handshake::dial`) against an arbitrary "httpd" answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_proxy_reversed_fuzz::{runtime, MockStream};
use reversed_proto as p;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    // HELLO: a complete parse round-trips, and no prefix of it parses.
    match p::parse_hello(rest) {
        Ok(Some((h, used))) => {
            assert!(used <= rest.len() && p::valid_node(&h.node));
            assert_eq!(p::encode_hello(h.version, &h.node, &h.client_nonce), &rest[..used]);
            let cut = mode as usize % used;
            assert!(matches!(p::parse_hello(&rest[..cut]), Ok(None) | Err(_)));
            if cut >= 6 {
                assert_eq!(p::parse_hello(&rest[..cut]).unwrap(), None, "a prefix of a good hello failed");
            }
        }
        Ok(None) => assert!(rest.len() < p::hello_len(p::MAX_NODE_LEN)),
        Err(_) => {
            // An error stays an error with more bytes.
            let mut more = rest.to_vec();
            more.extend_from_slice(&[b'a'; 100]);
            assert!(p::parse_hello(&more).is_err());
        }
    }
    // CHALLENGE: same contract.
    match p::parse_challenge(rest) {
        Ok(Some((c, used))) => {
            assert!(used <= rest.len());
            let enc: Vec<u8> = match c {
                p::Challenge::Continue { version, server_nonce, ping, server_proof } => {
                    let t = p::Transcript { version, node: b"x", client_nonce: &[0; 32], server_nonce: &server_nonce, ping };
                    p::encode_challenge_ok(&t, &server_proof)
                }
                p::Challenge::Refused { version, refusal } => p::encode_refusal(version, refusal).to_vec(),
            };
            assert_eq!(enc, &rest[..used]);
        }
        Ok(None) => assert!(rest.len() < p::CHALLENGE_MAX_LEN),
        Err(_) => {}
    }
    // Idle frames: complete PINGs first, then either the request start (not
    // a frame mark) or a cut frame; an error stays an error with more bytes.
    match p::scan_idle(rest) {
        Ok(i) => {
            let pings = i.pings * 2;
            assert!(rest[..pings].chunks(2).all(|c| c == p::PING));
            match i.request_at {
                Some(at) => {
                    assert_eq!(at, pings);
                    assert_ne!(rest[at], p::FRAME_MARK);
                    assert!(!i.partial);
                }
                None => assert_eq!(rest.len(), pings + i.partial as usize),
            }
        }
        Err(_) => {
            let mut more = rest.to_vec();
            more.extend_from_slice(&p::PING);
            assert!(p::scan_idle(&more).is_err());
        }
    }
    let _ = p::secret_from_bytes(rest);
    let _ = p::Verdict::from_byte(mode);

    // The dialer against an arbitrary httpd: it must end (no panic, no
    // hang) and can only succeed if httpd proved the secret, which random
    // bytes cannot do.
    let piece = 1 + (mode as usize % 80);
    let rt = runtime();
    let mut s = MockStream::new(rest, piece);
    let r = rt.block_on(reversed_agent::handshake::dial(&mut s, b"app1", b"fuzzing secret 0123456789"));
    assert!(r.is_err(), "the dialer accepted an httpd that does not know the secret");
    // It sent exactly one HELLO, then at most one proof.
    assert!(s.written == p::hello_len(4) || s.written == p::hello_len(4) + p::PROOF_LEN);
});
