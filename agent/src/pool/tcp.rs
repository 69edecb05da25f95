//! The TCP options of every link (`--keepalive`, `--user-timeout`).

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// TCP settings of every link: keepalive probes keep a NAT's or firewall's
/// state of an idle flow alive, and the user timeout bounds how long written
/// data may stay unacknowledged before the kernel gives the connection up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOpts {
    /// (idle time before the first probe, interval between probes, probes); None: off.
    pub keepalive: Option<(Duration, Duration, u32)>,
    /// None: the kernel's default.
    pub user_timeout: Option<Duration>,
}

impl Default for TcpOpts {
    fn default() -> Self {
        TcpOpts {
            keepalive: Some((Duration::from_secs(60), Duration::from_secs(10), 3)),
            user_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl TcpOpts {
    /// Parses `IDLE,INTERVAL,COUNT` (seconds, seconds, probes) or `off`.
    pub fn parse_keepalive(s: &str) -> Result<Option<(Duration, Duration, u32)>, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || {
            format!("invalid keepalive {s:?}: expected IDLE,INTERVAL,COUNT in seconds, seconds and probes (e.g. 60,10,3) or off")
        };
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [a, b, c] = parts[..] else { return Err(bad()) };
        let secs = |x: &str| x.parse::<u64>().ok().filter(|n| (1..=32767).contains(n)).map(Duration::from_secs);
        match (secs(a), secs(b), c.parse::<u32>().ok().filter(|n| (1..=127).contains(n))) {
            (Some(i), Some(v), Some(n)) => Ok(Some((i, v, n))),
            _ => Err(bad()),
        }
    }
}

pub(super) fn set_sockopts(s: &TcpStream, tcp: &TcpOpts) -> io::Result<()> {
    s.set_nodelay(true)?;
    let sock = socket2::SockRef::from(s);
    if let Some((idle, interval, count)) = tcp.keepalive {
        let ka = socket2::TcpKeepalive::new().with_time(idle).with_interval(interval).with_retries(count);
        sock.set_tcp_keepalive(&ka)?;
    }
    if let Some(t) = tcp.user_timeout {
        sock.set_tcp_user_timeout(Some(t))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_flag_parses() {
        assert_eq!(
            TcpOpts::parse_keepalive("60,10,3").unwrap(),
            Some((Duration::from_secs(60), Duration::from_secs(10), 3))
        );
        assert_eq!(TcpOpts::parse_keepalive("off").unwrap(), None);
        for bad in ["60,10", "0,10,3", "60,10,0", "a,b,c", "60,10,3,1"] {
            assert!(TcpOpts::parse_keepalive(bad).unwrap_err().contains("IDLE,INTERVAL,COUNT"), "{bad}");
        }
    }
}
