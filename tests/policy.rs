//! Resource policies at `/verify`, against the real binary: per MCP method / tool rules from
//! the `Mcp-Method` / `Mcp-Name` headers (403 `insufficient_scope` for step-up), allowed
//! organisations and e-mail domains, and browsers sent to log in when `verify.login_url` is set.

mod common;

use common::github::{GhUser, GithubStandIn};
use common::oauth::*;
use common::server::{Options, Server};
use reqwest::StatusCode;
use serde_json::Value;

const TOOLS: &str = "https://tools.example.com/mcp";
const TEAM: &str = "https://team.example.com/mcp";

fn server() -> Server {
    Server::start_with(Options {
        toml: format!(
            "[oauth]\nscopes_supported = [\"mcp\", \"admin\", \"files\"]\n\n\
             [verify]\nlogin_url = \"https://sso.example.com/start?x=1\"\n\n\
             [[resources]]\nurl = \"{TOOLS}\"\nscopes = [\"mcp\", \"admin\", \"files\"]\n\
             [[resources.rules]]\nmethod = \"tools/call\"\nname = \"environmentDump\"\nrequired_scopes = [\"admin\"]\n\
             [[resources.rules]]\nmethod = \"resources/read\"\nname = \"file:///*\"\nrequired_scopes = [\"files\"]\n\n\
             [[resources]]\nurl = \"{TEAM}\"\nallowed_orgs = [\"Acme\"]\nallowed_email_domains = [\"example.org\"]\n"
        ),
        ..Options::default()
    })
}

