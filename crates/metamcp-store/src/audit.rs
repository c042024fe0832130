//! The audit log (`audit_log` table): who called what, when, how long it took and how it
//! ended — tool calls, resource reads, prompt gets, admin changes, sign-ins, sign-outs and
//! failed authentication.
//!
//! Records are the gateway's observations, not configuration: writing them never bumps
//! `config_version`. The gateway appends them in batches from a queue off the request path
//! ([`Store::append_audit`]); admin changes are recorded inside the transaction that makes
//! them ([`Tx::record_audit`]), so a change and its record commit together. Retention is
//! by age and count ([`Store::prune_audit`]); reading is [`Tx::audit`], newest first, paged
//! by id.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Backend, Store, StoreError, Tx};

/// One audit record as written. Every text is a name (key name, user email, endpoint,
/// server, tool) or a short class, never a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Epoch milliseconds.
    pub ts_ms: i64,
    /// `tool_call`, `resource_read`, `prompt_get`, `admin`, `sign_in`, `sign_out`, `auth_failed`.
    pub kind: String,
    /// `mcp`, `sse`, `rest`, `stateless`, `admin`, `web`, `cli`.
    pub face: Option<String>,
    /// The key's name, the user's email, `cli`; `None`: anonymous.
    pub principal: Option<String>,
    /// The user the principal belongs to (a key's owner, a signed-in user).
    pub user_id: Option<String>,
    pub endpoint: Option<String>,
    pub namespace: Option<String>,
    pub server: Option<String>,
    /// The exposed tool name, the prompt name, the resource URI, or the admin operation.
    pub tool: Option<String>,
    pub duration_us: Option<i64>,
    /// `ok`, `tool_error`, `upstream_error`, `timeout`, `rate_limited`, `denied`, `cancelled`.
    pub outcome: String,
    /// A short error class (`rpc:-32602`, `is_error`, `closed`, `unknown_tool`, …).
    pub error: Option<String>,
    /// The client's IP address.
    pub client: Option<String>,
    /// Arguments and result (opt-in, redacted, capped), or what an admin change did.
    pub detail: Option<String>,
}

/// A stored record with its id (ids grow with time on one database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Which records to read. Every filter is optional; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub endpoint: Option<String>,
    pub server: Option<String>,
    pub tool: Option<String>,
    pub principal: Option<String>,
    /// Only records of this user (members see only their own).
    pub user_id: Option<String>,
    /// Only records at or after this time (epoch ms).
    pub since_ms: Option<i64>,
    /// Exactly this outcome.
    pub outcome: Option<String>,
    /// Any outcome but `ok`.
    pub errors_only: bool,
    /// Only records older than this id (the cursor of the next page).
    pub before_id: Option<i64>,
    pub limit: usize,
}

const COLUMNS: &str = "ts, kind, face, principal, user_id, endpoint, namespace, server, tool, \
                       duration_us, outcome, error, client, detail";

const INSERT: &str = "INSERT INTO audit_log (ts, kind, face, principal, user_id, endpoint, \
                      namespace, server, tool, duration_us, outcome, error, client, detail) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// Rows per `INSERT` of [`Store::append_audit`] at most: 14 parameters each, far below both
/// backends' limits (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_INSERT: usize = 128;

/// The row counts of the statements that write `n` records: full [`ROWS_PER_INSERT`]
/// statements, then the rest in powers of two, so a batch of any size uses one of at most
/// eight statement texts and every one stays in the connection's prepared-statement cache
/// (a text per remainder size would be parsed anew, 1,792 parameters and all, per batch).
fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let rows = if n >= ROWS_PER_INSERT {
            ROWS_PER_INSERT
        } else {
            1 << n.ilog2()
        };
        n -= rows;
        Some(rows)
    })
}

