//! Every tool, called by rmcp's own Streamable HTTP client against the real binary, in both
//! modes (stateless default and `--stateful`).

mod common;

use common::{Server, call, call_json, expected_tools, make_jwt, text, tool_names, unix_now};
use serde_json::{Value, json};

const SECRET_VAR: &str = "ECHO_TEST_API_KEY";
const SECRET_VALUE: &str = "s3cr3t-value-for-the-test";
const PLAIN_VAR: &str = "ECHO_TEST_PLAIN";

fn mode_args(stateful: bool) -> Vec<&'static str> {
    if stateful { vec!["--stateful"] } else { vec![] }
}

async fn start(stateful: bool, extra: &[&str]) -> anyhow::Result<Server> {
    let mut args = mode_args(stateful);
    args.extend_from_slice(extra);
    Server::start(&args, &[(SECRET_VAR, SECRET_VALUE), (PLAIN_VAR, "visible")]).await
}

async fn lists_the_tools_of_its_mode(stateful: bool) -> anyhow::Result<()> {
    let server = start(stateful, &[]).await?;
    let client = server.client(&[]).await?;
    assert_eq!(tool_names(&client).await?, expected_tools(stateful));
    let info = client.peer_info().expect("server info after initialize");
    let implementation = info.server_info.as_ref().expect("serverInfo");
    assert_eq!(implementation.name, "mcp-echo");
    assert_eq!(implementation.version, env!("CARGO_PKG_VERSION"));
    let instructions = info.instructions.as_deref().unwrap_or_default();
    assert!(instructions.contains("diagnostic"), "{instructions}");
    assert!(instructions.contains(if stateful { "Stateful" } else { "Stateless" }), "{instructions}");
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn stateless_lists_common_tools_only() -> anyhow::Result<()> {
    lists_the_tools_of_its_mode(false).await
}

#[tokio::test]
async fn stateful_lists_session_tools_too() -> anyhow::Result<()> {
    lists_the_tools_of_its_mode(true).await
}

/// Calls every common tool with real headers and arguments and checks what comes back.
async fn common_tools_answer(stateful: bool) -> anyhow::Result<()> {
    let server = start(stateful, &[]).await?;
    let exp = unix_now() + 3600;
    let jwt = make_jwt(&json!({ "sub": "alice", "aud": "http://127.0.0.1/mcp", "exp": exp, "scope": "mcp" }));
    let client = server
        .client_with(
            &[
                ("x-echo-test", "hello-header"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-user-id", "u-42"),
                ("x-user-name", "alice"),
                ("x-user-email", "alice@example.com"),
                ("x-client-id", "client-7"),
                ("x-scope", "mcp:read mcp:write"),
                ("origin", "https://app.example.com"),
            ],
            Some(&jwt),
        )
        .await?;

    let echoed = call(&client, "echo", json!({ "message": "ping 🏓" })).await?;
    assert_eq!(text(&echoed), "ping 🏓");

    let headers = call_json(&client, "printHeader", json!({})).await?;
    assert_eq!(headers["other"]["x-echo-test"], "hello-header", "{headers}");
    assert_eq!(headers["forwarded"]["x-forwarded-for"], "203.0.113.9");
    assert_eq!(headers["auth"]["x-user-id"], "u-42");
    assert_eq!(headers["auth"]["authorization"], format!("Bearer <redacted, {} chars>", jwt.len()));
    let whole = call(&client, "printHeader", json!({})).await?;
    assert!(!format!("{whole:?}").contains(&jwt), "the bearer token leaked");

    let decoded = call_json(&client, "bearerDecode", json!({})).await?;
    assert_eq!(decoded["decoded"], true, "{decoded}");
    assert_eq!(decoded["verified"], false);
    assert_eq!(decoded["header"]["typ"], "at+jwt");
    assert_eq!(decoded["claims"]["sub"], "alice");
    assert_eq!(decoded["claims"]["exp"], exp);
    let expiry = decoded["expiry"].as_str().unwrap_or_default();
    assert!(expiry.starts_with("expires in "), "{expiry}");

    let auth = call_json(&client, "authContext", json!({})).await?;
    assert_eq!(auth["authenticated"], true);
    assert_eq!(auth["user_id"], "u-42");
    assert_eq!(auth["user_name"], "alice");
    assert_eq!(auth["user_email"], "alice@example.com");
    assert_eq!(auth["client_id"], "client-7");
    assert_eq!(auth["scopes"], json!(["mcp:read", "mcp:write"]));

    let timing = call_json(&client, "requestTiming", json!({})).await?;
    assert!(timing["since_request_arrived_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{timing}");
    assert!(timing["process_uptime_seconds"].as_f64().is_some_and(|s| s > 0.0), "{timing}");
    assert!(timing["monotonic_seconds"].as_f64().is_some_and(|s| s > 0.0), "{timing}");
    assert!(timing["load_average"]["1m"].is_number(), "{timing}");

    let cors = call_json(&client, "corsAnalysis", json!({})).await?;
    assert_eq!(cors["origin"], "https://app.example.com");
    assert_eq!(cors["kind"], "cross-origin");
    assert_eq!(cors["request_method"], "POST");

    let env = call_json(&client, "environmentDump", json!({})).await?;
    assert_eq!(env["variables"][SECRET_VAR], "<masked>", "{env}");
    assert_eq!(env["variables"][PLAIN_VAR], "visible");
    assert_eq!(env["secrets_shown"], false);
    assert!(env["masked"].as_array().is_some_and(|m| m.contains(&json!(SECRET_VAR))));

    let health = call_json(&client, "healthProbe", json!({})).await?;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["pid"], server.child.id().expect("running"));
    assert!(health["rss_kib"].as_u64().is_some_and(|r| r > 0), "{health}");
    assert!(health["threads"].as_u64().is_some_and(|t| t >= 1), "{health}");
    assert!(health["open_fds"].as_u64().is_some_and(|n| n >= 3), "{health}");
    assert!(health["memory_available_kib"].as_u64().is_some_and(|m| m > 0), "{health}");

    let goat = call(&client, "whoIStheGOAT", json!({})).await?;
    assert!(text(&goat).contains("open-source community"), "{goat:?}");

    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn stateless_tools_answer() -> anyhow::Result<()> {
    common_tools_answer(false).await
}

#[tokio::test]
async fn stateful_tools_answer() -> anyhow::Result<()> {
    common_tools_answer(true).await
}

#[tokio::test]
async fn missing_token_and_identity_are_explained() -> anyhow::Result<()> {
    let server = start(false, &[]).await?;
    let anonymous = server.client(&[]).await?;
    let decoded = call_json(&anonymous, "bearerDecode", json!({})).await?;
    assert_eq!(decoded["decoded"], false);
    assert!(decoded["message"].as_str().unwrap_or_default().contains("no Authorization header"), "{decoded}");
    let auth = call_json(&anonymous, "authContext", json!({})).await?;
    assert_eq!(auth["authenticated"], false);
    assert_eq!(auth["user_id"], Value::Null);
    assert_eq!(auth["note"], "not behind mcp-authd, or the proxy does not forward identity headers");

    let opaque = server.client_with(&[], Some("not-a-jwt-at-all")).await?;
    let decoded = call_json(&opaque, "bearerDecode", json!({})).await?;
    assert_eq!(decoded["decoded"], false);
    assert!(decoded["message"].as_str().unwrap_or_default().contains("not a JWT"), "{decoded}");
    anonymous.cancel().await?;
    opaque.cancel().await?;
    Ok(())
}

/// Secrets need both keys: the operator's `--allow-secret-env` and the caller's `showSecrets`.
#[tokio::test]
async fn secrets_need_the_flag_and_the_request() -> anyhow::Result<()> {
    let locked = start(false, &[]).await?;
    let client = locked.client(&[]).await?;
    let env = call_json(&client, "environmentDump", json!({ "showSecrets": true })).await?;
    assert_eq!(env["variables"][SECRET_VAR], "<masked>");
    assert_eq!(env["secrets_shown"], false);
    assert!(env["why"].as_str().unwrap_or_default().contains("--allow-secret-env"), "{env}");
    client.cancel().await?;

    for how in [vec!["--allow-secret-env"], vec![]] {
        let mut env_vars = vec![(SECRET_VAR, SECRET_VALUE)];
        if how.is_empty() {
            env_vars.push(("MCP_ALLOW_SECRET_ENV", "true"));
        }
        let open = Server::start(&how, &env_vars).await?;
        let client = open.client(&[]).await?;
        let shown = call_json(&client, "environmentDump", json!({ "showSecrets": true })).await?;
        assert_eq!(shown["variables"][SECRET_VAR], SECRET_VALUE, "{how:?}");
        assert_eq!(shown["secrets_shown"], true);
        let default = call_json(&client, "environmentDump", json!({})).await?;
        assert_eq!(default["variables"][SECRET_VAR], "<masked>");
        assert!(!default.to_string().contains(SECRET_VALUE));
        client.cancel().await?;
    }
    Ok(())
}

#[tokio::test]
async fn stateless_has_no_session_tools() -> anyhow::Result<()> {
    let server = start(false, &[]).await?;
    let client = server.client(&[]).await?;
    for tool in ["replayLastEcho", "sessionInfo"] {
        let refused = call(&client, tool, json!({})).await;
        assert!(refused.is_err(), "{tool} answered in stateless mode: {refused:?}");
    }
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn sessions_keep_their_own_echo_and_count_calls() -> anyhow::Result<()> {
    let server = start(true, &[]).await?;
    let a = server.client(&[]).await?;
    let b = server.client(&[]).await?;

    let none = call_json(&a, "replayLastEcho", json!({})).await?;
    assert_eq!(none["found"], false);
    call(&a, "echo", json!({ "message": "first" })).await?;
    call(&a, "echo", json!({ "message": "second" })).await?;
    let replay = call(&a, "replayLastEcho", json!({})).await?;
    assert_eq!(text(&replay), "second");
    assert_eq!(replay.structured_content.as_ref().map(|v| v["message"].clone()), Some(json!("second")));

    let other = call_json(&b, "replayLastEcho", json!({})).await?;
    assert_eq!(other["found"], false, "session b saw session a's echo: {other}");
    assert_eq!(other["message"], Value::Null);

    let info_a = call_json(&a, "sessionInfo", json!({})).await?;
    // replayLastEcho, echo, echo, replayLastEcho, sessionInfo
    assert_eq!(info_a["calls"], 5, "{info_a}");
    assert_eq!(info_a["protocol_version"], "2025-11-25");
    assert!(info_a["idle_seconds"].as_f64().is_some_and(|s| s >= 0.0));
    assert!(info_a["created_at"].as_str().is_some_and(|s| s.ends_with("+00:00")), "{info_a}");
    let info_b = call_json(&b, "sessionInfo", json!({})).await?;
    assert_eq!(info_b["calls"], 2, "{info_b}");
    let (id_a, id_b) = (info_a["session_id"].as_str(), info_b["session_id"].as_str());
    assert!(id_a.is_some_and(|s| !s.is_empty()));
    assert_ne!(id_a, id_b);

    a.cancel().await?;
    b.cancel().await?;
    Ok(())
}

/// A session left idle past `--session-idle-timeout-secs` is closed: its id answers 404, and the
/// client (which re-initializes on 404) lands in a fresh session without the old echo.
#[tokio::test]
async fn idle_sessions_expire() -> anyhow::Result<()> {
    let server = start(true, &["--session-idle-timeout-secs", "1"]).await?;
    let client = server.client(&[]).await?;
    call(&client, "echo", json!({ "message": "remember me" })).await?;
    let info = call_json(&client, "sessionInfo", json!({})).await?;
    let old_id = info["session_id"].as_str().expect("session id").to_string();

    // Watch the server's log rather than poll the session: every request would reset its idle timer.
    let mut closed = false;
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if server.log_text().lines().any(|l| l.contains("session closed") && l.contains(&old_id)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the idle session was never closed:\n{}", server.log_text());
    let http = reqwest::Client::new();
    let ping = json!({ "jsonrpc": "2.0", "id": 99, "method": "ping" });
    let gone = common::mcp_post(&http, &server.url("/mcp"), &ping)
        .header("mcp-session-id", &old_id)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await?;
    assert_eq!(gone.status(), 404, "an expired session id must be unknown");

    let replay = call_json(&client, "replayLastEcho", json!({})).await?;
    assert_eq!(replay["found"], false, "{replay}");
    let info = call_json(&client, "sessionInfo", json!({})).await?;
    assert_ne!(info["session_id"].as_str(), Some(old_id.as_str()));
    client.cancel().await?;
    Ok(())
}

/// A 2026-07-28 client (`server/discover`, no session) is served in both modes; a stateful server
/// does not offer it the session tools, and says why if it calls one anyway.
#[tokio::test]
async fn modern_clients_are_served_without_sessions() -> anyhow::Result<()> {
    for stateful in [false, true] {
        let server = start(stateful, &[]).await?;
        let client = server.modern_client().await?;
        let info = client.peer_info().expect("discover result");
        assert_eq!(info.protocol_version.to_string(), "2026-07-28");
        assert_eq!(tool_names(&client).await?, expected_tools(false), "stateful={stateful}");
        let echoed = call(&client, "echo", json!({ "message": "from 2026" })).await?;
        assert_eq!(text(&echoed), "from 2026");
        let auth = call_json(&client, "authContext", json!({})).await?;
        assert_eq!(auth["authenticated"], false);
        if stateful {
            let refused = call(&client, "sessionInfo", json!({})).await?;
            assert_eq!(refused.is_error, Some(true));
            assert!(text(&refused).contains("not part of a session"), "{refused:?}");
        }
        client.cancel().await?;
    }
    Ok(())
}
