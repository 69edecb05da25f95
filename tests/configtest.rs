//! `apache2 -t` must reject every malformed ProxyReversed directive, naming
//! the directive and the reason, and accept a correct configuration.

mod common;

use common::*;
use std::path::PathBuf;

const PROXY: &str = "ProxyPass \"/app/\" \"ajp://127.0.0.2:1/\"\n\
                     ProxyPass \"/web/\" \"http://127.0.0.3:1/\"\n";

struct Case {
    b: HttpdBuilder,
    secret: PathBuf,
}

fn case() -> Case {
    let b = Httpd::builder(Mpm::Event);
    let secret = b.secret("secret", "0123456789abcdef0123456789abcdef\n");
    Case { b, secret }
}

/// Runs `apache2 -t` on the base config plus `lines` (where `{S}` stands for
/// a valid secret file) and returns (ok, output).
fn run(lines: &str) -> (bool, String) {
    let c = case();
    let lines = lines.replace("{S}", &c.secret.display().to_string());
    let b = c.b.conf(PROXY).conf(&lines);
    b.configtest()
}

/// The config must fail, naming ProxyReversed and one of `reasons`
/// (case-insensitive).
fn must_fail(lines: &str, reasons: &[&str]) {
    let (ok, out) = run(lines);
    assert!(!ok, "configtest accepted an invalid config:\n{lines}\noutput:\n{out}");
    assert!(
        out.contains("ProxyReversed"),
        "the error does not name the directive ProxyReversed:\n{lines}\noutput:\n{out}"
    );
    let low = out.to_lowercase();
    assert!(
        reasons.iter().any(|r| low.contains(&r.to_lowercase())),
        "the error gives none of the reasons {reasons:?}:\n{lines}\noutput:\n{out}"
    );
}

fn must_pass(lines: &str) {
    let (ok, out) = run(lines);
    assert!(ok, "configtest rejected a valid config:\n{lines}\noutput:\n{out}");
    assert!(out.contains("Syntax OK"), "no 'Syntax OK':\n{out}");
}

#[test]
fn good_config_passes() {
    let c = case();
    let s = c.secret.display().to_string();
    let lines = format!(
        r#"
ProxyReversedHandshakeTimeout 2s
ProxyReversedMaxHandshakes 32
ProxyReversed app1 "ajp://127.0.0.2:1/" 127.0.0.1:19000-19007 secret={s} wait=1500ms maxidle=16
ProxyReversed web1 "http://127.0.0.3:1/" 127.0.0.1:19010-19017 secret={s} auth=hmac allow=127.0.0.0/8,10.0.0.0/8 wait=2
<Proxy "balancer://pool">
    BalancerMember "ajp://127.0.0.4:1" route=b1
    BalancerMember "ajp://127.0.0.5:1" route=b2
</Proxy>
ProxyPass "/lb/" "balancer://pool/"
ProxyReversed b1 "ajp://127.0.0.4:1" 127.0.0.1:19020-19023 secret={s} wait=500ms
ProxyReversed b2 "ajp://127.0.0.5:1" 0.0.0.0:19030-19033 secret={s} maxidle=4
<Location "/reversed-status">
    SetHandler proxy-reversed-status
</Location>
"#
    );
    let (ok, out) = c.b.conf(PROXY).conf(&lines).configtest();
    assert!(ok, "configtest rejected a valid config:\n{lines}\noutput:\n{out}");
    assert!(out.contains("Syntax OK"), "no 'Syntax OK':\n{out}");
}

#[test]
fn good_config_duration_forms_and_timeouts() {
    must_pass(
        "ProxyReversedHandshakeTimeout 500ms\n\
         ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19000 secret={S} wait=3\n\
         ProxyReversed web1 \"http://127.0.0.3:1/\" 127.0.0.1:19001-19002 secret={S} wait=3s",
    );
}

#[test]
fn loopback_without_secret_and_auth_none_pass() {
    // Only non-loopback addresses need secret= or an explicit auth=none.
    must_pass(
        "ProxyReversed app1 \"ajp://127.0.0.2:1/\" 0.0.0.0:19000-19003 auth=none\n\
         ProxyReversed web1 \"http://127.0.0.3:1/\" 127.0.0.1:19010-19013 auth=none",
    );
}

