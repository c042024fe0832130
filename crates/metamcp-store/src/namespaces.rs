//! Namespaces (`namespaces`) and their member servers (`namespace_servers`): which upstreams
//! a namespace aggregates, in which order, and whether each is currently active.
//!
//! Removing a namespace removes its memberships, tool mappings and the endpoints exposing it
//! (foreign-key cascades); removing a server removes its memberships.

use std::collections::{BTreeMap, HashSet};

use metamcp_core::mangle::PrefixMode;
use metamcp_core::validate_object_name;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::db::{new_id, now_ms};
use crate::error::on_unique;
use crate::namespace_tools::{ToolRuleRecord, load_rules};
use crate::{Owner, StoreError, Tx, servers};

/// A namespace and its member servers, in membership order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceRecord {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub servers: Vec<NamespaceMember>,
    /// How tool and prompt names are exposed.
    pub prefix: PrefixMode,
    /// Tools without a rule are exposed (MetaMCP's default) or hidden (default-deny).
    pub new_tools_enabled: bool,
    /// Exposed names longer than this are shortened.
    pub max_name_length: Option<i64>,
    /// Per-tool rules (status, overrides), ordered by server and tool name.
    pub tools: Vec<ToolRuleRecord>,
    pub created_at: i64,
    /// Tool-call arguments and results are recorded in the audit log (redacted, capped).
    pub audit_payloads: bool,
    /// `None`: public.
    pub owner: Option<Owner>,
}

/// One server of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceMember {
    pub server_id: String,
    pub server_name: String,
    pub active: bool,
}

impl Tx {
    /// Creates a namespace with `servers` as active members, in the given order (repeats are
    /// ignored). Unknown server → `NotFound`; name taken → `Duplicate`.
    pub async fn create_namespace(
        &mut self,
        name: &str,
        description: Option<&str>,
        servers: &[String],
        prefix: PrefixMode,
    ) -> Result<NamespaceRecord, StoreError> {
        validate_object_name("namespace", name)?;
        let (id, now) = (new_id(), now_ms());
        let conn = self.write_conn()?;
        sqlx::query(
            "INSERT INTO namespaces (id, name, description, prefix_mode, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(description)
        .bind(prefix.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(on_unique("namespace", name))?;
        let mut seen = HashSet::new();
        for server in servers.iter().filter(|s| seen.insert(s.as_str())) {
            let server_id = servers::id_by_name(conn, server).await?;
            insert_member(conn, &id, &server_id).await?;
        }
        let record = load(conn, Some(name)).await?.pop();
        self.mark_changed();
        record.ok_or_else(|| StoreError::not_found("namespace", name))
    }

    /// Whether the namespace's tool-call arguments and results go into the audit log.
    pub async fn set_namespace_audit_payloads(
        &mut self,
        name: &str,
        on: bool,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE namespaces SET audit_payloads = $1 WHERE name = $2")
            .bind(crate::db::bit(on))
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("namespace", name));
        }
        self.mark_changed();
        Ok(())
    }

    /// All namespaces, ordered by name.
    pub async fn list_namespaces(&mut self) -> Result<Vec<NamespaceRecord>, StoreError> {
        load(self.conn(), None).await
    }

    pub async fn get_namespace(
        &mut self,
        name: &str,
    ) -> Result<Option<NamespaceRecord>, StoreError> {
        Ok(load(self.conn(), Some(name)).await?.pop())
    }

