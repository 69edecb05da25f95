//! Liveness of reversed links: the settings (`ProxyReversedLiveness` and the
//! same keys on `ProxyReversed` / `ProxyReversedMCMP`), the TCP options that
//! keep a middlebox's state of an idle flow alive, and the ping exchange a
//! request thread runs before it uses an idle link.
//!
//! Why: a NAT or stateful firewall between the backend and httpd forgets idle
//! flows (AWS NAT gateway after 350 s, Azure after 4 min, many firewalls after
//! 5-60 min) and then drops their packets without a RST. Without traffic on
//! idle links and without a check before use, such a link looks alive to both
//! ends, and a request written into it waits for the proxy timeout.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reversed_proto::{PingParams, PING, PONG};

use crate::units::parse_duration;

/// Every liveness setting, with its defaults. Durations of zero mean "never"
/// where the key allows `0`/`off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Interval of the PINGs on idle links; None: no pings (as version 1).
    pub ping: Option<Duration>,
    /// How long a PONG may take, for periodic and pre-use pings.
    pub ping_timeout: Duration,
    /// An idle link whose last sign of life is older than this is pinged by
    /// the request thread before it carries a request. None: never.
    pub verify: Option<Duration>,
    /// A link mod_proxy kept after a response is used again only within this
    /// time after that response; later it is closed and a verified idle link
    /// takes its place (such a link belongs to the request protocol and cannot
    /// be pinged). Zero: never reused.
    pub reuse: Duration,
    /// TCP keepalive: (idle time, interval, probes); None: SO_KEEPALIVE off.
    pub keepalive: Option<(Duration, Duration, u32)>,
    /// TCP_USER_TIMEOUT; None: the kernel's default.
    pub user_timeout: Option<Duration>,
    /// Serve dialers of handshake version 1 (no pings, no verification).
    pub v1: bool,
}

pub const DEFAULT: Liveness = Liveness {
    ping: Some(Duration::from_secs(30)),
    ping_timeout: Duration::from_secs(1),
    verify: Some(Duration::ZERO),
    reuse: Duration::from_secs(2),
    keepalive: Some((Duration::from_secs(60), Duration::from_secs(10), 3)),
    user_timeout: Some(Duration::from_secs(30)),
    v1: false,
};

impl Default for Liveness {
    fn default() -> Self {
        DEFAULT
    }
}

/// The keys, for messages.
pub const KEYS: &str = "ping, pingtimeout, verify, reuse, keepalive, usertimeout, v1";

/// Liveness keys as written, before defaults apply: `ProxyReversedLiveness`
/// gives the server-wide defaults, a node's own keys override them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveOpts {
    ping: Option<Option<Duration>>,
    ping_timeout: Option<Duration>,
    verify: Option<Option<Duration>>,
    reuse: Option<Duration>,
    keepalive: Option<Option<(Duration, Duration, u32)>>,
    user_timeout: Option<Option<Duration>>,
    v1: Option<bool>,
}

fn off_or<T>(v: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if v.eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        f(v).map(Some)
    }
}

/// A duration, or `0` for none.
fn duration_or_zero(v: &str) -> Result<Duration, String> {
    if v == "0" || v == "0s" || v == "0ms" {
        Ok(Duration::ZERO)
    } else {
        parse_duration(v)
    }
}

fn keepalive(v: &str) -> Result<(Duration, Duration, u32), String> {
    let bad = || format!("'{v}': expected <idle>,<interval>,<count> (e.g. 60,10,3: seconds, seconds, probes) or off");
    let parts: Vec<&str> = v.split(',').collect();
    let [idle, intvl, count] = parts[..] else { return Err(bad()) };
    let secs =
        |s: &str| parse_duration(s).ok().filter(|d| d.as_secs() >= 1 && d.as_secs() <= 32767 && d.subsec_millis() == 0);
    match (secs(idle), secs(intvl), count.parse::<u32>().ok().filter(|n| (1..=127).contains(n))) {
        (Some(i), Some(t), Some(c)) => Ok((i, t, c)),
        _ => Err(bad()),
    }
}

