//! `metamcp-fixture`: a small but spec-correct MCP server used as the upstream in
//! metamcp's end-to-end tests and benchmarks.
//!
//! ```text
//! metamcp-fixture stdio [--name NAME] [--page-size K] [--extra-tools N] [--conformance]
//!                       [--spawn-grandchild]
//! metamcp-fixture http  [--bind 127.0.0.1:0] [--name NAME] [--page-size K] [--extra-tools N]
//!                       [--conformance] [--json-response] [--stateless]
//! ```
//!
//! Tools: `echo`, `add`, `slow`, `crash`, `rich`, `env`, `fail`, `grow` and `extra_0..N`.
//! `echo_meta` is callable but never listed (lists stay as tests expect them): it answers,
//! as JSON text, the request's `_meta` and its `traceparent`/`tracestate` HTTP headers.
//! Prompts: `greeting`, `plain`. Resources: `fixture://static/readme` and the
//! template `fixture://items/{id}`. Lists are paginated when `--page-size` is not 0
//! (the cursor is the decimal offset of the next item).
//!
//! `--conformance` adds, after those, the tools, prompts and resources that the
//! official MCP conformance suite's server scenarios call (see `conformance.rs`),
//! and declares and serves `logging/setLevel`, `completion/complete` and resource
//! subscriptions. Without it the fixture behaves exactly as before.
//!
//! Diagnostics go to stderr (never to stdout: in stdio mode stdout carries only
//! JSON-RPC). Set `FIXTURE_LOG` (an `EnvFilter` directive, e.g. `rmcp=debug`) to
//! see rmcp's own tracing output on stderr.

