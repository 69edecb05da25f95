//! Logging into httpd's error log, under `LogLevel proxy_reversed:<level>`.
//!
//! Every line starts with a stable message id, `PRXnnnn: ` (as httpd's
//! `AHnnnnn`), so that operators can match on it across versions: ids 1-999
//! come from the Rust core, 1000 and up from the C shim. A line carries the
//! Rust file and line that logged it (`#[track_caller]`), not the shim's.

use std::panic::Location;

use crate::shim::{self, Level};

fn write(level: Level, at: &Location<'_>, id: u16, msg: &str) {
    shim::log(level, at.file(), at.line(), &format!("PRX{id:04}: {msg}"))
}

#[track_caller]
pub fn error(id: u16, msg: &str) {
    write(Level::PRX_LOG_ERR, Location::caller(), id, msg)
}

#[track_caller]
pub fn warn(id: u16, msg: &str) {
    write(Level::PRX_LOG_WARNING, Location::caller(), id, msg)
}

/// Info and debug messages are formatted only when they will be written.
#[track_caller]
pub fn info(id: u16, f: impl FnOnce() -> String) {
    if shim::log_enabled(Level::PRX_LOG_INFO) {
        write(Level::PRX_LOG_INFO, Location::caller(), id, &f())
    }
}

#[track_caller]
pub fn debug(id: u16, f: impl FnOnce() -> String) {
    if shim::log_enabled(Level::PRX_LOG_DEBUG) {
        write(Level::PRX_LOG_DEBUG, Location::caller(), id, &f())
    }
}
