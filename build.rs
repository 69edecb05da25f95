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
    for (tool, args) in [
        ("apr-1-config", &["--includes", "--cppflags"][..]),
        ("apu-1-config", &["--includes"][..]),
    ] {
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

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let shim_dir = manifest.join("c-shim");
    for f in ["mod_proxy_reversed.c", "cluster.c", "cluster.h", "shim.h", "rust_api.h"] {
        println!("cargo:rerun-if-changed=c-shim/{f}");
    }
    println!("cargo:rerun-if-env-changed=APXS");

    let (includes, defines) = httpd_flags();

    let mut cc = cc::Build::new();
    cc.file(shim_dir.join("mod_proxy_reversed.c"))
        .file(shim_dir.join("cluster.c"))
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
    bindings
        .write_to_file(out.join("shim_bindings.rs"))
        .expect("writing the bindings");

    // A cdylib exports only Rust's #[no_mangle] items: a second version script
    // adds the module structure defined in C, and -u keeps its object linked.
    let map = out.join("export.map");
    std::fs::write(&map, "{ global: proxy_reversed_module; };\n").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-u,proxy_reversed_module");
    // httpd, APR and mod_proxy resolve their own symbols when the module is loaded.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--allow-shlib-undefined");
}
