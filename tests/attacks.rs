//! What the server must refuse, each with the RFC error body and status: the attacks of the
//! OAuth 2.0 Security BCP (RFC 9700) that apply to an authorization server and a resource
//! server, and malformed input of every kind. Against the real binary, embedded store.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::oauth::*;
use common::server::{OTHER_RESOURCE, Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Logs alice in for `client` and returns (code, verifier).
async fn code_for(s: &Server, client: &Registered) -> (String, String) {
    let p = pkce();
    let back = login_alice(s, &authorize_url(s, &client.id, REDIRECT, &p.challenge, RESOURCE)).await;
    (param(&back, "code").expect("code"), p.verifier)
}

fn code_form<'a>(code: &'a str, verifier: &'a str, client_id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
        ("client_id", client_id),
    ]
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want, "{body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
}

#[tokio::test]
async fn codes_are_bound_to_their_client_single_use_and_pkce_checked() {
    let s = Server::start();
    let a = register_public(&s).await;
    let b = register_public(&s).await;

    // Redeemed by another client.
    let (code, verifier) = code_for(&s, &a).await;
    let (st, body) = post_form(&s, "/token", &code_form(&code, &verifier, &b.id), None).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    // Wrong verifier, missing verifier, wrong redirect_uri.
    for (bad_verifier, redirect) in
        [(Some("x".repeat(43)), REDIRECT), (None, REDIRECT), (Some(String::new()), "http://127.0.0.1:33418/other")]
    {
        let (code, verifier) = code_for(&s, &a).await;
        let v = bad_verifier.map(|v| if v.is_empty() { verifier.clone() } else { v });
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("client_id", a.id.as_str()),
        ];
        if let Some(v) = &v {
            form.push(("code_verifier", v.as_str()));
        }
        let (st, body) = post_form(&s, "/token", &form, None).await;
        assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    }

    // Replay: the second redemption fails and revokes what the first one issued.
    let (code, verifier) = code_for(&s, &a).await;
    let (st, first) = post_form(&s, "/token", &code_form(&code, &verifier, &a.id), None).await;
    assert_eq!(st, StatusCode::OK);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(verify(&s, Some(access), RESOURCE).await.status(), StatusCode::OK);
    let (st, body) = post_form(&s, "/token", &code_form(&code, &verifier, &a.id), None).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(
        verify(&s, Some(access), RESOURCE).await.status(),
        StatusCode::UNAUTHORIZED,
        "tokens from a replayed code are revoked"
    );
    let (st, body) = refresh(&s, &a.id, first["refresh_token"].as_str().unwrap()).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    // A code from another resource is not redeemable for this one (RFC 8707).
    let (code, verifier) = code_for(&s, &a).await;
    let mut form = code_form(&code, &verifier, &a.id);
    form.push(("resource", OTHER_RESOURCE));
    let (st, body) = post_form(&s, "/token", &form, None).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_target");

    // Unknown code.
    let (st, body) = post_form(&s, "/token", &code_form("made-up", &verifier, &a.id), None).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn authorization_requests_that_must_not_redirect_or_must_fail() {
    let s = Server::start();
    let c = register_public(&s).await;
    let p = pkce();
    let http = http();

    // A repeated parameter (RFC 6749 §3.1) makes the whole request untrustworthy: a page.
    let repeated = format!("{}&client_id={}", authorize_url(&s, &c.id, REDIRECT, &p.challenge, RESOURCE), c.id);
    let res = http.get(repeated).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());
    assert!(res.text().await.unwrap().contains("repeated"));

    // Redirect URIs that are not registered, one character off, or prefix tricks: an error
    // page, never a redirect.
    for bad in [
        "http://127.0.0.1:33418/callbacks",
        "http://127.0.0.1:33418/callbac",
        "http://127.0.0.1.evil.com:33418/callback",
        "http://localhost.evil.com/callback",
        "https://127.0.0.1:33418/callback",
        "http://127.0.0.1:33418/callback?x=1",
        "http://127.0.0.1:33418/callback#x",
        "javascript:alert(1)//http://127.0.0.1:33418/callback",
    ] {
        let res = http.get(authorize_url(&s, &c.id, bad, &p.challenge, RESOURCE)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(res.headers().get("location").is_none(), "{bad} must not redirect");
        assert!(res.text().await.unwrap().contains("not registered"), "{bad}");
    }
    // Unknown client: page, no redirect.
    let res = http.get(authorize_url(&s, "nope", REDIRECT, &p.challenge, RESOURCE)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());

    // A loopback redirect on another port is the same registration (RFC 8252 §7.3).
    let res = http
        .get(authorize_url(&s, &c.id, "http://127.0.0.1:5555/callback", &p.challenge, RESOURCE))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert!(location(&res).contains("/login?session="));

    // After the client and redirect are known good: errors go back with state and iss.
    let base = |extra: &[(&str, &str)]| {
        let mut u = url::Url::parse(&s.url("/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", &c.id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "s1");
        for (k, v) in extra {
            u.query_pairs_mut().append_pair(k, v);
        }
        u.to_string()
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("response_type", "code"), ("resource", RESOURCE)], "invalid_request"), // no PKCE
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &p.challenge),
                ("code_challenge_method", "plain"),
                ("resource", RESOURCE),
            ],
            "invalid_request",
        ),
        (vec![("response_type", "code"), ("code_challenge", &p.challenge), ("resource", RESOURCE)], "invalid_request"), // method omitted = plain
        (
            vec![
                ("response_type", "token"),
                ("code_challenge", &p.challenge),
                ("code_challenge_method", "S256"),
                ("resource", RESOURCE),
            ],
            "unsupported_response_type",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &p.challenge),
                ("code_challenge_method", "S256"),
                ("resource", "https://evil.example.com/mcp"),
            ],
            "invalid_target",
        ),
        (
            vec![("response_type", "code"), ("code_challenge", &p.challenge), ("code_challenge_method", "S256")],
            "invalid_target",
        ), // two resources configured, none named
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &p.challenge),
                ("code_challenge_method", "S256"),
                ("resource", RESOURCE),
                ("scope", "bad\"scope"),
            ],
            "invalid_scope",
        ),
    ];
    for (extra, want) in cases {
        let res = http.get(base(&extra)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FOUND, "{extra:?}");
        let loc = location(&res);
        assert!(loc.starts_with(REDIRECT), "{loc}");
        assert_eq!(param(&loc, "error").as_deref(), Some(want), "{extra:?}: {loc}");
        assert_eq!(param(&loc, "state").as_deref(), Some("s1"));
        assert_eq!(param(&loc, "iss").as_deref(), Some(s.base.as_str()));
    }
}