/// /verify as Traefik would ask it, with the client's MCP headers.
async fn verify(
    s: &Server,
    method: &str,
    resource: &str,
    token: Option<&str>,
    mcp: &[(&str, &str)],
) -> reqwest::Response {
    let url = url::Url::parse(resource).unwrap();
    let mut req = http()
        .get(s.url("/verify"))
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", url.scheme())
        .header("x-forwarded-host", url.host_str().unwrap())
        .header("x-forwarded-uri", url.path());
    for (k, v) in mcp {
        req = req.header(*k, *v);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn challenge(res: &reqwest::Response) -> String {
    res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn per_tool_rules_ask_for_the_scope_the_call_needs() {
    let s = server();
    let plain = s.mint(&["--sub", "u1", "--aud", TOOLS, "--scope", "mcp"]);
    let admin = s.mint(&["--sub", "u1", "--aud", TOOLS, "--scope", "mcp admin"]);
    let call = |name| [("mcp-method", "tools/call"), ("mcp-name", name)];

    // Tools without a rule, and other methods, need only a valid token.
    assert_eq!(verify(&s, "POST", TOOLS, Some(&plain), &call("echo")).await.status(), StatusCode::OK);
    assert_eq!(verify(&s, "POST", TOOLS, Some(&plain), &[("mcp-method", "tools/list")]).await.status(), StatusCode::OK);

    // The ruled tool: 403 with the RFC 6750 challenge naming the scope and the metadata.
    let res = verify(&s, "POST", TOOLS, Some(&plain), &call("environmentDump")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let c = challenge(&res);
    assert!(c.starts_with("Bearer error=\"insufficient_scope\", scope=\"admin\""), "{c}");
    assert!(
        c.contains("resource_metadata=\"https://tools.example.com/.well-known/oauth-protected-resource/mcp\""),
        "{c}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");
    // With the scope (after step-up) it passes.
    assert_eq!(verify(&s, "POST", TOOLS, Some(&admin), &call("environmentDump")).await.status(), StatusCode::OK);
    // SEP-2243 Base64 form: compared decoded, as the MCP server compares it with the body.
    let res = verify(&s, "POST", TOOLS, Some(&plain), &call("=?base64?ZW52aXJvbm1lbnREdW1w?=")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A broken encoding says nothing: it needs every rule's scope.
    let res = verify(&s, "POST", TOOLS, Some(&admin), &call("=?base64?***?=")).await;
    assert!(challenge(&res).contains("scope=\"admin files\""), "{}", challenge(&res));

    // A prefix rule: every file:// resource needs `files`; others don't.
    let read = |uri| [("mcp-method", "resources/read"), ("mcp-name", uri)];
    let res = verify(&s, "POST", TOOLS, Some(&admin), &read("file:///etc/passwd")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&res).contains("scope=\"files\""), "{}", challenge(&res));
    assert_eq!(verify(&s, "POST", TOOLS, Some(&plain), &read("https://x/y")).await.status(), StatusCode::OK);

    // SECURITY: a POST that leaves out Mcp-Method needs every rule's scope, so dropping the
    // header never gets around a rule; GET (the SSE stream) and DELETE carry no method.
    let res = verify(&s, "POST", TOOLS, Some(&admin), &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&res).contains("scope=\"admin files\""), "{}", challenge(&res));
    // ... unless it declares a protocol version whose servers refuse requests without Mcp-Method
    // but the `initialize` handshake (SEP-2243): then it can only be `initialize`.
    let v = |version| [("mcp-protocol-version", version)];
    assert_eq!(verify(&s, "POST", TOOLS, Some(&plain), &v("2026-07-28")).await.status(), StatusCode::OK);
    for older in ["2025-11-25", "2026-7-28", "latest"] {
        assert_eq!(verify(&s, "POST", TOOLS, Some(&plain), &v(older)).await.status(), StatusCode::FORBIDDEN, "{older}");
    }
    let all = s.mint(&["--sub", "u1", "--aud", TOOLS, "--scope", "mcp admin files"]);
    assert_eq!(verify(&s, "POST", TOOLS, Some(&all), &[]).await.status(), StatusCode::OK);
    assert_eq!(verify(&s, "GET", TOOLS, Some(&plain), &[]).await.status(), StatusCode::OK);
    assert_eq!(verify(&s, "DELETE", TOOLS, Some(&plain), &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn organisations_and_email_domains() {
    let s = server();
    let cases: &[(&[&str], StatusCode)] = &[
        (&["--group", "acme"], StatusCode::OK),
        (&["--group", "other", "--group", "ACME"], StatusCode::OK),
        (&["--email", "bob@example.org"], StatusCode::OK),
        (&["--email", "bob@EXAMPLE.ORG"], StatusCode::OK),
        // SECURITY: the whole domain after the last '@' must match.
        (&["--email", "bob@evil-example.org"], StatusCode::FORBIDDEN),
        (&["--email", "bob@example.org.evil"], StatusCode::FORBIDDEN),
        (&["--email", "example.org@evil.com"], StatusCode::FORBIDDEN),
        (&["--email", "@example.org"], StatusCode::FORBIDDEN),
        (&["--group", "acme-evil"], StatusCode::FORBIDDEN),
        (&[], StatusCode::FORBIDDEN),
    ];
    for (extra, want) in cases {
        let mut args = vec!["--sub", "u2", "--aud", TEAM];
        args.extend_from_slice(extra);
        let token = s.mint(&args);
        let res = verify(&s, "POST", TEAM, Some(&token), &[]).await;
        assert_eq!(res.status(), *want, "{extra:?}");
        if *want == StatusCode::FORBIDDEN {
            // Not a scope problem: no step-up challenge, an RFC 6749-style error body.
            assert!(res.headers().get("www-authenticate").is_none());
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"], "access_denied");
        }
    }
}

#[tokio::test]
async fn github_organisations_reach_the_token_and_the_resource_policy() {
    // No org list at login: a resource's allowed_orgs alone makes mcp-authd read them.
    let gh = GithubStandIn::start(GhUser { id: 8, login: "member".into(), email: None, orgs: vec!["Acme".into()] });
    let s = Server::start_with(Options {
        toml: format!("{}\n[[resources]]\nurl = \"{TEAM}\"\nallowed_orgs = [\"acme\"]\n", gh.config("")),
        no_local_users: true,
        ..Options::default()
    });
    let client = register_public(&s).await;
    let mut tokens = Vec::new();
    for user in [
        GhUser { id: 8, login: "member".into(), email: None, orgs: vec!["Acme".into()] },
        GhUser { id: 9, login: "outsider".into(), email: None, orgs: vec!["Other".into()] },
    ] {
        gh.sign_in(user);
        let p = pkce();
        let back = login_github(&s, &authorize_url(&s, &client.id, REDIRECT, &p.challenge, TEAM)).await;
        let code = param(&back, "code").expect("both may log in: the policy is the resource's");
        let (status, body) = redeem(&s, &client.id, &code, &p.verifier, Some(TEAM)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(verify(&s, "GET", TEAM, Some(&tokens[0]), &[]).await.status(), StatusCode::OK);
    assert_eq!(verify(&s, "GET", TEAM, Some(&tokens[1]), &[]).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn browsers_are_sent_to_log_in_and_api_clients_get_the_challenge() {
    let s = server();
    let browse = |accept: &'static str, method: &'static str| {
        http()
            .get(s.url("/verify"))
            .header("x-forwarded-method", method)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "tools.example.com")
            .header("x-forwarded-uri", "/mcp?a=b")
            .header("accept", accept)
    };
    let res = browse("text/html,application/xhtml+xml,*/*;q=0.8", "GET").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.origin().ascii_serialization(), "https://sso.example.com");
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs, vec![("x".into(), "1".into()), ("rd".into(), "https://tools.example.com/mcp?a=b".into())]);
    // MCP clients (POST, or an SSE GET) and anyone sending a token get the 401 challenge.
    for res in [
        browse("text/html", "POST").send().await.unwrap(),
        browse("text/event-stream", "GET").send().await.unwrap(),
        browse("text/html", "GET").bearer_auth("not-a-token").send().await.unwrap(),
    ] {
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(challenge(&res).starts_with("Bearer resource_metadata="), "{}", challenge(&res));
    }
}

#[tokio::test]
async fn bad_policy_configuration_is_refused_with_every_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[verify]\ngrpc_bind = \"nowhere\"\nlogin_url = \"javascript:alert(1)\"\n\n\
         [[resources]]\nurl = \"https://x.example/mcp\"\n\
         [[resources.rules]]\nmethod = \"\"\nname = \"a*b*\"\nrequired_scopes = []\n\
         [[resources.rules]]\nmethod = \"tools/call\"\nrequired_scopes = [\"root\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for needle in [
        "verify.grpc_bind",
        "verify.login_url",
        "resources[0].rules[0].method",
        "resources[0].rules[0].name",
        "resources[0].rules[0].required_scopes",
        "resources[0].rules[1].required_scopes: \"root\" is not in oauth.scopes_supported",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
