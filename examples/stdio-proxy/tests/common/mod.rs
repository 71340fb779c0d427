//! Test helpers: the real `mcp-stdio-proxy` binary on a free loopback port, its log, rmcp clients.
#![allow(dead_code)]
// Roots and logging are deprecated from 2026-07-28 on (SEP-2577) but are what stdio servers of
// the session era use, so the tests exercise them on purpose.
#![allow(deprecated)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientInfo, Implementation, ListRootsResult,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion, Root,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The fixture server binary built with this package.
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_mcp-stdio-fixture");
const PROXY: &str = env!("CARGO_BIN_EXE_mcp-stdio-proxy");

/// A running proxy; killed on drop.
pub struct Proxy {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: Arc<Mutex<String>>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Proxy {
    /// Starts the proxy with `flags`, wrapping `command`, and waits for `/health`.
    pub async fn start(flags: &[&str], command: &[&str]) -> Result<Proxy> {
        Proxy::start_with_env(flags, command, &[]).await
    }

    /// Like [`Proxy::start`], with extra environment for the proxy (and so its children).
    pub async fn start_with_env(flags: &[&str], command: &[&str], env: &[(&str, &str)]) -> Result<Proxy> {
        let port = free_port()?.to_string();
        let mut child = tokio::process::Command::new(PROXY)
            .envs(env.iter().copied())
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(flags)
            .arg("--")
            .args(command)
            .env("RUST_LOG", "info,mcp_stdio_proxy=debug")
            .env_remove("LOG_FORMAT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting mcp-stdio-proxy")?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("stderr")?;
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status().is_success()
            {
                return Ok(Proxy { child, base, log });
            }
            if let Some(status) = child.try_wait()? {
                bail!("the proxy exited ({status}) before serving:\n{}", log.lock().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the proxy did not answer /health in 30 s:\n{}", log.lock().unwrap())
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains all of `needles` on one line.
    pub async fn wait_for_log(&self, needles: &[&str]) -> Result<String> {
        for _ in 0..300 {
            if let Some(line) = self.log().lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return Ok(line.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no log line with {needles:?} in:\n{}", self.log())
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("proxy running")
    }

    /// Sends SIGTERM and waits for the proxy to exit.
    pub async fn terminate(mut self) -> Result<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        Ok(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??)
    }
}

/// Whether a process with this id exists (zombies count: the proxy must reap its children).
pub fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// Waits up to 30 s for `pid` to be gone.
pub async fn wait_gone(pid: u32) -> Result<()> {
    for _ in 0..300 {
        if !pid_alive(pid) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("process {pid} is still there after 30 s")
}

/// What the test client saw from the server.
#[derive(Clone, Default)]
pub struct Seen {
    /// `notifications/message` data, in order.
    pub logs: Arc<Mutex<Vec<Value>>>,
    /// `notifications/progress` messages, in order.
    pub progress: Arc<Mutex<Vec<String>>>,
    /// How many `roots/list` requests it answered.
    pub roots_asked: Arc<Mutex<usize>>,
}

/// An rmcp client that declares roots, answers `roots/list` and records notifications.
#[derive(Clone, Default)]
pub struct TestClient {
    /// What it saw.
    pub seen: Seen,
}

/// The roots the test client reports.
pub const ROOT_URI: &str = "file:///tmp/stdio-proxy-test-root";

impl ClientHandler for TestClient {
    async fn list_roots(&self, _: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        *self.seen.roots_asked.lock().unwrap() += 1;
        let mut root = Root::new(ROOT_URI);
        root.name = Some("test-root".into());
        Ok(ListRootsResult::new(vec![root]))
    }

    async fn on_logging_message(&self, params: LoggingMessageNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen.logs.lock().unwrap().push(params.data);
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen.progress.lock().unwrap().push(params.message.unwrap_or_default());
    }

    fn get_info(&self) -> ClientInfo {
        let mut capabilities = ClientCapabilities::default();
        capabilities.roots = Some(Default::default());
        let mut info = ClientInfo::new(capabilities, Implementation::new("stdio-proxy-test", "1.0.0"));
        info.protocol_version = ProtocolVersion::LATEST_WITH_INITIALIZE;
        info
    }
}

/// A running session-based rmcp client.
pub type Client = RunningService<RoleClient, TestClient>;

/// The transport config: no transparent re-initialization, so a lost session shows as an error.
pub fn transport(url: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).reinit_on_expired_session(false),
    )
}

/// Connects a session-based rmcp client (initialize → Mcp-Session-Id).
pub async fn connect(proxy: &Proxy) -> Result<Client> {
    Ok(TestClient::default().serve(transport(&proxy.url())).await?)
}

/// `tools/call` with JSON arguments.
pub fn call(name: &'static str, args: Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name);
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    params
}

/// The first text block of a tool result.
pub fn text_of(result: &CallToolResult) -> Result<String> {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .context("no text content in the tool result")
}

/// The fixture's process id, from its `pid` tool.
pub async fn fixture_pid(client: &Client) -> Result<u32> {
    let result = client.call_tool(call("pid", serde_json::json!({}))).await?;
    let v: Value = serde_json::from_str(&text_of(&result)?)?;
    Ok(v["pid"].as_u64().context("pid")? as u32)
}

/// A raw JSON-RPC POST to the proxy; returns status, headers and the JSON body (for SSE: the
/// last `data:` event).
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Value)> {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_string()).send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let is_sse =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    let text = resp.text().await?;
    let json = if is_sse {
        let last = text.lines().rev().find_map(|l| l.strip_prefix("data:")).context("empty SSE stream")?;
        serde_json::from_str(last.trim())?
    } else if text.trim().is_empty() {
        Value::Null
    } else {
        // Plain-text HTTP errors (404, 400, 403, ...) come back as a JSON string.
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, headers, json))
}
