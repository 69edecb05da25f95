//! Services of the C shim to Rust (bindgen of c-shim/shim.h): the error log
//! and the per-process worker table. Bottom layer: imports nothing of the crate.
#![allow(unsafe_code)]

#[cfg(not(test))]
use std::ffi::c_int;

#[allow(non_camel_case_types, non_upper_case_globals, dead_code)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/shim_bindings.rs"));
}

pub use sys::prx_log_level as Level;

// ---------------------------------------------------------------------------
// Services of the C shim
// ---------------------------------------------------------------------------

/// Writes one line to httpd's error log (stderr in unit tests).
pub fn log(level: Level, file: &str, line: u32, msg: &str) {
    #[cfg(not(test))]
    {
        let c = std::ffi::CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
        let f = std::ffi::CString::new(file).unwrap_or_default();
        // SAFETY: prx_log copies both NUL-terminated strings into the log line
        // and keeps no pointer (httpd prints the file name only during the call).
        unsafe { sys::prx_log(level as c_int, f.as_ptr(), line.min(i32::MAX as u32) as c_int, c.as_ptr()) }
    }
    #[cfg(test)]
    eprintln!("[{:?}] {file}:{line} {msg}", level);
}

pub fn log_enabled(level: Level) -> bool {
    #[cfg(not(test))]
    {
        // SAFETY: reads httpd's log configuration only.
        unsafe { sys::prx_log_enabled(level as c_int) != 0 }
    }
    #[cfg(test)]
    {
        let _ = level;
        true
    }
}

/// Tells the shim that node `node` has an idle connection in this child.
pub fn node_ready(node: usize) {
    #[cfg(not(test))]
    // SAFETY: the shim only walks its per-process worker table, built in child_init and never freed before exit.
    unsafe {
        sys::prx_node_ready(node as c_int)
    }
    #[cfg(test)]
    let _ = node;
}
