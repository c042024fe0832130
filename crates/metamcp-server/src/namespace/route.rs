//! Answers one client request on a namespace: lists from the catalog, everything else
//! forwarded to the one server that owns it.
//!
//! Tools and prompts are routed by their `server__` prefix, so a call works even when the
//! client never listed first. Resources are routed by URI: an exact URI from the merged
//! resource list, else a URI matching one server's template, else each resource server in
//! turn. Only the `name` field is rewritten; every other byte of the params and of the
//! upstream's answer passes through.

use std::sync::Arc;

use metamcp_core::jsonrpc::{self, INVALID_PARAMS, METHOD_NOT_FOUND};
use metamcp_core::mangle;
use metamcp_upstream::scope::CallScope;
use metamcp_upstream::{Reply, Upstream};
use serde_json::value::RawValue;

use super::Runtime;
use super::answer::Answer;
use super::catalog::ListKind;
use crate::error::upstream_error;
use metamcp_core::LogLevel;

use crate::audit::{CallRecord, Outcome, Verdict};
use crate::relay::CallCtx;
use crate::snapshot::NamespaceCfg;

/// The JSON-RPC response to request `id`.
pub async fn handle(
    rt: &Runtime,
    ns: &NamespaceCfg,
    method: &str,
    id: &RawValue,
    params: Option<&RawValue>,
) -> String {
    handle_ctx(rt, ns, method, id, params, &CallCtx::default())
        .await
        .into_string()
}

/// [`handle`] for a call with a session and a stream: progress reaches the stream, and the
/// client can cancel the call with `notifications/cancelled`.
pub async fn handle_ctx(
    rt: &Runtime,
    ns: &NamespaceCfg,
    method: &str,
    id: &RawValue,
    params: Option<&RawValue>,
    ctx: &CallCtx,
) -> Answer {
    // The tool or prompt name or the resource URI of an audited call, read once: for the
    // route, the record and the metrics.
    let kind = crate::audit::kind_of(method);
    let target = kind.and_then(|kind| {
        let field = if kind == "resource_read" {
            "uri"
        } else {
            "name"
        };
        params.and_then(|p| jsonrpc::str_field(p, field))
    });
    // why: the record is started before the call and written when it ends — or, through
    // its drop, as cancelled when the client cancels or goes away and this future is dropped.
    let observed = match (&ctx.who, kind) {
        (Some(who), Some(kind)) => Some((who, kind)),
        _ => None,
    };
    // why only when observed: a clock reading is not free, and nothing else needs it.
    let started = observed.map(|_| std::time::Instant::now());
    let record = observed.zip(started).and_then(|((who, kind), started)| {
        CallRecord::start(&rt.audit, who, kind, &ns.name, target.as_deref(), started)
    });
    let target = target.as_deref();
    // why: the span exists only while tracing is on; otherwise this is one `Option` test.
    let traced = rt
        .otel
        .as_ref()
        .map(|o| o.request(ctx.trace.as_deref(), &ns.name, method, params));
    let run = async {
        // why boxed, once: the call's future is about 10 KB, and held inline it was copied
        // as a whole at each await that moved it and into every future around this one
        // (axum's handler box, the middleware) — most of the bytes the relay copied per call.
        let call = Box::pin(dispatch(rt, ns, method, id, params, target, ctx));
        if ctx.session.is_none() {
            call.await
        } else {
            let (cancelled, _tracked) = rt.relay.track(ctx.session.as_deref(), id);
            tokio::select! {
                out = call => out,
                () = cancelled.cancelled() => {
                    // The upstream request was dropped with the future: it got notifications/cancelled.
                    Done::gateway(
                        jsonrpc::error(Some(id), REQUEST_CANCELLED, "Request cancelled by the client", None),
                        Verdict::new(Outcome::Cancelled, "cancelled"),
                    )
                }
            }
        }
    };
    // why one await of one future (`Either`): an await per case made this future hold the
    // call's future twice over, and it is copied as a whole as it is polled into place.
    let run = match &traced {
        None => futures::future::Either::Left(run),
        Some(cx) => {
            use crate::otel::FutureExt as _;
            futures::future::Either::Right(run.with_context(cx.clone()))
        }
    };
    let done = run.await;
    // One clock reading for the metrics and the record.
    let took = started.map(|t| t.elapsed()).unwrap_or_default();
    if let Some(cx) = &traced {
        let failed = (done.verdict.outcome != Outcome::Ok).then(|| done.verdict.outcome.as_str());
        crate::otel::finish(cx, done.server.as_deref(), failed);
    }
    if let Some((who, kind)) = observed
        && rt.metrics.enabled()
    {
        // why: only names the namespace lists become a label; anything else is `other`.
        // The catalog is asked only for a name the metrics have not counted yet.
        let (tool, list) = match (kind, target) {
            ("tool_call", Some(t)) => (t, Some(ListKind::Tools)),
            ("prompt_get", Some(t)) => (t, Some(ListKind::Prompts)),
            _ => (crate::metrics::OTHER, None),
        };
        rt.metrics.call(
            who.endpoint.as_deref().unwrap_or_default(),
            done.server.as_deref(),
            kind,
            tool,
            || list.is_some_and(|list| rt.catalogs.lists(&ns.id, list, tool)),
            done.verdict.outcome.as_str(),
            took,
            done.upstream,
        );
    }
    if let Some(record) = record {
        let detail = observed
            .filter(|(_, kind)| ns.audit_payloads && matches!(*kind, "tool_call" | "prompt_get"))
            .map(|_| {
                rt.audit
                    .payloads(params.map(RawValue::get), &done.out.text())
            });
        record
            .finish(done.server.as_deref(), done.verdict, detail, took)
            .await;
    }
    done.out
}

