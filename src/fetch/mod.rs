//! Guarded outbound fetches of small JSON documents named by callers (Client ID Metadata
//! Documents): the URL and every resolved address pass the [`guard`], the connector dials only
//! the addresses that were checked, and size and time are bounded.
//!
//! - DNS rebinding: [`GuardedResolver`] is the client's only resolver. It looks the name up once,
//!   checks every answer and hands exactly those addresses to the connector; there is no second
//!   lookup between the check and the connection. Address hosts never reach a resolver, so
//!   [`guard::Policy::check_url`] checks them before each request.
//! - No proxy (an `HTTPS_PROXY` would resolve and connect on our behalf, around the guard), no
//!   redirects followed (a 3xx is an error), https only.
//! - The body is read chunk by chunk and abandoned as soon as it passes the limit, whatever
//!   `Content-Length` said; one deadline covers connecting, TLS, headers and body.

pub mod guard;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use guard::{Policy, Refusal};

/// Why a fetch failed; the text is shown to the user.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL or an address is refused by the guard.
    #[error("{0}")]
    Refused(Refusal),
    /// No answer within the deadline.
    #[error("no complete answer within the {0}-second limit")]
    Timeout(u64),
    /// DNS, TCP or TLS failed.
    #[error("it cannot be reached ({0})")]
    Unreachable(String),
    /// Anything but 200.
    #[error("it answered with HTTP status {0}{redirect}", redirect = if (300..400).contains(.0) { " (redirects are not followed)" } else { "" })]
    Status(u16),
    /// The body exceeds the limit.
    #[error("it is larger than {0} bytes")]
    TooLarge(usize),
}

/// A fetched body with the caching header it came with.
#[derive(Debug)]
pub struct Fetched {
    /// The body (at most the limit).
    pub body: Vec<u8>,
    /// `Cache-Control`, when sent.
    pub cache_control: Option<String>,
}

/// The reqwest resolver that checks before it answers (see the module notes).
struct GuardedResolver {
    policy: Arc<Policy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect();
            // SECURITY: every answer is checked, and only checked answers are dialled.
            policy
                .check_resolved(&host, &addrs)
                .map_err(|r| Box::new(r) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A guarded fetcher with its own HTTP client.
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<Policy>,
    timeout: Duration,
    max_bytes: usize,
}

impl Fetcher {
    /// A fetcher enforcing `policy`, trusting the system roots plus the PEM certificates of
    /// `extra_ca` (tests and development), bounded by `timeout` and `max_bytes`.
    pub fn new(policy: Policy, extra_ca: Option<&Path>, timeout: Duration, max_bytes: usize) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let mut builder = reqwest::Client::builder()
            .dns_resolver(GuardedResolver { policy: policy.clone() })
            .no_proxy()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("mcp-authd/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        Ok(Self { client: builder.build()?, policy, timeout, max_bytes })
    }

    /// GETs `url` as JSON: 200 only, at most `max_bytes`, within the deadline.
    pub async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        self.policy.check_url(url).map_err(FetchError::Refused)?;
        tokio::time::timeout(self.timeout, self.get_unbounded(url))
            .await
            .unwrap_or(Err(FetchError::Timeout(self.timeout.as_secs())))
    }

    async fn get_unbounded(&self, url: &Url) -> Result<Fetched, FetchError> {
        let mut res = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.failure(e))?;
        if res.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        if res.content_length().is_some_and(|n| n > self.max_bytes as u64) {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let cache_control = res
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| self.failure(e))? {
            // SECURITY: bounded while streaming; a lying or absent Content-Length changes nothing.
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, cache_control: (!cache_control.is_empty()).then_some(cache_control) })
    }

    /// Classifies a reqwest error: a guard refusal from the resolver, a timeout, or unreachable.
    fn failure(&self, err: reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = source {
            if let Some(r) = e.downcast_ref::<Refusal>() {
                return FetchError::Refused(r.clone());
            }
            source = e.source();
        }
        if err.is_timeout() {
            return FetchError::Timeout(self.timeout.as_secs());
        }
        // The innermost cause says most (certificate, refused connection, unknown name).
        let mut cause: &(dyn std::error::Error + 'static) = &err;
        while let Some(next) = cause.source() {
            cause = next;
        }
        FetchError::Unreachable(cause.to_string())
    }
}
