//! The audit log, as the gateway writes it: one record per tool call, resource read and
//! prompt get on every face, per failed authentication and per sign-in and sign-out
//! (admin changes are recorded by `admin::run`, in their own transaction).
//!
//! Records are built on the request path from names the request already carries (no
//! payload is decoded for them): a call's row is rendered as JSON where the call ends, its
//! caller's part rendered once per caller ([`Who`]), into the texts the store writes
//! ([`AuditTexts`], bounded by [`AuditOptions::queue`] records); one writer task takes
//! them and appends them to the store, gathering for 100 ms after the first record of a
//! batch arrives, so a record is visible within a second. When the queue is full a record is dropped, counted
//! ([`Audit::dropped`]) and logged at most once a minute — or, with
//! `METAMCP_AUDIT_WHEN_FULL=block`, the call waits for room. The same task stamps API keys'
//! `last_used_at` (at most once a minute per key, [`Audit::key_used`]) and prunes the log by
//! age and count every minute.
//!
//! Invariant: a record names its principal (key name, user email), never a key or a
//! password; a call's record is written exactly once, `cancelled` when its future is
//! dropped before it ends ([`CallRecord`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metamcp_store::{AuditRecord, AuditTexts, Store, push_json_text};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;

/// Process-level settings of the audit log.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// `METAMCP_AUDIT` (`on` by default): record calls, refusals, sign-ins.
    pub enabled: bool,
    /// `METAMCP_AUDIT_QUEUE`: records waiting to be written, at most.
    pub queue: usize,
    /// `METAMCP_AUDIT_WHEN_FULL=block`: a call waits for room instead of its record being
    /// dropped.
    pub block_when_full: bool,
    /// `METAMCP_AUDIT_RETENTION_DAYS`: records older than this are deleted.
    pub max_age: Duration,
    /// `METAMCP_AUDIT_MAX_RECORDS`: at most this many records are kept (newest).
    pub max_records: u64,
    /// `METAMCP_AUDIT_REDACT`: words that, besides [`REDACT_WORDS`], make a field of a
    /// recorded payload secret when its name contains one (lower case).
    pub redact: Vec<String>,
    /// `METAMCP_AUDIT_PAYLOAD_BYTES`: a recorded payload is cut to this many bytes.
    pub payload_bytes: usize,
}

/// Field names containing one of these (case-insensitive) have their values recorded as
/// `<redacted>`: the gateway's list of secret-looking names, and the usual HTTP ones.
pub const REDACT_WORDS: &[&str] = &["authorization", "cookie", "bearer", "private"];

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: 10_000,
            block_when_full: false,
            max_age: Duration::from_secs(30 * 86_400),
            max_records: 1_000_000,
            redact: Vec::new(),
            payload_bytes: 4_096,
        }
    }
}

impl AuditOptions {
    /// Reads `METAMCP_AUDIT` (`on`/`off`), `METAMCP_AUDIT_QUEUE`, `METAMCP_AUDIT_WHEN_FULL`
    /// (`drop`/`block`), `METAMCP_AUDIT_RETENTION_DAYS` and `METAMCP_AUDIT_MAX_RECORDS`
    /// through `env`; an unset variable keeps its default, a bad one is an error naming it.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut o = AuditOptions::default();
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let positive = |name: &str, v: &str| -> Result<u64, String> {
            v.replace('_', "")
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} must be a positive whole number, not {v:?}"))
        };
        if let Some(v) = get("METAMCP_AUDIT") {
            o.enabled = crate::settings::parse_bool(&v)
                .ok_or_else(|| format!("METAMCP_AUDIT must be on or off, not {v:?}"))?;
        }
        if let Some(v) = get("METAMCP_AUDIT_QUEUE") {
            let n = positive("METAMCP_AUDIT_QUEUE", &v)?;
            o.queue = usize::try_from(n.min(1_000_000)).unwrap_or(1_000_000);
        }
        if let Some(v) = get("METAMCP_AUDIT_WHEN_FULL") {
            o.block_when_full = match v.as_str() {
                "drop" => false,
                "block" => true,
                _ => {
                    return Err(format!(
                        "METAMCP_AUDIT_WHEN_FULL must be drop or block, not {v:?}"
                    ));
                }
            };
        }
        if let Some(v) = get("METAMCP_AUDIT_RETENTION_DAYS") {
            let days = positive("METAMCP_AUDIT_RETENTION_DAYS", &v)?;
            o.max_age = Duration::from_secs(days.saturating_mul(86_400));
        }
        if let Some(v) = get("METAMCP_AUDIT_MAX_RECORDS") {
            o.max_records = positive("METAMCP_AUDIT_MAX_RECORDS", &v)?;
        }
        if let Some(v) = get("METAMCP_AUDIT_REDACT") {
            o.redact = v
                .split(',')
                .map(|w| w.trim().to_ascii_lowercase())
                .filter(|w| !w.is_empty())
                .collect();
        }
        if let Some(v) = get("METAMCP_AUDIT_PAYLOAD_BYTES") {
            let n = positive("METAMCP_AUDIT_PAYLOAD_BYTES", &v)?;
            o.payload_bytes = usize::try_from(n.min(1_048_576)).unwrap_or(1_048_576);
        }
        Ok(o)
    }
}

