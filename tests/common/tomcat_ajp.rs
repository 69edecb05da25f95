//! Debian's Tomcat with its ordinary AJP connector (the forward fixture).
#![allow(dead_code, unused_imports)]

use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Tomcat
// ---------------------------------------------------------------------------

/// Whether Tomcat tests can run. Outside CI a missing Tomcat skips them
/// (returns false after a message); in CI (env CI set) it fails.
pub fn tomcat_available() -> bool {
    if Path::new(TOMCAT_HOME).join("bin/catalina.sh").exists() && Path::new("/usr/bin/java").exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{TOMCAT_HOME} (or /usr/bin/java) is missing, and CI is set: install tomcat10");
    }
    eprintln!("SKIPPED: {TOMCAT_HOME} is missing (install tomcat10 to run this test)");
    false
}

pub const TOMCAT_HELLO_TXT: &str = "hello from tomcat via a reversed connection\n";

pub struct Tomcat {
    child: Child,
    pub ajp_port: u16,
    dir: TempDir,
}

impl Tomcat {
    /// A private CATALINA_BASE with only an AJP connector on
    /// 127.0.0.1:`ajp_port` (no secret required), webapps/ROOT holding
    /// hello.txt and hello.jsp; waits ≤ 60 s for the AJP port.
    pub fn start() -> Tomcat {
        Tomcat::start_on(free_port())
    }
    /// Stops this Tomcat (SIGTERM, then SIGKILL) and starts a new one on the
    /// same AJP port; returns it once the port accepts.
    pub fn restart(self) -> Tomcat {
        let port = self.ajp_port;
        drop(self);
        Tomcat::start_on(port)
    }
    /// Stops Tomcat now (the directory stays until drop).
    pub fn stop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
    pub fn start_on(ajp_port: u16) -> Tomcat {
        let dir = TempDir::new("tomcat");
        let base = dir.path();
        fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["conf", "logs", "temp", "work", "webapps/ROOT"] {
            fs::create_dir_all(base.join(sub)).unwrap();
        }
        let server_xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{ajp_port}"
               secretRequired="false" maxThreads="200" connectionTimeout="60000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#
        );
        fs::write(base.join("conf/server.xml"), server_xml).unwrap();
        copy_tomcat_conf(base);
        fs::write(base.join("webapps/ROOT/hello.txt"), TOMCAT_HELLO_TXT).unwrap();
        fs::write(
            base.join("webapps/ROOT/hello.jsp"),
            "<%@ page contentType=\"text/plain\" %>answer=<%= 6*7 %> method=<%= request.getMethod() %>\n",
        )
        .unwrap();
        let out = fs::File::create(base.join("logs/console.log")).unwrap();
        let child = Command::new(Path::new(TOMCAT_HOME).join("bin/catalina.sh"))
            .arg("run")
            .env("CATALINA_HOME", TOMCAT_HOME)
            .env("CATALINA_BASE", base)
            .env("CATALINA_TMPDIR", base.join("temp"))
            .env("JAVA_HOME", java_home())
            .env("CATALINA_OPTS", "-Xmx256m -Xss512k")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start catalina.sh run");
        let mut t = Tomcat { child, ajp_port, dir };
        let ok = wait_until(Duration::from_secs(60), || {
            if let Ok(Some(_)) = t.child.try_wait() {
                return true;
            }
            port_accepts("127.0.0.1", ajp_port)
        });
        if let Ok(Some(st)) = t.child.try_wait() {
            panic!("tomcat exited during start-up ({st}):\n{}", tail(&t.log(), 8000));
        }
        assert!(ok, "tomcat's AJP port {ajp_port} did not open within 60 s:\n{}", tail(&t.log(), 8000));
        t
    }
    pub fn log(&self) -> String {
        let mut s = read_lossy(&self.dir.path().join("logs/console.log"));
        if let Ok(rd) = fs::read_dir(self.dir.path().join("logs")) {
            for e in rd.flatten() {
                if e.file_name() != "console.log" {
                    s.push_str(&format!("\n--- {} ---\n", e.file_name().to_string_lossy()));
                    s.push_str(&read_lossy(&e.path()));
                }
            }
        }
        s
    }
}

fn java_home() -> PathBuf {
    // /usr/bin/java -> /etc/alternatives/java -> /usr/lib/jvm/X/bin/java
    let real = fs::canonicalize("/usr/bin/java").unwrap_or_else(|_| PathBuf::from("/usr/bin/java"));
    real.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/usr"))
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!("=== tomcat log tail ===\n{}", tail(&self.log(), 8000));
        }
    }
}

/// Debian tomcat10's configuration files a private CATALINA_BASE needs beside
/// its own server.xml: web.xml (from CATALINA_HOME/etc or /etc/tomcat10),
/// and catalina.properties, context.xml, logging.properties where present.
pub fn copy_tomcat_conf(base: &Path) {
    let etc_web = [Path::new(TOMCAT_HOME).join("etc/web.xml"), PathBuf::from("/etc/tomcat10/web.xml")];
    let web = etc_web.iter().find(|p| p.exists()).expect("tomcat10 web.xml");
    fs::copy(web, base.join("conf/web.xml")).unwrap();
    for f in ["catalina.properties", "context.xml", "logging.properties"] {
        let src = Path::new(TOMCAT_HOME).join("etc").join(f);
        if src.exists() {
            fs::copy(&src, base.join("conf").join(f)).unwrap();
        }
    }
}