impl LiveOpts {
    /// Takes one key; Ok(false) if the key is not a liveness key.
    pub fn take(&mut self, k: &str, v: &str) -> Result<bool, String> {
        let ctx = |e: String| format!("{k}={v}: {e}");
        match k {
            "ping" => self.ping = Some(off_or(v, parse_duration).map_err(ctx)?),
            "pingtimeout" => self.ping_timeout = Some(parse_duration(v).map_err(ctx)?),
            "verify" => self.verify = Some(off_or(v, duration_or_zero).map_err(ctx)?),
            "reuse" => self.reuse = Some(duration_or_zero(v).map_err(ctx)?),
            "keepalive" => self.keepalive = Some(off_or(v, keepalive).map_err(ctx)?),
            "usertimeout" => self.user_timeout = Some(off_or(v, parse_duration).map_err(ctx)?),
            "v1" => {
                self.v1 = Some(match v.to_ascii_lowercase().as_str() {
                    "serve" => true,
                    "refuse" => false,
                    _ => return Err(format!("v1={v}: use v1=refuse (the default) or v1=serve")),
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// These keys over `base`, checked as a whole.
    pub fn over(&self, base: &Liveness) -> Result<Liveness, String> {
        let l = Liveness {
            ping: self.ping.unwrap_or(base.ping),
            ping_timeout: self.ping_timeout.unwrap_or(base.ping_timeout),
            verify: self.verify.unwrap_or(base.verify),
            reuse: self.reuse.unwrap_or(base.reuse),
            keepalive: self.keepalive.unwrap_or(base.keepalive),
            user_timeout: self.user_timeout.unwrap_or(base.user_timeout),
            v1: self.v1.unwrap_or(base.v1),
        };
        if let Some(p) = l.ping {
            if l.ping_timeout >= p {
                return Err(format!(
                    "pingtimeout={} ms must be shorter than ping={} ms",
                    l.ping_timeout.as_millis(),
                    p.as_millis()
                ));
            }
            if p < Duration::from_millis(100) {
                return Err(format!("ping={} ms is below the least interval of 100 ms", p.as_millis()));
            }
        }
        Ok(l)
    }

    /// The server-wide defaults (`ProxyReversedLiveness`), over the built-in ones.
    pub fn apply_defaults(&self) -> Result<Liveness, String> {
        self.over(&DEFAULT)
    }
}

impl Liveness {
    /// What a version-2 CHALLENGE announces.
    pub fn params(&self) -> PingParams {
        match self.ping {
            Some(p) => PingParams {
                interval_ms: p.as_millis().min(u32::MAX as u128) as u32,
                timeout_ms: self.ping_timeout.as_millis().min(u32::MAX as u128) as u32,
            },
            None => PingParams::OFF,
        }
    }

    /// Keepalive and user timeout on an accepted link.
    pub fn apply_tcp(&self, s: &TcpStream) -> io::Result<()> {
        let sock = socket2::SockRef::from(s);
        match self.keepalive {
            Some((idle, intvl, count)) => {
                let ka = socket2::TcpKeepalive::new().with_time(idle).with_interval(intvl).with_retries(count);
                sock.set_tcp_keepalive(&ka)?;
            }
            None => sock.set_keepalive(false)?,
        }
        if let Some(t) = self.user_timeout {
            sock.set_tcp_user_timeout(Some(t))?;
        }
        Ok(())
    }
}

/// Sends a PING on an idle link the caller now owns and waits up to
/// `timeout` for its PONG. The link is left blocking with no read timeout.
/// Err says why the link is not usable.
pub fn verify(s: &TcpStream, timeout: Duration) -> Result<(), String> {
    let timeout = timeout.max(Duration::from_millis(1));
    let end = Instant::now() + timeout;
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    let r = (|| {
        (&*s).write_all(&PING).map_err(|e| format!("ping not sent: {e}"))?;
        let mut got = [0u8; 2];
        let mut have = 0;
        while have < got.len() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no pong within {} ms", timeout.as_millis()));
            }
            s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
            match (&*s).read(&mut got[have..]) {
                Ok(0) => return Err("closed by the dialer".into()),
                Ok(n) => have += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("no pong within {} ms", timeout.as_millis()))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read error: {e}")),
            }
        }
        if got != PONG {
            return Err(format!("answered {:02x} {:02x} instead of a pong", got[0], got[1]));
        }
        Ok(())
    })();
    let _ = s.set_read_timeout(None);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> Result<LiveOpts, String> {
        let mut o = LiveOpts::default();
        for (k, v) in kv {
            assert!(o.take(k, v)?, "{k} is a liveness key");
        }
        Ok(o)
    }

    #[test]
    fn keys_defaults_and_overrides() {
        let d = LiveOpts::default().apply_defaults().unwrap();
        assert_eq!(d, DEFAULT);
        assert_eq!(d.params(), PingParams { interval_ms: 30_000, timeout_ms: 1000 });
        let server =
            opts(&[("ping", "10s"), ("keepalive", "30,5,4"), ("v1", "serve")]).unwrap().apply_defaults().unwrap();
        assert_eq!(server.ping, Some(Duration::from_secs(10)));
        assert_eq!(server.keepalive, Some((Duration::from_secs(30), Duration::from_secs(5), 4)));
        assert!(server.v1);
        let node = opts(&[("ping", "off"), ("verify", "off"), ("reuse", "0"), ("usertimeout", "off")])
            .unwrap()
            .over(&server)
            .unwrap();
        assert_eq!((node.ping, node.verify, node.reuse, node.user_timeout), (None, None, Duration::ZERO, None));
        assert_eq!(node.keepalive, server.keepalive, "keys not given keep the server-wide value");
        assert_eq!(node.params(), PingParams::OFF);
        let v = opts(&[("verify", "250ms"), ("pingtimeout", "200ms")]).unwrap().apply_defaults().unwrap();
        assert_eq!((v.verify, v.ping_timeout), (Some(Duration::from_millis(250)), Duration::from_millis(200)));
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut o = LiveOpts::default();
        assert!(!o.take("color", "blue").unwrap());
        for (k, v) in [
            ("ping", "0"),
            ("ping", "soon"),
            ("keepalive", "60,10"),
            ("keepalive", "60,10,0"),
            ("keepalive", "1500ms,1,1"),
            ("v1", "maybe"),
            ("usertimeout", "0"),
        ] {
            let e = o.take(k, v).unwrap_err();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
        let e = opts(&[("ping", "1s"), ("pingtimeout", "1s")]).unwrap().apply_defaults().unwrap_err();
        assert!(e.contains("pingtimeout") && e.contains("shorter"), "{e}");
        assert!(opts(&[("ping", "50ms"), ("pingtimeout", "10ms")])
            .unwrap()
            .apply_defaults()
            .unwrap_err()
            .contains("100 ms"));
    }

    #[test]
    fn verify_round_trip_and_failures() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // A dialer that answers one ping, then one that answers garbage, then one that stays silent.
        let t = std::thread::spawn(move || {
            for answer in [Some(PONG), Some([0x12, 0x34]), None] {
                let mut d = TcpStream::connect(addr).unwrap();
                let mut b = [0u8; 2];
                d.read_exact(&mut b).unwrap();
                assert_eq!(b, PING);
                if let Some(a) = answer {
                    d.write_all(&a).unwrap();
                }
                let _ = d.read(&mut b); // until httpd closes
            }
        });
        for want_ok in [true, false, false] {
            let (s, _) = l.accept().unwrap();
            s.set_nonblocking(true).unwrap();
            let t0 = Instant::now();
            let r = verify(&s, Duration::from_millis(300));
            assert_eq!(r.is_ok(), want_ok, "{r:?}");
            assert!(t0.elapsed() < Duration::from_millis(1000));
            assert_eq!(s.read_timeout().unwrap(), None);
        }
        t.join().unwrap();
    }
}
