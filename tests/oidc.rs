//! OpenID Connect upstream, end to end against a real, certified OpenID Provider (npm
//! `oidc-provider` on loopback, tests/oidc/provider.mjs): an MCP client registers with
//! mcp-authd, /authorize sends the browser to the provider (directly or through the sign-in
//! page), the browser logs in and consents there, comes back to /callback/<id>, the client
//! redeems the code, and /verify answers with the identity. Then what must be refused: ID
//! tokens with another nonce, a forged signature, a foreign key, another audience; users outside
//! the allow-lists (at login and again at refresh); and a provider that is down or hangs.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::oauth::*;
use common::oidc::{Browser, CLIENT_ID, Landing, OidcProvider, ProviderOptions, installed_in};
use common::server::{ALICE_PASSWORD, Options, RESOURCE, Server, free_port};
use reqwest::StatusCode;
use serde_json::Value;

/// mcp-authd on a port chosen first (the provider must know its callback URLs), with the
/// provider's `[[oidc]]` entries.
fn servers(
    ids: &[&str],
    provider_opts: ProviderOptions,
    toml: impl Fn(&OidcProvider) -> String,
) -> (OidcProvider, Server) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let callbacks = ids.iter().map(|s| s.to_string()).collect();
    let provider = OidcProvider::start(&base, ProviderOptions { callbacks, ..provider_opts });
    let s = Server::start_with(Options { toml: toml(&provider), port: Some(port), ..Options::default() });
    (provider, s)
}

/// `[[oidc]] corp` with `extra`, as the default provider (local users exist too: without a
/// default, the sign-in page would come first).
fn corp(p: &OidcProvider, extra: &str) -> String {
    format!("[oauth]\ndefault_provider = \"corp\"\n\n{}", p.config("corp", extra))
}

/// The access token's claims (already checked by /verify; decoded here to look at them).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// /authorize for `client` straight to the provider (the default or only provider); returns
/// where the browser ends after logging in as `account`, and the PKCE pair.
async fn log_in_direct(s: &Server, p: &OidcProvider, client: &Registered, account: &str) -> (String, Pkce) {
    let pkce = pkce();
    let mut browser = Browser::new();
    let res = browser.get(&authorize_url(s, &client.id, REDIRECT, &pkce.challenge, RESOURCE)).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let upstream = location(&res);
    assert!(upstream.starts_with(&format!("{}/auth?", p.issuer)), "straight to the provider: {upstream}");
    let landing = browser.open(&upstream).await;
    (browser.log_in_at_provider(landing, account).await, pkce)
}

/// /authorize for `client`, then the sign-in page, where the user picks provider `id` and logs
/// in there as `account`; returns where the browser ends, and the PKCE pair.
async fn log_in_picking(s: &Server, client: &Registered, id: &str, account: &str) -> (String, Pkce) {
    let pkce = pkce();
    let mut browser = Browser::new();
    let Landing::Page(status, url, _) =
        browser.open(&authorize_url(s, &client.id, REDIRECT, &pkce.challenge, RESOURCE)).await
    else {
        panic!("the sign-in page");
    };
    assert_eq!(status, StatusCode::OK);
    let session = param(&url, "session").unwrap();
    let landing = browser.open(&s.url(&format!("/login/{id}?session={session}"))).await;
    (browser.log_in_at_provider(landing, account).await, pkce)
}

/// The identity headers of a /verify answer.
fn identity(res: &reqwest::Response) -> [Option<String>; 3] {
    ["x-user-id", "x-user-name", "x-user-email"].map(|n| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned()))
}

