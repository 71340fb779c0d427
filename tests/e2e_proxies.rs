//! The whole MCP client journey through each real proxy, with the proxy configurations of
//! `deploy/` (only addresses substituted, see `common::proxies`): an unauthenticated call gets
//! 401 and the challenge; the RFC 9728 and RFC 8414 metadata are discovered through the proxy;
//! the client registers, logs in with PKCE and redeems its code, all through the proxy; an MCP
//! client (rmcp's own) then calls `mcp-echo`, whose `authContext` shows the identity the proxy
//! passed on (and not one the client forged), and whose `printHeader` shows the user's token was
//! not passed on. A token for another resource is refused, a per-tool rule yields a 403
//! `insufficient_scope` step-up challenge, a revoked token is refused at the next call, a browser
//! is sent to `verify.login_url`, and with mcp-authd gone the proxy refuses everything.
//!
//! Traefik, Caddy, nginx and Envoy (HTTP and gRPC ext_authz) run as children of the test;
//! `make test-deps` installs them, and a missing one fails the test naming it.

mod common;

use std::collections::HashMap;

use common::oauth::*;
use common::proxies::{self, Kind, Upstreams, start_echo};
use common::server::{Options, Server, free_port};
use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

/// A raw JSON-RPC POST as a 2026-07-28 client sends it, with the SEP-2243 headers.
async fn post(url: &str, token: Option<&str>, method: &str, name: Option<&str>) -> reqwest::Response {
    let meta = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let mut body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"_meta": meta}});
    let mut req = http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        body["params"]["name"] = name.into();
        req = req.header("mcp-name", name);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.json(&body).send().await.unwrap()
}

