//! Audit events (issue 8): one structured JSON log line per registration, login success, failure
//! and denial, token issue, refresh, reuse detection, revocation and client deletion, each inside
//! its request's span (request id, client address) and none carrying a secret.

mod common;

use common::oauth::*;
use common::server::{ALICE_PASSWORD, Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::Value;

/// The JSON log lines of the server.
fn events(s: &Server) -> Vec<Value> {
    s.logs()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

/// The audit events named `name`.
fn audit<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["fields"]["audit"] == name).collect()
}

/// The request span an event was logged in.
fn request_span(event: &Value) -> &Value {
    event["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
        .unwrap_or_else(|| panic!("no request span: {event}"))
}

#[tokio::test]
async fn each_audited_action_is_one_json_line_with_its_request() {
    let mallory_hash = mcp_authd::upstream::local::hash_password("mallory-password").unwrap();
    let s = Server::start_with(Options {
        toml: format!(
            "[oauth]\nallowed_users = [\"alice\"]\n\n[[local.users]]\nusername = \"mallory\"\npassword_hash = \"{mallory_hash}\"\n"
        ),
        env: vec![("MCP_AUTHD__SERVER__LOG_FORMAT".into(), "json".into()), ("RUST_LOG".into(), "info".into())],
        ..Options::default()
    });
    let http = http();

    // A registration, from a person behind the (loopback) proxy, with the proxy's request id.
    let res = http
        .post(s.url("/register"))
        .header("x-request-id", "req-register-1")
        .header("x-forwarded-for", "198.51.100.23")
        .json(&serde_json::json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let client: Value = res.json().await.unwrap();
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let registration_token = client["registration_access_token"].as_str().unwrap().to_owned();

    // A wrong password, a user the allow-list refuses, then alice.
    let p = pkce();
    let authorize = authorize_url(&s, &client_id, REDIRECT, &p.challenge, RESOURCE);
    let res = http.get(&authorize).send().await.unwrap();
    let cookie = cookie_of(&res);
    let session = param(&location(&res), "session").unwrap();
    let res = http
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[("session", session.as_str()), ("username", "alice"), ("password", "not-her-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the form again, 401");
    let res = http
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[("session", session.as_str()), ("username", "mallory"), ("password", "mallory-password")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());
    assert_eq!(param(&location(&res), "error").as_deref(), Some("access_denied"));
    let tokens = tokens_for(
        &s,
        &Registered {
            id: client_id.clone(),
            secret: None,
            registration_token: registration_token.clone(),
            body: client.clone(),
        },
        RESOURCE,
    )
    .await;
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // A refresh, then the old refresh token again (reuse), a revocation, a deletion.
    let (status, rotated) = refresh(&s, &client_id, &first_refresh).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (status, _) = refresh(&s, &client_id, &first_refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let again = tokens_for(
        &s,
        &Registered {
            id: client_id.clone(),
            secret: None,
            registration_token: registration_token.clone(),
            body: client.clone(),
        },
        RESOURCE,
    )
    .await;
    let (status, _) = post_form(
        &s,
        "/revoke",
        &[("token", again["refresh_token"].as_str().unwrap()), ("client_id", client_id.as_str())],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let res = http
        .delete(s.url(&format!("/register/{client_id}")))
        .bearer_auth(&registration_token)
        .header("x-request-id", "req-delete-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let all = events(&s);
    let one = |name: &str| -> &Value {
        let found = audit(&all, name);
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        found[0]
    };
    let registered = one("client_registered");
    assert_eq!(registered["fields"]["client_id"], client_id.as_str());
    let span = request_span(registered);
    assert_eq!(span["request_id"], "req-register-1");
    assert_eq!(span["client_ip"], "198.51.100.23", "the address behind the trusted proxy");
    assert_eq!(span["path"], "/register");

    let failed = one("login_failed");
    assert_eq!(failed["fields"]["auth"], "failure");
    assert_eq!(failed["fields"]["user"], "alice");
    assert_eq!(failed["level"], "INFO");
    let denied = one("login_denied");
    assert_eq!(denied["fields"]["user"], "mallory");
    let logins = audit(&all, "login");
    assert_eq!(logins.len(), 2, "two logins of alice");
    assert!(
        logins.iter().all(|e| e["fields"]["client_id"] == client_id.as_str() && e["fields"]["sub"] == "local:alice")
    );

    let issued = audit(&all, "token_issued");
    let grants: Vec<&str> = issued.iter().map(|e| e["fields"]["grant_type"].as_str().unwrap()).collect();
    assert_eq!(grants, ["authorization_code", "refresh_token", "authorization_code"]);
    for e in &issued {
        assert_eq!(e["fields"]["client_id"], client_id.as_str());
        assert!(request_span(e)["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{e}");
    }
    let reuse = one("refresh_reuse");
    assert_eq!(reuse["level"], "WARN");
    assert_eq!(reuse["fields"]["sub"], "local:alice");
    assert!(!audit(&all, "revocation").is_empty());
    let deleted = one("client_deleted");
    assert_eq!(request_span(deleted)["request_id"], "req-delete-1");

    // No secret in any line.
    let log = s.logs();
    for secret in [
        ALICE_PASSWORD,
        "not-her-password",
        "mallory-password",
        registration_token.as_str(),
        first_refresh.as_str(),
        rotated["refresh_token"].as_str().unwrap(),
        rotated["access_token"].as_str().unwrap(),
        tokens["access_token"].as_str().unwrap(),
        again["refresh_token"].as_str().unwrap(),
        p.verifier.as_str(),
        session.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
}
