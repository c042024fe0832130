//! Encryption of secret columns (server env values, header values, bearer tokens, URLs that
//! carry credentials) and the master key they are encrypted with.
//!
//! A secret column holds `v2:<key id>:<base64(nonce || ciphertext)>`: XChaCha20-Poly1305
//! with a fresh random 24-byte nonce per value. The associated data binds the value to where
//! it belongs — table, column, the row's stable id ([`Binding`]) — and to the key id, so a
//! value copied into another column or another server's row does not open. A map-valued
//! secret (env, headers) is sealed as one JSON object, so its entries cannot be moved or
//! swapped one by one either, and their names stay private too.
//!
//! The key id is the first 8 bytes of SHA-256 over a domain-separated label and the key, in
//! hex: it names the key a value was sealed with without revealing anything about it, so a
//! value sealed with another key is reported as such. [`Cipher`] holds keys by id with one
//! current key (the one that seals) and any previous keys (`METAMCP_SECRET_KEY_PREVIOUS`, or
//! the file `secret.key.previous` beside the key file), which only open; opening looks the
//! value's key up by id. `crate::rotate` re-seals every value under the current key.
//!
//! The master key is 32 bytes, given as base64 (`METAMCP_SECRET_KEY`, passed in by the
//! caller) or else kept in `<data_dir>/secret.key` (mode 0600), created on first open and
//! reused afterwards.
//!
//! The earlier format `v1:<base64>` (associated data `table.column` only, no key id) is still
//! opened, with the current key, so `crate::upgrade` can re-seal such values as v2 when a
//! store is opened.
//!
//! Invariant: plaintext secrets never reach the database, and a wrong key, a misplaced or a
//! tampered value is an error ([`Decrypt`]), never a panic. This module does not know about
//! servers; the caller adds which server a failure concerns.
//!
//! [`Decrypt`]: crate::StoreError::Decrypt

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::TryRng;
use sha2::{Digest, Sha256};

use crate::StoreError;

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "secret.key";
/// Keys that only open (one base64 key per line), beside the key file: written by
/// `metamcp secrets rotate --new-key`.
pub const PREVIOUS_KEY_FILE: &str = "secret.key.previous";

const V1: &str = "v1:";
const V2: &str = "v2:";
const NONCE_LEN: usize = 24;
/// Domain separation of key ids (nothing else hashes the key with this label).
const KEY_ID_LABEL: &[u8] = b"metamcp secret key id\0";
/// Domain separation of the v2 associated data.
const AAD_LABEL: &str = "metamcp sealed value v2";

/// Names a master key without revealing it (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &[u8; 32]) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(key)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Where a sealed value belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Binding<'a> {
    pub(crate) table: &'static str,
    pub(crate) column: &'static str,
    /// The row's stable id (never its name, which can change).
    pub(crate) row: &'a str,
}

impl Binding<'_> {
    /// The v2 associated data: label, table, column, row and key id, NUL-separated (none of
    /// them contains NUL).
    fn aad(&self, key: KeyId) -> String {
        format!(
            "{AAD_LABEL}\0{}\0{}\0{}\0{key}",
            self.table, self.column, self.row
        )
    }

    /// The v1 associated data.
    fn legacy_aad(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// The master keys, ready to seal and open secret columns.
#[derive(Clone)]
pub(crate) struct Cipher {
    current: KeyId,
    keys: BTreeMap<KeyId, XChaCha20Poly1305>,
    /// Root of [`Cipher::derive`]: SHA-256 of a fixed label and the master key.
    derive_root: [u8; 32],
}

impl std::fmt::Debug for Cipher {
    // why: never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher(current key {})", self.current)
    }
}

