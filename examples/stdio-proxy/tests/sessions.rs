//! Session-based clients (initialize → Mcp-Session-Id) against the real proxy binary wrapping the
//! fixture stdio server: rmcp's own Streamable HTTP client, plus raw HTTP where the wire matters.

mod common;

use std::collections::HashSet;

use anyhow::{Context, Result};
use common::{FIXTURE, Proxy, ROOT_URI, call, connect, fixture_pid, pid_alive, post, text_of, wait_gone};
use rmcp::model::{NumberOrString, ProgressToken, RequestMetaObject};
use serde_json::{Value, json};

fn init_body() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw-test","version":"1"}}})
}

/// Initializes a session over raw HTTP; returns its id.
async fn raw_session(proxy: &Proxy) -> Result<String> {
    let (status, headers, body) = post(&proxy.url(), &[], &init_body()).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "mcp-stdio-fixture");
    let sid = headers.get("mcp-session-id").context("no Mcp-Session-Id")?.to_str()?.to_owned();
    let (status, _, _) =
        post(&proxy.url(), &[("mcp-session-id", &sid)], &json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await?;
    assert_eq!(status, 202);
    Ok(sid)
}

#[tokio::test]
async fn initialize_list_and_call_every_tool() -> Result<()> {
    let proxy = Proxy::start(&[], &[FIXTURE]).await?;
    let client = connect(&proxy).await?;
    let info = client.peer_info().context("no server info")?;
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("mcp-stdio-fixture"));

    let tools: HashSet<String> = client.list_all_tools().await?.into_iter().map(|t| t.name.to_string()).collect();
    for name in ["echo", "slow", "crash", "garbage", "notify", "roots", "notify_later", "pid"] {
        assert!(tools.contains(name), "tools/list lacks {name}: {tools:?}");
    }

    let echoed = client.call_tool(call("echo", json!({"text":"hello through the proxy"}))).await?;
    assert_eq!(text_of(&echoed)?, "hello through the proxy");

    let slow: Value = serde_json::from_str(&text_of(&client.call_tool(call("slow", json!({"ms":10}))).await?)?)?;
    assert!(slow["end_us"].as_u64() > slow["start_us"].as_u64());

    // The fixture's stderr is in the proxy's log, tagged with the session id.
    let pid = fixture_pid(&client).await?;
    let line = proxy.wait_for_log(&[&format!("fixture started pid={pid}"), "session="]).await?;
    let session = line.split("session=").nth(1).and_then(|s| s.split_whitespace().next()).context("session tag")?;
    assert_eq!(session.len(), 32, "session id tag in {line}");
    proxy.wait_for_log(&["session started", session]).await?;

    // garbage: a non-JSON stdout line is logged and skipped; the session goes on.
    let garbage = client.call_tool(call("garbage", json!({}))).await?;
    assert_eq!(text_of(&garbage)?, "garbage sent");
    proxy.wait_for_log(&["not JSON-RPC", "this line is not JSON-RPC {", session]).await?;
    let after = client.call_tool(call("echo", json!({"text":"still here"}))).await?;
    assert_eq!(text_of(&after)?, "still here");

    // notify: a log message and a progress notification arrive before the result.
    let mut notify = call("notify", json!({}));
    notify.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(NumberOrString::String("tok-1".into()))));
    let notified = client.call_tool(notify).await?;
    assert_eq!(text_of(&notified)?, "notified");
    let seen = client.service().seen.clone();
    assert_eq!(seen.logs.lock().unwrap().clone(), vec![json!("notify: working")]);
    assert_eq!(seen.progress.lock().unwrap().clone(), vec!["halfway".to_owned()]);

    // roots: the child's roots/list reaches the client; its answer goes back to the child.
    let roots = client.call_tool(call("roots", json!({}))).await?;
    let answered: Value = serde_json::from_str(&text_of(&roots)?)?;
    assert_eq!(answered["roots"][0]["uri"], ROOT_URI);
    assert_eq!(*seen.roots_asked.lock().unwrap(), 1);

    // A message sent with no request in flight goes to the session's GET stream.
    let later = client.call_tool(call("notify_later", json!({"ms":200}))).await?;
    assert_eq!(text_of(&later)?, "will notify");
    let unrelated = json!("later: unrelated to any request");
    for _ in 0..300 {
        if seen.logs.lock().unwrap().contains(&unrelated) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.logs.lock().unwrap().contains(&unrelated), "no message on the GET stream");

    client.cancel().await?;
    // The client's DELETE on close stops the child.
    wait_gone(pid).await?;
    Ok(())
}

