//! The real `mcp-fetch` binary, driven by rmcp's client over Streamable HTTP.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running `mcp-fetch`, killed on drop.
struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

async fn health(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// Starts the binary with `args` and `env` (and nothing else from this process's environment).
async fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-fetch"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .env_clear()
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mcp-fetch binary starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !health(port).await {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("mcp-fetch exited with {status}: {}", stderr.lock().unwrap());
        }
        assert!(Instant::now() < deadline, "mcp-fetch did not become healthy: {}", stderr.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, url: format!("http://127.0.0.1:{port}/mcp"), stderr }
}

#[tokio::test]
async fn tools_list_shows_the_fetch_schema() {
    let server = start(&[], &[]).await;
    let client = connect(&server.url).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 1);
    let tool = &tools[0];
    assert_eq!(tool.name, "fetch");
    assert!(tool.description.as_deref().unwrap().starts_with("Fetches a URL and returns its content"));
    let annotations = tool.annotations.as_ref().expect("annotations");
    assert_eq!(annotations.read_only_hint, Some(true));
    assert_eq!(annotations.open_world_hint, Some(true));
    let schema = serde_json::Value::Object((*tool.input_schema).clone());
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["url"]));
    let props = &schema["properties"];
    assert_eq!(props["url"]["type"], "string");
    assert_eq!(props["url"]["format"], "uri");
    assert!(props["url"]["description"].as_str().unwrap().starts_with("The URL to fetch: http or https"));
    assert_eq!(props["max_length"]["type"], "integer");
    assert_eq!(props["max_length"]["default"], 5000);
    assert_eq!(props["max_length"]["minimum"], 1);
    assert_eq!(props["max_length"]["maximum"], 1_000_000);
    assert!(props["max_length"]["description"].as_str().unwrap().starts_with("Maximum number of characters"));
    assert_eq!(props["start_index"]["type"], "integer");
    assert_eq!(props["start_index"]["default"], 0);
    assert!(props["start_index"]["description"].as_str().unwrap().contains("start_index to ask for next"));
    assert_eq!(props["raw"]["type"], "boolean");
    assert_eq!(props["raw"]["default"], false);
    assert!(props["raw"]["description"].as_str().unwrap().starts_with("Return the content as sent"));
}

#[tokio::test]
async fn fetches_a_page_with_the_test_allowance_and_warns_loudly() {
    let origin = spawn_origin(Origin::default()).await;
    let server = start(&[], &[("MCP_FETCH_TEST_ALLOW_LOOPBACK", "1")]).await;
    let client = connect(&server.url).await;
    let url = format!("http://127.0.0.1:{}/page.html", origin.port());
    let text = fetch_ok(&client, &url).await;
    assert!(text.starts_with(&format!("Contents of {url} (\"Test Page\", HTML converted to Markdown):\n")), "{text}");
    assert!(text.contains("# Welcome") && text.contains("**bold**"), "{text}");
    // Name resolution through the system resolver: localhost is 127.0.0.1 here.
    assert!(fetch_ok(&client, &format!("http://localhost:{}/text", origin.port())).await.contains("hello, plain text"));
    assert!(server.log().contains("!!! TEST ONLY"), "{}", server.log());
}

#[tokio::test]
async fn refuses_private_addresses_by_default() {
    let origin = Origin::default();
    let hits = origin.hits.clone();
    let addr = spawn_origin(origin).await;
    let server = start(&[], &[]).await;
    let client = connect(&server.url).await;
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/text", addr.port())).await;
    assert_eq!(
        err,
        format!(
            "refused to fetch http://127.0.0.1:{}/text: 127.0.0.1, which is in 127.0.0.0/8 (loopback, RFC 1122); mcp-fetch does not fetch internal or special-purpose addresses",
            addr.port()
        )
    );
    let err = fetch_err(&client, &format!("http://localhost:{}/text", addr.port())).await;
    assert!(err.contains("`localhost` resolves to 127.0.0.1"), "{err}");
    let err = fetch_err(&client, &format!("http://0x7f.1:{}/text", addr.port())).await;
    assert!(err.contains("127.0.0.0/8"), "{err}");
    let err = fetch_err(&client, "http://169.254.169.254/latest/meta-data/").await;
    assert!(err.contains("169.254.169.254/32 (cloud metadata service"), "{err}");
    let err = fetch_err(&client, "http://10.0.0.1/").await;
    assert!(err.contains("10.0.0.0/8 (private network, RFC 1918)"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the loopback origin was reached");
    assert!(!server.log().contains("TEST ONLY"));
}

#[tokio::test]
async fn domain_lists_and_ignore_robots_flags() {
    let origin = Origin { robots: Some((StatusCode::OK, "User-agent: *\nDisallow: /\n".into())), ..Origin::default() };
    let robots_hits = origin.robots_hits.clone();
    let addr = spawn_origin(origin).await;
    let with_robots = start(&["--allow-domain", "localhost"], &[("MCP_FETCH_TEST_ALLOW_LOOPBACK", "1")]).await;
    let client = connect(&with_robots.url).await;
    let err = fetch_err(&client, &format!("http://localhost:{}/text", addr.port())).await;
    assert!(err.starts_with("refused by robots.txt"), "{err}");
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/text", addr.port())).await;
    assert!(err.contains("`127.0.0.1` is not on the allow list"), "{err}");
    assert_eq!(robots_hits.load(Ordering::SeqCst), 1);

    let ignoring = start(
        &["--ignore-robots", "--deny-domain", "127.0.0.1", "--user-agent", "TestBot/9"],
        &[("MCP_FETCH_TEST_ALLOW_LOOPBACK", "1")],
    )
    .await;
    let client = connect(&ignoring.url).await;
    assert!(fetch_ok(&client, &format!("http://localhost:{}/headers", addr.port())).await.ends_with("\nTestBot/9"));
    assert!(fetch_err(&client, &format!("http://127.0.0.1:{}/text", addr.port())).await.contains("deny list"));
    assert_eq!(robots_hits.load(Ordering::SeqCst), 1);
}
