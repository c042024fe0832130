//! Endpoints (`endpoints` table): the public names under which a namespace is served
//! (`/metamcp/<endpoint>/…`) and how callers must authenticate there.
//!
//! An endpoint belongs to exactly one namespace and disappears with it (cascade).

use metamcp_core::validate_object_name;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{bit, flag, new_id, now_ms};
use crate::error::on_unique;
use crate::{Store, StoreError, changes, namespaces};

const SELECT: &str = "SELECT e.id, e.name, e.namespace_id, n.name AS namespace_name, \
                      e.description, e.api_key_auth, e.query_auth, e.created_at \
                      FROM endpoints e JOIN namespaces n ON n.id = e.namespace_id";

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRecord {
    pub id: String,
    pub name: String,
    pub namespace_id: String,
    pub namespace_name: String,
    pub description: Option<String>,
    /// Callers must present a valid API key.
    pub api_key_auth: bool,
    /// The key may also be given as a URL query parameter (clients that cannot set headers).
    pub query_auth: bool,
    pub created_at: i64,
}

impl Store {
    /// Creates an endpoint serving `namespace`. `NotFound` if the namespace does not exist,
    /// `Duplicate` if the name is taken.
    pub async fn create_endpoint(
        &self,
        name: &str,
        namespace: &str,
        description: Option<&str>,
        api_key_auth: bool,
        query_auth: bool,
    ) -> Result<EndpointRecord, StoreError> {
        validate_object_name("endpoint", name)?;
        let (id, now) = (new_id(), now_ms());
        let mut tx = self.begin_write().await?;
        let namespace_id = namespaces::id_by_name(&mut tx, namespace).await?;
        sqlx::query(
            "INSERT INTO endpoints (id, name, namespace_id, description, api_key_auth, \
             query_auth, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(name)
        .bind(&namespace_id)
        .bind(description)
        .bind(bit(api_key_auth))
        .bind(bit(query_auth))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(on_unique("endpoint", name))?;
        changes::bump(&mut tx, self.backend()).await?;
        tx.commit().await?;
        Ok(EndpointRecord {
            id,
            name: name.to_owned(),
            namespace_id,
            namespace_name: namespace.to_owned(),
            description: description.map(str::to_owned),
            api_key_auth,
            query_auth,
            created_at: now,
        })
    }

    /// All endpoints, ordered by name.
    pub async fn list_endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        let rows = sqlx::query(SELECT).fetch_all(self.pool()).await?;
        let mut out = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn get_endpoint(&self, name: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE e.name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(record).transpose()
    }

    pub async fn remove_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM endpoints WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("endpoint", name));
        }
        changes::bump(&mut tx, self.backend()).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn record(row: &AnyRow) -> Result<EndpointRecord, StoreError> {
    Ok(EndpointRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        namespace_id: row.try_get("namespace_id")?,
        namespace_name: row.try_get("namespace_name")?,
        description: row.try_get("description")?,
        api_key_auth: flag(row.try_get("api_key_auth")?),
        query_auth: flag(row.try_get("query_auth")?),
        created_at: row.try_get("created_at")?,
    })
}
