//! Rate limits (`[rate_limit]`): per client address on the OAuth endpoints, per `client_id` on
//! `/token`, 429 with `Retry-After` in the RFC error format (an HTML page for browsers), the
//! address taken from `X-Forwarded-For` only as far as the trusted proxies vouch for it, and
//! every refusal counted in `/metrics`.

mod common;

use common::oauth::*;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LIMITS: &str = "[rate_limit]\nregister = \"3/min\"\nauthorize = \"2/min\"\ntoken = \"10/min\"\n\
token_per_client = \"2/min\"\nverify = \"2/min\"\n";

fn limited() -> Server {
    Server::start_with(Options { toml: LIMITS.into(), ..Options::default() })
}

/// `POST /register` as the person at `xff` (through the loopback proxy the test plays).
async fn register_from(s: &Server, xff: Option<&str>) -> reqwest::Response {
    let mut req = http().post(s.url("/register")).json(&json!({"redirect_uris": [REDIRECT]}));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

/// Checks a JSON 429: status, `Retry-After` within the limit's interval, RFC body.
async fn assert_json_429(res: reqwest::Response, max_wait: u64) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=max_wait).contains(&wait), "Retry-After {wait}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "temporarily_unavailable", "error_description": format!("too many requests; retry in {wait} s")})
    );
}

async fn rate_limited_total(s: &Server, limit: &str) -> u64 {
    let text = http().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("mcp_authd_rate_limited_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn registration_is_limited_per_address() {
    let s = limited();
    for _ in 0..3 {
        assert_eq!(register_from(&s, Some("198.51.100.1")).await.status(), StatusCode::CREATED);
    }
    // 3/min: the burst is spent, the next slot opens in 20 s.
    assert_json_429(register_from(&s, Some("198.51.100.1")).await, 20).await;
    // SECURITY: what the client writes itself (the left-most hop) does not buy a new budget: the
    // proxy appended the address it saw.
    assert_json_429(register_from(&s, Some("203.0.113.9, 198.51.100.1")).await, 20).await;
    // Another person behind the same proxy has their own budget.
    assert_eq!(register_from(&s, Some("198.51.100.2")).await.status(), StatusCode::CREATED);
    // IPv6: one /64 is one budget.
    for i in 0..3 {
        let addr = format!("2001:db8:7:7::{i}");
        assert_eq!(register_from(&s, Some(&addr)).await.status(), StatusCode::CREATED);
    }
    assert_json_429(register_from(&s, Some("2001:db8:7:7:ffff::1")).await, 20).await;
    assert_eq!(register_from(&s, Some("2001:db8:7:8::1")).await.status(), StatusCode::CREATED);

    // A browser client can read the refusal: CORS exposes Retry-After.
    let res = http()
        .post(s.url("/register"))
        .header("origin", "https://app.example.com")
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let exposed = res.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");

    // Discovery and keys are not limited.
    for _ in 0..20 {
        let res = http()
            .get(s.url("/.well-known/oauth-authorization-server"))
            .header("x-forwarded-for", "198.51.100.1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(rate_limited_total(&s, "register").await, 4);
    assert_eq!(rate_limited_total(&s, "token").await, 0);
}

#[tokio::test]
async fn forwarded_addresses_are_ignored_from_untrusted_peers() {
    // The test's own address is not a trusted proxy here: X-Forwarded-For is the client's word.
    let s = Server::start_with(Options {
        toml: LIMITS.into(),
        env: vec![("MCP_AUTHD__SERVER__TRUSTED_PROXIES".into(), "192.0.2.1".into())],
        ..Options::default()
    });
    for i in 0..3 {
        let xff = format!("198.51.100.{i}");
        assert_eq!(register_from(&s, Some(&xff)).await.status(), StatusCode::CREATED);
    }
    assert_json_429(register_from(&s, Some("198.51.100.200")).await, 20).await;
    assert_json_429(register_from(&s, None).await, 20).await;
}

#[tokio::test]
async fn token_is_limited_per_client_from_any_address() {
    let s = limited();
    let client = register_public(&s).await;
    let attempt = |xff: &'static str| {
        let form = [("grant_type", "refresh_token"), ("refresh_token", "guess"), ("client_id", client.id.as_str())];
        http().post(s.url("/token")).header("x-forwarded-for", xff).form(&form).send()
    };
    // Two guesses are answered (invalid_grant), from two addresses.
    for xff in ["198.51.100.1", "198.51.100.2"] {
        let res = attempt(xff).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    // The third, from yet another address, is refused before the client is even looked at:
    // 2/min, the next slot in 30 s.
    assert_json_429(attempt("198.51.100.3").await.unwrap(), 30).await;
    assert_eq!(rate_limited_total(&s, "token_per_client").await, 1);

    // Another client is not affected (and its whole login works).
    let other = register_public(&s).await;
    let tokens = tokens_for(&s, &other, RESOURCE).await;
    assert!(tokens["access_token"].is_string(), "{tokens}");
}

#[tokio::test]
async fn authorize_refusals_are_pages_for_people() {
    let s = limited();
    let client = register_public(&s).await;
    let p = pkce();
    let url = authorize_url(&s, &client.id, REDIRECT, &p.challenge, RESOURCE);
    for _ in 0..2 {
        let res = http().get(&url).send().await.unwrap();
        assert!(res.status().is_redirection() || res.status() == StatusCode::OK, "{}", res.status());
    }
    let res = http().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.contains(&format!("Try again in {wait} seconds")), "{page}");
    assert_eq!(rate_limited_total(&s, "authorize").await, 1);
}

#[tokio::test]
async fn verify_is_limited_only_when_configured() {
    // Off by default: many decisions from one address.
    let s = Server::start();
    let client = register_public(&s).await;
    let access = tokens_for(&s, &client, RESOURCE).await["access_token"].as_str().unwrap().to_owned();
    for _ in 0..50 {
        assert_eq!(verify(&s, Some(&access), RESOURCE).await.status(), StatusCode::OK);
    }
    drop(s);

    let s = limited();
    let client = register_public(&s).await;
    let access = tokens_for(&s, &client, RESOURCE).await["access_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(verify(&s, Some(&access), RESOURCE).await.status(), StatusCode::OK);
    }
    assert_json_429(verify(&s, Some(&access), RESOURCE).await, 30).await;
    assert_eq!(rate_limited_total(&s, "verify").await, 1);
}
