//! Test helpers: local origin servers on 127.0.0.1, listeners that only count connections, the
//! fetch MCP server in process (real HTTP, real rmcp client), and a lookup that counts its calls.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use mcp_fetch::resolve::{Lookup, LookupFuture, StaticLookup};
use mcp_fetch::{FetchConfig, FetchServer, Fetcher, Policy};
use rmcp::model::{CallToolRequestParams, ClientConfig, ContentBlock};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleClient, ServiceExt};
use tokio_util::sync::CancellationToken;

/// A 1×1 PNG.
pub const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

pub const PAGE_HTML: &str = r#"<!doctype html>
<html><head><title>Test Page</title><style>body { color: red }</style></head>
<body><h1>Welcome</h1><p>Some <strong>bold</strong> text and a <a href="/next">link</a>.</p>
<script>document.write("tracking")</script><ul><li>first</li><li>second</li></ul></body></html>"#;

/// 12 000 characters: "0000000000111111111122…", each digit ten times, cycling.
pub fn long_text() -> String {
    (0..12_000).map(|i| char::from(b'0' + ((i / 10) % 10) as u8)).collect()
}

/// State of an origin server: its robots.txt and how often it was asked for.
#[derive(Clone, Default)]
pub struct Origin {
    pub robots: Option<(StatusCode, String)>,
    pub robots_hits: Arc<AtomicUsize>,
    pub hits: Arc<AtomicUsize>,
    pub bomb: Arc<Vec<u8>>,
}

async fn robots(State(o): State<Origin>) -> Response {
    o.robots_hits.fetch_add(1, Ordering::SeqCst);
    match o.robots {
        Some((status, body)) => (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn redirect_chain(Path(n): Path<u32>) -> Response {
    if n == 0 {
        return ([(header::CONTENT_TYPE, "text/plain")], "landed").into_response();
    }
    (StatusCode::FOUND, [(header::LOCATION, format!("/redirect/{}", n - 1))]).into_response()
}

async fn redirect_to(Query(q): Query<HashMap<String, String>>) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, q["url"].clone())]).into_response()
}

async fn bomb(State(o): State<Origin>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain"), (header::CONTENT_ENCODING, "gzip")], o.bomb.as_ref().clone())
        .into_response()
}

async fn trickle() -> Response {
    let stream = futures_util::stream::unfold(0u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"x")), n + 1))
    });
    ([(header::CONTENT_TYPE, "text/plain")], Body::from_stream(stream)).into_response()
}

fn text(body: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

/// gzip of `n` bytes of `a`: a few KiB that decode to `n` bytes.
pub fn gzip_bomb(n: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..n / block.len() {
        encoder.write_all(&block).unwrap();
    }
    encoder.finish().unwrap()
}

/// The origin's routes.
pub fn origin_router(origin: Origin) -> Router {
    Router::new()
        .route("/robots.txt", get(robots))
        .route("/page.html", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE_HTML) }))
        .route("/text", get(|| async { text("hello, plain text") }))
        .route(
            "/latin1",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain; charset=iso-8859-1")], b"caf\xe9".to_vec()) }),
        )
        .route(
            "/data.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"{"name":"mcp","list":[1,2]}"#) }),
        )
        .route(
            "/image.png",
            get(|| async {
                let png = base64::engine::general_purpose::STANDARD.decode(PNG_B64).unwrap();
                ([(header::CONTENT_TYPE, "image/png")], png)
            }),
        )
        .route(
            "/archive.zip",
            get(|| async { ([(header::CONTENT_TYPE, "application/zip")], b"PK\x03\x04\0\0".to_vec()) }),
        )
        .route("/long", get(|| async { text(long_text()) }))
        .route("/big", get(|| async { text("b".repeat(3 * 1024 * 1024)) }))
        .route(
            "/deep.html",
            get(|| async {
                let html = format!("<p>top</p>{}bottom{}", "<div>".repeat(200_000), "</div>".repeat(200_000));
                ([(header::CONTENT_TYPE, "text/html")], html)
            }),
        )
        .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "nope") }))
        .route("/redirect/{n}", get(redirect_chain))
        .route("/to", get(redirect_to))
        .route("/bomb", get(bomb))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                text("too late")
            }),
        )
        .route("/trickle", get(trickle))
        .route("/private/page", get(|| async { text("private page") }))
        .route("/public/page", get(|| async { text("public page") }))
        .route(
            "/headers",
            get(|headers: HeaderMap| async move {
                text(headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string())
            }),
        )
        .layer(axum::middleware::from_fn_with_state(origin.clone(), count_hits))
        .with_state(origin)
}

