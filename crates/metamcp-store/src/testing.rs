//! Test support: run one scenario against a real SQLite file and a real PostgreSQL database.
//!
//! [`both_backends!`](crate::both_backends) turns scenario functions `async fn(Ctx)` into
//! one `#[tokio::test]` per backend. SQLite lives in a temporary directory; PostgreSQL gets a
//! fresh database per test on the server at `METAMCP_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards even when the scenario
//! fails. If PostgreSQL does not answer, the PG half is skipped with a note, unless `CI` is
//! set, in which case it fails.
//!
//! Compiled for this crate's tests and, with the `testing` feature, for other crates' tests
//! (the admin service layer runs its scenarios on both backends the same way).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::{Backend, Store, StoreOptions};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Where one test's database lives. Cheap to clone into spawned tasks.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub backend: Backend,
    /// PG URL of this test's own database; `None` for SQLite (default file in `dir`).
    pub url: Option<String>,
    pub dir: Arc<tempfile::TempDir>,
}

impl Ctx {
    /// Options for this test's database, with `secret_key` (else the key file in `dir`).
    pub fn options(&self, secret_key: Option<String>) -> StoreOptions {
        StoreOptions {
            database_url: self.url.clone(),
            data_dir: self.dir.path().to_owned(),
            secret_key,
            previous_keys: Vec::new(),
        }
    }

    /// Opens (and migrates) this test's store with the key file.
    pub async fn open(&self) -> Store {
        let store = Store::open(self.options(None)).await.unwrap();
        assert_eq!(store.backend(), self.backend);
        store
    }
}

/// The PostgreSQL server tests use.
pub fn pg_admin_url() -> String {
    std::env::var("METAMCP_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{query}", &base[..authority_end])
}

async fn pg_admin() -> Option<PgConnection> {
    let url = pg_admin_url();
    let res = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await;
    match res {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => pg_unavailable(&url, &e.to_string()),
        Err(_) => pg_unavailable(&url, "timed out"),
    }
}

fn pg_unavailable(url: &str, why: &str) -> Option<PgConnection> {
    let url = crate::db::redact_url(url);
    if std::env::var_os("CI").is_some() {
        panic!("PostgreSQL at {url} is required when CI is set: {why}");
    }
    eprintln!("note: PostgreSQL at {url} unavailable ({why}); skipping the PostgreSQL half");
    None
}

/// Runs `scenario` on a fresh SQLite store directory.
pub async fn run_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let ctx = Ctx {
        backend: Backend::Sqlite,
        url: None,
        dir: Arc::new(tempfile::tempdir().unwrap()),
    };
    scenario(ctx).await;
}

/// Runs `scenario` on a fresh PostgreSQL database, dropped afterwards.
pub async fn run_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(mut admin) = pg_admin().await else {
        return;
    };
    let name = format!("metamcp_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let ctx = Ctx {
        backend: Backend::Postgres,
        url: Some(with_database(&pg_admin_url(), &name)),
        dir: Arc::new(tempfile::tempdir().unwrap()),
    };
    // why: run the scenario in its own task so a failed assertion still drops the database.
    let outcome = tokio::spawn(scenario(ctx)).await;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One `#[tokio::test]` per backend for each scenario function `async fn(Ctx)` in scope:
/// modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    $crate::testing::run_sqlite(super::$scenario).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    $crate::testing::run_postgres(super::$scenario).await;
                }
            )*
        }
    };
}

/// An active OAuth grant of client `mcp_client_a` to `user_id` on endpoint `e1`, made at
/// `now` (epoch ms) and ending 1,000 s later.
pub fn oauth_grant(id: &str, user_id: &str, now: i64) -> crate::OAuthGrant {
    crate::OAuthGrant {
        id: id.into(),
        client_id: "mcp_client_a".into(),
        client_name: None,
        user_id: user_id.into(),
        endpoint_id: "e1".into(),
        resource: "http://127.0.0.1:1/metamcp/e/mcp".into(),
        scope: "mcp".into(),
        created_at: now,
        expires_at: now + 1_000_000,
        last_used_at: None,
        revoked_at: None,
        revoked_reason: None,
    }
}