use std::{
    collections::HashMap,
    io::Write as _,
    net::SocketAddr,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use axum::response::IntoResponse as _;
use axum::serve::ListenerExt as _;
use clap::{Args, Parser, Subcommand};
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler, ServiceExt as _,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestMethod,
        CompleteRequestParams, CompleteResult, ContentBlock, GetPromptRequestParams,
        GetPromptResponse, GetPromptResult, Implementation, JsonObject, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, Prompt, PromptArgument, PromptMessage,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
        ResourceContents, ResourceTemplate, Role, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
    transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService},
};
// Logging and resources/subscribe are deprecated by rmcp for protocol 2026-07-28 only.
#[allow(deprecated)]
use rmcp::model::{
    SetLevelRequestMethod, SetLevelRequestParams, SubscribeRequestMethod, SubscribeRequestParams,
    UnsubscribeRequestMethod, UnsubscribeRequestParams,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

// Modules live in `fixture/` (a file directly under `src/bin/` would be another binary).
#[path = "fixture/conformance.rs"]
mod conformance;
#[path = "fixture/raw.rs"]
mod raw;
#[path = "fixture/sessions.rs"]
mod sessions;

/// A valid 1x1 RGBA PNG (CRCs and zlib stream checked).
const TINY_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

const README_URI: &str = "fixture://static/readme";
const ITEM_URI_PREFIX: &str = "fixture://items/";
const ITEM_URI_TEMPLATE: &str = "fixture://items/{id}";

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

#[derive(Debug, Parser)]
#[command(
    name = "metamcp-fixture",
    about = "Fixture MCP server for metamcp tests",
    version
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// A hand-written stdio server whose answers carry fields no SDK knows (fidelity tests).
    Raw,
    /// Serve MCP over stdin/stdout (newline-delimited JSON-RPC).
    Stdio {
        #[command(flatten)]
        common: CommonArgs,
        /// Spawn a `sleep 600` child at start and report its pid on stderr.
        #[arg(long)]
        spawn_grandchild: bool,
    },
    /// Serve MCP over Streamable HTTP at `/mcp`.
    Http {
        #[command(flatten)]
        common: CommonArgs,
        /// Address to bind; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// Answer requests with plain `application/json` bodies. rmcp only supports
        /// this without sessions, so it implies `--stateless`.
        #[arg(long)]
        json_response: bool,
        /// Serve without sessions (no `mcp-session-id`, every POST stands alone).
        #[arg(long)]
        stateless: bool,
        /// Answer 401 unless the request carries this header (`NAME:VALUE`); repeatable.
        #[arg(long = "require-header", value_name = "NAME:VALUE")]
        require_headers: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// `serverInfo.name` reported by `initialize`.
    #[arg(long, default_value = "metamcp-fixture")]
    name: String,
    /// Items per page for tools/prompts/resources lists; 0 disables pagination.
    #[arg(long, default_value_t = 0)]
    page_size: usize,
    /// Number of additional echo-like tools `extra_0..extra_{N-1}`.
    #[arg(long, default_value_t = 0)]
    extra_tools: usize,
    /// Also serve the official MCP conformance suite's fixture tools, prompts and
    /// resources, logging, completions and resource subscriptions.
    #[arg(long)]
    conformance: bool,
    /// Speak only the stateless 2026-07-28 era: `initialize` is refused (unsupported
    /// version); clients must use `server/discover` and per-request `_meta`.
    #[arg(long)]
    modern_only: bool,
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// Everything the handler serves; built once and shared by all sessions.
struct Catalog {
    name: String,
    page_size: usize,
    /// `--conformance`: the suite's names and methods are served too.
    conformance: bool,
    /// `--modern-only`: 2026-07-28 only.
    modern_only: bool,
    tools: Vec<Tool>,
    tool_index: HashMap<String, usize>,
    prompts: Vec<Prompt>,
    resources: Vec<Resource>,
    templates: Vec<ResourceTemplate>,
}

#[derive(Clone)]
struct Fixture {
    catalog: Arc<Catalog>,
    /// Tools added at run time by `grow` (shared by every session of this process).
    grown: Arc<std::sync::Mutex<Vec<Tool>>>,
    /// This MCP session's log level and resource subscriptions (`--conformance`).
    session: Arc<conformance::Session>,
    /// The Streamable HTTP session manager (absent on stdio).
    http: Option<Arc<sessions::HttpSessions>>,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn message_schema() -> Arc<JsonObject> {
    schema(json!({
        "type": "object",
        "properties": {
            "message": { "type": "string", "description": "Text to echo back" }
        },
        "required": ["message"]
    }))
}

fn build_tools(extra_tools: usize, conformance: bool) -> Vec<Tool> {
    let mut tools = vec![
        Tool::new("echo", "Echo the message back as text", message_schema()),
        Tool::new(
            "add",
            "Add two numbers",
            schema(json!({
                "type": "object",
                "properties": {
                    "a": { "type": "number" },
                    "b": { "type": "number" }
                },
                "required": ["a", "b"]
            })),
        )
        .with_raw_output_schema(schema(json!({
            "type": "object",
            "properties": { "sum": { "type": "number" } },
            "required": ["sum"]
        }))),
        Tool::new(
            "slow",
            "Sleep delay_ms for each of steps steps, reporting progress after each one",
            schema(json!({
                "type": "object",
                "properties": {
                    "steps": { "type": "integer", "minimum": 0, "default": 3 },
                    "delay_ms": { "type": "integer", "minimum": 0, "default": 100 }
                }
            })),
        ),
        Tool::new(
            "crash",
            "Exit the fixture process immediately with code 3, without answering",
            schema(json!({ "type": "object", "properties": {} })),
        ),
        Tool::new(
            "rich",
            "Return text and image content plus structured content",
            schema(json!({ "type": "object", "properties": {} })),
        )
        .with_raw_output_schema(schema(json!({
            "type": "object",
            "properties": {
                "kind": { "type": "string" },
                "ok": { "type": "boolean" }
            },
            "required": ["kind", "ok"]
        }))),
        Tool::new(
            "env",
            "Return the value of an environment variable of the fixture process, or <unset>",
            schema(json!({
                "type": "object",
                "properties": { "name": { "type": "string" } },
                "required": ["name"]
            })),
        ),
        Tool::new(
            "touch",
            "Send notifications/resources/updated for the URI given as `message`",
            message_schema(),
        ),
        Tool::new(
            "withdraw",
            "Ask the client for input (elicitation/create), then withdraw the question after 300 ms",
            schema(json!({ "type": "object", "properties": {} })),
        ),
        Tool::new(
            "grow",
            "Add a tool grown_N to this server's list and send notifications/tools/list_changed",
            schema(json!({ "type": "object", "properties": {} })),
        ),
        Tool::new(
            "spoof_progress",
            "Send notifications/progress under the token given as `message`, which no request \
             of this server carries (what a hostile upstream would try)",
            message_schema(),
        ),
        Tool::new(
            "blob",
            "Return a text of `size` bytes (for message-size limits)",
            schema(json!({
                "type": "object",
                "properties": { "size": { "type": "integer", "minimum": 0 } },
                "required": ["size"]
            })),
        ),
        Tool::new(
            "stderr_bytes",
            "Write the bytes given in hex as `message` to stderr, then a newline",
            message_schema(),
        ),
        Tool::new(
            "fail",
            "Return a tool result with isError: true and the given message",
            schema(json!({
                "type": "object",
                "properties": { "message": { "type": "string" } },
                "required": ["message"]
            })),
        ),
    ];
    let echo_schema = message_schema();
    tools.extend((0..extra_tools).map(|i| {
        Tool::new(
            format!("extra_{i}"),
            format!("Extra tool {i}: echo the message back as text"),
            echo_schema.clone(),
        )
    }));
    if conformance {
        tools.extend(conformance::tools());
    }
    tools
}

impl Fixture {
    fn new(common: &CommonArgs) -> Self {
        let tools = build_tools(common.extra_tools, common.conformance);
        let tool_index = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| (tool.name.to_string(), i))
            .collect();
        let mut prompts = vec![
            Prompt::new(
                "greeting",
                Some("Greet someone by name"),
                Some(vec![
                    PromptArgument::new("name")
                        .with_description("Who to greet")
                        .with_required(true),
                ]),
            ),
            Prompt::new("plain", Some("A prompt without arguments"), None),
        ];
        let mut resources = vec![
            Resource::new(README_URI, "readme")
                .with_description("Static fixture readme")
                .with_mime_type("text/plain"),
        ];
        let mut templates = vec![
            ResourceTemplate::new(ITEM_URI_TEMPLATE, "item")
                .with_description("Any item by id")
                .with_mime_type("text/plain"),
        ];
        if common.conformance {
            prompts.extend(conformance::prompts());
            resources.extend(conformance::resources());
            templates.extend(conformance::templates());
        }
        Self {
            catalog: Arc::new(Catalog {
                name: common.name.clone(),
                page_size: common.page_size,
                conformance: common.conformance,
                modern_only: common.modern_only,
                tools,
                tool_index,
                prompts,
                resources,
                templates,
            }),
            grown: Arc::new(std::sync::Mutex::new(Vec::new())),
            session: Arc::default(),
            http: None,
        }
    }

    /// The handler of a new MCP session: same catalog and grown tools, its own
    /// per-session state.
    fn for_new_session(&self) -> Self {
        Self {
            session: Arc::default(),
            ..self.clone()
        }
    }

    fn grown_tools(&self) -> Vec<Tool> {
        self.grown.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Runs one tool. `Failure::Args` becomes an `isError` result (input validation
    /// errors are tool execution errors per the spec); `Failure::Rpc` a JSON-RPC error.
    async fn run_tool(
        &self,
        name: &str,
        args: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Failure> {
        match name {
            "echo" => {
                let MessageArgs { message } = parse_args(name, args)?;
                Ok(CallToolResult::success(vec![ContentBlock::text(message)]))
            }
            "echo_meta" => {
                let header = |name: &str| {
                    context
                        .extensions
                        .get::<axum::http::request::Parts>()
                        .and_then(|p| p.headers.get(name))
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let seen = json!({
                    "meta": serde_json::to_value(&context.meta.0).unwrap_or(Value::Null),
                    "traceparent": header("traceparent"),
                    "tracestate": header("tracestate"),
                });
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    seen.to_string(),
                )]))
            }
            "add" => {
                let AddArgs { a, b } = parse_args(name, args)?;
                let sum = number_value(a + b)
                    .ok_or_else(|| Failure::Args(format!("sum of {a} and {b} is not finite")))?;
                let mut result = CallToolResult::success(vec![ContentBlock::text(sum.to_string())]);
                result.structured_content = Some(json!({ "sum": sum }));
                Ok(result)
            }
            "slow" => {
                let SlowArgs { steps, delay_ms } = parse_args(name, args)?;
                self.slow(steps, delay_ms, &context).await
            }
            "crash" => {
                eprintln!(
                    "fixture {}: crash requested, exiting with code 3",
                    self.catalog.name
                );
                std::process::exit(3);
            }
            "rich" => {
                let mut result = CallToolResult::success(vec![
                    ContentBlock::text("rich content"),
                    ContentBlock::image(TINY_PNG_BASE64, "image/png"),
                ]);
                result.structured_content = Some(json!({ "kind": "rich", "ok": true }));
                Ok(result)
            }
            "env" => {
                let EnvArgs { name: var } = parse_args(name, args)?;
                let value = if var.is_empty() || var.contains(['=', '\0']) {
                    None
                } else {
                    std::env::var_os(&var)
                };
                let text = value.map_or_else(
                    || "<unset>".to_owned(),
                    |v| v.to_string_lossy().into_owned(),
                );
                Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
            }
            "fail" => {
                let MessageArgs { message } = parse_args(name, args)?;
                Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
            }
            "withdraw" => conformance::withdraw(&context).await,
            "spoof_progress" => {
                let MessageArgs { message: token } = parse_args(name, args)?;
                let token: rmcp::model::ProgressToken = serde_json::from_value(json!(token))
                    .map_err(|e| Failure::Args(format!("bad token: {e}")))?;
                let progress = ProgressNotificationParam::new(token, 1.0)
                    .with_message("injected by another server".to_owned());
                if let Err(e) = context.peer.notify_progress(progress).await {
                    eprintln!("fixture {}: progress not sent: {e}", self.catalog.name);
                }
                Ok(CallToolResult::success(vec![ContentBlock::text("sent")]))
            }
            "blob" => {
                #[derive(Deserialize)]
                struct BlobArgs {
                    size: usize,
                }
                let BlobArgs { size } = parse_args(name, args)?;
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    "x".repeat(size.min(64 * 1024 * 1024)),
                )]))
            }
            "stderr_bytes" => {
                use std::io::Write as _;
                let MessageArgs { message: hex } = parse_args(name, args)?;
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                let mut err = std::io::stderr().lock();
                let written = err.write_all(&bytes).and_then(|()| err.write_all(b"\n"));
                let text = match written {
                    Ok(()) => format!("wrote {} bytes", bytes.len()),
                    Err(e) => format!("stderr write failed: {e}"),
                };
                Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
            }
            "touch" => {
                let MessageArgs { message: uri } = parse_args(name, args)?;
                let param: rmcp::model::ResourceUpdatedNotificationParam =
                    serde_json::from_value(json!({ "uri": uri }))
                        .map_err(|e| Failure::Args(format!("bad uri: {e}")))?;
                if let Err(e) = context.peer.notify_resource_updated(param).await {
                    eprintln!(
                        "fixture {}: resources/updated not sent: {e}",
                        self.catalog.name
                    );
                }
                Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                    "touched {uri}"
                ))]))
            }
            "grow" => {
                let added = {
                    let mut grown = self
                        .grown
                        .lock()
                        .map_err(|_| Failure::Args("grown tools lock poisoned".into()))?;
                    let name = format!("grown_{}", grown.len());
                    grown.push(Tool::new(
                        name.clone(),
                        "A tool added by grow",
                        message_schema(),
                    ));
                    name
                };
                if let Err(e) = context.peer.notify_tool_list_changed().await {
                    eprintln!("fixture {}: list_changed not sent: {e}", self.catalog.name);
                }
                Ok(CallToolResult::success(vec![ContentBlock::text(added)]))
            }
            _ if self.catalog.conformance && conformance::is_tool(name) => {
                let call = conformance::Call {
                    session: &self.session,
                    http: self.http.as_deref(),
                    context,
                };
                conformance::call_tool(name, args, call).await
            }
            _ if name.starts_with("grown_")
                && self.grown_tools().iter().any(|t| t.name == name) =>
            {
                let MessageArgs { message } = parse_args(name, args)?;
                Ok(CallToolResult::success(vec![ContentBlock::text(message)]))
            }
            _ if self.catalog.tool_index.contains_key(name) => {
                // extra_N: same behaviour as echo.
                let MessageArgs { message } = parse_args(name, args)?;
                Ok(CallToolResult::success(vec![ContentBlock::text(message)]))
            }
            _ => Err(Failure::Rpc(McpError::invalid_params(
                format!("unknown tool: {name}"),
                Some(json!({ "name": name })),
            ))),
        }
    }

    async fn slow(
        &self,
        steps: u64,
        delay_ms: u64,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Failure> {
        eprintln!(
            "fixture {}: slow started ({steps} steps)",
            self.catalog.name
        );
        let token = context.meta.get_progress_token();
        if let Some(token) = &token {
            // Tests read it back (`metamcp logs`) to try it from another server.
            eprintln!(
                "fixture {}: slow progress token {}",
                self.catalog.name,
                serde_json::to_string(token).unwrap_or_default()
            );
        }
        for step in 1..=steps {
            tokio::select! {
                () = context.ct.cancelled() => {
                    eprintln!(
                        "fixture {}: slow cancelled after {} of {steps} steps",
                        self.catalog.name,
                        step - 1
                    );
                    // rmcp drops the response of a cancelled request.
                    return Err(Failure::Rpc(McpError::internal_error("request cancelled", None)));
                }
                () = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
            }
            if let Some(token) = &token {
                let progress = ProgressNotificationParam::new(token.clone(), step as f64)
                    .with_total(steps as f64)
                    .with_message(format!("step {step}"));
                if let Err(error) = context.peer.notify_progress(progress).await {
                    eprintln!(
                        "fixture {}: failed to send progress: {error}",
                        self.catalog.name
                    );
                }
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "done after {steps} steps"
        ))]))
    }
}