#[test]
fn same_ports_on_distinct_addresses_do_not_overlap() {
    must_pass(
        "ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19003 secret={S}\n\
         ProxyReversed web1 \"http://127.0.0.3:1/\" 127.0.0.9:19000-19003 secret={S}",
    );
}

#[test]
fn without_our_module_the_directive_is_unknown() {
    // Sanity check of the harness: the failure cases below fail because of
    // our module, and the base config is otherwise valid.
    let c = case();
    let (ok, out) = c.b.conf(PROXY).configtest();
    assert!(ok, "the base config is invalid:\n{out}");
    let c = case();
    let (ok, out) =
        c.b.without_our_module()
            .conf(PROXY)
            .conf("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19007")
            .configtest();
    assert!(!ok && out.contains("ProxyReversed"), "{out}");
}

#[test]
fn malformed_range_letters() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:abc secret={S}", &["range", "port"]);
}

#[test]
fn malformed_range_open_end() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:9000- secret={S}", &["range", "port"]);
}

#[test]
fn malformed_range_no_port() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1 secret={S}", &["range", "port"]);
}

#[test]
fn empty_range() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19005-19000 secret={S}", &["empty"]);
}

#[test]
fn overlapping_ranges_same_address() {
    must_fail(
        "ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19005 secret={S}\n\
         ProxyReversed web1 \"http://127.0.0.3:1/\" 127.0.0.1:19005-19010 secret={S}",
        &["overlap"],
    );
}

#[test]
fn overlapping_ranges_wildcard_first() {
    must_fail(
        "ProxyReversed app1 \"ajp://127.0.0.2:1/\" 0.0.0.0:19000-19005 secret={S}\n\
         ProxyReversed web1 \"http://127.0.0.3:1/\" 127.0.0.1:19003-19004 secret={S}",
        &["overlap"],
    );
}

#[test]
fn overlapping_ranges_wildcard_second() {
    must_fail(
        "ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19005 secret={S}\n\
         ProxyReversed web1 \"http://127.0.0.3:1/\" 0.0.0.0:18990-19000 secret={S}",
        &["overlap"],
    );
}

#[test]
fn port_below_1024() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:1000-1010 secret={S}", &["1024", "privileged"]);
}

#[test]
fn range_reaching_below_1024() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:1020-1030 secret={S}", &["1024", "privileged"]);
}

#[test]
fn missing_secret_file() {
    let c = case();
    let missing = c.b.dir().join("no-such-secret");
    let (ok, out) = c
        .b
        .conf(PROXY)
        .conf(&format!("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19003 secret={}", missing.display()))
        .configtest();
    assert!(!ok, "a missing secret file was accepted:\n{out}");
    assert!(out.contains("ProxyReversed"), "{out}");
    assert!(out.contains("no-such-secret"), "the error does not name the secret file:\n{out}");
    let low = out.to_lowercase();
    assert!(
        ["no such file", "cannot read", "can't read", "unable to read", "cannot open", "missing", "not found"]
            .iter()
            .any(|k| low.contains(k)),
        "no reason given:\n{out}"
    );
}

#[test]
fn unreadable_secret_file() {
    // A directory cannot be read as a file, even by root.
    let c = case();
    let d = c.b.dir().join("secret-dir");
    std::fs::create_dir(&d).unwrap();
    let (ok, out) =
        c.b.conf(PROXY)
            .conf(&format!("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19003 secret={}", d.display()))
            .configtest();
    assert!(!ok, "a secret path that cannot be read was accepted:\n{out}");
    assert!(out.contains("ProxyReversed") && out.contains("secret"), "{out}");
    let low = out.to_lowercase();
    assert!(["directory", "read", "open", "regular file"].iter().any(|k| low.contains(k)), "no reason given:\n{out}");
}

#[test]
fn secret_file_too_short() {
    let c = case();
    // 15 bytes once the surrounding white space is trimmed.
    let short = c.b.secret("short", "  0123456789abcde \n\n");
    let (ok, out) = c
        .b
        .conf(PROXY)
        .conf(&format!("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19003 secret={}", short.display()))
        .configtest();
    assert!(!ok, "a 15-byte secret was accepted:\n{out}");
    assert!(out.contains("ProxyReversed"), "{out}");
    let low = out.to_lowercase();
    assert!(["16", "short", "at least"].iter().any(|k| low.contains(k)), "no reason given:\n{out}");
    assert!(!out.contains("0123456789abcde"), "the error leaks the secret:\n{out}");
}

