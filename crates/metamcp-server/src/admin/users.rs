//! User accounts as an admin manages them (`metamcp user …`, `/api/v1/users`): create, list,
//! change role, password, disabled state, remove. Passwords arrive already hashed (the
//! caller hashes on the blocking pool before the transaction begins); users are named by
//! email.
//!
//! Rule: an instance keeps at least one enabled admin — removing, demoting or disabling the
//! last one is refused, except to the local superuser (the CLI), who can always repair.

use metamcp_store::{NewUser, RemovedObjects, Role, UserRecord};

use super::{Access, Actor, AdminError, Cx};
use crate::account::{normalize_email, normalize_name};

/// A user to create.
#[derive(Debug, Clone)]
pub struct Create<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    /// An Argon2id PHC string; `None`: the account signs in only through SSO.
    pub password_hash: Option<&'a str>,
    pub role: Role,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    pub name: Option<&'a str>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<&'a str>,
}

fn email_of(raw: &str) -> Result<String, AdminError> {
    normalize_email(raw).map_err(AdminError::Invalid)
}

pub async fn create(cx: &mut Cx<'_>, new: &Create<'_>) -> Result<UserRecord, AdminError> {
    cx.require(Access::ManageUsers)?;
    let email = email_of(new.email)?;
    let name = normalize_name(new.name, email.split('@').next().unwrap_or("user"))
        .map_err(AdminError::Invalid)?;
    Ok(cx
        .tx
        .create_user(&NewUser {
            email: &email,
            name: &name,
            password_hash: new.password_hash,
            role: new.role,
        })
        .await?)
}

pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<UserRecord>, AdminError> {
    cx.require(Access::ManageUsers)?;
    Ok(cx.tx.list_users().await?)
}

pub async fn get(cx: &mut Cx<'_>, email: &str) -> Result<UserRecord, AdminError> {
    cx.require(Access::ManageUsers)?;
    Ok(cx.tx.user_by_email(&email_of(email)?).await?)
}

/// Applies `change` to the user with `email`; returns the user as it is now.
pub async fn update(
    cx: &mut Cx<'_>,
    email: &str,
    change: &Change<'_>,
) -> Result<UserRecord, AdminError> {
    cx.require(Access::ManageUsers)?;
    let user = cx.tx.user_by_email(&email_of(email)?).await?;
    let loses_admin = user.role == Role::Admin
        && !user.disabled
        && (change.role == Some(Role::Member) || change.disabled == Some(true));
    if loses_admin {
        keep_an_admin(cx, &user).await?;
    }
    if let Some(name) = change.name {
        let name = normalize_name(Some(name), &user.name).map_err(AdminError::Invalid)?;
        cx.tx.set_user_name(&user.id, &name).await?;
    }
    if let Some(role) = change.role {
        cx.tx.set_user_role(&user.id, role).await?;
    }
    if let Some(disabled) = change.disabled {
        cx.tx.set_user_disabled(&user.id, disabled).await?;
    }
    if let Some(hash) = change.password_hash {
        cx.tx.set_user_password(&user.id, hash).await?;
    }
    Ok(cx.tx.user_by_id(&user.id).await?)
}

/// Removes the user and, in the same transaction, every object they own; returns what went.
pub async fn remove(cx: &mut Cx<'_>, email: &str) -> Result<RemovedObjects, AdminError> {
    cx.require(Access::ManageUsers)?;
    let user = cx.tx.user_by_email(&email_of(email)?).await?;
    if user.role == Role::Admin && !user.disabled {
        keep_an_admin(cx, &user).await?;
    }
    Ok(cx.tx.remove_user(&user.id).await?)
}

async fn keep_an_admin(cx: &mut Cx<'_>, user: &UserRecord) -> Result<(), AdminError> {
    if matches!(cx.actor, Actor::LocalSuperuser) {
        return Ok(());
    }
    if cx.tx.count_active_admins().await? <= 1 {
        return Err(AdminError::Invalid(format!(
            "{} is the last enabled admin; make another admin first (or use \
             `metamcp user` on the gateway's machine)",
            user.email
        )));
    }
    Ok(())
}
