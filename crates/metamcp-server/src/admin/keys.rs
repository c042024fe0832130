//! API keys as an operator manages them: create (shown once), list (never the value),
//! revoke. An admin key may also use the admin API.

use metamcp_store::ApiKeyRecord;
use serde::Serialize;

use super::{Access, AdminError, Cx};

/// One key as listed: never its value.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub name: String,
    /// The key's first 10 characters, to recognise it.
    pub prefix: String,
    pub active: bool,
    pub admin: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
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
        name: r.name,
        prefix: r.prefix,
        active: r.active,
        admin: r.admin,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
    }
}

/// Creates a key; `admin`: it may use the admin API.
pub async fn create(cx: &mut Cx<'_>, name: &str, admin: bool) -> Result<CreatedKey, AdminError> {
    cx.require(Access::ManageKeys)?;
    let (rec, key) = cx.tx.create_api_key(name, admin).await?;
    Ok(CreatedKey {
        info: view(rec),
        key,
    })
}

/// Every key, active and revoked, by name.
pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<KeyView>, AdminError> {
    cx.require(Access::Read)?;
    Ok(cx.tx.list_api_keys().await?.into_iter().map(view).collect())
}

/// Revokes a key (running gateways refuse it within a second).
pub async fn revoke(cx: &mut Cx<'_>, name: &str) -> Result<(), AdminError> {
    cx.require(Access::ManageKeys)?;
    cx.tx.revoke_api_key(name).await?;
    Ok(())
}
