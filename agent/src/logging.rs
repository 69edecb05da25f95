//! The agent's log: one line per event on stderr through `tracing`
//! (tracing-subscriber's fmt layer), as text (`TIMESTAMP LEVEL message
//! node=NAME`) or, with `--log-format json`, one JSON object per line
//! (`timestamp`, `level`, `message`, `node`, and `peer` on events about one
//! connection's far end: the httpd address a link dials). The level can
//! change at run time (SIGHUP). Call sites use the crate's
//! `error!`/`warn!`/`info!`/`debug!`, or `warn_peer!(peer, ...)` and its
//! siblings for an event about a peer.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }
    fn filter(self) -> LevelFilter {
        match self {
            Level::Error => LevelFilter::ERROR,
            Level::Warn => LevelFilter::WARN,
            Level::Info => LevelFilter::INFO,
            Level::Debug => LevelFilter::DEBUG,
        }
    }
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static NODE: OnceLock<String> = OnceLock::new();
type Handle = reload::Handle<LevelFilter, tracing_subscriber::Registry>;
static RELOAD: OnceLock<Handle> = OnceLock::new();

/// Installs the subscriber (once; later calls only set the level). Without
/// it (unit tests) events go nowhere.
pub fn init(level: Level, format: Format, node: &str) {
    let _ = NODE.set(node.to_string());
    set_level(level);
    if RELOAD.get().is_some() {
        return;
    }
    let (filter, handle) = reload::Layer::new(level.filter());
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        Format::Text => tracing_subscriber::registry().with(filter).with(fmt).try_init(),
        Format::Json => tracing_subscriber::registry().with(filter).with(fmt.json().flatten_event(true)).try_init(),
    };
    if installed.is_ok() {
        let _ = RELOAD.set(handle);
    }
}

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
    if let Some(h) = RELOAD.get() {
        let _ = h.modify(|f| *f = l.filter());
    }
}

pub fn enabled(l: Level) -> bool {
    l as u8 <= LEVEL.load(Ordering::Relaxed)
}

pub fn write(l: Level, args: fmt::Arguments<'_>) {
    let node = NODE.get().map(String::as_str).unwrap_or("");
    match l {
        Level::Error => tracing::error!(node, "{}", args),
        Level::Warn => tracing::warn!(node, "{}", args),
        Level::Info => tracing::info!(node, "{}", args),
        Level::Debug => tracing::debug!(node, "{}", args),
    }
}

/// An event about one peer (`host:port`): the address is a field of its own
/// (`peer`), so that log pipelines need not parse it out of the message.
pub fn write_peer(l: Level, peer: &dyn fmt::Display, args: fmt::Arguments<'_>) {
    let node = NODE.get().map(String::as_str).unwrap_or("");
    match l {
        Level::Error => tracing::error!(node, peer = %peer, "{}", args),
        Level::Warn => tracing::warn!(node, peer = %peer, "{}", args),
        Level::Info => tracing::info!(node, peer = %peer, "{}", args),
        Level::Debug => tracing::debug!(node, peer = %peer, "{}", args),
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! log_peer_at {
    ($lvl:expr, $peer:expr, $($t:tt)*) => {
        if $crate::logging::enabled($lvl) {
            $crate::logging::write_peer($lvl, &$peer, format_args!($($t)*))
        }
    };
}
#[macro_export]
macro_rules! error_peer { ($p:expr, $($t:tt)*) => { $crate::log_peer_at!($crate::logging::Level::Error, $p, $($t)*) }; }
#[macro_export]
macro_rules! warn_peer { ($p:expr, $($t:tt)*) => { $crate::log_peer_at!($crate::logging::Level::Warn, $p, $($t)*) }; }
#[macro_export]
macro_rules! info_peer { ($p:expr, $($t:tt)*) => { $crate::log_peer_at!($crate::logging::Level::Info, $p, $($t)*) }; }
#[macro_export]
macro_rules! debug_peer { ($p:expr, $($t:tt)*) => { $crate::log_peer_at!($crate::logging::Level::Debug, $p, $($t)*) }; }

#[doc(hidden)]
#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $($t:tt)*) => {
        if $crate::logging::enabled($lvl) {
            $crate::logging::write($lvl, format_args!($($t)*))
        }
    };
}
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log_at!($crate::logging::Level::Error, $($t)*) }; }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log_at!($crate::logging::Level::Warn, $($t)*) }; }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log_at!($crate::logging::Level::Info, $($t)*) }; }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log_at!($crate::logging::Level::Debug, $($t)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_formats_parse() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("trace"), None);
        assert_eq!(Format::parse("JSON"), Some(Format::Json));
        assert_eq!(Format::parse("xml"), None);
        set_level(Level::Warn);
        assert!(enabled(Level::Error) && enabled(Level::Warn) && !enabled(Level::Info));
        set_level(Level::Info);
    }
}
