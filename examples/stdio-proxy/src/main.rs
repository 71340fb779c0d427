//! mcp-stdio-proxy: any stdio MCP server on Streamable HTTP at `/mcp`, one child process per MCP
//! session, stateless 2026-07-28 requests served by a small pool. No auth code: run it behind a
//! proxy that asks mcp-authd (`/verify`) and passes the identity headers.
//!
//! Run:
//!   cargo run -p mcp-stdio-proxy -- --port 3002 -- npx -y @modelcontextprotocol/server-memory
//!
//! Try (session-based; the answer carries `Mcp-Session-Id`):
//!   curl -si http://127.0.0.1:3002/mcp -H 'Content-Type: application/json' \
//!     -H 'Accept: application/json, text/event-stream' \
//!     -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
//!
//! Try (stateless, 2026-07-28: no initialize, no session):
//!   curl -s http://127.0.0.1:3002/mcp -H 'Content-Type: application/json' \
//!     -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' \
//!     -H 'Mcp-Method: tools/list' \
//!     -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"}}}}'

use std::ffi::OsString;
use std::time::Duration;

use clap::Parser;
use mcp_example_support::{Listen, init_tracing, serve};
use mcp_stdio_proxy::child::ChildSpec;
use mcp_stdio_proxy::session::SessionConfig;
use mcp_stdio_proxy::{Proxy, ProxyConfig, http};
use tokio_util::sync::CancellationToken;

/// Puts a stdio MCP server on Streamable HTTP at /mcp (one child process per MCP session).
#[derive(Debug, Parser)]
#[command(name = "mcp-stdio-proxy", version, override_usage = "mcp-stdio-proxy [OPTIONS] -- <COMMAND> [ARGS]...")]
struct Cli {
    #[command(flatten)]
    listen: Listen,
    /// Most MCP sessions (child processes) at once; `initialize` beyond it gets an error.
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 100)]
    max_sessions: usize,
    /// Stop a session's child after this many seconds without requests (nothing in flight).
    #[arg(long, env = "MCP_IDLE_TIMEOUT_SECS", default_value_t = 3600)]
    idle_timeout_secs: u64,
    /// Most children serving stateless (2026-07-28) requests, one request each at a time.
    #[arg(long, env = "MCP_STATELESS_CHILDREN", default_value_t = 4)]
    stateless_children: usize,
    /// Seconds a child may take to answer `initialize` (npx may download the package first).
    #[arg(long, env = "MCP_INIT_TIMEOUT_SECS", default_value_t = 120)]
    init_timeout_secs: u64,
    /// The stdio MCP server to run, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    anyhow::ensure!(cli.max_sessions > 0, "--max-sessions must be at least 1");
    anyhow::ensure!(cli.idle_timeout_secs > 0, "--idle-timeout-secs must be at least 1");
    let mut command = cli.command.into_iter();
    let program = command.next().ok_or_else(|| anyhow::anyhow!("give the stdio server command after --"))?;
    let config = ProxyConfig {
        spec: ChildSpec { program, args: command.collect() },
        sessions: SessionConfig {
            max_sessions: cli.max_sessions,
            idle_timeout: Duration::from_secs(cli.idle_timeout_secs),
            init_timeout: Duration::from_secs(cli.init_timeout_secs),
        },
        stateless_children: cli.stateless_children,
        allowed_hosts: cli.listen.allowed_hosts.clone(),
    };
    tracing::info!(command = ?config.spec, "wrapping stdio server");
    let shutdown = CancellationToken::new();
    let proxy = Proxy::start(config, shutdown.clone());
    // On Ctrl-C/SIGTERM: stop the children right away, so in-flight requests end (with an
    // error) and their streams close; the HTTP server then drains.
    let stopper = {
        let proxy = proxy.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            proxy.stop_children().await;
        })
    };
    let result = serve(&cli.listen, http::router(proxy.clone()), shutdown.clone()).await;
    shutdown.cancel();
    stopper.await?;
    tracing::info!(children = proxy.children(), "stopped");
    result
}
