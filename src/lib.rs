//! mod_proxy_reversed: mod_proxy over backend-initiated connections.
//!
//! The C shim (c-shim/) owns the httpd module and every httpd struct; this
//! crate owns the logic behind the narrow API of c-shim/rust_api.h:
//! configuration (`config`), the per-child listeners, handshake and
//! connection pools (`child`), and the shared status table (`stats`).
//! All `unsafe` code is in `ffi`.

mod api;
mod child;
mod config;
mod ffi;
mod liveness;
mod log;
mod mcmp;
mod registry;
mod stats;