/// How long the writer gathers records after the first one arrives.
const GATHER: Duration = Duration::from_millis(100);
/// Key stamps waiting to be written, at most (a stamp that finds it full is retried a
/// minute later).
const KEY_QUEUE: usize = 1_024;
const STAMP_EVERY: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The gateway's audit writer.
#[derive(Debug)]
pub struct Audit {
    opts: AuditOptions,
    /// Rows waiting for the writer (at most `opts.queue`).
    ///
    /// why rendered rows and not records: measured with `metamcp-bench --observability`
    /// (2026-12-05), a boxed record per call, its copied names, a channel and the writer's
    /// later pass over records gone cold cost more CPU than their instruction count says;
    /// a row rendered while the call's names are in cache and appended under a short lock
    /// allocates nothing per call.
    pending: Mutex<AuditTexts>,
    /// Woken when the first row of a batch arrives.
    arrived: Notify,
    /// Woken when the writer took the rows (callers waiting for room, `block_when_full`).
    room: Notify,
    /// The writer has stopped: nobody makes room any more, so nobody waits for it.
    stopped: std::sync::atomic::AtomicBool,
    keys: mpsc::Sender<(String, i64)>,
    dropped: AtomicU64,
    last_drop_log: Mutex<Option<Instant>>,
    /// Key id → when its use was last stamped (bounded by the number of keys).
    stamped: Mutex<HashMap<String, Instant>>,
    /// The callers seen lately ([`Audit::who`]): [`WHO_SLOTS`] slots, each holding the last
    /// caller whose face, endpoint, principal and address hash to it.
    whos: Box<[Mutex<Option<Arc<Who>>>]>,
    rx: Mutex<Option<Receivers>>,
}

/// Slots of [`Audit::who`]'s cache (a bound: it holds at most this many callers).
const WHO_SLOTS: usize = 64;

#[derive(Debug)]
struct Receivers {
    keys: mpsc::Receiver<(String, i64)>,
}

/// Where a call came from: what a record names besides the call itself, held shared so
/// that each record of the request takes its names without copying them.
#[derive(Debug, Clone)]
pub struct Who {
    /// `mcp`, `sse`, `rest`, `stateless`.
    pub face: &'static str,
    /// The client's address (what `client` was formatted from).
    ip: Option<IpAddr>,
    /// `None`: not an endpoint's request (sign-in, the admin API).
    pub endpoint: Option<Arc<str>>,
    /// The key's name; `None`: an endpoint without key auth.
    pub principal: Option<Arc<str>>,
    /// The key's owner.
    pub user_id: Option<Arc<str>>,
    /// The client's address, as recorded.
    pub client: Option<Arc<str>>,
    /// The row fields `face`, `principal`, `user_id`, `endpoint` as JSON, each preceded by
    /// its comma (see `CallRecord::row`).
    json: String,
    /// The row field `client` as JSON, preceded by its comma.
    json_client: String,
}

impl Who {
    /// A request to `endpoint` by `principal`.
    pub fn new(
        face: &'static str,
        endpoint: &str,
        principal: &Principal,
        client: Option<IpAddr>,
    ) -> Self {
        let (principal, user_id) = match principal {
            Principal::Anonymous => (None, None),
            Principal::Key { name, owner, .. } => {
                (Some(Cow::Borrowed(name.as_str())), owner.as_deref())
            }
            // The dashboard inspector: recorded as the user it acts for.
            Principal::User { id, email, .. } => {
                (Some(Cow::Owned(format!("user {email}"))), Some(id.as_str()))
            }
        };
        Who::named(face, Some(endpoint), principal.as_deref(), user_id, client)
    }

