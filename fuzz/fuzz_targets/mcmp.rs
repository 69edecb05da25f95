//! The MCMP codec (reversed_proto::mcmp) on arbitrary bytes: no parser
//! panics, and whatever parses is re-encoded the Java way and parses back to
//! the same message (with a space read as `+`, the one character that does
//! not survive URLEncoder + mod_manager, and CONFIG's kept keys in the sorted
//! order encode() sends them; a CONFIG number whose spaces turned into signs
//! may fail to parse back, nothing else may). The reply parser: consumed counts within the
//! input, no strict prefix of a complete reply is complete, and at EOF it
//! agrees with the incremental parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reversed_proto::mcmp::{self, AppMsg, ConfigMsg, PingMsg, StatusMsg};

fn p(s: &str) -> String {
    s.replace(' ', "+")
}

fn pv(v: &[String]) -> Vec<String> {
    v.iter().map(|s| p(s)).collect()
}

fn fits(body: &str) -> bool {
    body.len() <= mcmp::MAX_BODY
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let whole = mode & 1 == 1;

    if let Ok(pairs) = mcmp::parse_pairs(body) {
        let enc = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", mcmp::form_encode(k), mcmp::form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        if fits(&enc) {
            let want: Vec<_> = pairs.iter().map(|(k, v)| (p(k), p(v))).collect();
            assert_eq!(mcmp::parse_pairs(enc.as_bytes()).expect("re-encoded pairs parse"), want);
        }
    }

    if let Ok(m) = mcmp::parse_config(body) {
        let enc = m.encode();
        if fits(&enc) {
            let mut other: Vec<_> = m.other.iter().map(|(k, v)| (k.clone(), p(v))).collect();
            other.sort_by(|a, b| a.0.cmp(&b.0));
            let want = ConfigMsg {
                jvm_route: p(&m.jvm_route),
                balancer: m.balancer.as_deref().map(p),
                domain: m.domain.as_deref().map(p),
                host: m.host.as_deref().map(p),
                port: m.port,
                kind: m.kind.as_deref().map(p),
                reversed: m.reversed,
                aliases: pv(&m.aliases),
                contexts: pv(&m.contexts),
                other,
            };
            match mcmp::parse_config(enc.as_bytes()) {
                Ok(again) => assert_eq!(again, want),
                // A space that became '+' can spoil a number: "  5" is a
                // valid ttl, "++5" is not.
                Err(e) => assert!(m.other.iter().any(|(_, v)| v.contains(' ')), "encoded CONFIG fails: {e:?}"),
            }
        }
    }

    if let Ok(m) = mcmp::parse_app(body, whole) {
        let enc = m.encode();
        if fits(&enc) {
            let want = AppMsg { jvm_route: p(&m.jvm_route), aliases: pv(&m.aliases), contexts: pv(&m.contexts) };
            assert_eq!(mcmp::parse_app(enc.as_bytes(), whole).expect("encoded APP parses"), want);
        }
    }

    if let Ok(m) = mcmp::parse_status(body) {
        assert!((-2..=100).contains(&m.load));
        let want = StatusMsg { jvm_route: p(&m.jvm_route), load: m.load };
        assert_eq!(mcmp::parse_status(m.encode().as_bytes()).expect("encoded STATUS parses"), want);
    }

    if let Ok(m) = mcmp::parse_ping(body) {
        let want = match &m {
            PingMsg::Any => PingMsg::Any,
            PingMsg::Route(r) => PingMsg::Route(p(r)),
            PingMsg::Url { scheme, host, port } => PingMsg::Url { scheme: scheme.clone(), host: p(host), port: *port },
        };
        let enc = m.encode();
        if fits(&enc) {
            assert_eq!(mcmp::parse_ping(enc.as_bytes()).expect("encoded PING parses"), want);
        }
    }

    match mcmp::parse_reply(body) {
        Ok(Some((r, n))) => {
            assert!(n > 0 && n <= body.len());
            assert_eq!(r.error.is_some(), r.status != 200);
            let cut = mode as usize % n;
            assert!(!matches!(mcmp::parse_reply(&body[..cut]), Ok(Some(_))), "a strict prefix parsed");
            assert_eq!(mcmp::parse_reply(&body[..n]).expect("same bytes").expect("complete"), (r.clone(), n));
            assert_eq!(mcmp::parse_reply_at_eof(body).expect("complete at eof"), (r, n));
        }
        Ok(None) => {
            if let Ok((_, n)) = mcmp::parse_reply_at_eof(body) {
                assert!(n <= body.len());
            }
        }
        Err(_) => {}
    }
});
