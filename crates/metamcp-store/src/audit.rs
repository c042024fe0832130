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

use std::borrow::{Borrow, Cow};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Backend, Store, StoreError, Tx};

/// One audit record as written. Every text is a name (key name, user email, endpoint,
/// server, tool) or a short class, never a secret.
///
/// Names are shared (`Arc<str>`): the gateway builds a call's record from names it holds
/// per request, so recording a call copies no text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Epoch milliseconds.
    pub ts_ms: i64,
    /// `tool_call`, `resource_read`, `prompt_get`, `admin`, `sign_in`, `sign_out`, `auth_failed`.
    /// (Borrowed when written: the gateway records calls without allocating these.)
    pub kind: Cow<'static, str>,
    /// `mcp`, `sse`, `rest`, `stateless`, `admin`, `web`, `cli`.
    pub face: Option<Cow<'static, str>>,
    /// The key's name, the user's email, `cli`; `None`: anonymous.
    pub principal: Option<Arc<str>>,
    /// The user the principal belongs to (a key's owner, a signed-in user).
    pub user_id: Option<Arc<str>>,
    pub endpoint: Option<Arc<str>>,
    pub namespace: Option<Arc<str>>,
    pub server: Option<Arc<str>>,
    /// The exposed tool name, the prompt name, the resource URI, or the admin operation.
    pub tool: Option<Arc<str>>,
    pub duration_us: Option<i64>,
    /// `ok`, `tool_error`, `upstream_error`, `timeout`, `rate_limited`, `denied`, `cancelled`.
    pub outcome: Cow<'static, str>,
    /// A short error class (`rpc:-32602`, `is_error`, `closed`, `unknown_tool`, …).
    pub error: Option<String>,
    /// The client's IP address.
    pub client: Option<Arc<str>>,
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

/// PostgreSQL's statement that appends a whole batch: its records travel as one JSON text
/// (an array of 14-element arrays, [`batch_json`]) and the server unpacks them.
///
/// why: binding 14 parameters per record through sqlx cost the gateway more CPU than the
/// relayed call being recorded; one text parameter leaves the unpacking to PostgreSQL, in
/// its own process. `WITH ORDINALITY` keeps the batch's order, so ids grow with time.
const PG_BATCH_INSERT: &str = "INSERT INTO audit_log (ts, kind, face, principal, user_id, \
     endpoint, namespace, server, tool, duration_us, outcome, error, client, detail) \
     SELECT (r->>0)::BIGINT, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, \
     (r->>9)::BIGINT, r->>10, r->>11, r->>12, r->>13 \
     FROM jsonb_array_elements(CAST($1 AS JSONB)) WITH ORDINALITY AS e(r, n) ORDER BY n";

/// SQLite's `INSERT` of one record: its time and the rest as one JSON array ([`rec_json`]);
/// the view `audit_log` computes the other columns from it when read (migration 0015).
const SQLITE_INSERT: &str = "INSERT INTO audit_records (ts, rec) VALUES (?, ?)";

/// The audit writer's own connection to a SQLite file, opened on first use and used from a
/// blocking thread: one cached prepared `INSERT` ([`SQLITE_INSERT`]), two values bound per
/// record.
///
/// why: measured with callgrind (scripts/instructions.sh --quiet-too, 2026-12-04), sqlx's
/// multi-row statements (every value copied twice, a statement parsed per batch shape) cost
/// about 16,000 instructions per record, SQLite's `jsonb_each` unpacking a batch more
/// still, this connection binding fourteen values about 9,000, and two values (the record
/// as one JSON text) less again. WAL lets it write beside the pool's connections (busy
/// timeout 5 s).
pub(crate) struct SqliteAppender {
    path: std::path::PathBuf,
    conn: std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
}

impl SqliteAppender {
    pub(crate) fn new(path: std::path::PathBuf) -> Self {
        SqliteAppender {
            path,
            conn: std::sync::Arc::default(),
        }
    }

    async fn append<R>(&self, records: Vec<R>) -> Result<(), StoreError>
    where
        R: Borrow<AuditRecord> + Send + 'static,
    {
        let path = self.path.clone();
        let slot = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // why: the connection is out of its slot while it writes, so a writer that
            // panicked left the slot empty (and its transaction rolled back): the next batch
            // opens a new one.
            let mut guard = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut conn = match guard.take() {
                Some(conn) => conn,
                None => {
                    let conn = rusqlite::Connection::open(&path)?;
                    conn.busy_timeout(std::time::Duration::from_secs(5))?;
                    conn.pragma_update(None, "synchronous", "NORMAL")?;
                    conn
                }
            };
            write_rows(&mut conn, &records)?;
            // A connection whose write failed is dropped (the `?` above), not reused.
            *guard = Some(conn);
            Ok::<(), rusqlite::Error>(())
        })
        .await
        .map_err(|e| StoreError::Audit(format!("the audit writer stopped: {e}")))?
        .map_err(|e| StoreError::Audit(e.to_string()))
    }
}