/// A request's answer, and for the audit log the server that answered and how it ended.
struct Done {
    out: Answer,
    server: Option<Arc<str>>,
    verdict: Verdict,
    /// How long the server took to answer, when it was asked.
    upstream: Option<std::time::Duration>,
}

impl Done {
    /// An answer the gateway gave itself.
    fn gateway(out: impl Into<Answer>, verdict: Verdict) -> Self {
        Done {
            out: out.into(),
            server: None,
            verdict,
            upstream: None,
        }
    }

    /// An answer the gateway gave itself that is not a refusal (lists, ping).
    fn ok(out: impl Into<Answer>) -> Self {
        Done::gateway(out, Verdict::OK)
    }

    /// The gateway refused the request (unknown tool, bad params).
    fn denied(out: String, class: &str) -> Self {
        Done::gateway(out, Verdict::new(Outcome::Denied, class))
    }
}

/// JSON-RPC code for a request the client cancelled (the LSP convention; MCP defines none).
pub const REQUEST_CANCELLED: i64 = -32800;

/// Answers `method`; `target` is the name (`tools/call`, `prompts/get`) or URI
/// (`resources/read`) `params` hold, read by the caller.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    rt: &Runtime,
    ns: &NamespaceCfg,
    method: &str,
    id: &RawValue,
    params: Option<&RawValue>,
    target: Option<&str>,
    ctx: &CallCtx,
) -> Done {
    match method {
        "tools/call" => by_prefix(rt, ns, method, id, params, target, "tool", ctx).await,
        "prompts/get" => by_prefix(rt, ns, method, id, params, target, "prompt", ctx).await,
        "resources/read" => by_uri(rt, ns, method, id, params, target, ctx).await,
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = params.and_then(|p| jsonrpc::str_field(p, "uri"));
            by_uri(rt, ns, method, id, params, uri.as_deref(), ctx).await
        }
        // why boxed: lists, completions and log levels are not the relayed call, whose
        // future (copied as a whole as it is polled into place) would otherwise be as
        // large as the largest of theirs.
        _ => Done::ok(Box::pin(dispatch_other(rt, ns, method, id, params, ctx)).await),
    }
}

