//! The client side of the flows, done the way an MCP client and a browser do them: real HTTP,
//! no redirects followed automatically, cookies carried by hand.
#![allow(dead_code)] // each test binary uses a different part of this helper

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::server::{ALICE_PASSWORD, RESOURCE, Server};

/// The redirect URI the test clients register.
pub const REDIRECT: &str = "http://127.0.0.1:33418/callback";

/// An HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A registered client.
#[derive(Clone, Debug)]
pub struct Registered {
    /// `client_id`.
    pub id: String,
    /// `client_secret`, for confidential clients.
    pub secret: Option<String>,
    /// RFC 7592 registration access token.
    pub registration_token: String,
    /// The whole response.
    pub body: Value,
}

/// Registers a client with `body`; panics unless 201.
pub async fn register(s: &Server, body: Value) -> Registered {
    let res = http().post(s.url("/register")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    Registered {
        id: body["client_id"].as_str().unwrap().to_owned(),
        secret: body["client_secret"].as_str().map(str::to_owned),
        registration_token: body["registration_access_token"].as_str().unwrap().to_owned(),
        body,
    }
}

/// A public client like the MCP SDKs register.
pub async fn register_public(s: &Server) -> Registered {
    register(
        s,
        json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Test MCP client",
            "application_type": "native",
        }),
    )
    .await
}

/// A confidential client.
pub async fn register_confidential(s: &Server) -> Registered {
    register(
        s,
        json!({
            "redirect_uris": ["https://app.example.com/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Confidential app",
        }),
    )
    .await
}

/// A PKCE pair.
pub struct Pkce {
    /// The verifier.
    pub verifier: String,
    /// Its S256 challenge.
    pub challenge: String,
}

/// A fresh PKCE pair.
pub fn pkce() -> Pkce {
    let verifier = mcp_authd::oauth::secret::random_token(48);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

/// The authorization URL for `client`, with S256 PKCE, state and resource.
pub fn authorize_url(s: &Server, client_id: &str, redirect: &str, challenge: &str, resource: &str) -> String {
    let mut url = url::Url::parse(&s.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-123")
        .append_pair("scope", "mcp")
        .append_pair("resource", resource);
    url.into()
}

/// The `Set-Cookie` name=value of a response.
pub fn cookie_of(res: &reqwest::Response) -> String {
    let raw = res.headers().get("set-cookie").expect("a Set-Cookie header").to_str().unwrap();
    raw.split(';').next().unwrap().to_owned()
}

/// `Location` of a redirect.
pub fn location(res: &reqwest::Response) -> String {
    res.headers().get("location").expect("a Location header").to_str().unwrap().to_owned()
}

/// Query parameter `name` of `url`.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Follows an authorization URL through the local login form as `user`; returns the final
/// redirect to the client (with `code` or `error`).
pub async fn login_local(s: &Server, authorize: &str, user: &str, password: &str) -> String {
    let http = http();
    let res = http.get(authorize).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND, "authorize redirects to the login page");
    let cookie = cookie_of(&res);
    let login = location(&res);
    assert!(login.starts_with(&s.url("/login?session=")), "{login}");
    let session = param(&login, "session").unwrap();
    let page = http.get(&login).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "login form shown");
    let res = http
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[("session", session.as_str()), ("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "login redirects back to the client");
    location(&res)
}

/// As alice.
pub async fn login_alice(s: &Server, authorize: &str) -> String {
    login_local(s, authorize, "alice", ALICE_PASSWORD).await
}

/// Follows an authorization URL through the GitHub stand-in; returns the final redirect.
pub async fn login_github(s: &Server, authorize: &str) -> String {
    let http = http();
    let res = http.get(authorize).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let cookie = cookie_of(&res);
    let upstream = location(&res);
    assert!(!upstream.starts_with(&s.base), "sent to GitHub: {upstream}");
    let res = http.get(&upstream).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let callback = location(&res);
    assert!(callback.starts_with(&s.url("/callback/github?")), "{callback}");
    let res = http.get(&callback).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND, "callback redirects to the client");
    location(&res)
}

/// POSTs a token-endpoint style form; returns status and JSON body.
pub async fn post_form(
    s: &Server,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut req = http().post(s.url(path)).form(form);
    if let Some((id, secret)) = basic {
        req = req.header("authorization", format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A refresh-token grant by a public client.
pub async fn refresh(s: &Server, client_id: &str, refresh_token: &str) -> (StatusCode, Value) {
    post_form(
        s,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)],
        None,
    )
    .await
}

/// Redeems a code of a public client registered with [`REDIRECT`], as the MCP SDKs do.
pub async fn redeem(
    s: &Server,
    client_id: &str,
    code: &str,
    verifier: &str,
    resource: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
        ("client_id", client_id),
    ];
    form.extend(resource.map(|r| ("resource", r)));
    post_form(s, "/token", &form, None).await
}

/// Logs alice in for `client` and redeems the code; returns the token response.
pub async fn tokens_for(s: &Server, client: &Registered, resource: &str) -> Value {
    let p = pkce();
    let back = login_alice(s, &authorize_url(s, &client.id, REDIRECT, &p.challenge, resource)).await;
    let code = param(&back, "code").expect("a code");
    let (status, body) = redeem(s, &client.id, &code, &p.verifier, Some(resource)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Asks /verify as a trusted proxy would, for `uri` on the host of `resource`.
pub async fn verify(s: &Server, token: Option<&str>, resource: &str) -> reqwest::Response {
    verify_request(&http(), &s.url("/verify"), token, resource).send().await.unwrap()
}

/// The subrequest a trusted proxy (Traefik's forwardAuth) sends to `verify_url` for a POST to
/// `resource`, on the caller's client (a kept-alive one when it polls).
pub fn verify_request(
    c: &reqwest::Client,
    verify_url: &str,
    token: Option<&str>,
    resource: &str,
) -> reqwest::RequestBuilder {
    let url = url::Url::parse(resource).unwrap();
    let req = c
        .get(verify_url)
        .header("x-forwarded-method", "POST")
        .header("x-forwarded-proto", url.scheme())
        .header("x-forwarded-host", url.authority())
        .header("x-forwarded-uri", url.path());
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// The person: opens the verification URL, logs in as alice, and lands on the confirmation page.
/// Returns (cookie, confirmation session, the page).
pub async fn person_logs_in(s: &Server, verification_uri_complete: &str) -> (String, String, String) {
    let http = http();
    let res = http.get(verification_uri_complete).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND, "on to log in");
    let cookie = cookie_of(&res);
    let login = location(&res);
    let session = param(&login, "session").unwrap();
    let page = http.get(&login).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("connect a device"), "{page}");
    let res = http
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[("session", session.as_str()), ("username", "alice"), ("password", ALICE_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let confirm = location(&res);
    assert!(confirm.starts_with(&s.url("/device/confirm?session=")), "{confirm}");
    let session = param(&confirm, "session").unwrap();
    let res = http.get(&confirm).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    (cookie, session, res.text().await.unwrap())
}

pub async fn decide(s: &Server, cookie: Option<&str>, session: &str, decision: &str) -> (StatusCode, String) {
    let mut req = http().post(s.url("/device/confirm")).form(&[("session", session), ("decision", decision)]);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// The default resource.
pub fn resource() -> &'static str {
    RESOURCE
}
