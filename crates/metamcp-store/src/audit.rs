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

use futures::TryStreamExt;
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
/// (an array of 14-element arrays, [`batch_texts`]) and the server unpacks them.
///
/// why: binding 14 parameters per record through sqlx cost the gateway more CPU than the
/// relayed call being recorded; one text parameter leaves the unpacking to PostgreSQL, in
/// its own process. `WITH ORDINALITY` keeps the batch's order, so ids grow with time.
const PG_BATCH_INSERT: &str = "INSERT INTO audit_log (ts, kind, face, principal, user_id, \
     endpoint, namespace, server, tool, duration_us, outcome, error, client, detail) \
     SELECT (r->>0)::BIGINT, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, \
     (r->>9)::BIGINT, r->>10, r->>11, r->>12, r->>13 \
     FROM jsonb_array_elements(CAST($1 AS JSONB)) WITH ORDINALITY AS e(r, n) ORDER BY n";

/// SQLite's `INSERT` of one batch row (migration 0016): its records' oldest and newest
/// time, their count, and the records as one JSON text ([`batch_texts`]).
const SQLITE_INSERT: &str =
    "INSERT INTO audit_batches (ts_min, ts_max, n, recs) VALUES ($1, $2, $3, $4)";

/// Records in one SQLite batch row at most: a record's id is its row's id × `ROW_IDS` + its
/// place in the row (migration 0016), so ids grow with time and name one record each.
const ROW_IDS: i64 = 4_096;

/// SQLite's records, one row each, newest batch first ([`Tx::audit`] orders within a
/// batch): the view `audit_log`'s columns, the batch id (`bid`) and the place (`k`). Filters
/// name the columns, which SQLite resolves in `WHERE`.
///
/// why not the view: ordered by its computed id SQLite sorts every record before the first
/// page (about 0.9 s per million records, measured); ordered by the batch id it walks the
/// batches from the newest and stops at the page's end.
const SQLITE_SELECT: &str = "SELECT b.id AS bid, e.key AS k, \
     e.value ->> 0 AS ts, e.value ->> 1 AS kind, e.value ->> 2 AS face, \
     e.value ->> 3 AS principal, e.value ->> 4 AS user_id, e.value ->> 5 AS endpoint, \
     e.value ->> 6 AS namespace, e.value ->> 7 AS server, e.value ->> 8 AS tool, \
     e.value ->> 9 AS duration_us, e.value ->> 10 AS outcome, e.value ->> 11 AS error, \
     e.value ->> 12 AS client, e.value ->> 13 AS detail \
     FROM audit_batches AS b, json_each(b.recs) AS e WHERE e.type = 'array'";

/// The audit writer's own connection to a SQLite file, opened on first use and used from a
/// blocking thread: one cached prepared `INSERT` ([`SQLITE_INSERT`]) per batch row.
///
/// why: measured with callgrind (scripts/instructions.sh --quiet-too, 2026-12-04), sqlx's
/// multi-row statements (every value copied twice, a statement parsed per batch shape) cost
/// about 16,000 instructions per record, SQLite's `jsonb_each` unpacking a batch more
/// still, this connection binding fourteen values per record about 9,000, two values per
/// record (its time and one JSON text) about 6,000, of which the row's statement, B-tree
/// insert and time index were most; a batch's records as one row pay those once. WAL lets
/// it write beside the pool's connections (busy timeout 5 s).
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
        self.write(move |conn| {
            write_texts(conn, batch_texts(&records, ROW_IDS, ROW_TEXT))?;
            Ok(records)
        })
        .await
    }

    async fn append_texts(&self, texts: Vec<BatchText>) -> Result<(), StoreError> {
        self.write(move |conn| write_texts(conn, texts)).await
    }

    /// Runs `write` on the writer's connection, on a blocking thread; what it returns is
    /// dropped on the calling (runtime) thread.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut rusqlite::Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let slot = self.conn.clone();
        let written = tokio::task::spawn_blocking(move || {
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
            let out = write(&mut conn)?;
            // A connection whose write failed is dropped (the `?` above), not reused.
            *guard = Some(conn);
            Ok::<_, rusqlite::Error>(out)
        })
        .await
        .map_err(|e| StoreError::Audit(format!("the audit writer stopped: {e}")))?
        .map_err(|e| StoreError::Audit(e.to_string()))?;
        // why: what was written is freed here, on a runtime worker (where the gateway made
        // it), not on the blocking thread that wrote it: measured with perf at 16
        // concurrent callers, freeing each record on another thread than the one that
        // allocated it cost about 0.4 µs per call (the allocator's cross-thread free list,
        // collected and re-allocated on the worker with the block in the other core's cache).
        drop(written);
        Ok(())
    }
}

