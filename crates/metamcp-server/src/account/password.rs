//! Password hashing: Argon2id (m = 19,456 KiB, t = 2, p = 1 — OWASP's recommended minimum),
//! PHC strings with a 16-byte random salt, on the blocking pool behind a bound.
//!
//! A hash costs ~20 MB and tens of milliseconds of one core, so it never runs on an async
//! worker (a burst of sign-ins would stall the relay): at most `concurrent` hashes run at
//! once and at most `queued` more wait; beyond that a sign-in is refused as busy rather than
//! queued without bound. Verification uses the parameters stored in the hash, so raising the
//! cost later keeps old hashes valid. Unknown accounts are checked against a dummy hash so
//! that the time taken does not tell whether an email exists.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Shortest and longest password accepted (characters).
pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// Why a password could not be hashed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("too many sign-ins at once; try again in a moment")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The one hasher of a process.
#[derive(Debug, Clone)]
pub struct Hasher {
    running: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    /// A valid hash of a random password, checked when the account is unknown.
    dummy: Arc<str>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    argon2()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Internal(e.to_string()))
}

impl Hasher {
    /// At most `concurrent` hashes at once, `queued` more waiting.
    pub fn new(concurrent: usize, queued: usize) -> Result<Self, PasswordError> {
        let mut random = [0u8; 24];
        rand::fill(&mut random[..]);
        let dummy = hash_now(&format!("{random:?}"))?;
        Ok(Hasher {
            running: Arc::new(Semaphore::new(concurrent.max(1))),
            waiting: Arc::new(Semaphore::new(concurrent.max(1) + queued)),
            dummy: dummy.into(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _slot = self
            .waiting
            .clone()
            .try_acquire_owned()
            .map_err(|_| PasswordError::Busy)?;
        let _run = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Busy)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| PasswordError::Internal(e.to_string()))
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.blocking(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `stored`; with no stored hash (unknown account, or one
    /// that signs in only through SSO) a dummy hash is checked and the answer is `false`.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let password = password.to_owned();
        let (hash, real) = match stored {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy.to_string(), false),
        };
        let ok = self
            .blocking(move || argon2().verify_password(password.as_bytes(), hash.as_str()))
            .await?
            .is_ok();
        Ok(ok && real)
    }
}

/// Checks a new password's length (characters, not bytes) and that it is not blank.
pub fn check_new(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("password must be at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Err(format!("password must be at most {MAX_LEN} characters"));
    }
    if password.trim().is_empty() {
        return Err("password must not be only spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id_with_stated_parameters() {
        let h = Hasher::new(2, 4).unwrap();
        let stored = h.hash("correct horse").await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(h.verify("correct horse", Some(&stored)).await.unwrap());
        assert!(!h.verify("wrong horse!", Some(&stored)).await.unwrap());
        assert!(!h.verify("correct horse", None).await.unwrap());
        assert!(!h.verify("x", Some("not a hash")).await.unwrap());
        assert_ne!(stored, h.hash("correct horse").await.unwrap(), "salted");
    }

    #[tokio::test]
    async fn beyond_the_queue_is_busy() {
        let h = Hasher::new(1, 0).unwrap();
        let held = h.running.clone().acquire_owned().await.unwrap();
        let h2 = h.clone();
        let first = tokio::spawn(async move { h2.hash("password1").await });
        // The first waits for the running slot (holding the only queue slot)…
        while h.waiting.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(h.hash("password2").await, Err(PasswordError::Busy));
        drop(held);
        assert!(first.await.unwrap().is_ok());
    }

    #[test]
    fn new_password_bounds() {
        assert!(check_new("short").is_err());
        assert!(check_new("        ").is_err());
        assert!(check_new(&"x".repeat(129)).is_err());
        assert!(check_new("eight ch").is_ok());
        assert!(check_new(&"é".repeat(128)).is_ok());
    }
}
