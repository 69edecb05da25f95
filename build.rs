//! Builds the C shim of mod_proxy_reversed against the httpd and APR headers
//! of this machine (as `apxs -q` and `apr-1-config` report them), generates the
//! Rust bindings of the shim's header with bindgen, and exports the
//! `proxy_reversed_module` symbol that `LoadModule` looks up.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Runs a `*-config`-style query; None when the tool is missing or fails.
fn query(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn apxs() -> String {
    env::var("APXS").unwrap_or_else(|_| "apxs".to_string())
}

/// Include directories and preprocessor definitions for httpd + APR + APR-util.
fn httpd_flags() -> (Vec<PathBuf>, Vec<String>) {
    let apxs = apxs();
    let mut includes = Vec::new();
    let mut defines = Vec::new();
    let httpd_inc = query(&apxs, &["-q", "INCLUDEDIR"]).unwrap_or_else(|| {
        println!("cargo:warning=apxs not found (install apache2-dev); assuming /usr/include/apache2");
        "/usr/include/apache2".into()
    });
    includes.push(PathBuf::from(httpd_inc));
    let mut flag_words = Vec::new();
    for (tool, args) in [("apr-1-config", &["--includes", "--cppflags"][..]), ("apu-1-config", &["--includes"][..])] {
        if let Some(out) = query(tool, args) {
            flag_words.extend(out.split_whitespace().map(str::to_string));
        }
    }
    if let Some(out) = query(&apxs, &["-q", "EXTRA_CPPFLAGS"]) {
        flag_words.extend(out.split_whitespace().map(str::to_string));
    }
    for w in flag_words {
        if let Some(dir) = w.strip_prefix("-I") {
            let p = PathBuf::from(dir);
            if !includes.contains(&p) {
                includes.push(p);
            }
        } else if let Some(def) = w.strip_prefix("-D") {
            if !defines.iter().any(|d| d == def) {
                defines.push(def.to_string());
            }
        }
    }
    if !includes.iter().any(|p| p.join("apr.h").exists()) {
        includes.push(PathBuf::from("/usr/include/apr-1.0"));
    }
    (includes, defines)
}

/// Removes /* */ and // comments.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `name(params)` pairs after each `marker` (params between the parentheses),
/// as (name, number of parameters).
fn functions(text: &str, marker: &str) -> Vec<(String, usize)> {
    let mut v = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let Some(open) = rest.find('(') else { break };
        let name =
            rest[..open].trim().rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("").to_string();
        let Some(close) = rest[open..].find(')') else { break };
        let params = rest[open + 1..open + close].trim();
        let n = if params.is_empty() || params == "void" { 0 } else { params.trim_end_matches(',').split(',').count() };
        if name.starts_with("prx_") {
            v.push((name, n));
        }
        rest = &rest[open + close..];
    }
    v.sort();
    v
}

/// c-shim/rust_api.h declares exactly the functions src/exports.rs exports,
/// with the same number of parameters: the build fails naming any drift.
fn check_api_in_step(manifest: &std::path::Path) {
    let header: String = strip_comments(&std::fs::read_to_string(manifest.join("c-shim/rust_api.h")).unwrap())
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    // Every declaration in the header is a function returning something and ending in ");".
    let mut declared = Vec::new();
    for decl in header.split(';') {
        let d = decl.trim();
        if d.contains('{') || d.contains('}') || !d.contains('(') {
            continue;
        }
        declared.extend(functions(&format!(" {d}"), " "));
    }
    declared.sort();
    declared.dedup();
    let rust = std::fs::read_to_string(manifest.join("src/exports.rs")).unwrap();
    let exported = functions(&rust, "pub extern \"C\" fn ");
    if declared != exported {
        let only_h: Vec<_> = declared.iter().filter(|x| !exported.contains(x)).collect();
        let only_rs: Vec<_> = exported.iter().filter(|x| !declared.contains(x)).collect();
        panic!(
            "c-shim/rust_api.h and src/exports.rs are out of step: only in the header (name, parameters) {only_h:?}; only in Rust {only_rs:?}"
        );
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let shim_dir = manifest.join("c-shim");
    for f in ["mod_proxy_reversed.c", "cluster.c", "retained.c", "internal.h", "shim.h", "rust_api.h"] {
        println!("cargo:rerun-if-changed=c-shim/{f}");
    }
    println!("cargo:rerun-if-changed=src/exports.rs");
    check_api_in_step(&manifest);
    println!("cargo:rerun-if-env-changed=APXS");

    let (includes, defines) = httpd_flags();

    let mut cc = cc::Build::new();
    cc.file(shim_dir.join("mod_proxy_reversed.c"))
        .file(shim_dir.join("cluster.c"))
        .file(shim_dir.join("retained.c"))
        .include(&shim_dir)
        .warnings(true)
        .extra_warnings(false)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-fvisibility=hidden");
    for i in &includes {
        cc.include(i);
    }
    for d in &defines {
        match d.split_once('=') {
            Some((k, v)) => cc.define(k, Some(v)),
            None => cc.define(d, None),
        };
    }
    cc.compile("prx_shim");

    // The shim's services to Rust, through bindgen (ints and C strings only).
    let bindings = bindgen::Builder::default()
        .header(shim_dir.join("shim.h").to_string_lossy())
        .allowlist_function("prx_log")
        .allowlist_function("prx_log_enabled")
        .allowlist_function("prx_node_ready")
        .allowlist_type("prx_log_level")
        .rustified_enum("prx_log_level")
        .layout_tests(false)
        .generate()
        .expect("bindgen could not read c-shim/shim.h (is libclang-dev installed?)");
    bindings.write_to_file(out.join("shim_bindings.rs")).expect("writing the bindings");

    // A cdylib exports only Rust's #[no_mangle] items: a second version script
    // adds the module structure defined in C, and -u keeps its object linked.
    let map = out.join("export.map");
    std::fs::write(&map, "{ global: proxy_reversed_module; };\n").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-u,proxy_reversed_module");
    // httpd, APR and mod_proxy resolve their own symbols when the module is loaded.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--allow-shlib-undefined");
}
