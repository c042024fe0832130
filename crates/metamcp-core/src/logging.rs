//! MCP log levels (`logging/setLevel`, `notifications/message`): the eight RFC 5424
//! severities, ordered least severe first.

use crate::jsonrpc::{self, Envelope};

/// MCP log levels, least severe first (RFC 5424 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "debug" => Self::Debug,
            "info" => Self::Info,
            "notice" => Self::Notice,
            "warning" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            "alert" => Self::Alert,
            "emergency" => Self::Emergency,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }

    /// The level of a `notifications/message`.
    pub fn of_message(message: &str) -> Option<Self> {
        let env = Envelope::parse(message.as_bytes()).ok()?;
        Self::parse(&jsonrpc::str_field(env.params?, "level")?)
    }
}
