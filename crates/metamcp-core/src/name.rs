//! Validation of the names users give to servers, namespaces, endpoints and API keys.
//!
//! Names appear in URLs (`/metamcp/<endpoint>/mcp`) and in exposed tool names
//! (`<server>__<tool>`), so they are restricted to `[A-Za-z0-9_-]+` (MetaMCP's rule), and a
//! server name may not contain `__`, which would make the prefix ambiguous.

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} name must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} name {name:?} is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        name: String,
        max: usize,
    },
    #[error("{kind} name {name:?} may only contain letters, digits, '_' and '-'")]
    BadChar { kind: &'static str, name: String },
    #[error("server name {name:?} may not contain \"__\" (it separates the server from the tool)")]
    DoubleUnderscore { name: String },
}

/// Longest name we accept; keeps `<server>__<tool>` within the 128-character tool-name limit
/// for ordinary tool names.
pub const MAX_NAME_LEN: usize = 64;

/// Validates a namespace, endpoint or API-key name.
pub fn validate_object_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            name: name.to_owned(),
            max: MAX_NAME_LEN,
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NameError::BadChar {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Validates a server name: an object name that also has no `__`.
pub fn validate_server_name(name: &str) -> Result<(), NameError> {
    validate_object_name("server", name)?;
    if name.contains("__") {
        return Err(NameError::DoubleUnderscore {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(validate_server_name("everything").is_ok());
        assert!(validate_server_name("my-server_2").is_ok());
        assert!(matches!(
            validate_server_name(""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            validate_server_name("a b"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            validate_server_name("a__b"),
            Err(NameError::DoubleUnderscore { .. })
        ));
        assert!(matches!(
            validate_server_name("é"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            validate_server_name(&"x".repeat(65)),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn object_names_allow_double_underscore() {
        assert!(validate_object_name("endpoint", "a__b").is_ok());
        assert!(validate_object_name("endpoint", "a/b").is_err());
    }
}
