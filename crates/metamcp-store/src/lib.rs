//! Persistence for the gateway: upstream servers (with encrypted secrets), namespaces and
//! their members, endpoints, API keys, users and their browser sessions, discovered tools,
//! settings, upstream logs, the audit log, and the
//! change counter that tells running gateways to reload.
//!
//! One [`Store`] talks to SQLite (default, a file in the data directory) or PostgreSQL through
//! sqlx's `Any` driver, with the same SQL and the same behaviour on both. Modules follow the
//! data: `db` (URL, pool, migrations), `secrets` (column encryption, master key), `tx` (the
//! [`Tx`] every configuration read and write goes through), one module per table family, and
//! `changes` (`config_version`, LISTEN/NOTIFY, [`Store::watch_changes`]).
//!
//! Invariants:
//! - Configuration (servers, namespaces, memberships, tool rules, endpoints, keys, settings)
//!   is read and written only through a [`Tx`]; a transaction that changed it bumps
//!   `meta.config_version` once, at commit, and on PostgreSQL notifies channel
//!   `metamcp_config` in the same transaction. Tool sync, logs and status reports are the
//!   gateway's own observations: [`Store`] methods that do not bump, since the gateway must
//!   not wake itself up.
//! - Secret values are encrypted before they reach SQL and decrypted only into [`ServerRecord`];
//!   API keys, and the state and browser cookie of a pending single sign-on login, are stored
//!   only as SHA-256 hashes.
//! - Names are validated with `metamcp_core`'s validators before they are stored.
//! - The data directory is 0700; the SQLite database, its `-wal`/`-shm` files and
//!   `secret.key` are 0600 (`files`), tightened when found looser.
//!
//! This crate does not start upstreams or serve anything; it does not cache: callers build
//! their snapshot from it and refresh on [`Store::watch_changes`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::AnyPool;

mod api_keys;
mod audit;
mod browser_sessions;
mod changes;
mod db;
mod endpoints;
mod error;
mod files;
mod logs;
mod meta;
mod namespace_tools;
mod namespaces;
mod oauth;
mod oidc_logins;
mod owners;
mod rotate;
mod secrets;
mod servers;
mod settings;
mod status;
mod tools;
mod tx;
mod upgrade;
mod upstream_oauth;
mod users;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use api_keys::{API_KEY_PREFIX, ActiveKey, ApiKeyRecord, generate_api_key, hash_api_key};
pub use audit::{AuditFilter, AuditRecord, AuditRow, AuditTexts, push_json_text};
pub use browser_sessions::{BrowserSession, NewBrowserSession, session_token_hash};
pub use changes::NOTIFY_CHANNEL;
pub use db::{Backend, DEFAULT_DB_FILE};
pub use endpoints::{EndpointLimits, EndpointRecord, LimitsUpdate};
pub use error::StoreError;
pub use logs::{LogEntry, LogLine};
pub use namespace_tools::{ShapingChange, ToolRuleRecord};
pub use namespaces::{NamespaceMember, NamespaceRecord};
pub use oauth::{OAuthClient, OAuthCode, OAuthGrant, Refreshed};
pub use oidc_logins::{MAX_PENDING_OIDC_LOGINS, OidcLogin};
pub use owners::{Owned, Owner, RemovedObjects};
pub use rotate::Rotated;
pub use secrets::{KEY_FILE, PREVIOUS_KEY_FILE, generate_master_key};
pub use servers::{ServerRecord, Upsert};
pub use status::ServerStatus;
pub use tools::DiscoveredTool;
pub use tx::Tx;
pub use upstream_oauth::{
    MAX_PENDING_UPSTREAM_FLOWS, TokenSet, UpstreamClient, UpstreamFlow, UpstreamToken,
};
pub use users::{NewUser, Role, UserCredentials, UserRecord, WebSetup};

