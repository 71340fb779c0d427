//! The HTTP face of the real binary: the curl example of its header comment, `/health`, the
//! `Host` allow list, the session bound, and shutdown on SIGTERM.

mod common;

use std::time::Duration;

use common::{Server, call, first_sse_json, initialize_body, mcp_post, text};
use serde_json::json;

/// The curl of src/main.rs's header comment: initialize, then a tool call, as plain JSON.
#[tokio::test]
async fn curl_initialize_and_call_stateless() -> anyhow::Result<()> {
    let server = Server::start(&[], &[]).await?;
    let http = reqwest::Client::new();
    let r = mcp_post(&http, &server.url("/mcp"), &initialize_body(1)).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().get("mcp-session-id").is_none(), "stateless mode hands out no session");
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 1);
    let result = &body["result"];
    assert_eq!(result["protocolVersion"], "2025-11-25");
    assert_eq!(result["serverInfo"]["name"], "mcp-echo");
    assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(result["capabilities"]["tools"].is_object(), "{body}");
    assert!(result["instructions"].as_str().is_some_and(|i| i.contains("diagnostic")), "{body}");

    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "authContext", "arguments": {} }
    });
    let r = mcp_post(&http, &server.url("/mcp"), &call).header("x-user-id", "42").send().await?;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["id"], 2);
    assert_eq!(body["result"]["structuredContent"]["user_id"], "42", "{body}");
    assert_eq!(body["result"]["isError"], false);
    Ok(())
}

#[tokio::test]
async fn curl_initialize_stateful_gets_a_session() -> anyhow::Result<()> {
    let server = Server::start(&["--stateful"], &[]).await?;
    let http = reqwest::Client::new();
    let r = mcp_post(&http, &server.url("/mcp"), &initialize_body(1)).send().await?;
    assert_eq!(r.status(), 200);
    let session = r.headers().get("mcp-session-id").map(|v| v.to_str().unwrap_or_default().to_string());
    assert!(session.as_deref().is_some_and(|s| !s.is_empty()), "no Mcp-Session-Id");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = first_sse_json(&r.text().await?)?;
    assert_eq!(body["id"], 1);
    assert_eq!(body["result"]["serverInfo"]["name"], "mcp-echo");
    Ok(())
}

#[tokio::test]
async fn health_answers_in_both_modes() -> anyhow::Result<()> {
    for args in [vec![], vec!["--stateful"]] {
        let server = Server::start(&args, &[]).await?;
        let r = reqwest::get(server.url("/health")).await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<serde_json::Value>().await?, json!({ "status": "ok" }));
    }
    Ok(())
}

#[tokio::test]
async fn host_allow_list() -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let default = Server::start(&[], &[]).await?;
    let r = mcp_post(&http, &default.url("/mcp"), &initialize_body(1)).header("host", "mcp.example.com").send().await?;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await?, "Forbidden: Host header is not allowed");
    let refused = default.client(&[("host", "mcp.example.com")]).await;
    assert!(refused.is_err(), "rmcp client got through with a foreign Host");

    let open = Server::start(&["--allowed-host", "mcp.example.com"], &[]).await?;
    let client = open.client(&[("host", "mcp.example.com")]).await?;
    let echoed = call(&client, "echo", json!({ "message": "via the public name" })).await?;
    assert_eq!(text(&echoed), "via the public name");
    let headers = call(&client, "printHeader", json!({})).await?;
    assert_eq!(headers.structured_content.as_ref().map(|h| h["other"]["host"].clone()), Some(json!("mcp.example.com")));
    client.cancel().await?;
    // The allow list replaced the loopback defaults.
    let r = mcp_post(&http, &open.url("/mcp"), &initialize_body(1)).send().await?;
    assert_eq!(r.status(), 403);
    Ok(())
}

/// `--max-sessions 2`: a third initialize is refused with 503 and a JSON-RPC error naming the
/// limit; ending a session (DELETE, sent by the client on cancel) frees a slot.
#[tokio::test]
async fn max_sessions_is_enforced() -> anyhow::Result<()> {
    let server = Server::start(&["--stateful", "--max-sessions", "2"], &[]).await?;
    let a = server.client(&[]).await?;
    let b = server.client(&[]).await?;
    call(&a, "echo", json!({ "message": "a" })).await?;
    call(&b, "echo", json!({ "message": "b" })).await?;

    let third = server.client(&[]).await;
    assert!(third.is_err(), "a third session was accepted");

    let http = reqwest::Client::new();
    let r = mcp_post(&http, &server.url("/mcp"), &initialize_body(5)).send().await?;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "60");
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["id"], 5);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too many open sessions (limit 2)"), "{body}");

    // Requests inside existing sessions, and sessionless 2026-07-28 clients, still work while
    // the table is full.
    call(&b, "echo", json!({ "message": "still here" })).await?;
    let modern = server.modern_client().await?;
    assert_eq!(text(&call(&modern, "echo", json!({ "message": "no session needed" })).await?), "no session needed");
    modern.cancel().await?;

    a.cancel().await?;
    let c = server.client(&[]).await?;
    call(&c, "echo", json!({ "message": "c" })).await?;
    b.cancel().await?;
    c.cancel().await?;
    Ok(())
}

/// SIGTERM ends the process with status 0, also with a session and its SSE stream open, and
/// also when stderr is gone (logging must not stand in the way of shutting down).
#[tokio::test]
async fn sigterm_exits_zero() -> anyhow::Result<()> {
    for (args, closed_stderr) in [(vec![], false), (vec!["--stateful"], false), (vec!["--stateful"], true)] {
        let mut server = Server::start_with(&args, &[], closed_stderr).await?;
        let client = server.client(&[]).await?;
        call(&client, "echo", json!({ "message": "before shutdown" })).await?;
        let pid = server.child.id().expect("running");
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("a positive pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        // A bound so a hang fails the test instead of blocking it; not a speed check.
        let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait()).await.map_err(|_| {
            anyhow::anyhow!("mcp-echo {args:?} still running 20 s after SIGTERM:\n{}", server.log_text())
        })??;
        assert!(status.success(), "{args:?}: exit status {status}:\n{}", server.log_text());
        drop(client);
    }
    Ok(())
}