impl std::fmt::Debug for SqliteAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAppender")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn write_texts(
    conn: &mut rusqlite::Connection,
    texts: Vec<BatchText>,
) -> Result<Vec<BatchText>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(SQLITE_INSERT)?;
        for b in &texts {
            insert.execute((b.ts_min, b.ts_max, b.n, b.text.as_str()))?;
        }
    }
    tx.commit()?;
    Ok(texts)
}

/// JSON text of one [`PG_BATCH_INSERT`] statement at most (a batch beyond it is split, in
/// one transaction): bounds the copies a batch of large recorded payloads makes.
const BATCH_TEXT: usize = 4 << 20;

/// JSON text of one SQLite batch row at most, unless one record is larger: a batch of a
/// busy second (thousands of records) becomes rows of about this size, each built and
/// copied while it is still in the CPU's caches.
const ROW_TEXT: usize = 64 << 10;
/// Room past [`ROW_TEXT`] in a new text: the row that crosses the limit is written before
/// it is moved to a text of its own, and a call's row is a few hundred bytes.
const ROW_ROOM: usize = 4 << 10;

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

/// Records as one JSON array of [`row_json`]s, with what a SQLite batch row stores beside it.
#[derive(Debug)]
struct BatchText {
    text: String,
    /// Records in `text`.
    n: i64,
    /// Their oldest and newest time.
    ts_min: i64,
    ts_max: i64,
}

/// Records as JSON texts (what [`PG_BATCH_INSERT`] reads and a SQLite batch row holds), in
/// order, split so that a text holds at most `max_records` and `max_bytes` (a single larger
/// record gets a text of its own).
fn batch_texts<R: Borrow<AuditRecord>>(
    records: &[R],
    max_records: i64,
    max_bytes: usize,
) -> Vec<BatchText> {
    let mut texts = AuditTexts::with_limits(max_records, max_bytes);
    let mut parts = Parts::default();
    for r in records {
        let r = r.borrow();
        texts.push_row(r.ts_ms, |out| parts.push_row(out, r));
    }
    texts.finish()
}

/// The JSON of the parts of a record that repeat from one record to the next (who called
/// what: a caller's calls arrive together), kept from the record written last.
///
/// why: writing the text fields was most of what recording a call cost the audit writer
/// (about 1,400 instructions a record, measured with callgrind); a run of records from one
/// caller now writes them once.
#[derive(Debug, Default)]
struct Parts<'a> {
    names: Part<'a>,
    ending: Part<'a>,
}

/// The JSON (each field preceded by its comma) of some text fields of the record `of`.
#[derive(Debug, Default)]
struct Part<'a> {
    of: Option<&'a AuditRecord>,
    json: String,
}

/// Fields `kind` … `tool`, in the order of migration 0016's columns.
fn names(r: &AuditRecord) -> [Option<&str>; 8] {
    [
        Some(&r.kind),
        r.face.as_deref(),
        r.principal.as_deref(),
        r.user_id.as_deref(),
        r.endpoint.as_deref(),
        r.namespace.as_deref(),
        r.server.as_deref(),
        r.tool.as_deref(),
    ]
}

/// Fields `outcome`, `error`, `client`.
fn ending(r: &AuditRecord) -> [Option<&str>; 3] {
    [Some(&r.outcome), r.error.as_deref(), r.client.as_deref()]
}

impl<'a> Part<'a> {
    /// Appends `fields` of `r`: the kept JSON when the record it was written for has the
    /// same texts (the same shared name, or equal text).
    fn push<const N: usize>(
        &mut self,
        out: &mut String,
        r: &'a AuditRecord,
        fields: fn(&AuditRecord) -> [Option<&str>; N],
    ) {
        let now = fields(r);
        let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b) || a == b,
            (a, b) => a.is_none() && b.is_none(),
        };
        let kept = self
            .of
            .is_some_and(|p| fields(p).into_iter().zip(now).all(|(a, b)| same(a, b)));
        if !kept {
            self.json.clear();
            for t in now {
                self.json.push(',');
                push_json_text(&mut self.json, t);
            }
            self.of = Some(r);
        }
        out.push_str(&self.json);
    }
}

