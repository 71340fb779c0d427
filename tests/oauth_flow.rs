//! The whole flow against the real binary, for each store and each kind of login:
//! register → authorize → login → callback → token → /verify 200 with identity headers →
//! refresh (rotation; the old token's reuse revokes the family) → revoke → /verify 401.
//! Afterwards, none of the secrets that crossed the wire appear in the server's trace log.

mod common;

use common::github::{GhUser, GithubStandIn};
use common::oauth::*;
use common::redis::RedisServer;
use common::server::{ALICE_PASSWORD, Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
enum Login {
    Local,
    Github,
}

fn redis_toml(redis: &RedisServer) -> String {
    format!("[store]\ntype = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"flow:\"\n", redis.url)
}

fn octocat() -> GhUser {
    GhUser { id: 583231, login: "octocat".into(), email: None, orgs: vec!["acme".into()] }
}

async fn login_with(s: &Server, login: Login, authorize: &str) -> String {
    match login {
        Login::Local => login_alice(s, authorize).await,
        Login::Github => login_github(s, authorize).await,
    }
}

/// Runs the flow; returns every secret the client saw, for the log check.
async fn full_flow(s: &Server, login: Login) -> Vec<String> {
    let mut secrets = vec![ALICE_PASSWORD.to_owned()];
    let client = register_public(s).await;
    assert!(client.secret.is_none(), "public clients get no secret");
    secrets.push(client.registration_token.clone());

    // Authorize and log in.
    let p = pkce();
    let authorize = authorize_url(s, &client.id, REDIRECT, &p.challenge, RESOURCE);
    let back = login_with(s, login, &authorize).await;
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()), "RFC 9207 iss");
    let code = param(&back, "code").expect("code");
    secrets.push(code.clone());

    // Token.
    let (status, tokens) = redeem(s, &client.id, &code, &p.verifier, Some(RESOURCE)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "mcp");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    secrets.extend([access.clone(), refresh1.clone()]);

    // /verify lets it through with the identity.
    let res = verify(s, Some(&access), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    match login {
        Login::Local => {
            assert_eq!(h("x-user-id").as_deref(), Some("local:alice"));
            assert_eq!(h("x-user-name").as_deref(), Some("alice"));
            assert_eq!(h("x-user-email").as_deref(), Some("alice@example.com"));
        }
        Login::Github => {
            assert_eq!(h("x-user-id").as_deref(), Some("583231"));
            assert_eq!(h("x-user-name").as_deref(), Some("octocat"));
            assert_eq!(h("x-user-email").as_deref(), Some("octocat@users.example.com"), "primary verified e-mail");
        }
    }
    assert_eq!(h("x-client-id").as_deref(), Some(client.id.as_str()));
    assert_eq!(h("x-scope").as_deref(), Some("mcp"));
    assert!(res.headers().get("authorization").is_none(), "the token is not forwarded by default");

    // A refresh the server refuses (wider scope, another resource) uses nothing up.
    for (name, value, error) in
        [("scope", "mcp admin", "invalid_scope"), ("resource", "https://other.example.com/mcp", "invalid_target")]
    {
        let (status, body) = post_form(
            s,
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh1), ("client_id", &client.id), (name, value)],
            None,
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some(error)), "{body}");
    }

    // Refresh: a new pair; the new access token works.
    let (status, rotated) = post_form(
        s,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh1),
            ("client_id", &client.id),
            ("resource", RESOURCE),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let access2 = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    secrets.extend([access2.clone(), refresh2.clone()]);
    assert_ne!(refresh2, refresh1, "refresh tokens rotate");
    assert_eq!(verify(s, Some(&access2), RESOURCE).await.status(), StatusCode::OK);

    // The old refresh token again: reuse. It fails and the whole family goes.
    let (status, body) = refresh(s, &client.id, &refresh1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = refresh(s, &client.id, &refresh2).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "family revoked");
    for t in [&access, &access2] {
        let res = verify(s, Some(t), RESOURCE).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "family's access tokens revoked");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }

    // A second login, then RFC 7009 revocation of its access token.
    let p = pkce();
    let back = login_with(s, login, &authorize_url(s, &client.id, REDIRECT, &p.challenge, RESOURCE)).await;
    let code = param(&back, "code").expect("code");
    let (status, fresh) = redeem(s, &client.id, &code, &p.verifier, None).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let access3 = fresh["access_token"].as_str().unwrap().to_owned();
    secrets.push(access3.clone());
    assert_eq!(verify(s, Some(&access3), RESOURCE).await.status(), StatusCode::OK);
    let (status, _) = post_form(s, "/revoke", &[("token", &access3), ("client_id", &client.id)], None).await;
    assert_eq!(status, StatusCode::OK);
    let res = verify(s, Some(&access3), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": "invalid_token", "error_description": "token revoked"}));
    // Revoking its refresh token ends the rest of that login too.
    let refresh3 = fresh["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = post_form(
        s,
        "/revoke",
        &[("token", &refresh3), ("token_type_hint", "refresh_token"), ("client_id", &client.id)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = refresh(s, &client.id, &refresh3).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    secrets
}

/// No secret that crossed the wire is in the trace-level log.
fn assert_no_secrets_logged(s: &Server, secrets: &[String]) {
    let logs = s.logs();
    assert!(logs.len() > 1000, "trace logging produced output");
    for secret in secrets {
        assert!(!logs.contains(secret.as_str()), "a secret appears in the log: {}…", &secret[..6.min(secret.len())]);
    }
}

#[tokio::test]
async fn local_user_flow_embedded_store() {
    let s = Server::start();
    let secrets = full_flow(&s, Login::Local).await;
    assert_no_secrets_logged(&s, &secrets);
}

#[tokio::test]
async fn github_flow_embedded_store() {
    let gh = GithubStandIn::start(octocat());
    let s = Server::start_with(Options {
        toml: gh.config("allowed_orgs = [\"ACME\"]"),
        no_local_users: true,
        ..Options::default()
    });
    let mut secrets = full_flow(&s, Login::Github).await;
    secrets.push(common::github::CLIENT_SECRET.to_owned());
    assert_no_secrets_logged(&s, &secrets);
    assert_eq!(gh.exchanges(), 2, "one upstream code exchange per login");
}

#[tokio::test]
async fn local_user_flow_redis_store() {
    let redis = RedisServer::start();
    let s = Server::start_with(Options { toml: redis_toml(&redis), ..Options::default() });
    let secrets = full_flow(&s, Login::Local).await;
    assert_no_secrets_logged(&s, &secrets);
}

#[tokio::test]
async fn github_flow_redis_store() {
    let redis = RedisServer::start();
    let gh = GithubStandIn::start(octocat());
    let s = Server::start_with(Options {
        toml: format!("{}{}", redis_toml(&redis), gh.config("allowed_users = [\"OctoCat\"]")),
        no_local_users: true,
        ..Options::default()
    });
    let secrets = full_flow(&s, Login::Github).await;
    assert_no_secrets_logged(&s, &secrets);
}

#[tokio::test]
async fn github_users_outside_the_allow_lists_are_refused() {
    let gh = GithubStandIn::start(GhUser {
        id: 1,
        login: "mallory".into(),
        email: Some("m@example.com".into()),
        orgs: vec!["evil".into()],
    });
    let s = Server::start_with(Options {
        toml: gh.config("allowed_users = [\"octocat\", \"42\"]\nallowed_orgs = [\"acme\"]"),
        no_local_users: true,
        ..Options::default()
    });
    let client = register_public(&s).await;
    let p = pkce();
    let back = login_github(&s, &authorize_url(&s, &client.id, REDIRECT, &p.challenge, RESOURCE)).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert!(param(&back, "code").is_none());
    // By numeric id, case-insensitively by login, or by organisation: allowed.
    for user in [
        GhUser { id: 42, login: "someone".into(), email: None, orgs: vec![] },
        GhUser { id: 7, login: "OCTOCAT".into(), email: None, orgs: vec![] },
        GhUser { id: 8, login: "member".into(), email: None, orgs: vec!["Acme".into()] },
    ] {
        gh.sign_in(user.clone());
        let back = login_github(&s, &authorize_url(&s, &client.id, REDIRECT, &p.challenge, RESOURCE)).await;
        assert!(param(&back, "code").is_some(), "{} should be allowed: {back}", user.login);
    }
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_and_issues_nothing() {
    let s = Server::start();
    let client = register_public(&s).await;
    let p = pkce();
    let http = http();
    let res = http.get(authorize_url(&s, &client.id, REDIRECT, &p.challenge, RESOURCE)).send().await.unwrap();
    let cookie = cookie_of(&res);
    let session = param(&location(&res), "session").unwrap();
    let res = http
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[("session", session.as_str()), ("username", "alice"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains("Wrong username or password."));
    // Without the browser cookie (a cross-site POST): refused even with the right password.
    let res = http
        .post(s.url("/login"))
        .form(&[("session", session.as_str()), ("username", "alice"), ("password", ALICE_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("another browser"));
    // With it, the same session still completes.
    let res = http
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[("session", session.as_str()), ("username", "alice"), ("password", ALICE_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(param(&location(&res), "code").is_some());
}

#[tokio::test]
async fn confidential_client_with_basic_and_post_authentication() {
    let s = Server::start();
    let client = register_confidential(&s).await;
    let secret = client.secret.clone().expect("confidential clients get a secret");
    assert_eq!(client.body["client_secret_expires_at"], 0);
    for basic in [true, false] {
        let p = pkce();
        let back =
            login_alice(&s, &authorize_url(&s, &client.id, "https://app.example.com/cb", &p.challenge, RESOURCE)).await;
        let code = param(&back, "code").unwrap();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://app.example.com/cb"),
            ("code_verifier", p.verifier.as_str()),
        ];
        let basic_creds = basic.then_some((client.id.as_str(), secret.as_str()));
        if !basic {
            form.extend([("client_id", client.id.as_str()), ("client_secret", secret.as_str())]);
        }
        let (status, body) = post_form(&s, "/token", &form, basic_creds).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Introspection (RFC 7662) by the confidential client.
        let (status, info) = post_form(
            &s,
            "/introspect",
            &[("token", body["access_token"].as_str().unwrap())],
            Some((&client.id, &secret)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info["active"], true);
        assert_eq!(info["sub"], "local:alice");
        assert_eq!(info["aud"], RESOURCE);
        assert_eq!(info["client_id"], client.id.as_str());
        let (_, info) = post_form(&s, "/introspect", &[("token", "garbage")], Some((&client.id, &secret))).await;
        assert_eq!(info, serde_json::json!({"active": false}));
    }
}

#[tokio::test]
async fn github_refresh_checks_the_allow_lists_again() {
    // Judged on the identity read at login (no GitHub call at refresh): taking the user off
    // `allowed_users` or the organisation off `allowed_orgs` ends the login at its next refresh.
    let gh = GithubStandIn::start(octocat());
    let mut s = Server::start_with(Options {
        toml: gh.config("allowed_users = [\"someone-else\"]\nallowed_orgs = [\"acme\"]"),
        no_local_users: true,
        ..Options::default()
    });
    let client = register_public(&s).await;
    let p = pkce();
    let back = login_github(&s, &authorize_url(&s, &client.id, REDIRECT, &p.challenge, RESOURCE)).await;
    let code = param(&back, "code").expect("code");
    let (_, tokens) = redeem(&s, &client.id, &code, &p.verifier, Some(RESOURCE)).await;
    let (status, rotated) = refresh(&s, &client.id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    s.edit_config("allowed_orgs = [\"acme\"]", "allowed_orgs = [\"other-org\"]");
    s.restart();
    let (status, body) = refresh(&s, &client.id, rotated["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(verify(&s, Some(access), RESOURCE).await.status(), StatusCode::UNAUTHORIZED, "the login is revoked");
    assert!(s.logs().contains("no longer on the allow-lists of github"));
}

#[tokio::test]
async fn github_teams_allow_members_and_refresh_checks_them_again() {
    // Only the team `acme/mcp-users` (GET /user/teams, needs read:org) lets someone in.
    let gh = GithubStandIn::start(GhUser { id: 9, login: "teammate".into(), email: None, orgs: vec!["acme".into()] });
    let mut s = Server::start_with(Options {
        toml: gh.config("allowed_teams = [\"ACME/mcp-users\"]"),
        no_local_users: true,
        ..Options::default()
    });
    let client = register_public(&s).await;
    let p = pkce();
    // In the organisation but not in the team: refused, as an RFC 6749 error redirect.
    gh.set_teams(&[("acme", "everyone"), ("other", "mcp-users")]);
    let back = login_github(&s, &authorize_url(&s, &client.id, REDIRECT, &p.challenge, RESOURCE)).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.base.as_str()));
    assert!(param(&back, "code").is_none());
    assert!(gh.last_scope().split([' ', ',']).any(|s| s == "read:org"), "teams need read:org: {}", gh.last_scope());

    // In the team: allowed (case-insensitively), and the access token names it among the groups.
    gh.set_teams(&[("acme", "everyone"), ("Acme", "MCP-Users")]);
    let back = login_github(&s, &authorize_url(&s, &client.id, REDIRECT, &p.challenge, RESOURCE)).await;
    let code = param(&back, "code").unwrap_or_else(|| panic!("a team member logs in: {back}"));
    let (status, tokens) = redeem(&s, &client.id, &code, &p.verifier, Some(RESOURCE)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (status, rotated) = refresh(&s, &client.id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");

    // The team taken off the allow-list: the next refresh ends the login.
    s.edit_config("allowed_teams = [\"ACME/mcp-users\"]", "allowed_teams = [\"acme/admins\"]");
    s.restart();
    let (status, body) = refresh(&s, &client.id, rotated["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert!(s.logs().contains("no longer on the allow-lists of github"));
}

#[tokio::test]
async fn github_teams_must_be_org_slash_slug() {
    let gh = GithubStandIn::start(octocat());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("teams.toml");
    std::fs::write(&file, gh.config("allowed_teams = [\"acme\", \"acme/a/b\", \"/x\", \"acme/ok\"]")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .env_remove("MCP_AUTHD_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    for bad in ["\"acme\" is not org/team-slug", "\"acme/a/b\" is not org/team-slug", "\"/x\" is not org/team-slug"] {
        assert!(err.contains(bad), "{bad} missing from {err}");
    }
    assert!(!err.contains("\"acme/ok\""), "{err}");
    assert!(err.contains("github.allowed_teams (MCP_AUTHD__GITHUB__ALLOWED_TEAMS)"), "{err}");
}
