//! `reversed-agent --check-config FILE`: the real binary checks a TOML file
//! (and the secret file it names) without dialling anything: exit 0 and a
//! summary for a valid file, exit 2 and a message naming the key otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agent-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reversed-agent"))
        .arg("--check-config")
        .arg(file)
        .args(extra)
        .output()
        .expect("reversed-agent runs")
}

#[test]
fn check_config_accepts_a_valid_file_and_names_what_is_wrong() {
    let d = dir("cfg");
    let secret = d.join("secret");
    std::fs::write(&secret, "check-config secret 0123456789").unwrap();
    let cfg = d.join("agent.toml");
    let body = format!(
        "node = \"app1\"\nsecret_file = \"{}\"\nfrontends = [\"127.0.0.1:9000-9003\", \"127.0.0.2:9000\"]\n\
         idle = 4\nbackend = \"127.0.0.1:8009\"\nmetrics_listen = \"127.0.0.1:9464\"\n",
        secret.display()
    );
    std::fs::write(&cfg, &body).unwrap();
    let o = check(&cfg, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out} {}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("OK: node app1, 2 front ends (127.0.0.1:9000-9003, 127.0.0.2:9000), 4 idle connections each, metrics on 127.0.0.1:9464"),
        "{out}"
    );
    // Flags still go over the file.
    let o = check(&cfg, &["--idle", "7"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("7 idle connections each"));

    // A misspelt key is named.
    std::fs::write(&cfg, body.replace("idle = 4", "idel = 4")).unwrap();
    let o = check(&cfg, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown field `idel`"), "{err}");
    // A value out of range, naming the setting.
    std::fs::write(&cfg, body.replace("idle = 4", "idle = 0")).unwrap();
    let err = String::from_utf8_lossy(&check(&cfg, &[]).stderr).into_owned();
    assert!(err.contains("--idle must be between 1 and"), "{err}");
    // A bad metrics address.
    std::fs::write(&cfg, body.replace("127.0.0.1:9464", "localhost")).unwrap();
    let err = String::from_utf8_lossy(&check(&cfg, &[]).stderr).into_owned();
    assert!(err.contains("invalid --metrics-listen \"localhost\""), "{err}");
    // The secret file it names must be readable and long enough.
    std::fs::write(&cfg, &body).unwrap();
    std::fs::write(&secret, "short").unwrap();
    let o = check(&cfg, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("secret"), "{}", String::from_utf8_lossy(&o.stderr));
    // A missing file.
    let o = check(&d.join("nope.toml"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read config file"));
    std::fs::remove_dir_all(&d).unwrap();
}
