//! API keys as an operator manages them: create (shown once), list (never the value),
//! revoke. An admin key may also use the admin API.
//!
//! Keys follow MetaMCP: a public key (no owner) opens public endpoints; a user's key opens
//! that user's private endpoints and the public ones. A member creates only keys of their
//! own (never admin keys); admins create public keys, admin keys (always public) or keys
//! for a named user.

use metamcp_store::{ApiKeyRecord, Owned};
use serde::Serialize;

use super::{Access, AdminError, Cx, tenancy};

/// One key as listed: never its value.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub name: String,
    /// The owner's email; `None`: a public key.
    pub owner: Option<String>,
    /// The key's first 10 characters, to recognise it.
    pub prefix: String,
    pub active: bool,
    pub admin: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// When a request last used it (epoch ms; stamped at most once a minute).
    pub last_used_at: Option<i64>,
    /// When it stops working (epoch ms); `None`: never.
    pub expires_at: Option<i64>,
}

/// A key just created, with its value (shown this once).
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: KeyView,
    pub key: String,
}

fn view(r: ApiKeyRecord) -> KeyView {
    KeyView {
        owner: tenancy::email(r.owner.as_ref()),
        name: r.name,
        prefix: r.prefix,
        active: r.active,
        admin: r.admin,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
        last_used_at: r.last_used_at,
        expires_at: r.expires_at,
    }
}

/// Creates a key with the actor's default owner ([`create_owned`]).
pub async fn create(cx: &mut Cx<'_>, name: &str, admin: bool) -> Result<CreatedKey, AdminError> {
    create_owned(cx, name, admin, None).await
}

/// Creates a key; `admin`: it may use the admin API. `owner`: an email (`None`: the actor's
/// default — public for admins, themselves for a member).
pub async fn create_owned(
    cx: &mut Cx<'_>,
    name: &str,
    admin: bool,
    owner: Option<&str>,
) -> Result<CreatedKey, AdminError> {
    create_expiring(cx, name, admin, owner, None).await
}

/// [`create_owned`], expiring `expires` (`90d`, `12h`, … from now; `None`: never).
pub async fn create_expiring(
    cx: &mut Cx<'_>,
    name: &str,
    admin: bool,
    owner: Option<&str>,
    expires: Option<&str>,
) -> Result<CreatedKey, AdminError> {
    let expires_at = match expires {
        None => None,
        Some(e) => {
            let ms = super::audit::parse_duration_ms(e).ok_or_else(|| {
                AdminError::Invalid(format!(
                    "expires must be a duration such as 12h, 90d or 1w, not {e:?}"
                ))
            })?;
            Some(super::audit::now_ms().saturating_add(ms))
        }
    };
    cx.require(Access::ManageKeys)?;
    if admin && !cx.actor.is_admin() {
        return Err(AdminError::Forbidden(format!(
            "{} may not create admin keys",
            cx.actor
        )));
    }
    let owner_id = cx.owner_for_new(owner).await?;
    if admin && owner_id.is_some() {
        return Err(AdminError::Invalid(
            "an admin key is public: it cannot also have an owner".into(),
        ));
    }
    let (rec, key) = cx.tx.create_api_key(name, admin).await?;
    if let Some(id) = &owner_id {
        cx.tx.set_owner(Owned::ApiKey, name, Some(id)).await?;
    }
    if expires_at.is_some() {
        cx.tx.set_api_key_expiry(name, expires_at).await?;
    }
    let owner = tenancy::owner_of(cx.tx, owner_id.as_deref()).await?;
    Ok(CreatedKey {
        info: view(ApiKeyRecord {
            owner,
            expires_at,
            ..rec
        }),
        key,
    })
}

/// Every key the actor sees (public keys and their own; admins: all), active and revoked,
/// by name.
pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<KeyView>, AdminError> {
    cx.require(Access::Read)?;
    Ok(cx
        .tx
        .list_api_keys()
        .await?
        .into_iter()
        .filter(|k| tenancy::visible(cx.actor, k.owner.as_ref()))
        .map(view)
        .collect())
}

/// Revokes a key (running gateways refuse it within a second).
pub async fn revoke(cx: &mut Cx<'_>, name: &str) -> Result<(), AdminError> {
    cx.require(Access::ManageKeys)?;
    let key = cx
        .tx
        .list_api_keys()
        .await?
        .into_iter()
        .find(|k| k.name == name)
        .ok_or_else(|| AdminError::NotFound(format!("no api key named {name:?}")))?;
    cx.require_object(Access::ManageKeys, "api key", name, key.owner.as_ref())?;
    cx.tx.revoke_api_key(name).await?;
    Ok(())
}
