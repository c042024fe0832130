//! Upstream server definitions (`servers` table) and the mapping between a row and a
//! [`ServerSpec`].
//!
//! Env values, header values and bearer tokens live in their own columns, each sealed with
//! [`Cipher`](crate::secrets::Cipher) and bound to this table, its column and the row's id;
//! plain columns hold the rest. A URL with credentials (userinfo, secret-looking query
//! parameters: `metamcp_core::secrets`) is stored twice: redacted in `url`, which listings
//! may show, and whole and sealed in `url_secret`, which the record is built from.
//!
//! Import is idempotent by name ([`Tx::upsert_server`] compares decrypted values).
//! The `settings` column holds the server's [`ConnectionSettings`] as JSON (shared or
//! per-session, warm pool, cap); an unreadable value falls back to the defaults.

use std::collections::BTreeMap;

use metamcp_core::secrets::split_url;
use metamcp_core::spec::REDACTED;
use metamcp_core::{ConnectionSettings, ServerKind, ServerSpec, Transport, validate_server_name};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::{new_id, now_ms};
use crate::error::on_unique;
use crate::secrets::Binding;
use crate::{Owner, StoreError, Tx};

const PLAIN_COLUMNS: &str = "id, name, kind, description, command, args, env, url, url_secret, \
                       headers, bearer_token, settings, created_at, updated_at";

/// The columns a record is read from: the row's own and its owner's.
fn select() -> String {
    format!(
        "SELECT {PLAIN_COLUMNS}, {} FROM servers",
        crate::owners::columns("servers")
    )
}

/// One stored server, secrets decrypted. Its `Debug` hides the secrets (see `Transport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    pub id: String,
    pub spec: ServerSpec,
    /// How sessions share it (the `settings` column).
    pub connection: ConnectionSettings,
    pub created_at: i64,
    pub updated_at: i64,
    /// `None`: public.
    pub owner: Option<Owner>,
}

/// What [`Tx::upsert_server`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// A spec flattened into column values, secrets sealed.
struct Columns {
    kind: &'static str,
    command: Option<String>,
    args: String,
    env: Option<String>,
    /// The URL with its credentials redacted.
    url: Option<String>,
    /// The full URL, sealed, when it has credentials.
    url_secret: Option<String>,
    headers: Option<String>,
    bearer_token: Option<String>,
}

impl Tx {
    /// Stores a new server; [`StoreError::Duplicate`] if the name is taken.
    pub async fn create_server(&mut self, spec: &ServerSpec) -> Result<ServerRecord, StoreError> {
        let (id, now) = (new_id(), now_ms());
        let cols = self.columns(spec, &id)?;
        insert(self.write_conn()?, &id, spec, &cols, now).await?;
        self.mark_changed();
        Ok(ServerRecord {
            id,
            spec: spec.clone(),
            connection: ConnectionSettings::default(),
            created_at: now,
            updated_at: now,
            owner: None,
        })
    }

