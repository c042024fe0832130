//! Encryption of secret columns (server env values, header values, bearer tokens) and the
//! master key they are encrypted with.
//!
//! A secret column holds `v1:<base64(nonce || ciphertext)>`: XChaCha20-Poly1305 with a fresh
//! random 24-byte nonce per value and the column's `table.column` as associated data, so a
//! value copied into another secret column does not decrypt. The master key is 32 bytes, given
//! as base64 (`METAMCP_SECRET_KEY`, passed in by the caller) or else kept in
//! `<data_dir>/secret.key` (mode 0600), created on first open and reused afterwards.
//!
//! Invariant: plaintext secrets never reach the database, and a wrong key or tampered value is
//! an error ([`Decrypt`]), never a panic. This module does not know about rows or servers; the
//! caller adds which server a failure concerns.
//!
//! [`Decrypt`]: crate::StoreError::Decrypt

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::TryRng;

use crate::StoreError;

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "secret.key";

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;

/// The master key, ready to encrypt and decrypt secret columns.
#[derive(Clone)]
pub(crate) struct Cipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for Cipher {
    // why: never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

/// Why a stored secret could not be opened (the caller names the server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("the stored value is not in the v1 format")]
    Format,
    #[error("wrong secret key (METAMCP_SECRET_KEY or secret.key) or tampered value")]
    Auth,
}

impl Cipher {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Cipher {
            aead: XChaCha20Poly1305::new(&(*key).into()),
        }
    }

    /// The key from `secret_key` (base64 of 32 bytes) if given, else from the key file in
    /// `data_dir`, which is created with a fresh random key if missing.
    pub(crate) fn load(secret_key: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        let key = match secret_key {
            Some(text) => parse_key(text)
                .map_err(|why| StoreError::Config(format!("METAMCP_SECRET_KEY {why}")))?,
            None => load_or_create_key_file(data_dir)?,
        };
        Ok(Cipher::new(&key))
    }

    /// Encrypts `plaintext` for the column named by `aad` (`"servers.env"`).
    pub(crate) fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let ciphertext = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Invalid(format!("secret for {aad} is too large")))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", B64.encode(blob)))
    }

    /// Decrypts a value written by [`Cipher::seal`] for the same column.
    pub(crate) fn open(&self, aad: &str, stored: &str) -> Result<Vec<u8>, OpenError> {
        let b64 = stored.strip_prefix(PREFIX).ok_or(OpenError::Format)?;
        let blob = B64.decode(b64).map_err(|_| OpenError::Format)?;
        if blob.len() < NONCE_LEN {
            return Err(OpenError::Format);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Format)?;
        self.aead
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Auth)
    }
}

/// Parses base64 of exactly 32 bytes; the error completes "METAMCP_SECRET_KEY …".
pub(crate) fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| format!("is not valid base64 ({e}); expected base64 of 32 random bytes"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "decodes to {} bytes; expected base64 of exactly 32 bytes",
            bytes.len()
        )
    })
}

/// Base64 of 32 fresh bytes from the OS random source: the format of the key file and of
/// `METAMCP_SECRET_KEY`.
pub fn generate_master_key() -> Result<String, StoreError> {
    let mut key = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut key)
        .map_err(|e| StoreError::Config(format!("cannot read OS randomness: {e}")))?;
    Ok(B64.encode(key))
}

