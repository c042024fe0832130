//! Process-level settings from flags and environment (MetaMCP's names where it had one):
//! `METAMCP_DATA_DIR`, `DATABASE_URL`, `METAMCP_SECRET_KEY`, `METAMCP_BIND`, `APP_URL`,
//! `METAMCP_ALLOWED_HOSTS`, `METAMCP_TRUSTED_PROXIES` (peers whose `X-Forwarded-For` is
//! believed for per-client rate limits), and logging via `RUST_LOG` or `DEBUG=*`. `serve`
//! also reads `METAMCP_ALLOWED_ORIGINS`, `METAMCP_ADMIN_BIND`, `METAMCP_ADMIN_API` and the
//! bounds of `metamcp_server::limits::Limits` (`app.rs`).

use std::path::PathBuf;

use metamcp_store::{Store, StoreOptions};

/// Where the configuration lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Directory for the SQLite database and the secret key file.
    #[arg(
        long,
        global = true,
        env = "METAMCP_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://PATH`) URL; SQLite in the data
    /// directory when unset.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    pub async fn open(&self) -> anyhow::Result<Store> {
        let secret_key = std::env::var("METAMCP_SECRET_KEY")
            .ok()
            .filter(|s| !s.is_empty());
        let previous_keys = std::env::var("METAMCP_SECRET_KEY_PREVIOUS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        let opts = StoreOptions {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            secret_key,
            previous_keys,
        };
        Ok(Store::open(opts).await?)
    }
}

/// Async worker threads of `serve`: `METAMCP_WORKER_THREADS`, else a quarter of the cores
/// (at least one).
///
/// Why so few: a relayed call is mostly waiting on sockets, and each hop between worker
/// threads costs a wake-up. On 2 cores the benchmark measured one worker at 0.059 ms added
/// latency and 0.87× direct throughput at c=16, against 0.14 ms and 0.68× with two: a
/// single worker relays ~50,000 calls/s, and the cores left over run the upstream servers.
pub fn worker_threads() -> usize {
    if let Some(n) = std::env::var("METAMCP_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return n.max(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / 4).max(1)
}

/// Sets up logging: `RUST_LOG` wins; `DEBUG=*` (MetaMCP's habit) turns on debug logs;
/// otherwise info. Logs go to stderr and never contain keys, tokens or env values.
pub fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::new(f),
        _ => match std::env::var("DEBUG") {
            Ok(d) if !d.is_empty() && d != "0" && d != "false" => {
                EnvFilter::new("debug,hyper=info,h2=info,sqlx=info,reqwest=info")
            }
            _ => EnvFilter::new(default),
        },
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
