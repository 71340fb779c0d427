//! `mcp-stdio-proxy` against real peers on both sides:
//! - the official MCP conformance suite (npm `@modelcontextprotocol/conformance`, pinned, on
//!   Node 22) through the proxy to npm `@modelcontextprotocol/server-everything` (the official
//!   TypeScript SDK's showcase stdio server), once per protocol era;
//! - the official MCP Python SDK client (`tests/peers/mcp_client.py`) through the proxy to PyPI
//!   `mcp-server-time` (a stdio server on the same SDK): Python → proxy → Python.
//!
//! Install the peers with `tests/peers/install.sh`; a missing one fails the test and names it.
//!
//! The suite's scenarios mostly call the tools, resources and prompts of its own reference server
//! (`test_simple_text`, `test://static-text`, `test_simple_prompt`, ...); server-everything has
//! other names, so those cannot pass through any proxy and are listed with the reason. What the
//! proxy is responsible for (the handshake and sessions, ping, listings, logging/setLevel,
//! subscriptions, SSE, the Host check, the 2026-07-28 envelope and header rules) must pass.
//! Failures that are the proxy's own defects are marked `Defect` (or listed in `PassExcept`) with
//! the defect named: they are reported, not hidden, and do not fail the test until fixed.

mod common;
#[path = "../../../tests/peers/harness.rs"]
mod harness;

use anyhow::{Result, anyhow, bail};
use common::Proxy;
use harness::{Era, Expect, call, call_result, exchange, first_text, judge, python_client, run_suite, tool_names};
use serde_json::{Value, json};

const TEST_TOOLS: &str = "calls a test_* tool of the suite's reference server, which server-everything does not have";
const TEST_PROMPTS: &str = "gets a test_* prompt of the suite's reference server; server-everything's prompts differ";
const TEST_RESOURCES: &str =
    "reads a test:// resource of the suite's reference server; server-everything serves demo://";
const NOT_FOUND_PASSES: &str = "server-everything's 'tool not found' result (isError, text) satisfies the check: \
     nothing of the scenario is exercised";
const MRTR_TOOLS: &str = "calls the suite's input-required (MRTR) test tools, which server-everything does not have";
/// The expectation for one scenario of one run.
fn expectation(era: Era, scenario: &str) -> Option<Expect> {
    use Expect::*;
    Some(match (era, scenario) {
        (_, "dns-rebinding-protection" | "server-sse-multiple-streams") => Pass,
        (Era::Handshake, "server-initialize" | "server-session-lifecycle" | "ping" | "logging-set-level") => Pass,
        (Era::Handshake, "tools-list" | "prompts-list" | "resources-list") => Pass,
        (Era::Handshake, "resources-subscribe" | "resources-unsubscribe") => Pass,
        (Era::Stateless, "tools-list" | "prompts-list" | "resources-list") => Pass,
        (Era::Stateless, "http-header-validation" | "input-required-result-unsupported-methods") => Pass,
        // SEP-2549 caching hints (ttlMs, cacheScope) are added by the proxy to list/read results.
        (Era::Stateless, "caching") => Pass,
        (Era::Stateless, "sep-2164-resource-not-found") => Pass,
        (Era::Stateless, "server-stateless") => PassExcept(
            &[
                "sep-2575-server-rejects-undeclared-capability",
                "sep-2575-missing-capability-http-400",
                "sep-2575-http-server-method-not-found-404-initialize",
                "sep-2575-http-server-method-not-found-404-ping",
                "sep-2575-http-server-method-not-found-404-logging-setlevel",
                "sep-2575-http-server-method-not-found-404-resources-subscribe",
                "sep-2575-http-server-method-not-found-404-resources-unsubscribe",
                "sep-2575-server-sends-subscription-ack",
                "sep-2575-server-tags-subscription-id",
                "sep-2575-server-honors-notification-filter",
            ],
            "2 checks need the suite's test_missing_capability tool; PROXY DEFECTS: methods removed in \
             2026-07-28 (initialize, ping, logging/setLevel, resources/subscribe|unsubscribe) get HTTP 200 \
             and -32603 instead of 404 and -32601; subscriptions/listen answers -32601 although the \
             discover result passes on the child's listChanged/subscribe capabilities",
        ),
        (_, "tools-call-simple-text" | "tools-call-error") => Vacuous(NOT_FOUND_PASSES),
        (_, "completion-complete") => Fails("completes an argument of the suite's test_prompt_with_arguments"),
        (_, "json-schema-2020-12") => Fails("needs the suite's json_schema_2020_12_tool"),
        (_, "server-sse-polling") => Fails("needs the suite's test_reconnection tool"),
        (_, "http-custom-header-server-validation") => {
            Fails("needs a tool with x-mcp-header parameters (SEP-2243); server-everything has none")
        }
        (_, "elicitation-sep1034-defaults" | "elicitation-sep1330-enums") => Fails(TEST_TOOLS),
        (_, s) if s.starts_with("tools-call-") => Fails(TEST_TOOLS),
        (_, s) if s.starts_with("prompts-get-") => Fails(TEST_PROMPTS),
        (_, s) if s.starts_with("resources-read-") || s == "resources-templates-read" => Fails(TEST_RESOURCES),
        (
            Era::Stateless,
            "input-required-result-validate-input"
            | "input-required-result-ignore-extra-params"
            | "input-required-result-missing-input-response",
        ) => Vacuous(NOT_FOUND_PASSES),
        (Era::Stateless, s) if s.starts_with("input-required-result-") => Fails(MRTR_TOOLS),
        _ => return None,
    })
}