enum Failure {
    /// Bad tool arguments: reported as a tool result with `isError: true`.
    Args(String),
    /// A protocol-level error.
    Rpc(McpError),
}

#[derive(Deserialize)]
struct MessageArgs {
    message: String,
}

#[derive(Deserialize)]
struct AddArgs {
    a: f64,
    b: f64,
}

#[derive(Deserialize)]
struct SlowArgs {
    #[serde(default = "default_steps")]
    steps: u64,
    #[serde(default = "default_delay_ms")]
    delay_ms: u64,
}

fn default_steps() -> u64 {
    3
}

fn default_delay_ms() -> u64 {
    100
}

#[derive(Deserialize)]
struct EnvArgs {
    name: String,
}

fn parse_args<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, Failure> {
    serde_json::from_value(Value::Object(args))
        .map_err(|error| Failure::Args(format!("invalid arguments for tool {tool}: {error}")))
}

/// A JSON number for `x`: an integer when `x` is integral (so 2 + 3 gives `5`,
/// not `5.0`), `None` when `x` is not finite.
fn number_value(x: f64) -> Option<Value> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.fract() == 0.0 && x.abs() <= EXACT {
        #[expect(clippy::cast_possible_truncation, reason = "integral and within 2^53")]
        let int = x as i64;
        Some(Value::from(int))
    } else {
        serde_json::Number::from_f64(x).map(Value::Number)
    }
}

