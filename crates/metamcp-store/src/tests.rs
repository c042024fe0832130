//! Store scenarios run against real databases: every scenario once on SQLite (a file in a
//! temp dir) and once on PostgreSQL (a fresh database per test on the server at
//! `METAMCP_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`, dropped
//! afterwards). If PostgreSQL does not answer, the PG half is skipped with a note, unless
//! `CI` is set, in which case it fails.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use metamcp_core::{ServerSpec, Transport};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::*;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Where one test's database lives. Cheap to clone into spawned tasks.
#[derive(Clone)]
struct Ctx {
    backend: Backend,
    /// PG URL of this test's own database; `None` for SQLite (default file in `dir`).
    url: Option<String>,
    dir: Arc<tempfile::TempDir>,
}

impl Ctx {
    fn options(&self, secret_key: Option<String>) -> StoreOptions {
        StoreOptions {
            database_url: self.url.clone(),
            data_dir: self.dir.path().to_owned(),
            secret_key,
        }
    }

    async fn open(&self) -> Store {
        let store = Store::open(self.options(None)).await.unwrap();
        assert_eq!(store.backend(), self.backend);
        store
    }
}

fn pg_admin_url() -> String {
    std::env::var("METAMCP_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
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

async fn run_sqlite<F, Fut>(scenario: F)
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

async fn run_postgres<F, Fut>(scenario: F)
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

/// One `#[tokio::test]` per backend for each scenario function.
macro_rules! both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::run_sqlite(super::$scenario).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::run_postgres(super::$scenario).await;
                }
            )*
        }
    };
}

both_backends!(
    server_crud_and_secrets,
    upsert_is_idempotent,
    concurrent_creators_get_duplicate,
    namespaces_and_cascades,
    endpoint_flags,
    endpoint_rate_limits,
    api_keys,
    admin_keys,
    config_version_moves_only_on_config,
    watch_sees_other_store,
    tool_sync,
    tool_shaping,
    logs_are_trimmed,
    settings,
    wrong_key_is_a_decrypt_error,
    concurrent_open,
);

fn stdio(name: &str, env: &[(&str, &str)]) -> ServerSpec {
    ServerSpec {
        name: name.to_owned(),
        description: Some(format!("{name} server")),
        transport: Transport::Stdio {
            command: "npx".to_owned(),
            args: vec![
                "-y".to_owned(),
                "@modelcontextprotocol/server-everything".to_owned(),
            ],
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        },
    }
}

fn http(name: &str, token: Option<&str>) -> ServerSpec {
    ServerSpec {
        name: name.to_owned(),
        description: None,
        transport: Transport::StreamableHttp {
            url: "https://mcp.example.com/mcp".to_owned(),
            headers: BTreeMap::from([("X-Api-Header".to_owned(), "header-secret-789".to_owned())]),
            bearer_token: token.map(str::to_owned),
        },
    }
}

/// Every secret column of every server row, raw.
async fn raw_secret_columns(store: &Store) -> Vec<String> {
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT env, headers, bearer_token FROM servers")
            .fetch_all(store.pool())
            .await
            .unwrap();
    rows.into_iter()
        .flat_map(|(a, b, c)| [a, b, c])
        .flatten()
        .collect()
}

