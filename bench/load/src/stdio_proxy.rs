//! `mcp-bench stdio-proxy`: the `tools/call` round trip to a stdio MCP server, direct on stdio vs
//! through mcp-stdio-proxy on Streamable HTTP.
//!
//! For each session count N and each mode:
//! - direct: N rmcp clients, each spawning its own server child and talking on its stdio;
//! - proxy: the proxy is started on a free loopback port wrapping the same server command, and
//!   N rmcp Streamable HTTP clients each open a session (so the proxy runs N children);
//!
//! then every session makes `--warmup` calls (not counted) and, all sessions at once, `--calls`
//! calls back to back, each timed from request to checked answer. The N × calls round trips go
//! into one histogram; calls/s is their number over the wall time of the measured phase.
//! Sessions use the handshake era (`initialize`, protocol 2025-11-25): the stdio servers speak it,
//! and it is what gives each HTTP session its own child in the proxy.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::procstat::{self, CpuPerCall, Roles};
use crate::report::{self, Mode, Report, Row};

/// Options of `mcp-bench stdio-proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `mcp-stdio-fixture` binary (its `echo` tool is called).
    #[arg(long, value_name = "PATH")]
    fixture: PathBuf,
    /// The `mcp-stdio-proxy` binary.
    #[arg(long, value_name = "PATH")]
    proxy: PathBuf,
    /// Session counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    sessions: Vec<usize>,
    /// Measured calls per session.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Calls per session before measuring (connections, allocators and caches warm up).
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// Where to write the results as JSON.
    #[arg(long, value_name = "PATH", default_value = "bench/results-stdio-proxy.json")]
    json: PathBuf,
    /// Also measure this PyPI `mcp-server-time` executable (its `get_current_time` tool), a real
    /// stdio server on the Python MCP SDK.
    #[arg(long, value_name = "PATH")]
    time_server: Option<PathBuf>,
    /// Measured calls per session for `--time-server` (default: `--calls`).
    #[arg(long)]
    time_calls: Option<u64>,
    /// Warm-up calls per session for `--time-server` (default: `--warmup`).
    #[arg(long)]
    time_warmup: Option<u64>,
    /// Modes for `--time-server`, comma-separated (default: `--modes`).
    #[arg(long, value_delimiter = ',')]
    time_modes: Option<Vec<Mode>>,
    /// Modes to measure, comma-separated: `direct` (stdio), `proxy` (rmcp's default HTTP client,
    /// which opens a new connection per POST), `proxy-keepalive` (an HTTP client that keeps
    /// connections alive between calls).
    #[arg(long, value_delimiter = ',', default_value = "direct,proxy")]
    modes: Vec<Mode>,
    /// Seconds one tool call may take before the run fails.
    #[arg(long, default_value_t = 30)]
    call_timeout_secs: u64,
    /// Seconds starting all sessions of one measurement may take before the run fails.
    #[arg(long, default_value_t = 120)]
    startup_timeout_secs: u64,
}

/// A stdio MCP server to measure and the call to make on it.
struct Server {
    /// Name in the report.
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    call: CallToolRequestParams,
    /// The text the answer must carry (echo), if known in advance.
    expect_text: Option<String>,
    calls: u64,
    warmup: u64,
    modes: Vec<Mode>,
}

fn tool_call(name: &'static str, arguments: Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name);
    if let Value::Object(map) = arguments {
        params = params.with_arguments(map);
    }
    params
}

impl Server {
    fn fixture(args: &Args) -> Server {
        let text = "hello from mcp-bench";
        Server {
            name: "fixture echo".into(),
            program: args.fixture.clone(),
            args: Vec::new(),
            call: tool_call("echo", json!({ "text": text })),
            expect_text: Some(text.into()),
            calls: args.calls,
            warmup: args.warmup,
            modes: args.modes.clone(),
        }
    }

