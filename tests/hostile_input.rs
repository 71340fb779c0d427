//! Hostile input on every endpoint (issue 8): each parameter of each endpoint replaced by markup,
//! CR/LF, NUL, bad percent-encoding, over-long and repeated values, wrong content types and JSON
//! shapes, oversized bodies and heads, slow clients, too many connections. Every answer must be
//! the endpoint's RFC error (JSON for clients, a page for browsers), never a 5xx, never the
//! caller's markup raw, never a redirect anywhere but the issuer or a registered redirect URI;
//! and afterwards everything stored before is still there and works.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::oauth::*;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Every error code an endpoint may answer with (RFC 6749, 7009, 7591, 7662, 8628, 8707) plus
/// our `not_found`.
const CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "unsupported_response_type",
    "invalid_scope",
    "invalid_target",
    "invalid_redirect_uri",
    "invalid_client_metadata",
    "invalid_token",
    "access_denied",
    "unsupported_token_type",
    "temporarily_unavailable",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "not_found",
];

/// Markup that must never come back as it was sent.
const MARKUP: &str = "<script>alert(1)</script>";

/// Values each parameter is replaced by, already form-encoded where the raw bytes matter.
fn hostile_values() -> Vec<String> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    vec![
        enc(MARKUP),
        enc(&format!("\"'><img src=x onerror=alert(1)>{MARKUP}")),
        enc("a\r\nSet-Cookie: pwned=1\r\nLocation: https://evil.example"),
        enc("x\0y"),
        "%ff%fe%fd".into(),
        "%".into(),
        "%zz".into(),
        enc("javascript:alert(1)"),
        enc("https://evil.example/callback"),
        enc("../../../etc/passwd"),
        enc("\u{202e}\u{feff}ü𝔘"),
        enc(""),
        "a".repeat(5000),
        enc(&"é".repeat(3000)),
        enc("{\"$ne\":null}"),
        enc("*)(uid=*))(|(uid=*"),
        enc("'; DROP TABLE clients; --"),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A client endpoint: JSON errors.
    Api,
    /// A browser endpoint: pages or redirects.
    Page,
}

/// What every answer must be, whatever was sent.
async fn check(what: &str, res: reqwest::Response, kind: Kind, s: &Server) {
    let status = res.status();
    assert!(!status.is_server_error(), "{what}: {status}");
    for (name, value) in res.headers() {
        let v = value.as_bytes();
        assert!(!v.contains(&b'\r') && !v.contains(&b'\n'), "{what}: header {name} carries CR/LF");
    }
    assert!(res.headers().get("set-cookie").is_none_or(|c| !c.to_str().unwrap_or("").contains("pwned")), "{what}");
    if let Some(loc) = res.headers().get("location") {
        let loc = loc.to_str().expect("an ASCII Location");
        // SECURITY: no open redirect: only to ourselves or to the registered redirect URI.
        assert!(
            loc.starts_with(&s.base)
                || loc.starts_with(REDIRECT)
                || loc.starts_with(APP_REDIRECT)
                || loc.starts_with('/'),
            "{what}: redirect to {loc}"
        );
        assert!(!loc.contains('<') && !loc.contains('"') && !loc.contains(' '), "{what}: raw Location {loc}");
    }
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = res.text().await.unwrap();
    assert!(!body.contains("<script>alert") && !body.contains("<img src=x"), "{what}: markup reflected raw:\n{body}");
    if status.is_client_error() {
        if kind == Kind::Api || content_type.starts_with("application/json") {
            assert!(content_type.starts_with("application/json"), "{what}: {status} as {content_type:?}");
            let err: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
            let code = err["error"].as_str().unwrap_or_else(|| panic!("{what}: no error code: {body}"));
            assert!(CODES.contains(&code), "{what}: unknown error code {code}");
            if let Some(d) = err["error_description"].as_str() {
                // RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E.
                assert!(
                    d.chars().all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')),
                    "{what}: error_description outside the RFC characters: {d:?}"
                );
            }
        } else {
            assert!(content_type.starts_with("text/html"), "{what}: {status} as {content_type:?}");
        }
    }
}

