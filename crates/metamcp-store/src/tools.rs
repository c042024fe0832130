//! Tools discovered on upstream servers (`tools` table), kept so the CLI and the admin side
//! can show them without connecting, and so tool shaping (`namespace_tools`) can match
//! patterns and check name collisions against what upstreams really expose.
//!
//! [`Store::sync_tools`] makes the stored set equal to what the server reported. It is the
//! gateway recording what it saw, not a configuration change, so it does not bump
//! `config_version` (the gateway would otherwise wake itself up on every reconnect).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{new_id, now_ms};
use crate::error::on_foreign_key;
use crate::{Store, StoreError, Tx};

/// One tool as an upstream reported it in `tools/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveredTool {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
    pub annotations: Option<serde_json::Value>,
}

impl Store {
    /// Stores `tools` as the server's current tool set: new names are inserted, changed ones
    /// updated, names no longer reported deleted (with their namespace mappings). Unchanged
    /// rows are not rewritten. `NotFound` if the server id does not exist.
    pub async fn sync_tools(
        &self,
        server_id: &str,
        tools: &[DiscoveredTool],
    ) -> Result<(), StoreError> {
        // Last one wins if a server reports a name twice.
        let wanted: BTreeMap<&str, &DiscoveredTool> =
            tools.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found("server", server_id));
        }
        let rows = sqlx::query(
            "SELECT id, name, title, description, input_schema, annotations FROM tools \
             WHERE server_id = $1",
        )
        .bind(server_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut stored = BTreeMap::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            stored.insert(row.try_get::<String, _>("name")?, (id, tool(row)?));
        }
        let now = now_ms();
        for (name, (id, old)) in &stored {
            match wanted.get(name.as_str()) {
                None => {
                    sqlx::query("DELETE FROM tools WHERE id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
                Some(new) if *new != old => {
                    sqlx::query(
                        "UPDATE tools SET title = $1, description = $2, input_schema = $3, \
                         annotations = $4, updated_at = $5 WHERE id = $6",
                    )
                    .bind(new.title.as_deref())
                    .bind(new.description.as_deref())
                    .bind(new.input_schema.to_string())
                    .bind(new.annotations.as_ref().map(ToString::to_string))
                    .bind(now)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                }
                Some(_) => {}
            }
        }
        for (name, new) in wanted.iter().filter(|(n, _)| !stored.contains_key(**n)) {
            sqlx::query(
                "INSERT INTO tools (id, server_id, name, title, description, input_schema, \
                 annotations, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(new_id())
            .bind(server_id)
            .bind(*name)
            .bind(new.title.as_deref())
            .bind(new.description.as_deref())
            .bind(new.input_schema.to_string())
            .bind(new.annotations.as_ref().map(ToString::to_string))
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(on_foreign_key("server", server_id))?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Tx {
    /// The stored tools of a server, ordered by name (empty for an unknown id).
    pub async fn list_tools(&mut self, server_id: &str) -> Result<Vec<DiscoveredTool>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, title, description, input_schema, annotations FROM tools \
             WHERE server_id = $1",
        )
        .bind(server_id)
        .fetch_all(self.conn())
        .await?;
        let mut out = rows.iter().map(tool).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn tool(row: &sqlx::any::AnyRow) -> Result<DiscoveredTool, StoreError> {
    let name: String = row.try_get("name")?;
    let corrupt = |e: serde_json::Error| {
        StoreError::Invalid(format!("stored tool {name:?} has malformed JSON: {e}"))
    };
    let schema: String = row.try_get("input_schema")?;
    let annotations: Option<String> = row.try_get("annotations")?;
    Ok(DiscoveredTool {
        input_schema: serde_json::from_str(&schema).map_err(corrupt)?,
        annotations: annotations
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        name,
    })
}
