//! mod_manager's parsing rules shared by every command, and the field limits.

use super::error::{smespar, text, Error};

/// Largest request body accepted, in bytes: 13 188.
///
/// mod_manager reads at most `MaxMCMPMessSize` bytes (manager_handler, lines
/// 3467-3491). Without that directive it computes
/// `9 + JVMROUTESZ + MaxHost * HOSTALIASZ + 7 + MaxContext * CONTEXTSZ + 8`
/// with the defaults `MaxHost` 20 and `MaxContext` 100 (lines 22-24, 3986-3988)
/// = 9 + 64 + 20*255 + 7 + 100*80 + 8 = 13 188, and never less than
/// `MAXMESSSIZE` 1024 (line 26). mod_manager silently drops what is beyond;
/// [`parse_pairs`] rejects a longer body with `SMESPAR`.
pub const MAX_BODY: usize = 9 + JVMROUTE_SIZE + 20 * ALIAS_SIZE + 7 + 100 * CONTEXT_SIZE + 8;

/// Field buffer sizes (mod_clustersize.h; JVMROUTESZ is httpd 2.4's
/// `PROXY_WORKER_MAX_ROUTE_SIZE`). mod_manager rejects a value whose length in
/// bytes is `>=` the size (room for the C string's NUL).
pub const JVMROUTE_SIZE: usize = 64;
pub const BALANCER_SIZE: usize = 40;
pub const DOMAIN_SIZE: usize = 20;
pub const HOST_SIZE: usize = 64;
pub const PORT_SIZE: usize = 7;
pub const TYPE_SIZE: usize = 16;
/// `HOSTALIASZ`: one alias is at most 254 bytes.
pub const ALIAS_SIZE: usize = 255;
/// `CONTEXTSZ`: one context is at most 79 bytes.
pub const CONTEXT_SIZE: usize = 80;
/// `COOKNAMESZ` / `PATHNAMESZ` (StickySessionCookie / StickySessionPath).
pub const COOKIE_SIZE: usize = 30;
pub const PATH_SIZE: usize = 30;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// %-decodes one token and applies decodeenc's checks (lines 2613-2650): the
/// decoded text may not hold `<`, `>`, `"`, `'`, CR or LF; we also refuse NUL,
/// a `%` without two hex digits (mod_manager keeps such a `%` as is) and
/// bytes that are not UTF-8.
fn decode_token(tok: &[u8]) -> Result<String, Error> {
    let mut out = Vec::with_capacity(tok.len());
    let mut i = 0;
    while i < tok.len() {
        let mut c = tok[i];
        if c == b'%' {
            match (tok.get(i + 1).copied().and_then(hex), tok.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => c = h << 4 | l,
                _ => return Err(smespar()),
            }
            i += 3;
        } else {
            i += 1;
        }
        if matches!(c, b'<' | b'>' | b'"' | b'\'' | b'\r' | b'\n' | 0) {
            return Err(smespar());
        }
        out.push(c);
    }
    String::from_utf8(out).map_err(|_| smespar())
}

/// Splits a body into its `(key, value)` pairs and %-decodes them.
///
/// As mod_manager's `process_buff` (lines 690-723), the body is cut at every
/// `&` and every `=` alike, and the tokens are taken two by two as key and
/// value: `a=b&c=d`, but also `a&b=c=d`, give `(a,b) (c,d)`. Each token is then
/// decoded (`%xx`; `%26` and `%3D` are how a value holds `&` and `=`). A `+`
/// stays a `+`: mod_manager never turns it into a space (decodeenc), so the
/// space that Java's URLEncoder sends as `+` arrives as `+`.
///
/// An empty body gives no pairs. Errors (all `SMESPAR`): a body longer than
/// [`MAX_BODY`]; an odd number of tokens (e.g. a trailing `&`); and the
/// decoding errors of decodeenc plus ours (see [`decode_token`] rules: `<`
/// `>` `"` `'` CR LF, NUL, a bad `%xx`, non-UTF-8).
///
/// Keys keep their case; the parsers below compare them case-insensitively
/// (`strcasecmp`).
pub fn parse_pairs(body: &[u8]) -> Result<Vec<(String, String)>, Error> {
    if body.len() > MAX_BODY {
        return Err(smespar());
    }
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let tokens: Vec<&[u8]> = body.split(|&b| b == b'&' || b == b'=').collect();
    if !tokens.len().is_multiple_of(2) {
        return Err(smespar());
    }
    tokens.chunks_exact(2).map(|kv| Ok((decode_token(kv[0])?, decode_token(kv[1])?))).collect()
}

