//! `mcp-echo`: a diagnostic MCP server to put behind the proxy and mcp-authd. It echoes messages
//! and shows what reached it: headers (credentials redacted), the identity mcp-authd asserted,
//! the bearer token's claims if the proxy forwards it, CORS headers, timing, process health and
//! environment. It has no auth code of its own (see DESIGN.md "The /verify contract").
//!
//! Run it (stateless, the default; `--stateful` or `MCP_STATEFUL=true` for sessions):
//!
//! ```sh
//! cargo run -p mcp-echo -- --port 3000            # add --stateful for sessions
//! ```
//!
//! Try it with curl (stateless mode answers with one JSON message):
//!
//! ```sh
//! curl -s http://127.0.0.1:3000/mcp \
//!   -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
//!   -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1.0"}}}'
//! curl -s http://127.0.0.1:3000/mcp \
//!   -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
//!   -H 'X-User-Id: 42' \
//!   -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"authContext","arguments":{}}}'
//! ```
//!
//! Behind a proxy, name the public host: `--allowed-host mcp.example.com` (rmcp refuses other
//! `Host` headers, a DNS-rebinding guard). `/health` answers 200 for liveness probes.

#![forbid(unsafe_code)]

mod headers;
mod jwt;
mod server;
mod sessions;
mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use clap::Parser;
use clap::builder::BoolishValueParser;
use mcp_example_support::{Listen, init_tracing, serve};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use tokio_util::sync::CancellationToken;

use crate::server::{EchoConfig, EchoServer, RequestArrived};
use crate::sessions::{BoundedSessionManager, refuse_when_full};

/// Diagnostic MCP server: echoes messages and shows what the proxy in front of it passed on.
#[derive(Debug, Parser)]
#[command(name = "mcp-echo", version)]
struct Cli {
    #[command(flatten)]
    listen: Listen,
    /// Keep MCP sessions (Mcp-Session-Id): adds replayLastEcho and sessionInfo. Without it every
    /// request stands alone.
    #[arg(long, env = "MCP_STATEFUL", value_parser = BoolishValueParser::new())]
    stateful: bool,
    /// Close a session after this many seconds without a message (stateful mode).
    #[arg(long, env = "MCP_SESSION_IDLE_TIMEOUT_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    session_idle_timeout_secs: u64,
    /// Refuse new sessions while this many are open (stateful mode).
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions: u32,
    /// Let environmentDump show secret-looking values when a caller passes showSecrets: true.
    #[arg(long, env = "MCP_ALLOW_SECRET_ENV", value_parser = BoolishValueParser::new())]
    allow_secret_env: bool,
}

/// Records when a request reached the server, for `requestTiming`.
async fn stamp_arrival(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(RequestArrived(Instant::now()));
    next.run(request).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let cli = Cli::parse();
    init_tracing();

    let shutdown = CancellationToken::new();
    let mut http = cli.listen.http_config(cli.stateful, &shutdown);
    // Stateless answers are single JSON messages rather than one-event SSE streams: plain curl
    // reads them. Sessions keep SSE (server-to-client messages may follow).
    http.json_response = !cli.stateful;

    let sessions = Arc::new(BoundedSessionManager::new(
        cli.max_sessions as usize,
        Duration::from_secs(cli.session_idle_timeout_secs),
    ));
    let config = Arc::new(EchoConfig { stateful: cli.stateful, allow_secret_env: cli.allow_secret_env, started });
    if cli.allow_secret_env {
        tracing::warn!("--allow-secret-env: environmentDump shows secret values to any caller who asks");
    }
    let factory_config = config.clone();
    let service =
        StreamableHttpService::new(move || Ok(EchoServer::new(factory_config.clone())), sessions.clone(), http);

    let mut app = Router::new().nest_service("/mcp", service);
    if cli.stateful {
        app = app.layer(middleware::from_fn_with_state(sessions, refuse_when_full));
    }
    let app = app.layer(middleware::from_fn(stamp_arrival));

    tracing::info!(
        stateful = cli.stateful,
        max_sessions = cli.max_sessions,
        idle_timeout_secs = cli.session_idle_timeout_secs,
        allowed_hosts = ?cli.listen.allowed_hosts,
        "mcp-echo {}",
        env!("CARGO_PKG_VERSION")
    );
    serve(&cli.listen, app, shutdown).await
}
