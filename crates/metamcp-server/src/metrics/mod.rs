//! Prometheus metrics (`GET /metrics`, text format, `prometheus-client` with one explicit
//! registry per gateway).
//!
//! Counted on the request path (an atomic add on a labelled series): requests by endpoint,
//! face and method; tool calls, resource reads and prompt gets by endpoint, server, tool and
//! outcome, with their total and gateway-added time per endpoint and server; rate-limit
//! refusals; store operations' latency. Read when scraped: upstream state, restarts,
//! failures, circuit and process count per server; client sessions by era; the audit queue.
//!
//! Label cardinality is bounded: endpoints and servers are configured names; a method label
//! is one of the MCP methods the gateway knows, else `other`; a tool label is a name the
//! namespace's current tool list holds, else `other` (a client cannot mint series by calling
//! made-up names); outcomes are the audit log's seven. Histograms carry no tool label.

mod sharded;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use sharded::{Count, Latency};

/// Methods counted under their own name; anything else is `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    // The admin API's requests, by HTTP method.
    "GET",
    "POST",
    "PATCH",
    "PUT",
    "DELETE",
];

/// The label value of an unknown method, or of a tool or prompt the namespace does not list.
pub const OTHER: &str = "other";

/// The label value of `method`: itself when known, else `other`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    face: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: String,
    server: String,
    kind: &'static str,
    tool: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlaceLabels {
    endpoint: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    server: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EraLabels {
    era: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// Every upstream state, so each server has one series per state (0 or 1).
pub const STATES: &[&str] = &[
    "idle",
    "starting",
    "running",
    "backing_off",
    "open",
    "stopped",
];

/// What a scrape reads from the gateway: one upstream's status.
#[derive(Debug, Clone)]
pub struct UpstreamSample {
    pub server: String,
    pub state: &'static str,
    pub restarts: u32,
    pub failures: u32,
    pub has_process: bool,
}

/// What a scrape reads from the gateway besides upstreams.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub upstreams: Vec<UpstreamSample>,
    /// `(era, open sessions)`: `streamable`, `sse`, `listen`.
    pub sessions: Vec<(&'static str, usize)>,
    pub audit_queued: usize,
    pub audit_dropped: u64,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    requests: Family<RequestLabels, Count>,
    calls: Family<CallLabels, Count>,
    call_seconds: Family<PlaceLabels, Latency>,
    added_seconds: Family<PlaceLabels, Latency>,
    rate_limited: Family<EndpointLabels, Counter>,
    store_seconds: Family<OpLabels, Latency>,
    upstream_state: Family<StateLabels, Gauge>,
    upstream_restarts: Family<ServerLabels, Gauge>,
    upstream_failures: Family<ServerLabels, Gauge>,
    upstream_processes: Gauge,
    upstreams: Gauge,
    sessions: Family<EraLabels, Gauge>,
    audit_queued: Gauge,
    audit_dropped: Gauge,
    /// The series of each endpoint, looked up by name without building a label set.
    ///
    /// why an `ArcSwap` of immutable maps: a read lock is a write to the lock's cache line,
    /// shared by every worker; an `ArcSwap` read is not. A series missing from the maps is
    /// added by copying the path to it (the maps are small or hold `Arc`s) under `grow`;
    /// that happens once per series, and series are bounded (below).
    series: ArcSwap<Map<Box<str>, Arc<EndpointSeries>>>,
    grow: Mutex<()>,
}

/// The maps of cached series handles: keyed by configured names only (endpoints, servers,
/// listed tools; anything else is folded into `other` first), so a fast hasher is safe.
type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Handles of one endpoint's series, as [`Metrics`] caches them.
///
/// why: a `Family` is looked up by an owned label set, so every request and call built one
/// (five `String`s) and hashed it four times; a handle shares the family's series, so
/// counting through it is the same atomic add, found by `&str` lookups with no allocation.
/// Bounded like the families themselves: endpoints × faces × methods, endpoints × servers
/// × (listed tools + 1) × kinds × outcomes.
#[derive(Debug, Default, Clone)]
struct EndpointSeries {
    requests: Map<(&'static str, &'static str), Count>,
    places: Map<Box<str>, Arc<PlaceSeries>>,
}

#[derive(Debug, Clone)]
struct PlaceSeries {
    call_seconds: Latency,
    added_seconds: Latency,
    /// Tool → (kind, outcome) → count.
    calls: Map<Box<str>, Arc<Outcomes>>,
}

/// A tool's calls by (kind, outcome).
type Outcomes = Map<(&'static str, &'static str), Count>;

impl Metrics {
    /// `enabled: false` (`METAMCP_METRICS=off`): nothing is counted and `/metrics` is 404.
    pub fn new(enabled: bool) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Count>::default();
        registry.register(
            "metamcp_requests",
            "Client requests by endpoint, face (mcp, sse, rest, stateless, admin) and method",
            requests.clone(),
        );
        let calls = Family::<CallLabels, Count>::default();
        registry.register(
            "metamcp_calls",
            "Tool calls, resource reads and prompt gets by endpoint, server, kind, tool (a listed name, else other) and outcome",
            calls.clone(),
        );
        let call_seconds = Family::<PlaceLabels, Latency>::default();
        registry.register(
            "metamcp_call_duration_seconds",
            "Time from a call's arrival to its answer, per endpoint and server",
            call_seconds.clone(),
        );
        let added_seconds = Family::<PlaceLabels, Latency>::default();
        registry.register(
            "metamcp_call_gateway_seconds",
            "Time a call spent in the gateway (total minus the upstream's answer time), per endpoint and server",
            added_seconds.clone(),
        );
        let rate_limited = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "metamcp_rate_limited",
            "Requests refused by an endpoint's rate limits",
            rate_limited.clone(),
        );
        let store_seconds = Family::<OpLabels, Latency>::default();
        registry.register(
            "metamcp_store_operation_seconds",
            "Latency of the gateway's store operations (audit_write, config_reload)",
            store_seconds.clone(),
        );
        let upstream_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "metamcp_upstream_state",
            "1 for each server's current state (idle, starting, running, backing_off, open = circuit open, stopped)",
            upstream_state.clone(),
        );
        let upstream_restarts = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "metamcp_upstream_restarts",
            "Restarts of each server's connection since the gateway started",
            upstream_restarts.clone(),
        );
        let upstream_failures = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "metamcp_upstream_consecutive_failures",
            "Failed starts in a row of each server (its circuit opens at MCP_MAX_ATTEMPTS)",
            upstream_failures.clone(),
        );
        let upstream_processes = Gauge::default();
        registry.register(
            "metamcp_upstream_processes",
            "Upstream child processes running (stdio servers)",
            upstream_processes.clone(),
        );
        let upstreams = Gauge::default();
        registry.register(
            "metamcp_upstreams",
            "Configured upstream servers in the pool",
            upstreams.clone(),
        );
        let sessions = Family::<EraLabels, Gauge>::default();
        registry.register(
            "metamcp_sessions",
            "Open client sessions by era (streamable, sse, listen)",
            sessions.clone(),
        );
        let audit_queued = Gauge::default();
        registry.register(
            "metamcp_audit_queued",
            "Audit records waiting to be written",
            audit_queued.clone(),
        );
        let audit_dropped = Gauge::default();
        registry.register(
            "metamcp_audit_dropped",
            "Audit records dropped because the queue was full, since the gateway started",
            audit_dropped.clone(),
        );
        // why: a gauge of 1 rather than an OpenMetrics `info`, which Prometheus' text parser
        // (and `promtool check metrics`) does not know.
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("metamcp_build_info", "The gateway's version", build);
        Metrics {
            enabled,
            registry,
            requests,
            calls,
            call_seconds,
            added_seconds,
            rate_limited,
            store_seconds,
            upstream_state,
            upstream_restarts,
            upstream_failures,
            upstream_processes,
            upstreams,
            sessions,
            audit_queued,
            audit_dropped,
            series: ArcSwap::default(),
            grow: Mutex::new(()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A client request to `method` on `endpoint` through `face`.
    pub fn request(&self, endpoint: &str, face: &'static str, method: &str) {
        if !self.enabled {
            return;
        }
        let key = (face, method_label(method));
        if let Some(counter) = self
            .series
            .load()
            .get(endpoint)
            .and_then(|ep| ep.requests.get(&key))
        {
            counter.inc();
            return;
        }
        self.grow_endpoint(endpoint, |ep| {
            ep.requests
                .entry(key)
                .or_insert_with(|| {
                    let labels = RequestLabels {
                        endpoint: endpoint.to_owned(),
                        face,
                        method: key.1,
                    };
                    self.requests.get_or_create(&labels).clone()
                })
                .clone()
        })
        .inc();
    }

    /// Runs `add` on a copy of `endpoint`'s series (new if it has none), which then
    /// replaces it: the slow path of a series counted for the first time.
    fn grow_endpoint<T>(&self, endpoint: &str, add: impl FnOnce(&mut EndpointSeries) -> T) -> T {
        let _grow = self.grow.lock();
        let current = self.series.load_full();
        let mut ep = current
            .get(endpoint)
            .map(|ep| EndpointSeries::clone(ep))
            .unwrap_or_default();
        let out = add(&mut ep);
        let mut next = Map::clone(&current);
        next.insert(endpoint.into(), Arc::new(ep));
        self.series.store(Arc::new(next));
        out
    }

    /// A call of `kind` to `tool` that ended with `outcome`; `upstream`: the time the server
    /// took, if it was asked. The tool label is bounded: `tool` is the label when its series
    /// is already counted or `listed()` says the namespace lists it (asked only then, so
    /// not on every call), else `other`.
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &self,
        endpoint: &str,
        server: Option<&str>,
        kind: &'static str,
        tool: &str,
        listed: impl FnOnce() -> bool,
        outcome: &'static str,
        total: Duration,
        upstream: Option<Duration>,
    ) {
        if !self.enabled {
            return;
        }
        let server = server.unwrap_or("");
        let added = upstream.map_or(total, |u| total.saturating_sub(u));
        let key = (kind, outcome);
        let count = |place: &PlaceSeries, counter: &Count| {
            counter.inc();
            place.call_seconds.observe(total);
            place.added_seconds.observe(added);
        };
        let series = self.series.load();
        let place = series.get(endpoint).and_then(|ep| ep.places.get(server));
        let cached = |tool: &str| {
            place.and_then(|place| {
                let counter = place.calls.get(tool).and_then(|by| by.get(&key))?;
                Some((place, counter))
            })
        };
        if let Some((place, counter)) = cached(tool) {
            count(place, counter);
            return;
        }
        let tool = if tool == OTHER || listed() {
            tool
        } else {
            OTHER
        };
        if let Some((place, counter)) = cached(tool) {
            count(place, counter);
            return;
        }
        drop(series);
        let (place, counter) = self.grow_endpoint(endpoint, |ep| {
            let mut place = match ep.places.get(server) {
                Some(place) => PlaceSeries::clone(place),
                None => {
                    let labels = PlaceLabels {
                        endpoint: endpoint.to_owned(),
                        server: server.to_owned(),
                    };
                    PlaceSeries {
                        call_seconds: self.call_seconds.get_or_create(&labels).clone(),
                        added_seconds: self.added_seconds.get_or_create(&labels).clone(),
                        calls: Map::default(),
                    }
                }
            };
            let mut by = place
                .calls
                .get(tool)
                .map(|by| Map::clone(by))
                .unwrap_or_default();
            let counter = by
                .entry(key)
                .or_insert_with(|| {
                    self.calls
                        .get_or_create(&CallLabels {
                            endpoint: endpoint.to_owned(),
                            server: server.to_owned(),
                            kind,
                            tool: tool.to_owned(),
                            outcome,
                        })
                        .clone()
                })
                .clone();
            place.calls.insert(tool.into(), Arc::new(by));
            let place = Arc::new(place);
            ep.places.insert(server.into(), place.clone());
            (place, counter)
        });
        count(&place, &counter);
    }

    /// A request refused by `endpoint`'s rate limits.
    pub fn rate_limited(&self, endpoint: &str) {
        if !self.enabled {
            return;
        }
        self.rate_limited
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .inc();
    }

    /// A store operation `op` that took `took`.
    pub fn store_op(&self, op: &'static str, took: Duration) {
        if !self.enabled {
            return;
        }
        self.store_seconds
            .get_or_create(&OpLabels { op })
            .observe(took);
    }

    /// The text exposition, with the scrape-time values of `sample`.
    pub fn render(&self, sample: &Sample) -> String {
        self.upstream_state.clear();
        self.upstream_restarts.clear();
        self.upstream_failures.clear();
        let mut processes = 0i64;
        for u in &sample.upstreams {
            for state in STATES {
                self.upstream_state
                    .get_or_create(&StateLabels {
                        server: u.server.clone(),
                        state,
                    })
                    .set(i64::from(*state == u.state));
            }
            let server = ServerLabels {
                server: u.server.clone(),
            };
            self.upstream_restarts
                .get_or_create(&server)
                .set(i64::from(u.restarts));
            self.upstream_failures
                .get_or_create(&server)
                .set(i64::from(u.failures));
            processes += i64::from(u.has_process);
        }
        self.upstream_processes.set(processes);
        self.upstreams
            .set(i64::try_from(sample.upstreams.len()).unwrap_or(i64::MAX));
        for (era, n) in &sample.sessions {
            self.sessions
                .get_or_create(&EraLabels { era })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.audit_queued
            .set(i64::try_from(sample.audit_queued).unwrap_or(i64::MAX));
        self.audit_dropped
            .set(i64::try_from(sample.audit_dropped).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        classic_text(&out)
    }
}

/// The Prometheus text format (0.0.4) of `openmetrics` text as `prometheus-client` writes it:
/// a counter's `# HELP`/`# TYPE` name the `_total` series its samples carry, and there is no
/// `# EOF`. Prometheus reads both; `promtool check metrics` and other classic parsers only this.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("made/up"), "other");
    }

    #[test]
    fn cached_handles_count_into_the_families_series() {
        let m = Metrics::new(true);
        for _ in 0..3 {
            m.request("ep", "mcp", "tools/call");
        }
        m.request("ep", "rest", "tools/call");
        m.request("ep2", "mcp", "tools/call");
        let call = |ep, server, tool, outcome| {
            m.call(
                ep,
                server,
                "tool_call",
                tool,
                || true,
                outcome,
                Duration::from_millis(3),
                None,
            );
        };
        call("ep", Some("alpha"), "alpha__echo", "ok");
        call("ep", Some("alpha"), "alpha__echo", "ok");
        call("ep", Some("alpha"), "alpha__echo", "tool_error");
        call("ep", Some("alpha"), "other", "ok");
        call("ep", None, "other", "denied");
        call("ep2", Some("alpha"), "alpha__echo", "ok");
        let text = m.render(&Sample::default());
        for want in [
            r#"metamcp_requests_total{endpoint="ep",face="mcp",method="tools/call"} 3"#,
            r#"metamcp_requests_total{endpoint="ep",face="rest",method="tools/call"} 1"#,
            r#"metamcp_requests_total{endpoint="ep2",face="mcp",method="tools/call"} 1"#,
            r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="alpha__echo",outcome="ok"} 2"#,
            r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="alpha__echo",outcome="tool_error"} 1"#,
            r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="other",outcome="ok"} 1"#,
            r#"metamcp_calls_total{endpoint="ep",server="",kind="tool_call",tool="other",outcome="denied"} 1"#,
            r#"metamcp_calls_total{endpoint="ep2",server="alpha",kind="tool_call",tool="alpha__echo",outcome="ok"} 1"#,
            r#"metamcp_call_duration_seconds_count{endpoint="ep",server="alpha"} 4"#,
            r#"metamcp_call_gateway_seconds_count{endpoint="ep",server="alpha"} 4"#,
            r#"metamcp_call_duration_seconds_count{endpoint="ep2",server="alpha"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn a_tool_is_a_label_only_once_listed_and_is_asked_about_only_until_counted() {
        let m = Metrics::new(true);
        let asked = std::cell::Cell::new(0);
        let call = |tool, listed: bool, outcome| {
            m.call(
                "ep",
                Some("alpha"),
                "tool_call",
                tool,
                || {
                    asked.set(asked.get() + 1);
                    listed
                },
                outcome,
                Duration::from_millis(1),
                None,
            );
        };
        // Unlisted names fold into `other`, each asked about.
        call("alpha__made_up_1", false, "denied");
        call("alpha__made_up_2", false, "denied");
        assert_eq!(asked.get(), 2);
        // A listed name: asked once, then counted from its cached series.
        call("alpha__echo", true, "ok");
        call("alpha__echo", true, "ok");
        call("alpha__echo", true, "ok");
        assert_eq!(asked.get(), 3);
        // Another outcome of it is a new series: asked again, once.
        call("alpha__echo", true, "tool_error");
        call("alpha__echo", true, "tool_error");
        assert_eq!(asked.get(), 4);
        // `other` itself is never asked about.
        call(OTHER, false, "denied");
        assert_eq!(asked.get(), 4);
        let text = m.render(&Sample::default());
        for want in [
            r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="other",outcome="denied"} 3"#,
            r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="alpha__echo",outcome="ok"} 3"#,
            r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="alpha__echo",outcome="tool_error"} 2"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains("made_up"), "{text}");
    }

    #[test]
    fn renders_counted_series() {
        let m = Metrics::new(true);
        m.request("ep", "mcp", "tools/call");
        m.request("ep", "mcp", "x/y");
        m.call(
            "ep",
            Some("alpha"),
            "tool_call",
            "alpha__echo",
            || true,
            "ok",
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
        );
        m.rate_limited("ep");
        let text = m.render(&Sample {
            upstreams: vec![UpstreamSample {
                server: "alpha".into(),
                state: "running",
                restarts: 2,
                failures: 0,
                has_process: true,
            }],
            sessions: vec![("streamable", 3)],
            audit_queued: 0,
            audit_dropped: 0,
        });
        for want in [
            r#"metamcp_requests_total{endpoint="ep",face="mcp",method="tools/call"} 1"#,
            r#"metamcp_requests_total{endpoint="ep",face="mcp",method="other"} 1"#,
            r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="alpha__echo",outcome="ok"} 1"#,
            r#"metamcp_call_duration_seconds_count{endpoint="ep",server="alpha"} 1"#,
            r#"metamcp_upstream_state{server="alpha",state="running"} 1"#,
            r#"metamcp_upstream_state{server="alpha",state="open"} 0"#,
            r#"metamcp_upstream_restarts{server="alpha"} 2"#,
            r#"metamcp_sessions{era="streamable"} 3"#,
            r#"metamcp_rate_limited_total{endpoint="ep"} 1"#,
            "metamcp_build_info{version=",
            "# TYPE metamcp_requests_total counter",
            "# HELP metamcp_calls_total Tool calls",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        let off = Metrics::new(false);
        off.request("ep", "mcp", "tools/call");
        assert!(
            !off.render(&Sample::default())
                .contains("metamcp_requests_total{")
        );
    }
}
