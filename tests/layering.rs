//! The module's source keeps its one-way layering: each module of src/
//! refers (`crate::<module>`) only to modules below it in the order that
//! src/lib.rs documents, and `unsafe` appears only in the FFI/OS modules.
//! (A plain source check: it fails naming the file and the reference.)

use std::fs;
use std::path::Path;

/// Top to bottom, as src/lib.rs states it.
const LAYERS: &[&str] = &[
    "exports", "mcmp", "api", "status", "metrics", "accept", "child", "registry", "config", "liveness", "stats", "log",
    "units", "shim", "os",
];
const UNSAFE_ALLOWED: &[&str] = &["exports", "shim", "os"];

fn layer(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == m)
}

/// The modules a source text names as `crate::<name>`.
fn references(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            v.push(name);
        }
    }
    v
}

#[test]
fn modules_import_only_downwards_and_unsafe_stays_in_ffi() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for e in fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let Some(m) = p.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
        if p.extension().and_then(|x| x.to_str()) != Some("rs") || m == "lib" {
            continue;
        }
        let text = fs::read_to_string(&p).unwrap();
        let Some(mine) = layer(&m) else {
            problems.push(format!("src/{m}.rs is in no layer of tests/layering.rs (and src/lib.rs)"));
            continue;
        };
        seen.push(m.clone());
        for r in references(&text) {
            if r == m || r == "zero_shareable" {
                continue; // its own items, and the crate-root macro of os
            }
            match layer(&r) {
                Some(l) if l > mine => {}
                Some(_) => problems.push(format!("src/{m}.rs refers to crate::{r}, which is not below it")),
                None => problems.push(format!("src/{m}.rs refers to crate::{r}, which is in no layer")),
            }
        }
        let uses_unsafe = text.lines().any(|l| {
            let l = l.trim_start();
            !l.starts_with("//") && (l.contains("unsafe {") || l.contains("unsafe impl") || l.contains("unsafe fn"))
        });
        if uses_unsafe && !UNSAFE_ALLOWED.contains(&m.as_str()) {
            problems.push(format!("src/{m}.rs uses unsafe outside the FFI/OS modules"));
        }
    }
    assert!(seen.len() >= 10, "read only {seen:?}");
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"), "src/lib.rs must deny unsafe code outside the FFI/OS modules");
}