    /// Removes the namespace and, by cascade, the endpoints that expose it.
    pub async fn remove_namespace(&mut self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM namespaces WHERE name = $1")
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("namespace", name));
        }
        self.mark_changed();
        Ok(())
    }

    /// Changes how the namespace exposes names.
    pub async fn set_namespace_prefix(
        &mut self,
        name: &str,
        prefix: PrefixMode,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE namespaces SET prefix_mode = $1 WHERE name = $2")
            .bind(prefix.as_str())
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("namespace", name));
        }
        self.mark_changed();
        Ok(())
    }

    /// Replaces the namespace's description.
    pub async fn set_namespace_description(
        &mut self,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE namespaces SET description = $1 WHERE name = $2")
            .bind(description)
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("namespace", name));
        }
        self.mark_changed();
        Ok(())
    }

    /// Marks a member server ACTIVE or INACTIVE in the namespace. `NotFound` if the namespace
    /// or server does not exist, or the server is not a member.
    pub async fn set_namespace_server_active(
        &mut self,
        namespace: &str,
        server: &str,
        active: bool,
    ) -> Result<(), StoreError> {
        let conn = self.write_conn()?;
        let ns_id = id_by_name(conn, namespace).await?;
        let server_id = servers::id_by_name(conn, server).await?;
        let done = sqlx::query(
            "UPDATE namespace_servers SET status = $1 WHERE namespace_id = $2 AND server_id = $3",
        )
        .bind(status(active))
        .bind(ns_id)
        .bind(server_id)
        .execute(conn)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_member(namespace, server));
        }
        self.mark_changed();
        Ok(())
    }

    /// Appends an active member. `Duplicate` if the server is already a member.
    pub async fn add_namespace_server(
        &mut self,
        namespace: &str,
        server: &str,
    ) -> Result<(), StoreError> {
        let conn = self.write_conn()?;
        let ns_id = id_by_name(conn, namespace).await?;
        let server_id = servers::id_by_name(conn, server).await?;
        insert_member(conn, &ns_id, &server_id)
            .await
            .map_err(|e| match e {
                StoreError::Duplicate { .. } => StoreError::Duplicate {
                    kind: "namespace member",
                    name: format!("{namespace}/{server}"),
                },
                other => other,
            })?;
        self.mark_changed();
        Ok(())
    }

    /// Removes a member server from the namespace (the server itself stays).
    pub async fn remove_namespace_server(
        &mut self,
        namespace: &str,
        server: &str,
    ) -> Result<(), StoreError> {
        let conn = self.write_conn()?;
        let ns_id = id_by_name(conn, namespace).await?;
        let server_id = servers::id_by_name(conn, server).await?;
        let done =
            sqlx::query("DELETE FROM namespace_servers WHERE namespace_id = $1 AND server_id = $2")
                .bind(ns_id)
                .bind(server_id)
                .execute(conn)
                .await?;
        if done.rows_affected() == 0 {
            return Err(not_member(namespace, server));
        }
        self.mark_changed();
        Ok(())
    }

    /// Makes the namespace's members exactly `members` (`(server, active)`, in this order),
    /// by difference: members not listed are removed, listed ones inserted or their position
    /// and status updated where they differ; rows already right are not touched. Repeats are
    /// ignored. `NotFound` for an unknown namespace or server.
    pub async fn set_namespace_members(
        &mut self,
        namespace: &str,
        members: &[(String, bool)],
    ) -> Result<(), StoreError> {
        let conn = self.write_conn()?;
        let ns_id = id_by_name(conn, namespace).await?;
        let rows = sqlx::query(
            "SELECT server_id, status, position FROM namespace_servers WHERE namespace_id = $1",
        )
        .bind(&ns_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut stored: BTreeMap<String, (String, i64)> = BTreeMap::new();
        for row in &rows {
            stored.insert(
                row.try_get("server_id")?,
                (row.try_get("status")?, row.try_get("position")?),
            );
        }
        let mut wanted: Vec<(String, &'static str)> = Vec::with_capacity(members.len());
        for (server, active) in members {
            let id = servers::id_by_name(conn, server).await?;
            if !wanted.iter().any(|(w, _)| *w == id) {
                wanted.push((id, status(*active)));
            }
        }
        // why: keep the stored positions when the kept members stay in order and new ones
        // come last (the usual add/remove); renumber only when the order really changes.
        let mut kept_stored: Vec<(&i64, &String)> = stored
            .iter()
            .filter(|(id, _)| wanted.iter().any(|(w, _)| w == *id))
            .map(|(id, (_, p))| (p, id))
            .collect();
        kept_stored.sort();
        let kept_wanted: Vec<&String> = wanted
            .iter()
            .map(|(w, _)| w)
            .filter(|w| stored.contains_key(*w))
            .collect();
        let last_kept = wanted
            .iter()
            .rposition(|(w, _)| stored.contains_key(w))
            .map_or(0, |i| i + 1);
        let keep_positions = kept_stored.iter().map(|(_, id)| *id).eq(kept_wanted)
            && wanted[..last_kept]
                .iter()
                .all(|(w, _)| stored.contains_key(w));
        let next = stored.values().map(|(_, p)| p + 1).max().unwrap_or(0);
        let mut changed = false;
        for gone in stored
            .keys()
            .filter(|id| !wanted.iter().any(|(w, _)| w == *id))
        {
            sqlx::query("DELETE FROM namespace_servers WHERE namespace_id = $1 AND server_id = $2")
                .bind(&ns_id)
                .bind(gone)
                .execute(&mut *conn)
                .await?;
            changed = true;
        }
        let mut appended = 0i64;
        for (i, (server_id, status)) in wanted.iter().enumerate() {
            let renumbered = i64::try_from(i).unwrap_or(i64::MAX);
            match stored.get(server_id) {
                Some((s, p)) if s == status && (keep_positions || *p == renumbered) => {}
                Some((_, p)) => {
                    let position = if keep_positions { *p } else { renumbered };
                    sqlx::query(
                        "UPDATE namespace_servers SET status = $1, position = $2 \
                         WHERE namespace_id = $3 AND server_id = $4",
                    )
                    .bind(*status)
                    .bind(position)
                    .bind(&ns_id)
                    .bind(server_id)
                    .execute(&mut *conn)
                    .await?;
                    changed = true;
                }
                None => {
                    let position = if keep_positions {
                        appended += 1;
                        next + appended - 1
                    } else {
                        renumbered
                    };
                    sqlx::query(
                        "INSERT INTO namespace_servers (namespace_id, server_id, status, position) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&ns_id)
                    .bind(server_id)
                    .bind(*status)
                    .bind(position)
                    .execute(&mut *conn)
                    .await?;
                    changed = true;
                }
            }
        }
        if changed {
            self.mark_changed();
        }
        Ok(())
    }
}

fn status(active: bool) -> &'static str {
    if active { "ACTIVE" } else { "INACTIVE" }
}

fn not_member(namespace: &str, server: &str) -> StoreError {
    StoreError::not_found("namespace member", format!("{namespace}/{server}"))
}

/// Adds `server_id` at the end of the namespace's member list.
async fn insert_member(
    conn: &mut AnyConnection,
    ns_id: &str,
    server_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO namespace_servers (namespace_id, server_id, status, position) \
         SELECT $1, $2, 'ACTIVE', COALESCE(MAX(position) + 1, 0) \
         FROM namespace_servers WHERE namespace_id = $1",
    )
    .bind(ns_id)
    .bind(server_id)
    .execute(conn)
    .await
    .map_err(on_unique("namespace member", server_id))?;
    Ok(())
}

