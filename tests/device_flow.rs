//! RFC 8628 device authorization against the real binary: the whole flow (device code, the
//! person at `/device`, login, confirmation, polling, tokens that pass /verify), registration of
//! device-code clients (the Python gateway's client bridge's request among them), and every error
//! path: pending, slow_down, denied, expired, replayed, another client's code, guessed user codes
//! locked out, a confirmation posted without the browser's cookie.

mod common;

use std::time::Duration;

use common::oauth::*;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn server(extra: &str) -> Server {
    // A 1 s polling interval keeps the tests quick; the default is 5 s.
    Server::start_with(Options { toml: format!("[tokens]\ndevice_poll_interval = 1\n{extra}"), ..Options::default() })
}

async fn device_client(s: &Server) -> Registered {
    register(
        s,
        json!({
            "token_endpoint_auth_method": "none",
            "grant_types": [DEVICE_GRANT, "refresh_token"],
            "client_name": "Terminal bridge",
        }),
    )
    .await
}

async fn start(s: &Server, form: &[(&str, &str)]) -> (StatusCode, Value) {
    post_form(s, "/device_authorization", form, None).await
}

async fn poll(s: &Server, client_id: &str, device_code: &str, secret: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", DEVICE_GRANT), ("device_code", device_code), ("client_id", client_id)];
    form.extend(secret.map(|s| ("client_secret", s)));
    post_form(s, "/token", &form, None).await
}