#[tokio::test]
async fn oidc_login_end_to_end_with_identity_headers() {
    // Local users exist too, but the default provider skips the sign-in page.
    let (p, s) = servers(&["corp"], ProviderOptions::default(), |p| {
        format!(
            "[oauth]\ndefault_provider = \"corp\"\n\n{}",
            p.config("corp", "label = \"Corp SSO\"\nallowed_groups = [\"engineers\"]")
        )
    });
    let client = register_public(&s).await;
    let pkce = pkce();
    let mut browser = Browser::new();
    let res = browser.get(&authorize_url(&s, &client.id, REDIRECT, &pkce.challenge, RESOURCE)).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let upstream = location(&res);
    // The upstream request: code flow, our client, our callback, PKCE S256, state, nonce.
    assert!(upstream.starts_with(&format!("{}/auth?", p.issuer)), "{upstream}");
    assert_eq!(param(&upstream, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&upstream, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(param(&upstream, "redirect_uri"), Some(s.url("/callback/corp")));
    assert_eq!(param(&upstream, "code_challenge_method").as_deref(), Some("S256"));
    assert!(param(&upstream, "code_challenge").is_some_and(|c| c.len() == 43));
    assert!(param(&upstream, "state").is_some_and(|c| c.len() >= 32));
    assert!(param(&upstream, "nonce").is_some_and(|c| c.len() >= 32));
    let scope = param(&upstream, "scope").unwrap();
    assert_eq!(scope.split(' ').filter(|s| *s == "openid").count(), 1, "{scope}");
    assert!(scope.contains("groups"), "{scope}");

    let landing = browser.open(&upstream).await;
    let back = browser.log_in_at_provider(landing, "ada").await;
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()), "RFC 9207 iss");
    let code = param(&back, "code").unwrap_or_else(|| panic!("a code: {back}\n{}", s.logs()));
    let (status, tokens) = redeem(&s, &client.id, &code, &pkce.verifier, Some(RESOURCE)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let res = verify(&s, Some(access), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        identity(&res),
        [Some("corp:ada".into()), Some("ada".into()), Some("ada@example.com".into())],
        "sub namespaced by provider, preferred_username, verified e-mail"
    );
    assert_eq!(res.headers()["x-client-id"], client.id.as_str());
    let claims = claims_of(access);
    assert_eq!(claims["groups"], serde_json::json!(["engineers", "staff"]), "groups from the groups claim");
    assert_eq!(claims["sub"], "corp:ada");

    // A refresh while still allowed works.
    let (status, rotated) = refresh(&s, &client.id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let logs = s.logs();
    assert!(logs.contains("OpenID provider discovered"));
    // No secret in the trace-level log: the client secret (form or Basic header), our code and
    // tokens, the upstream state and nonce.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{}", common::oidc::CLIENT_SECRET));
    let upstream_secrets = [param(&upstream, "state").unwrap(), param(&upstream, "nonce").unwrap()];
    for secret in [common::oidc::CLIENT_SECRET, &basic, &code, access, tokens["refresh_token"].as_str().unwrap()]
        .into_iter()
        .chain(upstream_secrets.iter().map(String::as_str))
    {
        assert!(!logs.contains(secret), "a secret appears in the log: {}…", &secret[..6]);
    }
}

#[tokio::test]
async fn sign_in_page_lists_every_provider_escaped_and_userinfo_fills_claims() {
    // The provider puts profile, e-mail and groups only in userinfo; two entries for it: one
    // reads userinfo, one does not. Plus local users and GitHub: four ways to sign in.
    let gh = common::github::GithubStandIn::start(common::github::GhUser {
        id: 1,
        login: "octocat".into(),
        email: None,
        orgs: vec![],
    });
    let opts = ProviderOptions { claims_in_userinfo_only: true, ..ProviderOptions::default() };
    let (p, s) = servers(&["withinfo", "bare"], opts, |p| {
        format!(
            "{}{}{}",
            gh.config(""),
            p.config("withinfo", "label = \"<script>alert('x')</script> & \\\"Co\\\"\"\nuserinfo = true"),
            p.config("bare", "")
        )
    });
    let client = register_public(&s).await;
    for (id, want) in [
        ("withinfo", [Some("withinfo:ada".into()), Some("ada".into()), Some("ada@example.com".into())]),
        ("bare", [Some("bare:ada".into()), Some("ada".into()), Some(String::new())]),
    ] {
        let pkce = pkce();
        let mut browser = Browser::new();
        let Landing::Page(status, url, html) =
            browser.open(&authorize_url(&s, &client.id, REDIRECT, &pkce.challenge, RESOURCE)).await
        else {
            panic!("the sign-in page");
        };
        assert_eq!(status, StatusCode::OK);
        assert!(url.starts_with(&s.url("/login?session=")), "{url}");
        // Every provider, each a link; the label escaped, never markup.
        assert!(html.contains("name=\"password\""), "the local form");
        assert!(html.contains(">Sign in with GitHub</a>"), "{html}");
        assert!(html.contains(">Sign in with bare</a>"), "the id when there is no label: {html}");
        assert!(
            html.contains(">Sign in with &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Co&quot;</a>"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        let session = param(&url, "session").unwrap();
        let link = format!("{}/login/{id}?session={session}", s.base);
        assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
        let landing = browser.open(&link).await;
        let back = browser.log_in_at_provider(landing, "ada").await;
        let code = param(&back, "code").unwrap_or_else(|| panic!("{back}\n{}", s.logs()));
        let (status, tokens) = redeem(&s, &client.id, &code, &pkce.verifier, Some(RESOURCE)).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let access = tokens["access_token"].as_str().unwrap();
        let res = verify(&s, Some(access), RESOURCE).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(identity(&res), want, "{id}");
        let groups = &claims_of(access)["groups"];
        if id == "withinfo" {
            assert_eq!(groups, &serde_json::json!(["engineers", "staff"]));
        } else {
            assert!(groups.is_null(), "{groups}");
        }
    }
    // The local form still works on the same page.
    let back = login_alice(&s, &authorize_url(&s, &client.id, REDIRECT, &pkce().challenge, RESOURCE)).await;
    assert!(param(&back, "code").is_some(), "{back}");
    drop(p);
}

/// Logs in as ada with the provider misbehaving in `mode`; returns the redirect to the client.
async fn refused(s: &Server, p: &OidcProvider, client: &Registered, mode: &str) -> String {
    p.tamper(mode).await;
    let (back, _) = log_in_direct(s, p, client, "ada").await;
    p.tamper("none").await;
    assert!(param(&back, "code").is_none(), "{mode}: no code: {back}");
    assert_eq!(param(&back, "error").as_deref(), Some("server_error"), "{mode}: {back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()));
    back
}

#[tokio::test]
async fn id_tokens_with_wrong_nonce_signature_key_or_audience_and_mixed_up_issuers_are_refused() {
    let (p, s) = servers(&["corp"], ProviderOptions::default(), |p| {
        // An hour between JWKS refetches: a made-up kid must not make us fetch again.
        corp(p, "jwks_refresh_secs = 3600")
    });
    let client = register_public(&s).await;
    // First a good login (discovery and the JWKS fetch happen here).
    let (back, _) = log_in_direct(&s, &p, &client, "ada").await;
    assert!(param(&back, "code").is_some(), "{back}\n{}", s.logs());
    assert_eq!(p.jwks_fetches().await, 1);
    for (mode, logged) in [
        ("nonce", "Invalid nonce"),
        ("signature", "Signature verification failed"),
        ("foreign-key", "Signature verification failed"),
        ("audience", "Invalid audiences"),
        ("unknown-kid", "signed with an unknown key"),
        ("iss", "the authorization response came from issuer \"https://idp.attacker.example\""),
    ] {
        refused(&s, &p, &client, mode).await;
        let logs = s.logs();
        assert!(logs.contains(logged), "{mode}: {logged:?} not logged:\n{logs}");
    }
    assert_eq!(p.jwks_fetches().await, 1, "the unknown kid did not make us fetch the JWKS again (rate limit)");
    // And the provider behaving again: logins work.
    let (back, _) = log_in_direct(&s, &p, &client, "ada").await;
    assert!(param(&back, "code").is_some(), "{back}");
}

#[tokio::test]
async fn key_rollover_refetches_the_jwks() {
    let (mut p, s) = servers(&["corp"], ProviderOptions::default(), |p| corp(p, "jwks_refresh_secs = 0"));
    let client = register_public(&s).await;
    let (back, _) = log_in_direct(&s, &p, &client, "ada").await;
    assert!(param(&back, "code").is_some(), "{back}\n{}", s.logs());
    // The provider restarts with a new signing key (kid); our cached JWKS only has the old one.
    p.restart();
    assert_eq!(p.jwks_fetches().await, 0);
    let (back, pkce) = log_in_direct(&s, &p, &client, "ada").await;
    let code = param(&back, "code").unwrap_or_else(|| panic!("{back}\n{}", s.logs()));
    assert_eq!(p.jwks_fetches().await, 1, "the unknown kid made us fetch the JWKS once");
    let (status, tokens) = redeem(&s, &client.id, &code, &pkce.verifier, Some(RESOURCE)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(s.logs().contains("key rollover"));
    // A kid that is still unknown after the refetch is refused.
    refused(&s, &p, &client, "unknown-kid").await;
}

#[tokio::test]
async fn users_outside_the_allow_lists_get_access_denied() {
    let (p, s) = servers(&["corp"], ProviderOptions::default(), |p| {
        corp(
            p,
            "allowed_groups = [\"Engineers\"]\nallowed_email_domains = [\"example.org\"]\nallowed_emails = [\"boss@partner.example\"]",
        )
    });
    let client = register_public(&s).await;
    // mallory: no listed group, domain or address.
    let (back, _) = log_in_direct(&s, &p, &client, "mallory").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()), "RFC 9207 iss on the error too");
    assert!(param(&back, "code").is_none());
    assert!(s.logs().contains("login_denied"));
    // ada by group (case-insensitive), grace by e-mail domain.
    for who in ["ada", "grace"] {
        let (back, _) = log_in_direct(&s, &p, &client, who).await;
        assert!(param(&back, "code").is_some(), "{who}: {back}");
    }
}

#[tokio::test]
async fn unverified_email_is_not_an_identity() {
    let (p, s) =
        servers(&["corp"], ProviderOptions::default(), |p| corp(p, "allowed_email_domains = [\"example.com\"]"));
    let client = register_public(&s).await;
    // Same domain as ada, but email_verified is false: not on the list.
    let (back, _) = log_in_direct(&s, &p, &client, "unverified").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    let (back, pkce) = log_in_direct(&s, &p, &client, "ada").await;
    let code = param(&back, "code").unwrap();
    let (_, tokens) = redeem(&s, &client.id, &code, &pkce.verifier, Some(RESOURCE)).await;
    assert_eq!(claims_of(tokens["access_token"].as_str().unwrap())["email"], "ada@example.com");
}

#[tokio::test]
async fn refresh_checks_the_allow_lists_again() {
    let (_provider, mut s) =
        servers(&["corp"], ProviderOptions::default(), |p| p.config("corp", "allowed_groups = [\"engineers\"]"));
    let client = register_public(&s).await;
    let (back, pkce) = log_in_picking(&s, &client, "corp", "ada").await;
    let code = param(&back, "code").unwrap();
    let (_, tokens) = redeem(&s, &client.id, &code, &pkce.verifier, Some(RESOURCE)).await;
    let (status, rotated) = refresh(&s, &client.id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    // alice (local) logs in too.
    let alice = tokens_for(&s, &client, RESOURCE).await;

    // The operator narrows the OIDC allow-list and removes alice, then restarts.
    s.edit_config("allowed_groups = [\"engineers\"]", "allowed_groups = [\"navy\"]");
    s.edit_config("[[local.users]]\nusername = \"alice\"", "[[local.users]]\nusername = \"alice-gone\"");
    s.restart();
    for (who, refresh_token, access) in [
        ("ada", rotated["refresh_token"].as_str().unwrap(), rotated["access_token"].as_str().unwrap()),
        ("alice", alice["refresh_token"].as_str().unwrap(), alice["access_token"].as_str().unwrap()),
    ] {
        assert_eq!(
            verify(&s, Some(access), RESOURCE).await.status(),
            StatusCode::OK,
            "{who}: still valid until refresh"
        );
        let (status, body) = refresh(&s, &client.id, refresh_token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{who}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{who}");
        assert!(body["error_description"].as_str().unwrap().contains("no longer allowed"), "{body}");
        // The whole login is revoked, its access token included.
        assert_eq!(verify(&s, Some(access), RESOURCE).await.status(), StatusCode::UNAUTHORIZED, "{who}");
    }
    let logs = s.logs();
    assert!(logs.contains("refresh_denied") && logs.contains("no longer on the allow-lists of corp"), "{logs}");
    assert!(logs.contains("local user alice is no longer configured"), "{logs}");
    // A new login as ada is refused now; grace (navy) gets in.
    let (back, _) = log_in_picking(&s, &client, "corp", "ada").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    let (back, _) = log_in_picking(&s, &client, "corp", "grace").await;
    assert!(param(&back, "code").is_some(), "{back}");
    let _ = ALICE_PASSWORD;
}

/// A provider that is down, or accepts connections and never answers: a clear page, quickly.
#[tokio::test]
async fn provider_down_or_hanging_gives_an_error_page_without_hanging() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging = format!("http://{}", silent.local_addr().unwrap());
    let down = format!("http://127.0.0.1:{}", free_port());
    let s = Server::start_with(Options {
        toml: format!(
            "[[oidc]]\nid = \"down\"\nlabel = \"Down IdP\"\nissuer = \"{down}\"\nclient_id = \"x\"\n\n\
             [[oidc]]\nid = \"hangs\"\nlabel = \"Slow IdP\"\nissuer = \"{hanging}\"\nclient_id = \"x\"\ntimeout_secs = 2\n"
        ),
        ..Options::default()
    });
    let client = register_public(&s).await;
    for (id, label) in [("down", "Down IdP"), ("hangs", "Slow IdP")] {
        let mut browser = Browser::new();
        let Landing::Page(_, url, _) =
            browser.open(&authorize_url(&s, &client.id, REDIRECT, &pkce().challenge, RESOURCE)).await
        else {
            panic!("the sign-in page");
        };
        let session = param(&url, "session").unwrap();
        let started = Instant::now();
        let res = browser.get(&s.url(&format!("/login/{id}?session={session}"))).await;
        let took = started.elapsed();
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "{id}");
        assert!(took < Duration::from_secs(6), "{id} took {took:?}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = res.text().await.unwrap();
        assert!(html.contains(&format!("{label} cannot be reached right now")), "{html}");
        // The session is still good: another way to sign in works.
        let res = browser
            .post(&s.url("/login"), &[("session", &session), ("username", "alice"), ("password", ALICE_PASSWORD)])
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert!(param(&location(&res), "code").is_some());
    }
    assert!(s.logs().contains("OpenID discovery at"), "the reason is logged");
    drop(silent);
}

#[test]
#[should_panic(expected = "run tests/peers/install.sh")]
fn a_missing_peer_fails_naming_the_install_script() {
    let empty = tempfile::tempdir().unwrap();
    installed_in(empty.path(), "oidc-npm/node_modules/oidc-provider/package.json");
}
