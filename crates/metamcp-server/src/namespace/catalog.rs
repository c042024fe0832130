//! Merged, prefixed, cached lists of a namespace.
//!
//! A list is built by asking every active server of the namespace in parallel (paging
//! through each upstream's cursors), prefixing tool and prompt names, and indexing resource
//! URIs and templates by server. A server that fails, or does not answer within
//! `MCP_LIST_TIMEOUT` (2 s; `MCP_LIST_FIRST_TIMEOUT`, 10 s, the first time a server is ever
//! asked, which usually includes its start), is left out with a log line, and its list keeps
//! running in the background: until it ends, later lists do not wait for that server at all
//! (a starting or hung server costs every client at most one wait), and when it ends with a
//! list the gateway tells clients `list_changed` (through the same path as an upstream's own
//! notification), so the items arrive. An incomplete list is cached only briefly. A complete
//! list stays until an upstream says `list_changed` or the configuration changes, so
//! `tools/list` on a warm namespace touches no upstream.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metamcp_core::mangle;
use metamcp_core::uri_template::UriTemplate;
use metamcp_upstream::Upstream;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::Runtime;
use crate::snapshot::{NamespaceCfg, Snapshot};

/// How long a list waits for a server before answering without it (`MCP_LIST_TIMEOUT`).
pub const LIST_DEADLINE: Duration = Duration::from_secs(2);
/// The same for the first list a server is ever asked for (`MCP_LIST_FIRST_TIMEOUT`).
pub const FIRST_LIST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a list missing a server is reused before the missing servers are asked again.
pub const INCOMPLETE_TTL: Duration = Duration::from_secs(5);
/// A bound on pages per upstream, against a server whose cursors never end.
const MAX_PAGES: usize = 1000;

/// The four lists a namespace merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::Templates,
    ];

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    pub fn from_method(m: &str) -> Option<Self> {
        ListKind::ALL.into_iter().find(|k| k.method() == m)
    }

    /// The array's key in the result object.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The capability an upstream must declare to be asked.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    fn idx(self) -> usize {
        self as usize
    }
}

/// One merged list, ready to send.
#[derive(Debug)]
pub struct Listing {
    /// The whole `result` object, e.g. `{"tools":[…]}`.
    pub json: String,
    /// The same result in another shape (the 2026-07-28 era's: `resultType` and cache hints
    /// added), made from `json` the first time a face asks for it, then reused.
    pub(crate) reshaped: OnceLock<String>,
    /// Resource URI → server id (resources lists only).
    pub uris: HashMap<String, String>,
    /// `(server id, uriTemplate)` (templates lists only).
    pub templates: Vec<(String, UriTemplate)>,
    /// Tools and prompts: exposed name → (server id, the upstream's own name). A call is
    /// routed by this map whenever names are not plain `server__name` (shaping, no prefix).
    pub names: HashMap<String, (String, String)>,
    /// Exposed names several tools (or prompts) would share, left out of the list, with the
    /// `server__name` of each. Calls to them are refused.
    pub ambiguous: HashMap<String, Vec<String>>,
    /// Every active server answered.
    pub complete: bool,
    /// Active servers that did not answer (ids).
    pub missing: Vec<String>,
    generation: u64,
    built: Instant,
}