/// One page of `items` starting at the offset encoded in the cursor.
fn paginate<T: Clone>(
    items: &[T],
    page_size: usize,
    request: Option<PaginatedRequestParams>,
) -> Result<(Vec<T>, Option<String>), McpError> {
    let offset = match request.and_then(|r| r.cursor) {
        None => 0,
        Some(cursor) => cursor
            .parse::<usize>()
            .ok()
            .filter(|offset| *offset <= items.len() && !cursor.starts_with('+'))
            .ok_or_else(|| {
                McpError::invalid_params(
                    format!("invalid cursor: {cursor:?}"),
                    Some(json!({ "cursor": cursor })),
                )
            })?,
    };
    let end = if page_size == 0 {
        items.len()
    } else {
        offset.saturating_add(page_size).min(items.len())
    };
    let next_cursor = (end < items.len()).then(|| end.to_string());
    Ok((items[offset..end].to_vec(), next_cursor))
}

impl ServerHandler for Fixture {
    fn supported_protocol_versions(
        &self,
    ) -> std::borrow::Cow<'static, [rmcp::model::ProtocolVersion]> {
        const MODERN: &[rmcp::model::ProtocolVersion] =
            &[rmcp::model::ProtocolVersion::V_2026_07_28];
        if self.catalog.modern_only {
            std::borrow::Cow::Borrowed(MODERN)
        } else {
            std::borrow::Cow::Borrowed(rmcp::model::ProtocolVersion::KNOWN_VERSIONS)
        }
    }

    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_resources()
            .build();
        if self.catalog.conformance {
            capabilities.logging = Some(JsonObject::new());
            capabilities.completions = Some(JsonObject::new());
            if let Some(resources) = capabilities.resources.as_mut() {
                resources.subscribe = Some(true);
            }
        }
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                self.catalog.name.clone(),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Fixture MCP server for metamcp tests.")
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        match self.catalog.tool_index.get(name) {
            Some(index) => self.catalog.tools.get(*index).cloned(),
            None => self.grown_tools().into_iter().find(|t| t.name == name),
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut all = self.catalog.tools.clone();
        all.extend(self.grown_tools());
        let (page, next_cursor) = paginate(&all, self.catalog.page_size, request)?;
        let mut result = ListToolsResult::with_all_items(page);
        result.next_cursor = next_cursor;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        match self.run_tool(&request.name, args, context).await {
            Ok(result) => Ok(result.into()),
            Err(Failure::Args(message)) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into())
            }
            Err(Failure::Rpc(error)) => Err(error),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let (page, next_cursor) = paginate(&self.catalog.prompts, self.catalog.page_size, request)?;
        let mut result = ListPromptsResult::with_all_items(page);
        result.next_cursor = next_cursor;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if self.catalog.conformance
            && let Some(result) = conformance::get_prompt(&request.name, request.arguments.as_ref())
        {
            return result.map(Into::into);
        }
        let text = match request.name.as_str() {
            "greeting" => {
                let name = request
                    .arguments
                    .as_ref()
                    .and_then(|args| args.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        McpError::invalid_params(
                            "prompt greeting: missing required string argument: name",
                            None,
                        )
                    })?;
                format!("Hello, {name}!")
            }
            "plain" => "A plain prompt.".to_owned(),
            other => {
                return Err(McpError::invalid_params(
                    format!("unknown prompt: {other}"),
                    Some(json!({ "name": other })),
                ));
            }
        };
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let (page, next_cursor) =
            paginate(&self.catalog.resources, self.catalog.page_size, request)?;
        let mut result = ListResourcesResult::with_all_items(page);
        result.next_cursor = next_cursor;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let (page, next_cursor) =
            paginate(&self.catalog.templates, self.catalog.page_size, request)?;
        let mut result = ListResourceTemplatesResult::with_all_items(page);
        result.next_cursor = next_cursor;
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        if self.catalog.conformance
            && let Some(result) = conformance::read_resource(&uri)
        {
            return Ok(result.into());
        }
        let text = if uri == README_URI {
            "fixture readme".to_owned()
        } else if let Some(id) = uri.strip_prefix(ITEM_URI_PREFIX)
            && !id.is_empty()
        {
            format!("item {id}")
        } else {
            return Err(McpError::resource_not_found(
                format!("resource not found: {uri}"),
                Some(json!({ "uri": uri })),
            ));
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri)]).into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        if !self.catalog.conformance {
            return Err(McpError::method_not_found::<CompleteRequestMethod>());
        }
        conformance::complete(&request)
    }

    #[expect(deprecated, reason = "logging is deprecated only for 2026-07-28")]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if !self.catalog.conformance {
            return Err(McpError::method_not_found::<SetLevelRequestMethod>());
        }
        self.session.set_level(request.level);
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if !self.catalog.conformance {
            return Err(McpError::method_not_found::<SubscribeRequestMethod>());
        }
        self.session.subscribe(&request.uri)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if !self.catalog.conformance {
            return Err(McpError::method_not_found::<UnsubscribeRequestMethod>());
        }
        self.session.unsubscribe(&request.uri);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIXTURE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.mode {
        Mode::Raw => raw::run(),
        Mode::Stdio {
            common,
            spawn_grandchild,
        } => run_stdio(&common, spawn_grandchild).await,
        Mode::Http {
            common,
            bind,
            json_response,
            stateless,
            require_headers,
        } => run_http(&common, bind, json_response, stateless, require_headers).await,
    }
}

