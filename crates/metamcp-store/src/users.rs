//! Accounts (`users`, `user_identities`, `setup_tokens` tables): who may sign in, with which
//! role, and how the first admin of a fresh instance is made.
//!
//! Creating, changing and removing users is configuration ([`Tx`] methods that bump the
//! version): a disabled user's keys and objects must stop working on every replica. Signing
//! in is not: reading a user for sign-in and stamping `last_login_at` are [`Store`] methods
//! that never bump. The store keeps password hashes as given (PHC strings made by the
//! caller); it never sees a password.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{bit, flag, new_id, now_ms};
use crate::error::on_unique;
use crate::{RemovedObjects, Store, StoreError, Tx};

/// A user's role: admins run the instance, members their own objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// `admin` or `member` (any case).
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as listed (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// Whether the account can sign in with a password.
    pub has_password: bool,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

/// What sign-in needs: the record and its password hash.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: UserRecord,
    pub password_hash: Option<String>,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// Already validated and lower-cased by the caller.
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: Option<&'a str>,
    pub role: Role,
}

/// Whether the first web sign-up may become admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSetup {
    /// A fresh instance with no admin yet: the first sign-up becomes admin (from loopback,
    /// or with the setup token).
    Open,
    /// Admins come from the CLI (an upgraded store, or an admin exists already).
    Closed,
}

const USER_COLUMNS: &str =
    "id, email, name, password_hash, role, disabled, created_at, last_login_at";

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<UserCredentials, StoreError> {
    let role: String = r.try_get("role")?;
    let password_hash: Option<String> = r.try_get("password_hash")?;
    Ok(UserCredentials {
        user: UserRecord {
            id: r.try_get("id")?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Invalid(format!("stored role {role:?} is unknown")))?,
            disabled: flag(r.try_get("disabled")?),
            has_password: password_hash.is_some(),
            created_at: r.try_get("created_at")?,
            last_login_at: r.try_get("last_login_at")?,
        },
        password_hash,
    })
}

/// SHA-256 (hex) of a setup token, the only form stored.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A value for one column of `users`.
enum Value<'a> {
    Text(&'a str),
    Int(i64),
}