/// Why a stored secret could not be opened (the caller names the server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("the stored value is not a sealed value (v1 or v2 format)")]
    Format,
    #[error(
        "it was sealed with key {found}, but the configured key is {current}: \
         METAMCP_SECRET_KEY or secret.key is not the key this database was written with"
    )]
    UnknownKey { found: String, current: KeyId },
    #[error(
        "the value does not belong here (copied from another row or column?) or was tampered with"
    )]
    Misplaced,
    #[error("wrong secret key (METAMCP_SECRET_KEY or secret.key) or tampered value")]
    Auth,
}

impl Cipher {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let id = KeyId::of(key);
        let mut root = Sha256::new();
        root.update(b"metamcp key derivation v1\0");
        root.update(key);
        Cipher {
            current: id,
            keys: BTreeMap::from([(id, XChaCha20Poly1305::new(&(*key).into()))]),
            derive_root: root.finalize().into(),
        }
    }

    /// The key from `secret_key` (base64 of 32 bytes) if given, else from the key file in
    /// `data_dir`, which is created with a fresh random key if missing; with the `previous`
    /// keys (`METAMCP_SECRET_KEY_PREVIOUS`) and those of `secret.key.previous` in
    /// `data_dir`, if it exists, to open values sealed before a rotation.
    pub(crate) fn load(
        secret_key: Option<&str>,
        previous: &[String],
        data_dir: &Path,
    ) -> Result<Self, StoreError> {
        let key = match secret_key {
            Some(text) => parse_key(text)
                .map_err(|why| StoreError::Config(format!("METAMCP_SECRET_KEY {why}")))?,
            None => load_or_create_key_file(data_dir)?,
        };
        let mut cipher = Cipher::new(&key);
        for (i, text) in previous.iter().enumerate() {
            let k = parse_key(text).map_err(|why| {
                StoreError::Config(format!("METAMCP_SECRET_KEY_PREVIOUS (key {}) {why}", i + 1))
            })?;
            cipher.add_previous(&k);
        }
        let path = data_dir.join(PREVIOUS_KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                    let k = parse_key(line).map_err(|why| {
                        StoreError::Config(format!("{} (line {}) {why}", path.display(), i + 1))
                    })?;
                    cipher.add_previous(&k);
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        Ok(cipher)
    }

    /// Adds a key that opens values but never seals.
    pub(crate) fn add_previous(&mut self, key: &[u8; 32]) {
        self.keys
            .entry(KeyId::of(key))
            .or_insert_with(|| XChaCha20Poly1305::new(&(*key).into()));
    }

    /// The id of the key new values are sealed with, as stored values name it.
    pub(crate) fn current_id(&self) -> String {
        self.current.to_string()
    }

    /// Whether `stored` is sealed (v2) with the current key.
    pub(crate) fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(V2)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(kid, _)| kid == self.current.to_string())
    }

    /// A 32-byte key for `purpose` derived from the master key, the same on every replica
    /// sharing it (e.g. the HMAC key of CSRF tokens). Distinct purposes give unrelated keys;
    /// none reveals the master key.
    pub(crate) fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.derive_root);
        h.update([0u8]);
        h.update(purpose.as_bytes());
        h.finalize().into()
    }

    /// The id of the key new values are sealed with.
    #[cfg(test)]
    pub(crate) fn current_key(&self) -> KeyId {
        self.current
    }

    fn aead(&self) -> &XChaCha20Poly1305 {
        // why: `new` inserts the current key, and keys are never removed.
        &self.keys[&self.current]
    }

    /// Seals `plaintext` for the place `at`, with the current key.
    pub(crate) fn seal(&self, at: Binding<'_>, plaintext: &[u8]) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let aad = at.aad(self.current);
        let ciphertext = self
            .aead()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Invalid(format!(
                    "secret for {}.{} is too large",
                    at.table, at.column
                ))
            })?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{V2}{}:{}", self.current, B64.encode(blob)))
    }

    /// Opens a value sealed for `at` (v2), or a v1 value of the same column with the current
    /// key.
    pub(crate) fn open(&self, at: Binding<'_>, stored: &str) -> Result<Vec<u8>, OpenError> {
        if let Some(rest) = stored.strip_prefix(V2) {
            let (kid, b64) = rest.split_once(':').ok_or(OpenError::Format)?;
            let Some((&id, aead)) = self.keys.iter().find(|(id, _)| id.to_string() == kid) else {
                return Err(OpenError::UnknownKey {
                    found: kid.chars().take(16).collect(),
                    current: self.current,
                });
            };
            let (nonce, ciphertext) = split_blob(b64)?;
            return aead
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &ciphertext,
                        aad: at.aad(id).as_bytes(),
                    },
                )
                .map_err(|_| OpenError::Misplaced);
        }
        let b64 = stored.strip_prefix(V1).ok_or(OpenError::Format)?;
        let (nonce, ciphertext) = split_blob(b64)?;
        self.aead()
            .decrypt(
                &nonce,
                Payload {
                    msg: &ciphertext,
                    aad: at.legacy_aad().as_bytes(),
                },
            )
            .map_err(|_| OpenError::Auth)
    }

    /// Whether `stored` is in the v1 format (to be re-sealed).
    pub(crate) fn is_v1(stored: &str) -> bool {
        stored.starts_with(V1)
    }
}