async fn dispatch_other(
    rt: &Runtime,
    ns: &NamespaceCfg,
    method: &str,
    id: &RawValue,
    params: Option<&RawValue>,
    ctx: &CallCtx,
) -> Answer {
    match method {
        "ping" => jsonrpc::response(id, "{}").into(),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            // why: we answer every list in one page, so a cursor can only be a client's error.
            if params
                .and_then(|p| jsonrpc::str_field(p, "cursor"))
                .is_some()
            {
                return jsonrpc::error(
                    Some(id),
                    INVALID_PARAMS,
                    "Invalid cursor: this server returns every item in one page",
                    None,
                )
                .into();
            }
            let Some(kind) = ListKind::from_method(method) else {
                return jsonrpc::error(Some(id), METHOD_NOT_FOUND, "Method not found", None).into();
            };
            // why not copied: the listing's bytes are sent as they are, under the client's id.
            Answer::listed(id, rt.catalogs.get(rt, ns, kind).await)
        }
        "completion/complete" => completion(rt, ns, id, params).await.into(),
        "logging/setLevel" => set_level(rt, ns, id, params, ctx).await.into(),
        _ => jsonrpc::error(
            Some(id),
            METHOD_NOT_FOUND,
            &format!("Method not found: {method}"),
            None,
        )
        .into(),
    }
}

/// Sends `params` to `up` and wraps its answer under the client's id.
async fn forward(up: &Arc<Upstream>, method: &str, id: &RawValue, params: Option<&str>) -> String {
    forward_ctx(None, up, method, id, params, &CallCtx::default())
        .await
        .out
        .into_string()
}

/// [`forward`] for a client's call: its progress reaches its stream, and requests the
/// upstream sends while serving it reach its client (see `crate::relay`).
async fn forward_ctx(
    rt: Option<&Runtime>,
    up: &Arc<Upstream>,
    method: &str,
    id: &RawValue,
    params: Option<&str>,
    ctx: &CallCtx,
) -> Done {
    let routed = match (rt, params) {
        (Some(rt), Some(p)) => rt.relay.route_progress(p, ctx),
        _ => None,
    };
    let session = caller(ctx);
    let scope = CallScope {
        answerer: rt.and_then(|rt| rt.relay.origin(ctx)),
        progress: routed.as_ref().map(|r| (r.token.clone(), r.sink.clone())),
    };
    let asked = std::time::Instant::now();
    let params = routed.as_ref().map_or(params, |r| Some(r.params.as_str()));
    let result = match rt.and_then(|rt| rt.otel.as_ref()) {
        None => relay_call(up, session, method, params, routed.as_ref(), scope).await,
        // why boxed: only while tracing is on; inline, its future doubled every call's.
        Some(otel) => {
            Box::pin(traced_call(
                otel,
                up,
                session,
                method,
                params,
                routed.as_ref(),
                scope,
            ))
            .await
        }
    };
    let (out, verdict) = match result {
        Ok(reply) => (wrap(id, &reply), verdict_of(method, &reply)),
        Err(e) => {
            tracing::warn!(server = up.name(), method, error = %e, "upstream request failed");
            (upstream_error(id, &e), verdict_of_failure(&e))
        }
    };
    Done {
        out: out.into(),
        server: Some(up.shared_name()),
        verdict,
        upstream: Some(asked.elapsed()),
    }
}

/// On whose behalf a client's call goes upstream: its session and user.
fn caller(ctx: &CallCtx) -> metamcp_upstream::Caller<'_> {
    metamcp_upstream::Caller {
        session: ctx.session.as_ref().map(|s| s.id.as_str()),
        user: ctx.user.as_deref(),
        gateway: false,
    }
}

/// The upstream request of a relayed call, with its progress route and scope.
async fn relay_call(
    up: &Arc<Upstream>,
    session: metamcp_upstream::Caller<'_>,
    method: &str,
    params: Option<&str>,
    routed: Option<&crate::relay::ProgressRoute>,
    scope: CallScope,
) -> Result<Reply, metamcp_upstream::UpstreamError> {
    use futures::future::Either;
    let call = up.request_for(session, method, params, routed.map(|r| r.activity.clone()));
    // why one await of one future: an await per branch made this future hold each branch's
    // upstream request side by side, and it is copied as a whole with every call's.
    let call = if routed.is_some() || scope.answerer.is_some() {
        Either::Left(metamcp_upstream::scope::scope(scope, call))
    } else {
        Either::Right(call)
    };
    call.await
}

