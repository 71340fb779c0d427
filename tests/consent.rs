//! The consent page (`oauth.consent`): after signing in, the user allows or denies the client,
//! seeing its name, where the answer goes, the MCP server and the scopes. Allow issues the code,
//! deny returns `access_denied` with `state` and `iss`; the form only works from the browser
//! that signed in; `remember` asks once per user, client and resource until a wider scope, a
//! revocation or a deleted client.

mod common;

use common::oauth::*;
use common::server::{ALICE_PASSWORD, OTHER_RESOURCE, Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::json;

fn server(mode: &str) -> Server {
    Server::start_with(Options {
        toml: format!("[oauth]\nconsent = \"{mode}\"\nscopes_supported = [\"mcp\", \"admin\"]\n"),
        ..Options::default()
    })
}

/// Signs alice in for `client`; returns (browser cookie, where the login sent the browser).
async fn sign_in(s: &Server, client: &Registered, scope: &str, resource: &str) -> (String, String, Pkce) {
    let p = pkce();
    let url =
        authorize_url(s, &client.id, REDIRECT, &p.challenge, resource).replace("scope=mcp", &format!("scope={scope}"));
    let res = http().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let cookie = cookie_of(&res);
    let session = param(&location(&res), "session").unwrap();
    let res = http()
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[("session", session.as_str()), ("username", "alice"), ("password", ALICE_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    (cookie, location(&res), p)
}

/// The consent page at `next`, which must be one.
async fn consent_page(s: &Server, cookie: &str, next: &str) -> (String, String) {
    assert!(next.starts_with(&s.url("/consent?session=")), "the consent page comes next: {next}");
    let res = http().get(next).header("cookie", cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    (param(next, "session").unwrap(), res.text().await.unwrap())
}

async fn decide(s: &Server, cookie: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http().post(s.url("/consent")).form(form);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn allow_issues_the_code_deny_returns_access_denied() {
    let s = server("always");
    let client = register(
        &s,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Claude <Desktop> & co"}),
    )
    .await;

    // The page names the client (escaped), where the answer goes, the server and the scopes.
    let (cookie, next, p) = sign_in(&s, &client, "mcp", RESOURCE).await;
    let (session, html) = consent_page(&s, &cookie, &next).await;
    assert!(html.contains("Signed in as <strong>alice</strong>"), "{html}");
    assert!(html.contains("<strong>Claude &lt;Desktop&gt; &amp; co</strong> asks to use"), "{html}");
    assert!(!html.contains("<Desktop>"));
    assert!(html.contains(&format!("<strong>{RESOURCE}</strong>")), "{html}");
    assert!(html.contains("<li><code>mcp</code></li>"), "{html}");
    assert!(html.contains("goes back to <strong>127.0.0.1</strong>"), "{html}");
    assert!(html.contains("name=\"decision\" value=\"allow\"") && html.contains("name=\"decision\" value=\"deny\""));

    // Allow: the code, redeemable as usual.
    let res = decide(&s, Some(&cookie), &[("session", &session), ("decision", "allow")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = location(&res);
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()));
    let (status, tokens) = redeem(&s, &client.id, &param(&back, "code").unwrap(), &p.verifier, Some(RESOURCE)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    // One answer per sign-in.
    let res = decide(&s, Some(&cookie), &[("session", &session), ("decision", "allow")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());

    // Deny: access_denied with state and iss (RFC 6749 §4.1.2.1, RFC 9207), no code.
    let (cookie, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    let (session, _) = consent_page(&s, &cookie, &next).await;
    let res = decide(&s, Some(&cookie), &[("session", &session), ("decision", "deny")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = location(&res);
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert_eq!(param(&back, "error_description").as_deref(), Some("the user denied the request"));
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()));
    assert!(param(&back, "code").is_none());

    // "always" asks every time.
    let (_, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    assert!(next.starts_with(&s.url("/consent?")), "{next}");
    let log = s.logs();
    assert!(log.contains("consent_granted") && log.contains("consent_denied"));
}

#[tokio::test]
async fn forged_or_foreign_decisions_are_refused() {
    let s = server("always");
    let client = register_public(&s).await;
    let (cookie, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    let (session, _) = consent_page(&s, &cookie, &next).await;

    // No session, a made-up one, no cookie (a cross-site POST: SameSite=Lax keeps it home),
    // another browser's cookie, another site's Origin, no decision: a page, never a redirect.
    let other_browser = "mcp_authd_login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (what, cookie, form, status) in [
        ("no session", Some(cookie.as_str()), vec![("decision", "allow")], 400),
        (
            "wrong session",
            Some(cookie.as_str()),
            vec![("session", "x".repeat(43).leak() as &str), ("decision", "allow")],
            400,
        ),
        ("no cookie", None, vec![("session", session.as_str()), ("decision", "allow")], 400),
        ("another browser", Some(other_browser), vec![("session", session.as_str()), ("decision", "allow")], 400),
        ("no decision", Some(cookie.as_str()), vec![("session", session.as_str())], 400),
        ("odd decision", Some(cookie.as_str()), vec![("session", session.as_str()), ("decision", "yes please")], 400),
    ] {
        let res = decide(&s, cookie, &form).await;
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert!(res.headers().get("location").is_none(), "{what}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{what}");
    }
    let res = http()
        .post(s.url("/consent"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&[("session", session.as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("location").is_none());
    // Another browser cannot even see the page.
    let res = http().get(&next).header("cookie", other_browser).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // None of that used the sign-in up: the real browser still decides.
    let res = http()
        .post(s.url("/consent"))
        .header("cookie", &cookie)
        .header("origin", s.base.as_str())
        .form(&[("session", session.as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(param(&location(&res), "code").is_some());
}

#[tokio::test]
async fn remembered_consent_is_asked_again_for_more_scope_or_after_revocation() {
    let mut s = server("remember");
    let client = register_public(&s).await;

    // First time: asked; allowed.
    let (cookie, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    let (session, html) = consent_page(&s, &cookie, &next).await;
    assert!(html.contains("Your answer is remembered"));
    let res = decide(&s, Some(&cookie), &[("session", &session), ("decision", "allow")]).await;
    assert!(param(&location(&res), "code").is_some());

    // Same client, server and scopes (or fewer): straight back with a code.
    let (_, next, p) = sign_in(&s, &client, "mcp", RESOURCE).await;
    let code = param(&next, "code").unwrap_or_else(|| panic!("not asked again: {next}"));
    let (status, _) = redeem(&s, &client.id, &code, &p.verifier, Some(RESOURCE)).await;
    assert_eq!(status, StatusCode::OK);
    // A wider scope, or another server: asked.
    let (_, next, _) = sign_in(&s, &client, "mcp%20admin", RESOURCE).await;
    assert!(next.starts_with(&s.url("/consent?")), "wider scope: {next}");
    let (_, next, _) = sign_in(&s, &client, "mcp", OTHER_RESOURCE).await;
    assert!(next.starts_with(&s.url("/consent?")), "another resource: {next}");
    // Another client: asked.
    let other = register_public(&s).await;
    let (_, next, _) = sign_in(&s, &other, "mcp", RESOURCE).await;
    assert!(next.starts_with(&s.url("/consent?")), "another client: {next}");

    // The operator revokes alice's tokens: her consents go with them.
    std::thread::sleep(std::time::Duration::from_millis(1100)); // revocations count whole seconds
    let config = s.data_dir().parent().unwrap().join("mcp-authd.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .arg("--config")
        .arg(&config)
        .args(["tokens", "revoke", "--user", "local:alice"])
        .env_remove("MCP_AUTHD_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    assert!(next.starts_with(&s.url("/consent?")), "after revocation: {next}");

    // Remembered across a restart (it is in the store).
    let (cookie, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    let (session, _) = consent_page(&s, &cookie, &next).await;
    decide(&s, Some(&cookie), &[("session", &session), ("decision", "allow")]).await;
    s.restart();
    let (_, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    assert!(param(&next, "code").is_some(), "remembered across a restart: {next}");

    // The client deletes itself (RFC 7592): a new registration is a new client, asked again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let res = http()
        .delete(s.url(&format!("/register/{}", client.id)))
        .bearer_auth(&client.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let again = register_public(&s).await;
    let (_, next, _) = sign_in(&s, &again, "mcp", RESOURCE).await;
    assert!(next.starts_with(&s.url("/consent?")), "new client: {next}");
}

#[tokio::test]
async fn consent_off_keeps_the_flow_as_it_was() {
    let s = Server::start();
    let client = register_public(&s).await;
    let (_, next, _) = sign_in(&s, &client, "mcp", RESOURCE).await;
    assert!(next.starts_with(REDIRECT) && param(&next, "code").is_some(), "{next}");
    // And the page refuses what is not waiting for it.
    let res = http().get(s.url("/consent?session=nothing")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
