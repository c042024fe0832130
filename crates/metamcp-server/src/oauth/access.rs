//! OAuth access tokens for endpoints: signed, short-lived, never stored.
//!
//! A token is `mt_at_<payload>.<mac>`: the payload (base64url JSON) names the grant, the
//! endpoint (by id: a renamed-and-recreated endpoint does not inherit it), the user, the scope
//! and the expiry; the mac is HMAC-SHA256 under a key derived from the master key, so every
//! replica checks a token without a database round trip and the data path never waits on
//! the store. Lifetimes are at most five minutes (`OAUTH_ACCESS_TOKEN_LIFETIME`): revoking a
//! grant stops its refresh tokens at once, and this replica's check refuses its access
//! tokens at once too ([`Revoked`]); another replica accepts one already issued until it
//! expires.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Every access token starts with this (never an API key `sk_mt_`, never an inspector token).
pub const PREFIX: &str = "mt_at_";

/// Longest token accepted (anything longer was not minted here).
const MAX_LEN: usize = 1024;

type HmacSha256 = hmac::Hmac<Sha256>;

/// What a valid access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The grant (consent) it was issued under.
    #[serde(rename = "g")]
    pub grant_id: String,
    #[serde(rename = "e")]
    pub endpoint_id: String,
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "s")]
    pub scope: String,
    /// Epoch milliseconds.
    #[serde(rename = "x")]
    pub expires_at_ms: i64,
    /// Random: two tokens of one grant minted in the same millisecond differ.
    #[serde(rename = "n")]
    pub nonce: String,
}

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("this access token is malformed or was not issued by this gateway")]
    Invalid,
    #[error("this access token has expired: refresh it")]
    Expired,
}

/// The key access tokens are signed with (derived from the master key).
#[derive(Clone)]
pub struct AccessKey([u8; 32]);

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKey(..)")
    }
}

impl AccessKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    fn mac(&self, payload: &[u8]) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"metamcp oauth access token v1\0");
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// A token carrying `claims` (its nonce is filled in here).
    pub fn mint(&self, mut claims: Claims) -> String {
        let mut nonce = [0u8; 9];
        rand::fill(&mut nonce[..]);
        claims.nonce = URL_SAFE_NO_PAD.encode(nonce);
        // why: serializing these plain strings and numbers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(&json);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()));
        format!("{PREFIX}{payload}.{mac}")
    }

    /// The claims of `presented` if this gateway signed it and it has not expired at `now_ms`.
    pub fn check(&self, presented: &str, now_ms: i64) -> Result<Claims, AccessError> {
        if presented.len() > MAX_LEN {
            return Err(AccessError::Invalid);
        }
        let rest = presented.strip_prefix(PREFIX).ok_or(AccessError::Invalid)?;
        let (payload, mac) = rest.split_once('.').ok_or(AccessError::Invalid)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| AccessError::Invalid)?;
        let expected = self.mac(payload.as_bytes());
        if mac.len() != expected.len() || !bool::from(expected.ct_eq(&mac[..])) {
            return Err(AccessError::Invalid);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AccessError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| AccessError::Invalid)?;
        if now_ms >= claims.expires_at_ms {
            return Err(AccessError::Expired);
        }
        Ok(claims)
    }
}

/// Grants revoked through this replica, kept until every access token they could have
/// issued has expired, so this replica refuses those tokens at once. Bounded by time: an
/// entry lives one access-token lifetime (at most five minutes), and at most
/// [`MAX_REVOKED`] entries are kept (the oldest go first).
#[derive(Debug, Default)]
pub struct Revoked {
    map: parking_lot::RwLock<HashMap<String, i64>>,
}

/// Most revoked grants remembered at once.
pub const MAX_REVOKED: usize = 100_000;

impl Revoked {
    /// Remembers `grant_id` as revoked until `until_ms`.
    pub fn insert(&self, grant_id: &str, until_ms: i64, now_ms: i64) {
        let mut map = self.map.write();
        map.retain(|_, until| *until > now_ms);
        if map.len() >= MAX_REVOKED
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(grant_id.to_owned(), until_ms);
    }

    /// Whether `grant_id` was revoked here (and its tokens may still be unexpired).
    pub fn contains(&self, grant_id: &str) -> bool {
        let map = self.map.read();
        !map.is_empty() && map.contains_key(grant_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            grant_id: "g1".into(),
            endpoint_id: "e1".into(),
            user_id: "u1".into(),
            scope: "mcp".into(),
            expires_at_ms: exp,
            nonce: String::new(),
        }
    }

    #[test]
    fn minted_tokens_check_and_expire() {
        let k = AccessKey::new([7; 32]);
        let t = k.mint(claims(1_000));
        assert!(t.starts_with(PREFIX));
        let c = k.check(&t, 999).unwrap();
        assert_eq!((c.grant_id.as_str(), c.endpoint_id.as_str()), ("g1", "e1"));
        assert_eq!(k.check(&t, 1_000), Err(AccessError::Expired));
        assert_ne!(k.mint(claims(1_000)), t, "nonces differ");
    }

    #[test]
    fn forged_or_altered_tokens_are_invalid() {
        let k = AccessKey::new([7; 32]);
        let other = AccessKey::new([8; 32]);
        let t = k.mint(claims(i64::MAX));
        assert_eq!(other.check(&t, 0), Err(AccessError::Invalid));
        // A payload re-signed by nobody: swap the endpoint inside.
        let (payload, mac) = t[PREFIX.len()..].split_once('.').unwrap();
        let mut c: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        c.endpoint_id = "e2".into();
        let forged = format!(
            "{PREFIX}{}.{mac}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
        );
        assert_eq!(k.check(&forged, 0), Err(AccessError::Invalid));
        for bad in ["", "mt_at_", "mt_at_x.y", "sk_mt_abc", &"a".repeat(2000)] {
            assert_eq!(k.check(bad, 0), Err(AccessError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn revoked_grants_are_remembered_for_a_while() {
        let r = Revoked::default();
        assert!(!r.contains("g"));
        r.insert("g", 100, 0);
        assert!(r.contains("g"));
        r.insert("h", 300, 200);
        assert!(!r.contains("g"), "expired entries are dropped");
        assert!(r.contains("h"));
    }
}
