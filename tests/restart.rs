//! State survives a restart of mcp-authd, for both stores: registered clients, refresh tokens,
//! revocations, and the signing key (tokens issued before stay valid).

mod common;

use common::oauth::*;
use common::redis::RedisServer;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;

async fn survives_restart(mut s: Server) {
    let public = register_public(&s).await;
    let conf = register_confidential(&s).await;
    let kept = tokens_for(&s, &public, RESOURCE).await;
    let revoked = tokens_for(&s, &public, RESOURCE).await;
    let (st, _) = post_form(
        &s,
        "/revoke",
        &[("token", revoked["access_token"].as_str().unwrap()), ("client_id", &public.id)],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let jwks_before: serde_json::Value = http().get(s.url("/jwks")).send().await.unwrap().json().await.unwrap();

    s.restart();

    // The signing key is the same, so earlier tokens still verify; the revocation holds.
    let jwks_after: serde_json::Value = http().get(s.url("/jwks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks_before, jwks_after);
    assert_eq!(verify(&s, kept["access_token"].as_str(), RESOURCE).await.status(), StatusCode::OK);
    assert_eq!(verify(&s, revoked["access_token"].as_str(), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);
    // The refresh token is still there (and rotates).
    let (st, body) = refresh(&s, &public.id, kept["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // Clients are still registered: management works, and the confidential secret is accepted.
    let res = http()
        .get(s.url(&format!("/register/{}", conf.id)))
        .bearer_auth(&conf.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (st, body) = post_form(
        &s,
        "/token",
        &[("grant_type", "authorization_code"), ("code", "none")],
        Some((&conf.id, conf.secret.as_deref().unwrap())),
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "authenticated; only the code is bad"
    );
    // And a new login works end to end.
    let again = tokens_for(&s, &public, RESOURCE).await;
    assert_eq!(verify(&s, again["access_token"].as_str(), RESOURCE).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn embedded_store_survives_restart() {
    let s = Server::start();
    survives_restart(s).await;
}

#[tokio::test]
async fn redis_store_survives_restart() {
    let redis = RedisServer::start();
    let s = Server::start_with(Options {
        toml: format!("[store]\ntype = \"redis\"\nredis_url = \"{}\"\n", redis.url),
        ..Options::default()
    });
    survives_restart(s).await;
}
