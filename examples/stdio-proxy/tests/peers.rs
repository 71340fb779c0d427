//! Real stdio MCP servers from the registries behind the proxy: PyPI `mcp-server-time` (the
//! official Python SDK) and npm `@modelcontextprotocol/server-memory` (the official TypeScript
//! SDK, on this machine's node). Install them with `examples/stdio-proxy/tests/install-peers.sh`;
//! a missing peer fails the test and names that script.

mod common;

use std::path::PathBuf;

use anyhow::{Result, bail};
use common::{Proxy, TestClient, call, connect, text_of, transport};
use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use serde_json::{Value, json};

fn peer(relative: &str) -> Result<String> {
    let dir = std::env::var_os("MCP_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mcp-authd"));
    let path = dir.join(relative);
    if !path.exists() {
        bail!(
            "{} is missing: run examples/stdio-proxy/tests/install-peers.sh (it installs the pinned \
             stdio MCP servers these tests wrap)",
            path.display()
        );
    }
    Ok(path.to_string_lossy().into_owned())
}

#[tokio::test]
async fn python_mcp_server_time() -> Result<()> {
    let server = peer("venv/bin/mcp-server-time")?;
    let proxy = Proxy::start(&[], &[&server, "--local-timezone", "UTC"]).await?;

    // Session-based.
    let client = connect(&proxy).await?;
    let tools = client.list_all_tools().await?;
    assert!(tools.iter().any(|t| t.name == "get_current_time"), "{tools:?}");
    let now = client.call_tool(call("get_current_time", json!({"timezone":"UTC"}))).await?;
    let now: Value = serde_json::from_str(&text_of(&now)?)?;
    assert_eq!(now["timezone"], "UTC");
    let converted = client
        .call_tool(call("convert_time", json!({"source_timezone":"UTC","time":"12:00","target_timezone":"Asia/Tokyo"})))
        .await?;
    let converted: Value = serde_json::from_str(&text_of(&converted)?)?;
    assert!(converted["target"]["datetime"].as_str().unwrap_or("").contains("T21:00:00"), "{converted}");
    client.cancel().await?;

    // Stateless: the proxy initializes a pooled child on the client's behalf.
    let stateless = TestClient::default()
        .serve_with_lifecycle(
            transport(&proxy.url()),
            ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] },
        )
        .await?;
    let now = stateless.call_tool(call("get_current_time", json!({"timezone":"UTC"}))).await?;
    let now: Value = serde_json::from_str(&text_of(&now)?)?;
    assert_eq!(now["timezone"], "UTC");
    stateless.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn node_server_memory() -> Result<()> {
    let server = peer("npm/node_modules/.bin/mcp-server-memory")?;
    let file = std::env::temp_dir().join(format!("stdio-proxy-memory-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let file_str = file.to_string_lossy().into_owned();
    let proxy = Proxy::start_with_env(&[], &[&server], &[("MEMORY_FILE_PATH", &file_str)]).await?;

    let client = connect(&proxy).await?;
    let created = client
        .call_tool(call(
            "create_entities",
            json!({"entities":[{"name":"stdio-proxy","entityType":"program","observations":["wraps stdio servers"]}]}),
        ))
        .await?;
    assert_ne!(created.is_error, Some(true), "{created:?}");
    let graph = client.call_tool(call("read_graph", json!({}))).await?;
    let graph: Value = serde_json::from_str(&text_of(&graph)?)?;
    assert_eq!(graph["entities"][0]["name"], "stdio-proxy");
    assert_eq!(graph["entities"][0]["observations"][0], "wraps stdio servers");
    client.cancel().await?;

    // A second session (a second child) reads what the first one stored in the shared file.
    let second = connect(&proxy).await?;
    let found = second.call_tool(call("search_nodes", json!({"query":"stdio-proxy"}))).await?;
    assert!(text_of(&found)?.contains("wraps stdio servers"));
    second.cancel().await?;
    let _ = std::fs::remove_file(&file);
    Ok(())
}
