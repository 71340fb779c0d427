//! Two mcp-authd replicas sharing one Redis and one signing key, as behind a load balancer: a
//! token issued by one passes /verify at the other, and a revocation at one reaches the other's
//! in-memory revocation set through Redis pub/sub, even for a token the other has cached. How
//! long that takes is printed (and measured by `make bench`), not asserted: the test only bounds
//! it generously to fail instead of hanging.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::oauth::*;
use common::redis::RedisServer;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;

/// /verify at `s` for RESOURCE, as a trusted proxy asks, on one kept-alive client (building a
/// client per call would cost more than what is measured).
async fn verify_at(c: &reqwest::Client, s: &Server, token: &str) -> StatusCode {
    verify_request(c, &s.url("/verify"), Some(token), RESOURCE).send().await.unwrap().status()
}

/// Polls /verify at `s` until it refuses `token`; returns how long that took.
async fn refused_after(c: &reqwest::Client, s: &Server, token: &str, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(5);
    loop {
        if verify_at(c, s, token).await == StatusCode::UNAUTHORIZED {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "the other replica still accepts a revoked token after 5 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_replica() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("signing.pem");
    let out = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .output()
        .expect("openssl is needed to make the shared key (make test-deps installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = format!(
        "[store]\ntype = \"redis\"\nredis_url = \"{}\"\n\n[tokens]\nprivate_key_file = \"{}\"\n",
        redis.url,
        key.display()
    );
    let a = Server::start_with(Options { toml: toml.clone(), ..Options::default() });
    // Same issuer for both, as behind one public URL.
    let b = Server::start_with(Options {
        toml,
        env: vec![("MCP_AUTHD__SERVER__ISSUER".into(), a.base.clone())],
        ..Options::default()
    });

    let c = http();
    let client = register_public(&a).await;
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let tokens = tokens_for(&a, &client, RESOURCE).await;
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        // Issued by a, accepted (and now cached) by b.
        assert_eq!(verify_at(&c, &b, &access).await, StatusCode::OK);
        let (st, _) = post_form(&a, "/revoke", &[("token", &access), ("client_id", &client.id)], None).await;
        assert_eq!(st, StatusCode::OK);
        let since = Instant::now();
        // The replica that revoked refuses at once...
        assert_eq!(verify_at(&c, &a, &access).await, StatusCode::UNAUTHORIZED);
        // ... and the other as soon as the pub/sub message arrives.
        latencies.push(refused_after(&c, &b, &access, since).await);
    }

    // Revoking a refresh token revokes its whole login: b refuses that login's access token too.
    let tokens = tokens_for(&a, &client, RESOURCE).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify_at(&c, &b, &access).await, StatusCode::OK);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (st, _) = post_form(&a, "/revoke", &[("token", refresh), ("client_id", &client.id)], None).await;
    assert_eq!(st, StatusCode::OK);
    latencies.push(refused_after(&c, &b, &access, Instant::now()).await);

    latencies.sort();
    eprintln!(
        "revocation reached the other replica in: median {:?}, max {:?} ({} revocations)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
}

/// Polls /verify at `s` until it answers `want`.
async fn answers(c: &reqwest::Client, s: &Server, token: &str, want: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = verify_at(c, s, token).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got} instead of {want} after {within:?}:\n{}", s.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_closed_while_redis_is_away_and_resyncs_when_it_is_back() {
    let mut redis = RedisServer::start_with_args(&["--appendonly", "yes"]);
    let s = Server::start_with(Options {
        toml: format!("[store]\ntype = \"redis\"\nredis_url = \"{}\"\n", redis.url),
        ..Options::default()
    });
    let c = http();
    let client = register_public(&s).await;
    let tokens = tokens_for(&s, &client, RESOURCE).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify_at(&c, &s, &access).await, StatusCode::OK);

    // Redis gone: the revocation view may be stale, so even a cached, valid token gets 503.
    redis.stop();
    answers(&c, &s, &access, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10)).await;
    // Back (its data replayed from the AOF): the feed reconnects, reloads the revocations, and
    // /verify answers from memory again.
    redis.restart();
    answers(&c, &s, &access, StatusCode::OK, Duration::from_secs(20)).await;
    let (st, _) = post_form(&s, "/revoke", &[("token", &access), ("client_id", &client.id)], None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(verify_at(&c, &s, &access).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_refused_once_expired_and_rotation_keeps_valid_tokens() {
    let c = http();
    let mut s = Server::start();
    // Cached while valid...
    let short = s.mint(&["--sub", "u1", "--aud", RESOURCE, "--ttl", "2"]);
    assert_eq!(verify_at(&c, &s, &short).await, StatusCode::OK);
    // ... never served from the cache after `exp` (no leeway).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let res = verify(&s, Some(&short), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("token expired"));

    // A key rotation (then restart) keeps tokens signed with the old key valid until they expire,
    // and the new key signs from then on.
    let before = s.mint(&["--sub", "u1", "--aud", RESOURCE]);
    assert_eq!(verify_at(&c, &s, &before).await, StatusCode::OK);
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .arg("--config")
        .arg(s.data_dir().parent().unwrap().join("mcp-authd.toml"))
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.restart();
    let after = s.mint(&["--sub", "u1", "--aud", RESOURCE]);
    assert_eq!(verify_at(&c, &s, &before).await, StatusCode::OK, "a token of the previous key");
    assert_eq!(verify_at(&c, &s, &after).await, StatusCode::OK, "a token of the new key");
    let kid = |t: &str| {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
    };
    assert_ne!(kid(&before), kid(&after));
}