    fn time(args: &Args, path: &Path) -> Server {
        Server {
            name: "mcp-server-time get_current_time".into(),
            program: path.to_path_buf(),
            // Fixed zone: the answer must not depend on the machine's TZ setting.
            args: vec!["--local-timezone".into(), "UTC".into()],
            call: tool_call("get_current_time", json!({ "timezone": "UTC" })),
            expect_text: None,
            calls: args.time_calls.unwrap_or(args.calls),
            warmup: args.time_warmup.unwrap_or(args.warmup),
            modes: args.time_modes.clone().unwrap_or_else(|| args.modes.clone()),
        }
    }
}

/// What the bench client announces: the newest revision with the `initialize` handshake.
fn client_info() -> ClientConfig {
    let mut info =
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("mcp-bench", env!("CARGO_PKG_VERSION")));
    info.protocol_version = ProtocolVersion::LATEST_WITH_INITIALIZE;
    info
}

type Client = RunningService<RoleClient, ClientConfig>;

/// Runs the whole scenario, prints the tables, writes the JSON.
pub async fn run(args: Args) -> Result<()> {
    ensure!(!args.sessions.is_empty() && args.sessions.iter().all(|n| *n > 0), "--sessions must list counts ≥ 1");
    ensure!(args.calls > 0, "--calls must be at least 1");
    ensure!(!args.modes.is_empty(), "--modes must name at least one mode");
    ensure!(args.time_modes.as_ref().is_none_or(|m| !m.is_empty()), "--time-modes must name at least one mode");
    for (flag, path) in [("--fixture", &args.fixture), ("--proxy", &args.proxy)] {
        ensure!(path.is_file(), "{flag} {}: no such file (build it: cargo build -p mcp-stdio-proxy)", path.display());
    }
    let mut servers = vec![Server::fixture(&args)];
    if let Some(path) = &args.time_server {
        ensure!(
            path.is_file(),
            "--time-server {}: no such file (install it: examples/stdio-proxy/tests/install-peers.sh)",
            path.display()
        );
        servers.push(Server::time(&args, path));
    }
    let mut rows = Vec::new();
    for server in &servers {
        for &sessions in &args.sessions {
            for &mode in &server.modes {
                let row = measure(&args, server, mode, sessions)
                    .await
                    .with_context(|| format!("{} {} with {sessions} session(s)", server.name, mode.name()))?;
                eprintln!(
                    "{} {} sessions={} calls={} calls/s={:.0} p50={}µs p99={}µs",
                    row.server,
                    row.mode.name(),
                    row.sessions,
                    row.calls,
                    row.calls_per_sec,
                    row.p50_us,
                    row.p99_us
                );
                rows.push(row);
            }
        }
    }
    let report = Report {
        bench: "stdio-proxy",
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        finished_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        rows,
    };
    print!("{}", report.markdown());
    report.write_json(&args.json)?;
    eprintln!("wrote {}", args.json.display());
    Ok(())
}

/// One (server, mode, session count): start, warm up, measure, stop.
async fn measure(args: &Args, server: &Server, mode: Mode, sessions: usize) -> Result<Row> {
    let startup = Duration::from_secs(args.startup_timeout_secs);
    let me = std::process::id();
    match mode {
        Mode::Direct => {
            let opening = Instant::now();
            let connecting = join_all((0..sessions).map(|_| connect_stdio(server)));
            let clients = tokio::time::timeout(startup, connecting)
                .await
                .with_context(|| format!("starting {sessions} stdio sessions took over {startup:?}"))?
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
            let opened = opening.elapsed();
            let roles =
                Roles { client: vec![me], proxy: vec![], servers: clients.iter().map(|(_, pid)| *pid).collect() };
            let clients: Vec<Client> = clients.into_iter().map(|(c, _)| c).collect();
            let result = load(args, server, mode, &clients, &roles).await;
            let closing = Instant::now();
            close(clients).await;
            eprintln!("  ({sessions} session(s) opened in {opened:.2?}, closed in {:.2?})", closing.elapsed());
            result.map(|row| row.opened_in(opened))
        }
        Mode::Proxy | Mode::ProxyKeepalive => {
            let proxy = ProxyProcess::start(&args.proxy, server, sessions, startup).await?;
            let keepalive = mode == Mode::ProxyKeepalive;
            let opening = Instant::now();
            let connecting = join_all((0..sessions).map(|_| connect_http(&proxy.url, keepalive)));
            let clients = match tokio::time::timeout(startup, connecting).await {
                Ok(clients) => clients.into_iter().collect::<Result<Vec<_>>>(),
                Err(_) => Err(anyhow::anyhow!("opening {sessions} sessions through the proxy took over {startup:?}")),
            };
            let clients = match clients {
                Ok(clients) => clients,
                Err(e) => {
                    let log = proxy.log_tail();
                    proxy.stop().await;
                    return Err(e.context(format!("proxy log (last lines):\n{log}")));
                }
            };
            let opened = opening.elapsed();
            let children = procstat::children_of(proxy.pid);
            let roles = Roles { client: vec![me], proxy: vec![proxy.pid], servers: children };
            let result = load(args, server, mode, &clients, &roles).await;
            let result = result.map_err(|e| e.context(format!("proxy log (last lines):\n{}", proxy.log_tail())));
            let closing = Instant::now();
            close(clients).await;
            proxy.stop().await;
            eprintln!(
                "  ({sessions} session(s) opened in {opened:.2?}, closed with the proxy in {:.2?})",
                closing.elapsed()
            );
            result.map(|row| row.opened_in(opened))
        }
    }
}

