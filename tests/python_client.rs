//! The Python gateway's own client bridge, PyPI `mcp-streamablehttp-client` 0.2.0, unchanged,
//! against mcp-authd in front of the example echo server behind Caddy (deploy/caddy/Caddyfile),
//! as its users run it: a `.env` naming the MCP server, then `--token` (discovery, registration
//! as a device-code client with the out-of-band redirect URI, the RFC 8628 device flow, which
//! this test approves through the real `/device` pages as a person would, then the credentials
//! saved to `.env`), `--test-auth`, `--list-tools`, `-c "echo …"`, and its RFC 7592 commands
//! `--get-client-info`, `--update-client`, `--delete-client`.
//!
//! tests/peers/install.sh installs the client (every dependency pinned) into its own venv; the
//! test fails, naming that script, when it is missing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::oauth::*;
use common::proxies::{self, Kind, Upstreams, start_echo};
use common::server::{Options, Server, free_port};
use reqwest::StatusCode;

/// The client's console script, or a panic that says how to install it.
fn python_client() -> PathBuf {
    let dir = std::env::var_os("MCP_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mcp-authd"));
    let bin = dir.join("python-client-venv/bin/mcp-streamablehttp-client");
    assert!(
        bin.is_file(),
        "{} is missing: run tests/peers/install.sh (make test-deps) to install PyPI mcp-streamablehttp-client 0.2.0",
        bin.display()
    );
    bin
}

/// One run of the client in `dir` (its `.env` there), with `stdin` typed in; exit status and
/// everything it printed. Lines go to `lines` as they come (the device code is read from them).
fn run_client(dir: &Path, args: &[&str], stdin: &str, lines: Option<mpsc::Sender<String>>) -> (bool, String) {
    let mut child = Command::new(python_client())
        .args(args)
        .current_dir(dir)
        // Plain output, wide enough that nothing wraps; nothing from the caller's environment.
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .env("COLUMNS", "200")
        .env_remove("MCP_SERVER_URL")
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("MCP_CLIENT_")).map(|(k, _)| (k, String::new())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running mcp-streamablehttp-client");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        if let Some(tx) = &lines {
            let _ = tx.send(line.clone());
        }
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().unwrap();
    out.push_str(&err_reader.join().unwrap());
    (status.success(), out)
}

/// The RFC 8628 user code in a line of the client's output (`XXXX-XXXX`, our alphabet).
fn user_code(line: &str) -> Option<String> {
    const ALPHABET: &str = "BCDFGHJKLMNPQRSTVWXZ";
    line.split(|c: char| !(c.is_ascii_uppercase() || c == '-'))
        .find(|w| {
            w.len() == 9
                && w.as_bytes()[4] == b'-'
                && w.chars().enumerate().all(|(i, c)| i == 4 || ALPHABET.contains(c))
        })
        .map(str::to_owned)
}

/// A person types `code` at `/device`, logs in as alice and approves.
async fn approve(s: &Server, code: &str) {
    let typed = format!("{}?user_code={code}", s.url("/device"));
    let (cookie, session, page) = person_logs_in(s, &typed).await;
    assert!(page.contains("mcp-http-stdio"), "the confirmation names the client: {page}");
    let (status, _) = decide(s, Some(&cookie), &session, "approve").await;
    assert_eq!(status, StatusCode::OK);
}

/// /verify as the proxy asks it, straight at mcp-authd (it is not routed from outside).
async fn verify_at(s: &Server, token: &str, resource: &str) -> StatusCode {
    let url = format!("http://127.0.0.1:{}/verify", s.port);
    verify_request(&http(), &url, Some(token), resource).send().await.unwrap().status()
}

