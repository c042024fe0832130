//! OAuth grants and clients as people manage them: `metamcp oauth …` and `/api/v1/oauth/…`.
//!
//! A grant is one user's consent to one client for one endpoint. Everyone sees and revokes
//! their own grants; admins (the CLI, admin keys, admin users) see and revoke everyone's.
//! Registered clients (dynamic registration) are listed and removed by admins only; removing
//! one revokes its grants. Revoking stops the grant's refresh tokens at once everywhere;
//! access tokens already issued end within their lifetime (at most five minutes; this
//! replica's at once — see `oauth::access`). These rows are not configuration: no version
//! bump, no reload. A revocation or removal is recorded in the audit log (kind `admin`) in
//! the transaction that makes it.

use std::collections::HashMap;

use metamcp_store::{OAuthGrant, Store};
use serde::Serialize;

use super::{Access, Actor, AdminError};

/// One grant as its user or an admin sees it.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    /// The user's email (their id when the user is gone).
    pub user: String,
    /// The endpoint's name (its id when it is gone).
    pub endpoint: String,
    pub resource: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    /// Neither revoked nor past its end.
    pub active: bool,
}

/// One registered client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub created_from: Option<String>,
}

async fn names(
    store: &Store,
) -> Result<(HashMap<String, String>, HashMap<String, String>), AdminError> {
    let mut tx = store.begin_read().await?;
    let users = tx
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    let endpoints = tx
        .list_endpoints()
        .await?
        .into_iter()
        .map(|e| (e.id, e.name))
        .collect();
    tx.commit().await?;
    Ok((users, endpoints))
}

fn view(
    g: OAuthGrant,
    users: &HashMap<String, String>,
    eps: &HashMap<String, String>,
    now: i64,
) -> GrantView {
    GrantView {
        active: g.active_at(now),
        user: users.get(&g.user_id).cloned().unwrap_or(g.user_id),
        endpoint: eps.get(&g.endpoint_id).cloned().unwrap_or(g.endpoint_id),
        id: g.id,
        client_id: g.client_id,
        client_name: g.client_name,
        resource: g.resource,
        scope: g.scope,
        created_at: g.created_at,
        expires_at: g.expires_at,
        last_used_at: g.last_used_at,
        revoked_at: g.revoked_at,
        revoked_reason: g.revoked_reason,
    }
}

/// The grants the actor may see: their own, or (admins) everyone's, newest first.
pub async fn list_grants(
    store: &Store,
    actor: &Actor,
    now: i64,
) -> Result<Vec<GrantView>, AdminError> {
    if !actor.may(Access::Read) {
        return Err(AdminError::Forbidden(format!(
            "{actor} may not read grants"
        )));
    }
    let mine = if actor.is_admin() {
        None
    } else {
        actor.user_id()
    };
    if !actor.is_admin() && mine.is_none() {
        return Ok(Vec::new());
    }
    let grants = store.list_oauth_grants(mine).await?;
    let (users, eps) = names(store).await?;
    Ok(grants
        .into_iter()
        .map(|g| view(g, &users, &eps, now))
        .collect())
}

/// Revokes a grant the actor may touch (their own; admins: any). A grant the actor may not
/// see is answered as missing.
pub async fn revoke_grant(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: i64,
) -> Result<GrantView, AdminError> {
    let missing = || AdminError::NotFound(format!("no grant {id:?}"));
    let g = store.get_oauth_grant(id).await?.ok_or_else(missing)?;
    if !actor.is_admin() && actor.user_id() != Some(g.user_id.as_str()) {
        return Err(missing());
    }
    let reason = if actor.user_id() == Some(g.user_id.as_str()) {
        "revoked by its user".to_owned()
    } else {
        format!("revoked by {actor}")
    };
    // why: a revocation by a person is an admin change of its own: recorded with it, in
    // its transaction (not configuration, so no version bump).
    let record = super::audit::change_record(actor, || format!("oauth revoke {id}"), now);
    store
        .revoke_oauth_grant(id, &reason, now, Some(&record))
        .await?;
    let g = store.get_oauth_grant(id).await?.ok_or_else(missing)?;
    let (users, eps) = names(store).await?;
    Ok(view(g, &users, &eps, now))
}

/// Every registered client (admins only).
pub async fn list_clients(store: &Store, actor: &Actor) -> Result<Vec<ClientView>, AdminError> {
    if !actor.is_admin() {
        return Err(AdminError::Forbidden(
            "only administrators list registered OAuth clients".into(),
        ));
    }
    Ok(store
        .list_oauth_clients()
        .await?
        .into_iter()
        .map(|c| ClientView {
            client_id: c.client_id,
            client_name: c.client_name,
            redirect_uris: c.redirect_uris,
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            created_from: c.created_from,
        })
        .collect())
}