/// `yes`/`on`/`true`/`1` → true, `no`/`off`/`false`/`0` → false (ASCII
/// case-insensitive), else None.
///
/// mod_manager's `process_boolean_parameter` (lines 922-933) knows only
/// yes/on/no/off; the Java side sends `Reversed=true`, which mod_manager
/// therefore ignores. We accept both spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    let l = v.to_ascii_lowercase();
    match l.as_str() {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// `ap_timeout_parameter_parse` (httpd server/util.c) as mod_manager uses it
/// for flushwait/ping/ttl/Timeout: an `apr_strtoi64` number (leading white
/// space, a sign, digits; no digits at all leaves the whole text as the
/// unit) then a unit whose first letters must be `s`, `h`, `ms` or `mi`; no
/// unit means `default_unit`. Only success matters here.
pub(super) fn timeout_ok(v: &str, default_unit: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let start = i;
    let mut n: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        // errno ERANGE on overflow: an error.
        match n.checked_mul(10).and_then(|n| n.checked_add((b[i] - b'0') as i64)) {
            Some(x) => n = x,
            None => return false,
        }
        i += 1;
    }
    let rest: &[u8] = if i == start { b } else { &b[i..] };
    let unit = if rest.is_empty() { default_unit.as_bytes() } else { rest };
    match unit.first() {
        Some(b's') | Some(b'h') => true,
        Some(b'm') => matches!(unit.get(1), Some(b's') | Some(b'i')),
        _ => false,
    }
}

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `sscanf("%d")`: white space, a sign, at least one digit, anything after
/// ignored. Values beyond i32 come back clamped (out of every valid range).
pub(super) fn scan_int(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut n: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        n = (n * 10 + (b[i] - b'0') as i64).min(1 << 40);
        i += 1;
    }
    if i == start {
        return None;
    }
    Some(if neg { -n } else { n })
}

/// A port: ASCII digits only, 0-65535.
pub(super) fn parse_port(v: &str) -> Result<u16, Error> {
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(Error::syntax(text::PORT_BAD));
    }
    v.parse::<u16>().map_err(|_| Error::syntax(text::PORT_BAD))
}

/// Removes an IPv6 zone from `[addr%zone]` as process_config_node does (lines
/// 1057-1069): in a value that starts with `[`, from the first `%` on only `]`
/// characters are kept.
pub(super) fn strip_zone(v: &str) -> String {
    if !v.starts_with('[') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut zone = false;
    for c in v.chars() {
        if c == '%' {
            zone = true;
        }
        if !zone || c == ']' {
            out.push(c);
        }
    }
    out
}