/// The whole suite, both eras, through the proxy to server-everything (one child per session, a
/// pool for the stateless requests: the proxy's defaults).
#[tokio::test]
async fn conformance_suite_through_proxy_to_server_everything() -> Result<()> {
    let node = harness::node22()?;
    let everything = harness::server_everything()?;
    let node = node.to_string_lossy();
    let everything = everything.to_string_lossy();
    let proxy = Proxy::start(&[], &[&node, &everything, "stdio"]).await?;
    let health = format!("{}/health", proxy.base);
    let mut failed = Vec::new();
    for era in Era::ALL {
        let results = match run_suite(&proxy.url(), era, Some(&health)).await {
            Ok(results) => results,
            Err(e) => bail!("{e}\nproxy log:\n{}", harness::tail(&proxy.log(), 200)),
        };
        if let Err(e) = judge("mcp-stdio-proxy -- server-everything", era, &results, &|s| expectation(era, s), None) {
            failed.push(e.to_string());
        }
    }
    if !failed.is_empty() {
        bail!("{}\nproxy log:\n{}", failed.join("\n"), harness::tail(&proxy.log(), 200));
    }
    proxy.terminate().await?;
    Ok(())
}

/// The checks on the two mcp-server-time calls made by [`time_calls`].
fn assert_time_calls(doc: &Value) {
    let now = call_result(doc, 0, "get_current_time");
    assert_eq!(now["isError"], false, "{now}");
    assert_eq!(now["structuredContent"]["timezone"], "UTC", "{now}");
    let datetime = now["structuredContent"]["datetime"].as_str().unwrap_or_default();
    assert!(datetime.ends_with("+00:00"), "{now}");
    let text: Value = serde_json::from_str(first_text(now)).unwrap_or_default();
    assert_eq!(text["datetime"], datetime, "the text block carries the same JSON: {now}");
    let converted = call_result(doc, 1, "convert_time");
    assert_eq!(converted["isError"], false, "{converted}");
    let target = converted["structuredContent"]["target"]["datetime"].as_str().unwrap_or_default();
    assert!(target.contains("T21:00:00") && target.ends_with("+09:00"), "{converted}");
}

fn time_calls() -> Vec<Value> {
    vec![
        call("get_current_time", json!({ "timezone": "UTC" })),
        call("convert_time", json!({ "source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo" })),
    ]
}

/// Python SDK client → proxy → Python SDK server, in the handshake era (a session, one child) and
/// with the SDK's default `auto` mode (server/discover first, which the proxy answers: protocol
/// 2026-07-28 on a pooled child).
#[tokio::test]
async fn python_sdk_client_through_proxy_to_python_server() -> Result<()> {
    let time = harness::mcp_server_time()?;
    let time = time.to_string_lossy();
    let proxy = Proxy::start(&[], &[&time, "--local-timezone", "UTC"]).await?;
    let url = proxy.url();

    let doc = python_client(&url, "legacy", &[], &time_calls()).await?.map_err(|e| {
        anyhow!("the Python client failed in legacy mode: {e}\nproxy log:\n{}", harness::tail(&proxy.log(), 200))
    })?;
    assert_eq!(doc["era"], "session", "{doc}");
    assert_eq!(doc["protocol_version"], "2025-11-25");
    assert_eq!(doc["server_info"]["name"], "mcp-time", "the child's own InitializeResult: {doc}");
    assert_eq!(tool_names(&doc), ["convert_time", "get_current_time"]);
    assert!(doc["tools"][0]["inputSchema"]["properties"].is_object(), "{doc}");
    assert_time_calls(&doc);
    let init = exchange(&doc, "initialize").ok_or_else(|| anyhow!("no initialize: {doc}"))?;
    assert_eq!(init["session_id"], true, "the proxy opened a session: {doc}");
    let delete = exchange(&doc, "DELETE").ok_or_else(|| anyhow!("the SDK did not end its session: {doc}"))?;
    assert_eq!(delete["status"], 200, "{doc}");

    // How the proxy answers the discovery probe that 2.x clients send first.
    let discover = json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": { "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": { "name": "peer-test", "version": "1.0.0" }
        } }
    });
    let (status, _, answer) =
        common::post(&url, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")], &discover)
            .await?;
    assert_eq!(status, 200, "{answer}");
    let versions = answer["result"]["supportedVersions"].as_array().cloned().unwrap_or_default();
    assert!(versions.contains(&json!("2026-07-28")), "the proxy claims the stateless era: {answer}");

    // The SDK's default mode follows that answer into the 2026-07-28 era.
    match python_client(&url, "auto", &[], &time_calls()).await? {
        Ok(doc) => {
            assert_eq!(doc["era"], "stateless", "{doc}");
            assert_eq!(doc["protocol_version"], "2026-07-28");
            assert_eq!(harness::wire_methods(&doc).first().map(String::as_str), Some("server/discover"));
            assert_eq!(tool_names(&doc), ["convert_time", "get_current_time"]);
            assert_time_calls(&doc);
        }
        Err(stderr) => {
            bail!("the Python client failed in auto mode: {stderr}\nproxy log:\n{}", harness::tail(&proxy.log(), 200))
        }
    }
    proxy.terminate().await?;
    Ok(())
}
