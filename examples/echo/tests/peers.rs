//! The official MCP Python SDK's Streamable HTTP client (PyPI `mcp`, pinned; driven by
//! `tests/peers/mcp_client.py`) against the real `mcp-echo` binary: every tool, in both modes and
//! both protocol eras. Install the peers with `tests/peers/install.sh`; a missing one fails the
//! test and names that script.
//!
//! The SDK's default `auto` mode sends `server/discover` (protocol 2026-07-28) first: rmcp answers
//! it, so the client stays in the stateless era (no session, so `--stateful`'s session tools are
//! not listed and refuse). `legacy` forces the `initialize` handshake, which is how a Python client
//! gets an MCP session; `2026-07-28` adopts that version without the probe.

mod common;
#[path = "../../../tests/peers/harness.rs"]
mod harness;

use anyhow::{Context, Result, anyhow};
use common::{COMMON_TOOLS, Server, expected_tools, make_jwt, unix_now};
use harness::{call, call_result, exchange, first_text, python_client, tool_names, wire_methods};
use serde_json::{Value, json};

const SECRET_VAR: &str = "ECHO_PEER_TEST_API_KEY";
const SECRET_VALUE: &str = "s3cr3t-for-the-python-peer-test";
const MESSAGE: &str = "héllo from the Python SDK 🐍";

async fn start(stateful: bool) -> Result<Server> {
    let args: &[&str] = if stateful { &["--stateful"] } else { &[] };
    Server::start(args, &[(SECRET_VAR, SECRET_VALUE)]).await
}

/// Runs the Python client; its failure is a test failure (with the server log).
async fn run(server: &Server, mode: &str, headers: &[(&str, &str)], calls: &[Value]) -> Result<Value> {
    python_client(&server.url("/mcp"), mode, headers, calls)
        .await?
        .map_err(|stderr| anyhow!("the Python client ({mode}) failed: {stderr}\nserver log:\n{}", server.log_text()))
}

/// One call of each common tool, in [`COMMON_TOOLS`] order.
fn common_calls() -> Vec<Value> {
    COMMON_TOOLS
        .iter()
        .map(|tool| match *tool {
            "echo" => call("echo", json!({ "message": MESSAGE })),
            "environmentDump" => call("environmentDump", json!({ "showSecrets": true })),
            other => call(other, json!({})),
        })
        .collect()
}

/// The index of `tool` among [`common_calls`].
fn at(tool: &str) -> usize {
    COMMON_TOOLS.iter().position(|t| *t == tool).expect("a common tool")
}

/// Checks the answers to [`common_calls`] made with the identity headers of [`identity`].
fn assert_common_answers(doc: &Value, server: &Server, jwt: &str, protocol: &str) {
    for (i, tool) in COMMON_TOOLS.iter().enumerate() {
        let result = call_result(doc, i, tool);
        assert_eq!(result["isError"], false, "{tool}: {result}");
        assert!(result.get("error").is_none(), "{tool}: {result}");
    }
    let echoed = call_result(doc, at("echo"), "echo");
    assert_eq!(first_text(echoed), MESSAGE);

    let headers = &call_result(doc, at("printHeader"), "printHeader")["structuredContent"];
    assert_eq!(headers["auth"]["x-user-id"], "py-42", "{headers}");
    assert_eq!(headers["auth"]["authorization"], format!("Bearer <redacted, {} chars>", jwt.len()), "{headers}");
    assert_eq!(headers["other"]["mcp-protocol-version"], protocol, "the era of each request: {headers}");
    assert!(!doc.to_string().contains(jwt), "the bearer token leaked into a result");

    let decoded = &call_result(doc, at("bearerDecode"), "bearerDecode")["structuredContent"];
    assert_eq!(decoded["decoded"], true, "{decoded}");
    assert_eq!(decoded["claims"]["sub"], "python-user");

    let auth = &call_result(doc, at("authContext"), "authContext")["structuredContent"];
    assert_eq!(auth["authenticated"], true, "{auth}");
    assert_eq!(auth["user_id"], "py-42");
    assert_eq!(auth["user_email"], "py@example.com");
    assert_eq!(auth["scopes"], json!(["mcp:read", "mcp:write"]));

    let cors = &call_result(doc, at("corsAnalysis"), "corsAnalysis")["structuredContent"];
    assert_eq!(cors["kind"], "no-origin", "a non-browser client sends no Origin: {cors}");

    let timing = &call_result(doc, at("requestTiming"), "requestTiming")["structuredContent"];
    assert!(timing["process_uptime_seconds"].as_f64().is_some_and(|s| s > 0.0), "{timing}");

    let env = &call_result(doc, at("environmentDump"), "environmentDump")["structuredContent"];
    assert_eq!(env["variables"][SECRET_VAR], "<masked>", "showSecrets needs --allow-secret-env too: {env}");
    assert_eq!(env["secrets_shown"], false);
    assert!(!doc.to_string().contains(SECRET_VALUE), "the secret leaked");

    let health = &call_result(doc, at("healthProbe"), "healthProbe")["structuredContent"];
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pid"], server.child.id().expect("running"), "{health}");

    let goat = call_result(doc, at("whoIStheGOAT"), "whoIStheGOAT");
    assert!(first_text(goat).contains("open-source community"), "{goat}");
}