/// A form body with one parameter's value replaced (raw, already encoded), or repeated.
fn form_with(base: &[(&str, String)], target: &str, raw: Option<&str>) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut parts: Vec<String> = base
        .iter()
        .map(|(k, v)| match raw {
            Some(raw) if *k == target => format!("{k}={raw}"),
            _ => format!("{k}={}", enc(v)),
        })
        .collect();
    match raw {
        None => {
            let (k, v) = base.iter().find(|(k, _)| *k == target).unwrap();
            parts.push(format!("{k}={}", enc(v)));
        }
        Some(raw) if !base.iter().any(|(k, _)| *k == target) => parts.push(format!("{target}={raw}")),
        Some(_) => {}
    }
    parts.join("&")
}

/// Sends every mutation of `base` to a form endpoint.
async fn barrage_form(s: &Server, method: &str, path: &str, base: &[(&str, String)], kind: Kind) -> usize {
    let http = http();
    let mut sent = 0;
    let mut targets: Vec<&str> = base.iter().map(|(k, _)| *k).collect();
    targets.push("unknown_param");
    for target in targets {
        let mut bodies: Vec<(String, String)> = hostile_values()
            .into_iter()
            .map(|v| {
                (format!("{target}={}", v.chars().take(40).collect::<String>()), form_with(base, target, Some(&v)))
            })
            .collect();
        if target != "unknown_param" {
            bodies.push((format!("{target} repeated"), form_with(base, target, None)));
        }
        for (what, body) in bodies {
            let what = format!("{method} {path} {what}");
            let res = if method == "GET" {
                http.get(format!("{}?{body}", s.url(path))).send().await.unwrap()
            } else {
                http.post(s.url(path))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            };
            check(&what, res, kind, s).await;
            sent += 1;
        }
    }
    // The same form with the wrong content types, and an empty body.
    if method == "POST" {
        let body = form_with(base, "unknown_param", Some("1"));
        for ct in ["application/json", "text/plain", "multipart/form-data; boundary=x", ""] {
            let mut req = http.post(s.url(path)).body(body.clone());
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            check(&format!("POST {path} as {ct:?}"), req.send().await.unwrap(), kind, s).await;
            sent += 1;
        }
        let res =
            http.post(s.url(path)).header("content-type", "application/x-www-form-urlencoded").send().await.unwrap();
        check(&format!("POST {path} empty"), res, kind, s).await;
        // Over the 64 KiB bound.
        let big = format!("{}&pad={}", body, "a".repeat(70 * 1024));
        let res = http
            .post(s.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "POST {path} oversized");
        check(&format!("POST {path} oversized"), res, kind, s).await;
        sent += 6;
    }
    sent
}

/// The redirect URI of [`register_confidential`] clients.
const APP_REDIRECT: &str = "https://app.example.com/cb";