    /// Creates the server, or replaces the stored definition of the same name. Leaves the row
    /// (and `config_version`) alone when the stored definition is already identical.
    pub async fn upsert_server(&mut self, spec: &ServerSpec) -> Result<Upsert, StoreError> {
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!("{} WHERE name = $1", select())))
            .bind(&spec.name)
            .fetch_optional(self.write_conn()?)
            .await?;
        let outcome = match existing {
            None => {
                let id = new_id();
                let cols = self.columns(spec, &id)?;
                insert(self.write_conn()?, &id, spec, &cols, now_ms()).await?;
                Upsert::Created
            }
            Some(row) if self.record(&row)?.spec == *spec => return Ok(Upsert::Unchanged),
            Some(row) => {
                let id: String = row.try_get("id")?;
                let cols = self.columns(spec, &id)?;
                sqlx::query(
                    "UPDATE servers SET kind = $1, description = $2, command = $3, args = $4, \
                     env = $5, url = $6, url_secret = $7, headers = $8, bearer_token = $9, \
                     updated_at = $10 WHERE id = $11",
                )
                .bind(cols.kind)
                .bind(spec.description.as_deref())
                .bind(cols.command)
                .bind(cols.args)
                .bind(cols.env)
                .bind(cols.url)
                .bind(cols.url_secret)
                .bind(cols.headers)
                .bind(cols.bearer_token)
                .bind(now_ms())
                .bind(id)
                .execute(self.write_conn()?)
                .await?;
                Upsert::Updated
            }
        };
        self.mark_changed();
        Ok(outcome)
    }

    /// Changes how client sessions share the server (`metamcp server update`).
    pub async fn set_server_connection(
        &mut self,
        name: &str,
        connection: &ConnectionSettings,
    ) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(connection).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let done = sqlx::query("UPDATE servers SET settings = $1, updated_at = $2 WHERE name = $3")
            .bind(json)
            .bind(now_ms())
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("server", name));
        }
        self.mark_changed();
        Ok(())
    }

    /// All servers, ordered by name.
    pub async fn list_servers(&mut self) -> Result<Vec<ServerRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select()))
            .fetch_all(self.conn())
            .await?;
        let mut out = rows
            .iter()
            .map(|r| self.record(r))
            .collect::<Result<Vec<_>, _>>()?;
        // why: sort here, not in SQL: PostgreSQL's collation may order names differently
        // from SQLite's bytewise one.
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    pub async fn get_server(&mut self, name: &str) -> Result<Option<ServerRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{} WHERE name = $1", select())))
            .bind(name)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(|r| self.record(r)).transpose()
    }

    /// Removes the server; its namespace memberships, tools and logs go with it.
    pub async fn remove_server(&mut self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM servers WHERE name = $1")
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("server", name));
        }
        self.mark_changed();
        Ok(())
    }

    /// Validates the spec and flattens it, sealing the secrets for row `id`.
    fn columns(&self, spec: &ServerSpec, id: &str) -> Result<Columns, StoreError> {
        validate_server_name(&spec.name)?;
        // why: a placeholder must be resolved (or refused) before it gets here; storing it
        // would lose the real value.
        let bad = |why: String| StoreError::Invalid(format!("server {:?}: {why}", spec.name));
        spec.transport.try_map_secrets(|field, v| match v {
            REDACTED => Err(bad(format!("{field} is the placeholder {REDACTED:?}"))),
            _ => Ok(String::new()),
        })?;
        let at = |column: &'static str| Binding {
            table: "servers",
            column,
            row: id,
        };
        let mut cols = Columns {
            kind: spec.transport.kind().as_str(),
            command: None,
            args: "[]".to_owned(),
            env: None,
            url: None,
            url_secret: None,
            headers: None,
            bearer_token: None,
        };
        match &spec.transport {
            Transport::Stdio { command, args, env } => {
                if command.trim().is_empty() {
                    return Err(bad("a stdio server needs a command".into()));
                }
                cols.command = Some(command.clone());
                cols.args = to_json(args)?;
                cols.env = Some(self.seal(at("env"), &to_json(env)?)?);
            }
            Transport::Sse {
                url,
                headers,
                bearer_token,
            }
            | Transport::StreamableHttp {
                url,
                headers,
                bearer_token,
            } => {
                metamcp_core::spec::validate_url(url).map_err(bad)?;
                let (shown, credentials) = split_url(url);
                cols.url = Some(shown);
                if !credentials.is_empty() {
                    cols.url_secret = Some(self.seal(at("url_secret"), &to_json(url)?)?);
                }
                cols.headers = Some(self.seal(at("headers"), &to_json(headers)?)?);
                cols.bearer_token = bearer_token
                    .as_ref()
                    .map(|t| self.seal(at("bearer_token"), &to_json(t)?))
                    .transpose()?;
            }
        }
        Ok(cols)
    }

    fn seal(&self, at: Binding<'_>, json: &str) -> Result<String, StoreError> {
        self.cipher().seal(at, json.as_bytes())
    }

    /// A `servers` row back into a record, opening its secrets.
    fn record(&self, row: &AnyRow) -> Result<ServerRecord, StoreError> {
        let name: String = row.try_get("name")?;
        let id: String = row.try_get("id")?;
        let kind: String = row.try_get("kind")?;
        let corrupt = |why: String| StoreError::Invalid(format!("stored server {name:?}: {why}"));
        let kind =
            ServerKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?;
        let transport = match kind {
            ServerKind::Stdio => {
                let args: String = row.try_get("args")?;
                Transport::Stdio {
                    command: row
                        .try_get::<Option<String>, _>("command")?
                        .unwrap_or_default(),
                    args: serde_json::from_str(&args).map_err(|e| corrupt(e.to_string()))?,
                    env: self
                        .open_secret(row, "env", &id, &name)?
                        .unwrap_or_default(),
                }
            }
            ServerKind::Sse | ServerKind::StreamableHttp => {
                let url = match self.open_secret(row, "url_secret", &id, &name)? {
                    Some(full) => full,
                    None => row.try_get::<Option<String>, _>("url")?.unwrap_or_default(),
                };
                let headers: BTreeMap<String, String> = self
                    .open_secret(row, "headers", &id, &name)?
                    .unwrap_or_default();
                let bearer_token = self.open_secret(row, "bearer_token", &id, &name)?;
                Transport::http(kind, url, headers, bearer_token)
            }
        };
        let settings: String = row.try_get("settings")?;
        let connection = serde_json::from_str(&settings).unwrap_or_else(|e| {
            tracing::warn!(server = %name, error = %e, "unreadable connection settings; using the defaults");
            ConnectionSettings::default()
        });
        Ok(ServerRecord {
            connection,
            id,
            spec: ServerSpec {
                name,
                description: row.try_get("description")?,
                transport,
            },
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            owner: crate::owners::from_row(row)?,
        })
    }

    /// Opens secret column `column` of the row of server `server` (id `id`; NULL → `None`).
    fn open_secret<T: serde::de::DeserializeOwned>(
        &self,
        row: &AnyRow,
        column: &'static str,
        id: &str,
        server: &str,
    ) -> Result<Option<T>, StoreError> {
        let Some(stored) = row.try_get::<Option<String>, _>(column)? else {
            return Ok(None);
        };
        let fail = |why: String| {
            StoreError::Decrypt(format!(
                "cannot decrypt {column} of server {server:?}: {why}"
            ))
        };
        let plain = self
            .cipher()
            .open(
                Binding {
                    table: "servers",
                    column,
                    row: id,
                },
                &stored,
            )
            .map_err(|e| fail(e.to_string()))?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| fail(e.to_string()))
    }
}

async fn insert(
    conn: &mut AnyConnection,
    id: &str,
    spec: &ServerSpec,
    cols: &Columns,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO servers (id, name, kind, description, command, args, env, url, url_secret, \
         headers, bearer_token, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(id)
    .bind(&spec.name)
    .bind(cols.kind)
    .bind(spec.description.as_deref())
    .bind(cols.command.as_deref())
    .bind(cols.args.as_str())
    .bind(cols.env.as_deref())
    .bind(cols.url.as_deref())
    .bind(cols.url_secret.as_deref())
    .bind(cols.headers.as_deref())
    .bind(cols.bearer_token.as_deref())
    .bind(now)
    .execute(conn)
    .await
    .map_err(on_unique("server", &spec.name))?;
    Ok(())
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// The id of the server named `name`, inside a transaction.
pub(crate) async fn id_by_name(conn: &mut AnyConnection, name: &str) -> Result<String, StoreError> {
    sqlx::query_scalar("SELECT id FROM servers WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::not_found("server", name))
}