/// Warm-up, then the measured calls of all sessions at once.
async fn load(args: &Args, server: &Server, mode: Mode, clients: &[Client], roles: &Roles) -> Result<Row> {
    let timeout = Duration::from_secs(args.call_timeout_secs);
    let call = Arc::new(server.call.clone());
    let expect = Arc::new(server.expect_text.clone());
    let peers: Vec<Peer<RoleClient>> = clients.iter().map(|c| c.peer().clone()).collect();
    let warmup = server.warmup;
    let warming = peers.iter().map(|peer| {
        let (call, expect) = (call.clone(), expect.clone());
        async move {
            for _ in 0..warmup {
                call_once(peer, &call, expect.as_deref(), timeout).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    join_all(warming).await.into_iter().collect::<Result<Vec<_>>>().context("warm-up")?;

    let calls = server.calls;
    let before = roles.sample();
    let start = Instant::now();
    let tasks: Vec<_> = peers
        .into_iter()
        .map(|peer| {
            let (call, expect) = (call.clone(), expect.clone());
            tokio::spawn(async move {
                let mut hist = report::histogram();
                for _ in 0..calls {
                    let t = Instant::now();
                    call_once(&peer, &call, expect.as_deref(), timeout).await?;
                    hist.record(t.elapsed().as_micros().max(1) as u64)?;
                }
                Ok::<Histogram<u64>, anyhow::Error>(hist)
            })
        })
        .collect();
    let mut all = report::histogram();
    for task in join_all(tasks).await {
        all.add(task??)?;
    }
    let wall = start.elapsed();
    let after = roles.sample();
    let cpu = CpuPerCall::between(before, after, all.len(), !roles.proxy.is_empty());
    Ok(Row::new(&server.name, mode, clients.len(), warmup, &all, wall, cpu))
}

/// One `tools/call`, checked: no protocol error, no tool error, and the expected text if known.
async fn call_once(
    peer: &Peer<RoleClient>,
    call: &CallToolRequestParams,
    expect_text: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let result = tokio::time::timeout(timeout, peer.call_tool(call.clone()))
        .await
        .with_context(|| format!("tools/call {} took over {timeout:?}", call.name))?
        .with_context(|| format!("tools/call {}", call.name))?;
    ensure!(result.is_error != Some(true), "tools/call {} returned a tool error: {:?}", call.name, result.content);
    let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.as_str());
    match expect_text {
        Some(expected) if text != Some(expected) => bail!("echo answered {text:?}, expected {expected:?}"),
        None if text.is_none() => bail!("tools/call {} answered without text content", call.name),
        _ => Ok(()),
    }
}

/// Spawns the server as a child and initializes a session on its stdio; returns the client and
/// the child's pid.
async fn connect_stdio(server: &Server) -> Result<(Client, u32)> {
    let mut command = tokio::process::Command::new(&server.program);
    command.args(&server.args);
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", server.program.display()))?;
    let pid = transport.id().context("the stdio server exited at once")?;
    let client = client_info().serve(transport).await.context("initialize on stdio")?;
    Ok((client, pid))
}

/// Opens a session through the proxy. `keepalive`: a reqwest client that reuses connections
/// instead of rmcp's default, which opens a new one per POST.
async fn connect_http(url: &str, keepalive: bool) -> Result<Client> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).reinit_on_expired_session(false);
    let transport = if keepalive {
        StreamableHttpClientTransport::with_client(reqwest::Client::builder().build()?, config)
    } else {
        StreamableHttpClientTransport::from_config(config)
    };
    client_info().serve(transport).await.context("initialize through the proxy")
}

/// Ends the sessions (stdio: stdin closed and the child stopped; HTTP: DELETE).
async fn close(clients: Vec<Client>) {
    let closing = join_all(clients.into_iter().map(|c| c.cancel()));
    // A session that will not close in time is dropped; its child is killed on drop.
    let _ = tokio::time::timeout(Duration::from_secs(15), closing).await;
}

/// A running `mcp-stdio-proxy` on a free loopback port; killed if dropped without `stop`.
struct ProxyProcess {
    child: tokio::process::Child,
    pid: u32,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

/// Lines of the proxy's log kept for error messages.
const LOG_TAIL: usize = 40;

impl ProxyProcess {
    /// Starts the proxy wrapping `server` (room for `sessions` sessions) and waits for `/health`.
    async fn start(program: &Path, server: &Server, sessions: usize, timeout: Duration) -> Result<ProxyProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
        let mut child = tokio::process::Command::new(program)
            .args(["--host", "127.0.0.1", "--port", &port, "--max-sessions", &sessions.to_string()])
            .arg("--")
            .arg(&server.program)
            .args(&server.args)
            // The production default, whatever the caller's environment says.
            .env("RUST_LOG", "info")
            .env_remove("LOG_FORMAT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("the proxy exited at once")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().context("proxy stderr not piped")?;
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() == LOG_TAIL {
                    log.remove(0);
                }
                log.push(line);
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let mut proxy = ProxyProcess { child, pid, url: format!("{base}/mcp"), log };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status().is_success()
            {
                return Ok(proxy);
            }
            if let Some(status) = proxy.child.try_wait()? {
                bail!("the proxy exited ({status}) before serving:\n{}", proxy.log_tail());
            }
            if Instant::now() > deadline {
                bail!("the proxy did not answer /health within {timeout:?}:\n{}", proxy.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// SIGTERM (the proxy stops its children and drains), SIGKILL after 15 s.
    async fn stop(mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_list_parses() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = Cli::try_parse_from(["x", "--fixture", "f", "--proxy", "p", "--sessions", "1,8,32"]).unwrap();
        assert_eq!(cli.args.sessions, vec![1, 8, 32]);
        assert_eq!(cli.args.calls, 1000);
        assert_eq!(cli.args.modes, vec![Mode::Direct, Mode::Proxy]);
        let cli = Cli::try_parse_from(["x", "--fixture", "f", "--proxy", "p", "--modes", "proxy-keepalive"]).unwrap();
        assert_eq!(cli.args.modes, vec![Mode::ProxyKeepalive]);
        let time = Server::time(&cli.args, Path::new("t"));
        assert_eq!(time.modes, vec![Mode::ProxyKeepalive], "--time-modes defaults to --modes");
        let cli = Cli::try_parse_from(["x", "--fixture", "f", "--proxy", "p", "--time-modes", "direct"]).unwrap();
        assert_eq!(Server::time(&cli.args, Path::new("t")).modes, vec![Mode::Direct]);
        assert_eq!(cli.args.json, PathBuf::from("bench/results-stdio-proxy.json"));
        let call = Server::fixture(&cli.args).call;
        assert_eq!(call.name, "echo");
        let args = call.arguments.unwrap();
        assert_eq!(args["text"], "hello from mcp-bench");
    }
}