impl Tx {
    /// Creates a user. `Duplicate` when the email is taken.
    pub async fn create_user(&mut self, new: &NewUser<'_>) -> Result<UserRecord, StoreError> {
        let now = now_ms();
        let record = UserRecord {
            id: new_id(),
            email: new.email.to_owned(),
            name: new.name.to_owned(),
            role: new.role,
            disabled: false,
            has_password: new.password_hash.is_some(),
            created_at: now,
            last_login_at: None,
        };
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, role, disabled, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
        )
        .bind(&record.id)
        .bind(new.email)
        .bind(new.name)
        .bind(new.password_hash)
        .bind(new.role.as_str())
        .bind(now)
        .execute(self.write_conn()?)
        .await
        .map_err(on_unique("user", new.email))?;
        if new.role == Role::Admin {
            self.close_web_setup().await?;
        }
        self.mark_changed();
        Ok(record)
    }

    /// Every user, ordered by email.
    pub async fn list_users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY email"
        )))
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(|r| Ok(user_from_row(r)?.user)).collect()
    }

    /// The user with this (lower-cased) email.
    pub async fn user_by_email(&mut self, email: &str) -> Result<UserRecord, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        )))
        .bind(email)
        .fetch_optional(self.conn())
        .await?
        .ok_or_else(|| StoreError::not_found("user", email))?;
        Ok(user_from_row(&row)?.user)
    }

    /// The user with this id.
    pub async fn user_by_id(&mut self, id: &str) -> Result<UserRecord, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        .ok_or_else(|| StoreError::not_found("user", id))?;
        Ok(user_from_row(&row)?.user)
    }

    /// How many enabled admins there are.
    pub async fn count_active_admins(&mut self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0")
                .fetch_one(self.conn())
                .await?,
        )
    }

    /// How many users there are.
    pub async fn count_users(&mut self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.conn())
            .await?)
    }

    /// Sets a user's role.
    pub async fn set_user_role(&mut self, id: &str, role: Role) -> Result<(), StoreError> {
        self.update_user(id, "role = $2", Value::Text(role.as_str()))
            .await?;
        if role == Role::Admin {
            self.close_web_setup().await?;
        }
        Ok(())
    }

    /// Replaces a user's password hash and ends all their browser sessions.
    pub async fn set_user_password(&mut self, id: &str, hash: &str) -> Result<(), StoreError> {
        self.update_user(id, "password_hash = $2", Value::Text(hash))
            .await?;
        self.end_user_sessions(id).await
    }

    /// Disables (or re-enables) a user; disabling ends all their browser sessions.
    pub async fn set_user_disabled(&mut self, id: &str, disabled: bool) -> Result<(), StoreError> {
        self.update_user(id, "disabled = $2", Value::Int(bit(disabled)))
            .await?;
        if disabled {
            self.end_user_sessions(id).await?;
        }
        Ok(())
    }

    /// Renames a user (display name).
    pub async fn set_user_name(&mut self, id: &str, name: &str) -> Result<(), StoreError> {
        self.update_user(id, "name = $2", Value::Text(name)).await
    }

    /// Removes a user, their identities and sessions, and every object they own (their
    /// private servers, namespaces, endpoints and keys), whose names it returns.
    pub async fn remove_user(&mut self, id: &str) -> Result<RemovedObjects, StoreError> {
        let removed = self.remove_owned(id).await?;
        let conn = self.write_conn()?;
        // why: explicit, not only ON DELETE CASCADE: SQLite enforces foreign keys only when
        // the connection enables them.
        for table in ["browser_sessions", "user_identities"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE user_id = $1"
            )))
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("user", id));
        }
        self.mark_changed();
        Ok(removed)
    }

    /// Links an OpenID identity to a user (idempotent for the same user).
    pub async fn link_identity(
        &mut self,
        user_id: &str,
        issuer: &str,
        subject: &str,
        email: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_identities (issuer, subject, user_id, email, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (issuer, subject) DO NOTHING",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user_id)
        .bind(email)
        .bind(now_ms())
        .execute(self.write_conn()?)
        .await?;
        self.mark_changed();
        Ok(())
    }

    /// Whether the first web sign-up may still become admin.
    pub async fn web_setup(&mut self) -> Result<WebSetup, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'web_admin_setup'")
                .fetch_optional(self.conn())
                .await?;
        Ok(if v == Some(1) {
            WebSetup::Open
        } else {
            WebSetup::Closed
        })
    }

    /// Ends web setup: an admin exists; setup tokens are void.
    async fn close_web_setup(&mut self) -> Result<(), StoreError> {
        let conn = self.write_conn()?;
        sqlx::query("UPDATE meta SET value = 0 WHERE key = 'web_admin_setup'")
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM setup_tokens")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn update_user(
        &mut self,
        id: &str,
        set: &'static str,
        value: Value<'_>,
    ) -> Result<(), StoreError> {
        // why: `set` is one of this module's constant assignments, never caller text.
        let sql = format!("UPDATE users SET {set}, updated_at = $3 WHERE id = $1");
        let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
        let q = match value {
            Value::Text(t) => q.bind(t.to_owned()),
            Value::Int(i) => q.bind(i),
        };
        let done = q.bind(now_ms()).execute(self.write_conn()?).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("user", id));
        }
        self.mark_changed();
        Ok(())
    }

    async fn end_user_sessions(&mut self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1")
            .bind(id)
            .execute(self.write_conn()?)
            .await?;
        Ok(())
    }
}

impl Store {
    /// The user with this (lower-cased) email and their password hash, for sign-in.
    pub async fn user_credentials(
        &self,
        email: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        )))
        .bind(email)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user an OpenID identity is linked to.
    pub async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.password_hash, u.role, u.disabled, u.created_at, \
             u.last_login_at FROM user_identities i JOIN users u ON u.id = i.user_id \
             WHERE i.issuer = $1 AND i.subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?.map(|c| c.user))
    }

    /// Stamps a successful sign-in (not configuration: no version bump).
    pub async fn touch_last_login(&self, user_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Replaces the setup token (only while web setup is open and no user exists); returns
    /// whether it was stored. Earlier tokens are void.
    pub async fn replace_setup_token(&self, token: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        if tx.web_setup().await? == WebSetup::Closed || tx.count_users().await? > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let conn = tx.write_conn()?;
        sqlx::query("DELETE FROM setup_tokens")
            .execute(&mut *conn)
            .await?;
        sqlx::query("INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2)")
            .bind(token_hash(token))
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Tx {
    /// Whether `token` is the current setup token (compared by hash).
    pub async fn setup_token_matches(&mut self, token: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1")
            .bind(token_hash(token))
            .fetch_one(self.conn())
            .await?;
        Ok(n > 0)
    }
}
