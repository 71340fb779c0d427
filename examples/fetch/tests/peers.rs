//! The official MCP Python SDK's Streamable HTTP client (`tests/peers/mcp_client.py`, PyPI `mcp`
//! pinned by `tests/peers/install.sh`) drives the fetch server over real HTTP: tools/list and the
//! `fetch` tool on a page, JSON and an image served on loopback (with the test-only loopback
//! allowance), and a refused private address, in the SDK's default mode and in the legacy
//! (`initialize`) era.

mod common;
#[path = "../../../tests/peers/harness.rs"]
mod harness;

use common::{Origin, spawn_mcp, spawn_origin, test_config};
use harness::{call, call_result, first_text, python_client, tool_names};
use serde_json::json;

#[tokio::test]
async fn the_python_sdk_client_fetches_through_mcp_fetch() {
    let origin = spawn_origin(Origin::default()).await;
    let url = spawn_mcp(test_config()).await;
    let calls = [
        call("fetch", json!({ "url": format!("http://{origin}/page.html") })),
        call("fetch", json!({ "url": format!("http://{origin}/data.json") })),
        call("fetch", json!({ "url": format!("http://{origin}/image.png") })),
        call("fetch", json!({ "url": "http://10.0.0.1/" })),
    ];
    for mode in ["auto", "legacy"] {
        let doc = python_client(&url, mode, &[], &calls).await.unwrap().unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(tool_names(&doc), ["fetch"], "{mode}");
        let page = call_result(&doc, 0, "fetch");
        assert_eq!(page["isError"], false, "{mode}: {page}");
        assert!(first_text(page).contains('#') || first_text(page).contains("**"), "Markdown: {page}");
        let data = call_result(&doc, 1, "fetch");
        assert!(first_text(data).contains("\"name\": \"mcp\""), "pretty JSON: {data}");
        let image = call_result(&doc, 2, "fetch");
        let content = image["content"].as_array().expect("content");
        let picture = content.iter().find(|c| c["type"] == "image").unwrap_or_else(|| panic!("{mode}: {image}"));
        assert_eq!(picture["mimeType"], "image/png");
        assert!(picture["data"].as_str().is_some_and(|d| d.starts_with("iVBORw0KGgo")), "PNG bytes: {image}");
        let refused = call_result(&doc, 3, "fetch");
        assert_eq!(refused["isError"], true, "{mode}: {refused}");
        assert!(first_text(refused).contains("10.0.0.1"), "{refused}");
    }
}
