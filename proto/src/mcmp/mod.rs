//! MCMP, the Mod-Cluster Management Protocol: request bodies, replies and
//! errors, as mod_cluster's Java side sends them and as mod_manager (the httpd
//! module of mod_proxy_cluster) parses and answers them.
//!
//! Shared by the httpd module (parses requests, encodes replies) and
//! `reversed-agent` (encodes requests, parses replies).
//!
//! References (facts read from the sources, no code taken):
//! - `mod_manager.c` = `native/mod_manager/mod_manager.c` of
//!   modcluster/mod_proxy_cluster at 7514efd (HEAD after PR #385). Line
//!   numbers below refer to that file.
//! - `mod_clustersize.h` = `native/include/mod_clustersize.h` (field sizes).
//! - Java: `core/.../mcmp/impl/DefaultMCMPHandler.java` (request framing,
//!   `sendRequest` lines 435-520) and `DefaultMCMPRequestFactory.java`
//!   (parameters, held in a `TreeMap`, so sorted by key) of modcluster/mod_cluster.
//!
//! # Wire form
//! A request is an HTTP/1.1 request whose method is the command
//! (`CONFIG / HTTP/1.1`); the body is `NAME=VALUE` pairs joined by `&`, each
//! name and value through `java.net.URLEncoder.encode(.., "UTF-8")`
//! ([`form_encode`]). Success is HTTP 200 (CONFIG: empty body; STATUS, PING,
//! VERSION, INFO, DUMP and the non-wildcard *-APP commands: a `text/plain`
//! body, see the `*_rsp` functions). An error is HTTP 500 with the status line
//! reason `ERROR` and the headers `Version`, `Type`, `Mess` ([`error_headers`]).
//!
//! # Where this codec deliberately differs from mod_manager
//! Each is documented at the function concerned:
//! - a `%` not followed by two hex digits is rejected (mod_manager keeps it literally);
//! - a NUL (raw or `%00`) and bytes that are not UTF-8 are rejected;
//! - an odd number of `&`/`=`-separated tokens is rejected with `SMESPAR`
//!   (mod_manager reads past its token array for some commands);
//! - `Reversed` also accepts `true`/`1`/`false`/`0`, and rejects anything else;
//! - `Port` must be a decimal number 0-65535;
//! - `Alias`/`Context` lists are split on every `,` (mod_manager's splitter
//!   skips the character after each comma, see [`parse_config`]);
//! - a body longer than [`MAX_BODY`] is rejected (mod_manager truncates it).
//!
//! # Layout
//! - `rules`: mod_manager's parsing rules shared by every command (pairs,
//!   %-decoding, booleans, timeouts, ports, lists) and the field limits;
//! - `body`: the request bodies, each parsed with mod_manager's rules and
//!   encoded as the Java side sends it;
//! - `request`: the Java side's request form (URL encoding, body order,
//!   request target and framing);
//! - `reply`: the reply bodies httpd sends, and the reply parser of the
//!   sending side;
//! - `error`: MCMP errors with mod_manager's `Mess:` texts.
//!
//! Everything public is re-exported here: users name `mcmp::X` only.

use std::fmt;

mod body;
mod error;
mod reply;
mod request;
mod rules;

pub use body::{parse_app, parse_config, parse_ping, parse_status, AppMsg, ConfigMsg, PingMsg, StatusMsg, NO_LOAD};
pub use error::{error_headers, text, Error, ErrorType};
pub use reply::{
    app_rsp, dump_text, info_text, parse_reply, parse_reply_at_eof, ping_rsp, status_rsp, version_rsp, NodeInfo, Reply,
};
pub use request::{encode_request, form_encode, is_whole_node, request_path};
pub use rules::{
    parse_bool, parse_pairs, ALIAS_SIZE, BALANCER_SIZE, CONTEXT_SIZE, COOKIE_SIZE, DOMAIN_SIZE, HOST_SIZE,
    JVMROUTE_SIZE, MAX_BODY, PATH_SIZE, PORT_SIZE, TYPE_SIZE,
};

/// Value of the `Version:` header of error replies and of VERSION replies
/// (`VERSION_PROTOCOL`, mod_manager.c line 69).
pub const PROTOCOL_VERSION: &str = "0.2.1";

/// An MCMP command: the HTTP method of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Config,
    EnableApp,
    DisableApp,
    StopApp,
    RemoveApp,
    Status,
    Ping,
    Info,
    Dump,
    Version,
}

impl Command {
    pub const ALL: [Command; 10] = [
        Command::Config,
        Command::EnableApp,
        Command::DisableApp,
        Command::StopApp,
        Command::RemoveApp,
        Command::Status,
        Command::Ping,
        Command::Info,
        Command::Dump,
        Command::Version,
    ];

    /// The command of a request method, compared case-insensitively as
    /// mod_manager's `is_our_method` does (lines 2653-2680).
    pub fn from_method(m: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.method().eq_ignore_ascii_case(m))
    }

    pub fn method(self) -> &'static str {
        match self {
            Command::Config => "CONFIG",
            Command::EnableApp => "ENABLE-APP",
            Command::DisableApp => "DISABLE-APP",
            Command::StopApp => "STOP-APP",
            Command::RemoveApp => "REMOVE-APP",
            Command::Status => "STATUS",
            Command::Ping => "PING",
            Command::Info => "INFO",
            Command::Dump => "DUMP",
            Command::Version => "VERSION",
        }
    }

    /// ENABLE-APP, DISABLE-APP, STOP-APP or REMOVE-APP.
    pub fn is_app(self) -> bool {
        matches!(self, Command::EnableApp | Command::DisableApp | Command::StopApp | Command::RemoveApp)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}
#[cfg(test)]
mod testutil {
    use super::Error;

    pub(super) fn syn(t: &str) -> Error {
        Error::syntax(t)
    }

    pub(super) fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        for c in Command::ALL {
            assert_eq!(Command::from_method(c.method()), Some(c));
            assert_eq!(Command::from_method(&c.method().to_ascii_lowercase()), Some(c));
        }
        assert_eq!(Command::from_method("GET"), None);
        assert_eq!(Command::from_method("ENABLE_APP"), None);
        assert_eq!(Command::EnableApp.method(), "ENABLE-APP");
        assert!(Command::StopApp.is_app() && !Command::Status.is_app());
    }
}
