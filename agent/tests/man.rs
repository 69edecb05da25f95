//! The manual page is generated from the flags themselves (`--man`): every
//! flag of `--help` is in it, and `man` renders it without warnings.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reversed-agent"))
}

#[test]
fn man_page_documents_every_flag() {
    let out = agent().arg("--man").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH reversed-agent 1"), "not a roff manual page:\n{}", &page[..page.len().min(400)]);
    let help = String::from_utf8(agent().arg("--help").output().unwrap().stdout).unwrap();
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .collect();
    assert!(flags.len() >= 20, "{flags:?}");
    for f in flags {
        // roff escapes every '-' as '\-'.
        assert!(page.contains(&f.replace('-', "\\-")), "{f} is not in the manual page");
    }
    // Rendered by man itself (groff), when it is installed: no warnings.
    if std::path::Path::new("/usr/bin/man").exists() && std::path::Path::new("/usr/bin/groff").exists() {
        let dir = std::env::temp_dir().join(format!("man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("reversed-agent.1");
        std::fs::write(&file, &page).unwrap();
        let r = Command::new("man").arg("--warnings").arg("-l").arg(&file).env("MANWIDTH", "100").output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(r.status.success(), "man failed: {}", String::from_utf8_lossy(&r.stderr));
        assert!(String::from_utf8_lossy(&r.stdout).contains("--metrics-listen"), "the rendered page lacks the flags");
    }
}