impl<'a> Parts<'a> {
    /// Appends `r` as the JSON array both backends' batch texts hold, in the order of
    /// migration 0016's columns: ts, kind, face, principal, user_id, endpoint, namespace,
    /// server, tool, duration_us, outcome, error, client, detail; texts [`clean`]ed.
    ///
    /// why written here and not by serializing a tuple: this runs for every recorded
    /// call; most of its fields are names that need no escaping, which one pass over their
    /// bytes tells, and that repeat ([`Parts`]); what does need escaping goes through
    /// serde_json.
    fn push_row(&mut self, out: &mut String, r: &'a AuditRecord) {
        let mut num = itoa::Buffer::new();
        out.push('[');
        out.push_str(num.format(r.ts_ms));
        self.names.push(out, r, names);
        out.push(',');
        match r.duration_us {
            Some(us) => out.push_str(num.format(us)),
            None => out.push_str("null"),
        }
        self.ending.push(out, r, ending);
        out.push(',');
        push_json_text(out, r.detail.as_deref());
        out.push(']');
    }
}

/// Audit rows as the batch texts the store writes, built as they come: the gateway renders
/// a call's row where the call ends (its caller's part rendered once per caller), so
/// recording a call allocates nothing per record and the writer binds the texts as they
/// are. A text holds at most 4,096 records and 64 KB unless one row is larger (a row that
/// does not fit starts the next text); [`batch_texts`] splits a batch of records the same way.
#[derive(Debug)]
pub struct AuditTexts {
    texts: Vec<BatchText>,
    records: usize,
    /// Records per text at most.
    max_records: i64,
    /// Bytes per text at most, unless one row is larger.
    max_bytes: usize,
    /// The capacity a new text starts with.
    first_capacity: usize,
}

impl Default for AuditTexts {
    /// Texts for SQLite batch rows (PostgreSQL takes them too).
    fn default() -> Self {
        AuditTexts::with_limits(ROW_IDS, ROW_TEXT)
    }
}