/// Logs alice in for a confidential client and redeems the code with its secret (Basic).
async fn confidential_tokens(s: &Server, client: &Registered) -> Value {
    let p = pkce();
    let back = login_alice(s, &authorize_url(s, &client.id, APP_REDIRECT, &p.challenge, RESOURCE)).await;
    let code = param(&back, "code").expect("a code");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", APP_REDIRECT),
        ("code_verifier", p.verifier.as_str()),
        ("resource", RESOURCE),
    ];
    let (status, body) = post_form(s, "/token", &form, Some((&client.id, client.secret.as_deref().unwrap()))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A parked login (`/login?session=`) for the browser endpoints.
async fn login_session(s: &Server, client: &Registered) -> String {
    let p = pkce();
    let res = http().get(authorize_url(s, &client.id, REDIRECT, &p.challenge, RESOURCE)).send().await.unwrap();
    param(&location(&res), "session").expect("a login session")
}

#[tokio::test]
async fn every_endpoint_answers_hostile_parameters_with_its_rfc_error() {
    let s = Server::start();
    let public = register_public(&s).await;
    let confidential = register_confidential(&s).await;
    // What must survive the barrage untouched.
    let keeper = register_confidential(&s).await;
    let keeper_tokens = confidential_tokens(&s, &keeper).await;
    let keeper_meta = http()
        .get(s.url(&format!("/register/{}", keeper.id)))
        .bearer_auth(&keeper.registration_token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();

    let mut sent = 0;
    // /token, both grants, with a live code and a live refresh token to aim at.
    let p = pkce();
    let code = {
        let redirect = login_alice(&s, &authorize_url(&s, &public.id, REDIRECT, &p.challenge, RESOURCE)).await;
        param(&redirect, "code").unwrap()
    };
    let base = [
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", p.verifier.clone()),
        ("client_id", public.id.clone()),
        ("resource", RESOURCE.to_owned()),
    ];
    sent += barrage_form(&s, "POST", "/token", &base, Kind::Api).await;
    let victim = confidential_tokens(&s, &confidential).await;
    let base = [
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", victim["refresh_token"].as_str().unwrap().to_owned()),
        ("client_id", confidential.id.clone()),
        ("client_secret", confidential.secret.clone().unwrap()),
        ("scope", "mcp".to_owned()),
        ("resource", RESOURCE.to_owned()),
    ];
    sent += barrage_form(&s, "POST", "/token", &base, Kind::Api).await;
    let base = [
        ("token", victim["access_token"].as_str().unwrap().to_owned()),
        ("token_type_hint", "access_token".to_owned()),
        ("client_id", confidential.id.clone()),
        ("client_secret", confidential.secret.clone().unwrap()),
    ];
    sent += barrage_form(&s, "POST", "/introspect", &base, Kind::Api).await;
    sent += barrage_form(&s, "POST", "/revoke", &base, Kind::Api).await;
    let base = [("client_id", public.id.clone()), ("scope", "mcp".to_owned()), ("resource", RESOURCE.to_owned())];
    sent += barrage_form(&s, "POST", "/device_authorization", &base, Kind::Api).await;

    // The browser side.
    let p = pkce();
    let base = [
        ("response_type", "code".to_owned()),
        ("client_id", public.id.clone()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_challenge", p.challenge.clone()),
        ("code_challenge_method", "S256".to_owned()),
        ("state", "st".to_owned()),
        ("scope", "mcp".to_owned()),
        ("resource", RESOURCE.to_owned()),
    ];
    sent += barrage_form(&s, "GET", "/authorize", &base, Kind::Page).await;
    let session = login_session(&s, &public).await;
    sent += barrage_form(&s, "GET", "/login", &[("session", session.clone())], Kind::Page).await;
    let base = [("session", session), ("username", "alice".to_owned()), ("password", "wrong-password".to_owned())];
    sent += barrage_form(&s, "POST", "/login", &base, Kind::Page).await;
    sent +=
        barrage_form(&s, "GET", "/callback", &[("state", "x".to_owned()), ("code", "y".to_owned())], Kind::Page).await;
    sent += barrage_form(&s, "GET", "/device", &[("user_code", "ABCD-EFGH".to_owned())], Kind::Page).await;
    let base = [("session", "s".to_owned()), ("decision", "approve".to_owned())];
    sent += barrage_form(&s, "POST", "/device/confirm", &base, Kind::Page).await;
    let base = [("session", "s".to_owned()), ("decision", "allow".to_owned())];
    sent += barrage_form(&s, "POST", "/consent", &base, Kind::Page).await;
    sent += barrage_form(&s, "GET", "/consent", &[("session", "s".to_owned())], Kind::Page).await;
    sent += barrage_form(&s, "GET", "/device/confirm", &[("session", "s".to_owned())], Kind::Page).await;
    assert!(sent > 1000, "{sent} hostile requests");

    // Everything stored before is intact: the keeper's metadata, its refresh token, new logins.
    let meta = http()
        .get(s.url(&format!("/register/{}", keeper.id)))
        .bearer_auth(&keeper.registration_token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(meta, keeper_meta);
    let (status, refreshed) = post_form(
        &s,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", keeper_tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &keeper.id),
            ("client_secret", keeper.secret.as_deref().unwrap()),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let fresh = tokens_for(&s, &public, RESOURCE).await;
    assert_eq!(verify(&s, fresh["access_token"].as_str(), RESOURCE).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn registration_survives_every_json_shape() {
    let s = Server::start();
    let http = http();
    let mut bodies: Vec<(String, String)> = Vec::new();
    let fields = [
        "redirect_uris",
        "client_name",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "scope",
        "contacts",
        "client_uri",
        "logo_uri",
        "tos_uri",
        "policy_uri",
        "software_id",
        "software_version",
        "application_type",
    ];
    let shapes = [
        json!(null),
        json!(42),
        json!(-1.5e308),
        json!(true),
        json!({"nested": {"deeper": [1, 2, 3]}}),
        json!([]),
        json!([null, 1, {}]),
        json!(MARKUP),
        json!("a\r\nb\u{0}c"),
        json!("x".repeat(10_000)),
        json!(vec![MARKUP; 500]),
        json!(vec!["http://127.0.0.1:1/cb"; 200]),
        json!("javascript:alert(1)"),
        json!(["https://evil.example/cb#frag", "http://user:pw@127.0.0.1/cb", "data:text/html,<script>"]),
    ];
    for field in fields {
        for shape in &shapes {
            let body = json!({ "redirect_uris": [REDIRECT], field: shape });
            bodies.push((
                format!("{field}={}", &shape.to_string().chars().take(40).collect::<String>()),
                body.to_string(),
            ));
        }
    }
    // Malformed JSON of every kind.
    for (what, raw) in [
        ("truncated", "{\"redirect_uris\": [\"http://127.0.0.1/cb\"".to_owned()),
        ("not an object", "[1,2,3]".to_owned()),
        ("bare string", "\"hello\"".to_owned()),
        ("invalid utf-8", String::from_utf8_lossy(b"{\"client_name\": \"\xff\xfe\"}").into_owned()),
        ("deep nesting", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))),
        (
            "duplicate keys",
            format!("{{\"redirect_uris\": [\"{REDIRECT}\"], \"redirect_uris\": [\"https://evil.example/cb\"]}}"),
        ),
        ("trailing garbage", format!("{{\"redirect_uris\": [\"{REDIRECT}\"]}} <script>")),
        ("empty", String::new()),
    ] {
        bodies.push((what.to_owned(), raw));
    }
    let mut created = Vec::new();
    for (what, body) in bodies {
        let res =
            http.post(s.url("/register")).header("content-type", "application/json").body(body).send().await.unwrap();
        let status = res.status();
        if status == StatusCode::CREATED {
            let reg: Value = res.json().await.unwrap();
            // Whatever was accepted is data (a name with markup is a name: pages escape it), and
            // the redirect URIs are exactly the safe one sent.
            for uri in reg["redirect_uris"].as_array().unwrap() {
                assert!(uri.as_str().unwrap().starts_with("http://127.0.0.1"), "{what}: {uri}");
            }
            created.push(reg);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
            check(&format!("register {what}"), res, Kind::Api, &s).await;
        }
    }
    assert!(!created.is_empty(), "some shapes are valid (null optional fields)");
    // A field given twice is refused, not settled by whichever copy a parser keeps.
    let twice = format!("{{\"redirect_uris\": [\"{REDIRECT}\"], \"redirect_uris\": [\"https://evil.example/cb\"]}}");
    let res =
        http.post(s.url("/register")).header("content-type", "application/json").body(twice).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata");
    assert!(body["error_description"].as_str().unwrap().contains("duplicate field"), "{body}");
    // Registration management with garbage ids and tokens.
    for id in ["..%2f..%2fetc", "%00", &"a".repeat(5000), "<script>"] {
        let res = http.get(s.url(&format!("/register/{id}"))).bearer_auth("x").send().await.unwrap();
        check(&format!("GET /register/{}", &id[..id.len().min(20)]), res, Kind::Api, &s).await;
        let res = http
            .put(s.url(&format!("/register/{id}")))
            .bearer_auth(MARKUP)
            .json(&json!({"redirect_uris": [REDIRECT]}))
            .send()
            .await
            .unwrap();
        check("PUT /register/<garbage>", res, Kind::Api, &s).await;
    }
}

#[tokio::test]
async fn verify_and_metadata_survive_hostile_headers() {
    let s = Server::start();
    let http = http();
    let hostile = [
        MARKUP,
        "x\u{7f}y",
        "évil",
        "/mcp/../../admin",
        "//evil.example/mcp",
        "https://evil.example/",
        "a b",
        &"a".repeat(8000),
    ];
    for value in hostile {
        for header in [
            "x-forwarded-uri",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-method",
            "x-original-url",
            "authorization",
            "mcp-method",
            "mcp-name",
        ] {
            // reqwest refuses some bytes in header values; those cannot be sent at all.
            let Ok(v) = reqwest::header::HeaderValue::from_str(value) else { continue };
            let res = http.get(s.url("/verify")).header(header, v.clone()).send().await.unwrap();
            let status = res.status();
            assert!(matches!(status.as_u16(), 200 | 401 | 403 | 400 | 404), "/verify {header}: {status}");
            check(&format!("/verify {header}"), res, Kind::Api, &s).await;
            let res =
                http.get(s.url("/.well-known/oauth-protected-resource/mcp")).header(header, v).send().await.unwrap();
            check(&format!("PRM {header}"), res, Kind::Api, &s).await;
        }
        let res = verify_request(&http, &s.url("/verify"), Some(value), RESOURCE).send().await;
        if let Ok(res) = res {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            check("/verify bearer", res, Kind::Api, &s).await;
        }
    }
}

/// Writes raw bytes to the server and reads what comes back until it closes or `wait` passes.
fn raw_exchange(s: &Server, request: &[u8], wait: Duration) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    conn.set_read_timeout(Some(wait)).unwrap();
    let _ = conn.write_all(request);
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn oversized_and_malformed_heads_are_refused() {
    let s = Server::start();
    let wait = Duration::from_secs(10);
    // Too many headers (the parser takes 96).
    let mut req = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let answer = raw_exchange(&s, req.as_bytes(), wait);
    assert!(matches!(status_of(&answer), 400 | 431), "{}", &answer[..answer.len().min(200)]);
    // A head over 128 KiB.
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n", "c".repeat(200 * 1024));
    let answer = raw_exchange(&s, req.as_bytes(), wait);
    assert!(answer.is_empty() || matches!(status_of(&answer), 400 | 431), "{}", &answer[..answer.len().min(200)]);
    // Garbage instead of HTTP; a header without a colon; bad or conflicting lengths (smuggling).
    // (A bare LF as line end is accepted: RFC 9112 §2.2 allows it.)
    for raw in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost x\r\n\r\n",
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nabcde",
        b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let answer = raw_exchange(&s, raw, wait);
        let status = status_of(&answer);
        assert!(answer.is_empty() || (400..500).contains(&status), "{raw:?}: {}", &answer[..answer.len().min(200)]);
    }
    // The server is fine afterwards.
    assert_eq!(http().get(s.url("/health")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let s = Server::start_with(Options {
        env: vec![("MCP_AUTHD__SERVER__REQUEST_TIMEOUT".into(), "2".into())],
        ..Options::default()
    });
    // A head that never ends: 408 (or a close) after the head timeout, not a held connection.
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.is_empty() || status_of(&answer) == 408, "{answer}");

    // A body that trickles: the RFC error once the body timeout passes.
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("did not arrive within 10 s"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let s = Server::start_with(Options {
        env: vec![
            ("MCP_AUTHD__SERVER__MAX_CONNECTIONS".into(), "3".into()),
            ("MCP_AUTHD__SERVER__WORKERS".into(), "1".into()),
            ("MCP_AUTHD__SERVER__REQUEST_TIMEOUT".into(), "3".into()),
        ],
        ..Options::default()
    });
    // Three idle connections take every slot.
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    // A fourth is accepted by the kernel but not served while they hold on...
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
    let mut buf = [0u8; 1024];
    let early = conn.read(&mut buf);
    assert!(
        early.is_err(),
        "served beyond max_connections: {:?}",
        early.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );
    // ...and served once the idle ones are cut off by the head timeout.
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    assert_eq!(status_of(&String::from_utf8_lossy(&out)), 200);
    drop(idle);
}
