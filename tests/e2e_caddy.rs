//! End to end through a real reverse proxy: Caddy's `forward_auth` asks mcp-authd `/verify`
//! for every request to the echo MCP server, and an MCP client (rmcp's own) logs in through
//! the RFC 9728 discovery the 401 points at, then calls `authContext`, which shows the identity
//! `/verify` set. Needs `caddy` (Debian package; `make test` installs it) and the `mcp-echo`
//! binary of this workspace (`cargo test --workspace` builds it before any test runs).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::oauth::*;
use common::server::{Options, Server, free_port};
use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary of this workspace, next to the test executable's `deps/` directory.
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join(name);
    assert!(path.is_file(), "{} is missing: build the workspace first (cargo test --workspace)", path.display());
    path
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}) before listening");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_echo(port: u16, public_host: &str) -> Proc {
    let mut child = Command::new(workspace_bin("mcp-echo"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--allowed-host", public_host])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting mcp-echo");
    wait_for_port(port, "mcp-echo", &mut child);
    Proc(child)
}

fn start_caddy(dir: &std::path::Path, port: u16, auth_port: u16, echo_port: u16) -> Proc {
    let caddyfile = format!(
        "{{\n  admin off\n  auto_https off\n}}\n\
         http://127.0.0.1:{port} {{\n  bind 127.0.0.1\n\
         \x20 handle /.well-known/oauth-protected-resource* {{\n    reverse_proxy 127.0.0.1:{auth_port}\n  }}\n\
         \x20 handle {{\n    forward_auth 127.0.0.1:{auth_port} {{\n      uri /verify\n\
         \x20     copy_headers X-User-Id X-User-Name X-User-Email X-Client-Id X-Scope\n    }}\n\
         \x20   reverse_proxy 127.0.0.1:{echo_port}\n  }}\n}}\n"
    );
    let file = dir.join("Caddyfile");
    std::fs::write(&file, caddyfile).unwrap();
    let caddy = which("caddy").expect("caddy is not installed (Debian package `caddy`; `make test` installs it)");
    let mut child = Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("caddy.log")).unwrap())
        .spawn()
        .expect("starting caddy");
    wait_for_port(port, "caddy", &mut child);
    Proc(child)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file())
}

/// A raw `tools/list` POST to the MCP URL, as a client without an SDK would send it.
async fn tools_list(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_client_logs_in_and_calls_echo_through_caddy() {
    let dir = tempfile::tempdir().unwrap();
    let (caddy_port, echo_port) = (free_port(), free_port());
    let public = format!("127.0.0.1:{caddy_port}");
    let resource = format!("http://{public}/mcp");
    let s =
        Server::start_with(Options { toml: format!("[[resources]]\nurl = \"{resource}\"\n"), ..Options::default() });
    let _echo = start_echo(echo_port, &public);
    let _caddy = start_caddy(dir.path(), caddy_port, s.port, echo_port);

    // Without a token: 401 and the RFC 9728 pointer, through the proxy.
    let res = tools_list(&resource, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let metadata_url = format!("http://{public}/.well-known/oauth-protected-resource/mcp");
    assert!(challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")), "{challenge}");

    // The metadata, served by mcp-authd through the proxy, names the resource and the issuer.
    let meta: Value = http().get(&metadata_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["resource"], resource.as_str());
    assert_eq!(meta["authorization_servers"][0], s.base.as_str());

    // Log in (register, authorize, local login, code exchange) for that resource.
    let client = register_public(&s).await;
    let tokens = tokens_for(&s, &client, &resource).await;
    let token = tokens["access_token"].as_str().unwrap();

    // A real MCP client through the proxy.
    let config = StreamableHttpClientTransportConfig::with_uri(resource.as_str()).auth_header(token);
    let mcp = ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("MCP initialize through Caddy");
    let tools = mcp.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "authContext"), "{tools:?}");
    let result = mcp.call_tool(CallToolRequestParams::new("authContext")).await.unwrap();
    let text = serde_json::to_string(&result.content).unwrap();
    for expected in ["local:alice", "alice@example.com", client.id.as_str(), "mcp"] {
        assert!(text.contains(expected), "authContext lacks {expected:?}: {text}");
    }
    mcp.cancel().await.unwrap();

    // The same token, revoked, no longer passes the proxy.
    let (st, _) = post_form(&s, "/revoke", &[("token", token), ("client_id", &client.id)], None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tools_list(&resource, Some(token)).await.status(), StatusCode::UNAUTHORIZED);
}