/// [`relay_call`] while tracing is on: in a client span of its own, whose W3C context goes
/// to the upstream in `params._meta` (SEP-414) and, over HTTP and SSE, as headers. This
/// rewrites the payload, which the untraced path never does.
async fn traced_call(
    otel: &crate::otel::Otel,
    up: &Arc<Upstream>,
    session: metamcp_upstream::Caller<'_>,
    method: &str,
    params: Option<&str>,
    routed: Option<&crate::relay::ProgressRoute>,
    scope: CallScope,
) -> Result<Reply, metamcp_upstream::UpstreamError> {
    use crate::otel::FutureExt as _;
    use opentelemetry::KeyValue;
    let cx = otel.child(
        format!("upstream {method}"),
        opentelemetry::trace::SpanKind::Client,
        vec![
            KeyValue::new("mcp.method.name", method.to_owned()),
            KeyValue::new("metamcp.server", up.name().to_owned()),
        ],
    );
    let w3c = crate::otel::w3c_of(&cx);
    let rewritten = w3c.as_ref().and_then(|(tp, ts)| {
        let mut fields = vec![("traceparent", tp.as_str())];
        if let Some(ts) = ts {
            fields.push(("tracestate", ts.as_str()));
        }
        jsonrpc::with_meta_fields(params, &fields)
    });
    let params = rewritten.as_deref().or(params);
    let call = relay_call(up, session, method, params, routed, scope).with_context(cx.clone());
    let headers = w3c
        .as_ref()
        .and_then(|(tp, ts)| crate::otel::trace_headers(tp, ts.as_deref()));
    let result = match headers {
        Some(h) => metamcp_upstream::scope::traced(h, call).await,
        None => call.await,
    };
    let failed = result
        .as_ref()
        .err()
        .map(|e| verdict_of_failure(e).outcome.as_str());
    crate::otel::finish(&cx, None, failed);
    result
}

