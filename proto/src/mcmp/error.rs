//! MCMP errors: their `Type:`, mod_manager's `Mess:` texts, and the headers
//! of an error reply.

use std::fmt;

use super::PROTOCOL_VERSION;

/// The error texts mod_manager puts in the `Mess:` header (mod_manager.c lines
/// 32-66 and the literals noted). Clients parse these; they must stay byte
/// for byte. Texts with `%s` are produced by the [`Error`] constructors.
pub mod text {
    pub const SMESPAR: &str =
        "SYNTAX: Can't parse MCMP message. It might have contained illegal symbols or unknown elements.";
    pub const SBALBIG: &str = "SYNTAX: Balancer field too big";
    pub const SBAFBIG: &str = "SYNTAX: A field is too big";
    pub const SROUBIG: &str = "SYNTAX: JVMRoute field too big";
    pub const SROUBAD: &str = "SYNTAX: JVMRoute can't be empty";
    pub const SDOMBIG: &str = "SYNTAX: LBGroup field too big";
    pub const SHOSBIG: &str = "SYNTAX: Host field too big";
    pub const SPORBIG: &str = "SYNTAX: Port field too big";
    pub const STYPBIG: &str = "SYNTAX: Type field too big";
    pub const SALIBIG: &str = "SYNTAX: Alias field too big";
    pub const SCONBIG: &str = "SYNTAX: Context field too big";
    pub const SFLUBAD: &str = "SYNTAX: Flushwait field has bad value";
    pub const SPNGBAD: &str = "SYNTAX: Ping field has bad value";
    pub const STTLBAD: &str = "SYNTAX: TTL field has bad value";
    pub const STIMBAD: &str = "SYNTAX: Timeout field has bad value";
    pub const SALIBAD: &str = "SYNTAX: Alias without Context";
    pub const SCONBAD: &str = "SYNTAX: Context without Alias";
    pub const NOCONAL: &str = "SYNTAX: No Context and Alias in APP command";
    pub const SMISFLD: &str = "SYNTAX: Mandatory field(s) missing in message";
    pub const SCMDUNS: &str = "SYNTAX: Command is not supported";
    /// process_context_alias, line 1245 (literal, sic).
    pub const EMPTY_ALIAS: &str = "TODO: Empty Alias is not allowed";
    /// process_context_alias, line 1251 (literal, sic).
    pub const EMPTY_CONTEXT: &str = "TODO: Empty Context is not allowed";
    /// process_status, line 2413 (literal, sic).
    pub const BAD_LOAD: &str = "TODO: Bad value for Load";
    /// process_status, line 2424 (literal, sic).
    pub const NO_JVMROUTE: &str = "TODO: No JVMRoute given!";
    pub const MNODEET: &str = "MEM: Another for the same worker already exist";
    /// Ours (mod_manager stores any Port string of < 7 bytes).
    pub const PORT_BAD: &str = "SYNTAX: Port field has bad value";
    /// Ours (mod_manager leaves Reversed at 0 for a value it does not know).
    pub const REVERSED_BAD: &str = "SYNTAX: Reversed field has bad value";
}

