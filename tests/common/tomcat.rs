//! Debian's tomcat10 with only reversed connectors: the in-Tomcat connector
//! of `tomcat-connector/` (its jar in a private CATALINA_BASE's lib/), so that
//! Tomcat dials httpd itself and listens on nothing but its shutdown port.

use super::*;

/// The connector jar (`make tomcat-connector`); built here once if missing.
pub fn connector_jar() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let jar = workspace_dir().join("target/tomcat-connector/mod_proxy_reversed-tomcat.jar");
            let out = Command::new("make")
                .arg("-C")
                .arg(workspace_dir())
                .arg("--no-print-directory")
                .arg("tomcat-connector")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run make: {e}"))?;
            if !out.status.success() || !jar.exists() {
                return Err(format!(
                    "`make tomcat-connector` failed (needs javac: default-jdk-headless):\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(jar)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub const AJP_PROTOCOL: &str = "org.proxyreversed.tomcat.ReversedAjpProtocol";
pub const HTTP_PROTOCOL: &str = "org.proxyreversed.tomcat.ReversedHttp11Protocol";

/// One reversed `<Connector>` of server.xml.
#[derive(Clone, Debug)]
pub struct Conn {
    pub protocol: &'static str,
    pub attrs: Vec<(String, String)>,
}

impl Conn {
    /// A connector for `node` (scheme ajp or http) dialling its range on
    /// 127.0.0.1 with `secret`.
    pub fn for_node(node: &RNode, secret: &Path) -> Conn {
        let protocol = if node.scheme == "ajp" { AJP_PROTOCOL } else { HTTP_PROTOCOL };
        let mut c = Conn { protocol, attrs: Vec::new() };
        c = c
            .attr("node", &node.name)
            .attr("secretFile", &secret.display().to_string())
            .attr("address", "127.0.0.1")
            .attr("port", &node.first.to_string())
            .attr("ports", &(node.last - node.first + 1).to_string())
            .attr("idleConnections", "8")
            .attr("maxBackoff", "1000");
        if node.scheme == "ajp" {
            c = c.attr("secretRequired", "false");
        }
        c
    }
    pub fn attr(mut self, k: &str, v: &str) -> Conn {
        self.attrs.retain(|(a, _)| a != k);
        self.attrs.push((k.to_string(), v.to_string()));
        self
    }
    pub fn xml(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
        let mut s = format!("    <Connector protocol=\"{}\"", self.protocol);
        for (k, v) in &self.attrs {
            s.push_str(&format!("\n               {}=\"{}\"", k, esc(v)));
        }
        s.push_str(" />\n");
        s
    }
}

/// JSP that echoes the request body (for the 10 MB POSTs). It reads the
/// whole body before answering: a client that sends its whole body before
/// reading (ureq) would otherwise deadlock against an echo that streams.
pub const ECHO_JSP: &str =
    "<%@ page session=\"false\" contentType=\"application/octet-stream\" trimDirectiveWhitespaces=\"true\" %><%\n\
java.io.InputStream in = request.getInputStream();\n\
java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();\n\
byte[] b = new byte[65536];\n\
for (int n; (n = in.read(b)) > 0; ) { all.write(b, 0, n); }\n\
response.setContentLength(all.size());\n\
java.io.OutputStream o = response.getOutputStream();\n\
all.writeTo(o);\n\
%>";

/// JSP that sleeps `?ms=N` milliseconds, then answers "slept N".
pub const SLEEP_JSP: &str =
    "<%@ page session=\"false\" contentType=\"text/plain\" trimDirectiveWhitespaces=\"true\" %><%\n\
long ms = Long.parseLong(request.getParameter(\"ms\"));\n\
Thread.sleep(ms);\n\
%>slept <%= ms %>";

/// Tomcat (catalina.sh run) in a private CATALINA_BASE whose only
/// connectors are reversed ones. Stopped (SIGTERM, then SIGKILL) on drop.
pub struct ReversedTomcat {
    child: Option<Child>,
    pub shutdown_port: u16,
    starts: u32,
    dir: TempDir,
}

impl ReversedTomcat {
    /// Writes the base and starts Tomcat; returns once the log says the
    /// server started (≤ 60 s).
    pub fn start(connectors: &[Conn]) -> ReversedTomcat {
        let dir = TempDir::new("rtomcat");
        let base = dir.path();
        fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["conf", "logs", "temp", "work", "lib", "webapps/ROOT"] {
            fs::create_dir_all(base.join(sub)).unwrap();
        }
        fs::copy(connector_jar(), base.join("lib/mod_proxy_reversed-tomcat.jar")).unwrap();
        let shutdown_port = free_port();
        let conns: String = connectors.iter().map(Conn::xml).collect();
        let server_xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="{shutdown_port}" address="127.0.0.1" shutdown="SHUTDOWN-{shutdown_port}">
  <Service name="Catalina">
{conns}    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#
        );
        fs::write(base.join("conf/server.xml"), server_xml).unwrap();
        copy_tomcat_conf(base);
        let root = base.join("webapps/ROOT");
        fs::write(root.join("hello.txt"), TOMCAT_HELLO_TXT).unwrap();
        fs::write(
            root.join("hello.jsp"),
            "<%@ page contentType=\"text/plain\" %>answer=<%= 6*7 %> method=<%= request.getMethod() %>\n",
        )
        .unwrap();
        fs::write(root.join("echo.jsp"), ECHO_JSP).unwrap();
        fs::write(root.join("sleep.jsp"), SLEEP_JSP).unwrap();
        let mut t = ReversedTomcat { child: None, shutdown_port, starts: 0, dir };
        t.start_again();
        t
    }

    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// Starts Tomcat (again) on the same base; waits for "Server startup".
    pub fn start_again(&mut self) {
        self.spawn();
        let n = self.starts;
        let ok = wait_until(Duration::from_secs(60), || self.startups() >= n || !self.is_running());
        assert!(self.is_running(), "tomcat exited during start-up:\n{}", tail(&self.log(), 8000));
        assert!(ok, "tomcat did not start within 60 s:\n{}", tail(&self.log(), 8000));
    }

    /// Spawns catalina.sh run without waiting.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "tomcat is running already");
        let base = self.dir.path();
        let out = fs::OpenOptions::new().create(true).append(true).open(base.join("logs/console.log")).unwrap();
        let child = Command::new(Path::new(TOMCAT_HOME).join("bin/catalina.sh"))
            .arg("run")
            .env("CATALINA_HOME", TOMCAT_HOME)
            .env("CATALINA_BASE", base)
            .env("CATALINA_TMPDIR", base.join("temp"))
            .env("JAVA_HOME", java_home())
            .env("CATALINA_OPTS", "-Xmx256m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start catalina.sh run");
        self.child = Some(child);
        self.starts += 1;
    }

    /// "Server startup in" lines in the console log so far.
    pub fn startups(&self) -> u32 {
        self.console().matches("Server startup in").count() as u32
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// Stops Tomcat (SIGTERM: Tomcat's orderly stop; SIGKILL after 15 s).
    /// Returns how long it took.
    pub fn stop(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(15));
        }
        t.elapsed()
    }

    pub fn console(&self) -> String {
        read_lossy(&self.dir.path().join("logs/console.log"))
    }

    /// Console log plus every other file in logs/.
    pub fn log(&self) -> String {
        let mut s = self.console();
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

    /// TCP ports Tomcat's JVM listens on (from /proc: its socket inodes
    /// matched against /proc/net/tcp{,6} LISTEN entries).
    pub fn listening_ports(&self) -> Vec<u16> {
        let pid = self.pid();
        let mut inodes = std::collections::HashSet::new();
        if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in rd.flatten() {
                if let Ok(l) = fs::read_link(e.path()) {
                    let l = l.to_string_lossy().to_string();
                    if let Some(i) = l.strip_prefix("socket:[").and_then(|x| x.strip_suffix(']')) {
                        inodes.insert(i.to_string());
                    }
                }
            }
        }
        let mut ports = Vec::new();
        for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in read_lossy(Path::new(f)).lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                    if let Some(p) = cols[1].rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()) {
                        ports.push(p);
                    }
                }
            }
        }
        ports.sort();
        ports.dedup();
        ports
    }
}

/// JAVA_HOME of /usr/bin/java (through the alternatives links).
fn java_home() -> PathBuf {
    let real = fs::canonicalize("/usr/bin/java").unwrap_or_else(|_| PathBuf::from("/usr/bin/java"));
    real.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/usr"))
}

impl Drop for ReversedTomcat {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || verbose() {
            eprintln!("=== reversed tomcat log tail ===\n{}", tail(&self.log(), 12000));
        }
    }
}
