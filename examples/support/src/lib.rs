//! Shared plumbing of the example MCP servers (`mcp-echo`, `mcp-fetch`, `mcp-stdio-proxy`):
//! the `--host/--port/--allowed-host` flags, logging, `/health`, the Streamable HTTP endpoint at
//! `/mcp`, and graceful shutdown on Ctrl-C or SIGTERM. None of it is about auth: the servers sit
//! behind a proxy that asks mcp-authd, and trust the identity headers it adds.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use tokio_util::sync::CancellationToken;

/// Where and for whom to listen.
#[derive(Clone, Debug, clap::Args)]
pub struct Listen {
    /// Address to bind.
    #[arg(long, env = "MCP_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind.
    #[arg(long, env = "MCP_PORT", default_value_t = 3000)]
    pub port: u16,
    /// `Host` header values accepted at /mcp (a DNS-rebinding guard). Behind a proxy, list the
    /// public host names; `*` accepts any (only when a proxy in front checks the host).
    #[arg(
        long = "allowed-host",
        env = "MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()]
    )]
    pub allowed_hosts: Vec<String>,
}

impl Listen {
    /// The socket address to bind.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        Ok(SocketAddr::new(host.parse()?, self.port))
    }

    /// The Streamable HTTP configuration: allowed hosts, session mode, shutdown token.
    pub fn http_config(&self, stateful: bool, shutdown: &CancellationToken) -> StreamableHttpServerConfig {
        let mut config = StreamableHttpServerConfig::default();
        if self.allowed_hosts.iter().any(|h| h == "*") {
            config = config.disable_allowed_hosts();
        } else {
            config = config.with_allowed_hosts(self.allowed_hosts.clone());
        }
        config.legacy_session_mode = stateful;
        config.cancellation_token = shutdown.child_token();
        config
    }
}

/// `RUST_LOG`-filtered logs to stderr (`LOG_FORMAT=json` for JSON), so stdout stays free.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // A closed stderr (a pipe whose reader went away) must not panic the task that logs:
    // tracing-subscriber reports its own write errors with eprintln!, which panics then.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    if std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Serves `app` (which routes `/mcp`) plus `/health` until Ctrl-C or SIGTERM; in-flight
/// requests finish, open MCP sessions are told to end through `shutdown`.
pub async fn serve(listen: &Listen, app: Router, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = app.route("/health", get(health));
    let addr = listen.addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening; MCP endpoint at /mcp, health at /health");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Cancel before logging, so shutdown happens even if logging fails.
        stop.cancel();
        tracing::info!("shutting down");
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