    /// Whether this is what [`Who::new`] makes of these: every recorded name is the same.
    fn is(
        &self,
        face: &'static str,
        endpoint: &str,
        principal: &Principal,
        client: Option<IpAddr>,
    ) -> bool {
        let names = match principal {
            Principal::Anonymous => self.principal.is_none() && self.user_id.is_none(),
            Principal::Key { name, owner, .. } => {
                self.principal.as_deref() == Some(name.as_str())
                    && self.user_id.as_deref() == owner.as_deref()
            }
            Principal::User { id, email, .. } => {
                self.principal
                    .as_deref()
                    .and_then(|p| p.strip_prefix("user "))
                    == Some(email.as_str())
                    && self.user_id.as_deref() == Some(id.as_str())
            }
        };
        names
            && self.face == face
            && self.ip == client
            && self.endpoint.as_deref() == Some(endpoint)
    }

    /// Anything else: a sign-in, a failed authentication, an OAuth step.
    pub fn named(
        face: &'static str,
        endpoint: Option<&str>,
        principal: Option<&str>,
        user_id: Option<&str>,
        client: Option<IpAddr>,
    ) -> Self {
        let address: Option<Arc<str>> = client.map(|ip| ip.to_string().into());
        let mut json = String::new();
        for t in [Some(face), principal, user_id, endpoint] {
            json.push(',');
            push_json_text(&mut json, t);
        }
        let mut json_client = String::from(",");
        push_json_text(&mut json_client, address.as_deref());
        Who {
            face,
            ip: client,
            endpoint: endpoint.map(Into::into),
            principal: principal.map(Into::into),
            user_id: user_id.map(Into::into),
            client: address,
            json,
            json_client,
        }
    }
}

/// The audit kind of a client method, for the methods that are audited.
pub fn kind_of(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" => Some("tool_call"),
        "resources/read" => Some("resource_read"),
        "prompts/get" => Some("prompt_get"),
        _ => None,
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The tool answered an error (`isError: true`, or a JSON-RPC error from the server).
    ToolError,
    /// The server could not be reached, failed or answered nonsense.
    UpstreamError,
    Timeout,
    RateLimited,
    /// Refused by the gateway: authentication, an unknown or disabled tool, bad params.
    Denied,
    /// The client cancelled, or went away before the answer.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
            Outcome::RateLimited => "rate_limited",
            Outcome::Denied => "denied",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// An outcome and its error class (`None` when it went well).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub error: Option<String>,
}

impl Verdict {
    pub const OK: Verdict = Verdict {
        outcome: Outcome::Ok,
        error: None,
    };