/// The headers a gateway in front of mcp-echo adds, and the bearer token it may pass on.
fn identity() -> (String, Vec<(&'static str, &'static str)>) {
    let jwt = make_jwt(&json!({ "sub": "python-user", "exp": unix_now() + 3600, "scope": "mcp" }));
    let headers = vec![
        ("X-User-Id", "py-42"),
        ("X-User-Name", "pythonista"),
        ("X-User-Email", "py@example.com"),
        ("X-Client-Id", "python-sdk-client"),
        ("X-Scope", "mcp:read mcp:write"),
    ];
    (jwt, headers)
}

/// Every listed tool has an object input schema and a description.
fn assert_tool_list(doc: &Value, stateful_tools: bool) {
    assert_eq!(tool_names(doc), expected_tools(stateful_tools), "{doc}");
    for tool in doc["tools"].as_array().into_iter().flatten() {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()), "{tool}");
    }
}

/// Stateless mcp-echo, all three ways the SDK connects: every common tool answers.
#[tokio::test]
async fn python_sdk_calls_every_tool_stateless_in_both_eras() -> Result<()> {
    let server = start(false).await?;
    let (jwt, mut headers) = identity();
    let bearer = format!("Bearer {jwt}");
    headers.push(("Authorization", &bearer));

    // Handshake era: initialize, but the stateless server opens no session.
    let doc = run(&server, "legacy", &headers, &common_calls()).await?;
    assert_eq!(doc["era"], "session", "{doc}");
    assert_eq!(doc["protocol_version"], "2025-11-25");
    assert_eq!(doc["server_info"]["name"], "mcp-echo");
    assert_eq!(doc["server_info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(wire_methods(&doc).first().map(String::as_str), Some("initialize"), "{doc}");
    assert_eq!(exchange(&doc, "initialize").context("initialize")?["session_id"], false, "{doc}");
    assert_tool_list(&doc, false);
    assert_common_answers(&doc, &server, &jwt, "2025-11-25");

    // The SDK's default: server/discover answered by rmcp, so every request is 2026-07-28.
    let doc = run(&server, "auto", &headers, &common_calls()).await?;
    assert_eq!(doc["era"], "stateless", "{doc}");
    assert_eq!(doc["protocol_version"], "2026-07-28");
    let discover = exchange(&doc, "server/discover").context("no server/discover probe")?;
    assert_eq!(discover["status"], 200, "{doc}");
    assert!(exchange(&doc, "initialize").is_none(), "no handshake after a successful probe: {doc}");
    assert_eq!(doc["server_info"]["name"], "mcp-echo", "serverInfo from the discover result: {doc}");
    assert_tool_list(&doc, false);
    assert_common_answers(&doc, &server, &jwt, "2026-07-28");

    // A pinned modern version: no probe at all.
    let doc = run(&server, "2026-07-28", &headers, &common_calls()).await?;
    assert_eq!(doc["era"], "stateless", "{doc}");
    assert_eq!(wire_methods(&doc).first().map(String::as_str), Some("tools/list"), "{doc}");
    assert_tool_list(&doc, false);
    assert_common_answers(&doc, &server, &jwt, "2026-07-28");
    Ok(())
}

/// `--stateful`: a Python session keeps its last echo and counts its calls; a second session
/// starts empty; a 2026-07-28 client has no session and the session tools say so.
#[tokio::test]
async fn python_sdk_session_tools_stateful() -> Result<()> {
    let server = start(true).await?;
    let (jwt, mut headers) = identity();
    let bearer = format!("Bearer {jwt}");
    headers.push(("Authorization", &bearer));

    let mut calls = common_calls();
    calls.extend([
        call("replayLastEcho", json!({})),
        call("echo", json!({ "message": "second" })),
        call("replayLastEcho", json!({})),
        call("sessionInfo", json!({})),
    ]);
    let doc = run(&server, "legacy", &headers, &calls).await?;
    assert_eq!(doc["era"], "session", "{doc}");
    assert_eq!(doc["protocol_version"], "2025-11-25");
    assert_eq!(exchange(&doc, "initialize").context("initialize")?["session_id"], true, "a session: {doc}");
    assert_tool_list(&doc, true);
    assert_common_answers(&doc, &server, &jwt, "2025-11-25");
    let n = COMMON_TOOLS.len();
    let replay = call_result(&doc, n, "replayLastEcho");
    assert_eq!(replay["isError"], false, "{replay}");
    assert_eq!(first_text(replay), MESSAGE, "the echo made earlier in this Python session: {replay}");
    assert_eq!(replay["structuredContent"], json!({ "found": true, "message": MESSAGE }));
    let replay = call_result(&doc, n + 2, "replayLastEcho");
    assert_eq!(first_text(replay), "second", "{replay}");
    let info = &call_result(&doc, n + 3, "sessionInfo")["structuredContent"];
    assert_eq!(info["calls"], n + 4, "every call of this session, this one included: {info}");
    assert_eq!(info["protocol_version"], "2025-11-25", "{info}");
    let first_session = info["session_id"].as_str().context("session_id")?.to_owned();
    assert!(!first_session.is_empty());
    // The SDK ends its session with DELETE (rmcp answers 202, which the SDK logs as a failed
    // termination although the session is gone: it expects 200 or 204).
    let delete = exchange(&doc, "DELETE").context("the SDK did not end its session")?;
    assert!(delete["status"].as_u64().is_some_and(|s| (200..300).contains(&s)), "{doc}");

    // A new Python session starts without an echo and with its own id.
    let doc = run(&server, "legacy", &[], &[call("replayLastEcho", json!({})), call("sessionInfo", json!({}))]).await?;
    let replay = call_result(&doc, 0, "replayLastEcho");
    assert_eq!(replay["isError"], false, "{replay}");
    assert_eq!(replay["structuredContent"]["found"], false, "{replay}");
    assert_eq!(first_text(replay), "no echo in this session yet");
    let info = &call_result(&doc, 1, "sessionInfo")["structuredContent"];
    assert_ne!(info["session_id"], first_session.as_str(), "{info}");
    assert_eq!(info["calls"], 2, "{info}");

    // The SDK's default mode goes stateless (rmcp answers server/discover): no session, so the
    // session tools are not listed and refuse when called anyway.
    let doc = run(
        &server,
        "auto",
        &headers,
        &[call("echo", json!({ "message": "x" })), call("replayLastEcho", json!({})), call("sessionInfo", json!({}))],
    )
    .await?;
    assert_eq!(doc["era"], "stateless", "{doc}");
    assert_eq!(doc["protocol_version"], "2026-07-28");
    assert_tool_list(&doc, false);
    assert_eq!(call_result(&doc, 0, "echo")["isError"], false);
    for (i, tool) in [(1, "replayLastEcho"), (2, "sessionInfo")] {
        let refused = call_result(&doc, i, tool);
        assert_eq!(refused["isError"], true, "{refused}");
        assert!(first_text(refused).contains("not part of a session"), "{refused}");
    }
    Ok(())
}
