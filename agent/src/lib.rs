//! reversed-agent's modules as a library: the binary (main.rs) is built on
//! it, and the fuzz targets (fuzz/) reach the AJP13 and HTTP/1.1 codecs and
//! the responder through it.

#![deny(unsafe_code)]

#[macro_use]
pub mod logging;
pub mod ajp;
pub mod handshake;
pub mod http1;
pub mod mcmp;
pub mod metrics;
pub mod pool;
pub mod responder;
pub mod splice;
pub mod tls;
