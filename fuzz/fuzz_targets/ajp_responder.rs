//! The agent's AJP13 codec and responder: arbitrary bytes from "httpd" on
//! an idle connection, served by `responder::serve` (FORWARD_REQUEST,
//! request body packets, GET_BODY_CHUNK flow, CPING, several requests per
//! connection; HTTP/1.1 when the AJP magic is absent), plus the codec
//! functions on their own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_proxy_reversed_fuzz::{runtime, MockStream};
use reversed_agent::{ajp, responder};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    // The codec alone: framing, then each packet parsed as what it claims.
    let mut buf = rest;
    while let Ok(Some(total)) = ajp::frame(buf) {
        assert!(total >= 4 && total <= buf.len());
        let p = &buf[4..total];
        if let Ok(req) = ajp::parse_forward_request(p) {
            let _ = req.content_length();
            let _ = req.is_chunked();
            let _ = req.header("host");
        }
        let _ = ajp::body_data(p);
        buf = &buf[total..];
    }
    // The responder on a connection carrying these bytes.
    let echo = mode & 1 == 1;
    let cfg = responder::Config::new(if echo { 0 } else { (mode as usize) * 8 }, echo);
    // Reads of 1-16 bytes for short inputs (incremental parsing), larger
    // ones otherwise: the HTTP parser re-reads the head on every read, which
    // makes byte-sized reads of 4 KiB inputs quadratic and the fuzzer slow.
    let piece = if mode & 0x80 != 0 && rest.len() <= 512 {
        1 + (mode as usize >> 1) % 16
    } else {
        256 + (mode as usize >> 1) % 64 * 64
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let rt = runtime();
    let s = MockStream::new(rest, piece);
    rt.block_on(responder::serve(s, Vec::new(), &cfg, rx));
});
