//! The operations an operator performs, shared by the CLI and the admin API (`api`) so that
//! no rule is written twice: each takes the store, checks the request as a whole and writes
//! it in one transaction, returning typed (serde-serializable) results the caller formats —
//! the CLI as text, the API as JSON.

pub mod api;
pub mod declare;
pub mod endpoints;
pub mod keys;
pub mod logs;
pub mod namespaces;
pub mod openapi;
pub mod servers;
pub mod settings;
pub mod tools;

use metamcp_store::StoreError;

/// Why an operator's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Two tools would get the same exposed name.
    #[error("{0}")]
    Collision(String),
}

/// How the admin API classifies an [`AdminError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request names something that does not exist (404).
    NotFound,
    /// The name is taken, or the change would make names clash (409).
    Conflict,
    /// The request is well-formed but its values are refused (422).
    Invalid,
    /// The store failed; details are logged, never shown (500).
    Internal,
}

impl AdminError {
    pub fn class(&self) -> ErrorClass {
        match self {
            AdminError::NotFound(_) | AdminError::Store(StoreError::NotFound { .. }) => {
                ErrorClass::NotFound
            }
            AdminError::Collision(_) | AdminError::Store(StoreError::Duplicate { .. }) => {
                ErrorClass::Conflict
            }
            AdminError::Invalid(_) | AdminError::Store(StoreError::Invalid(_)) => {
                ErrorClass::Invalid
            }
            AdminError::Store(_) => ErrorClass::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_without_leaking_the_store() {
        let nf = StoreError::NotFound {
            kind: "server",
            name: "x".into(),
        };
        assert_eq!(AdminError::from(nf).class(), ErrorClass::NotFound);
        let dup = StoreError::Duplicate {
            kind: "namespace",
            name: "x".into(),
        };
        assert_eq!(AdminError::from(dup).class(), ErrorClass::Conflict);
        assert_eq!(
            AdminError::from(StoreError::Invalid("bad name".into())).class(),
            ErrorClass::Invalid
        );
        assert_eq!(
            AdminError::Collision("a".into()).class(),
            ErrorClass::Conflict
        );
        assert_eq!(AdminError::Invalid("a".into()).class(), ErrorClass::Invalid);
        assert_eq!(
            AdminError::NotFound("a".into()).class(),
            ErrorClass::NotFound
        );
        assert_eq!(
            AdminError::from(StoreError::Decrypt("wrong key".into())).class(),
            ErrorClass::Internal
        );
        assert_eq!(
            AdminError::from(StoreError::Config("x".into())).class(),
            ErrorClass::Internal
        );
    }
}