#[tokio::test]
async fn concurrent_calls_in_one_session_overlap() -> Result<()> {
    let proxy = Proxy::start(&[], &[FIXTURE]).await?;
    let client = connect(&proxy).await?;
    let calls = (0..10).map(|_| client.call_tool(call("slow", json!({"ms":500}))));
    let results = futures_util::future::join_all(calls).await;
    let mut spans = Vec::new();
    let mut pids = HashSet::new();
    for result in results {
        let report: Value = serde_json::from_str(&text_of(&result?)?)?;
        spans.push((report["start_us"].as_u64().context("start")?, report["end_us"].as_u64().context("end")?));
        pids.insert(report["pid"].as_u64());
    }
    // One child served them all, and all ten were running at one instant (by the fixture's
    // own clock): the last to start began before the first to finish ended.
    assert_eq!(pids.len(), 1);
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(latest_start < earliest_end, "calls did not overlap: {spans:?}");
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn crash_ends_the_session_with_a_clear_error() -> Result<()> {
    let proxy = Proxy::start(&[], &[FIXTURE]).await?;

    // rmcp client: the pending call fails naming the exit, and so does the next one.
    let client = connect(&proxy).await?;
    let pid = fixture_pid(&client).await?;
    let err = client.call_tool(call("crash", json!({}))).await.expect_err("crash must fail").to_string();
    assert!(err.contains("the stdio server exited (exit status: 3)"), "{err}");
    wait_gone(pid).await?;
    let later = client.call_tool(call("echo", json!({"text":"x"}))).await;
    assert!(later.is_err(), "a call after the crash must fail: {later:?}");

    // Raw HTTP: later requests get 404 (the session is over) and a body that says why.
    let sid = raw_session(&proxy).await?;
    let crash = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"crash"}});
    let (status, _, body) = post(&proxy.url(), &[("mcp-session-id", &sid)], &crash).await?;
    assert_eq!(status, 200);
    assert_eq!(body["id"], 2);
    assert_eq!(body["error"]["code"], -32603);
    assert_eq!(body["error"]["message"], "the stdio server exited (exit status: 3)");
    let echo = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}});
    let (status, _, body) = post(&proxy.url(), &[("mcp-session-id", &sid)], &echo).await?;
    assert_eq!(status, 404);
    assert_eq!(body["id"], 3);
    assert_eq!(body["error"]["message"], "session ended: the stdio server exited (exit status: 3)");
    Ok(())
}

#[tokio::test]
async fn delete_kills_the_child() -> Result<()> {
    let proxy = Proxy::start(&[], &[FIXTURE]).await?;
    let sid = raw_session(&proxy).await?;
    let pid_call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pid"}});
    let (_, _, body) = post(&proxy.url(), &[("mcp-session-id", &sid)], &pid_call).await?;
    let report: Value = serde_json::from_str(body["result"]["content"][0]["text"].as_str().context("text")?)?;
    let pid = report["pid"].as_u64().context("pid")? as u32;
    assert!(pid_alive(pid));

    let resp = reqwest::Client::new().delete(proxy.url()).header("mcp-session-id", &sid).send().await?;
    assert_eq!(resp.status(), 200);
    wait_gone(pid).await?;
    proxy.wait_for_log(&["the client ended the session", &sid]).await?;

    let (status, _, body) = post(&proxy.url(), &[("mcp-session-id", &sid)], &pid_call).await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "session ended: the session was ended by the client (HTTP DELETE)");
    let resp = reqwest::Client::new().delete(proxy.url()).header("mcp-session-id", &sid).send().await?;
    assert_eq!(resp.status(), 404);
    Ok(())
}

