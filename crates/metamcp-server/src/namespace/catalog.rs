//! Merged, prefixed, cached lists of a namespace.
//!
//! A list is built by asking every active server of the namespace in parallel (paging
//! through each upstream's cursors), prefixing tool and prompt names, and indexing resource
//! URIs and templates by server. A server that is down or slower than [`LIST_DEADLINE`] is
//! skipped with a log line; such an incomplete list is cached only briefly. A complete list
//! stays until an upstream says `list_changed` or the configuration changes, so `tools/list`
//! on a warm namespace touches no upstream.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metamcp_core::mangle;
use metamcp_core::uri_template::UriTemplate;
use metamcp_upstream::Upstream;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::Runtime;
use crate::snapshot::{NamespaceCfg, Snapshot};

/// How long a list waits for the slowest server before answering without it.
pub const LIST_DEADLINE: Duration = Duration::from_secs(10);
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

#[derive(Debug, Default)]
struct NsCatalog {
    slots: [tokio::sync::Mutex<Option<Arc<Listing>>>; 4],
    generations: [AtomicU64; 4],
}

/// The catalogs of every namespace, built on demand.
#[derive(Debug, Default)]
pub struct Catalogs {
    map: Mutex<HashMap<String, Arc<NsCatalog>>>,
    /// Hash of each server's last tool list written to the store.
    synced: Mutex<HashMap<String, u64>>,
}

impl Catalogs {
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
    let deadline = Instant::now() + LIST_DEADLINE;
    let mut tasks = Vec::new();
    let mut missing = Vec::new();
    for m in ns.active() {
        match rt.pool.get(&m.server_id) {
            // why: spawned, so a server slower than the deadline keeps starting in the
            // background instead of being cancelled, and is ready for the next list.
            Some(up) => tasks.push((m, up.clone(), tokio::spawn(list_all(up, kind)))),
            None => missing.push(m.server_id.clone()),
        }
    }
    let mut items: Vec<Value> = Vec::new();
    let mut uris = HashMap::new();
    let mut templates = Vec::new();
    let prefixed = ns.prefixed();
    let mut names: HashMap<String, (String, String)> = HashMap::new();
    let mut owners: HashMap<String, Vec<String>> = HashMap::new();
    for (m, up, task) in tasks {
        let listed = match tokio::time::timeout_at(deadline, task).await {
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
                tracing::warn!(namespace = %ns.name, server = %m.server_name, "{} skipped a server slower than {} s", kind.method(), LIST_DEADLINE.as_secs());
                missing.push(m.server_id.clone());
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