async fn server_crud_and_secrets(ctx: Ctx) {
    let store = ctx.open().await;
    store.ping().await.unwrap();
    assert!(store.list_servers().await.unwrap().is_empty());

    let everything = stdio("everything", &[("API_KEY", "plain-env-value-123")]);
    let remote = http("remote", Some("plain-token-456"));
    let legacy = ServerSpec {
        name: "legacy".into(),
        description: None,
        transport: Transport::Sse {
            url: "http://127.0.0.1:9/sse".into(),
            headers: BTreeMap::new(),
            bearer_token: None,
        },
    };
    let created = store.create_server(&remote).await.unwrap();
    assert_eq!(created.spec, remote);
    store.create_server(&everything).await.unwrap();
    store.create_server(&legacy).await.unwrap();

    let got = store.get_server("everything").await.unwrap().unwrap();
    assert_eq!(got.spec, everything);
    assert!(got.created_at > 0 && got.created_at == got.updated_at);
    assert_eq!(store.get_server("remote").await.unwrap().unwrap(), created);
    assert!(store.get_server("nope").await.unwrap().is_none());
    let names: Vec<_> = store
        .list_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.spec.name)
        .collect();
    assert_eq!(names, ["everything", "legacy", "remote"]);

    // Debug output of a record hides secrets too.
    let dbg = format!("{:?}", store.list_servers().await.unwrap());
    assert!(
        !dbg.contains("plain-env-value-123") && !dbg.contains("plain-token-456"),
        "{dbg}"
    );

    // The raw rows hold only sealed values.
    let raw = raw_secret_columns(&store).await;
    assert!(raw.len() >= 4, "{raw:?}");
    for value in &raw {
        assert!(value.starts_with("v1:"), "{value}");
        for plain in [
            "plain-env-value-123",
            "plain-token-456",
            "header-secret-789",
            "API_KEY",
        ] {
            assert!(!value.contains(plain), "{value} contains {plain}");
        }
    }

    assert!(matches!(
        store.create_server(&stdio("everything", &[])).await,
        Err(StoreError::Duplicate { kind: "server", ref name }) if name == "everything"
    ));
    assert!(matches!(
        store.create_server(&stdio("bad__name", &[])).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create_server(&stdio("", &[])).await,
        Err(StoreError::Invalid(_))
    ));
    let mut bad_url = http("badurl", None);
    if let Transport::StreamableHttp { url, .. } = &mut bad_url.transport {
        *url = "ftp://x".into();
    }
    assert!(matches!(
        store.create_server(&bad_url).await,
        Err(StoreError::Invalid(_))
    ));

    store.remove_server("legacy").await.unwrap();
    assert!(store.get_server("legacy").await.unwrap().is_none());
    assert!(matches!(
        store.remove_server("legacy").await,
        Err(StoreError::NotFound { kind: "server", ref name }) if name == "legacy"
    ));
    assert_eq!(store.list_servers().await.unwrap().len(), 2);
}

async fn upsert_is_idempotent(ctx: Ctx) {
    let store = ctx.open().await;
    let spec = stdio("s1", &[("TOKEN", "one")]);
    assert_eq!(store.upsert_server(&spec).await.unwrap(), Upsert::Created);
    let v = store.config_version().await.unwrap();
    let first = store.get_server("s1").await.unwrap().unwrap();

    assert_eq!(store.upsert_server(&spec).await.unwrap(), Upsert::Unchanged);
    assert_eq!(store.config_version().await.unwrap(), v);
    assert_eq!(store.get_server("s1").await.unwrap().unwrap(), first);

    let changed = stdio("s1", &[("TOKEN", "two")]);
    assert_eq!(
        store.upsert_server(&changed).await.unwrap(),
        Upsert::Updated
    );
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    let after = store.get_server("s1").await.unwrap().unwrap();
    assert_eq!(after.spec, changed);
    assert_eq!(after.id, first.id);
    assert_eq!(after.created_at, first.created_at);

    // Changing the transport kind is an update too.
    let to_http = http("s1", None);
    assert_eq!(
        store.upsert_server(&to_http).await.unwrap(),
        Upsert::Updated
    );
    assert_eq!(store.get_server("s1").await.unwrap().unwrap().spec, to_http);
    assert_eq!(
        store.upsert_server(&to_http).await.unwrap(),
        Upsert::Unchanged
    );
}