fn challenge(res: &reqwest::Response) -> String {
    res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The text of a tool result, parsed as the JSON the echo tools return.
fn tool_json(result: &rmcp::model::CallToolResult) -> Value {
    let text = result.content.iter().find_map(|c| c.as_text().map(|t| t.text.clone())).expect("a text result");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn journey(kind: Kind) {
    let (port, grpc, echo_port) = (free_port(), free_port(), free_port());
    let public = format!("http://127.0.0.1:{port}");
    let echo = format!("{public}/echo/mcp");
    let fetch = format!("{public}/fetch/mcp");
    let s = Server::start_with(Options {
        toml: format!(
            "[oauth]\nscopes_supported = [\"mcp\", \"admin\"]\n\n\
             [verify]\ngrpc_bind = \"127.0.0.1:{grpc}\"\nlogin_url = \"https://sso.example.com/start\"\n\n\
             [[resources]]\nurl = \"{echo}\"\n\
             [[resources.rules]]\nmethod = \"tools/call\"\nname = \"environmentDump\"\nrequired_scopes = [\"admin\"]\n\n\
             [[resources]]\nurl = \"{fetch}\"\n"
        ),
        issuer: Some(public.clone()),
        ..Options::default()
    });
    let _echo = start_echo(echo_port, &format!("127.0.0.1:{port}"));
    let up = Upstreams { authd: s.port, authd_grpc: grpc, echo: echo_port, fetch: free_port(), time: free_port() };
    let proxy = proxies::start_on(kind, &up, port);
    let ctx = |what: &str| {
        let denied: Vec<String> = s.logs().lines().filter(|l| l.contains("request denied")).map(String::from).collect();
        format!(
            "{kind:?}: {what}\n--- mcp-authd refusals ---\n{}\n--- proxy log ---\n{}",
            denied.join("\n"),
            proxy.log()
        )
    };

    // 0. The device flow's endpoints are routed to mcp-authd, unchecked (RFC 8628 clients).
    let page = reqwest::get(format!("{public}/device")).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{}", ctx("GET /device"));
    assert!(page.text().await.unwrap().contains("user_code"));
    let res = reqwest::Client::new()
        .post(format!("{public}/device_authorization"))
        .form(&[("client_id", "nobody")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{}", ctx("POST /device_authorization"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "mcp-authd answered, not the proxy");

    // 1. No token: 401 and the RFC 9728 pointer, through the proxy, with the scope to ask for.
    let res = post(&echo, None, "initialize", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{}", ctx("unauthenticated call"));
    let metadata_url = format!("{public}/.well-known/oauth-protected-resource/echo/mcp");
    assert_eq!(challenge(&res), format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp\""));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    // A client of an earlier protocol revision does not say which method it calls (no
    // Mcp-Method): it is asked for every rule's scope up front.
    let res = http()
        .post(&echo)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let legacy = challenge(&res);
    assert!(legacy.ends_with("scope=\"mcp admin\""), "{legacy}");

    // A person opening the URL in a browser is sent to log in (verify.login_url) instead.
    let res = http().get(&echo).header("accept", "text/html,*/*;q=0.8").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND, "{}", ctx("browser"));
    let location = res.headers()["location"].to_str().unwrap();
    let rd = url::form_urlencoded::byte_serialize(echo.as_bytes()).collect::<String>();
    assert_eq!(location, format!("https://sso.example.com/start?rd={rd}"));

    // 2. Discovery through the proxy: RFC 9728, then RFC 8414 at the server it names.
    let res = http().get(&metadata_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", ctx("RFC 9728 metadata"));
    let meta: Value = res.json().await.unwrap();
    assert_eq!(meta["resource"], echo.as_str());
    assert_eq!(meta["authorization_servers"][0], public.as_str());
    let as_meta: Value = http()
        .get(format!("{public}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_meta["issuer"], public.as_str());
    assert_eq!(as_meta["registration_endpoint"], format!("{public}/register"));
    assert_eq!(as_meta["code_challenge_methods_supported"], serde_json::json!(["S256"]));

    // 3. Registration, authorization with PKCE (asking for the scope the challenge named), login
    // and token, all through the proxy.
    let client = register_public(&s).await;
    let p = pkce();
    let authorize =
        authorize_url(&s, &client.id, REDIRECT, &p.challenge, &echo).replace("scope=mcp", "scope=mcp+admin");
    let back = login_alice(&s, &authorize).await;
    let code = param(&back, "code").unwrap_or_else(|| panic!("{}", ctx(&back)));
    let (status, tokens) = redeem(&s, &client.id, &code, &p.verifier, Some(&echo)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "mcp admin");
    let token = tokens["access_token"].as_str().unwrap().to_owned();

    // 4. A real MCP client through the proxy; the client tries to pass for someone else.
    let forged = HashMap::from([
        ("x-user-id".parse().unwrap(), "admin".parse().unwrap()),
        ("x-user-email".parse().unwrap(), "ceo@example.com".parse().unwrap()),
    ]);
    let config =
        StreamableHttpClientTransportConfig::with_uri(echo.as_str()).auth_header(&token).custom_headers(forged);
    let mcp = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap_or_else(|e| {
        panic!("{}", ctx(&format!("MCP initialize: {e}")));
    });
    let tools = mcp.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "authContext"), "{tools:?}");
    let auth = tool_json(&mcp.call_tool(CallToolRequestParams::new("authContext")).await.unwrap());
    assert_eq!(auth["user_id"], "local:alice", "{}", ctx(&auth.to_string()));
    assert_eq!(auth["user_name"], "alice");
    assert_eq!(auth["user_email"], "alice@example.com");
    assert_eq!(auth["client_id"], client.id.as_str());
    assert_eq!(auth["scope"], "mcp admin");
    // The user's token stays at the proxy (verify.forward_token is off).
    let headers = tool_json(&mcp.call_tool(CallToolRequestParams::new("printHeader")).await.unwrap());
    assert_eq!(headers["auth"]["x-user-id"], "local:alice", "{}", ctx(&headers.to_string()));
    let text = headers.to_string().to_ascii_lowercase();
    assert!(!text.contains("\"authorization\""), "{}", ctx(&text));
    mcp.cancel().await.unwrap();

    // 5. A per-tool rule: a 2026-07-28 client with the default scope may list tools, but calling
    // the ruled tool gets 403 with the step-up challenge, which the proxy passes on as it is.
    let plain = tokens_for(&s, &client, &echo).await;
    let plain = plain["access_token"].as_str().unwrap();
    let res = post(&echo, Some(plain), "tools/list", None).await;
    let st = res.status();
    assert!(st.is_success(), "{}", ctx(&format!("labelled tools/list: {st} {}", res.text().await.unwrap())));
    let res = post(&echo, Some(plain), "tools/call", Some("environmentDump")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "{}", ctx("per-tool rule"));
    assert!(challenge(&res).starts_with("Bearer error=\"insufficient_scope\", scope=\"admin\""), "{}", challenge(&res));

    // 6. A token for another resource behind the same proxy: 401.
    let other = tokens_for(&s, &client, &fetch).await;
    let res = post(&echo, other["access_token"].as_str(), "tools/list", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{}", ctx("token for another resource"));
    assert!(challenge(&res).contains("token is for another resource"), "{}", challenge(&res));

    // 7. Revoked (through the proxy), refused at the next call.
    let (st, _) = post_form(&s, "/revoke", &[("token", &token), ("client_id", &client.id)], None).await;
    assert_eq!(st, StatusCode::OK);
    let res = post(&echo, Some(&token), "tools/list", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{}", ctx("revoked token"));
    assert!(challenge(&res).contains("token revoked"), "{}", challenge(&res));

    // 8. mcp-authd gone: the proxy refuses (fails closed), even a token that was good.
    let good = tokens_for(&s, &client, &echo).await;
    let good = good["access_token"].as_str().unwrap().to_owned();
    assert!(post(&echo, Some(&good), "tools/list", None).await.status().is_success());
    let mut s = s;
    s.stop();
    let st = post(&echo, Some(&good), "tools/list", None).await.status();
    assert!(st.is_server_error(), "{kind:?}: mcp-authd down: {st}\n{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_traefik() {
    journey(Kind::Traefik).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_caddy() {
    journey(Kind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx() {
    journey(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_envoy_http_ext_authz() {
    journey(Kind::EnvoyHttp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_envoy_grpc_ext_authz() {
    journey(Kind::EnvoyGrpc).await;
}