impl std::fmt::Debug for SqliteAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAppender")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn write_rows<R: Borrow<AuditRecord>>(
    conn: &mut rusqlite::Connection,
    records: &[R],
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        // (Measured: a statement of several rows, `VALUES (?, ?), (?, ?), …`, cost more per
        // record than this one, executed per record.)
        let mut insert = tx.prepare_cached(SQLITE_INSERT)?;
        for r in records {
            let r = r.borrow();
            insert.execute((r.ts_ms, rec_json(r)))?;
        }
    }
    tx.commit()
}

/// JSON text of one [`PG_BATCH_INSERT`] statement at most (a batch beyond it is split, in one
/// transaction): bounds the copies a batch of large recorded payloads makes.
const BATCH_TEXT: usize = 4 << 20;

/// `text` fit for every backend: PostgreSQL refuses U+0000 in text (and in JSONB), and one
/// such character, which a client can put in a tool name, would fail the whole batch; it
/// is recorded as U+FFFD.
fn clean(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Records as the JSON text [`PG_BATCH_INSERT`] reads, split into texts of about
/// [`BATCH_TEXT`] bytes at most (a single larger record gets a text of its own).
fn batch_json<R: Borrow<AuditRecord>>(records: &[R]) -> Vec<String> {
    let mut texts = Vec::new();
    let mut text = String::new();
    for r in records {
        let r = r.borrow();
        // `[ts, kind, …]`: the time, then the elements of `rec_json` (which opens with `[`).
        let rec = rec_json(r);
        let one = format!("[{},{}", r.ts_ms, rec.get(1..).unwrap_or("]"));
        if !text.is_empty() && text.len() + one.len() + 2 > BATCH_TEXT {
            text.push(']');
            texts.push(std::mem::take(&mut text));
        }
        text.push(if text.is_empty() { '[' } else { ',' });
        text.push_str(&one);
    }
    if !text.is_empty() {
        text.push(']');
        texts.push(text);
    }
    texts
}

/// Everything of a record but its time, as the JSON array SQLite stores (`rec`, in the
/// order of migration 0015's columns: kind, face, principal, user_id, endpoint, namespace,
/// server, tool, duration_us, outcome, error, client, detail), texts [`clean`]ed.
fn rec_json(r: &AuditRecord) -> String {
    // why: JSON writes U+0000 as `\u0000`, so one look at the text tells whether a field
    // held one; only then is the record written again with every field cleaned (cleaning
    // every field of every record cost more than this look).
    let text = rec_json_as::<false>(r);
    if text.contains("\\u0000") {
        rec_json_as::<true>(r)
    } else {
        text
    }
}

fn rec_json_as<const CLEAN: bool>(r: &AuditRecord) -> String {
    let row = (
        Text::<CLEAN>(Some(&r.kind)),
        Text::<CLEAN>(r.face.as_deref()),
        Text::<CLEAN>(r.principal.as_deref()),
        Text::<CLEAN>(r.user_id.as_deref()),
        Text::<CLEAN>(r.endpoint.as_deref()),
        Text::<CLEAN>(r.namespace.as_deref()),
        Text::<CLEAN>(r.server.as_deref()),
        Text::<CLEAN>(r.tool.as_deref()),
        r.duration_us,
        Text::<CLEAN>(Some(&r.outcome)),
        Text::<CLEAN>(r.error.as_deref()),
        Text::<CLEAN>(r.client.as_deref()),
        Text::<CLEAN>(r.detail.as_deref()),
    );
    // why: a tuple of numbers, strings and nulls always serializes.
    serde_json::to_string(&row).unwrap_or_else(|_| "[]".to_owned())
}

/// A text field of a record as [`rec_json`] writes it: `null` when absent, [`clean`]ed
/// when `CLEAN`.
struct Text<'a, const CLEAN: bool>(Option<&'a str>);

impl<const CLEAN: bool> Serialize for Text<'_, CLEAN> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(t) if CLEAN => s.serialize_str(&clean(t)),
            Some(t) => s.serialize_str(t),
            None => s.serialize_none(),
        }
    }
}

