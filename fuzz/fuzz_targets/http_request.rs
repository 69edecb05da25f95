//! The agent's HTTP/1.1 request parser and chunked decoder on arbitrary
//! bytes: never a panic, consumed counts within the input, a parsed request
//! stays the same when more bytes follow it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reversed_agent::http1;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match http1::parse_request(rest) {
        Ok(Some((req, used))) => {
            assert!(used <= rest.len());
            assert!(!req.method.is_empty());
            // Pipelined bytes after the head do not change the request.
            let mut more = rest[..used].to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let again = http1::parse_request(&more).expect("reparse").expect("complete");
            assert_eq!(again.1, used);
            // The body, if chunked, through the decoder in pieces.
            if req.body == http1::BodyKind::Chunked {
                chunked(&rest[used..], mode);
            }
        }
        Ok(None) | Err(_) => {}
    }
    chunked(rest, mode);
});

fn chunked(body: &[u8], mode: u8) {
    let mut d = http1::ChunkedDecoder::default();
    let mut out = Vec::new();
    let piece = 1 + mode as usize % 32;
    let mut buf: Vec<u8> = Vec::new();
    for part in body.chunks(piece) {
        buf.extend_from_slice(part);
        match d.decode(&buf, Some(&mut out)) {
            Ok(used) => {
                assert!(used <= buf.len());
                buf.drain(..used);
                if d.done() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    assert!(out.len() <= body.len());
}