/// The id of the namespace named `name`.
pub(crate) async fn id_by_name(conn: &mut AnyConnection, name: &str) -> Result<String, StoreError> {
    sqlx::query_scalar("SELECT id FROM namespaces WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::not_found("namespace", name))
}

/// Namespaces (all, or the one named) with their members, ordered by name.
async fn load(
    conn: &mut AnyConnection,
    only: Option<&str>,
) -> Result<Vec<NamespaceRecord>, StoreError> {
    let select = format!(
        "SELECT id, name, description, prefix_mode, new_tool_status, max_name_length, \
         created_at, audit_payloads, {} FROM namespaces",
        crate::owners::columns("namespaces")
    );
    let rows = match only {
        Some(name) => {
            sqlx::query(sqlx::AssertSqlSafe(format!("{select} WHERE name = $1")))
                .bind(name)
                .fetch_all(&mut *conn)
                .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(select))
                .fetch_all(&mut *conn)
                .await?
        }
    };
    let mut by_id = BTreeMap::new();
    for row in &rows {
        let id: String = row.try_get("id")?;
        let record = NamespaceRecord {
            id: id.clone(),
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            servers: Vec::new(),
            prefix: {
                let mode: String = row.try_get("prefix_mode")?;
                PrefixMode::parse(&mode).ok_or_else(|| {
                    StoreError::Invalid(format!("namespace has an unknown prefix mode {mode:?}"))
                })?
            },
            new_tools_enabled: row.try_get::<String, _>("new_tool_status")? != "INACTIVE",
            max_name_length: row.try_get("max_name_length")?,
            audit_payloads: crate::db::flag(row.try_get("audit_payloads")?),
            tools: Vec::new(),
            created_at: row.try_get("created_at")?,
            owner: crate::owners::from_row(row)?,
        };
        by_id.insert(id, record);
    }
    if by_id.is_empty() {
        return Ok(Vec::new());
    }
    let members = match only {
        Some(name) => {
            sqlx::query(
                "SELECT ns.namespace_id, ns.server_id, s.name AS server_name, ns.status, \
                 ns.position FROM namespace_servers ns \
                 JOIN servers s ON s.id = ns.server_id \
                 JOIN namespaces n ON n.id = ns.namespace_id WHERE n.name = $1",
            )
            .bind(name)
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query(
                "SELECT ns.namespace_id, ns.server_id, s.name AS server_name, ns.status, \
                 ns.position FROM namespace_servers ns JOIN servers s ON s.id = ns.server_id",
            )
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut ordered = Vec::with_capacity(members.len());
    for row in &members {
        let ns_id: String = row.try_get("namespace_id")?;
        let position: i64 = row.try_get("position")?;
        let status: String = row.try_get("status")?;
        let member = NamespaceMember {
            server_id: row.try_get("server_id")?,
            server_name: row.try_get("server_name")?,
            active: status == "ACTIVE",
        };
        ordered.push((ns_id, position, member));
    }
    ordered.sort_by(|a, b| (a.1, &a.2.server_name).cmp(&(b.1, &b.2.server_name)));
    for (ns_id, _, member) in ordered {
        if let Some(ns) = by_id.get_mut(&ns_id) {
            ns.servers.push(member);
        }
    }
    for (ns_id, rule) in load_rules(conn, only).await? {
        if let Some(ns) = by_id.get_mut(&ns_id) {
            ns.tools.push(rule);
        }
    }
    let mut out: Vec<NamespaceRecord> = by_id.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