/// The `Type:` header of an error reply (process_error, lines 3021-3038).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The message is wrong; mod_cluster's Java side marks the proxy DOWN.
    Syntax,
    /// The shared tables refused (e.g. unknown node); the Java side retries.
    Mem,
    General,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Syntax => "SYNTAX",
            ErrorType::Mem => "MEM",
            ErrorType::General => "GENERAL",
        }
    }

    /// The type named by a `Type:` header value; anything unknown is GENERAL
    /// (process_error's default branch).
    pub fn from_header(v: &str) -> ErrorType {
        match v.trim() {
            "SYNTAX" => ErrorType::Syntax,
            "MEM" => ErrorType::Mem,
            _ => ErrorType::General,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An MCMP error: its `Type:` and the exact `Mess:` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorType,
    pub mess: String,
}

impl Error {
    pub fn syntax(mess: impl Into<String>) -> Error {
        Error { kind: ErrorType::Syntax, mess: mess.into() }
    }
    pub fn mem(mess: impl Into<String>) -> Error {
        Error { kind: ErrorType::Mem, mess: mess.into() }
    }
    pub fn general(mess: impl Into<String>) -> Error {
        Error { kind: ErrorType::General, mess: mess.into() }
    }
    /// `SBADFLD` (line 51): a key STATUS or PING does not know.
    pub fn invalid_field(key: &str) -> Error {
        Error::syntax(format!("SYNTAX: Invalid field \"{key}\" in message"))
    }
    /// `SCMDUNS` (line 53): a method that is not an MCMP command.
    pub fn command_not_supported() -> Error {
        Error::syntax(text::SCMDUNS)
    }
    /// `SREADER` (line 56): the body could not be read; `method` as received.
    pub fn read_failed(method: &str) -> Error {
        Error::syntax(format!("SYNTAX: {method} can't read POST data"))
    }
    /// PING with an unknown `Scheme` (process_ping, line 2513). No "SYNTAX: "
    /// prefix in the text, but of type SYNTAX.
    pub fn unsupported_scheme(scheme: &str) -> Error {
        Error::syntax(format!("PING Unsupported scheme: {scheme}"))
    }
    /// `MNODERD` (line 62): the JVMRoute names no (live) node. This is what
    /// STATUS, PING and the *-APP commands answer after httpd lost the node.
    pub fn node_not_found(route: &str) -> Error {
        Error::mem(format!("MEM: Can't read node with \"{route}\" JVMRoute"))
    }
    /// A CONFIG that changes Balancer, Host, Port, Type, Reversed, smax or ttl
    /// of a node that still exists (process_config, lines 1370-1380; the route
    /// printed is the stored node's).
    pub fn node_exists(route: &str) -> Error {
        Error::mem(format!("MEM: Node with \"{route}\" JVMRoute already exists"))
    }
    /// `MNODEUI` (line 59).
    pub fn node_insert_failed(route: &str) -> Error {
        Error::mem(format!("MEM: Can't update or insert node with \"{route}\" JVMRoute"))
    }
    /// `MBALAUI` (line 61).
    pub fn balancer_insert_failed(route: &str) -> Error {
        Error::mem(format!("MEM: Can't update or insert balancer for node with \"{route}\" JVMRoute"))
    }
    /// `MNODEET` (line 66): another node already uses Type://Host:Port.
    pub fn same_worker() -> Error {
        Error::mem(text::MNODEET)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Type={} Mess={}", self.kind, self.mess)
    }
}

impl std::error::Error for Error {}

/// The three headers of an error reply, in mod_manager's order (process_error,
/// lines 3021-3038). The reply is HTTP 500 with the status line reason `ERROR`.
pub fn error_headers(e: &Error) -> [(&'static str, String); 3] {
    [("Version", PROTOCOL_VERSION.to_string()), ("Type", e.kind.as_str().to_string()), ("Mess", e.mess.clone())]
}

pub(super) fn smespar() -> Error {
    Error::syntax(text::SMESPAR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcmp::testutil::syn;

    #[test]
    fn error_replies_byte_for_byte() {
        let e = Error::node_not_found("n1");
        assert_eq!(
            error_headers(&e),
            [
                ("Version", "0.2.1".to_string()),
                ("Type", "MEM".to_string()),
                ("Mess", "MEM: Can't read node with \"n1\" JVMRoute".to_string())
            ]
        );
        assert_eq!(e.to_string(), "Type=MEM Mess=MEM: Can't read node with \"n1\" JVMRoute");
        assert_eq!(Error::node_exists("n1").mess, "MEM: Node with \"n1\" JVMRoute already exists");
        assert_eq!(Error::node_insert_failed("n1").mess, "MEM: Can't update or insert node with \"n1\" JVMRoute");
        assert_eq!(
            Error::balancer_insert_failed("n1").mess,
            "MEM: Can't update or insert balancer for node with \"n1\" JVMRoute"
        );
        assert_eq!(Error::same_worker().mess, "MEM: Another for the same worker already exist");
        assert_eq!(Error::command_not_supported(), syn("SYNTAX: Command is not supported"));
        assert_eq!(Error::read_failed("CONFIG").mess, "SYNTAX: CONFIG can't read POST data");
        assert_eq!(Error::general("x").kind.as_str(), "GENERAL");
        assert_eq!(ErrorType::from_header("SYNTAX"), ErrorType::Syntax);
        assert_eq!(ErrorType::from_header("weird"), ErrorType::General);
    }
}