#[tokio::test]
async fn the_whole_device_flow() {
    let s = server("");
    let meta: Value =
        http().get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["device_authorization_endpoint"], s.url("/device_authorization"));
    assert!(meta["grant_types_supported"].as_array().unwrap().iter().any(|g| g == DEVICE_GRANT));

    let client = device_client(&s).await;
    assert!(
        client.body.get("redirect_uris").is_none_or(|r| r.as_array().is_some_and(|a| a.is_empty())),
        "{}",
        client.body
    );
    let (st, d) = start(&s, &[("client_id", &client.id), ("scope", "mcp"), ("resource", RESOURCE)]).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let user_code = d["user_code"].as_str().unwrap();
    assert!(user_code.len() == 9 && user_code.as_bytes()[4] == b'-', "{user_code}");
    assert_eq!(d["verification_uri"], s.url("/device"));
    assert_eq!(d["verification_uri_complete"], format!("{}?user_code={user_code}", s.url("/device")));
    assert_eq!((d["expires_in"].as_u64(), d["interval"].as_u64()), (Some(600), Some(1)));
    let device_code = d["device_code"].as_str().unwrap();

    // Before the person decides: pending; polling again at once: slow_down (RFC 8628 §3.5).
    let (st, e) = poll(&s, &client.id, device_code, None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("authorization_pending")));
    let (st, e) = poll(&s, &client.id, device_code, None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("slow_down")));

    // The person, on any browser: the code page, login, and a page naming who asks for what.
    let page = http().get(s.url("/device")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("name=\"user_code\""), "{page}");
    let (cookie, session, page) = person_logs_in(&s, d["verification_uri_complete"].as_str().unwrap()).await;
    for shown in ["alice", "Terminal bridge", RESOURCE, "mcp", "value=\"approve\"", "value=\"deny\""] {
        assert!(page.contains(shown), "{shown} missing from the confirmation page:\n{page}");
    }
    // A confirmation posted without the browser's cookie (another site's form) does nothing.
    let (st, _) = decide(&s, None, &session, "approve").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, page) = decide(&s, Some(&cookie), &session, "approve").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Approved"));

    // The interval grew to 6 s at the slow_down.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    let (st, tokens) = poll(&s, &client.id, device_code, None).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "mcp");
    assert!(tokens["refresh_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap();
    let res = verify(&s, Some(access), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-user-id"], "local:alice");
    assert_eq!(res.headers()["x-client-id"], client.id.as_str());
    // The refresh token works like any other.
    let (st, refreshed) = refresh(&s, &client.id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{refreshed}");

    // Replayed device code: invalid_grant, and what it produced is revoked.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    let (st, e) = poll(&s, &client.id, device_code, None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(verify(&s, Some(access), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    let refreshed = refreshed["access_token"].as_str().unwrap();
    assert_eq!(verify(&s, Some(refreshed), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    // The user code is spent too.
    let res = http().get(d["verification_uri_complete"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn denied_expired_and_another_clients_code() {
    let s = server("device_code_ttl = 3\n");
    let client = device_client(&s).await;
    let other = device_client(&s).await;

    // Denied.
    let (_, d) = start(&s, &[("client_id", &client.id), ("resource", RESOURCE)]).await;
    let (cookie, session, _) = person_logs_in(&s, d["verification_uri_complete"].as_str().unwrap()).await;
    let (st, page) = decide(&s, Some(&cookie), &session, "deny").await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("Denied"));
    let (st, e) = poll(&s, &client.id, d["device_code"].as_str().unwrap(), None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("access_denied")));
    // Decided once: the confirmation cannot be replayed to approve.
    let (st, _) = decide(&s, Some(&cookie), &session, "approve").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Another client's device code: invalid_grant, and it changes nothing for the right client.
    let (_, d) = start(&s, &[("client_id", &client.id), ("resource", RESOURCE)]).await;
    let code = d["device_code"].as_str().unwrap();
    let (st, e) = poll(&s, &other.id, code, None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (_, e) = poll(&s, &client.id, code, None).await;
    assert_eq!(e["error"], "authorization_pending");
    let (_, e) = poll(&s, &client.id, "not-a-device-code", None).await;
    assert_eq!(e["error"], "invalid_grant");

    // Expired (3 s here): expired_token, and the page no longer takes the code.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (st, e) = poll(&s, &client.id, code, None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("expired_token")));
    let res = http().get(d["verification_uri_complete"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn guessed_user_codes_are_locked_out() {
    let s = server("");
    let client = device_client(&s).await;
    let (_, d) = start(&s, &[("client_id", &client.id), ("resource", RESOURCE)]).await;
    let right = d["verification_uri_complete"].as_str().unwrap();
    for guess in 0..10 {
        let res = http().get(format!("{}?user_code=BBBB-{:04}", s.url("/device"), guess)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "guess {guess}");
    }
    // The 11th attempt from this address is refused, even with the right code.
    let res = http().get(right).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let page = res.text().await.unwrap();
    assert!(page.contains("Too many wrong codes"), "{page}");
}

#[tokio::test]
async fn registration_and_client_authentication_of_device_clients() {
    let s = server("");
    // The Python gateway's client bridge (mcp-streamablehttp-client) registers like this.
    let bridge = register(
        &s,
        json!({
            "client_name": "mcp-streamablehttp-client",
            "redirect_uris": ["urn:ietf:wg:oauth:2.0:oob"],
            "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
            "scope": "read write",
        }),
    )
    .await;
    let secret = bridge.secret.clone().expect("a confidential client");
    assert_eq!(bridge.body["redirect_uris"], json!(["urn:ietf:wg:oauth:2.0:oob"]));
    // Scopes this server does not know are narrowed (RFC 7591 §3.2.1 says what was granted).
    assert_eq!(bridge.body["scope"], "mcp");
    // The out-of-band URI is never a redirect.
    let p = pkce();
    let res = http()
        .get(authorize_url(&s, &bridge.id, "urn:ietf:wg:oauth:2.0:oob", &p.challenge, RESOURCE))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());
    // ... and only device-code clients may register it.
    let res = http()
        .post(s.url("/register"))
        .json(&json!({"redirect_uris": ["urn:ietf:wg:oauth:2.0:oob"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_redirect_uri");

    // A confidential client may start with its client_id alone (as that bridge does)...
    let (st, d) = start(&s, &[("client_id", &bridge.id), ("resource", RESOURCE)]).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    // ... but credentials it does send must be right ...
    let (st, e) = start(&s, &[("client_id", &bridge.id), ("client_secret", "wrong"), ("resource", RESOURCE)]).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // ... and the token endpoint wants the secret.
    let code = d["device_code"].as_str().unwrap();
    let (st, e) = poll(&s, &bridge.id, code, None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let (_, e) = poll(&s, &bridge.id, code, Some(&secret)).await;
    assert_eq!(e["error"], "authorization_pending");

    // A client without the device grant may not start one; an unknown client is invalid_client.
    let web = register_public(&s).await;
    let (st, e) = start(&s, &[("client_id", &web.id), ("resource", RESOURCE)]).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));
    let (st, e) = start(&s, &[("client_id", "nobody"), ("resource", RESOURCE)]).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // A resource this server does not protect.
    let (st, e) = start(&s, &[("client_id", &bridge.id), ("resource", "https://elsewhere.example/mcp")]).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_target")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_authd_login_gets_a_token_from_the_terminal() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let s = server("");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .args(["login", "--issuer", &s.base, "--resource", RESOURCE])
        .env_remove("MCP_AUTHD_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It prints where to go; the person goes there and approves.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "login exited without printing the URL");
        if let Some(url) = line.trim().strip_prefix("To sign in, open ") {
            break url.to_owned();
        }
    };
    assert!(url.starts_with(&s.url("/device?user_code=")), "{url}");
    let (cookie, session, page) = person_logs_in(&s, &url).await;
    assert!(page.contains("mcp-authd login (CLI)"), "{page}");
    let (st, _) = decide(&s, Some(&cookie), &session, "approve").await;
    assert_eq!(st, StatusCode::OK);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let res = verify(&s, Some(&token), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-user-id"], "local:alice");
}