/// `INSERT … VALUES (…), (…)` for `rows` rows, with `backend`'s placeholders.
///
/// why: SQLite gets anonymous `?` placeholders (bound by position) rather than `$N`.
/// sqlx-sqlite looks up each parameter's name to find its position, and SQLite finds a
/// name by walking the statement's list of names, so with `$N` binding a 128-row statement
/// was quadratic in its 1,792 parameters — a quarter of the gateway's CPU with the audit log
/// on. PostgreSQL only knows `$N` (and binds by position anyway).
fn multi_insert(rows: usize, backend: Backend) -> String {
    let (head, _) = INSERT.split_once(" VALUES ").unwrap_or((INSERT, ""));
    let mut sql = String::with_capacity(head.len() + rows * 80);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..14 {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(r * 14 + c + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

fn bind_record<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    r: &'q AuditRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(r.ts_ms)
        .bind(r.kind.as_str())
        .bind(r.face.as_deref())
        .bind(r.principal.as_deref())
        .bind(r.user_id.as_deref())
        .bind(r.endpoint.as_deref())
        .bind(r.namespace.as_deref())
        .bind(r.server.as_deref())
        .bind(r.tool.as_deref())
        .bind(r.duration_us)
        .bind(r.outcome.as_str())
        .bind(r.error.as_deref())
        .bind(r.client.as_deref())
        .bind(r.detail.as_deref())
}

impl Store {
    /// Appends `records` in one transaction, up to [`ROWS_PER_INSERT`] rows per statement
    /// ([`chunk_sizes`]; one statement per row cost the gateway more CPU than the call it
    /// records).
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        let backend = self.backend();
        let mut rest = records;
        for rows in chunk_sizes(records.len()) {
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(multi_insert(rows, backend)));
            for r in chunk {
                q = bind_record(q, r);
            }
            q.execute(&mut *conn).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes records older than `older_than_ms` (epoch ms) and all but the newest
    /// `keep` records; returns how many went.
    pub async fn prune_audit(&self, older_than_ms: i64, keep: u64) -> Result<u64, StoreError> {
        let by_age = sqlx::query("DELETE FROM audit_log WHERE ts < $1")
            .bind(older_than_ms)
            .execute(self.pool())
            .await?
            .rows_affected();
        // The id of the newest record beyond `keep`; it and everything older go. With
        // fewer records the subquery is NULL and nothing is deleted.
        let by_count = sqlx::query(
            "DELETE FROM audit_log WHERE id <= (SELECT id FROM audit_log \
             ORDER BY id DESC LIMIT 1 OFFSET $1)",
        )
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(by_age + by_count)
    }
}

impl Tx {
    /// A key derived from the master key for `purpose` (see [`Store::derive_key`]).
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        self.store.derive_key(purpose)
    }

    /// Records `record` in this transaction (an admin change commits with its record).
    /// Does not count as a configuration change.
    pub async fn record_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        bind_record(sqlx::query(INSERT), record)
            .execute(self.write_conn()?)
            .await?;
        Ok(())
    }

    /// Records matching `f`, newest first, at most `f.limit`.
    pub async fn audit(&mut self, f: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let mut sql = format!("SELECT id, {COLUMNS} FROM audit_log WHERE 1 = 1");
        let mut texts: Vec<String> = Vec::new();
        for (column, v) in [
            ("endpoint", &f.endpoint),
            ("server", &f.server),
            ("tool", &f.tool),
            ("principal", &f.principal),
            ("user_id", &f.user_id),
            ("outcome", &f.outcome),
        ] {
            if let Some(v) = v {
                texts.push(v.clone());
                sql.push_str(&format!(" AND {column} = ${}", texts.len()));
            }
        }
        if f.errors_only {
            sql.push_str(" AND outcome <> 'ok'");
        }
        let mut numbers: Vec<i64> = Vec::new();
        for (cond, v) in [("ts >=", f.since_ms), ("id <", f.before_id)] {
            if let Some(v) = v {
                numbers.push(v);
                sql.push_str(&format!(" AND {cond} ${}", texts.len() + numbers.len()));
            }
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT ${}",
            texts.len() + numbers.len() + 1
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in texts {
            q = q.bind(t);
        }
        for v in numbers {
            q = q.bind(v);
        }
        q = q.bind(i64::try_from(f.limit).unwrap_or(i64::MAX));
        let rows = q.fetch_all(self.conn()).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    record: AuditRecord {
                        ts_ms: r.try_get("ts")?,
                        kind: r.try_get("kind")?,
                        face: r.try_get("face")?,
                        principal: r.try_get("principal")?,
                        user_id: r.try_get("user_id")?,
                        endpoint: r.try_get("endpoint")?,
                        namespace: r.try_get("namespace")?,
                        server: r.try_get("server")?,
                        tool: r.try_get("tool")?,
                        duration_us: r.try_get("duration_us")?,
                        outcome: r.try_get("outcome")?,
                        error: r.try_get("error")?,
                        client: r.try_get("client")?,
                        detail: r.try_get("detail")?,
                    },
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, ROWS_PER_INSERT, chunk_sizes, multi_insert};

    #[test]
    fn multi_row_insert() {
        let sql = multi_insert(2, Backend::Postgres);
        assert!(
            sql.ends_with(
                "$13, $14), ($15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
            ),
            "{sql}"
        );
        assert!(sql.starts_with("INSERT INTO audit_log (ts, kind,"), "{sql}");
        let sql = multi_insert(2, Backend::Sqlite);
        assert!(sql.starts_with("INSERT INTO audit_log (ts, kind,"), "{sql}");
        assert!(!sql.contains('$'), "{sql}");
        assert_eq!(sql.matches('?').count(), 28, "{sql}");
        assert!(
            sql.ends_with("?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            "{sql}"
        );
    }

    #[test]
    fn batches_use_few_statement_shapes() {
        let sizes = |n| chunk_sizes(n).collect::<Vec<_>>();
        assert!(sizes(0).is_empty());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(7), [4, 2, 1]);
        assert_eq!(sizes(128), [128]);
        assert_eq!(sizes(300), [128, 128, 32, 8, 4]);
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..=2_048 {
            let s = sizes(n);
            assert_eq!(s.iter().sum::<usize>(), n);
            shapes.extend(s);
        }
        assert_eq!(shapes.len(), 8, "{shapes:?}");
        assert!(shapes.iter().all(|r| *r <= ROWS_PER_INSERT));
    }
}
