//! The official MCP Python SDK (PyPI `mcp` 2.3, pinned by tests/peers/install.sh) logging in by
//! itself through a real proxy: its `OAuthClientProvider` follows the 401 challenge of the echo
//! server behind Traefik (deploy/traefik), reads the RFC 9728 and RFC 8414 metadata, registers
//! (RFC 7591) — or uses a Client ID Metadata Document URL as its client id — sends the user to
//! /authorize with PKCE, `resource` and `state`, checks `iss` (RFC 9207), redeems the code, and
//! calls tools with the token. tests/peers/sdk_login.py plays the SDK's user at the login form
//! and the consent page.

mod common;

use std::path::PathBuf;

use common::https::{Answer, DocServer};
use common::proxies::{self, Kind, Upstreams, start_echo};
use common::server::{ALICE_PASSWORD, Options, Server, free_port};
use serde_json::{Value, json};

/// The peers' Python (with the SDK), or a panic that says how to install it.
fn python() -> PathBuf {
    let dir = std::env::var_os("MCP_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mcp-authd"));
    let bin = dir.join("venv/bin/python");
    assert!(
        bin.is_file(),
        "{} is missing: run tests/peers/install.sh (make test-deps) for the MCP Python SDK",
        bin.display()
    );
    bin
}

/// Runs the SDK's login and the calls; its JSON report, or a panic with everything to debug it.
async fn sdk_login(url: &str, extra: &[&str], context: impl Fn() -> String) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/sdk_login.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .arg(url)
        .args(["--user", "alice", "--password", ALICE_PASSWORD])
        .args(["--call", "authContext", "{}"])
        .args(["--call", "echo", r#"{"message": "hello through the proxy"}"#])
        .args(extra)
        .output()
        .await
        .expect("running sdk_login.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK's login failed:\n{stderr}\n{stdout}\n{}", context());
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The text of a tool call in the report.
fn call_text(report: &Value, i: usize) -> String {
    let call = &report["calls"][i];
    assert_eq!(call["isError"], false, "{call}");
    call["content"].as_array().unwrap().iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n")
}

struct Setup {
    server: Server,
    proxy: proxies::Proxy,
    _echo: proxies::Proc,
    mcp_url: String,
}

fn setup(extra_toml: &str, env: Vec<(String, String)>) -> Setup {
    let (port, echo_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port}");
    let mcp_url = format!("{public}/echo/mcp");
    let server = Server::start_with(Options {
        toml: format!(
            "[oauth]\nconsent = \"always\"\n\n[[resources]]\nurl = \"{mcp_url}\"\nrequired_scopes = [\"mcp\"]\n\n{extra_toml}"
        ),
        issuer: Some(public.clone()),
        own_resources: true,
        env,
        ..Options::default()
    });
    let echo = start_echo(echo_port, &format!("127.0.0.1:{port}"));
    let up = Upstreams {
        authd: server.port,
        authd_grpc: free_port(),
        echo: echo_port,
        fetch: free_port(),
        time: free_port(),
    };
    let proxy = proxies::start_on(Kind::Traefik, &up, port);
    Setup { server, proxy, _echo: echo, mcp_url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_registers_logs_in_and_calls_tools_through_traefik() {
    python();
    // Access tokens of 3 s: the SDK has to refresh (a rotation) before its last call.
    let t = setup("", vec![("MCP_AUTHD__TOKENS__ACCESS_TOKEN_TTL".into(), "3".into())]);
    let context = || format!("--- traefik ---\n{}\n--- mcp-authd ---\n{}", t.proxy.log(), t.server.logs());
    let report = sdk_login(&t.mcp_url, &["--again-after", "4"], context).await;

    // The SDK's own steps, as mcp-authd and Traefik answered them.
    let wire: Vec<(String, String, u64)> = report["wire"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w[0].as_str().unwrap().to_owned(), w[1].as_str().unwrap().to_owned(), w[2].as_u64().unwrap()))
        .collect();
    let step =
        |method: &str, path: &str, status: u64| wire.iter().any(|w| w.0 == method && w.1 == path && w.2 == status);
    assert!(step("POST", "/echo/mcp", 401), "the challenge: {wire:?}");
    assert!(step("GET", "/.well-known/oauth-protected-resource/echo/mcp", 200), "RFC 9728: {wire:?}");
    assert!(step("GET", "/.well-known/oauth-authorization-server", 200), "RFC 8414: {wire:?}");
    assert!(step("POST", "/register", 201), "RFC 7591: {wire:?}");
    assert!(step("POST", "/token", 200), "the code redeemed: {wire:?}");
    assert!(step("POST", "/echo/mcp", 200), "then the MCP session: {wire:?}");
    assert_eq!(report["registered"], true);
    assert_eq!(report["token_scope"], "mcp");
    // The person's side: authorize → login form → consent page → back to the SDK with a code.
    let pages: Vec<&str> = report["browser"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()).collect();
    assert_eq!(pages, ["/authorize", "/login", "/login", "/consent", "/consent"], "{report}");

    // The MCP server saw the identity mcp-authd asserted, and not the token.
    let client_id = report["client_id"].as_str().unwrap();
    let auth = call_text(&report, 0);
    assert!(auth.contains("local:alice") && auth.contains(client_id), "{auth}");
    assert!(call_text(&report, 1).contains("hello through the proxy"));
    assert!(report["tools"].as_array().unwrap().iter().any(|t| t == "bearerDecode"));

    // After the access token expired: refreshed with rotation, and the call went through.
    let again = &report["again"];
    assert_eq!(again["isError"], false, "{again}");
    assert_eq!(again["refresh_rotated"], true, "{again}");
    let tokens = wire.iter().filter(|w| w.1 == "/token" && w.2 == 200).count();
    assert_eq!(tokens, 2, "the code, then one refresh: {wire:?}");
    let log = t.server.logs();
    assert!(
        log.lines().any(|l| l.contains("token_issued") && l.contains("refresh_token")),
        "a refresh grant was audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_logs_in_with_a_client_id_metadata_document() {
    python();
    let docs = DocServer::start().await;
    let doc_url = docs.url("/mcp-sdk/client.json");
    docs.set(
        "/mcp-sdk/client.json",
        Answer::json(&json!({
            "client_id": doc_url,
            "client_name": "SDK via metadata document",
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }))
        .header("Cache-Control", "max-age=600"),
    );
    // Test-only allowances: the document is served on loopback, by a throw-away CA.
    let t = setup(
        &format!("[cimd]\nallow_private_addresses = true\nextra_ca_file = \"{}\"\n", docs.ca_file().display()),
        Vec::new(),
    );
    let context = || format!("--- traefik ---\n{}\n--- mcp-authd ---\n{}", t.proxy.log(), t.server.logs());
    let report = sdk_login(&t.mcp_url, &["--client-metadata-url", &doc_url], context).await;

    assert_eq!(report["registered"], false, "no registration with a metadata document: {report}");
    assert_eq!(report["client_id"], doc_url.as_str());
    let auth = call_text(&report, 0);
    assert!(auth.contains("local:alice") && auth.contains(&doc_url), "X-Client-Id is the document's URL: {auth}");
    assert_eq!(docs.hits("/mcp-sdk/client.json"), 1, "fetched once (max-age) for authorize and token");
}
