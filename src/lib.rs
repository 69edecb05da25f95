//! mod_proxy_reversed: mod_proxy over backend-initiated connections.
//!
//! The C shim (c-shim/) owns the httpd module and every httpd struct; this
//! crate owns the logic behind the narrow API of c-shim/rust_api.h:
//! configuration (`config`), the per-child listeners, handshake and
//! connection pools (`child`), and the shared status table (`stats`).
//! Layers, top to bottom; a module imports only from layers below it
//! (tests/layering.rs checks this on every test run):
//! `exports` (the C API) → `mcmp` (the MCMP receiver) → `api` (process-wide
//! state) → `status` (the status page) → `accept` (accept thread, handshakes,
//! pings) → `child` (per-child queues and handoff) → `registry` (MCMP nodes
//! shared by the children) → `config` → `liveness` → `stats` → `log` →
//! `units` → `shim` (services of the C shim) → `os` (system calls).
//! `unsafe` is allowed only in `exports`, `shim` and `os`.
#![deny(unsafe_code)]

mod accept;
mod api;
mod child;
mod config;
mod exports;
mod liveness;
mod log;
mod mcmp;
mod os;
mod registry;
mod shim;
mod stats;
mod status;
mod units;