impl Listing {
    /// A listing of `json` alone (tests of what is done with a listing's text).
    #[cfg(test)]
    pub(crate) fn of_json(json: &str) -> Self {
        Listing {
            json: json.to_owned(),
            reshaped: OnceLock::new(),
            uris: HashMap::new(),
            templates: Vec::new(),
            names: HashMap::new(),
            ambiguous: HashMap::new(),
            complete: true,
            missing: Vec::new(),
            generation: 0,
            built: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct NsCatalog {
    slots: [tokio::sync::Mutex<Option<Arc<Listing>>>; 4],
    generations: [AtomicU64; 4],
}

/// The catalogs of every namespace, built on demand.
#[derive(Debug)]
pub struct Catalogs {
    map: Mutex<HashMap<String, Arc<NsCatalog>>>,
    /// Hash of each server's last tool list written to the store.
    synced: Mutex<HashMap<String, u64>>,
    /// Lists still running after a client was answered without them: (server id, kind).
    /// Lists do not wait for these; at most one per server and kind.
    late: Arc<Mutex<std::collections::HashSet<(String, ListKind)>>>,
    /// Servers asked for a list at least once (their first wait is the longer one).
    asked: Mutex<std::collections::HashSet<String>>,
    list_timeout_ms: AtomicU64,
    first_list_timeout_ms: AtomicU64,
}

impl Default for Catalogs {
    fn default() -> Self {
        Catalogs {
            map: Mutex::default(),
            synced: Mutex::default(),
            late: Arc::default(),
            asked: Mutex::default(),
            list_timeout_ms: AtomicU64::new(millis(LIST_DEADLINE)),
            first_list_timeout_ms: AtomicU64::new(millis(FIRST_LIST_DEADLINE)),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Catalogs {
    /// Follows `MCP_LIST_TIMEOUT` and `MCP_LIST_FIRST_TIMEOUT`.
    pub fn set_list_timeouts(&self, list: Duration, first: Duration) {
        self.list_timeout_ms.store(millis(list), Ordering::Relaxed);
        self.first_list_timeout_ms
            .store(millis(first), Ordering::Relaxed);
    }

    /// How long a list waits for `server_id` (longer the first time it is asked).
    fn wait_for(&self, server_id: &str) -> Duration {
        let first = self.asked.lock().insert(server_id.to_owned());
        let ms = if first {
            self.first_list_timeout_ms.load(Ordering::Relaxed)
        } else {
            self.list_timeout_ms.load(Ordering::Relaxed)
        };
        Duration::from_millis(ms)
    }

    fn ns(&self, id: &str) -> Arc<NsCatalog> {
        self.map.lock().entry(id.to_owned()).or_default().clone()
    }

    /// The namespace's list of `kind`, from cache or freshly built.
    pub async fn get(&self, rt: &Runtime, ns: &NamespaceCfg, kind: ListKind) -> Arc<Listing> {
        let cat = self.ns(&ns.id);
        let mut slot = cat.slots[kind.idx()].lock().await;
        let generation = cat.generations[kind.idx()].load(Ordering::Acquire);
        if let Some(l) = slot.as_ref()
            && l.generation == generation
            && (l.complete || l.built.elapsed() < INCOMPLETE_TTL)
        {
            return l.clone();
        }
        let listing = crate::otel::maybe_in_span(
            rt.otel.as_ref(),
            "catalog build",
            || {
                vec![
                    opentelemetry::KeyValue::new("metamcp.namespace", ns.name.clone()),
                    opentelemetry::KeyValue::new("metamcp.list", kind.method()),
                    opentelemetry::KeyValue::new("metamcp.servers", ns.active().count() as i64),
                ]
            },
            build(rt, ns, kind, generation),
        )
        .await;
        let listing = Arc::new(listing);
        *slot = Some(listing.clone());
        listing
    }

    /// Whether the namespace's cached list of `kind` holds `exposed` right now (never builds
    /// or waits: `false` while it is being built). Bounds the metrics' tool label.
    pub fn lists(&self, ns_id: &str, kind: ListKind, exposed: &str) -> bool {
        let Some(cat) = self.map.lock().get(ns_id).cloned() else {
            return false;
        };
        cat.slots[kind.idx()]
            .try_lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(|l| l.names.contains_key(exposed)))
            .unwrap_or(false)
    }

    /// Drops whole namespaces' catalogs (configuration changed).
    pub fn invalidate_namespaces(&self, ids: &[String]) {
        let mut map = self.map.lock();
        for id in ids {
            map.remove(id);
        }
    }

    /// Drops the `kind` list of every namespace holding `server_name`.
    pub fn invalidate_server_kind(&self, snap: &Snapshot, server_name: &str, kind: ListKind) {
        let map = self.map.lock();
        for ns in snap.namespaces.values() {
            if ns.members.iter().any(|m| m.server_name == server_name)
                && let Some(cat) = map.get(&ns.id)
            {
                cat.generations[kind.idx()].fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

async fn build(rt: &Runtime, ns: &NamespaceCfg, kind: ListKind, generation: u64) -> Listing {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut missing = Vec::new();
    for m in ns.active() {
        if rt
            .catalogs
            .late
            .lock()
            .contains(&(m.server_id.clone(), kind))
        {
            // Its list is still running from an earlier request: not waited for again.
            missing.push(m.server_id.clone());
            continue;
        }
        match rt.pool.get(&m.server_id) {
            // why: spawned, so a server slower than the deadline keeps starting in the
            // background instead of being cancelled, and is ready for the next list.
            Some(up) => {
                let deadline = started + rt.catalogs.wait_for(&m.server_id);
                tasks.push((m, up.clone(), deadline, tokio::spawn(list_all(up, kind))));
            }
            None => missing.push(m.server_id.clone()),
        }
    }
    let mut items: Vec<Value> = Vec::new();
    let mut uris = HashMap::new();
    let mut templates = Vec::new();
    let prefixed = ns.prefixed();
    let mut names: HashMap<String, (String, String)> = HashMap::new();
    let mut owners: HashMap<String, Vec<String>> = HashMap::new();
    for (m, up, deadline, mut task) in tasks {
        let listed = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(Ok(list))) => list,
            Ok(Ok(Err(e))) => {
                tracing::warn!(namespace = %ns.name, server = %m.server_name, error = %e, "{} skipped this server", kind.method());
                missing.push(m.server_id.clone());
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(namespace = %ns.name, server = %m.server_name, error = %e, "{} task failed", kind.method());
                missing.push(m.server_id.clone());
                continue;
            }
            Err(_) => {
                let waited = deadline.saturating_duration_since(started);
                tracing::warn!(namespace = %ns.name, server = %m.server_name, "{} answered without a server slower than {} ms; its items follow with list_changed", kind.method(), waited.as_millis());
                missing.push(m.server_id.clone());
                rt.catalogs.follow_late(rt, &up, kind, task);
                continue;
            }
        };
        if kind == ListKind::Tools {
            rt.catalogs.sync_tools(rt, &up, &listed);
        }
        for mut item in listed {
            let Some(obj) = item.as_object_mut() else {
                continue;
            };
            match kind {
                ListKind::Tools | ListKind::Prompts => {
                    let Some(upstream) = obj.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    let upstream = upstream.to_owned();
                    // The one place tool shaping applies: what is not listed here cannot
                    // be called (calls resolve through `names`).
                    let exposed = if kind == ListKind::Tools {
                        match ns.shaping.shape_tool(&m.server_name, prefixed, obj) {
                            Some(e) => e,
                            None => continue,
                        }
                    } else if prefixed {
                        let e = mangle::qualify(&m.server_name, &upstream);
                        obj.insert("name".into(), Value::String(e.clone()));
                        e
                    } else {
                        upstream.clone()
                    };
                    let who = mangle::qualify(&m.server_name, &upstream);
                    let clash = owners.entry(exposed.clone()).or_default();
                    if !clash.contains(&who) {
                        clash.push(who);
                    }
                    names
                        .entry(exposed)
                        .or_insert_with(|| (m.server_id.clone(), upstream));
                }
                ListKind::Resources => {
                    let Some(uri) = obj.get("uri").and_then(Value::as_str) else {
                        continue;
                    };
                    uris.entry(uri.to_owned())
                        .or_insert_with(|| m.server_id.clone());
                }
                ListKind::Templates => {
                    let Some(t) = obj.get("uriTemplate").and_then(Value::as_str) else {
                        continue;
                    };
                    templates.push((m.server_id.clone(), UriTemplate::parse(t)));
                }
            }
            items.push(item);
        }
    }
    // why: without prefixes (or with renames and shortening) two tools may get the same
    // name; refuse it rather than pick one silently.
    let ambiguous: HashMap<String, Vec<String>> =
        owners.into_iter().filter(|(_, s)| s.len() > 1).collect();
    if !ambiguous.is_empty() {
        items.retain(|i| {
            i.get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| !ambiguous.contains_key(n))
        });
        for (name, servers) in &ambiguous {
            names.remove(name);
            tracing::warn!(
                namespace = %ns.name,
                name,
                tools = ?servers,
                "a name several tools would share is left out (prefix mode {})",
                ns.prefix.as_str()
            );
        }
    }
    let mut result = Map::new();
    result.insert(kind.key().into(), Value::Array(items));
    Listing {
        json: Value::Object(result).to_string(),
        reshaped: OnceLock::new(),
        uris,
        templates,
        names,
        ambiguous,
        complete: missing.is_empty(),
        missing,
        generation,
        built: Instant::now(),
    }
}

/// Every item of one upstream's list, through all its pages.
async fn list_all(up: Arc<Upstream>, kind: ListKind) -> Result<Vec<Value>, String> {
    let info = up.info().await.map_err(|e| e.to_string())?;
    if !info.has(kind.capability()) {
        return Ok(Vec::new());
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor
            .as_ref()
            .map(|c| serde_json::json!({ "cursor": c }).to_string());
        let reply = up
            .request(kind.method(), params.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        if reply.is_error() {
            return Err(format!(
                "{} answered an error: {}",
                kind.method(),
                reply.payload()
            ));
        }
        let mut page: Value = serde_json::from_str(reply.payload())
            .map_err(|e| format!("{} result is not JSON: {e}", kind.method()))?;
        if let Some(Value::Array(list)) = page.get_mut(kind.key()).map(Value::take) {
            items.extend(list);
        }
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if cursor.is_none() {
            return Ok(items);
        }
    }
    Err(format!(
        "{} returned more than {MAX_PAGES} pages",
        kind.method()
    ))
}

impl Catalogs {
    /// Keeps waiting, in the background, for a list a client was answered without; lists
    /// skip the server meanwhile. When it arrives the catalogs holding the server are
    /// dropped and their clients told `list_changed` (as if the server had said it).
    fn follow_late(
        &self,
        rt: &Runtime,
        up: &Arc<Upstream>,
        kind: ListKind,
        task: tokio::task::JoinHandle<Result<Vec<Value>, String>>,
    ) {
        let key = (up.id().to_owned(), kind);
        if !self.late.lock().insert(key.clone()) {
            return;
        }
        let late = self.late.clone();
        let events = rt.pool.events();
        let server: Arc<str> = Arc::from(up.name());
        tokio::spawn(async move {
            let arrived = matches!(task.await, Ok(Ok(_)));
            late.lock().remove(&key);
            if arrived {
                let method = match kind {
                    ListKind::Tools => "notifications/tools/list_changed",
                    ListKind::Prompts => "notifications/prompts/list_changed",
                    ListKind::Resources | ListKind::Templates => {
                        "notifications/resources/list_changed"
                    }
                };
                events.notify(metamcp_upstream::UpstreamEvent {
                    server,
                    method: method.to_owned(),
                    message: metamcp_core::jsonrpc::notification(method, None),
                });
            }
        });
    }

    /// Records a server's discovered tools in the store when they changed (for tool shaping
    /// and the dashboard); in the background, never on a client's path.
    fn sync_tools(&self, rt: &Runtime, up: &Upstream, tools: &[Value]) {
        let mut h = DefaultHasher::new();
        for t in tools {
            t.to_string().hash(&mut h);
        }
        let digest = h.finish();
        {
            let mut synced = self.synced.lock();
            if synced.get(up.id()) == Some(&digest) {
                return;
            }
            synced.insert(up.id().to_owned(), digest);
        }
        let discovered: Vec<metamcp_store::DiscoveredTool> = tools
            .iter()
            .filter_map(|t| {
                Some(metamcp_store::DiscoveredTool {
                    name: t.get("name")?.as_str()?.to_owned(),
                    title: t.get("title").and_then(Value::as_str).map(str::to_owned),
                    description: t
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    input_schema: t.get("inputSchema").cloned().unwrap_or(Value::Null),
                    annotations: t.get("annotations").cloned(),
                })
            })
            .collect();
        let store = rt.store.clone();
        let id = up.id().to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.sync_tools(&id, &discovered).await {
                tracing::debug!(error = %e, "recording discovered tools failed");
            }
        });
    }
}