#[tokio::test]
async fn registration_refuses_bad_metadata_and_hides_clients() {
    let s = Server::start();
    let http = http();
    for (body, want) in [
        (json!({"redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["data:text/html,<script>alert(1)</script>"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["http://app.example.com/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://app.example.com/cb#frag"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": "https://app.example.com/cb"}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["https://a.example/cb"], "client_name": "x".repeat(500)}), "invalid_client_metadata"),
        (
            json!({"redirect_uris": (0..50).map(|i| format!("https://a.example/{i}")).collect::<Vec<_>>()}),
            "invalid_redirect_uri",
        ),
    ] {
        let res = http.post(s.url("/register")).json(&body).send().await.unwrap();
        let status = res.status();
        let b: Value = res.json().await.unwrap();
        assert_error(status, &b, StatusCode::BAD_REQUEST, want);
    }
    for raw in ["{", "[]", "null", "\"x\"", "{\"redirect_uris\": [1, 2]}", "\u{0}\u{1}"] {
        let res = http.post(s.url("/register")).body(raw).send().await.unwrap();
        let status = res.status();
        let b: Value = res.json().await.unwrap();
        assert_error(status, &b, StatusCode::BAD_REQUEST, "invalid_client_metadata");
    }
    let huge = format!("{{\"client_name\": \"{}\"}}", "a".repeat(200_000));
    let res = http.post(s.url("/register")).body(huge).send().await.unwrap();
    let status = res.status();
    let b: Value = res.json().await.unwrap();
    assert_error(status, &b, StatusCode::BAD_REQUEST, "invalid_request");

    // RFC 7592: a wrong or missing registration token looks exactly like an unknown client.
    let c = register_public(&s).await;
    let read = |id: String, token: Option<String>| {
        let http = http.clone();
        let url = s.url(&format!("/register/{id}"));
        async move {
            let mut req = http.get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let wrong = read(c.id.clone(), Some("wrong".into())).await;
    let missing = read(c.id.clone(), None).await;
    let unknown = read("unknown-client".into(), Some(c.registration_token.clone())).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, missing);
    assert_eq!(wrong, unknown);
    let ok = read(c.id.clone(), Some(c.registration_token.clone())).await;
    assert_eq!(ok.0, StatusCode::OK);
    let body: Value = serde_json::from_str(&ok.1).unwrap();
    assert_eq!(body["client_id"], c.id.as_str());
    assert!(body.get("client_secret").is_none() && body.get("registration_access_token").is_none());
    // Delete with the wrong token: nothing happens; with the right one: gone, tokens revoked.
    let tokens = tokens_for(&s, &c, RESOURCE).await;
    let del = |token: String| {
        let http = http.clone();
        let url = s.url(&format!("/register/{}", c.id));
        async move { http.delete(url).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(del("wrong".into()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(del(c.registration_token.clone()).await, StatusCode::NO_CONTENT);
    assert_eq!(read(c.id.clone(), Some(c.registration_token.clone())).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&s, tokens["access_token"].as_str(), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    let (st, body) = refresh(&s, &c.id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn token_endpoint_client_authentication_and_malformed_requests() {
    let s = Server::start();
    let conf = register_confidential(&s).await;
    let public = register_public(&s).await;
    let secret = conf.secret.clone().unwrap();

    // Confidential client without or with a wrong secret.
    let (st, body) =
        post_form(&s, "/token", &[("grant_type", "authorization_code"), ("code", "x"), ("client_id", &conf.id)], None)
            .await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let res = http()
        .post(s.url("/token"))
        .basic_auth(&conf.id, Some("wrong"))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (st, body) = post_form(
        &s,
        "/token",
        &[("grant_type", "authorization_code"), ("code", "x"), ("client_id", &conf.id), ("client_secret", "wrong")],
        None,
    )
    .await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    // Unknown client, no client at all, a secret for a public client, two methods at once.
    let (st, body) =
        post_form(&s, "/token", &[("grant_type", "authorization_code"), ("client_id", "ghost")], None).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let (st, body) = post_form(&s, "/token", &[("grant_type", "authorization_code")], None).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let (st, body) = post_form(
        &s,
        "/token",
        &[("grant_type", "authorization_code"), ("client_id", &public.id), ("client_secret", "x")],
        None,
    )
    .await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let (st, body) = post_form(
        &s,
        "/token",
        &[("grant_type", "authorization_code"), ("client_secret", &secret)],
        Some((&conf.id, &secret)),
    )
    .await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_request");

    // Grant types.
    for (g, want) in [
        ("password", "unsupported_grant_type"),
        ("client_credentials", "unsupported_grant_type"),
        ("urn:x", "unsupported_grant_type"),
    ] {
        let (st, body) = post_form(&s, "/token", &[("grant_type", g), ("client_id", &public.id)], None).await;
        assert_error(st, &body, StatusCode::BAD_REQUEST, want);
    }
    let (st, body) = post_form(&s, "/token", &[("client_id", &public.id)], None).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_request");
    // Repeated parameters, wrong content type, oversized body.
    let (st, body) = post_form(
        &s,
        "/token",
        &[("grant_type", "refresh_token"), ("grant_type", "authorization_code"), ("client_id", &public.id)],
        None,
    )
    .await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let res = http().post(s.url("/token")).json(&json!({"grant_type": "authorization_code"})).send().await.unwrap();
    let st = res.status();
    assert_error(st, &res.json().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request");
    let big = format!("grant_type=authorization_code&client_id={}&x={}", public.id, "a".repeat(100_000));
    let res = http()
        .post(s.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    let st = res.status();
    assert_error(st, &res.json().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request");
    let res = http()
        .post(s.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "garbage form: no client");

    // A refresh token used by another client fails and ends that login.
    let tokens = tokens_for(&s, &public, RESOURCE).await;
    let other = register_public(&s).await;
    let (st, body) = refresh(&s, &other.id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(verify(&s, tokens["access_token"].as_str(), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    // Revoking another client's token is refused; introspection needs a confidential client.
    let t2 = tokens_for(&s, &public, RESOURCE).await;
    let (st, body) =
        post_form(&s, "/revoke", &[("token", t2["access_token"].as_str().unwrap()), ("client_id", &other.id)], None)
            .await;
    assert_error(st, &body, StatusCode::BAD_REQUEST, "unauthorized_client");
    let (st, _) = post_form(&s, "/revoke", &[("token", "not-a-token"), ("client_id", &other.id)], None).await;
    assert_eq!(st, StatusCode::OK, "RFC 7009 §2.2: unknown tokens are not an error");
    let (st, body) = post_form(&s, "/introspect", &[("token", "x"), ("client_id", &public.id)], None).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn verify_refuses_forged_expired_and_misaddressed_tokens() {
    let s = Server::start();
    let c = register_public(&s).await;
    let tokens = tokens_for(&s, &c, RESOURCE).await;
    let good = tokens["access_token"].as_str().unwrap();
    assert_eq!(verify(&s, Some(good), RESOURCE).await.status(), StatusCode::OK);

    // No token: 401 with the RFC 9728 challenge and no error code.
    let res = verify(&s, None, RESOURCE).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
    );

    // A token for resource A presented for resource B.
    let res = verify(&s, Some(good), OTHER_RESOURCE).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));

    // Expired, unknown key, alg none, HS256 keyed with the public key, tampered, garbage.
    let expired = s.mint(&["--sub", "x", "--aud", RESOURCE, "--ttl=-5"]);
    let minted = s.mint(&["--sub", "svc", "--aud", RESOURCE, "--name", "svc"]);
    let other_server = Server::start();
    let foreign = other_server.mint(&["--sub", "x", "--aud", RESOURCE]);
    let parts: Vec<&str> = good.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", enc(&json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]})), parts[1]);
    let jwks: Value = http().get(s.url("/jwks")).send().await.unwrap().json().await.unwrap();
    let public_key = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = header["kid"].as_str().map(str::to_owned);
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let hs256 = jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(&public_key)).unwrap();
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], enc(&forged_claims), parts[2]);
    for (name, token) in [
        ("expired", expired.as_str()),
        ("unknown key", foreign.as_str()),
        ("alg none", none.as_str()),
        ("HS256 with the public key", hs256.as_str()),
        ("tampered", tampered.as_str()),
        ("garbage", "not.a.jwt"),
    ] {
        let res = verify(&s, Some(token), RESOURCE).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token", "{name}");
    }
    // A client retrying a refused token is refused every time, and logged once a minute: the
    // misaddressed token above and the six refusals, not the retries; then the misaddressed
    // token again (never remembered: it is valid elsewhere) ends the count.
    for _ in 0..4 {
        let res = verify(&s, Some(&tampered), RESOURCE).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a remembered refusal still refuses");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
    assert_eq!(verify(&s, Some(good), OTHER_RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    let denied = || s.logs().lines().filter(|l| l.contains("request denied")).count();
    for _ in 0..50 {
        if denied() >= 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(denied(), 8, "one line per refused token, retries at debug level:\n{}", s.logs());

    // A minted service token is fine.
    let res = verify(&s, Some(&minted), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-user-id"], "svc");

    // A token without the resource's required scope: 403 insufficient_scope (step-up).
    let no_scope = s.mint(&["--sub", "x", "--aud", OTHER_RESOURCE, "--scope", "other"]);
    let res = verify(&s, Some(&no_scope), OTHER_RESOURCE).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"mcp\""), "{challenge}");

    // A URL no resource covers.
    let res = http()
        .get(s.url("/verify"))
        .bearer_auth(good)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "mcp.example.com")
        .header("x-forwarded-uri", "/mcpx")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_ignored() {
    let s = Server::start_with(Options {
        toml: "".into(),
        env: vec![("MCP_AUTHD__SERVER__TRUSTED_PROXIES".into(), "10.0.0.0/8".into())],
        ..Options::default()
    });
    let c = register_public(&s).await;
    let tokens = tokens_for(&s, &c, RESOURCE).await;
    // The token is good for mcp.example.com, but the claim that the request is for it comes
    // from an address that is not a trusted proxy.
    let res = verify(&s, tokens["access_token"].as_str(), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "judged as a request for 127.0.0.1, which is no resource");
}

#[tokio::test]
async fn dot_segments_and_encoded_slashes_cannot_borrow_another_resources_token() {
    // Two MCP servers on one origin; a token for fetch, presented on a path that a proxy routing
    // on the raw path sends to echo but that resolves to fetch's.
    let (echo, fetch) = ("https://tools.example.com/echo/mcp", "https://tools.example.com/fetch/mcp");
    let s = Server::start_with(Options {
        toml: format!("[[resources]]\nurl = \"{echo}\"\n\n[[resources]]\nurl = \"{fetch}\"\n"),
        ..Options::default()
    });
    let token = s.mint(&["--sub", "u1", "--aud", fetch]);
    let ask = |uri: &'static str| {
        http()
            .get(s.url("/verify"))
            .header("x-forwarded-method", "POST")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "tools.example.com")
            .header("x-forwarded-uri", uri)
            .bearer_auth(&token)
    };
    assert_eq!(ask("/fetch/mcp").send().await.unwrap().status(), StatusCode::OK);
    for uri in [
        "/echo/mcp/../../fetch/mcp",
        "/echo/%2e%2E/fetch/mcp",
        "/echo/mcp%2F..%2F..%2Ffetch%2Fmcp",
        "/echo\\..\\fetch/mcp",
    ] {
        let res = ask(uri).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{uri}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "access_denied", "{uri}");
    }
    // The nginx dialect carries the same path inside X-Original-URL.
    let res = http()
        .get(s.url("/verify"))
        .header("x-original-url", "https://tools.example.com/echo/mcp/../../fetch/mcp")
        .header("x-original-method", "POST")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_request_in_two_proxy_dialects_is_judged_as_nothing() {
    // A proxy speaks one dialect and passes the client's headers on: the other dialect's headers
    // in the same subrequest come from the client.
    let s = Server::start();
    let token = s.mint(&["--sub", "u1", "--aud", RESOURCE]);
    let forwarded = [
        ("x-forwarded-method", "POST"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "mcp.example.com"),
        ("x-forwarded-uri", "/mcp"),
    ];
    let original = [("x-original-url", "https://mcp.example.com/mcp"), ("x-original-method", "POST")];
    let ask = |path: &str, sets: &[&[(&'static str, &'static str)]]| {
        let mut req = http().get(s.url(path)).bearer_auth(&token).header("host", "mcp.example.com");
        for set in sets {
            for (k, v) in *set {
                req = req.header(*k, *v);
            }
        }
        req
    };
    // Each dialect alone: allowed.
    assert_eq!(ask("/verify", &[&forwarded]).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask("/verify", &[&original]).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask("/verify/mcp", &[&[("x-forwarded-proto", "https")]]).send().await.unwrap().status(), StatusCode::OK);
    // Any two: refused.
    for (path, sets) in [
        ("/verify", vec![&forwarded[..], &original[..]]),
        ("/verify/mcp", vec![&forwarded[..]]),
        ("/verify/mcp", vec![&original[..]]),
    ] {
        let res = ask(path, &sets).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path} {sets:?}");
    }
}

#[tokio::test]
async fn reflected_input_is_escaped() {
    let s = Server::start();
    let c = register(
        &s,
        json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "client_name": "<script>alert('x')</script>",
        }),
    )
    .await;
    let p = pkce();
    let http = http();
    let res = http.get(authorize_url(&s, &c.id, REDIRECT, &p.challenge, RESOURCE)).send().await.unwrap();
    let cookie = cookie_of(&res);
    let page = http.get(location(&res)).header("cookie", cookie).send().await.unwrap();
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    // CR/LF in state comes back percent-encoded, never as a header break.
    let mut u = url::Url::parse(&s.url("/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", &c.id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("state", "a\r\nSet-Cookie: x=y<script>");
    let res = http.get(u.as_str()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND, "no PKCE: invalid_request sent back");
    assert!(res.headers().get("set-cookie").is_none());
    let loc = location(&res);
    assert!(!loc.contains('\r') && !loc.contains('\n') && !loc.contains('<'), "{loc}");
    assert_eq!(param(&loc, "state").as_deref(), Some("a\r\nSet-Cookie: x=y<script>"), "state round-trips intact");
}

#[tokio::test]
async fn wrong_methods_unknown_paths_and_malformed_queries() {
    let s = Server::start();
    let http = http();
    for (method, path) in
        [("GET", "/token"), ("GET", "/register"), ("POST", "/jwks"), ("DELETE", "/authorize"), ("PATCH", "/revoke")]
    {
        let res = http.request(method.parse().unwrap(), s.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{method} {path}");
    }
    let res = http.get(s.url("/no/such/thing")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "not_found");
    // Repeated or garbage query parameters on the browser pages: an error page, not a 500.
    for path in [
        "/login?session=a&session=b",
        "/login?session=%ff%fe",
        "/login",
        "/callback/github?state=x",
        "/callback?code=1",
    ] {
        let res = http.get(s.url(path)).send().await.unwrap();
        let status = res.status();
        assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND, "{path}: {status}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
    }
    // CORS preflight for browser-based MCP clients on the token endpoint.
    let res = http
        .request(reqwest::Method::OPTIONS, s.url("/token"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "http://localhost:6274");
}

#[tokio::test]
async fn nginx_and_envoy_dialects_reach_the_same_decision() {
    let s = Server::start();
    let c = register_public(&s).await;
    let tokens = tokens_for(&s, &c, RESOURCE).await;
    let token = tokens["access_token"].as_str().unwrap();
    let nginx = |url: &'static str| {
        http()
            .get(s.url("/verify"))
            .bearer_auth(token)
            .header("x-original-url", url)
            .header("x-original-method", "POST")
            .send()
    };
    let res = nginx("https://mcp.example.com/mcp").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-user-id"], "local:alice");
    assert_eq!(nginx("https://other.example.com/mcp").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let envoy = |host: &'static str| {
        http()
            .post(s.url("/verify/mcp?x=1"))
            .bearer_auth(token)
            .header("host", host)
            .header("x-forwarded-proto", "https")
            .send()
    };
    let res = envoy("mcp.example.com").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-client-id"], c.id.as_str());
    assert_eq!(envoy("other.example.com").await.unwrap().status(), StatusCode::UNAUTHORIZED);
}