    pub fn new(outcome: Outcome, error: impl Into<String>) -> Self {
        Verdict {
            outcome,
            error: Some(error.into()),
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Audit {
    pub fn new(opts: AuditOptions) -> Self {
        let (keys, keys_rx) = mpsc::channel(KEY_QUEUE);
        Audit {
            opts,
            pending: Mutex::new(AuditTexts::default()),
            arrived: Notify::new(),
            room: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            keys,
            dropped: AtomicU64::new(0),
            last_drop_log: Mutex::new(None),
            stamped: Mutex::new(HashMap::new()),
            whos: (0..WHO_SLOTS).map(|_| Mutex::new(None)).collect(),
            rx: Mutex::new(Some(Receivers { keys: keys_rx })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.opts.enabled
    }

    pub fn options(&self) -> &AuditOptions {
        &self.opts
    }

    /// Who is calling: the caller's names as records hold them, shared by its requests.
    ///
    /// why: building them per request (the address formatted, each name copied) cost
    /// more than a tenth of what recording a call costs; a caller's next request finds
    /// them in its slot, compared in full, so a slot never answers for someone else.
    pub fn who(
        &self,
        face: &'static str,
        endpoint: &str,
        principal: &Principal,
        client: Option<IpAddr>,
    ) -> Arc<Who> {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = foldhash::fast::FixedState::default().build_hasher();
        face.hash(&mut h);
        endpoint.hash(&mut h);
        client.hash(&mut h);
        match principal {
            Principal::Anonymous => {}
            Principal::Key { name, .. } => name.hash(&mut h),
            Principal::User { id, .. } => id.hash(&mut h),
        }
        // why: the modulo keeps the index in bounds whatever the hash.
        let mut slot =
            self.whos[usize::try_from(h.finish() % WHO_SLOTS as u64).unwrap_or(0)].lock();
        if let Some(who) = slot.as_ref()
            && who.is(face, endpoint, principal, client)
        {
            return who.clone();
        }
        let who = Arc::new(Who::new(face, endpoint, principal, client));
        *slot = Some(who.clone());
        who
    }

    /// Records dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting to be written.
    pub fn queued(&self) -> usize {
        self.pending.lock().len()
    }

    /// Adds a row with `add` unless `opts.queue` rows wait already; wakes the writer for
    /// the first row of a batch.
    fn try_add(&self, add: impl FnOnce(&mut AuditTexts)) -> bool {
        let mut pending = self.pending.lock();
        if pending.len() >= self.opts.queue.max(1) {
            return false;
        }
        let first = pending.is_empty();
        add(&mut pending);
        drop(pending);
        if first {
            self.arrived.notify_one();
        }
        true
    }

    /// Adds a row with `add` (when the audit log is on): dropped and counted when the
    /// queue is full, unless configured to wait for room.
    async fn add(&self, add: impl Fn(&mut AuditTexts)) {
        if !self.opts.block_when_full {
            self.add_now(add);
            return;
        }
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.stopped.load(Ordering::Acquire) {
                self.add_now(add);
                return;
            }
            if self.try_add(&add) {
                return;
            }
            room.await;
        }
    }

    /// [`Audit::add`] for a caller that cannot wait (a drop guard): never blocks.
    fn add_now(&self, add: impl FnOnce(&mut AuditTexts)) {
        if self.try_add(add) {
            return;
        }
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_drop_log.lock();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped = n,
                queue = self.opts.queue,
                "audit queue full: records are being dropped (METAMCP_AUDIT_QUEUE, \
                 METAMCP_AUDIT_WHEN_FULL=block)"
            );
        }
    }

    /// Queues `record` (when the audit log is on): dropped and counted when the queue is
    /// full, unless configured to wait for room.
    pub async fn record(&self, record: AuditRecord) {
        if !self.opts.enabled {
            return;
        }
        self.add(|t| t.push_record(&record)).await;
    }

    /// [`Audit::record`] for a caller that cannot wait: never blocks.
    pub fn record_now(&self, record: AuditRecord) {
        if !self.opts.enabled {
            return;
        }
        self.add_now(|t| t.push_record(&record));
    }

    /// Notes that the key with id `key_id` was used now: its `last_used_at` is stamped at
    /// most once a minute, by the writer task.
    pub fn key_used(&self, key_id: &str) {
        let now = Instant::now();
        {
            let mut stamped = self.stamped.lock();
            match stamped.get_mut(key_id) {
                Some(t) if now.duration_since(*t) < STAMP_EVERY => return,
                Some(t) => *t = now,
                None => {
                    stamped.insert(key_id.to_owned(), now);
                }
            }
        }
        if self.keys.try_send((key_id.to_owned(), now_ms())).is_err() {
            // Full: forget the stamp so the next use tries again.
            self.stamped.lock().remove(key_id);
        }
    }

    /// The recorded form of a call's arguments (`params.arguments`) and its answer (the
    /// JSON-RPC response's `result` or `error`): every field whose name contains a word of
    /// [`REDACT_WORDS`], `metamcp_core::secrets::SECRET_PARAM_WORDS` or
    /// `METAMCP_AUDIT_REDACT` becomes `"<redacted>"`, and the whole is cut to
    /// `METAMCP_AUDIT_PAYLOAD_BYTES` (ending in `…`). Only for namespaces that ask for it.
    pub fn payloads(&self, params: Option<&str>, answer: &str) -> String {
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
        let mut arguments = params
            .and_then(parse)
            .and_then(|mut p| p.get_mut("arguments").map(serde_json::Value::take))
            .unwrap_or(serde_json::Value::Null);
        let mut result = parse(answer)
            .and_then(|mut a| {
                let key = if a.get("error").is_some() {
                    "error"
                } else {
                    "result"
                };
                a.get_mut(key).map(serde_json::Value::take)
            })
            .unwrap_or(serde_json::Value::Null);
        self.redact(&mut arguments);
        self.redact(&mut result);
        let mut text = serde_json::json!({ "arguments": arguments, "result": result }).to_string();
        let cap = self.opts.payload_bytes;
        if text.len() > cap {
            let mut end = cap.saturating_sub('…'.len_utf8());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        text
    }

    fn redact(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    let name = k.to_ascii_lowercase();
                    let secret = REDACT_WORDS
                        .iter()
                        .chain(metamcp_core::secrets::SECRET_PARAM_WORDS)
                        .any(|w| name.contains(w))
                        || self.opts.redact.iter().any(|w| name.contains(w.as_str()));
                    if secret {
                        *v = serde_json::Value::String("<redacted>".to_owned());
                    } else {
                        self.redact(v);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v)),
            _ => {}
        }
    }

    /// Forgets stamps of keys that no longer exist (called on reload).
    pub fn retain_keys(&self, live: impl Fn(&str) -> bool) {
        self.stamped.lock().retain(|id, _| live(id));
    }

    /// Starts the writer task; it stops (after writing what is queued) when `stop` fires.
    /// Returns `None` when it was started already.
    pub fn start(
        self: &Arc<Self>,
        store: Store,
        metrics: Arc<crate::metrics::Metrics>,
        stop: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let rx = self.rx.lock().take()?;
        let audit = self.clone();
        Some(tokio::spawn(async move {
            write_loop(audit.clone(), store, metrics, rx, stop).await;
            audit.writer_stopped();
        }))
    }

    /// The writer has ended: whoever waits for room now would wait forever, so they drop
    /// (and count) instead.
    fn writer_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
        self.room.notify_waiters();
    }
}

