//! Client ID Metadata Documents against the real binary: the documents are served over https
//! on loopback by `common::https` (a throw-away CA that the server is told to trust with
//! `cimd.extra_ca_file`, and `cimd.allow_private_addresses`, the test-only allowance for
//! loopback). The whole flow with a URL client id; every way a document can be refused, shown on
//! the authorization error page (never a redirect) or answered with `invalid_client`; the SSRF
//! guard without the allowance; the cache.

mod common;

use std::time::{Duration, Instant};

use common::https::{Answer, DocServer};
use common::oauth::*;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A good document for `id`: a public client with the test redirect URI.
fn document(id: &str) -> Value {
    json!({
        "client_id": id,
        "client_name": "Doc client",
        "client_uri": "https://app.example.com",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp",
    })
}

fn cimd_toml(docs: &DocServer, extra: &str) -> String {
    format!("[cimd]\nextra_ca_file = \"{}\"\nfetch_timeout_secs = 2\n{extra}\n", docs.ca_file().display())
}

/// A server that trusts the document server and may fetch from loopback.
fn server_for(docs: &DocServer) -> Server {
    Server::start_with(Options { toml: cimd_toml(docs, "allow_private_addresses = true"), ..Default::default() })
}

/// `GET /authorize` for `client_id`; the status, the page, and whether it redirected.
async fn authorize_page(s: &Server, client_id: &str, redirect: &str) -> (StatusCode, String, bool) {
    let p = pkce();
    let res = http().get(authorize_url(s, client_id, redirect, &p.challenge, RESOURCE)).send().await.unwrap();
    let status = res.status();
    let redirected = res.headers().contains_key("location");
    if !redirected {
        let ct = res.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/html"), "an error page, not {ct}");
    }
    (status, res.text().await.unwrap(), redirected)
}

/// The error page for `client_id`: asserts no redirect and the status; returns the text.
async fn refused(s: &Server, client_id: &str, status: StatusCode) -> String {
    let (got, page, redirected) = authorize_page(s, client_id, REDIRECT).await;
    assert!(!redirected, "an untrusted client is never redirected to");
    assert_eq!(got, status, "{page}");
    // The page escapes quotes; compare on the unescaped text.
    page.replace("&quot;", "\"").replace("&#39;", "'")
}