async fn count_hits(
    State(o): State<Origin>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    o.hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

/// Serves `router` on 127.0.0.1 at a free port.
pub async fn spawn_router(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// An origin server with `origin`'s state.
pub async fn spawn_origin(origin: Origin) -> SocketAddr {
    spawn_router(origin_router(origin)).await
}

/// A listener that accepts, counts and closes: proof that nothing connected.
pub struct Counting {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Counting {
    pub async fn bind(addr: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self { addr, accepted }
    }

    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A fixed lookup table that counts how often it is asked.
pub struct CountingLookup {
    pub table: StaticLookup,
    pub calls: Arc<AtomicUsize>,
}

impl CountingLookup {
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, Vec<IpAddr>)>) -> (Arc<Self>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (Arc::new(Self { table: StaticLookup::new(entries), calls: calls.clone() }), calls)
    }
}

impl Lookup for CountingLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.table.lookup(host)
    }
}

/// The settings of most tests: loopback allowed (TEST ONLY), 10 s bound.
pub fn test_config() -> FetchConfig {
    FetchConfig {
        timeout: Duration::from_secs(10),
        policy: Policy { allow_loopback_for_tests: true, ..Policy::default() },
        ..FetchConfig::default()
    }
}

pub type Client = RunningService<RoleClient, ClientConfig>;

/// The fetch MCP server in process, over real HTTP on 127.0.0.1; returns its /mcp URL.
pub async fn spawn_mcp(config: FetchConfig) -> String {
    let fetcher = Arc::new(Fetcher::new(config).expect("fetcher"));
    let mut http = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(None)
        .with_cancellation_token(CancellationToken::new());
    http.legacy_session_mode = false;
    http.json_response = true;
    let service: StreamableHttpService<FetchServer, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(FetchServer::new(fetcher.clone())), Default::default(), http);
    let addr = spawn_router(Router::new().nest_service("/mcp", service)).await;
    format!("http://{addr}/mcp")
}

/// An rmcp client connected to `url`.
pub async fn connect(url: &str) -> Client {
    let transport =
        StreamableHttpClientTransport::from_config(StreamableHttpClientTransportConfig::with_uri(url.to_string()));
    ClientConfig::default().serve(transport).await.expect("MCP client connects")
}

/// A fetch server with `config` and a client for it.
pub async fn client_with(config: FetchConfig) -> Client {
    connect(&spawn_mcp(config).await).await
}

/// What a `fetch` call returned.
#[derive(Debug)]
pub struct Outcome {
    pub is_error: bool,
    pub text: String,
    pub images: Vec<(String, String)>,
}

/// Calls `fetch` with `args` (a JSON object).
pub async fn fetch(client: &Client, args: serde_json::Value) -> Outcome {
    let args = args.as_object().expect("arguments object").clone();
    let result =
        client.call_tool(CallToolRequestParams::new("fetch").with_arguments(args)).await.expect("tools/call answered");
    let mut text = String::new();
    let mut images = Vec::new();
    for block in &result.content {
        match block {
            ContentBlock::Text(t) => text.push_str(&t.text),
            ContentBlock::Image(i) => images.push((i.mime_type.clone(), i.data.clone())),
            other => panic!("unexpected content {other:?}"),
        }
    }
    Outcome { is_error: result.is_error == Some(true), text, images }
}

/// Calls `fetch` for `url` with the defaults and expects success.
pub async fn fetch_ok(client: &Client, url: &str) -> String {
    let out = fetch(client, serde_json::json!({ "url": url })).await;
    assert!(!out.is_error, "{url}: {}", out.text);
    out.text
}

/// Calls `fetch` for `url` and expects a tool error; returns its message.
pub async fn fetch_err(client: &Client, url: &str) -> String {
    let out = fetch(client, serde_json::json!({ "url": url })).await;
    assert!(out.is_error, "{url} should have been refused, got: {}", out.text);
    out.text
}
