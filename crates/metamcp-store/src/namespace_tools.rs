//! Tool shaping per namespace: the namespace's defaults (`new_tool_status`,
//! `max_name_length` on `namespaces`) and one rule per upstream tool (`namespace_tools`:
//! status and overrides), keyed by server and upstream tool name so a rule may precede the
//! tool's discovery and outlives the upstream dropping it for a while.
//!
//! The store keeps rules as written (status text, annotations as JSON text) and does not
//! interpret them: the gateway parses them into `metamcp_core::shaping::Shaping` and denies
//! every tool of a namespace whose rules it cannot read.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::db::now_ms;
use crate::{StoreError, Tx, namespaces, servers};

/// One stored rule: `None` fields leave the upstream's value (or the namespace default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ToolRuleRecord {
    /// Filled when read; ignored when written (the server is found by name).
    pub server_id: String,
    pub server_name: String,
    /// The tool's name on its upstream.
    pub tool: String,
    /// `ACTIVE`, `INACTIVE`, or `None` for the namespace's default.
    pub status: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// A JSON object, as text.
    pub annotations: Option<String>,
}

impl ToolRuleRecord {
    /// True when the rule says nothing (writing it deletes the row).
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.name.is_none()
            && self.title.is_none()
            && self.description.is_none()
            && self.annotations.is_none()
    }
}

/// A change to a namespace's shaping, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct ShapingChange {
    pub new_tools_enabled: Option<bool>,
    /// `Some(None)` removes the limit.
    pub max_name_length: Option<Option<i64>>,
    /// Rules to write whole (an empty rule deletes the tool's row).
    pub rules: Vec<ToolRuleRecord>,
}

impl Tx {
    /// Applies `change` to the namespace. `NotFound` for an unknown namespace, or a rule
    /// naming a server that is not a member of it.
    pub async fn change_shaping(
        &mut self,
        namespace: &str,
        change: &ShapingChange,
    ) -> Result<(), StoreError> {
        let tx = self.write_conn()?;
        let ns_id = namespaces::id_by_name(tx, namespace).await?;
        if let Some(on) = change.new_tools_enabled {
            sqlx::query("UPDATE namespaces SET new_tool_status = $1 WHERE id = $2")
                .bind(if on { "ACTIVE" } else { "INACTIVE" })
                .bind(&ns_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(limit) = change.max_name_length {
            sqlx::query("UPDATE namespaces SET max_name_length = $1 WHERE id = $2")
                .bind(limit)
                .bind(&ns_id)
                .execute(&mut *tx)
                .await?;
        }
        let now = now_ms();
        for rule in &change.rules {
            let server_id = servers::id_by_name(tx, &rule.server_name).await?;
            let member: Option<String> = sqlx::query_scalar(
                "SELECT server_id FROM namespace_servers WHERE namespace_id = $1 AND server_id = $2",
            )
            .bind(&ns_id)
            .bind(&server_id)
            .fetch_optional(&mut *tx)
            .await?;
            if member.is_none() {
                return Err(StoreError::not_found(
                    "namespace member",
                    format!("{namespace}/{}", rule.server_name),
                ));
            }
            if rule.is_empty() {
                sqlx::query(
                    "DELETE FROM namespace_tools WHERE namespace_id = $1 AND server_id = $2 \
                     AND tool_name = $3",
                )
                .bind(&ns_id)
                .bind(&server_id)
                .bind(&rule.tool)
                .execute(&mut *tx)
                .await?;
                continue;
            }
            sqlx::query(
                "INSERT INTO namespace_tools (namespace_id, server_id, tool_name, status, \
                 override_name, override_title, override_description, override_annotations, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (namespace_id, server_id, tool_name) DO UPDATE SET \
                 status = excluded.status, override_name = excluded.override_name, \
                 override_title = excluded.override_title, \
                 override_description = excluded.override_description, \
                 override_annotations = excluded.override_annotations, \
                 updated_at = excluded.updated_at",
            )
            .bind(&ns_id)
            .bind(&server_id)
            .bind(&rule.tool)
            .bind(rule.status.as_deref())
            .bind(rule.name.as_deref())
            .bind(rule.title.as_deref())
            .bind(rule.description.as_deref())
            .bind(rule.annotations.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        self.mark_changed();
        Ok(())
    }
}

/// The rules of every namespace (or of the one named), as `(namespace id, rule)`, ordered by
/// server name and tool.
pub(crate) async fn load_rules(
    conn: &mut AnyConnection,
    only: Option<&str>,
) -> Result<Vec<(String, ToolRuleRecord)>, StoreError> {
    let rows = match only {
        Some(name) => {
            sqlx::query(
                "SELECT t.namespace_id, t.server_id, s.name AS server_name, t.tool_name, \
                 t.status, t.override_name, t.override_title, t.override_description, \
                 t.override_annotations FROM namespace_tools t \
                 JOIN servers s ON s.id = t.server_id \
                 JOIN namespaces n ON n.id = t.namespace_id WHERE n.name = $1",
            )
            .bind(name)
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query(
                "SELECT t.namespace_id, t.server_id, s.name AS server_name, t.tool_name, \
                 t.status, t.override_name, t.override_title, t.override_description, \
                 t.override_annotations FROM namespace_tools t \
                 JOIN servers s ON s.id = t.server_id",
            )
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push((
            row.try_get("namespace_id")?,
            ToolRuleRecord {
                server_id: row.try_get("server_id")?,
                server_name: row.try_get("server_name")?,
                tool: row.try_get("tool_name")?,
                status: row.try_get("status")?,
                name: row.try_get("override_name")?,
                title: row.try_get("override_title")?,
                description: row.try_get("override_description")?,
                annotations: row.try_get("override_annotations")?,
            },
        ));
    }
    out.sort_by(|a, b| (&a.1.server_name, &a.1.tool).cmp(&(&b.1.server_name, &b.1.tool)));
    Ok(out)
}
