//! Stateless clients (MCP 2026-07-28: `server/discover`, per-request `_meta`, no session) against
//! the real proxy binary wrapping the fixture: rmcp's client in `Discover` mode, and raw HTTP.

mod common;

use anyhow::{Context, Result};
use common::{FIXTURE, Proxy, ROOT_URI, TestClient, call, pid_alive, post, text_of, transport, wait_gone};
use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use serde_json::{Value, json};

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-stateless", "version": "1"},
    })
}

#[tokio::test]
async fn rmcp_discover_client_works_without_a_session() -> Result<()> {
    let proxy = Proxy::start(&[], &[FIXTURE]).await?;
    let handler = TestClient::default();
    let seen = handler.seen.clone();
    let client = handler
        .serve_with_lifecycle(
            transport(&proxy.url()),
            ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] },
        )
        .await?;
    let info = client.peer_info().context("no server info after discover")?;
    assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("mcp-stdio-fixture"));

    let tools = client.list_all_tools().await?;
    assert!(tools.iter().any(|t| t.name == "roots"), "{tools:?}");
    let echoed = client.call_tool(call("echo", json!({"text":"stateless hello"}))).await?;
    assert_eq!(text_of(&echoed)?, "stateless hello");

    // Notifications the child sends during a call arrive on that call's response stream.
    let notified = client.call_tool(call("notify", json!({}))).await?;
    assert_eq!(text_of(&notified)?, "notified");
    assert_eq!(seen.logs.lock().unwrap().clone(), vec![json!("notify: working")]);

    // The child's roots/list becomes an MRTR input_required round trip (SEP-2322): rmcp's
    // client answers it through its handler and retries; the child gets the answer.
    let roots = client.call_tool(call("roots", json!({}))).await?;
    let answered: Value = serde_json::from_str(&text_of(&roots)?)?;
    assert_eq!(answered["roots"][0]["uri"], ROOT_URI);
    assert_eq!(*seen.roots_asked.lock().unwrap(), 1);

    // No session was ever created: the children are the stateless pool's.
    assert!(!proxy.log().contains("session started"), "a stateless client must not create sessions");
    proxy.wait_for_log(&["stateless child ready", "session=stateless-"]).await?;
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn raw_stateless_requests() -> Result<()> {
    let proxy = Proxy::start(&["--stateless-children", "2"], &[FIXTURE]).await?;
    let url = proxy.url();
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")];
    let body = json!({"jsonrpc":"2.0","id":41,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"no session"},"_meta":meta()}});
    let (status, resp_headers, reply) = post(&url, &headers, &body).await?;
    assert_eq!(status, 200, "{reply}");
    assert!(resp_headers.get("mcp-session-id").is_none(), "stateless answers carry no session");
    assert_eq!(reply["id"], 41);
    assert_eq!(reply["result"]["resultType"], "complete");
    assert_eq!(reply["result"]["content"][0]["text"], "no session");
    assert_eq!(reply["result"]["x-fixture-extra"], json!({"kept": true}));

    // server/discover is answered from the child's InitializeResult.
    let discover = json!({"jsonrpc":"2.0","id":"d","method":"server/discover","params":{"_meta":meta()}});
    let (status, _, reply) =
        post(&url, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")], &discover).await?;
    assert_eq!(status, 200);
    assert_eq!(reply["result"]["capabilities"]["tools"], json!({}));
    assert_eq!(reply["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "mcp-stdio-fixture");
    assert!(reply["result"]["supportedVersions"].as_array().context("versions")?.contains(&json!("2026-07-28")));

    // The same child serves the next request with the same capabilities (it is pooled).
    let pid_call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pid","_meta":meta()}});
    let pid_headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "pid")];
    let (_, _, first) = post(&url, &pid_headers, &pid_call).await?;
    let (_, _, second) = post(&url, &pid_headers, &pid_call).await?;
    let pid_of = |v: &Value| -> Result<u32> {
        let report: Value = serde_json::from_str(v["result"]["content"][0]["text"].as_str().context("text")?)?;
        Ok(report["pid"].as_u64().context("pid")? as u32)
    };
    let pid = pid_of(&first)?;
    assert_eq!(pid, pid_of(&second)?);
    assert!(pid_alive(pid));

    // Missing SEP-2575 metadata, a header that disagrees with the body, no GET stream.
    let no_caps = json!({"jsonrpc":"2.0","id":2,"method":"tools/list",
        "params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}});
    let (status, _, reply) =
        post(&url, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")], &no_caps).await?;
    assert_eq!(status, 400);
    assert_eq!(reply["error"]["code"], -32602);
    let lying = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")];
    let (status, _, reply) = post(&url, &lying, &body).await?;
    assert_eq!(status, 400);
    assert_eq!(reply["error"]["code"], -32020);
    let get = reqwest::Client::new().get(&url).header("accept", "text/event-stream").send().await?;
    assert_eq!(get.status(), 405);

    // An unknown requestState is refused, not forwarded.
    let stale = json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
        "params":{"name":"echo","requestState":"not-ours","inputResponses":{},"_meta":meta()}});
    let (status, _, reply) = post(&url, &headers, &stale).await?;
    assert_eq!(status, 200);
    assert_eq!(reply["error"]["code"], -32602);

    // Shutdown stops the pooled children too.
    let status = proxy.terminate().await?;
    assert!(status.success());
    wait_gone(pid).await?;
    Ok(())
}

#[tokio::test]
async fn pool_is_bounded_and_keyed_by_client_capabilities() -> Result<()> {
    let proxy = Proxy::start(&["--stateless-children", "1"], &[FIXTURE]).await?;
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "pid")];
    let pid_with = |capabilities: Value| {
        let mut meta = meta();
        meta["io.modelcontextprotocol/clientCapabilities"] = capabilities;
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pid","_meta":meta}})
    };
    let pid_of = |v: &Value| -> Result<u32> {
        let report: Value = serde_json::from_str(v["result"]["content"][0]["text"].as_str().context("text")?)?;
        Ok(report["pid"].as_u64().context("pid")? as u32)
    };
    let (_, _, plain) = post(&proxy.url(), &headers, &pid_with(json!({}))).await?;
    let plain = pid_of(&plain)?;
    // Other capabilities need a child initialized with them; with room for one child, the idle
    // one is stopped to make room.
    let (_, _, with_roots) = post(&proxy.url(), &headers, &pid_with(json!({"roots":{}}))).await?;
    let with_roots = pid_of(&with_roots)?;
    assert_ne!(plain, with_roots);
    wait_gone(plain).await?;
    let (_, _, again) = post(&proxy.url(), &headers, &pid_with(json!({"roots":{}}))).await?;
    assert_eq!(pid_of(&again)?, with_roots);
    Ok(())
}