async fn write_loop(
    audit: Arc<Audit>,
    store: Store,
    metrics: Arc<crate::metrics::Metrics>,
    mut rx: Receivers,
    stop: CancellationToken,
) {
    let mut stamps: Vec<(String, i64)> = Vec::new();
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            biased;
            () = audit.arrived.notified() => {}
            n = rx.keys.recv_many(&mut stamps, KEY_QUEUE) => if n == 0 { return },
            _ = prune.tick() => {
                prune_once(&audit, &store).await;
                continue;
            }
            () = stop.cancelled() => {
                while let Ok(s) = rx.keys.try_recv() {
                    stamps.push(s);
                }
                flush(&audit, &store, &metrics, &mut stamps).await;
                return;
            }
        }
        // why: gathering for a moment without being woken per record turns one transaction
        // (and one task wake-up) per record into one per GATHER under load; a record is
        // still readable well within a second.
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = stop.cancelled() => {}
        }
        flush(&audit, &store, &metrics, &mut stamps).await;
    }
}

/// Writes the rows waiting and the key stamps gathered.
async fn flush(
    audit: &Audit,
    store: &Store,
    metrics: &crate::metrics::Metrics,
    stamps: &mut Vec<(String, i64)>,
) {
    let rows = std::mem::take(&mut *audit.pending.lock());
    audit.room.notify_waiters();
    if !rows.is_empty() {
        let started = Instant::now();
        let n = rows.len();
        let written = store.append_audit_texts(rows).await;
        metrics.store_op("audit_write", started.elapsed());
        if let Err(e) = written {
            tracing::warn!(error = %e, records = n, "writing audit records failed; they are lost");
        }
    }
    if !stamps.is_empty() {
        if let Err(e) = store.touch_api_keys(stamps).await {
            tracing::debug!(error = %e, "stamping API keys' last use failed");
        }
        stamps.clear();
    }
}

async fn prune_once(audit: &Audit, store: &Store) {
    let age_ms = i64::try_from(audit.opts.max_age.as_millis()).unwrap_or(i64::MAX);
    match store
        .prune_audit(now_ms().saturating_sub(age_ms), audit.opts.max_records)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(deleted = n, "audit log pruned"),
        Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
    }
}

/// The record of one call in flight: written once, when [`CallRecord::finish`] is called or,
/// if the call's future is dropped first (the client cancelled or went away), as
/// `cancelled` when it is dropped. It borrows what it names; its row is rendered when it
/// is written.
#[derive(Debug)]
pub struct CallRecord<'a> {
    audit: &'a Audit,
    who: &'a Who,
    kind: &'static str,
    namespace: &'a str,
    tool: Option<&'a str>,
    ts_ms: i64,
    started: Instant,
    /// Not written yet.
    open: bool,
}

impl<'a> CallRecord<'a> {
    /// Starts the record of a `kind` call to `tool` on `namespace` from `who`, which
    /// arrived at `started` (the caller's clock reading, shared with the metrics); `None`
    /// when the audit log is off.
    pub fn start(
        audit: &'a Audit,
        who: &'a Who,
        kind: &'static str,
        namespace: &'a str,
        tool: Option<&'a str>,
        started: Instant,
    ) -> Option<Self> {
        if !audit.enabled() {
            return None;
        }
        Some(CallRecord {
            audit,
            who,
            kind,
            namespace,
            tool,
            ts_ms: now_ms(),
            started,
            open: true,
        })
    }

