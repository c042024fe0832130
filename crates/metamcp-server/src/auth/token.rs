//! Inspector tokens: short-lived bearer credentials the dashboard mints so its inspector
//! can speak MCP to an endpoint as the signed-in user.
//!
//! Endpoints never accept the dashboard's cookie (a page on another site could otherwise make
//! the browser call tools); instead the dashboard, after its own session and CSRF checks,
//! hands the page a token bound to one endpoint (by id, so a renamed-and-recreated endpoint
//! does not inherit it) and one user, valid for [`LIFETIME`]. It is stateless — an HMAC under
//! a key derived from the master key, so every replica checks it without a database round
//! trip — and checked on every request against the current snapshot: the user must still
//! exist and be enabled, and the endpoint must be public or theirs. Sign-out stops new tokens
//! at once; one already handed out ends within [`LIFETIME`]. Tokens are accepted only in
//! `Authorization: Bearer` / `X-API-Key`, never in a URL.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Every token starts with this (never an API key: those start `sk_mt_`).
pub const PREFIX: &str = "mt_insp_";

/// How long a token is valid; the inspector asks for a fresh one before it runs out.
pub const LIFETIME_MS: i64 = 5 * 60 * 1000;

/// Longest token accepted (ids are short; anything longer was not minted here).
const MAX_LEN: usize = 512;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The key tokens are signed with (derived from the master key: equal on every replica).
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub endpoint_id: String,
    pub user_id: String,
    pub expires_at_ms: i64,
}

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this inspector token is malformed or was not issued by this gateway")]
    Invalid,
    #[error("this inspector token has expired: reopen the inspector to get a new one")]
    Expired,
}

impl TokenKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    fn mac(&self, payload: &[u8]) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"metamcp inspector token v1\0");
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// A token for `user_id` on the endpoint `endpoint_id`, valid until `now_ms` + lifetime.
    pub fn mint(&self, endpoint_id: &str, user_id: &str, now_ms: i64) -> (String, Claims) {
        let claims = Claims {
            endpoint_id: endpoint_id.to_owned(),
            user_id: user_id.to_owned(),
            expires_at_ms: now_ms.saturating_add(LIFETIME_MS),
        };
        // A random nonce makes two tokens minted in the same millisecond differ.
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce[..]);
        let payload = format!(
            "{}\n{}\n{}\n{}",
            URL_SAFE_NO_PAD.encode(nonce),
            claims.endpoint_id,
            claims.user_id,
            claims.expires_at_ms
        );
        let token = format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()))
        );
        (token, claims)
    }

    /// The claims of `token` if this key signed it and it has not expired at `now_ms`.
    pub fn check(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_LEN {
            return Err(TokenError::Invalid);
        }
        let body = token.strip_prefix(PREFIX).ok_or(TokenError::Invalid)?;
        let (payload, sig) = body.split_once('.').ok_or(TokenError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Invalid)?;
        let expected = self.mac(&payload);
        if sig.len() != expected.len() || !bool::from(expected.ct_eq(&sig[..])) {
            return Err(TokenError::Invalid);
        }
        let text = String::from_utf8(payload).map_err(|_| TokenError::Invalid)?;
        let mut parts = text.split('\n');
        let (Some(_nonce), Some(ep), Some(user), Some(exp), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Invalid);
        };
        let expires_at_ms: i64 = exp.parse().map_err(|_| TokenError::Invalid)?;
        if now_ms >= expires_at_ms {
            return Err(TokenError::Expired);
        }
        Ok(Claims {
            endpoint_id: ep.to_owned(),
            user_id: user.to_owned(),
            expires_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_says_what_it_was_minted_for_until_it_expires() {
        let k = TokenKey::new([7; 32]);
        let (t, c) = k.mint("ep-1", "user-1", 1_000);
        assert!(t.starts_with(PREFIX));
        assert_eq!(k.check(&t, 1_001), Ok(c.clone()));
        assert_eq!(c.expires_at_ms, 1_000 + LIFETIME_MS);
        assert_eq!(k.check(&t, c.expires_at_ms), Err(TokenError::Expired));
        // Two tokens for the same pair differ.
        assert_ne!(k.mint("ep-1", "user-1", 1_000).0, t);
    }

    #[test]
    fn another_key_or_any_edit_is_refused() {
        let k = TokenKey::new([7; 32]);
        let (t, _) = k.mint("ep-1", "user-1", 1_000);
        assert_eq!(
            TokenKey::new([8; 32]).check(&t, 1_001),
            Err(TokenError::Invalid)
        );
        // Re-sign a payload naming another user with the signature of the original.
        let body = t.strip_prefix(PREFIX).unwrap();
        let (payload, sig) = body.split_once('.').unwrap();
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let forged = text.replace("user-1", "user-2");
        let forged = format!("{PREFIX}{}.{sig}", URL_SAFE_NO_PAD.encode(forged));
        assert_eq!(k.check(&forged, 1_001), Err(TokenError::Invalid));
        for bad in [
            "",
            PREFIX,
            "sk_mt_abc",
            &format!("{PREFIX}abc"),
            &format!("{PREFIX}..."),
            &"x".repeat(MAX_LEN + 1),
        ] {
            assert_eq!(k.check(bad, 1_001), Err(TokenError::Invalid), "{bad}");
        }
    }
}
