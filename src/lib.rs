//! mcp-authd: an OAuth 2.1 authorization server and ForwardAuth decision point that puts
//! login in front of MCP servers without touching them.
//!
//! Layers, outermost first: `http` (actix handlers, the route table), `oauth` and `verify`
//! (protocol logic and the /verify decision, no HTTP types in `oauth`), `upstream` (who the user
//! is), `store` (state), and the shared leaves `config`, `error`, `jwt`, and `fetch` (the
//! SSRF-guarded fetcher of client metadata documents).
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod error;
pub mod fetch;
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod oauth;
pub mod ratelimit;
pub mod store;
pub mod upstream;
pub mod verify;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use config::Config;
use jwt::Keys;
use store::Store;
use upstream::Upstreams;
use verify::Verifier;
use verify::answer::Answers;
use verify::http::Dialect;
use verify::revocation::Revocations;

/// Everything a request handler needs, shared by all workers (`web::Data<AppState>`).
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The store backend.
    pub store: Arc<dyn Store>,
    /// Signing keys.
    pub keys: Arc<Keys>,
    /// In-memory revocations (shared with the verifier).
    pub revocations: Arc<Revocations>,
    /// The /verify decision point.
    pub verifier: Arc<Verifier>,
    /// How /verify reads the proxies.
    pub dialect: Arc<Dialect>,
    /// How decisions are answered (HTTP and gRPC).
    pub answers: Arc<Answers>,
    /// Identity providers.
    pub upstreams: Arc<Upstreams>,
    /// Set while shutting down: `/ready` answers 503.
    pub draining: Arc<AtomicBool>,
    /// Prometheus counters.
    pub metrics: Arc<metrics::Metrics>,
    /// Wrong RFC 8628 user codes per address (lockout).
    pub device_attempts: oauth::device::Attempts,
    /// Requests per address and per client (`[rate_limit]`).
    pub limits: Arc<ratelimit::Limits>,
    /// Client ID Metadata Document clients (fetcher and cache); `None` when `[cimd]` is off.
    pub cimd: Option<oauth::cimd::Documents>,
}

/// Outbound HTTP client for identity providers: rustls, bounded time, no redirects followed.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcp-authd/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl AppState {
    /// Opens the store, loads the keys and revocations, and builds the decision point.
    pub async fn new(config: Config, upstreams: Upstreams) -> anyhow::Result<Self> {
        let store = store::from_config(&config).await?;
        let keys = Arc::new(Keys::load(&config)?);
        let revocations = Arc::new(Revocations::default());
        revocations.start(store.clone()).await?;
        let verifier = Arc::new(Verifier::new(&config, keys.clone(), revocations.clone()));
        let cimd = if config.cimd.enabled { Some(oauth::cimd::Documents::new(&config.cimd)?) } else { None };
        Ok(Self {
            cimd,
            dialect: Arc::new(Dialect::new(&config)),
            answers: Arc::new(Answers::new(&config)),
            limits: Arc::new(ratelimit::Limits::new(&config.rate_limit)),
            config: Arc::new(config),
            store,
            keys,
            revocations,
            verifier,
            upstreams: Arc::new(upstreams),
            draining: Arc::new(AtomicBool::new(false)),
            device_attempts: oauth::device::Attempts::default(),
            metrics: Arc::new(metrics::Metrics::default()),
        })
    }
}