#[test]
fn secret_of_16_bytes_after_trimming_passes() {
    let c = case();
    let ok16 = c.b.secret("ok16", "\n  0123456789abcdef  \n");
    let (ok, out) =
        c.b.conf(PROXY)
            .conf(&format!("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19003 secret={}", ok16.display()))
            .configtest();
    assert!(ok, "a 16-byte secret was rejected:\n{out}");
}

#[test]
fn wildcard_address_needs_secret_or_auth_none() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 0.0.0.0:19000-19003", &["secret", "auth=none"]);
}

#[test]
fn loopback_address_needs_secret_or_auth_none_too() {
    // Secure by default: no unauthenticated dialer without the explicit opt-out,
    // whatever the listen address.
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19003", &["no secret", "auth=none"]);
}

#[test]
fn non_loopback_address_needs_secret_or_auth_none() {
    must_fail("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 10.1.2.3:19000-19003 wait=1s", &["secret", "auth=none"]);
}

#[test]
fn unknown_key() {
    let (ok, out) = run("ProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19000-19003 secret={S} frobnicate=7");
    assert!(!ok, "an unknown key was accepted:\n{out}");
    assert!(out.contains("ProxyReversed"), "{out}");
    assert!(out.contains("frobnicate"), "the error does not name the unknown key:\n{out}");
    let low = out.to_lowercase();
    assert!(
        ["unknown", "unrecognized", "unrecognised", "invalid", "unsupported"].iter().any(|k| low.contains(k)),
        "no reason given:\n{out}"
    );
}

#[test]
fn worker_url_without_worker() {
    let (ok, out) = run("ProxyReversed app9 \"ajp://127.0.0.9:1/\" 127.0.0.1:19000-19003 secret={S}");
    assert!(!ok, "a worker-url that matches no worker was accepted:\n{out}");
    assert!(out.contains("ProxyReversed"), "{out}");
    assert!(out.contains("app9"), "the error does not name the node:\n{out}");
    let low = out.to_lowercase();
    assert!(["worker", "proxypass", "balancermember"].iter().any(|k| low.contains(k)), "no reason given:\n{out}");
}

#[test]
fn mcmp_directives() {
    must_pass(
        "ProxyReversedMCMP 127.0.0.1:19100-19199 ports=4 balancer=web-cluster secret={S} allow=10.0.0.0/8 wait=1s maxidle=8 nodes=8 tls=required\n\
         ProxyReversedNodeSecret node1 {S}\n",
    );
    must_pass("ProxyReversedMCMP 0.0.0.0:19100-19109\nProxyReversedNodeSecret app.1 {S}\n");
    let cases: &[(&str, &[&str])] = &[
        ("ProxyReversedMCMP\n", &["expects"]),
        ("ProxyReversedMCMP 127.0.0.1:19100\nProxyReversedMCMP 127.0.0.1:19200\n", &["only once"]),
        ("ProxyReversedMCMP 127.0.0.1:80-90\n", &["below 1024"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19103 ports=5\n", &["ports=5"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199 nodes=0\n", &["nodes=0"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199 auth=none\n", &["always authenticate"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199 color=red\n", &["unknown parameter"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199 tls=maybe\n", &["tls=maybe", "Type=https"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199 balancer=Bad/Name\n", &["balancer=Bad/Name"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199 secret=/nonexistent/file\n", &["cannot read secret file"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199\nProxyReversedNodeSecret node1\n", &["expects <JVMRoute>"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199\nProxyReversedNodeSecret bad/route {S}\n", &["not a usable JVMRoute"]),
        ("ProxyReversedMCMP 127.0.0.1:19100-19199\nProxyReversedNodeSecret n1 {S}\nProxyReversedNodeSecret n1 {S}\n", &["has a secret already"]),
        ("ProxyReversedNodeSecret n1 {S}\n", &["ProxyReversedMCMP is not"]),
        (
            "ProxyReversedMCMP 127.0.0.1:19100-19199\nProxyReversed app1 \"ajp://127.0.0.2:1/\" 127.0.0.1:19150-19151 secret={S}\n",
            &["overlaps"],
        ),
    ];
    for (lines, reasons) in cases {
        must_fail(lines, reasons);
    }
}