/// Where the store lives and how secrets are keyed.
#[derive(Clone, Default)]
pub struct StoreOptions {
    /// `None` → SQLite `<data_dir>/metamcp.db`; else `sqlite://PATH`, `postgres://…` or
    /// `postgresql://…`.
    pub database_url: Option<String>,
    /// Holds the default SQLite file and the key file `secret.key`.
    pub data_dir: PathBuf,
    /// Base64 of the 32-byte master key (`METAMCP_SECRET_KEY`); `None` → the key file.
    pub secret_key: Option<String>,
    /// Base64 keys that only open values sealed before a rotation
    /// (`METAMCP_SECRET_KEY_PREVIOUS`); `secret.key.previous` in the data directory adds more.
    pub previous_keys: Vec<String>,
}

impl std::fmt::Debug for StoreOptions {
    // why: the URL may carry a password and the key is the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field(
                "database_url",
                &self.database_url.as_deref().map(db::redact_url),
            )
            .field("data_dir", &self.data_dir)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("previous_keys", &self.previous_keys.len())
            .finish()
    }
}

/// Handle on the database; clones share one pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL URL, for the LISTEN connection of [`Store::watch_changes`].
    pg_url: Option<String>,
    cipher: secrets::Cipher,
    /// The audit writer's own connection to the SQLite file (`None` for PostgreSQL and an
    /// in-memory SQLite database); see `audit::SqliteAppender`.
    audit_sqlite: Option<audit::SqliteAppender>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Resolves the database, loads (or creates) the master key, connects, migrates and
    /// upgrades stored values to the current formats (see `upgrade`).
    pub async fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        let target = db::resolve(opts.database_url.as_deref(), &opts.data_dir)?;
        let mut tightened = files::Tightened::default();
        let key_file = opts
            .secret_key
            .is_none()
            .then(|| opts.data_dir.join(KEY_FILE));
        if key_file.is_some() {
            tightened.private_dir(&opts.data_dir)?;
        }
        // why: the key comes first so a malformed METAMCP_SECRET_KEY fails before any
        // database file is created.
        let cipher = secrets::Cipher::load(
            opts.secret_key.as_deref(),
            &opts.previous_keys,
            &opts.data_dir,
        )?;
        if let Some(path) = &key_file {
            tightened.existing_file(path)?;
        }
        tightened.existing_file(&opts.data_dir.join(secrets::PREVIOUS_KEY_FILE))?;
        let db_file = match &target {
            db::Target::Sqlite(o) if o.get_filename() != Path::new(":memory:") => {
                Some(o.get_filename().to_owned())
            }
            _ => None,
        };
        if let Some(path) = &db_file {
            // why: only the data directory, or one created here, is made private; a custom
            // SQLite path may sit in a directory others share.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && (dir == opts.data_dir || !dir.exists())
            {
                tightened.private_dir(dir)?;
            }
            tightened.private_file(path)?;
        }
        let (pool, backend) = db::connect(&target).await?;
        if let Some(path) = &db_file {
            for suffix in ["-wal", "-shm"] {
                let mut sibling = path.as_os_str().to_owned();
                sibling.push(suffix);
                tightened.existing_file(Path::new(&sibling))?;
            }
        }
        if !tightened.0.is_empty() {
            tracing::info!(
                "made the store's files private (owner only): {}",
                tightened.0.join(", ")
            );
        }
        let pg_url = match target {
            db::Target::Postgres(url) => Some(url),
            db::Target::Sqlite(_) => None,
        };
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                pg_url,
                cipher,
                audit_sqlite: db_file.map(audit::SqliteAppender::new),
            }),
        };
        upgrade::run(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
        Ok(())
    }

    /// Closes the pool (idle connections are closed, new acquires fail). Other clones of
    /// this store are closed too.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// A key for `purpose` derived from the master key (see `secrets`): the same on every
    /// replica, unrelated across purposes.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        self.inner.cipher.derive(purpose)
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub(crate) fn cipher(&self) -> &secrets::Cipher {
        &self.inner.cipher
    }
}
