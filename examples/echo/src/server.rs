//! The `mcp-echo` tools (MCP 2025-11-25 "Tools"), named in camelCase like the Python mcp-echo
//! servers. Each tool reads the HTTP request it arrived in: rmcp's Streamable HTTP service puts
//! the request's [`http::request::Parts`] into the request context's extensions, which a tool
//! takes with `Extension<Parts>`.
//!
//! rmcp builds one [`EchoServer`] per session in `--stateful` mode (its service factory runs at
//! `initialize`), and one per request in the default stateless mode. Per-session state therefore
//! lives in the instance and ends with the session; no map keyed by session id is needed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use http::request::Parts;
use rmcp::handler::server::tool::{Extension, ToolCallContext, ToolRouter};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{headers, jwt, system};

/// Tools listed only with `--stateful`.
pub const STATEFUL_TOOLS: [&str; 2] = ["replayLastEcho", "sessionInfo"];

/// Settings shared by every instance, fixed at start-up.
#[derive(Debug)]
pub struct EchoConfig {
    /// Sessions on (`--stateful`).
    pub stateful: bool,
    /// `--allow-secret-env`: `environmentDump` may show secret-looking values when asked to.
    pub allow_secret_env: bool,
    /// When the process started.
    pub started: Instant,
}

/// When the HTTP request reached the server: put in the request extensions by an axum layer,
/// read back from [`Parts::extensions`] by `requestTiming`.
#[derive(Clone, Copy, Debug)]
pub struct RequestArrived(pub Instant);

/// What one session remembers.
#[derive(Debug, Default)]
struct SessionCounters {
    calls: u64,
    last_call: Option<Instant>,
    previous_call: Option<Instant>,
    last_echo: Option<String>,
}

/// State of one session (or of one request when stateless).
#[derive(Debug)]
struct SessionState {
    created_at: DateTime<Utc>,
    created: Instant,
    counters: Mutex<SessionCounters>,
}

impl SessionState {
    fn new() -> Self {
        Self { created_at: Utc::now(), created: Instant::now(), counters: Mutex::default() }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, SessionCounters> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Arguments of `echo`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back unchanged.
    pub message: String,
}

/// Arguments of `environmentDump`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentDumpArgs {
    /// Show the values of secret-looking variables too. Honoured only when the server was started
    /// with --allow-secret-env (MCP_ALLOW_SECRET_ENV).
    #[serde(default)]
    pub show_secrets: Option<bool>,
}

/// The diagnostic echo server.
#[derive(Clone)]
pub struct EchoServer {
    config: Arc<EchoConfig>,
    session: Arc<SessionState>,
    tool_router: ToolRouter<EchoServer>,
}

/// A successful result whose text is the JSON and whose structured content is the same JSON.
fn report(value: Value) -> CallToolResult {
    CallToolResult::structured(value)
}

