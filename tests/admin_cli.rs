//! The operator's commands against a running server, through its admin socket: `clients list`,
//! `clients show`, `clients delete`, `tokens revoke --user` / `--client`. Each takes effect at
//! once (the running server's revocation set), on the embedded store and on Redis.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::oauth::*;
use common::redis::RedisServer;
use common::server::{Options, RESOURCE, Server};
use reqwest::StatusCode;
use serde_json::Value;

fn mcp_authd(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("MCP_AUTHD_CONFIG")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn operator_commands(s: &Server) {
    let config = s.data_dir().parent().unwrap().join("mcp-authd.toml");
    let socket = s.data_dir().join("admin.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "only the server's user may use the socket");

    let keep = register_public(s).await;
    let doomed = register_confidential(s).await;
    let kept_tokens = tokens_for(s, &keep, RESOURCE).await;

    // list: both, as a table and as JSON.
    let table = ok(mcp_authd(&config, &["clients", "list"]));
    assert!(table.contains(&keep.id) && table.contains(&doomed.id), "{table}");
    assert!(table.contains("confidential") && table.contains("public"), "{table}");
    let listed: Vec<Value> = serde_json::from_str(&ok(mcp_authd(&config, &["clients", "list", "--json"]))).unwrap();
    let ids: Vec<&str> = listed.iter().filter_map(|c| c["client_id"].as_str()).collect();
    assert!(ids.contains(&keep.id.as_str()) && ids.contains(&doomed.id.as_str()), "{ids:?}");
    assert!(listed.iter().all(|c| c.get("secret_hash").is_none()), "no secret material is shown");

    // show: the registered metadata.
    let shown: Value = serde_json::from_str(&ok(mcp_authd(&config, &["clients", "show", &keep.id]))).unwrap();
    assert_eq!(shown["client_id"], keep.id);
    assert_eq!(shown["redirect_uris"], serde_json::json!([REDIRECT]));
    assert_eq!(shown["confidential"], false);
    let missing = mcp_authd(&config, &["clients", "show", "no-such-client"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no client"), "{missing:?}");

    // delete: gone from RFC 7592 management and from the list.
    ok(mcp_authd(&config, &["clients", "delete", &doomed.id]));
    let res = http()
        .get(s.url(&format!("/register/{}", doomed.id)))
        .bearer_auth(&doomed.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "deleted");
    let table = ok(mcp_authd(&config, &["clients", "list"]));
    assert!(!table.contains(&doomed.id) && table.contains(&keep.id), "{table}");

    // tokens revoke --user: the user's access token at once, and the refresh token of its login.
    let access = kept_tokens["access_token"].as_str().unwrap();
    let refresh_token = kept_tokens["refresh_token"].as_str().unwrap();
    assert_eq!(verify(s, Some(access), RESOURCE).await.status(), StatusCode::OK);
    ok(mcp_authd(&config, &["tokens", "revoke", "--user", "local:alice"]));
    let res = verify(s, Some(access), RESOURCE).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "revoked at once");
    let (status, body) = refresh(s, &keep.id, refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    // A login after the revocation works.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // revocations count whole seconds
    let fresh = tokens_for(s, &keep, RESOURCE).await;
    assert_eq!(verify(s, fresh["access_token"].as_str(), RESOURCE).await.status(), StatusCode::OK);

    // tokens revoke --client: every token of the client.
    ok(mcp_authd(&config, &["tokens", "revoke", "--client", &keep.id]));
    assert_eq!(verify(s, fresh["access_token"].as_str(), RESOURCE).await.status(), StatusCode::UNAUTHORIZED);

    // Client ids are random and may start with '-': taken as ids, not options.
    let out = mcp_authd(&config, &["clients", "show", "-Xnot-a-flag"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no client"), "{out:?}");
    let out = mcp_authd(&config, &["tokens", "revoke", "--client", "-Xnot-a-flag"]);
    assert!(out.status.success(), "{out:?}");

    // Exactly one of the two.
    let neither = mcp_authd(&config, &["tokens", "revoke"]);
    assert!(!neither.status.success());
    let both = mcp_authd(&config, &["tokens", "revoke", "--user", "a", "--client", "b"]);
    assert!(!both.status.success());
}

#[tokio::test]
async fn operator_commands_on_the_embedded_store() {
    let mut s = Server::start();
    operator_commands(&s).await;
    // A crash leaves the socket behind; the next start replaces it.
    s.kill();
    assert!(s.data_dir().join("admin.sock").exists());
    s.restart();
    let config = s.data_dir().parent().unwrap().join("mcp-authd.toml");
    ok(mcp_authd(&config, &["clients", "list"]));
    // A stopped server removes it; the commands then say what is wrong.
    s.stop();
    assert!(!s.data_dir().join("admin.sock").exists());
    let out = mcp_authd(&config, &["clients", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is mcp-authd running"), "{out:?}");
}

#[tokio::test]
async fn operator_commands_on_redis() {
    let redis = RedisServer::start();
    let s = Server::start_with(Options {
        toml: format!("[store]\ntype = \"redis\"\nredis_url = \"{}\"\n", redis.url),
        ..Options::default()
    });
    operator_commands(&s).await;
}
