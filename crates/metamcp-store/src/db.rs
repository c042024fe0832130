//! Choosing and opening the database: URL → backend, connection pool, per-connection SQLite
//! pragmas, and the embedded migrations of both backends.
//!
//! Every query in this crate is written once for sqlx's `Any` driver, in the subset both
//! backends accept (`$1` placeholders, BIGINT, TEXT, `ON CONFLICT`, `RETURNING`). The two
//! migration directories describe the same schema with the same version numbers; a test
//! checks that they stay in step.
//!
//! Invariant: a SQLite file is shared by several processes (`serve` and CLI commands), so it
//! runs in WAL mode with a 5 s busy timeout and writes start with `BEGIN IMMEDIATE` (see
//! [`crate::Store::begin_write`]); foreign keys are enforced on every connection.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::StoreError;

/// File name of the default SQLite database inside the data directory.
pub const DEFAULT_DB_FILE: &str = "metamcp.db";

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the database lives, resolved from the options.
#[derive(Debug)]
pub(crate) enum Target {
    Sqlite(Box<SqliteConnectOptions>),
    Postgres(String),
}

/// `None` → `<data_dir>/metamcp.db`; `sqlite:` URLs → that file; `postgres(ql)://` → PG.
pub(crate) fn resolve(database_url: Option<&str>, data_dir: &Path) -> Result<Target, StoreError> {
    let Some(url) = database_url.map(str::trim) else {
        return Ok(Target::Sqlite(Box::new(sqlite_file(
            data_dir.join(DEFAULT_DB_FILE),
        ))));
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid SQLite URL {url:?}: {e}")))?;
        let path = opts.get_filename();
        if path.as_os_str().is_empty() {
            return Err(StoreError::Config(format!(
                "SQLite URL {url:?} names no file (expected sqlite://PATH)"
            )));
        }
        return Ok(Target::Sqlite(Box::new(opts.create_if_missing(true))));
    }
    Err(StoreError::Config(format!(
        "unsupported database URL {:?}: expected sqlite://PATH, postgres://… or postgresql://…",
        redact_url(url)
    )))
}

fn sqlite_file(path: PathBuf) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
}

/// Connections of a SQLite pool, all open for the pool's life.
const SQLITE_CONNECTIONS: u32 = 8;

/// Has each of the pool's `n` connections read the (migrated) schema now, holding them all
/// at once so that none is left out.
///
/// why: a connection reads the schema on its first statement after a change (the
/// migrations changed it under all of them); done here, that cost is paid at start rather
/// than by whichever request happens to get the connection first.
async fn read_schema_everywhere(pool: &AnyPool, n: u32) -> Result<(), StoreError> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT 1 FROM sqlite_schema LIMIT 1")
            .execute(&mut *conn)
            .await?;
        held.push(conn);
    }
    Ok(())
}

/// Opens the pool and applies pending migrations.
pub(crate) async fn connect(target: &Target) -> Result<(AnyPool, Backend), StoreError> {
    sqlx::any::install_default_drivers();
    match target {
        Target::Sqlite(opts) => {
            let path = opts.get_filename();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
            }
            // why: the Any driver only takes a URL; let sqlx-sqlite write it so odd paths
            // survive (spaces, '?', '#').
            let any = AnyConnectOptions::from_url(&opts.to_url_lossy())?;
            // why: all eight connections are opened here and kept (a local file does not go
            // stale): a connection opened later parses the whole schema on its first
            // statement (about 1.5 million instructions), which made the gateway's cost vary
            // with how many connections a burst happened to need.
            let pool = AnyPoolOptions::new()
                .max_connections(SQLITE_CONNECTIONS)
                .min_connections(SQLITE_CONNECTIONS)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                })
                .connect_with(any)
                .await?;
            enable_wal(&pool).await?;
            migrate_sqlite(&pool).await?;
            read_schema_everywhere(&pool, SQLITE_CONNECTIONS).await?;
            Ok((pool, Backend::Sqlite))
        }
        Target::Postgres(url) => {
            let any = AnyConnectOptions::from_str(url).map_err(|e| {
                StoreError::Config(format!("invalid PostgreSQL URL {:?}: {e}", redact_url(url)))
            })?;
            let pool = AnyPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(any)
                .await?;
            // why: the PG migrator holds an advisory lock, so replicas starting together
            // apply each migration once.
            POSTGRES_MIGRATOR.run(&pool).await?;
            Ok((pool, Backend::Postgres))
        }
    }
}

/// WAL is a property of the file, so it is set once per open rather than per connection.
/// Switching needs a lock the busy handler does not wait for, hence the retry.
async fn enable_wal(pool: &AnyPool) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(pool)
            .await
        {
            Ok(mode) => {
                if !mode.eq_ignore_ascii_case("wal") {
                    // e.g. an in-memory database
                    tracing::debug!(mode, "SQLite journal mode is not WAL");
                }
                return Ok(());
            }
            Err(e) if attempt < 50 && is_busy(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), possibly extended (low byte).
            matches!(code.as_deref().and_then(|c| c.parse::<i64>().ok()), Some(c) if matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// SQLite has no migration lock: two processes opening a fresh file together may both try
/// the first migration, and the loser fails with "table already exists". Running the
/// migrator again then finds it applied.
async fn migrate_sqlite(pool: &AnyPool) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match SQLITE_MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "SQLite migration failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Milliseconds since the Unix epoch, the stored form of every timestamp.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A new row id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Stored 0/1 → bool (see the migrations for why booleans are BIGINT).
pub(crate) fn flag(v: i64) -> bool {
    v != 0
}

/// bool → stored 0/1.
pub(crate) fn bit(b: bool) -> i64 {
    i64::from(b)
}

/// The URL with any password replaced by `***`, for messages and Debug output.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_of_both_backends_match() {
        let list = |m: &Migrator| {
            m.iter()
                .map(|x| (x.version, x.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert!(!list(&SQLITE_MIGRATOR).is_empty());
        assert_eq!(list(&SQLITE_MIGRATOR), list(&POSTGRES_MIGRATOR));
    }

    #[test]
    fn resolves_urls() {
        let dir = Path::new("/data");
        match resolve(None, dir).unwrap() {
            Target::Sqlite(o) => assert_eq!(o.get_filename(), Path::new("/data/metamcp.db")),
            other => panic!("{other:?}"),
        }
        match resolve(Some("sqlite:///tmp/x y/a.db"), dir).unwrap() {
            Target::Sqlite(o) => assert_eq!(o.get_filename(), Path::new("/tmp/x y/a.db")),
            other => panic!("{other:?}"),
        }
        match resolve(Some("sqlite://rel/a.db"), dir).unwrap() {
            Target::Sqlite(o) => assert_eq!(o.get_filename(), Path::new("rel/a.db")),
            other => panic!("{other:?}"),
        }
        for pg in ["postgres://u@h/db", "postgresql://u:p@h:5/db"] {
            assert!(matches!(
                resolve(Some(pg), dir).unwrap(),
                Target::Postgres(_)
            ));
        }
        for bad in ["mysql://u:pw@h/db", "/tmp/a.db", "", "sqlite://"] {
            let err = resolve(Some(bad), dir).unwrap_err();
            assert!(matches!(err, StoreError::Config(_)), "{bad}: {err}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db?x=@"), "postgres://h/db?x=@");
    }
}
