//! The configuration the data path reads: endpoints, namespaces and API-key hashes, as one
//! immutable value. Built from the store by [`crate::reload`]; readers never block writers.

use std::collections::HashMap;
use std::sync::Arc;

use metamcp_core::RateLimit;
use metamcp_core::mangle::PrefixMode;
use metamcp_core::shaping::Shaping;

/// An endpoint as the data path needs it.
#[derive(Debug, Clone)]
pub struct EndpointCfg {
    pub id: String,
    pub name: String,
    pub namespace_id: String,
    pub api_key_auth: bool,
    pub query_auth: bool,
    /// OAuth access tokens issued for this endpoint open it ([`crate::oauth`]).
    pub oauth: bool,
    /// Limit on the whole endpoint (see [`crate::ratelimit`]).
    pub rate: Option<RateLimit>,
    /// Limit per client (API key, else client IP).
    pub client_rate: Option<RateLimit>,
    /// The owner's user id; `None`: a public endpoint.
    pub owner: Option<String>,
    /// The owner is disabled: the endpoint answers 403 to everyone.
    pub owner_disabled: bool,
    /// One server on its own, for the dashboard inspector of admins only (see
    /// [`Snapshot::inspect_endpoint`]): no API key opens it.
    pub admin_inspector_only: bool,
}

/// A server's membership in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCfg {
    pub server_id: String,
    pub server_name: String,
    pub active: bool,
}

/// A namespace: its servers in order, how it names tools and prompts, and how it shapes
/// its tools.
#[derive(Debug, Clone)]
pub struct NamespaceCfg {
    pub id: String,
    pub name: String,
    pub members: Vec<MemberCfg>,
    pub prefix: PrefixMode,
    pub shaping: Shaping,
    /// A one-server namespace that exists only for the admins' inspector (never started
    /// eagerly, never listed).
    pub inspect_only: bool,
    /// Tool-call arguments and results go into the audit log (redacted, capped).
    pub audit_payloads: bool,
}

impl NamespaceCfg {
    /// Active members only.
    pub fn active(&self) -> impl Iterator<Item = &MemberCfg> {
        self.members.iter().filter(|m| m.active)
    }

    /// Whether tool and prompt names carry the `server__` prefix right now.
    pub fn prefixed(&self) -> bool {
        self.prefix.prefixes(self.active().count())
    }

    /// The active member called `server_name`.
    pub fn active_member(&self, server_name: &str) -> Option<&MemberCfg> {
        self.active().find(|m| m.server_name == server_name)
    }
}

/// An API key that may be used (only its hash is known).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    /// May use the admin API (`/api/v1/…`).
    pub admin: bool,
    /// The owner's user id; `None`: a public key (opens public endpoints only).
    pub owner: Option<String>,
    /// The owner is disabled: the key opens nothing.
    pub owner_disabled: bool,
    /// When it stops working (epoch ms); `None`: never.
    pub expires_at: Option<i64>,
}

impl KeyInfo {
    /// Whether the key has expired at `now_ms`.
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_ms)
    }
}

/// Everything the data path reads, at one config version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub endpoints: HashMap<String, Arc<EndpointCfg>>,
    pub namespaces: HashMap<String, Arc<NamespaceCfg>>,
    pub keys: HashMap<[u8; 32], KeyInfo>,
    /// Users by id (for inspector tokens: who still exists and is enabled).
    pub users: HashMap<String, UserCfg>,
}

/// What the data path knows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCfg {
    pub email: String,
    pub disabled: bool,
    pub admin: bool,
}

impl Snapshot {
    /// The name of the hidden endpoint through which an admin's inspector reaches one server
    /// (`~<server>`: no endpoint name can hold `~`).
    pub fn inspect_endpoint(server_name: &str) -> String {
        format!("~{server_name}")
    }
}