/// How an answered call ended: a JSON-RPC error, or a tool result with `isError: true`, is
/// the tool's error. Only the bytes are searched (no decoding): `"isError":true` with
/// unescaped quotes can only be a key of the answer (inside a string its quotes are escaped).
fn verdict_of(method: &str, reply: &Reply) -> Verdict {
    if reply.is_error() {
        let code = serde_json::from_str::<RpcCode>(reply.payload())
            .map_or_else(|_| "rpc".to_owned(), |c| format!("rpc:{}", c.code));
        return Verdict::new(Outcome::ToolError, code);
    }
    let p = reply.payload();
    if method == "tools/call"
        && (p.contains(r#""isError":true"#) || p.contains(r#""isError": true"#))
    {
        return Verdict::new(Outcome::ToolError, "is_error");
    }
    Verdict::OK
}

#[derive(serde::Deserialize)]
struct RpcCode {
    code: i64,
}

/// How a call that got no answer ended.
fn verdict_of_failure(e: &metamcp_upstream::UpstreamError) -> Verdict {
    use metamcp_upstream::UpstreamError as E;
    let class = match e {
        E::Timeout { .. } => return Verdict::new(Outcome::Timeout, "timeout"),
        E::Start { .. } => "start",
        E::BackingOff { .. } => "backing_off",
        E::Closed { .. } => "closed",
        E::Protocol { .. } => "protocol",
        E::Http { .. } => "http",
        E::Removed { .. } => "removed",
        E::StatelessOnly { .. } => "stateless_only",
        E::Cap { .. } => "cap",
        E::Unauthorized { .. } => "needs_authorization",
    };
    Verdict::new(Outcome::UpstreamError, class)
}

fn wrap(id: &RawValue, reply: &Reply) -> String {
    if reply.is_error() {
        jsonrpc::response_error_raw(Some(id), reply.payload())
    } else {
        jsonrpc::response(id, reply.payload())
    }
}

fn upstream_of(rt: &Runtime, ns: &NamespaceCfg, server_name: &str) -> Option<Arc<Upstream>> {
    let m = ns.active_member(server_name)?;
    rt.pool.get(&m.server_id)
}

/// The server owning exposed tool/prompt `exposed`, and the name that server knows it by;
/// `Err` carries the client-facing message.
///
/// Plain `server__name` names (prefixed, tools unshaped) are split without a list, so a call
/// works before any list. Otherwise the name is looked up in the (cached) shaped list: what
/// the list does not show cannot be called, under any spelling. A server that did not answer
/// the list is reached only for a name the configuration alone proves it exposes.
async fn resolve(
    rt: &Runtime,
    ns: &NamespaceCfg,
    kind: ListKind,
    exposed: &str,
) -> Result<(Arc<Upstream>, String), String> {
    let what = if kind == ListKind::Tools {
        "tool"
    } else {
        "prompt"
    };
    let unknown = || format!("Unknown {what}: {exposed}");
    let shaped = kind == ListKind::Tools && !ns.shaping.is_identity();
    if kind == ListKind::Tools
        && let Some(why) = ns.shaping.denied()
    {
        return Err(format!(
            "Tools of namespace {} are unavailable: its tool configuration cannot be read ({why})",
            ns.name
        ));
    }
    if ns.prefixed() && !shaped {
        let (server, name) = mangle::split(exposed).ok_or_else(unknown)?;
        let up = upstream_of(rt, ns, server).ok_or_else(unknown)?;
        return Ok((up, name.to_owned()));
    }
    let listing = rt.catalogs.get(rt, ns, kind).await;
    if let Some(owners) = listing.ambiguous.get(exposed) {
        return Err(format!(
            "Ambiguous {what}: {exposed} would name each of {}; calls to it are refused \
             (rename one, or change the namespace's prefix mode)",
            owners.join(", ")
        ));
    }
    if let Some((sid, name)) = listing.names.get(exposed) {
        let up = rt.pool.get(sid).ok_or_else(unknown)?;
        return Ok((up, name.clone()));
    }
    let candidates: Vec<(&str, String)> = listing
        .missing
        .iter()
        .filter_map(|sid| ns.active().find(|m| &m.server_id == sid))
        .filter_map(|m| {
            unshape(ns, kind, &m.server_name, exposed).map(|n| (m.server_id.as_str(), n))
        })
        .collect();
    // why: without prefixes several missing servers could own the name; never guess.
    match candidates.as_slice() {
        [(sid, name)] => {
            let up = rt.pool.get(sid).ok_or_else(unknown)?;
            Ok((up, name.clone()))
        }
        _ => Err(unknown()),
    }
}

/// The upstream name under which `server` would expose `exposed`, judged from the
/// configuration alone (for a server that did not answer the list): `None` unless the
/// shaping rules give exactly that exposed name to an enabled tool.
fn unshape(ns: &NamespaceCfg, kind: ListKind, server: &str, exposed: &str) -> Option<String> {
    let prefixed = ns.prefixed();
    let base = if prefixed {
        let (s, n) = mangle::split(exposed)?;
        if s != server {
            return None;
        }
        n
    } else {
        exposed
    };
    if kind != ListKind::Tools {
        return Some(base.to_owned());
    }
    let shaping = &ns.shaping;
    let upstream = shaping
        .rules()
        .find(|((s, _), r)| s == server && r.name.as_deref() == Some(base))
        .map_or_else(|| base.to_owned(), |((_, t), _)| t.clone());
    (shaping.enabled(server, &upstream)
        && shaping.exposed_name(server, &upstream, prefixed) == exposed)
        .then_some(upstream)
}

#[allow(clippy::too_many_arguments)]
async fn by_prefix(
    rt: &Runtime,
    ns: &NamespaceCfg,
    method: &str,
    id: &RawValue,
    params: Option<&RawValue>,
    exposed: Option<&str>,
    what: &str,
    ctx: &CallCtx,
) -> Done {
    let bad = |msg: String, class: &str| {
        Done::denied(jsonrpc::error(Some(id), INVALID_PARAMS, &msg, None), class)
    };
    let Some(params) = params else {
        return bad(
            format!("{method} needs params with a {what} name"),
            "invalid_params",
        );
    };
    let Some(exposed) = exposed else {
        return bad(
            format!("{method} needs a string \"name\""),
            "invalid_params",
        );
    };
    let kind = if what == "tool" {
        ListKind::Tools
    } else {
        ListKind::Prompts
    };
    let (up, name) = match resolve(rt, ns, kind, exposed).await {
        Ok(r) => r,
        Err(msg) => {
            return bad(
                msg,
                if what == "tool" {
                    "unknown_tool"
                } else {
                    "unknown_prompt"
                },
            );
        }
    };
    // why one `forward_ctx` await: two (one per branch) made this future hold both.
    let params = if name == exposed {
        std::borrow::Cow::Borrowed(params.get())
    } else {
        match jsonrpc::with_str_field(params, "name", &name) {
            Some(rewritten) => std::borrow::Cow::Owned(rewritten),
            None => {
                return bad(
                    format!("{method} params must be an object"),
                    "invalid_params",
                );
            }
        }
    };
    forward_ctx(Some(rt), &up, method, id, Some(&params), ctx).await
}

async fn by_uri(
    rt: &Runtime,
    ns: &NamespaceCfg,
    method: &str,
    id: &RawValue,
    params: Option<&RawValue>,
    uri: Option<&str>,
    ctx: &CallCtx,
) -> Done {
    let Some(uri) = uri else {
        return Done::denied(
            jsonrpc::error(
                Some(id),
                INVALID_PARAMS,
                &format!("{method} needs a string \"uri\""),
                None,
            ),
            "invalid_params",
        );
    };
    if method == "resources/subscribe"
        && let Some(session) = &ctx.session
        && !rt
            .relay
            .may_subscribe(session, uri, rt.limits.subscriptions_per_session)
    {
        let refused = crate::limits::Exceeded::new(
            "METAMCP_MAX_SUBSCRIPTIONS_PER_SESSION",
            rt.limits.subscriptions_per_session,
            "Too many resource subscriptions on this session; unsubscribe from some first",
        );
        return Done::denied(refused.rpc_error(Some(id)), "subscriptions_cap");
    }
    let params = params.map(RawValue::get);
    let candidates = resource_owners(rt, ns, uri).await;
    let Some((first, rest)) = candidates.split_first() else {
        return Done::denied(
            jsonrpc::error(
                Some(id),
                jsonrpc::RESOURCE_NOT_FOUND,
                &format!("Resource not found: {uri}"),
                None,
            ),
            "unknown_resource",
        );
    };
    if rest.is_empty() {
        let done = forward_ctx(Some(rt), first, method, id, params, ctx).await;
        note_subscription(rt, method, uri, ctx, &done.out.text());
        return done;
    }
    // Several servers might own it: the first that does not answer an error wins.
    let mut last = Done::denied(String::new(), "unknown_resource");
    for up in &candidates {
        let server = Some(up.shared_name());
        match up.request_for(caller(ctx), method, params, None).await {
            Ok(reply) if !reply.is_error() => {
                let out = wrap(id, &reply);
                note_subscription(rt, method, uri, ctx, &out);
                return Done {
                    out: out.into(),
                    server,
                    verdict: verdict_of(method, &reply),
                    upstream: None,
                };
            }
            Ok(reply) => {
                last = Done {
                    out: wrap(id, &reply).into(),
                    server,
                    verdict: verdict_of(method, &reply),
                    upstream: None,
                }
            }
            Err(e) => {
                last = Done {
                    out: upstream_error(id, &e).into(),
                    server,
                    verdict: verdict_of_failure(&e),
                    upstream: None,
                }
            }
        }
    }
    last
}

/// Remembers which session subscribed to which URI, so `resources/updated` reaches it.
fn note_subscription(rt: &Runtime, method: &str, uri: &str, ctx: &CallCtx, answer: &str) {
    let subscribe = match method {
        "resources/subscribe" => true,
        "resources/unsubscribe" => false,
        _ => return,
    };
    if let Some(session) = &ctx.session
        && !answer.contains(r#""error":"#)
    {
        rt.relay.subscription(session, uri, subscribe);
    }
}

/// The servers that may own `uri`, most likely first.
async fn resource_owners(rt: &Runtime, ns: &NamespaceCfg, uri: &str) -> Vec<Arc<Upstream>> {
    let resources = rt.catalogs.get(rt, ns, ListKind::Resources).await;
    if let Some(up) = resources.uris.get(uri).and_then(|sid| rt.pool.get(sid)) {
        return vec![up];
    }
    let templates = rt.catalogs.get(rt, ns, ListKind::Templates).await;
    let mut owners: Vec<Arc<Upstream>> = Vec::new();
    for (sid, t) in &templates.templates {
        if t.matches(uri)
            && let Some(up) = rt.pool.get(sid)
            && !owners.iter().any(|o| o.id() == up.id())
        {
            owners.push(up);
        }
    }
    if !owners.is_empty() {
        return owners;
    }
    // why: a server may serve URIs it never lists; ask every active resource server.
    let mut all = Vec::new();
    for m in ns.active() {
        if let Some(up) = rt.pool.get(&m.server_id)
            && up.info().await.is_ok_and(|i| i.has("resources"))
        {
            all.push(up);
        }
    }
    all
}

async fn completion(
    rt: &Runtime,
    ns: &NamespaceCfg,
    id: &RawValue,
    params: Option<&RawValue>,
) -> String {
    let v: Option<serde_json::Value> = params.and_then(|p| serde_json::from_str(p.get()).ok());
    let r = v.as_ref().and_then(|v| v.get("ref"));
    let kind = r.and_then(|r| r.get("type")).and_then(|t| t.as_str());
    match (kind, v.clone()) {
        (Some("ref/prompt"), Some(mut v)) => {
            let Some(exposed) = v["ref"]["name"].as_str().map(str::to_owned) else {
                return jsonrpc::error(Some(id), INVALID_PARAMS, "ref.name is required", None);
            };
            let (up, name) = match resolve(rt, ns, ListKind::Prompts, &exposed).await {
                Ok(r) => r,
                Err(msg) => return jsonrpc::error(Some(id), INVALID_PARAMS, &msg, None),
            };
            v["ref"]["name"] = name.into();
            forward(&up, "completion/complete", id, Some(&v.to_string())).await
        }
        (Some("ref/resource"), Some(v)) => {
            let uri = v["ref"]["uri"].as_str().unwrap_or_default().to_owned();
            match resource_owners(rt, ns, &uri).await.first() {
                Some(up) => forward(up, "completion/complete", id, params.map(RawValue::get)).await,
                None => jsonrpc::error(
                    Some(id),
                    INVALID_PARAMS,
                    &format!("Unknown resource: {uri}"),
                    None,
                ),
            }
        }
        _ => jsonrpc::error(
            Some(id),
            INVALID_PARAMS,
            "completion/complete needs ref of type ref/prompt or ref/resource",
            None,
        ),
    }
}

/// `logging/setLevel`: the session's own threshold for the log messages it gets; each
/// server of the namespace is set to the most verbose level any of its current sessions
/// asked for, so one client never changes what another receives. Without a session
/// (stateless calls) there is nothing to hold the level: the answer is empty and no
/// upstream changes.
async fn set_level(
    rt: &Runtime,
    ns: &NamespaceCfg,
    id: &RawValue,
    params: Option<&RawValue>,
    ctx: &CallCtx,
) -> String {
    let Some(level) = params
        .and_then(|p| jsonrpc::str_field(p, "level"))
        .and_then(|l| LogLevel::parse(&l))
    else {
        return jsonrpc::error(
            Some(id),
            INVALID_PARAMS,
            "logging/setLevel needs a level: debug, info, notice, warning, error, critical, \
             alert or emergency",
            None,
        );
    };
    let Some(session) = &ctx.session else {
        return jsonrpc::response(id, "{}");
    };
    session.set_log_level(level);
    let servers: Vec<String> = ns.active().map(|m| m.server_id.clone()).collect();
    let changes = rt.relay.set_log_level(&session.id, &servers, level);
    apply_log_levels(rt, changes, true).await;
    jsonrpc::response(id, "{}")
}

/// Sets upstream log levels (servers that do not declare `logging` are skipped); with
/// `start`, a server that is not running is started for it, else it is left alone.
pub(crate) async fn apply_log_levels(rt: &Runtime, changes: Vec<(String, LogLevel)>, start: bool) {
    for (server_id, level) in changes {
        let Some(up) = rt.pool.get(&server_id) else {
            continue;
        };
        let info = if start {
            up.info().await.ok()
        } else {
            up.info_if_running()
        };
        if !info.is_some_and(|i| i.has("logging")) {
            continue;
        }
        let params = format!(r#"{{"level":"{}"}}"#, level.as_str());
        if let Err(e) = up.request("logging/setLevel", Some(&params)).await {
            tracing::debug!(server = up.name(), error = %e, "logging/setLevel not applied");
        }
    }
}
