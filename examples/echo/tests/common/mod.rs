//! Test harness: the real `mcp-echo` binary on a free loopback port, rmcp's own Streamable HTTP
//! client against it, and small helpers to read tool results.

#![allow(dead_code)] // each test file uses part of it

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The tools every mode lists.
pub const COMMON_TOOLS: [&str; 9] = [
    "authContext",
    "bearerDecode",
    "corsAnalysis",
    "echo",
    "environmentDump",
    "healthProbe",
    "printHeader",
    "requestTiming",
    "whoIStheGOAT",
];

/// The tools only `--stateful` lists.
pub const STATEFUL_TOOLS: [&str; 2] = ["replayLastEcho", "sessionInfo"];

/// A client connected to the server.
pub type Client = RunningService<RoleClient, ()>;

/// One running `mcp-echo` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts the binary with `args` and extra environment, and waits until `/health` answers.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Server> {
        Self::start_with(args, env, false).await
    }

    /// Like [`Server::start`]; with `closed_stderr` the server's stderr is a pipe whose reader is
    /// gone (a log shipper that died), so every log write fails.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)], closed_stderr: bool) -> anyhow::Result<Server> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("mcp-echo-test-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .env_remove("MCP_STATEFUL")
            .env_remove("MCP_ALLOW_SECRET_ENV")
            .env_remove("MCP_ALLOWED_HOSTS")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if closed_stderr { Stdio::piped() } else { Stdio::from(log_file) })
            .kill_on_drop(true);
        let mut child = command.spawn().context("spawning mcp-echo")?;
        drop(child.stderr.take());
        let mut server = Server { child, port, log };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                bail!("mcp-echo exited with {status} before serving:\n{}", self.log_text());
            }
            if let Ok(r) = http.get(self.url("/health")).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("mcp-echo did not answer /health within 30 s:\n{}", self.log_text())
    }

    /// What the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An rmcp client over Streamable HTTP sending `headers` on every request.
    pub async fn client(&self, headers: &[(&str, &str)]) -> anyhow::Result<Client> {
        self.client_with(headers, None).await
    }

    /// Like [`Server::client`], with `Authorization: Bearer <bearer>` too.
    pub async fn client_with(&self, headers: &[(&str, &str)], bearer: Option<&str>) -> anyhow::Result<Client> {
        let mut custom = HashMap::new();
        for (n, v) in headers {
            custom.insert(http::HeaderName::from_bytes(n.as_bytes())?, http::HeaderValue::from_str(v)?);
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url("/mcp")).custom_headers(custom);
        if let Some(token) = bearer {
            config = config.auth_header(token);
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        Ok(().serve(transport).await?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Keep the log of a failed test for reading; the child is killed by kill_on_drop.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Server {
    /// An rmcp client of the 2026-07-28 era: `server/discover`, no `initialize`, no session.
    pub async fn modern_client(&self) -> anyhow::Result<Client> {
        let transport = StreamableHttpClientTransport::from_uri(self.url("/mcp"));
        let lifecycle = ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
        Ok(().serve_with_lifecycle(transport, lifecycle).await?)
    }
}

/// Calls `name` with `args` (a JSON object) and returns the result.
pub async fn call(client: &Client, name: &'static str, args: Value) -> anyhow::Result<CallToolResult> {
    let Value::Object(arguments) = args else { bail!("arguments must be an object") };
    let result = client.call_tool(CallToolRequestParams::new(name).with_arguments(arguments)).await?;
    Ok(result)
}

/// The structured content of a successful call.
pub async fn call_json(client: &Client, name: &'static str, args: Value) -> anyhow::Result<Value> {
    let result = call(client, name, args).await?;
    if result.is_error == Some(true) {
        bail!("{name} failed: {:?}", result.content);
    }
    result.structured_content.with_context(|| format!("{name} returned no structured content"))
}

/// The first text block of a result.
pub fn text(result: &CallToolResult) -> String {
    result.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).unwrap_or_default()
}

/// The sorted tool names the server lists.
pub async fn tool_names(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = client.list_all_tools().await?.into_iter().map(|t| t.name.to_string()).collect();
    names.sort();
    Ok(names)
}

/// The sorted names we expect for a mode.
pub fn expected_tools(stateful: bool) -> Vec<String> {
    let mut names: Vec<String> = COMMON_TOOLS.iter().map(|s| s.to_string()).collect();
    if stateful {
        names.extend(STATEFUL_TOOLS.iter().map(|s| s.to_string()));
    }
    names.sort();
    names
}

/// An unsigned-looking JWT built by hand: base64url header and claims, a dummy signature.
pub fn make_jwt(claims: &Value) -> String {
    let header = json!({ "alg": "RS256", "typ": "at+jwt", "kid": "test-key" });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The MCP headers a plain HTTP client must send to /mcp.
pub fn mcp_post(http: &reqwest::Client, url: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
}

/// The `initialize` request a curl user would send.
pub fn initialize_body(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "curl", "version": "1.0" }
        }
    })
}

/// The JSON of the first `data:` line of an SSE body.
pub fn first_sse_json(body: &str) -> anyhow::Result<Value> {
    let data = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| !d.is_empty())
        .with_context(|| format!("no data line in {body:?}"))?;
    Ok(serde_json::from_str(data)?)
}
