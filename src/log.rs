//! Logging into httpd's error log, under `LogLevel proxy_reversed:<level>`.

use crate::ffi::{self, Level};

pub fn error(msg: &str) {
    ffi::log(Level::PRX_LOG_ERR, msg)
}

pub fn warn(msg: &str) {
    ffi::log(Level::PRX_LOG_WARNING, msg)
}

/// Info and debug messages are formatted only when they will be written.
pub fn info(f: impl FnOnce() -> String) {
    if ffi::log_enabled(Level::PRX_LOG_INFO) {
        ffi::log(Level::PRX_LOG_INFO, &f())
    }
}

pub fn debug(f: impl FnOnce() -> String) {
    if ffi::log_enabled(Level::PRX_LOG_DEBUG) {
        ffi::log(Level::PRX_LOG_DEBUG, &f())
    }
}