    /// Writes the record with the server that answered, how the call ended, how long it
    /// `took` and, on a namespace that records them, its payloads ([`Audit::payloads`]).
    pub async fn finish(
        mut self,
        server: Option<&str>,
        verdict: Verdict,
        detail: Option<String>,
        took: Duration,
    ) {
        self.open = false;
        let us = i64::try_from(took.as_micros()).unwrap_or(i64::MAX);
        let outcome = verdict.outcome.as_str();
        let (error, detail) = (verdict.error.as_deref(), detail.as_deref());
        self.audit
            .add(|t| {
                t.push_row(self.ts_ms, |out| {
                    self.row(out, server, us, outcome, error, detail);
                });
            })
            .await;
    }

    /// The row, in the order of the store's columns: ts, kind, face, principal, user_id,
    /// endpoint, namespace, server, tool, duration_us, outcome, error, client, detail.
    fn row(
        &self,
        out: &mut String,
        server: Option<&str>,
        duration_us: i64,
        outcome: &str,
        error: Option<&str>,
        detail: Option<&str>,
    ) {
        let mut num = itoa::Buffer::new();
        out.push('[');
        out.push_str(num.format(self.ts_ms));
        out.push(',');
        push_json_text(out, Some(self.kind));
        out.push_str(&self.who.json);
        for t in [Some(self.namespace), server, self.tool] {
            out.push(',');
            push_json_text(out, t);
        }
        out.push(',');
        out.push_str(num.format(duration_us));
        out.push(',');
        push_json_text(out, Some(outcome));
        out.push(',');
        push_json_text(out, error);
        out.push_str(&self.who.json_client);
        out.push(',');
        push_json_text(out, detail);
        out.push(']');
    }
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        if self.open {
            let us = elapsed_us(self.started);
            let outcome = Outcome::Cancelled.as_str();
            self.audit.add_now(|t| {
                t.push_row(self.ts_ms, |out| {
                    self.row(out, None, us, outcome, Some("cancelled"), None);
                });
            });
        }
    }
}

fn elapsed_us(t: Instant) -> i64 {
    i64::try_from(t.elapsed().as_micros()).unwrap_or(i64::MAX)
}