/// The value of `KEY=value` in the `.env` the client keeps.
fn env_value(dir: &Path, key: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(".env"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .filter(|v| !v.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_gateways_client_bridge_works_unchanged() {
    python_client();
    let (port, echo_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port}");
    let mcp_url = format!("{public}/echo/mcp");
    // One protected resource: the client names none, so it is the one its tokens are for.
    let s = Server::start_with(Options {
        toml: format!("[tokens]\ndevice_poll_interval = 1\n\n[[resources]]\nurl = \"{mcp_url}\"\n"),
        issuer: Some(public.clone()),
        own_resources: true,
        ..Options::default()
    });
    let _echo = start_echo(echo_port, &format!("127.0.0.1:{port}"));
    let up =
        Upstreams { authd: s.port, authd_grpc: free_port(), echo: echo_port, fetch: free_port(), time: free_port() };
    let proxy = proxies::start_on(Kind::Caddy, &up, port);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), format!("MCP_SERVER_URL={mcp_url}\n")).unwrap();
    let ctx = |what: &str, out: &str| {
        format!("{what}:\n{out}\n--- caddy ---\n{}\n--- mcp-authd ---\n{}", proxy.log(), s.logs())
    };

    // --token: discovery, registration, the device flow approved at /device, credentials saved.
    let (tx, rx) = mpsc::channel();
    let path = dir.path().to_owned();
    let run = std::thread::spawn(move || run_client(&path, &["--token"], "", Some(tx)));
    let code = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(code) = user_code(&line) {
                        return Some(code);
                    }
                }
                Err(_) => return None,
            }
        }
    })
    .await
    .unwrap();
    let Some(code) = code else {
        let (_, out) = run.join().unwrap();
        panic!("{}", ctx("the client showed no device code", &out));
    };
    approve(&s, &code).await;
    let (ok, out) = tokio::task::spawn_blocking(move || run.join().unwrap()).await.unwrap();
    assert!(ok, "{}", ctx("--token", &out));
    assert!(out.contains("Token accepted by server"), "{}", ctx("--token", &out));
    for key in [
        "MCP_CLIENT_ACCESS_TOKEN",
        "MCP_CLIENT_REFRESH_TOKEN",
        "MCP_CLIENT_ID",
        "MCP_CLIENT_SECRET",
        "MCP_CLIENT_REGISTRATION_TOKEN",
        "MCP_CLIENT_REGISTRATION_URI",
    ] {
        assert!(env_value(dir.path(), key).is_some(), "{key} saved: {}", ctx("--token", &out));
    }
    let client_id = env_value(dir.path(), "MCP_CLIENT_ID").unwrap();
    let registration_uri = env_value(dir.path(), "MCP_CLIENT_REGISTRATION_URI").unwrap();
    let registration_token = env_value(dir.path(), "MCP_CLIENT_REGISTRATION_TOKEN").unwrap();
    assert_eq!(registration_uri, format!("{public}/register/{client_id}"));
    // Its token is ours, for the echo server, and passes /verify.
    let access = env_value(dir.path(), "MCP_CLIENT_ACCESS_TOKEN").unwrap();
    assert_eq!(verify_at(&s, &access, &mcp_url).await, StatusCode::OK);

    let client = |args: &'static [&'static str], stdin: &'static str| {
        let path = dir.path().to_owned();
        async move { tokio::task::spawn_blocking(move || run_client(&path, args, stdin, None)).await.unwrap() }
    };

    // --test-auth: the saved token, then an MCP initialize through Caddy and /verify.
    let (ok, out) = client(&["--test-auth"], "").await;
    assert!(
        ok && out.contains("Authentication successful") && out.contains("Server connection successful"),
        "{}",
        ctx("--test-auth", &out)
    );

    // --list-tools: the echo server's tools.
    let (ok, out) = client(&["--list-tools"], "").await;
    assert!(ok && out.contains("echo") && out.contains("printHeader"), "{}", ctx("--list-tools", &out));

    // -c "echo …": a tool call, answered.
    let (ok, out) = client(&["-c", "echo message=hello-from-the-python-client"], "").await;
    assert!(ok && out.contains("hello-from-the-python-client"), "{}", ctx("-c echo", &out));

    // RFC 7592: read, update, delete.
    let (ok, out) = client(&["--get-client-info"], "").await;
    assert!(ok && out.contains(&client_id) && out.contains("mcp-http-stdio"), "{}", ctx("--get-client-info", &out));
    assert!(out.contains("urn:ietf:params:oauth:grant-type:device_code"), "{}", ctx("--get-client-info", &out));
    // RFC 7592 §2.2 replaces the whole registration, so the update names what the client keeps
    // (its grants and out-of-band redirect URI) along with the new name.
    let (ok, out) = client(
        &[
            "--update-client",
            "client_name=renamed-by-the-test,grant_types=authorization_code;refresh_token;urn:ietf:params:oauth:grant-type:device_code,redirect_uris=urn:ietf:wg:oauth:2.0:oob",
        ],
        "y\n",
    )
    .await;
    assert!(ok && out.contains("Client registration updated"), "{}", ctx("--update-client", &out));
    let now: serde_json::Value =
        http().get(&registration_uri).bearer_auth(&registration_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["client_name"], "renamed-by-the-test");
    assert_eq!(now["grant_types"].as_array().map(Vec::len), Some(3), "{now}");
    // The client bridge leaves client_id out of the update (RFC 7592 §2.2 wants it); we accept
    // that, but a body naming another client is still refused.
    let res = http()
        .put(&registration_uri)
        .bearer_auth(&registration_token)
        .json(&serde_json::json!({"client_id": "someone-else", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let (ok, out) = client(&["--delete-client"], "DELETE\n").await;
    assert!(ok && out.contains("deleted successfully"), "{}", ctx("--delete-client", &out));
    let res = http().get(&registration_uri).bearer_auth(&registration_token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the registration is gone");
    assert_eq!(verify_at(&s, &access, &mcp_url).await, StatusCode::UNAUTHORIZED, "and its tokens with it");
}