/// One `Alias` or `Context` value: a comma-separated list (process_context_alias,
/// lines 1229-1262, with parse_list_to_array_with_checks, lines 1192-1222).
/// Aliases are lower-cased first (ASCII, as `apr_tolower`). An empty item is
/// `TODO: Empty Alias/Context is not allowed`, an item of `limit` bytes or more
/// `SALIBIG`/`SCONBIG`.
///
/// Unsure/deviation: mod_manager's splitter advances twice after a comma, so
/// it never looks at the character right after a comma: `a,b` is refused as
/// empty, `a,,b` yields `a` and `,b`, an item after a comma may be one byte
/// longer, and `a,` reads past the value. We split on every comma and apply
/// one limit to every item.
pub(super) fn parse_list(v: &str, alias: bool, out: &mut Vec<String>) -> Result<(), Error> {
    let (limit, big, empty) = if alias {
        (ALIAS_SIZE, text::SALIBIG, text::EMPTY_ALIAS)
    } else {
        (CONTEXT_SIZE, text::SCONBIG, text::EMPTY_CONTEXT)
    };
    let lowered;
    let v = if alias {
        lowered = v.to_ascii_lowercase();
        lowered.as_str()
    } else {
        v
    };
    for item in v.split(',') {
        if item.is_empty() {
            return Err(Error::syntax(empty));
        }
        if item.len() >= limit {
            return Err(Error::syntax(big));
        }
        out.push(item.to_string());
    }
    Ok(())
}

pub(super) fn both_or_neither(aliases: &[String], contexts: &[String]) -> Result<(), Error> {
    match (aliases.is_empty(), contexts.is_empty()) {
        (false, true) => Err(Error::syntax(text::SALIBAD)),
        (true, false) => Err(Error::syntax(text::SCONBAD)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcmp::testutil::{pairs, syn};

    #[test]
    fn max_body_is_mod_managers_default() {
        assert_eq!(MAX_BODY, 13_188);
        assert!(parse_pairs(&vec![b'a'; MAX_BODY]).is_err()); // odd tokens
        let mut ok = b"a=".to_vec();
        ok.resize(MAX_BODY, b'b');
        assert_eq!(parse_pairs(&ok).unwrap()[0].1.len(), MAX_BODY - 2);
        ok.push(b'b');
        assert_eq!(parse_pairs(&ok).unwrap_err(), syn(text::SMESPAR));
    }

    #[test]
    fn pairs_split_decode_and_reject() {
        assert_eq!(parse_pairs(b"").unwrap(), vec![]);
        assert_eq!(parse_pairs(b"a=b&c=d").unwrap(), pairs(&[("a", "b"), ("c", "d")]));
        // '&' and '=' are the same separator, as in process_buff.
        assert_eq!(parse_pairs(b"a&b=c=d").unwrap(), pairs(&[("a", "b"), ("c", "d")]));
        assert_eq!(parse_pairs(b"a=").unwrap(), pairs(&[("a", "")]));
        assert_eq!(parse_pairs(b"=x").unwrap(), pairs(&[("", "x")]));
        // %-decoding; %26/%3D are literal & and =; '+' stays '+'.
        assert_eq!(parse_pairs(b"K%65y=%2Fa%26b%3dc+d%C3%A9").unwrap(), pairs(&[("Key", "/a&b=c+dé")]));
        for bad in [
            &b"a"[..],
            b"a=b&",
            b"a=b&c",
            b"a=<",
            b"a=%3C",
            b"a=>",
            b"a=%3e",
            b"a=\"",
            b"a=%22",
            b"a='",
            b"a=%27",
            b"a=\r",
            b"a=%0D",
            b"a=\n",
            b"a=%0a",
            b"a=\0",
            b"a=%00",
            b"a=%",
            b"a=%4",
            b"a=%4g",
            b"a=%zz",
            b"a=\xff",
            b"a=%FF",
            b"%3C=b",
        ] {
            assert_eq!(parse_pairs(bad), Err(syn(text::SMESPAR)), "{:?}", String::from_utf8_lossy(bad));
        }
        // Tab and other controls pass (decodeenc only knows CR and LF).
        assert_eq!(parse_pairs(b"a=%09").unwrap(), pairs(&[("a", "\t")]));
    }

    #[test]
    fn booleans() {
        for t in ["yes", "YES", "On", "true", "TRUE", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["no", "No", "OFF", "false", "False", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for x in ["", "y", "2", "yess", " yes", "enabled"] {
            assert_eq!(parse_bool(x), None, "{x}");
        }
    }
}