/// The record of a request refused before it reached a namespace (rate limit, auth).
pub fn refusal(
    who: &Who,
    kind: &'static str,
    tool: Option<Arc<str>>,
    verdict: Verdict,
) -> AuditRecord {
    AuditRecord {
        ts_ms: now_ms(),
        kind: kind.into(),
        face: Some(who.face.into()),
        principal: who.principal.clone(),
        user_id: who.user_id.clone(),
        endpoint: who.endpoint.clone(),
        namespace: None,
        server: None,
        tool,
        duration_us: None,
        outcome: verdict.outcome.as_str().into(),
        error: verdict.error,
        client: who.client.clone(),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Who {
        Who::new(
            "mcp",
            "ep",
            &Principal::Key {
                id: "k1".into(),
                name: "laptop".into(),
                owner: Some("u1".into()),
            },
            Some(IpAddr::from([10, 0, 0, 7])),
        )
    }

    #[tokio::test]
    async fn a_call_is_recorded_once_and_a_dropped_one_as_cancelled() {
        let audit = Audit::new(AuditOptions::default());
        let who = who();
        let rec = CallRecord::start(
            &audit,
            &who,
            "tool_call",
            "ns",
            Some("a__\"b\""),
            Instant::now(),
        );
        rec.unwrap()
            .finish(
                Some("a"),
                Verdict::new(Outcome::ToolError, "is_error"),
                Some("{\"x\":1}".into()),
                Duration::from_micros(1234),
            )
            .await;
        let rows = taken(&audit);
        assert_eq!(rows.len(), 1, "exactly one record");
        let r = &rows[0];
        // The row rendered for the call is the one the store renders for its record.
        let record = AuditRecord {
            ts_ms: r[0].as_i64().unwrap(),
            kind: "tool_call".into(),
            face: Some("mcp".into()),
            principal: Some("laptop".into()),
            user_id: Some("u1".into()),
            endpoint: Some("ep".into()),
            namespace: Some("ns".into()),
            server: Some("a".into()),
            tool: Some("a__\"b\"".into()),
            duration_us: Some(1234),
            outcome: "tool_error".into(),
            error: Some("is_error".into()),
            client: Some("10.0.0.7".into()),
            detail: Some("{\"x\":1}".into()),
        };
        let mut texts = AuditTexts::default();
        texts.push_record(&record);
        let alone: Vec<serde_json::Value> = serde_json::from_str(&texts.into_json()[0]).unwrap();
        assert_eq!(r, &alone[0]);

        let long_ago = Instant::now() - Duration::from_secs(2);
        drop(CallRecord::start(
            &audit,
            &who,
            "tool_call",
            "ns",
            None,
            long_ago,
        ));
        let rows = taken(&audit);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][10], "cancelled");
        assert_eq!(rows[0][11], "cancelled");
        assert_eq!(rows[0][7], serde_json::Value::Null, "no server answered");
        assert!(
            rows[0][9].as_i64().is_some_and(|us| us >= 2_000_000),
            "timed from its start"
        );
        assert!(taken(&audit).is_empty());
    }

    /// The rows waiting, taken as the writer takes them.
    fn taken(audit: &Audit) -> Vec<serde_json::Value> {
        let texts = std::mem::take(&mut *audit.pending.lock());
        texts
            .into_json()
            .iter()
            .flat_map(|t| serde_json::from_str::<Vec<serde_json::Value>>(t).unwrap())
            .collect()
    }

    /// A one-record queue that waits for room when full, holding one record, and a task
    /// recording a second one.
    async fn one_waiting() -> (Arc<Audit>, tokio::task::JoinHandle<()>) {
        let audit = Arc::new(Audit::new(AuditOptions {
            queue: 1,
            block_when_full: true,
            ..AuditOptions::default()
        }));
        let r = || refusal(&who(), "tool_call", None, Verdict::OK);
        audit.record(r()).await;
        let waiting = tokio::spawn({
            let audit = audit.clone();
            async move { audit.record(r()).await }
        });
        tokio::task::yield_now().await;
        (audit, waiting)
    }

    #[tokio::test]
    async fn nobody_waits_for_room_once_the_writer_stopped() {
        let (audit, waiting) = one_waiting().await;
        assert!(!waiting.is_finished());
        audit.writer_stopped();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(audit.dropped(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_waits_for_room_when_configured_to() {
        let (audit, waiting) = one_waiting().await;
        assert!(!waiting.is_finished(), "waits while the queue is full");
        assert_eq!(audit.queued(), 1);
        // The writer takes the rows (as `flush` does) and wakes who waits.
        assert_eq!(taken(&audit).len(), 1);
        audit.room.notify_waiters();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(audit.queued(), 1);
        assert_eq!(audit.dropped(), 0);
    }

    #[test]
    fn a_caller_is_built_once_and_never_taken_for_another() {
        let audit = Audit::new(AuditOptions::default());
        let key = |name: &str, owner: Option<&str>| Principal::Key {
            id: "k1".into(),
            name: name.into(),
            owner: owner.map(Into::into),
        };
        let ip = Some(IpAddr::from([10, 0, 0, 7]));
        let first = audit.who("mcp", "ep", &key("laptop", Some("u1")), ip);
        let again = audit.who("mcp", "ep", &key("laptop", Some("u1")), ip);
        assert!(Arc::ptr_eq(&first, &again), "the same caller is shared");
        assert_eq!(first.client.as_deref(), Some("10.0.0.7"));
        let user = Principal::User {
            id: "u1".into(),
            email: "laptop".into(),
            binding: "user:u1".into(),
        };
        let others = [
            ("sse", "ep", key("laptop", Some("u1")), ip),
            ("mcp", "ep2", key("laptop", Some("u1")), ip),
            ("mcp", "ep", key("renamed", Some("u1")), ip),
            ("mcp", "ep", key("laptop", Some("u2")), ip),
            ("mcp", "ep", key("laptop", None), ip),
            ("mcp", "ep", key("laptop", Some("u1")), None),
            (
                "mcp",
                "ep",
                key("laptop", Some("u1")),
                Some(IpAddr::from([10, 0, 0, 8])),
            ),
            ("mcp", "ep", Principal::Anonymous, ip),
            ("mcp", "ep", user, ip),
        ];
        for (face, endpoint, principal, client) in others {
            // Twice: once built, once from its slot; each time exactly what it is.
            for _ in 0..2 {
                let got = audit.who(face, endpoint, &principal, client);
                let fresh = Who::new(face, endpoint, &principal, client);
                assert_eq!(
                    (
                        got.face,
                        &got.endpoint,
                        &got.principal,
                        &got.user_id,
                        &got.client
                    ),
                    (
                        fresh.face,
                        &fresh.endpoint,
                        &fresh.principal,
                        &fresh.user_id,
                        &fresh.client
                    ),
                    "{face} {endpoint} {principal:?} {client:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let audit = Audit::new(AuditOptions {
            queue: 2,
            ..AuditOptions::default()
        });
        for _ in 0..5 {
            audit
                .record(refusal(&who(), "tool_call", None, Verdict::OK))
                .await;
        }
        assert_eq!(audit.queued(), 2);
        assert_eq!(audit.dropped(), 3);
    }

    #[test]
    fn options_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let d = AuditOptions::from_env(env(&[])).unwrap();
        assert!(d.enabled && !d.block_when_full);
        assert_eq!((d.queue, d.max_records), (10_000, 1_000_000));
        assert_eq!(d.max_age, Duration::from_secs(30 * 86_400));
        let o = AuditOptions::from_env(env(&[
            ("METAMCP_AUDIT", "off"),
            ("METAMCP_AUDIT_QUEUE", "50"),
            ("METAMCP_AUDIT_WHEN_FULL", "block"),
            ("METAMCP_AUDIT_RETENTION_DAYS", "7"),
            ("METAMCP_AUDIT_MAX_RECORDS", "1_000"),
        ]))
        .unwrap();
        assert!(!o.enabled && o.block_when_full);
        assert_eq!((o.queue, o.max_records), (50, 1_000));
        assert_eq!(o.max_age, Duration::from_secs(7 * 86_400));
        for bad in [
            ("METAMCP_AUDIT", "maybe"),
            ("METAMCP_AUDIT_QUEUE", "0"),
            ("METAMCP_AUDIT_WHEN_FULL", "wait"),
            ("METAMCP_AUDIT_RETENTION_DAYS", "-1"),
        ] {
            let one: &'static [(&'static str, &'static str)] = Box::leak(Box::new([bad]));
            let e = AuditOptions::from_env(env(one)).unwrap_err();
            assert!(e.contains(bad.0), "{e}");
        }
    }

    #[test]
    fn payloads_are_redacted_by_name_and_capped() {
        let audit = Audit::new(AuditOptions {
            redact: vec!["ssn".into()],
            ..AuditOptions::default()
        });
        let params = r#"{"name":"a__b","arguments":{"query":"cats","apiKey":"k-123","nested":{"Password":"p","list":[{"user_ssn":"1"}]},"n":3}}"#;
        let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"session_token":"s"}}"#;
        let d = audit.payloads(Some(params), answer);
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert_eq!(v["arguments"]["query"], "cats");
        assert_eq!(v["arguments"]["n"], 3);
        assert_eq!(v["arguments"]["apiKey"], "<redacted>");
        assert_eq!(v["arguments"]["nested"]["Password"], "<redacted>");
        assert_eq!(
            v["arguments"]["nested"]["list"][0]["user_ssn"],
            "<redacted>"
        );
        assert_eq!(v["result"]["content"][0]["text"], "ok");
        assert_eq!(v["result"]["session_token"], "<redacted>");
        for secret in ["k-123", "\"p\"", "\"1\"", "\"s\""] {
            assert!(!d.contains(secret), "{secret} in {d}");
        }
        let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}"#;
        let v: serde_json::Value = serde_json::from_str(&audit.payloads(None, err)).unwrap();
        assert_eq!(v["result"]["message"], "bad");
        let capped = Audit::new(AuditOptions {
            payload_bytes: 200,
            ..AuditOptions::default()
        });
        let long = format!(r#"{{"arguments":{{"text":"{}"}}}}"#, "é".repeat(500));
        let d = capped.payloads(Some(&long), answer);
        assert!(d.len() <= 200, "{}", d.len());
        assert!(d.ends_with('…'));
    }

    #[tokio::test]
    async fn off_records_nothing() {
        let audit = Audit::new(AuditOptions {
            enabled: false,
            ..AuditOptions::default()
        });
        assert!(
            CallRecord::start(&audit, &who(), "tool_call", "ns", None, Instant::now()).is_none()
        );
        audit
            .record(refusal(&who(), "tool_call", None, Verdict::OK))
            .await;
        assert_eq!(audit.queued(), 0);
    }

    #[test]
    fn keys_are_stamped_at_most_once_a_minute() {
        let audit = Audit::new(AuditOptions::default());
        let mut rx = audit.rx.lock().take().unwrap().keys;
        audit.key_used("k1");
        audit.key_used("k1");
        audit.key_used("k2");
        let mut got = Vec::new();
        while let Ok((id, _)) = rx.try_recv() {
            got.push(id);
        }
        assert_eq!(got, ["k1", "k2"]);
        audit.retain_keys(|id| id == "k2");
        audit.key_used("k1");
        assert_eq!(rx.try_recv().unwrap().0, "k1");
    }
}