impl AuditTexts {
    fn with_limits(max_records: i64, max_bytes: usize) -> Self {
        // why: a text of many rows (SQLite's 64 KB) starts at its full size plus a row's
        // room, so it is never copied to grow as calls' rows arrive (it was 16 → 32 → 64 →
        // 128 KB, each step a copy); larger limits (PostgreSQL's) start at 64 KB and grow.
        let first_capacity = if max_records > 1 && max_bytes <= ROW_TEXT {
            max_bytes + ROW_ROOM
        } else {
            (max_bytes / 4).min(ROW_TEXT)
        };
        AuditTexts {
            texts: Vec::new(),
            records: 0,
            max_records,
            max_bytes,
            first_capacity,
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends `r` (any record: a sign-in, an admin change, a refusal).
    pub fn push_record(&mut self, r: &AuditRecord) {
        self.push_row(r.ts_ms, |out| Parts::default().push_row(out, r));
    }

    /// Appends the row `write` writes: one JSON array in the order of migration 0016's
    /// columns (ts, kind, face, principal, user_id, endpoint, namespace, server, tool,
    /// duration_us, outcome, error, client, detail), its texts written by
    /// [`push_json_text`]; `ts_ms` is its first element.
    pub fn push_row(&mut self, ts_ms: i64, write: impl FnOnce(&mut String)) {
        self.records += 1;
        let first_capacity = self.first_capacity;
        if let Some(b) = self.texts.last_mut()
            && b.n < self.max_records
        {
            let mark = b.text.len();
            b.text.push(',');
            write(&mut b.text);
            // Room left for the closing `]`?
            if b.text.len() < self.max_bytes {
                b.n += 1;
                b.ts_min = b.ts_min.min(ts_ms);
                b.ts_max = b.ts_max.max(ts_ms);
                return;
            }
            // Too long with it: the row starts a text of its own.
            let row = b.text.split_off(mark + 1);
            b.text.truncate(mark);
            b.text.push(']');
            let mut text = String::with_capacity(first_capacity.max(row.len() + 2));
            text.push('[');
            text.push_str(&row);
            self.texts.push(BatchText {
                text,
                n: 1,
                ts_min: ts_ms,
                ts_max: ts_ms,
            });
            return;
        }
        if let Some(b) = self.texts.last_mut() {
            b.text.push(']');
        }
        let mut text = String::with_capacity(first_capacity);
        text.push('[');
        write(&mut text);
        self.texts.push(BatchText {
            text,
            n: 1,
            ts_min: ts_ms,
            ts_max: ts_ms,
        });
    }

    /// The texts as the store writes them: each a JSON array of rows.
    pub fn into_json(self) -> Vec<String> {
        self.finish().into_iter().map(|b| b.text).collect()
    }

    /// The finished texts.
    fn finish(mut self) -> Vec<BatchText> {
        if let Some(b) = self.texts.last_mut() {
            b.text.push(']');
        }
        self.texts
    }
}

/// A text field of an audit row (see [`AuditTexts::push_row`]): `null` when absent, else a
/// JSON string as serde_json writes it, with U+0000 [`clean`]ed (PostgreSQL refuses it).
pub fn push_json_text(out: &mut String, t: Option<&str>) {
    let Some(t) = t else {
        out.push_str("null");
        return;
    };
    let plain = !needs_escape(t.as_bytes());
    if plain {
        out.push('"');
        out.push_str(t);
        out.push('"');
        return;
    }
    match serde_json::to_string(&*clean(t)) {
        Ok(json) => out.push_str(&json),
        // Serializing a `str` cannot fail.
        Err(_) => out.push_str("null"),
    }
}

/// Whether JSON needs `t` escaped: it holds a control character, `"` or `\\`.
///
/// why eight bytes at a time: a byte-wise check cost more than serde_json's escaping
/// writer; a 64-bit word tells whether any of its bytes is below 0x20 or equal to one of
/// the two (the classic "has a zero byte" test, exact about whether there is one).
fn needs_escape(t: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = t.chunks_exact(8);
    let mut hit = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or([b'"'; 8]));
        hit |= (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
            | zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')));
    }
    hit != 0
        || chunks
            .remainder()
            .iter()
            .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
fn row_json(r: &AuditRecord) -> String {
    let mut out = String::new();
    Parts::default().push_row(&mut out, r);
    out
}

/// [`SQLITE_INSERT`] of one batch text through sqlx (admin changes in their transaction, an
/// in-memory database).
fn sqlite_insert(b: BatchText) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(SQLITE_INSERT)
        .bind(b.ts_min)
        .bind(b.ts_max)
        .bind(b.n)
        .bind(b.text)
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
    /// own connection ([`SqliteAppender`]), on PostgreSQL as JSON texts of at most
    /// [`BATCH_TEXT`] ([`PG_BATCH_INSERT`]), on an in-memory SQLite database as batch rows
    /// through the pool.
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
                for b in batch_texts(&records, i64::MAX, BATCH_TEXT) {
                    sqlx::query(PG_BATCH_INSERT)
                        .bind(b.text)
                        .execute(tx.write_conn()?)
                        .await?;
                }
            }
            Backend::Sqlite => {
                for b in batch_texts(&records, ROW_IDS, ROW_TEXT) {
                    sqlite_insert(b).execute(tx.write_conn()?).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends rows rendered by the gateway ([`AuditTexts`]) in one transaction, as
    /// [`Store::append_audit`] appends records.
    pub async fn append_audit_texts(&self, texts: AuditTexts) -> Result<(), StoreError> {
        if texts.is_empty() {
            return Ok(());
        }
        let texts = texts.finish();
        if let Some(appender) = &self.inner.audit_sqlite {
            return appender.append_texts(texts).await;
        }
        let mut tx = self.begin().await?;
        match self.backend() {
            Backend::Postgres => {
                for b in texts {
                    sqlx::query(PG_BATCH_INSERT)
                        .bind(b.text)
                        .execute(tx.write_conn()?)
                        .await?;
                }
            }
            Backend::Sqlite => {
                for b in texts {
                    sqlite_insert(b).execute(tx.write_conn()?).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes records older than `older_than_ms` (epoch ms) and all but the newest
    /// `keep` records; returns how many went.
    pub async fn prune_audit(&self, older_than_ms: i64, keep: u64) -> Result<u64, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        if self.backend() == Backend::Sqlite {
            let mut tx = self.begin().await?;
            let n = prune_batches(tx.write_conn()?, older_than_ms, keep).await?;
            tx.commit().await?;
            return Ok(n);
        }
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
        .bind(keep)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(by_age + by_count)
    }
}

/// SQLite's pruning (migration 0016): batches whose records all go are deleted; in a batch
/// that keeps some, the ones that go become `null` (so the others keep their ids). Returns
/// how many records went.
async fn prune_batches(
    conn: &mut sqlx::AnyConnection,
    older_than_ms: i64,
    keep: i64,
) -> Result<u64, StoreError> {
    let mut gone: i64 = 0;
    // By age: whole batches, then the old records of batches that also hold newer ones.
    gone += delete_batches(&mut *conn, "ts_max < $1", older_than_ms).await?;
    let partial = sqlx::query("SELECT id, recs FROM audit_batches WHERE ts_min < $1")
        .bind(older_than_ms)
        .fetch_all(&mut *conn)
        .await?;
    for r in &partial {
        let (id, recs): (i64, String) = (r.try_get("id")?, r.try_get("recs")?);
        gone += thin_batch(&mut *conn, id, &recs, Thin::OlderThan(older_than_ms)).await?;
    }
    // By count: the newest batch holding a record beyond the newest `keep` — with `newer`
    // records in the batches after it. Older batches go whole; of this one, the records
    // beyond `keep` (its oldest) become `null`.
    // (The window reads only ids and counts: a subquery with a window function is
    // materialized, and with `recs` in it every stored record would be read each time.)
    let edge = sqlx::query(
        "SELECT id, newer FROM (SELECT id, n, \
         COALESCE(SUM(n) OVER (ORDER BY id DESC ROWS BETWEEN UNBOUNDED PRECEDING \
         AND 1 PRECEDING), 0) AS newer FROM audit_batches) \
         WHERE newer + n > $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(keep)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(edge) = edge {
        let (id, newer): (i64, i64) = (edge.try_get("id")?, edge.try_get("newer")?);
        let recs: String = sqlx::query("SELECT recs FROM audit_batches WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?
            .try_get("recs")?;
        gone += delete_batches(&mut *conn, "id < $1", id).await?;
        let stay = Thin::KeepNewest(keep.saturating_sub(newer));
        gone += thin_batch(&mut *conn, id, &recs, stay).await?;
    }
    Ok(u64::try_from(gone).unwrap_or(0))
}

/// Deletes the batches `WHERE` `condition` (on `$1` = `value`) holds; returns how many
/// records they held.
async fn delete_batches(
    conn: &mut sqlx::AnyConnection,
    condition: &'static str,
    value: i64,
) -> Result<i64, StoreError> {
    let sql = format!("DELETE FROM audit_batches WHERE {condition} RETURNING n");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .fetch_all(&mut *conn)
        .await?;
    let mut n = 0;
    for r in &rows {
        n += r.try_get::<i64, _>("n")?;
    }
    Ok(n)
}

/// Which records of a batch [`thin_batch`] lets go.
#[derive(Debug, Clone, Copy)]
enum Thin {
    /// Those older than this time (epoch ms).
    OlderThan(i64),
    /// All but this many of its newest (live) records.
    KeepNewest(i64),
}

/// Turns the records of batch `id` (text `recs`) that `thin` lets go into `null`, deletes
/// the batch when none is left, and returns how many went.
async fn thin_batch(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    recs: &str,
    thin: Thin,
) -> Result<i64, StoreError> {
    let bad = |e: serde_json::Error| StoreError::Audit(format!("an audit batch is not JSON: {e}"));
    let mut rows: Vec<Option<&serde_json::value::RawValue>> =
        serde_json::from_str(recs).map_err(bad)?;
    // Live records go oldest first: with `KeepNewest`, the first `live - keep` of them.
    let live = i64::try_from(rows.iter().flatten().count()).unwrap_or(i64::MAX);
    let (mut place, mut gone, mut n) = (0_i64, 0_i64, 0_i64);
    let (mut ts_min, mut ts_max) = (i64::MAX, i64::MIN);
    for slot in &mut rows {
        let Some(row) = slot else { continue };
        let record: serde_json::Value = serde_json::from_str(row.get()).map_err(bad)?;
        let ts = record[0].as_i64().unwrap_or(i64::MIN);
        let goes = match thin {
            Thin::OlderThan(cutoff) => ts < cutoff,
            Thin::KeepNewest(keep) => place < live - keep,
        };
        if goes {
            *slot = None;
            gone += 1;
        } else {
            n += 1;
            ts_min = ts_min.min(ts);
            ts_max = ts_max.max(ts);
        }
        place += 1;
    }
    if gone == 0 {
        return Ok(0);
    }
    if n == 0 {
        sqlx::query("DELETE FROM audit_batches WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    } else {
        let text = serde_json::to_string(&rows).map_err(bad)?;
        sqlx::query(
            "UPDATE audit_batches SET ts_min = $1, ts_max = $2, n = $3, recs = $4 WHERE id = $5",
        )
        .bind(ts_min)
        .bind(ts_max)
        .bind(n)
        .bind(text)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(gone)
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
            Backend::Sqlite => {
                let b = batch_texts(std::slice::from_ref(record), 1, ROW_TEXT)
                    .pop()
                    .ok_or_else(|| StoreError::Audit("a record made no batch text".to_owned()))?;
                sqlite_insert(b)
            }
        };
        insert.execute(self.write_conn()?).await?;
        Ok(())
    }

    /// Records matching `f`, newest first, at most `f.limit`.
    pub async fn audit(&mut self, f: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let sqlite = self.store.backend() == Backend::Sqlite;
        let mut sql = if sqlite {
            SQLITE_SELECT.to_owned()
        } else {
            format!("SELECT id, {COLUMNS} FROM audit_log WHERE 1 = 1")
        };
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
        // On SQLite the batch-level bounds come first, so a batch that cannot hold a match
        // is skipped without reading its records (each `$n` is bound once, in the order
        // of first use).
        let (since, before) = if sqlite {
            (
                "b.ts_max >= $N AND ts >=".to_owned(),
                format!("b.id <= $N / {ROW_IDS} AND b.id * {ROW_IDS} + e.key <"),
            )
        } else {
            ("ts >=".to_owned(), "id <".to_owned())
        };
        let mut numbers: Vec<i64> = Vec::new();
        for (cond, v) in [(since, f.since_ms), (before, f.before_id)] {
            if let Some(v) = v {
                numbers.push(v);
                let n = format!("${}", texts.len() + numbers.len());
                sql.push_str(&format!(" AND {} {n}", cond.replace("$N", &n)));
            }
        }
        if sqlite {
            sql.push_str(" ORDER BY b.id DESC");
        } else {
            sql.push_str(&format!(
                " ORDER BY id DESC LIMIT ${}",
                texts.len() + numbers.len() + 1
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in texts {
            q = q.bind(t);
        }
        for v in numbers {
            q = q.bind(v);
        }
        if !sqlite {
            q = q.bind(i64::try_from(f.limit).unwrap_or(i64::MAX));
            let rows = q.fetch_all(self.conn()).await?;
            return rows
                .iter()
                .map(|r| audit_row(r, r.try_get("id")?))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from);
        }
        // SQLite: batches newest first; a batch's records are put newest first here, and
        // reading stops at the end of the batch that fills the page.
        let mut out: Vec<AuditRow> = Vec::new();
        let mut batch: Vec<AuditRow> = Vec::new();
        let mut batch_id = None;
        let mut rows = q.fetch(self.conn());
        while let Some(r) = rows.try_next().await? {
            let bid: i64 = r.try_get("bid")?;
            if batch_id != Some(bid) {
                take_newest_first(&mut out, &mut batch);
                if out.len() >= f.limit {
                    break;
                }
                batch_id = Some(bid);
            }
            let k: i64 = r.try_get("k")?;
            batch.push(audit_row(
                &r,
                bid.saturating_mul(ROW_IDS).saturating_add(k),
            )?);
        }
        drop(rows);
        take_newest_first(&mut out, &mut batch);
        out.truncate(f.limit);
        Ok(out)
    }
}

/// Moves one batch's rows to `out`, newest (highest id) first.
fn take_newest_first(out: &mut Vec<AuditRow>, batch: &mut Vec<AuditRow>) {
    batch.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
    out.append(batch);
}

/// A row of the audit log's columns as a record with its id.
fn audit_row(r: &sqlx::any::AnyRow, id: i64) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id,
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
}

/// A text column of an audit row, as a record holds it.
fn shared(r: &sqlx::any::AnyRow, column: &str) -> Result<Option<Arc<str>>, sqlx::Error> {
    Ok(r.try_get::<Option<String>, _>(column)?.map(Arc::from))
}

#[cfg(test)]
mod tests {
    use super::{AuditRecord, BATCH_TEXT, ROW_IDS, ROW_TEXT, batch_texts, clean, row_json};

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
        let mut later = record("q\"\u{0}\n", None);
        later.ts_ms += 5;
        let texts = batch_texts(&[record("a__b", None), later], ROW_IDS, ROW_TEXT);
        assert_eq!(texts.len(), 1);
        assert_eq!(texts[0].n, 2);
        assert_eq!(texts[0].ts_min, 1_700_000_000_123);
        assert_eq!(texts[0].ts_max, 1_700_000_000_128);
        let v: serde_json::Value = serde_json::from_str(&texts[0].text).unwrap();
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

    /// Each row of the view `audit_log` as JSON: every computed column, with its SQL type
    /// (a number stays one).
    fn view(db: &rusqlite::Connection) -> Vec<String> {
        db.prepare(
            "SELECT json_array(id, ts, kind, face, tool, duration_us, outcome, error, \
             client, detail) FROM audit_log ORDER BY id",
        )
        .unwrap()
        .query_map((), |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[test]
    fn sqlite_reads_the_columns_out_of_the_stored_batches() {
        // Migrations 0015 and 0016 on a table of 0011's shape: old rows keep every field
        // (and their order: a record's id becomes its old id × 4096), and the computed
        // columns read what `batch_texts` writes.
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
        db.execute(
            "INSERT INTO audit_records (ts, rec) VALUES (6, json_array('admin', 'cli', \
             'cli', NULL, NULL, NULL, NULL, 'key create', NULL, 'ok', NULL, NULL, 'k'))",
            (),
        )
        .unwrap();
        db.execute_batch(include_str!("../migrations/sqlite/0016_audit_batches.sql"))
            .unwrap();
        let mut r = record("x__\"y\"", Some("{\"a\":1}".into()));
        r.error = Some("rpc:-32602".into());
        r.face = Some("mcp".into());
        let b = batch_texts(&[r.clone(), record("z", None)], ROW_IDS, ROW_TEXT)
            .pop()
            .unwrap();
        db.execute(
            super::SQLITE_INSERT,
            (b.ts_min, b.ts_max, b.n, b.text.as_str()),
        )
        .unwrap();
        assert_eq!(
            view(&db),
            [
                r#"[4096,5,"tool_call",null,"a__b",7,"ok",null,"10.0.0.1",null]"#.to_owned(),
                r#"[8192,6,"admin","cli","key create",null,"ok",null,null,"k"]"#.to_owned(),
                format!(
                    r#"[12288,{},"tool_call","mcp","x__\"y\"",42,"ok","rpc:-32602",null,"{{\"a\":1}}"]"#,
                    r.ts_ms
                ),
                format!(
                    r#"[12289,{},"tool_call",null,"z",42,"ok",null,null,null]"#,
                    r.ts_ms
                ),
            ]
        );
        // A pruned record (`null`) leaves the view; its neighbours keep their ids.
        db.execute(
            "UPDATE audit_batches SET recs = json_replace(recs, '$[0]', NULL) WHERE id = 3",
            (),
        )
        .unwrap();
        let ids: Vec<String> = view(&db)
            .iter()
            .map(|r| r.split(',').next().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["[4096", "[8192", "[12289"]);
    }

    #[test]
    fn repeated_parts_are_written_as_their_own_record_would_be() {
        // Runs of records sharing names (by pointer, by equal text) broken by a change in
        // each single field: every row of the batch text reads as that record alone does.
        let shared: std::sync::Arc<str> = "laptop".into();
        let base = {
            let mut r = record("a__b", None);
            r.principal = Some(shared.clone());
            r.client = Some("10.0.0.1".into());
            r
        };
        let mut records = vec![base.clone(), base.clone()];
        let mut copy = base.clone();
        copy.principal = Some("laptop".into());
        records.push(copy);
        for change in 0..14 {
            let mut r = base.clone();
            match change {
                0 => r.kind = "prompt_get".into(),
                1 => r.face = Some("sse".into()),
                2 => r.principal = None,
                3 => r.user_id = Some("u\"1".into()),
                4 => r.endpoint = Some("ep".into()),
                5 => r.namespace = Some("ns".into()),
                6 => r.server = Some("a".into()),
                7 => r.tool = Some("a__c".into()),
                8 => r.outcome = "tool_error".into(),
                9 => r.error = Some("is_error".into()),
                10 => r.client = None,
                11 => r.detail = Some("{}".into()),
                12 => r.duration_us = None,
                _ => r.ts_ms += 1,
            }
            records.push(r);
            records.push(base.clone());
        }
        let texts = batch_texts(&records, ROW_IDS, ROW_TEXT);
        assert_eq!(texts.len(), 1);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&texts[0].text).unwrap();
        assert_eq!(rows.len(), records.len());
        for (row, r) in rows.iter().zip(&records) {
            let alone: serde_json::Value = serde_json::from_str(&row_json(r)).unwrap();
            assert_eq!(row, &alone);
        }
        assert_eq!(rows[7][3], serde_json::Value::Null, "principal changed");
        assert_eq!(rows[8][3], "laptop", "and back");
    }

    #[test]
    fn rows_added_one_by_one_split_as_a_batch_does() {
        let mut records: Vec<_> = (0..40)
            .map(|i| record("t", Some("z".repeat(ROW_TEXT / 10 + i))))
            .collect();
        records.insert(7, record("t", Some("y".repeat(ROW_TEXT + 10))));
        records.extend((0..5000).map(|_| record("t", None)));
        let mut texts = super::AuditTexts::default();
        for r in &records {
            texts.push_record(r);
        }
        assert_eq!(texts.len(), records.len());
        let want: Vec<String> = batch_texts(&records, ROW_IDS, ROW_TEXT)
            .into_iter()
            .map(|b| b.text)
            .collect();
        let got = texts.into_json();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the same texts");
        assert!(super::AuditTexts::default().into_json().is_empty());
    }

    #[test]
    fn a_text_of_calls_rows_is_never_copied_to_grow() {
        let mut texts = super::AuditTexts::default();
        let r = record("alpha__echo", None);
        let mut firsts = Vec::new();
        for _ in 0..2_000 {
            texts.push_record(&r);
            let b = texts.texts.last().unwrap();
            if b.n == 1 {
                firsts.push(b.text.as_ptr());
            }
            assert_eq!(b.text.capacity(), super::ROW_TEXT + super::ROW_ROOM);
        }
        let done = texts.finish();
        assert!(done.len() > 2, "{} texts", done.len());
        for (b, first) in done.iter().zip(&firsts) {
            assert_eq!(b.text.as_ptr(), *first, "moved");
            assert!(b.text.len() < super::ROW_TEXT + super::ROW_ROOM);
        }
    }

    #[test]
    fn escaping_is_needed_exactly_where_json_escapes() {
        // Every byte at every place of a word and of the remainder, against serde_json.
        for len in [1usize, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for b in 0u8..0x80 {
                    let mut t = vec![b'a'; len];
                    t[at] = b;
                    let t = String::from_utf8(t).unwrap();
                    let json = serde_json::to_string(&t).unwrap();
                    assert_eq!(
                        super::needs_escape(t.as_bytes()),
                        json.len() != t.len() + 2,
                        "{t:?}"
                    );
                }
            }
        }
        assert!(!super::needs_escape("é😀\u{2028}\u{7f}ÿ".as_bytes()));
        assert!(!super::needs_escape(b""));
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
        r.ts_ms = i64::MAX;
        let text = row_json(&r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cleaned = nasty.replace('\0', "\u{fffd}");
        assert_eq!(v[0], i64::MAX);
        assert_eq!(v[1], "tool_call");
        assert_eq!(v[2], serde_json::Value::Null);
        assert_eq!(v[3], cleaned.as_str());
        assert_eq!(v[8], cleaned.as_str());
        assert_eq!(v[9], i64::MIN);
        assert_eq!(v[10], "ok");
        assert_eq!(v[13], cleaned.as_str());
        assert_eq!(v.as_array().map(Vec::len), Some(14));
        assert!(!text.contains('\0'));
    }

    #[test]
    fn large_batches_are_split_by_size_and_count() {
        let big = "x".repeat(BATCH_TEXT / 3);
        let records: Vec<_> = (0..7).map(|_| record("t", Some(big.clone()))).collect();
        let texts = batch_texts(&records, ROW_IDS, BATCH_TEXT);
        assert_eq!(
            texts.len(),
            4,
            "two records of a third of the limit per text"
        );
        let rows: usize = texts
            .iter()
            .map(|t| {
                assert!(t.text.len() <= BATCH_TEXT, "{}", t.text.len());
                let n = serde_json::from_str::<Vec<serde_json::Value>>(&t.text)
                    .unwrap()
                    .len();
                assert_eq!(i64::try_from(n).unwrap(), t.n);
                n
            })
            .sum();
        assert_eq!(rows, 7);
        // One record larger than the limit still goes, in a text of its own.
        let huge = record("t", Some("y".repeat(BATCH_TEXT + 10)));
        assert_eq!(
            batch_texts(
                &[record("t", None), huge, record("t", None)],
                ROW_IDS,
                BATCH_TEXT
            )
            .len(),
            3
        );
        assert!(batch_texts::<AuditRecord>(&[], ROW_IDS, ROW_TEXT).is_empty());
        // At most `max_records` per text.
        let many: Vec<_> = (0..10).map(|_| record("t", None)).collect();
        let counts: Vec<i64> = batch_texts(&many, 4, ROW_TEXT)
            .iter()
            .map(|t| t.n)
            .collect();
        assert_eq!(counts, [4, 4, 2]);
        // SQLite rows: at most `ROW_TEXT` each.
        let mid: Vec<_> = (0..40)
            .map(|_| record("t", Some("z".repeat(ROW_TEXT / 10))))
            .collect();
        let rows = batch_texts(&mid, ROW_IDS, ROW_TEXT);
        assert!(rows.iter().all(|t| t.text.len() <= ROW_TEXT));
        assert!(
            rows[..rows.len() - 1].iter().all(|t| t.n == 9),
            "as many as fit"
        );
        assert_eq!(rows.iter().map(|t| t.n).sum::<i64>(), 40);
    }
}