fn load_or_create_key_file(data_dir: &Path) -> Result<[u8; 32], StoreError> {
    let path = data_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            return parse_key(&text)
                .map_err(|why| StoreError::Config(format!("key file {} {why}", path.display())));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&path, e)),
    }
    fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    // why: several processes (serve + CLI) may open a fresh data dir at once. Write the key
    // to a private temp file, then hard-link it into place: the link either creates the key
    // file complete or fails because another process won, and then everyone reads the winner.
    let text = generate_master_key()?;
    let tmp = data_dir.join(format!(".{KEY_FILE}.{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(&tmp, e));
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new secret key file; back it up");
            parse_key(&text).map_err(StoreError::Config)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(&path).map_err(|e| StoreError::io(&path, e))?;
            parse_key(&text)
                .map_err(|why| StoreError::Config(format!("key file {} {why}", path.display())))
        }
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cipher(byte: u8) -> Cipher {
        Cipher::new(&[byte; 32])
    }

    #[test]
    fn round_trip() {
        let c = cipher(7);
        let sealed = c.seal("servers.env", br#"{"K":"v"}"#).unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("\"K\""));
        assert_eq!(c.open("servers.env", &sealed).unwrap(), br#"{"K":"v"}"#);
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = cipher(1).seal("servers.env", b"secret").unwrap();
        assert_eq!(cipher(2).open("servers.env", &sealed), Err(OpenError::Auth));
    }

    #[test]
    fn other_column_fails() {
        let c = cipher(1);
        let sealed = c.seal("servers.env", b"secret").unwrap();
        assert_eq!(c.open("servers.headers", &sealed), Err(OpenError::Auth));
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let c = cipher(3);
        let sealed = c.seal("servers.bearer_token", b"\"tok\"").unwrap();
        let mut blob = B64.decode(&sealed[3..]).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!("v1:{}", B64.encode(&blob));
        assert_eq!(
            c.open("servers.bearer_token", &tampered),
            Err(OpenError::Auth)
        );
        blob[last] ^= 1;
        blob[NONCE_LEN] ^= 0x80;
        let tampered = format!("v1:{}", B64.encode(&blob));
        assert_eq!(
            c.open("servers.bearer_token", &tampered),
            Err(OpenError::Auth)
        );
        assert_eq!(
            c.open("servers.bearer_token", "plain"),
            Err(OpenError::Format)
        );
        assert_eq!(
            c.open("servers.bearer_token", "v1:!!"),
            Err(OpenError::Format)
        );
        assert_eq!(
            c.open("servers.bearer_token", "v1:AAAA"),
            Err(OpenError::Format)
        );
    }

    #[test]
    fn nonce_differs_each_time() {
        let c = cipher(4);
        let a = c.seal("servers.env", b"same").unwrap();
        let b = c.seal("servers.env", b"same").unwrap();
        assert_ne!(a, b);
        let nonce = |s: &str| B64.decode(&s[3..]).unwrap()[..NONCE_LEN].to_vec();
        assert_ne!(nonce(&a), nonce(&b));
    }

    #[test]
    fn parses_keys() {
        let key = generate_master_key().unwrap();
        assert_eq!(parse_key(&format!(" {key}\n")).unwrap().len(), 32);
        assert!(parse_key("not base64!").unwrap_err().contains("base64"));
        assert!(
            parse_key(&B64.encode([0u8; 16]))
                .unwrap_err()
                .contains("16 bytes")
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested");
        let a = Cipher::load(None, &data).unwrap();
        let path = data.join(KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Cipher::load(None, &data).unwrap();
        let sealed = a.seal("t.c", b"x").unwrap();
        assert_eq!(b.open("t.c", &sealed).unwrap(), b"x");
        // no temp files left behind
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);
    }

    #[test]
    fn explicit_key_wins_and_bad_keys_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let key = B64.encode([9u8; 32]);
        let c = Cipher::load(Some(&key), dir.path()).unwrap();
        assert!(!dir.path().join(KEY_FILE).exists());
        let sealed = c.seal("t.c", b"x").unwrap();
        assert_eq!(cipher(9).open("t.c", &sealed).unwrap(), b"x");
        let err = Cipher::load(Some("short"), dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Config(ref m) if m.contains("METAMCP_SECRET_KEY")));
        fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        let err = Cipher::load(None, dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::Config(ref m) if m.contains(KEY_FILE)),
            "{err}"
        );
    }
}