/// `base64(nonce || ciphertext)` → its two parts.
fn split_blob(b64: &str) -> Result<(XNonce, Vec<u8>), OpenError> {
    let mut blob = B64.decode(b64).map_err(|_| OpenError::Format)?;
    if blob.len() < NONCE_LEN {
        return Err(OpenError::Format);
    }
    let ciphertext = blob.split_off(NONCE_LEN);
    let nonce = XNonce::try_from(blob.as_slice()).map_err(|_| OpenError::Format)?;
    Ok((nonce, ciphertext))
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

/// A value sealed the way the v1 format did (tests of the upgrade path).
#[cfg(test)]
pub(crate) fn seal_v1(key: &[u8; 32], aad: &str, plaintext: &[u8]) -> String {
    let aead = XChaCha20Poly1305::new(&(*key).into());
    let nonce = [7u8; NONCE_LEN];
    let ct = aead
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .expect("a short test value seals");
    format!("v1:{}", B64.encode([&nonce[..], &ct].concat()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cipher(byte: u8) -> Cipher {
        Cipher::new(&[byte; 32])
    }

    const ENV_1: Binding<'static> = Binding {
        table: "servers",
        column: "env",
        row: "row-1",
    };

    #[test]
    fn round_trip() {
        let c = cipher(7);
        let sealed = c.seal(ENV_1, br#"{"K":"v"}"#).unwrap();
        let kid = c.current_key().to_string();
        assert_eq!(kid.len(), 16);
        assert!(sealed.starts_with(&format!("v2:{kid}:")), "{sealed}");
        assert!(!sealed.contains("\"K\""));
        assert_eq!(c.open(ENV_1, &sealed).unwrap(), br#"{"K":"v"}"#);
    }

    #[test]
    fn key_ids_name_keys_without_revealing_them() {
        assert_eq!(cipher(1).current_key(), cipher(1).current_key());
        assert_ne!(cipher(1).current_key(), cipher(2).current_key());
        // Not a prefix of the key or of its plain SHA-256.
        let plain = Sha256::digest([1u8; 32]);
        assert_ne!(cipher(1).current_key().0, plain[..8]);
        assert_ne!(cipher(1).current_key().0, [1u8; 8]);
    }

    #[test]
    fn wrong_key_names_both_keys() {
        let sealed = cipher(1).seal(ENV_1, b"secret").unwrap();
        let err = cipher(2).open(ENV_1, &sealed).unwrap_err();
        assert!(matches!(err, OpenError::UnknownKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&cipher(1).current_key().to_string())
                && msg.contains(&cipher(2).current_key().to_string())
                && msg.contains("METAMCP_SECRET_KEY"),
            "{msg}"
        );
    }

    #[test]
    fn values_are_bound_to_their_row_and_column() {
        let c = cipher(1);
        let sealed = c.seal(ENV_1, b"secret").unwrap();
        let other_row = Binding {
            row: "row-2",
            ..ENV_1
        };
        let other_column = Binding {
            column: "headers",
            ..ENV_1
        };
        let other_table = Binding {
            table: "endpoints",
            ..ENV_1
        };
        for at in [other_row, other_column, other_table] {
            assert_eq!(c.open(at, &sealed), Err(OpenError::Misplaced), "{at:?}");
        }
        // Relabelling the key id does not help: the id is bound too.
        let forged = sealed.replacen(&c.current_key().to_string(), "0000000000000000", 1);
        assert!(matches!(
            c.open(ENV_1, &forged),
            Err(OpenError::UnknownKey { .. })
        ));
    }

    #[test]
    fn v1_values_still_open_with_the_current_key() {
        let key = [3u8; 32];
        let v1 = seal_v1(&key, "servers.env", b"old");
        assert!(Cipher::is_v1(&v1));
        assert_eq!(Cipher::new(&key).open(ENV_1, &v1).unwrap(), b"old");
        assert_eq!(cipher(4).open(ENV_1, &v1), Err(OpenError::Auth));
        let headers = Binding {
            column: "headers",
            ..ENV_1
        };
        assert_eq!(Cipher::new(&key).open(headers, &v1), Err(OpenError::Auth));
    }

    #[test]
    fn tampered_and_malformed_values_fail() {
        let c = cipher(3);
        let sealed = c.seal(ENV_1, b"\"tok\"").unwrap();
        let (head, b64) = sealed.rsplit_once(':').unwrap();
        let mut blob = B64.decode(b64).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!("{head}:{}", B64.encode(&blob));
        assert_eq!(c.open(ENV_1, &tampered), Err(OpenError::Misplaced));
        blob[last] ^= 1;
        blob[NONCE_LEN] ^= 0x80;
        let tampered = format!("{head}:{}", B64.encode(&blob));
        assert_eq!(c.open(ENV_1, &tampered), Err(OpenError::Misplaced));
        for bad in ["plain", "v1:!!", "v1:AAAA", "v2:", "v2:nokid", "v3:x:y"] {
            assert_eq!(c.open(ENV_1, bad), Err(OpenError::Format), "{bad}");
        }
        let kid = c.current_key();
        assert_eq!(
            c.open(ENV_1, &format!("v2:{kid}:!!")),
            Err(OpenError::Format)
        );
    }

    #[test]
    fn nonce_differs_each_time() {
        let c = cipher(4);
        let a = c.seal(ENV_1, b"same").unwrap();
        let b = c.seal(ENV_1, b"same").unwrap();
        assert_ne!(a, b);
        let nonce =
            |s: &str| B64.decode(s.rsplit_once(':').unwrap().1).unwrap()[..NONCE_LEN].to_vec();
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
        let a = Cipher::load(None, &[], &data).unwrap();
        let path = data.join(KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Cipher::load(None, &[], &data).unwrap();
        let sealed = a.seal(ENV_1, b"x").unwrap();
        assert_eq!(b.open(ENV_1, &sealed).unwrap(), b"x");
        // no temp files left behind
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);
    }

    #[test]
    fn explicit_key_wins_and_bad_keys_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let key = B64.encode([9u8; 32]);
        let c = Cipher::load(Some(&key), &[], dir.path()).unwrap();
        assert!(!dir.path().join(KEY_FILE).exists());
        let sealed = c.seal(ENV_1, b"x").unwrap();
        assert_eq!(cipher(9).open(ENV_1, &sealed).unwrap(), b"x");
        let err = Cipher::load(Some("short"), &[], dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Config(ref m) if m.contains("METAMCP_SECRET_KEY")));
        fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        let err = Cipher::load(None, &[], dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::Config(ref m) if m.contains(KEY_FILE)),
            "{err}"
        );
    }
}