#[tokio::test]
async fn idle_timeout_kills_the_child() -> Result<()> {
    let proxy = Proxy::start(&["--idle-timeout-secs", "2"], &[FIXTURE]).await?;
    let client = connect(&proxy).await?;
    let pid = fixture_pid(&client).await?;
    wait_gone(pid).await?;
    proxy.wait_for_log(&["idle for 2s"]).await?;
    assert!(client.call_tool(call("echo", json!({"text":"x"}))).await.is_err());
    Ok(())
}

#[tokio::test]
async fn max_sessions_is_enforced() -> Result<()> {
    let proxy = Proxy::start(&["--max-sessions", "2"], &[FIXTURE]).await?;
    let first = connect(&proxy).await?;
    let second = connect(&proxy).await?;
    let third = connect(&proxy).await;
    let err = format!("{:?}", third.err().context("a third session must be refused")?);
    assert!(err.contains("too many sessions") && err.contains("--max-sessions"), "{err}");

    // Raw: 503 with a JSON-RPC error naming the limit.
    let (status, headers, body) = post(&proxy.url(), &[], &init_body()).await?;
    assert_eq!(status, 503);
    assert!(headers.get("mcp-session-id").is_none());
    assert_eq!(body["error"]["code"], -32000);
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("at most 2"), "{body}");

    // Ending one frees a slot.
    first.cancel().await?;
    let fourth = connect(&proxy).await?;
    let echoed = fourth.call_tool(call("echo", json!({"text":"room again"}))).await?;
    assert_eq!(text_of(&echoed)?, "room again");
    second.cancel().await?;
    fourth.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn raw_wire_checks() -> Result<()> {
    let proxy = Proxy::start(&[], &[FIXTURE]).await?;
    let sid = raw_session(&proxy).await?;

    // Fields no SDK models pass through untouched, and the client's id comes back.
    let echo =
        json!({"jsonrpc":"2.0","id":"my-id","method":"tools/call","params":{"name":"echo","arguments":{"text":"raw"}}});
    let (status, headers, body) = post(&proxy.url(), &[("mcp-session-id", &sid)], &echo).await?;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert_eq!(body["id"], "my-id");
    assert_eq!(body["result"]["x-fixture-extra"], json!({"kept": true}));
    assert!(body["result"].get("resultType").is_none(), "a legacy session keeps the legacy shape");

    // SEP-2243: a Mcp-Name header that disagrees with the body is refused.
    let lying = [("mcp-session-id", sid.as_str()), ("mcp-method", "tools/call"), ("mcp-name", "pid")];
    let (status, _, body) = post(&proxy.url(), &lying, &echo).await?;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32020);

    // Unknown session: 404; no session on a non-initialize request: 400.
    let (status, _, _) = post(&proxy.url(), &[("mcp-session-id", "nope")], &echo).await?;
    assert_eq!(status, 404);
    let (status, _, _) = post(&proxy.url(), &[], &echo).await?;
    assert_eq!(status, 400);

    // DNS-rebinding guard: a foreign Host is refused.
    let resp = reqwest::Client::new()
        .post(proxy.url())
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(init_body().to_string())
        .send()
        .await?;
    assert_eq!(resp.status(), 403);

    // Health.
    let health: Value = reqwest::get(format!("{}/health", proxy.base)).await?.json().await?;
    assert_eq!(health, json!({"status":"ok"}));
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_every_child() -> Result<()> {
    let proxy = Proxy::start(&[], &[FIXTURE]).await?;
    let a = connect(&proxy).await?;
    let b = connect(&proxy).await?;
    let pids = [fixture_pid(&a).await?, fixture_pid(&b).await?];
    let status = proxy.terminate().await?;
    assert!(status.success(), "proxy exit: {status}");
    for pid in pids {
        // Gone and reaped by the time the proxy exits.
        assert!(!pid_alive(pid), "child {pid} outlived the proxy");
    }
    drop((a, b));
    Ok(())
}
