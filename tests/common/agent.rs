//! reversed-agent processes.
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
// reversed-agent
// ---------------------------------------------------------------------------

static AGENT_SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
    _dir: Option<TempDir>,
    name: String,
}

impl Agent {
    /// Spawns target/debug/reversed-agent with `args`; its stderr (and
    /// stdout) go to a file in `dir` (or in a temp dir of its own).
    pub fn spawn(dir: Option<&Path>, args: &[String]) -> Agent {
        Agent::spawn_in(None, dir, args)
    }
    /// Like `spawn`, inside network namespace `ns` (`ip netns exec`, which
    /// execs in place: the pid is the agent's).
    pub fn spawn_in(ns: Option<&str>, dir: Option<&Path>, args: &[String]) -> Agent {
        let own = if dir.is_none() { Some(TempDir::new("agent")) } else { None };
        let d = dir.map(Path::to_path_buf).unwrap_or_else(|| own.as_ref().unwrap().path().to_path_buf());
        let n = AGENT_SEQ.fetch_add(1, Ordering::SeqCst);
        let log = d.join(format!("agent-{n}.log"));
        let f = fs::File::create(&log).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(agent_path());
                c
            }
            None => Command::new(agent_path()),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .process_group(0)
            .spawn()
            .expect("spawn reversed-agent");
        Agent { child: Some(child), log, _dir: own, name: format!("agent-{n} {}", args.join(" ")) }
    }
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
    /// SIGKILL at once (connections die without any goodbye).
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            signal(pid, libc::SIGKILL);
            let _ = c.wait();
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    /// SIGTERM, wait ≤ 3 s, then SIGKILL.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.take().and_then(|mut c| stop_child(&mut c, Duration::from_secs(3)))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || verbose() {
            eprintln!("=== {} log tail ===\n{}", self.name, tail(&self.log(), 6000));
        }
    }
}

/// Arguments for an agent of `node` dialing `frontends` ("127.0.0.1:P-Q").
pub struct AgentArgs {
    pub node: String,
    pub secret_file: Option<PathBuf>,
    pub frontends: Vec<String>,
    pub idle: Option<u32>,
    pub backend: Option<String>,
    pub respond: bool,
    pub echo: bool,
    pub body_size: Option<usize>,
    pub extra: Vec<String>,
}

impl AgentArgs {
    pub fn respond(node: &str, secret: Option<&Path>, frontend: &str) -> AgentArgs {
        AgentArgs {
            node: node.into(),
            secret_file: secret.map(Path::to_path_buf),
            frontends: vec![frontend.into()],
            idle: Some(8),
            backend: None,
            respond: true,
            echo: false,
            body_size: None,
            extra: Vec::new(),
        }
    }
    pub fn backend(node: &str, secret: Option<&Path>, frontend: &str, backend: &str) -> AgentArgs {
        let mut a = AgentArgs::respond(node, secret, frontend);
        a.respond = false;
        a.backend = Some(backend.into());
        a
    }
    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }
    pub fn idle(mut self, n: u32) -> Self {
        self.idle = Some(n);
        self
    }
    pub fn args(&self) -> Vec<String> {
        let mut v = vec!["--node".to_string(), self.node.clone()];
        match &self.secret_file {
            Some(s) => {
                v.push("--secret-file".into());
                v.push(s.display().to_string());
            }
            None => v.push("--no-auth".into()),
        }
        for f in &self.frontends {
            v.push("--frontend".into());
            v.push(f.clone());
        }
        if let Some(i) = self.idle {
            v.push("--idle".into());
            v.push(i.to_string());
        }
        if let Some(b) = &self.backend {
            v.push("--backend".into());
            v.push(b.clone());
        }
        if self.respond {
            v.push("--respond".into());
            if self.echo {
                v.push("--echo".into());
            }
            if let Some(n) = self.body_size {
                v.push("--body-size".into());
                v.push(n.to_string());
            }
        }
        v.extend(self.extra.iter().cloned());
        v
    }
    pub fn spawn(&self, dir: Option<&Path>) -> Agent {
        Agent::spawn(dir, &self.args())
    }
}