/// [`SQLITE_INSERT`] through sqlx (admin changes in their transaction, an in-memory database).
fn sqlite_insert(
    r: &AuditRecord,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(SQLITE_INSERT).bind(r.ts_ms).bind(rec_json(r))
}

fn bind_record<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    r: &'q AuditRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let text = |t: &'q Option<Arc<str>>| t.as_deref().map(|t| clean(t).into_owned());
    q.bind(r.ts_ms)
        .bind(clean(&r.kind).into_owned())
        .bind(r.face.as_deref().map(|t| clean(t).into_owned()))
        .bind(text(&r.principal))
        .bind(text(&r.user_id))
        .bind(text(&r.endpoint))
        .bind(text(&r.namespace))
        .bind(text(&r.server))
        .bind(text(&r.tool))
        .bind(r.duration_us)
        .bind(clean(&r.outcome).into_owned())
        .bind(r.error.as_deref().map(|t| clean(t).into_owned()))
        .bind(text(&r.client))
        .bind(r.detail.as_deref().map(|t| clean(t).into_owned()))
}

impl Store {
    /// Appends `records` in one transaction: on a SQLite file through the audit writer's
    /// own connection ([`SqliteAppender`]), on PostgreSQL (and an in-memory SQLite
    /// database) as JSON texts of at most [`BATCH_TEXT`] ([`PG_BATCH_INSERT`]).
    pub async fn append_audit<R>(&self, records: Vec<R>) -> Result<(), StoreError>
    where
        R: Borrow<AuditRecord> + Send + 'static,
    {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(appender) = &self.inner.audit_sqlite {
            return appender.append(records).await;
        }
        let mut tx = self.begin().await?;
        match self.backend() {
            Backend::Postgres => {
                for text in batch_json(&records) {
                    sqlx::query(PG_BATCH_INSERT)
                        .bind(text)
                        .execute(tx.write_conn()?)
                        .await?;
                }
            }
            Backend::Sqlite => {
                for r in &records {
                    sqlite_insert(r.borrow()).execute(tx.write_conn()?).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes records older than `older_than_ms` (epoch ms) and all but the newest
    /// `keep` records; returns how many went.
    pub async fn prune_audit(&self, older_than_ms: i64, keep: u64) -> Result<u64, StoreError> {
        let (by_age, by_count) = match self.backend() {
            Backend::Sqlite => (
                "DELETE FROM audit_records WHERE ts < $1",
                "DELETE FROM audit_records WHERE id <= (SELECT id FROM audit_records \
                 ORDER BY id DESC LIMIT 1 OFFSET $1)",
            ),
            Backend::Postgres => (
                "DELETE FROM audit_log WHERE ts < $1",
                "DELETE FROM audit_log WHERE id <= (SELECT id FROM audit_log \
                 ORDER BY id DESC LIMIT 1 OFFSET $1)",
            ),
        };
        let by_age = sqlx::query(by_age)
            .bind(older_than_ms)
            .execute(self.pool())
            .await?
            .rows_affected();
        // The id of the newest record beyond `keep`; it and everything older go. With
        // fewer records the subquery is NULL and nothing is deleted.
        let by_count = sqlx::query(by_count)
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
        let insert = match self.store.backend() {
            Backend::Postgres => bind_record(sqlx::query(INSERT), record),
            Backend::Sqlite => sqlite_insert(record),
        };
        insert.execute(self.write_conn()?).await?;
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
                        kind: Cow::Owned(r.try_get("kind")?),
                        face: r.try_get::<Option<String>, _>("face")?.map(Cow::Owned),
                        principal: shared(r, "principal")?,
                        user_id: shared(r, "user_id")?,
                        endpoint: shared(r, "endpoint")?,
                        namespace: shared(r, "namespace")?,
                        server: shared(r, "server")?,
                        tool: shared(r, "tool")?,
                        duration_us: r.try_get("duration_us")?,
                        outcome: Cow::Owned(r.try_get("outcome")?),
                        error: r.try_get("error")?,
                        client: shared(r, "client")?,
                        detail: r.try_get("detail")?,
                    },
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

/// A text column of an audit row, as a record holds it.
fn shared(r: &sqlx::any::AnyRow, column: &str) -> Result<Option<Arc<str>>, sqlx::Error> {
    Ok(r.try_get::<Option<String>, _>(column)?.map(Arc::from))
}

#[cfg(test)]
mod tests {
    use super::{AuditRecord, BATCH_TEXT, batch_json, clean, rec_json};

    fn record(tool: &str, detail: Option<String>) -> AuditRecord {
        AuditRecord {
            ts_ms: 1_700_000_000_123,
            kind: "tool_call".into(),
            tool: Some(tool.into()),
            duration_us: Some(42),
            outcome: "ok".into(),
            detail,
            ..AuditRecord::default()
        }
    }

    #[test]
    fn a_batch_is_one_json_text_of_rows() {
        let texts = batch_json(&[record("a__b", None), record("q\"\u{0}\n", None)]);
        assert_eq!(texts.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&texts[0]).unwrap();
        assert_eq!(
            v[0],
            serde_json::json!([
                1_700_000_000_123_i64,
                "tool_call",
                null,
                null,
                null,
                null,
                null,
                null,
                "a__b",
                42,
                "ok",
                null,
                null,
                null
            ])
        );
        // U+0000 (refused by PostgreSQL) is recorded as U+FFFD; the rest is kept.
        assert_eq!(v[1][8], "q\"\u{fffd}\n");
        assert_eq!(clean("plain"), "plain");
        assert!(matches!(clean("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn sqlite_reads_the_columns_out_of_the_stored_record() {
        // Migration 0015 on a table of 0011's shape: old rows keep every field, and the
        // computed columns read what `rec_json` writes.
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            include_str!("../migrations/sqlite/0011_audit.sql")
                .split("-- Key hygiene")
                .next()
                .unwrap(),
        )
        .unwrap();
        db.execute(
            "INSERT INTO audit_log (ts, kind, principal, tool, duration_us, outcome, client) \
             VALUES (5, 'tool_call', 'ci', 'a__b', 7, 'ok', '10.0.0.1')",
            (),
        )
        .unwrap();
        db.execute_batch(include_str!("../migrations/sqlite/0015_audit_compact.sql"))
            .unwrap();
        let mut r = record("x__\"y\"", Some("{\"a\":1}".into()));
        r.error = Some("rpc:-32602".into());
        r.face = Some("mcp".into());
        db.execute(super::SQLITE_INSERT, (r.ts_ms, rec_json(&r)))
            .unwrap();
        // Each row as JSON: every computed column, with its SQL type (a number stays one).
        let rows: Vec<String> = db
            .prepare(
                "SELECT json_array(id, ts, kind, face, tool, duration_us, outcome, error, \
                 client, detail) FROM audit_log ORDER BY id",
            )
            .unwrap()
            .query_map((), |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                r#"[1,5,"tool_call",null,"a__b",7,"ok",null,"10.0.0.1",null]"#.to_owned(),
                format!(
                    r#"[2,{},"tool_call","mcp","x__\"y\"",42,"ok","rpc:-32602",null,"{{\"a\":1}}"]"#,
                    r.ts_ms
                ),
            ]
        );
    }

    #[test]
    fn a_record_is_json_that_keeps_every_text_but_u0000() {
        let nasty: String = (0u8..0x80)
            .map(char::from)
            .chain("é😀\u{2028}\u{7f}".chars())
            .collect();
        let mut r = record(&nasty, Some(nasty.clone()));
        r.principal = Some(nasty.as_str().into());
        r.duration_us = Some(i64::MIN);
        let text = rec_json(&r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cleaned = nasty.replace('\0', "\u{fffd}");
        assert_eq!(v[0], "tool_call");
        assert_eq!(v[1], serde_json::Value::Null);
        assert_eq!(v[2], cleaned.as_str());
        assert_eq!(v[7], cleaned.as_str());
        assert_eq!(v[8], i64::MIN);
        assert_eq!(v[9], "ok");
        assert_eq!(v[12], cleaned.as_str());
        assert_eq!(v.as_array().map(Vec::len), Some(13));
        assert!(!text.contains('\0'));
    }

    #[test]
    fn large_batches_are_split_by_size() {
        let big = "x".repeat(BATCH_TEXT / 3);
        let records: Vec<_> = (0..7).map(|_| record("t", Some(big.clone()))).collect();
        let texts = batch_json(&records);
        assert_eq!(
            texts.len(),
            4,
            "two records of a third of the limit per text"
        );
        let rows: usize = texts
            .iter()
            .map(|t| {
                assert!(t.len() <= BATCH_TEXT, "{}", t.len());
                serde_json::from_str::<Vec<serde_json::Value>>(t)
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(rows, 7);
        // One record larger than the limit still goes, in a text of its own.
        let huge = record("t", Some("y".repeat(BATCH_TEXT + 10)));
        assert_eq!(
            batch_json(&[record("t", None), huge, record("t", None)]).len(),
            3
        );
        assert!(batch_json::<AuditRecord>(&[]).is_empty());
    }
}
