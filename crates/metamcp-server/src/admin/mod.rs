//! The operations an operator performs, shared by the CLI and (later) the admin API so
//! that no rule is written twice: each takes the store, checks the request as a whole and
//! writes it in one transaction, returning typed results the caller formats.

pub mod declare;
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
