//! `mcp-fetch`: the MCP fetch server (Streamable HTTP at `/mcp`, stateless).
//!
//! Run it:
//!
//! ```text
//! cargo run -p mcp-fetch -- --port 3001
//! cargo run -p mcp-fetch -- --port 3001 --allow-domain docs.rs,example.com --ignore-robots
//! ```
//!
//! Try it:
//!
//! ```text
//! curl -s http://127.0.0.1:3001/mcp \
//!   -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
//!   -H 'MCP-Protocol-Version: 2025-06-18' \
//!   -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://169.254.169.254/latest/meta-data/"}}}'
//! ```
//!
//! (answers with a refusal: that is the cloud metadata service). Behind mcp-authd the proxy in
//! front adds the identity headers; this server needs none of them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use clap::Parser;
use clap::builder::BoolishValueParser;
use mcp_example_support::{Listen, init_tracing, serve};
use mcp_fetch::fetch::DEFAULT_USER_AGENT;
use mcp_fetch::{DomainList, FetchConfig, FetchServer, Fetcher, Policy};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

/// MCP server with one tool, fetch: web pages as Markdown, safe against SSRF by construction.
#[derive(Debug, Parser)]
#[command(name = "mcp-fetch", version, about)]
struct Cli {
    #[command(flatten)]
    listen: Listen,
    /// Fetch only these domains and their subdomains (suffix match on a dot boundary).
    #[arg(long = "allow-domain", env = "MCP_FETCH_ALLOW_DOMAINS", value_delimiter = ',')]
    allow_domains: Vec<String>,
    /// Never fetch these domains or their subdomains (wins over --allow-domain).
    #[arg(long = "deny-domain", env = "MCP_FETCH_DENY_DOMAINS", value_delimiter = ',')]
    deny_domains: Vec<String>,
    /// Do not consult robots.txt.
    #[arg(long, env = "MCP_FETCH_IGNORE_ROBOTS", value_parser = BoolishValueParser::new())]
    ignore_robots: bool,
    /// User-Agent header; its first word is the token matched in robots.txt.
    #[arg(long, env = "MCP_FETCH_USER_AGENT", default_value = DEFAULT_USER_AGENT)]
    user_agent: String,
    /// Bound on one fetch, robots.txt and redirects included, in seconds.
    #[arg(long, env = "MCP_FETCH_TIMEOUT_SECS", default_value_t = 30.0)]
    timeout_secs: f64,
    /// Most bytes of a response body read (after decompression); the rest is cut.
    #[arg(long, env = "MCP_FETCH_MAX_RESPONSE_BYTES", default_value_t = 5 * 1024 * 1024)]
    max_response_bytes: usize,
    /// Most redirects followed.
    #[arg(long, env = "MCP_FETCH_MAX_REDIRECTS", default_value_t = 5)]
    max_redirects: usize,
    /// TEST ONLY: allow fetching 127.0.0.0/8 (IPv4 loopback) and nothing else that is otherwise
    /// refused. For the test suite's local servers; never on a deployed server.
    #[arg(long = "allow-loopback-for-tests", env = "MCP_FETCH_TEST_ALLOW_LOOPBACK", value_parser = BoolishValueParser::new())]
    allow_loopback_for_tests: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    anyhow::ensure!(cli.timeout_secs > 0.0 && cli.timeout_secs.is_finite(), "--timeout-secs must be positive");
    anyhow::ensure!(cli.max_response_bytes > 0, "--max-response-bytes must be positive");
    if cli.allow_loopback_for_tests {
        tracing::warn!(
            "!!! TEST ONLY: --allow-loopback-for-tests / MCP_FETCH_TEST_ALLOW_LOOPBACK is set: 127.0.0.0/8 can be fetched. Never deploy this. !!!"
        );
    }
    let policy = Policy {
        allow: DomainList::new(&cli.allow_domains).map_err(anyhow::Error::msg).context("--allow-domain")?,
        deny: DomainList::new(&cli.deny_domains).map_err(anyhow::Error::msg).context("--deny-domain")?,
        allow_loopback_for_tests: cli.allow_loopback_for_tests,
    };
    let config = FetchConfig {
        user_agent: cli.user_agent.clone(),
        timeout: Duration::from_secs_f64(cli.timeout_secs),
        max_response_bytes: cli.max_response_bytes,
        max_redirects: cli.max_redirects,
        robots: !cli.ignore_robots,
        policy,
        ..FetchConfig::default()
    };
    tracing::info!(
        allow = ?cli.allow_domains, deny = ?cli.deny_domains, robots = !cli.ignore_robots,
        timeout_secs = cli.timeout_secs, max_response_bytes = cli.max_response_bytes,
        max_redirects = cli.max_redirects, user_agent = %cli.user_agent, "fetch settings"
    );
    let fetcher = Arc::new(Fetcher::new(config)?);

    let shutdown = CancellationToken::new();
    let mut http = cli.listen.http_config(false, &shutdown);
    http.json_response = true;
    let service = StreamableHttpService::new(
        move || Ok(FetchServer::new(fetcher.clone())),
        Arc::new(LocalSessionManager::default()),
        http,
    );
    serve(&cli.listen, Router::new().nest_service("/mcp", service), shutdown).await
}