/// Removes a registered client and revokes its grants (admins only).
pub async fn remove_client(
    store: &Store,
    actor: &Actor,
    client_id: &str,
    now: i64,
) -> Result<(), AdminError> {
    if !actor.is_admin() {
        return Err(AdminError::Forbidden(
            "only administrators remove registered OAuth clients".into(),
        ));
    }
    let record =
        super::audit::change_record(actor, || format!("oauth remove-client {client_id}"), now);
    store
        .remove_oauth_client(client_id, now, Some(&record))
        .await
        .map_err(|e| match e {
            metamcp_store::StoreError::NotFound { .. } => {
                AdminError::NotFound(format!("no registered client {client_id:?}"))
            }
            e => e.into(),
        })
}

#[cfg(test)]
mod scenarios {
    //! Revoking a grant and removing a client are recorded with the change, on both backends.

    use metamcp_store::testing::{Ctx, oauth_grant};
    use metamcp_store::{OAuthClient, Role};

    use super::*;
    use crate::admin::audit::{AuditQuery, now_ms, query, with_op};

    metamcp_store::both_backends!(revocations_and_removals_are_audited);

    /// The `admin` records, oldest first: (face, principal, operation).
    async fn admin_records(store: &Store) -> Vec<(String, String, String)> {
        let page = crate::admin::read(store, &Actor::LocalSuperuser, async |cx| {
            query(cx, &AuditQuery::default(), now_ms()).await
        })
        .await
        .unwrap();
        let mut out: Vec<_> = page
            .records
            .into_iter()
            .filter(|r| r.kind == "admin")
            .map(|r| {
                (
                    r.face.unwrap_or_default(),
                    r.principal.as_deref().unwrap_or_default().to_owned(),
                    r.tool.as_deref().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        out.reverse();
        out
    }

    async fn revocations_and_removals_are_audited(ctx: Ctx) {
        let store = ctx.open().await;
        let now = now_ms();
        let client = OAuthClient {
            client_id: "mcp_client_a".into(),
            client_name: Some("Agent".into()),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            created_at: now,
            last_used_at: None,
            created_from: None,
        };
        store.insert_oauth_client(&client, 10, 0).await.unwrap();
        for (id, user) in [("g1", "u-ada"), ("g2", "u-bob"), ("g3", "u-bob")] {
            store
                .create_oauth_grant(&oauth_grant(id, user, now), &format!("refresh-{id}"))
                .await
                .unwrap();
        }
        let ada = Actor::User {
            id: "u-ada".into(),
            email: "ada@example.com".into(),
            role: Role::Member,
        };
        // Someone else's grant is answered as missing: nothing revoked, nothing recorded.
        revoke_grant(&store, &ada, "g2", now).await.unwrap_err();
        assert!(admin_records(&store).await.is_empty());
        // Her own, from the dashboard (no face named the operation).
        revoke_grant(&store, &ada, "g1", now).await.unwrap();
        // An admin key through the API; then the same grant again: already revoked, so
        // nothing changes and nothing more is recorded.
        let key = Actor::AdminKey {
            id: "k1".into(),
            name: "ops".into(),
        };
        let op = "DELETE /api/v1/oauth/grants/g2".to_owned();
        with_op("api", op.clone(), revoke_grant(&store, &key, "g2", now))
            .await
            .unwrap();
        with_op("api", op, revoke_grant(&store, &key, "g2", now))
            .await
            .unwrap();
        // A member may not remove a client: refused, not recorded; the CLI may.
        remove_client(&store, &ada, "mcp_client_a", now)
            .await
            .unwrap_err();
        with_op(
            "cli",
            "oauth remove-client".into(),
            remove_client(&store, &Actor::LocalSuperuser, "mcp_client_a", now),
        )
        .await
        .unwrap();
        let own = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            admin_records(&store).await,
            [
                own("web", "ada@example.com", "oauth revoke g1"),
                own("api", "ops", "DELETE /api/v1/oauth/grants/g2"),
                own("cli", "cli", "oauth remove-client"),
            ]
        );
        // Removing the client revoked its last grant with it.
        let g3 = store.get_oauth_grant("g3").await.unwrap().unwrap();
        assert_eq!(g3.revoked_reason.as_deref(), Some("client removed"));
    }
}