async fn run_stdio(common: &CommonArgs, spawn_grandchild: bool) -> anyhow::Result<()> {
    let name = &common.name;
    eprintln!(
        "fixture {name} starting pid={} mode=stdio",
        std::process::id()
    );
    if spawn_grandchild {
        // Deliberately neither waited for nor killed: tests check that the gateway
        // kills the whole process group.
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn grandchild `sleep 600`")?;
        eprintln!("grandchild pid={}", child.id());
        std::mem::forget(child);
    }
    let fixture = Fixture::new(common);
    let running = match fixture.serve(rmcp::transport::stdio_pipes()).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("fixture {name}: initialization failed: {error}");
            std::process::exit(0);
        }
    };
    eprintln!("fixture {name} initialized");
    let reason = running.waiting().await;
    eprintln!("fixture {name}: stdin closed, exiting ({reason:?})");
    // Do not wait for the runtime to wind down pending stdin reads.
    std::process::exit(0);
}

async fn run_http(
    common: &CommonArgs,
    bind: SocketAddr,
    json_response: bool,
    stateless: bool,
    require_headers: Vec<String>,
) -> anyhow::Result<()> {
    let required: Arc<Vec<(String, String)>> = Arc::new(
        require_headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .with_context(|| format!("--require-header {h:?} is not NAME:VALUE"))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let name = &common.name;
    eprintln!(
        "fixture {name} starting pid={} mode=http json_response={json_response} stateless={}",
        std::process::id(),
        stateless || json_response
    );
    let ct = CancellationToken::new();
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(ct.child_token());
    if json_response || stateless {
        // rmcp 3.11 only honours json_response without sessions.
        config = config
            .with_legacy_session_mode(false)
            .with_json_response(json_response);
    }
    let sessions = Arc::new(sessions::HttpSessions::default());
    let fixture = Fixture {
        http: Some(sessions.clone()),
        ..Fixture::new(common)
    };
    let service =
        StreamableHttpService::new(move || Ok(fixture.for_new_session()), sessions, config);
    let router =
        axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let required = required.clone();
                    async move {
                        let ok = required.iter().all(|(k, v)| {
                            req.headers().get(k.as_str()).and_then(|h| h.to_str().ok())
                                == Some(v.as_str())
                        });
                        if ok {
                            next.run(req).await
                        } else {
                            axum::http::StatusCode::UNAUTHORIZED.into_response()
                        }
                    }
                },
            ));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("bind {bind}"))?;
    let addr = listener.local_addr().context("local_addr")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}/mcp").context("write stdout")?;
        stdout.flush().context("flush stdout")?;
    }
    eprintln!("fixture {name} listening on http://{addr}/mcp");
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let result = axum::serve(listener, router).await;
    ct.cancel();
    result.context("serve http")
}