#[tokio::test]
async fn whole_flow_with_a_url_client_id() {
    let docs = DocServer::start().await;
    let id = docs.url("/clients/good.json");
    docs.set("/clients/good.json", Answer::json(&document(&id)).header("Cache-Control", "public, max-age=300"));
    let s = server_for(&docs);

    assert!(s.logs().contains("cimd.allow_private_addresses = true: for tests and development only"), "warned");
    let meta: Value =
        http().get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    assert!(meta["token_endpoint_auth_methods_supported"].as_array().unwrap().iter().any(|m| m == "none"));

    // The sign-in page names the client with the host its document came from.
    let p = pkce();
    let authorize = authorize_url(&s, &id, REDIRECT, &p.challenge, RESOURCE);
    let res = http().get(&authorize).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let (cookie, login) = (cookie_of(&res), location(&res));
    let page = http().get(&login).header("cookie", cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Doc client (from localhost)"), "{page}");

    // Log in, get a code, redeem it as a public client with PKCE.
    let back = login_alice(&s, &authorize).await;
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    let code = param(&back, "code").expect("a code");
    let (status, tokens) = redeem(&s, &id, &code, &p.verifier, Some(RESOURCE)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();

    // /verify lets the token through, naming the URL client.
    let res = verify(&s, Some(&access), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("x-client-id").unwrap().to_str().unwrap(), id);
    assert_eq!(res.headers().get("x-user-id").unwrap().to_str().unwrap(), "local:alice");

    // A refresh resolves the client again (from the cache).
    let (status, refreshed) = refresh(&s, &id, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let access2 = refreshed["access_token"].as_str().unwrap().to_owned();

    // The client has no secret to present, in the form or with Basic (the id form-urlencoded,
    // RFC 6749 §2.3.1).
    let (status, body) = post_form(
        &s,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", &id), ("client_secret", "guess")],
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("public client"), "{body}");
    let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let (status, body) =
        post_form(&s, "/token", &[("grant_type", "refresh_token"), ("refresh_token", "x")], Some((&encoded, "guess")))
            .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("public client"), "{body}");

    // It revokes its own tokens (RFC 7009) like any public client.
    let (status, body) = post_form(&s, "/revoke", &[("token", &access2), ("client_id", &id)], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(verify(&s, Some(&access2), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);

    // Never registered, so RFC 7592 does not know it.
    let manage = format!("/register/{encoded}");
    let res = http().get(s.url(&manage)).bearer_auth("anything").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // One fetch for all of it (max-age=300): two authorizations, a code, a refresh, a revocation.
    let (status, _, redirected) = authorize_page(&s, &id, REDIRECT).await;
    assert!(redirected && status == StatusCode::FOUND);
    assert_eq!(docs.hits("/clients/good.json"), 1, "the document is fetched once while its max-age lasts");
}

#[tokio::test]
async fn device_flow_with_a_url_client_id() {
    const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
    let docs = DocServer::start().await;
    let id = docs.url("/clients/cli.json");
    let doc = json!({
        "client_id": id,
        "client_name": "Doc CLI",
        "grant_types": [DEVICE_GRANT],
        "token_endpoint_auth_method": "none",
    });
    docs.set("/clients/cli.json", Answer::json(&doc));
    let s = server_for(&docs);
    let (status, d) = post_form(&s, "/device_authorization", &[("client_id", &id), ("resource", RESOURCE)], None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let device_code = d["device_code"].as_str().unwrap();
    let (cookie, session, page) = person_logs_in(&s, d["verification_uri_complete"].as_str().unwrap()).await;
    assert!(page.contains("Doc CLI (from localhost)"), "the confirmation names the client and its host: {page}");
    let (status, _) = decide(&s, Some(&cookie), &session, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let form = [("grant_type", DEVICE_GRANT), ("device_code", device_code), ("client_id", id.as_str())];
    let (status, tokens) = post_form(&s, "/token", &form, None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let res = verify(&s, tokens["access_token"].as_str(), RESOURCE).await;
    assert_eq!(res.headers().get("x-client-id").unwrap().to_str().unwrap(), id);
}

#[tokio::test]
async fn documents_that_say_no_store_are_fetched_each_time() {
    let docs = DocServer::start().await;
    let id = docs.url("/clients/fresh.json");
    docs.set("/clients/fresh.json", Answer::json(&document(&id)).header("Cache-Control", "no-store"));
    let s = server_for(&docs);
    for _ in 0..2 {
        let (status, page, redirected) = authorize_page(&s, &id, REDIRECT).await;
        assert!(redirected && status == StatusCode::FOUND, "{page}");
    }
    assert_eq!(docs.hits("/clients/fresh.json"), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_fetch_and_failures_are_remembered() {
    let docs = DocServer::start().await;
    let id = docs.url("/clients/busy.json");
    let slow = Answer { delay: Duration::from_millis(500), ..Answer::json(&document(&id)) };
    docs.set("/clients/busy.json", slow.header("Cache-Control", "max-age=600"));
    let s = server_for(&docs);
    let pages = futures_util::future::join_all((0..5).map(|_| authorize_page(&s, &id, REDIRECT))).await;
    for (status, page, redirected) in pages {
        assert!(redirected && status == StatusCode::FOUND, "{page}");
    }
    assert_eq!(docs.hits("/clients/busy.json"), 1, "five concurrent authorizations, one fetch");

    // A document that failed is not fetched again at once (a burst costs one fetch).
    let gone = docs.url("/clients/gone.json");
    for _ in 0..3 {
        let page = refused(&s, &gone, StatusCode::BAD_REQUEST).await;
        assert!(page.contains("HTTP status 404"), "{page}");
    }
    assert_eq!(docs.hits("/clients/gone.json"), 1);
}

#[tokio::test]
async fn bad_documents_are_refused_with_their_reason() {
    let docs = DocServer::start().await;
    let s = server_for(&docs);
    let url = |p: &str| docs.url(p);

    // The document names another client.
    docs.set("/mismatch.json", Answer::json(&document(&url("/other.json"))));
    let page = refused(&s, &url("/mismatch.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("names another client_id"), "{page}");

    // A redirect URI the document does not list (a loopback one may differ in port only).
    docs.set("/good.json", Answer::json(&document(&url("/good.json"))));
    let (status, page, redirected) = authorize_page(&s, &url("/good.json"), "http://127.0.0.1:33418/elsewhere").await;
    assert!(!redirected && status == StatusCode::BAD_REQUEST);
    assert!(page.contains("not listed in the redirect_uris of the client"), "{page}");
    let (status, _, redirected) = authorize_page(&s, &url("/good.json"), "http://127.0.0.1:50123/callback").await;
    assert!(redirected && status == StatusCode::FOUND, "RFC 8252 §7.3: any port on loopback");

    // private_key_jwt is refused, and so is any secret.
    let mut jwt = document(&url("/jwt.json"));
    jwt["token_endpoint_auth_method"] = json!("private_key_jwt");
    docs.set("/jwt.json", Answer::json(&jwt));
    let page = refused(&s, &url("/jwt.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("does not support private_key_jwt"), "{page}");
    let mut secret = document(&url("/secret.json"));
    secret["client_secret"] = json!("s3cret");
    docs.set("/secret.json", Answer::json(&secret));
    let page = refused(&s, &url("/secret.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("must not contain client_secret"), "{page}");

    // Larger than 5 KiB, announced or not.
    let mut big = document(&url("/big.json"));
    big["client_name"] = json!("x".repeat(6000));
    docs.set("/big.json", Answer::json(&big));
    let page = refused(&s, &url("/big.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("larger than 5120 bytes"), "{page}");
    let mut streamed = document(&url("/streamed.json"));
    streamed["client_name"] = json!("x".repeat(6000));
    docs.set("/streamed.json", Answer { no_length: true, ..Answer::json(&streamed) });
    let page = refused(&s, &url("/streamed.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("larger than 5120 bytes"), "{page}");

    // Not there, not JSON, a redirect (not followed).
    let page = refused(&s, &url("/missing.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("HTTP status 404"), "{page}");
    docs.set("/html.json", Answer { body: b"<html>hi</html>".to_vec(), ..Answer::json(&json!({})) });
    let page = refused(&s, &url("/html.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("not a JSON object"), "{page}");
    docs.set("/moved.json", Answer { status: 302, ..Answer::json(&json!({})) }.header("Location", &url("/good.json")));
    let page = refused(&s, &url("/moved.json"), StatusCode::BAD_REQUEST).await;
    assert!(page.contains("redirects are not followed"), "{page}");
    assert_eq!(docs.hits("/good.json"), 1, "the redirect was not followed (the one fetch is the tests' above)");

    // Client ids that are not proper document URLs.
    for (id, why) in [
        (format!("https://localhost:{}/", docs.port), "must contain a path"),
        (format!("https://localhost:{}/a/../good.json", docs.port), "normal form"),
        (format!("https://u:p@localhost:{}/good.json", docs.port), "user information"),
    ] {
        let page = refused(&s, &id, StatusCode::BAD_REQUEST).await;
        assert!(page.contains(why), "{id}: {page}");
    }

    // At the token endpoint the same reasons are invalid_client.
    let (status, body) = post_form(
        &s,
        "/token",
        &[("grant_type", "authorization_code"), ("code", "x"), ("client_id", &url("/mismatch.json"))],
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("names another client_id"), "{body}");
}

#[tokio::test]
async fn a_slow_document_fails_within_the_time_limit() {
    let docs = DocServer::start().await;
    let id = docs.url("/slow.json");
    docs.set("/slow.json", Answer { delay: Duration::from_secs(30), ..Answer::json(&document(&id)) });
    let s = server_for(&docs);
    let started = Instant::now();
    let page = refused(&s, &id, StatusCode::BAD_REQUEST).await;
    assert!(page.contains("no complete answer within the 2-second limit"), "{page}");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    // The server is not stuck: the next request is answered at once.
    assert_eq!(http().get(s.url("/health")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn private_addresses_are_refused_without_the_allowance() {
    let docs = DocServer::start().await;
    let id = docs.url("/good.json");
    docs.set("/good.json", Answer::json(&document(&id)));
    let s = Server::start_with(Options { toml: cimd_toml(&docs, ""), ..Default::default() });
    // A name that resolves to loopback.
    let page = refused(&s, &id, StatusCode::BAD_REQUEST).await;
    assert!(page.contains("localhost resolves to"), "{page}");
    assert!(page.contains("loopback"), "{page}");
    // An address literal, IPv4 or IPv6 carrying IPv4.
    for host in ["127.0.0.1", "[::ffff:7f00:1]"] {
        let literal = format!("https://{host}:{}/good.json", docs.port);
        let page = refused(&s, &literal, StatusCode::BAD_REQUEST).await;
        assert!(page.contains("loopback (RFC 1122) address (127.0.0.0/8)"), "{literal}: {page}");
    }
    // Other spellings of it are not in normal form, so not a client id at all.
    for host in ["2130706433", "0x7f.1", "[::ffff:127.0.0.1]"] {
        let disguised = format!("https://{host}:{}/good.json", docs.port);
        let page = refused(&s, &disguised, StatusCode::BAD_REQUEST).await;
        assert!(page.contains("normal form"), "{disguised}: {page}");
    }
    let page = refused(&s, "https://169.254.169.254/latest/meta-data.json", StatusCode::BAD_REQUEST).await;
    assert!(page.contains("cloud metadata service"), "{page}");
    assert_eq!(docs.hits("/good.json"), 0, "nothing reached the document server");
}

#[tokio::test]
async fn only_allowed_domains_are_fetched() {
    let docs = DocServer::start().await;
    let id = docs.url("/good.json");
    docs.set("/good.json", Answer::json(&document(&id)));
    let toml = cimd_toml(&docs, "allow_private_addresses = true\nallowed_domains = [\"clients.example.com\"]");
    let s = Server::start_with(Options { toml, ..Default::default() });
    let page = refused(&s, &id, StatusCode::BAD_REQUEST).await;
    assert!(page.contains("localhost is not on this server's list of trusted client domains"), "{page}");
    assert_eq!(docs.hits("/good.json"), 0);
}

#[tokio::test]
async fn when_disabled_a_url_is_an_unknown_client() {
    let docs = DocServer::start().await;
    let id = docs.url("/good.json");
    docs.set("/good.json", Answer::json(&document(&id)));
    let toml = cimd_toml(&docs, "enabled = false\nallow_private_addresses = true");
    let s = Server::start_with(Options { toml, ..Default::default() });
    let meta: Value =
        http().get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], false);
    let page = refused(&s, &id, StatusCode::BAD_REQUEST).await;
    assert!(page.contains("not registered"), "{page}");
    assert_eq!(docs.hits("/good.json"), 0);
}
