//! Who owns a server, namespace, endpoint or API key (`owner_id`, migration 0010): nobody
//! (public) or one user. The store records and reads owners; who may set them, and what a
//! private object may be combined with, is the admin service layer's rule.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::flag;
use crate::{StoreError, Tx};

/// The user who owns an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub id: String,
    pub email: String,
    /// The owner is disabled: their private objects and keys stop working.
    pub disabled: bool,
}

/// The kinds of object that have an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Server,
    Namespace,
    Endpoint,
    ApiKey,
}

impl Owned {
    fn table(self) -> &'static str {
        match self {
            Owned::Server => "servers",
            Owned::Namespace => "namespaces",
            Owned::Endpoint => "endpoints",
            Owned::ApiKey => "api_keys",
        }
    }

    /// How errors name the kind.
    pub fn kind(self) -> &'static str {
        match self {
            Owned::Server => "server",
            Owned::Namespace => "namespace",
            Owned::Endpoint => "endpoint",
            Owned::ApiKey => "api key",
        }
    }
}

/// The columns that read the owner of `alias` (a table name or alias with an `owner_id`
/// column): `owner_id`, `owner_email`, `owner_disabled`.
pub(crate) fn columns(alias: &str) -> String {
    format!(
        "{alias}.owner_id AS owner_id, \
         (SELECT u.email FROM users u WHERE u.id = {alias}.owner_id) AS owner_email, \
         (SELECT u.disabled FROM users u WHERE u.id = {alias}.owner_id) AS owner_disabled"
    )
}

/// The owner read by [`columns`].
pub(crate) fn from_row(row: &AnyRow) -> Result<Option<Owner>, StoreError> {
    let Some(id) = row.try_get::<Option<String>, _>("owner_id")? else {
        return Ok(None);
    };
    let email: Option<String> = row.try_get("owner_email")?;
    let disabled: Option<i64> = row.try_get("owner_disabled")?;
    Ok(Some(Owner {
        id,
        // why: a dangling owner (its user row gone without the cascade) fails closed: it is
        // nobody's email and counts as disabled.
        disabled: email.is_none() || disabled.is_some_and(flag),
        email: email.unwrap_or_default(),
    }))
}

/// Names of the objects a removed user owned, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemovedObjects {
    pub servers: Vec<String>,
    pub namespaces: Vec<String>,
    pub endpoints: Vec<String>,
    pub api_keys: Vec<String>,
}

impl Tx {
    /// Gives the object `name` of `kind` to `owner` (a user id), or makes it public (`None`).
    pub async fn set_owner(
        &mut self,
        kind: Owned,
        name: &str,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        // why: the table name is one of `Owned`'s constants, never caller text.
        let sql = format!("UPDATE {} SET owner_id = $1 WHERE name = $2", kind.table());
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(kind.kind(), name));
        }
        self.mark_changed();
        Ok(())
    }

    /// Removes every object `user_id` owns (endpoints, namespaces, servers, keys); returns
    /// their names. Part of [`Tx::remove_user`].
    pub(crate) async fn remove_owned(
        &mut self,
        user_id: &str,
    ) -> Result<RemovedObjects, StoreError> {
        let conn = self.write_conn()?;
        let mut out = RemovedObjects::default();
        for (kind, list) in [
            (Owned::Endpoint, &mut out.endpoints),
            (Owned::Namespace, &mut out.namespaces),
            (Owned::Server, &mut out.servers),
            (Owned::ApiKey, &mut out.api_keys),
        ] {
            let table = kind.table();
            // why: endpoints of a removed namespace go with it (cascade); report them too.
            let also = if kind == Owned::Endpoint {
                " OR namespace_id IN (SELECT id FROM namespaces WHERE owner_id = $1)"
            } else {
                ""
            };
            let mut names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM {table} WHERE owner_id = $1{also}"
            )))
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE owner_id = $1{also}"
            )))
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
            names.sort();
            *list = names;
        }
        Ok(out)
    }
}