async fn concurrent_creators_get_duplicate(ctx: Ctx) {
    let (a, b) = (ctx.open().await, ctx.open().await);
    let spec = stdio("race", &[]);
    for _ in 0..5 {
        let (ra, rb) = tokio::join!(a.create_server(&spec), b.create_server(&spec));
        let oks = [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count();
        assert_eq!(oks, 1, "{ra:?} {rb:?}");
        let err = ra.err().or(rb.err()).unwrap();
        assert!(
            matches!(err, StoreError::Duplicate { kind: "server", .. }),
            "{err}"
        );
        a.remove_server("race").await.unwrap();
    }
    let (ra, rb) = tokio::join!(
        a.create_namespace("ns", None, &[]),
        b.create_namespace("ns", None, &[])
    );
    assert!(ra.is_ok() != rb.is_ok(), "{ra:?} {rb:?}");
    let err = ra.err().or(rb.err()).unwrap();
    assert!(
        matches!(
            err,
            StoreError::Duplicate {
                kind: "namespace",
                ..
            }
        ),
        "{err}"
    );
}

async fn namespaces_and_cascades(ctx: Ctx) {
    let store = ctx.open().await;
    for name in ["alpha", "beta", "gamma"] {
        store.create_server(&stdio(name, &[])).await.unwrap();
    }
    let v = store.config_version().await.unwrap();
    let err = store
        .create_namespace("ns1", None, &["alpha".into(), "missing".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "server", ref name } if name == "missing"),
        "{err}"
    );
    // The failed create left nothing behind and did not count as a change.
    assert!(store.get_namespace("ns1").await.unwrap().is_none());
    assert_eq!(store.config_version().await.unwrap(), v);

    let ns = store
        .create_namespace(
            "ns1",
            Some("first"),
            &["gamma".into(), "alpha".into(), "gamma".into()],
        )
        .await
        .unwrap();
    assert_eq!(ns.name, "ns1");
    assert_eq!(ns.description.as_deref(), Some("first"));
    let members: Vec<_> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(members, [("gamma", true), ("alpha", true)]);
    assert_eq!(store.get_namespace("ns1").await.unwrap().unwrap(), ns);
    assert!(matches!(
        store.create_namespace("ns1", None, &[]).await,
        Err(StoreError::Duplicate {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        store.create_namespace("bad name", None, &[]).await,
        Err(StoreError::Invalid(_))
    ));
    store.create_namespace("empty", None, &[]).await.unwrap();

    store
        .set_namespace_server_active("ns1", "alpha", false)
        .await
        .unwrap();
    store.add_namespace_server("ns1", "beta").await.unwrap();
    assert!(matches!(
        store.add_namespace_server("ns1", "beta").await,
        Err(StoreError::Duplicate { .. })
    ));
    assert!(matches!(
        store.add_namespace_server("nope", "beta").await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        store
            .set_namespace_server_active("empty", "beta", true)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let ns = store.get_namespace("ns1").await.unwrap().unwrap();
    let members: Vec<_> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(members, [("gamma", true), ("alpha", false), ("beta", true)]);

    store.remove_namespace_server("ns1", "gamma").await.unwrap();
    // Removing a server drops its memberships.
    store.remove_server("alpha").await.unwrap();
    let ns = store.get_namespace("ns1").await.unwrap().unwrap();
    let members: Vec<_> = ns.servers.iter().map(|m| m.server_name.as_str()).collect();
    assert_eq!(members, ["beta"]);

    let names: Vec<_> = store
        .list_namespaces()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["empty", "ns1"]);

    // Removing a namespace removes its endpoints, not other namespaces' ones.
    store
        .create_endpoint("ep1", "ns1", None, true, false)
        .await
        .unwrap();
    store
        .create_endpoint("ep2", "ns1", None, true, false)
        .await
        .unwrap();
    store
        .create_endpoint("ep3", "empty", None, true, false)
        .await
        .unwrap();
    store.remove_namespace("ns1").await.unwrap();
    let eps: Vec<_> = store
        .list_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(eps, ["ep3"]);
    assert!(matches!(
        store.remove_namespace("ns1").await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    // The servers stay.
    assert!(store.get_server("beta").await.unwrap().is_some());
}

async fn endpoint_flags(ctx: Ctx) {
    let store = ctx.open().await;
    let ns = store.create_namespace("ns", None, &[]).await.unwrap();
    let b = store
        .create_endpoint("b-open", "ns", Some("public"), false, true)
        .await
        .unwrap();
    let a = store
        .create_endpoint("a-keyed", "ns", None, true, false)
        .await
        .unwrap();
    assert_eq!((a.api_key_auth, a.query_auth), (true, false));
    assert_eq!((b.api_key_auth, b.query_auth), (false, true));
    assert_eq!(b.namespace_id, ns.id);
    assert_eq!(b.namespace_name, "ns");
    let listed = store.list_endpoints().await.unwrap();
    assert_eq!(listed, [a.clone(), b.clone()]);
    assert_eq!(store.get_endpoint("b-open").await.unwrap(), Some(b));
    assert!(matches!(
        store
            .create_endpoint("a-keyed", "ns", None, true, false)
            .await,
        Err(StoreError::Duplicate {
            kind: "endpoint",
            ..
        })
    ));
    assert!(matches!(
        store.create_endpoint("c", "nope", None, true, false).await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        store.create_endpoint("c/d", "ns", None, true, false).await,
        Err(StoreError::Invalid(_))
    ));
    store.remove_endpoint("a-keyed").await.unwrap();
    assert!(matches!(
        store.remove_endpoint("a-keyed").await,
        Err(StoreError::NotFound {
            kind: "endpoint",
            ..
        })
    ));
    assert_eq!(store.list_endpoints().await.unwrap().len(), 1);
}

async fn endpoint_rate_limits(ctx: Ctx) {
    use crate::{EndpointLimits, LimitsUpdate};
    use metamcp_core::RateLimit;
    let store = ctx.open().await;
    store.create_namespace("ns", None, &[]).await.unwrap();
    let r = |s: &str| s.parse::<RateLimit>().unwrap();
    // Without limits: none stored, none read.
    let plain = store
        .create_endpoint("plain", "ns", None, true, false)
        .await
        .unwrap();
    assert_eq!((plain.rate, plain.client_rate), (None, None));
    // Created with limits: read back as written, by get and list.
    let limited = store
        .create_endpoint_limited(
            "limited",
            "ns",
            None,
            true,
            false,
            EndpointLimits {
                rate: Some(r("100/60")),
                client_rate: Some(r("4294967295/86400")),
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.rate, Some(r("100/60")));
    assert_eq!(limited.client_rate, Some(r("4294967295/86400")));
    assert_eq!(
        store.get_endpoint("limited").await.unwrap(),
        Some(limited.clone())
    );
    assert_eq!(
        store.list_endpoints().await.unwrap(),
        [limited.clone(), plain.clone()]
    );
    // Update: one limit set, the other left alone.
    let v = store.config_version().await.unwrap();
    let up = store
        .update_endpoint_limits(
            "plain",
            LimitsUpdate {
                rate: Some(Some(r("3/1"))),
                client_rate: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((up.rate, up.client_rate), (Some(r("3/1")), None));
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    assert_eq!(store.get_endpoint("plain").await.unwrap(), Some(up));
    // Removing one keeps the other.
    let up = store
        .update_endpoint_limits(
            "limited",
            LimitsUpdate {
                rate: Some(None),
                client_rate: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((up.rate, up.client_rate), (None, limited.client_rate));
    let up = store
        .update_endpoint_limits(
            "limited",
            LimitsUpdate {
                rate: Some(Some(r("7/7"))),
                client_rate: Some(None),
            },
        )
        .await
        .unwrap();
    assert_eq!((up.rate, up.client_rate), (Some(r("7/7")), None));
    assert_eq!(store.get_endpoint("limited").await.unwrap(), Some(up));
    assert!(matches!(
        store
            .update_endpoint_limits("nope", LimitsUpdate::default())
            .await,
        Err(StoreError::NotFound {
            kind: "endpoint",
            ..
        })
    ));
}

fn is_key_format(key: &str) -> bool {
    key.len() == 70
        && key.starts_with("sk_mt_")
        && key[6..].bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn api_keys(ctx: Ctx) {
    let store = ctx.open().await;
    let (rec, key) = store.create_api_key("ci").await.unwrap();
    assert!(is_key_format(&key), "{key}");
    assert_eq!(rec.prefix, key[..10]);
    assert!(rec.active && rec.revoked_at.is_none());
    let (_, key2) = store.create_api_key("laptop").await.unwrap();
    assert_ne!(key, key2);

    // Nothing in the table reveals the key.
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT id, name, key_hash, key_prefix FROM api_keys")
            .fetch_all(store.pool())
            .await
            .unwrap();
    for (id, name, hash, prefix) in &rows {
        for col in [id, name, hash, prefix] {
            assert!(
                !col.contains(&key[10..]) && !col.contains(&key2[10..]),
                "{col}"
            );
        }
    }

    let active = store.active_api_keys().await.unwrap();
    assert_eq!(active.len(), 2);
    let ci = active.iter().find(|k| k.name == "ci").unwrap();
    assert_eq!(ci.hash, hash_api_key(&key));
    assert_eq!(ci.id, rec.id);

    assert!(matches!(
        store.create_api_key("ci").await,
        Err(StoreError::Duplicate {
            kind: "api key",
            ..
        })
    ));
    store.revoke_api_key("ci").await.unwrap();
    let active = store.active_api_keys().await.unwrap();
    assert_eq!(
        active.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["laptop"]
    );
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["ci", "laptop"]
    );
    assert!(!listed[0].active);
    let revoked_at = listed[0].revoked_at.unwrap();
    assert!(revoked_at >= listed[0].created_at);
    store.revoke_api_key("ci").await.unwrap();
    assert_eq!(
        store.list_api_keys().await.unwrap()[0].revoked_at,
        Some(revoked_at)
    );
    assert!(matches!(
        store.revoke_api_key("nope").await,
        Err(StoreError::NotFound {
            kind: "api key",
            ..
        })
    ));
}

async fn admin_keys(ctx: Ctx) {
    let store = ctx.open().await;
    let (plain, _) = store.create_api_key("plain").await.unwrap();
    assert!(!plain.admin);
    let v = store.config_version().await.unwrap();
    let (root, key) = store.create_api_key_with("root", true).await.unwrap();
    assert!(root.admin && root.active);
    assert!(store.config_version().await.unwrap() > v);

    let listed = store.list_api_keys().await.unwrap();
    let flags: Vec<(&str, bool)> = listed.iter().map(|k| (k.name.as_str(), k.admin)).collect();
    assert_eq!(flags, [("plain", false), ("root", true)]);
    let active = store.active_api_keys().await.unwrap();
    let r = active.iter().find(|k| k.name == "root").unwrap();
    assert!(r.admin);
    assert_eq!(r.hash, hash_api_key(&key));
    assert!(!active.iter().find(|k| k.name == "plain").unwrap().admin);

    // A revoked admin key is no longer among the active ones, admin or not.
    store.revoke_api_key("root").await.unwrap();
    assert!(
        store
            .active_api_keys()
            .await
            .unwrap()
            .iter()
            .all(|k| k.name != "root")
    );
    assert!(store.list_api_keys().await.unwrap()[1].admin);
}

async fn config_version_moves_only_on_config(ctx: Ctx) {
    let store = ctx.open().await;
    let mut v = store.config_version().await.unwrap();
    assert_eq!(v, 0);
    macro_rules! bumps {
        ($e:expr) => {{
            let out = $e.await.unwrap();
            let now = store.config_version().await.unwrap();
            assert_eq!(now, v + 1, "{}", stringify!($e));
            v = now;
            out
        }};
    }
    macro_rules! keeps {
        ($e:expr) => {{
            let _ = $e.await;
            assert_eq!(
                store.config_version().await.unwrap(),
                v,
                "{}",
                stringify!($e)
            );
        }};
    }
    let rec = bumps!(store.create_server(&stdio("s", &[])));
    bumps!(store.upsert_server(&stdio("t", &[])));
    bumps!(store.upsert_server(&stdio("t", &[("A", "b")])));
    keeps!(store.upsert_server(&stdio("t", &[("A", "b")])));
    bumps!(store.create_namespace("ns", None, &["s".into()]));
    bumps!(store.add_namespace_server("ns", "t"));
    bumps!(store.set_namespace_server_active("ns", "t", false));
    bumps!(store.remove_namespace_server("ns", "t"));
    bumps!(store.create_endpoint("ep", "ns", None, true, false));
    bumps!(store.update_endpoint_limits(
        "ep",
        crate::LimitsUpdate {
            rate: Some("5/1".parse().ok()),
            client_rate: None,
        }
    ));
    keeps!(store.update_endpoint_limits("nope", crate::LimitsUpdate::default()));
    bumps!(store.remove_endpoint("ep"));
    bumps!(store.create_api_key("k"));
    bumps!(store.revoke_api_key("k"));
    bumps!(store.set_setting("theme", "dark"));
    let tool = DiscoveredTool {
        name: "echo".into(),
        title: None,
        description: None,
        input_schema: serde_json::json!({"type": "object"}),
        annotations: None,
    };
    keeps!(store.sync_tools(&rec.id, std::slice::from_ref(&tool)));
    keeps!(store.append_server_logs(
        &rec.id,
        &[LogLine {
            ts_ms: 1,
            line: "x".into()
        }],
        10
    ));
    // Failed mutations do not count.
    keeps!(store.create_server(&stdio("s", &[])));
    keeps!(store.remove_server("nope"));
    keeps!(store.remove_endpoint("nope"));
    keeps!(store.revoke_api_key("nope"));
    bumps!(store.remove_namespace("ns"));
    bumps!(store.remove_server("s"));
    assert_eq!(v, 15);
}

async fn watch_sees_other_store(ctx: Ctx) {
    let a = ctx.open().await;
    let b = ctx.open().await;
    // On PostgreSQL the poll is far longer than the deadline, so only NOTIFY can be in time.
    let poll = match ctx.backend {
        Backend::Sqlite => Duration::from_millis(100),
        Backend::Postgres => Duration::from_secs(60),
    };
    let mut rx = a.watch_changes(poll);
    let start = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| *v >= 0))
        .await
        .expect("initial version published")
        .map(|v| *v)
        .unwrap();
    assert_eq!(start, a.config_version().await.unwrap());

    for round in 1..=2 {
        b.set_setting("k", &round.to_string()).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|v| *v > start))
            .await
            .unwrap_or_else(|_| panic!("round {round}: change not seen within 2 s"))
            .map(|v| *v)
            .unwrap();
        assert!(seen > start);
        let target = b.config_version().await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|v| *v == target))
            .await
            .unwrap()
            .unwrap();
    }
    // Not a configuration change: nothing new arrives.
    let rec = b.create_server(&stdio("s", &[])).await.unwrap();
    let v = b.config_version().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|x| *x == v))
        .await
        .unwrap()
        .unwrap();
    rx.mark_unchanged();
    b.append_server_logs(
        &rec.id,
        &[LogLine {
            ts_ms: 1,
            line: "l".into(),
        }],
        5,
    )
    .await
    .unwrap();
    b.sync_tools(&rec.id, &[]).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(400), rx.changed()).await;
    assert!(
        quiet.is_err(),
        "logs and tool sync must not signal a change"
    );
    // Dropping the last receiver ends the task, which releases its clone of the store.
    drop(rx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&a.inner) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch task still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tool(name: &str, description: &str) -> DiscoveredTool {
    DiscoveredTool {
        name: name.into(),
        title: Some(format!("{name} title")),
        description: Some(description.into()),
        input_schema: serde_json::json!({"type": "object", "properties": {"x": {"type": "string"}}}),
        annotations: Some(serde_json::json!({"readOnlyHint": true})),
    }
}

async fn tool_sync(ctx: Ctx) {
    let store = ctx.open().await;
    let s = store.create_server(&stdio("s", &[])).await.unwrap();
    let other = store.create_server(&stdio("other", &[])).await.unwrap();
    store
        .sync_tools(&other.id, &[tool("keep", "mine")])
        .await
        .unwrap();

    store
        .sync_tools(&s.id, &[tool("b", "bee"), tool("a", "ay")])
        .await
        .unwrap();
    assert_eq!(
        store.list_tools(&s.id).await.unwrap(),
        [tool("a", "ay"), tool("b", "bee")]
    );

    let bare = DiscoveredTool {
        name: "c".into(),
        title: None,
        description: None,
        input_schema: serde_json::json!({}),
        annotations: None,
    };
    store
        .sync_tools(&s.id, &[tool("b", "bee v2"), bare.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.list_tools(&s.id).await.unwrap(),
        [tool("b", "bee v2"), bare]
    );
    // Other servers' tools are untouched.
    assert_eq!(
        store.list_tools(&other.id).await.unwrap(),
        [tool("keep", "mine")]
    );

    store.sync_tools(&s.id, &[]).await.unwrap();
    assert!(store.list_tools(&s.id).await.unwrap().is_empty());
    assert!(matches!(
        store.sync_tools("no-such-id", &[tool("a", "ay")]).await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    // Tools go with their server.
    store.remove_server("other").await.unwrap();
    assert!(store.list_tools(&other.id).await.unwrap().is_empty());
}

async fn tool_shaping(ctx: Ctx) {
    let store = ctx.open().await;
    store.create_server(&stdio("a", &[])).await.unwrap();
    store.create_server(&stdio("b", &[])).await.unwrap();
    store
        .create_namespace("ns", None, &["a".to_owned()])
        .await
        .unwrap();
    let ns = store.get_namespace("ns").await.unwrap().unwrap();
    assert!(ns.new_tools_enabled && ns.max_name_length.is_none() && ns.tools.is_empty());

    let v0 = store.config_version().await.unwrap();
    let off = ToolRuleRecord {
        server_name: "a".into(),
        tool: "add".into(),
        status: Some("INACTIVE".into()),
        ..ToolRuleRecord::default()
    };
    let renamed = ToolRuleRecord {
        server_name: "a".into(),
        tool: "echo".into(),
        name: Some("say".into()),
        annotations: Some(r#"{"readOnlyHint":true}"#.into()),
        ..ToolRuleRecord::default()
    };
    store
        .change_shaping(
            "ns",
            &ShapingChange {
                new_tools_enabled: Some(false),
                max_name_length: Some(Some(64)),
                rules: vec![off.clone(), renamed.clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.config_version().await.unwrap(),
        v0 + 1,
        "one change, one bump"
    );
    let ns = store.get_namespace("ns").await.unwrap().unwrap();
    assert!(!ns.new_tools_enabled);
    assert_eq!(ns.max_name_length, Some(64));
    let got: Vec<(String, String, Option<String>, Option<String>)> = ns
        .tools
        .iter()
        .map(|r| {
            (
                r.server_name.clone(),
                r.tool.clone(),
                r.status.clone(),
                r.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), "add".into(), Some("INACTIVE".into()), None),
            ("a".into(), "echo".into(), None, Some("say".into())),
        ]
    );
    assert_eq!(
        ns.tools[1].annotations.as_deref(),
        Some(r#"{"readOnlyHint":true}"#)
    );

    // Rewriting a rule replaces it whole; an empty rule deletes it; the limit can be removed.
    store
        .change_shaping(
            "ns",
            &ShapingChange {
                max_name_length: Some(None),
                rules: vec![
                    ToolRuleRecord {
                        status: Some("ACTIVE".into()),
                        ..off
                    },
                    ToolRuleRecord {
                        server_name: "a".into(),
                        tool: "echo".into(),
                        ..ToolRuleRecord::default()
                    },
                ],
                ..ShapingChange::default()
            },
        )
        .await
        .unwrap();
    let ns = store.get_namespace("ns").await.unwrap().unwrap();
    assert_eq!(ns.max_name_length, None);
    assert!(!ns.new_tools_enabled, "untouched when not asked");
    assert_eq!(ns.tools.len(), 1);
    assert_eq!(ns.tools[0].status.as_deref(), Some("ACTIVE"));

    // A rule for a server outside the namespace, or an unknown namespace, is refused.
    let foreign = ShapingChange {
        rules: vec![ToolRuleRecord {
            server_name: "b".into(),
            tool: "x".into(),
            status: Some("INACTIVE".into()),
            ..ToolRuleRecord::default()
        }],
        ..ShapingChange::default()
    };
    assert!(matches!(
        store.change_shaping("ns", &foreign).await,
        Err(StoreError::NotFound {
            kind: "namespace member",
            ..
        })
    ));
    assert!(matches!(
        store
            .change_shaping("nope", &ShapingChange::default())
            .await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    // Rules go with their server and their namespace.
    store.remove_server("a").await.unwrap();
    let ns = store.get_namespace("ns").await.unwrap().unwrap();
    assert!(ns.tools.is_empty());
}

fn lines(range: std::ops::Range<i64>) -> Vec<LogLine> {
    range
        .map(|i| LogLine {
            ts_ms: 1_000 + i,
            line: format!("line {i}"),
        })
        .collect()
}

async fn logs_are_trimmed(ctx: Ctx) {
    let store = ctx.open().await;
    let s = store.create_server(&stdio("s", &[])).await.unwrap();
    let t = store.create_server(&stdio("t", &[])).await.unwrap();
    store
        .append_server_logs(&t.id, &lines(0..4), 100)
        .await
        .unwrap();

    store
        .append_server_logs(&s.id, &lines(0..5), 3)
        .await
        .unwrap();
    assert_eq!(store.server_logs("s", 10).await.unwrap(), lines(2..5));
    assert_eq!(store.server_logs("s", 2).await.unwrap(), lines(3..5));
    store
        .append_server_logs(&s.id, &lines(5..7), 3)
        .await
        .unwrap();
    assert_eq!(store.server_logs("s", 10).await.unwrap(), lines(4..7));
    store.append_server_logs(&s.id, &[], 3).await.unwrap();
    assert_eq!(store.server_logs("s", 10).await.unwrap(), lines(4..7));
    // The other server's lines are kept.
    assert_eq!(store.server_logs("t", 10).await.unwrap(), lines(0..4));
    store.append_server_logs(&s.id, &[], 0).await.unwrap();
    assert!(store.server_logs("s", 10).await.unwrap().is_empty());
    assert!(store.server_logs("s", 0).await.unwrap().is_empty());

    assert!(matches!(
        store.server_logs("nope", 10).await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    assert!(matches!(
        store
            .append_server_logs("no-such-id", &lines(0..1), 10)
            .await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
}

async fn settings(ctx: Ctx) {
    let store = ctx.open().await;
    assert_eq!(store.get_setting("a").await.unwrap(), None);
    store.set_setting("b", "2").await.unwrap();
    store.set_setting("a", "1").await.unwrap();
    store.set_setting("a", "one").await.unwrap();
    assert_eq!(
        store.get_setting("a").await.unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(
        store.list_settings().await.unwrap(),
        [
            ("a".to_owned(), "one".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ]
    );
    assert!(matches!(
        store.set_setting("", "x").await,
        Err(StoreError::Invalid(_))
    ));
}

async fn wrong_key_is_a_decrypt_error(ctx: Ctx) {
    let key = |b: u8| Some(base64::engine::general_purpose::STANDARD.encode([b; 32]));
    let right = Store::open(ctx.options(key(1))).await.unwrap();
    right
        .create_server(&stdio("secretive", &[("K", "v")]))
        .await
        .unwrap();
    right
        .create_server(&http("tokened", Some("t")))
        .await
        .unwrap();

    let wrong = Store::open(ctx.options(key(2))).await.unwrap();
    let err = wrong.list_servers().await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("secretive") || msg.contains("tokened"),
        "{msg}"
    );
    let err = wrong.get_server("tokened").await.unwrap_err();
    assert!(
        matches!(err, StoreError::Decrypt(ref m) if m.contains("tokened")),
        "{err}"
    );
    // Import cannot silently overwrite what it cannot read.
    assert!(matches!(
        wrong
            .upsert_server(&stdio("secretive", &[("K", "v")]))
            .await,
        Err(StoreError::Decrypt(_))
    ));
    // The key file is a third key, also wrong.
    let filed = ctx.open().await;
    assert!(matches!(
        filed.list_servers().await,
        Err(StoreError::Decrypt(_))
    ));
    // A malformed key is refused before anything is opened.
    assert!(matches!(
        Store::open(ctx.options(Some("not-a-key".into()))).await,
        Err(StoreError::Config(_))
    ));
    assert_eq!(right.list_servers().await.unwrap().len(), 2);
}

async fn concurrent_open(ctx: Ctx) {
    let (a, b, c) = tokio::join!(
        Store::open(ctx.options(None)),
        Store::open(ctx.options(None)),
        Store::open(ctx.options(None))
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.create_server(&stdio("x", &[("K", "v")])).await.unwrap();
    // All three share the key file and see the same data.
    assert_eq!(
        b.get_server("x").await.unwrap().unwrap().spec,
        stdio("x", &[("K", "v")])
    );
    assert_eq!(c.config_version().await.unwrap(), 1);
}

#[tokio::test]
async fn rejects_unknown_urls() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        database_url: Some("mysql://root:hunter2@localhost/db".into()),
        data_dir: dir.path().to_owned(),
        secret_key: None,
    };
    let dbg = format!("{opts:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    let err = Store::open(opts).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn sqlite_url_and_default_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub dir/my.db");
    let opts = StoreOptions {
        database_url: Some(format!("sqlite://{}", path.display())),
        data_dir: dir.path().join("data"),
        secret_key: None,
    };
    let store = Store::open(opts).await.unwrap();
    store.set_setting("x", "y").await.unwrap();
    assert!(path.exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);

    let data = dir.path().join("fresh");
    let store = Store::open(StoreOptions {
        data_dir: data.clone(),
        ..StoreOptions::default()
    })
    .await
    .unwrap();
    store.ping().await.unwrap();
    assert!(data.join(DEFAULT_DB_FILE).exists() && data.join(KEY_FILE).exists());
}

#[test]
fn replaces_database_in_url() {
    assert_eq!(
        with_database("postgres://u@h:5/test", "x"),
        "postgres://u@h:5/x"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