/// The `mcp-session-id` header of this request, if any.
fn session_id(parts: &Parts) -> Option<String> {
    parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

const NO_SESSION: &str = "this request is not part of a session: start the server with --stateful and \
     initialize (protocol 2026-07-28 requests are always sessionless)";

#[tool_router]
impl EchoServer {
    /// One instance: a fresh session state, the tools of the configured mode.
    pub fn new(config: Arc<EchoConfig>) -> Self {
        let mut tool_router = Self::tool_router();
        if !config.stateful {
            for name in STATEFUL_TOOLS {
                tool_router.remove_route(name);
            }
        }
        Self { config, session: Arc::new(SessionState::new()), tool_router }
    }

    #[tool(description = "Send a message back unchanged.")]
    fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        self.session.counters().last_echo = Some(args.message.clone());
        args.message
    }

    #[tool(
        name = "printHeader",
        description = "Show the HTTP headers of this call, grouped as forwarded (X-Forwarded-*, X-Real-IP, \
                       Forwarded, Via), auth (Authorization and cookies redacted, X-User-*, X-Client-Id, \
                       X-Scope) and other."
    )]
    fn print_header(&self, Extension(parts): Extension<Parts>) -> CallToolResult {
        report(headers::grouped(&parts.headers))
    }

    #[tool(
        name = "bearerDecode",
        description = "Decode (without verifying) the JWT in the Authorization header, if the proxy forwards \
                       it: header, claims and expiry in human terms."
    )]
    fn bearer_decode(&self, Extension(parts): Extension<Parts>) -> CallToolResult {
        let authorization = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        report(jwt::decode_authorization(authorization, Utc::now()))
    }

    #[tool(
        name = "authContext",
        description = "What the gateway said about the caller: X-User-Id, X-User-Name, X-User-Email, \
                       X-Client-Id, X-Scope."
    )]
    fn auth_context(&self, Extension(parts): Extension<Parts>) -> CallToolResult {
        report(headers::auth_context(&parts.headers))
    }

    #[tool(
        name = "requestTiming",
        description = "Server-side timing of this request: time since it arrived, process uptime, a \
                       monotonic timestamp, and the system load average."
    )]
    fn request_timing(&self, Extension(parts): Extension<Parts>) -> CallToolResult {
        let since_arrival = parts.extensions.get::<RequestArrived>().map(|a| a.0.elapsed());
        report(json!({
            "since_request_arrived_ms": since_arrival.map(|d| d.as_secs_f64() * 1e3),
            "process_uptime_seconds": self.config.started.elapsed().as_secs_f64(),
            "monotonic_seconds": system::monotonic_seconds(),
            "wall_clock_utc": Utc::now().to_rfc3339(),
            "load_average": system::load_average(),
        }))
    }

    #[tool(
        name = "corsAnalysis",
        description = "Show the Origin and Access-Control-Request-* headers of this request and what they mean."
    )]
    fn cors_analysis(&self, Extension(parts): Extension<Parts>) -> CallToolResult {
        report(headers::cors_analysis(&parts.method, &parts.headers))
    }

    #[tool(
        name = "environmentDump",
        description = "The process environment. Values of names that look secret (KEY, SECRET, TOKEN, \
                       PASSWORD, PASS, CREDENTIAL, AUTH, PRIVATE, COOKIE, SESSION) are masked unless \
                       showSecrets is true and the server runs with --allow-secret-env."
    )]
    fn environment_dump(&self, Parameters(args): Parameters<EnvironmentDumpArgs>) -> CallToolResult {
        let requested = args.show_secrets.unwrap_or(false);
        // SECURITY: two keys, one per party: the caller asks, the operator allowed it at start-up.
        let show = requested && self.config.allow_secret_env;
        let why = match (requested, self.config.allow_secret_env) {
            (true, true) => "secrets shown: showSecrets was requested and the server runs with --allow-secret-env",
            (true, false) => {
                "secrets masked: showSecrets was requested, but the server was not started with \
                 --allow-secret-env (MCP_ALLOW_SECRET_ENV)"
            }
            (false, _) => "secrets masked: pass showSecrets: true (the server must also run with --allow-secret-env)",
        };
        let mut variables = serde_json::Map::new();
        let mut masked = Vec::new();
        let mut all: Vec<(String, String)> = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        all.sort();
        for (name, value) in all {
            if headers::looks_secret(&name) && !show {
                masked.push(name.clone());
                variables.insert(name, Value::String("<masked>".into()));
            } else {
                variables.insert(name, Value::String(value));
            }
        }
        report(json!({
            "count": variables.len(),
            "variables": variables,
            "masked": masked,
            "secrets_shown": show,
            "why": why,
        }))
    }

    #[tool(
        name = "healthProbe",
        description = "Process and system figures: pid, uptime, RSS, threads, open file descriptors, load \
                       average, memory total and available, version."
    )]
    fn health_probe(&self) -> CallToolResult {
        report(system::health(self.config.started))
    }

    #[tool(name = "whoIStheGOAT", description = "An easter egg, as in the Python mcp-echo servers.")]
    fn who_is_the_goat(&self) -> String {
        "The GOAT is everyone who built MCP: the people who created the Model Context Protocol and the \
         open-source community that keeps building SDKs, servers and clients on it. Thank you!"
            .to_string()
    }

    #[tool(
        name = "replayLastEcho",
        description = "Return the last message sent to echo in this session (stateful mode only)."
    )]
    fn replay_last_echo(&self, Extension(parts): Extension<Parts>) -> CallToolResult {
        if session_id(&parts).is_none() {
            return CallToolResult::error(vec![ContentBlock::text(NO_SESSION)]);
        }
        let last = self.session.counters().last_echo.clone();
        let text = match &last {
            Some(m) => m.clone(),
            None => "no echo in this session yet".to_string(),
        };
        let mut result = report(json!({ "found": last.is_some(), "message": last }));
        result.content = vec![ContentBlock::text(text)];
        result
    }

    #[tool(
        name = "sessionInfo",
        description = "This session: id, creation time, idle time before this call, number of tool calls \
                       (this one included), protocol version (stateful mode only)."
    )]
    fn session_info(&self, Extension(parts): Extension<Parts>, context: RequestContext<RoleServer>) -> CallToolResult {
        let Some(id) = session_id(&parts) else {
            return CallToolResult::error(vec![ContentBlock::text(NO_SESSION)]);
        };
        let counters = self.session.counters();
        let idle_since = counters.previous_call.unwrap_or(self.session.created);
        let idle = counters.last_call.map_or(idle_since.elapsed(), |now| now.duration_since(idle_since));
        report(json!({
            "session_id": id,
            "created_at": self.session.created_at.to_rfc3339(),
            "age_seconds": self.session.created.elapsed().as_secs_f64(),
            "idle_seconds": idle.as_secs_f64(),
            "calls": counters.calls,
            "protocol_version": context.protocol_version().map(|v| v.to_string()),
        }))
    }
}

/// The server instructions, by mode.
fn instructions(stateful: bool) -> String {
    let mode = if stateful {
        "Stateful: sessions keep the last echo (replayLastEcho) and call counts (sessionInfo)."
    } else {
        "Stateless: every request stands alone."
    };
    format!(
        "mcp-echo is a diagnostic server for MCP deployments behind a proxy and mcp-authd. echo returns \
         a message; printHeader, bearerDecode, authContext and corsAnalysis show what the proxy passed \
         on; requestTiming, healthProbe and environmentDump show the server side. {mode}"
    )
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for EchoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-echo", env!("CARGO_PKG_VERSION")))
            .with_instructions(instructions(self.config.stateful))
    }

    /// The router's tools, minus the session tools when this request is in no session (stateless
    /// mode, or a sessionless 2026-07-28 request to a stateful server): they could only fail.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let in_session = context.extensions.get::<Parts>().and_then(session_id).is_some();
        let tools =
            self.tool_router.list_all().into_iter().filter(|t| in_session || !STATEFUL_TOOLS.contains(&&*t.name));
        Ok(ListToolsResult::with_all_items(tools.collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        {
            let mut c = self.session.counters();
            c.calls += 1;
            c.previous_call = c.last_call.replace(Instant::now());
        }
        self.tool_router.call(ToolCallContext::new(self, request, context)).await
    }
}
