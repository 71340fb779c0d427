//! The fetcher: one guarded HTTP client, redirects followed by hand, every bound enforced.
//!
//! Per request, in order: the URL is checked ([`Policy::check_url`]: scheme, IP-literal host,
//! metadata names, domain lists), robots.txt of its origin is consulted, the request is sent
//! (host names resolve through [`GuardedResolver`], which checks every address and hands the
//! connector only checked ones), and a redirect starts the same steps again for its target, at
//! most `max_redirects` times. The body is read as a stream and cut at `max_response_bytes`
//! after decompression, so a gzip bomb stops at the same limit as anything else. The whole
//! exchange, robots.txt and redirects included, runs under one `timeout`.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use url::Url;

use crate::guard::{Policy, Refusal};
use crate::resolve::{GuardedResolver, Lookup, SystemLookup};
use crate::robots::{self, ROBOTS_LIMIT, RobotsCache, Rules};

/// The default `User-Agent`.
pub const DEFAULT_USER_AGENT: &str =
    concat!("mcp-fetch/", env!("CARGO_PKG_VERSION"), " (Model Context Protocol fetch tool; honours robots.txt)");

/// How the fetcher behaves. [`Default`] is the production setting.
#[derive(Clone)]
pub struct FetchConfig {
    /// `User-Agent` header; its first word is the robots.txt product token.
    pub user_agent: String,
    /// Bound on one whole fetch: robots.txt, redirects, body.
    pub timeout: Duration,
    /// Bytes of (decoded) body read; the rest is cut.
    pub max_response_bytes: usize,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Consult robots.txt.
    pub robots: bool,
    /// How long an origin's robots.txt rules are kept.
    pub robots_ttl: Duration,
    /// What may be reached.
    pub policy: Policy,
    /// Name resolution (checked by the fetcher, whatever this returns).
    pub lookup: Arc<dyn Lookup>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            user_agent: DEFAULT_USER_AGENT.to_string(),
            timeout: Duration::from_secs(30),
            max_response_bytes: 5 * 1024 * 1024,
            max_redirects: 5,
            robots: true,
            robots_ttl: Duration::from_secs(300),
            policy: Policy::default(),
            lookup: Arc::new(SystemLookup),
        }
    }
}

/// A fetched response.
#[derive(Debug, Clone)]
pub struct Page {
    /// The URL that answered (after redirects).
    pub url: Url,
    /// Its HTTP status.
    pub status: u16,
    /// Its `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body, decoded (gzip, br, deflate), at most the limit.
    pub body: Vec<u8>,
    /// `Some(limit)` when the body was longer than the limit and was cut there.
    pub cut_at: Option<usize>,
    /// Redirects followed.
    pub redirects: usize,
}

/// Why a fetch failed. The messages are shown to the caller as they are.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not a URL.
    #[error("invalid URL `{url}`: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// The parser's complaint.
        reason: url::ParseError,
    },
    /// The SSRF guard or the domain lists refused the URL (or a redirect's target).
    #[error("refused {what} {url}: {refusal}")]
    Refused {
        /// "to fetch" or "the redirect to".
        what: &'static str,
        /// The refused URL.
        url: String,
        /// Why.
        refusal: Box<Refusal>,
    },
    /// robots.txt does not allow it.
    #[error(
        "refused by robots.txt: {why} for user-agent `{agent}` ({robots_url}), so {url} is not fetched; the site asks automated clients to stay away"
    )]
    Robots {
        /// The URL not fetched.
        url: String,
        /// The robots.txt consulted.
        robots_url: String,
        /// The product token matched.
        agent: String,
        /// What robots.txt said (or why it counts as disallowing).
        why: String,
    },
    /// The redirect chain was longer than allowed.
    #[error("too many redirects: {url} redirects again after {max}; at most {max} are followed")]
    TooManyRedirects {
        /// The URL that redirected once too often.
        url: String,
        /// The limit.
        max: usize,
    },
    /// A redirect without a usable `Location`.
    #[error("bad redirect from {url}: {reason}")]
    BadRedirect {
        /// The redirecting URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The time bound ran out.
    #[error("timed out: fetching {url} took longer than {}s", .after.as_secs_f64())]
    Timeout {
        /// The URL asked for.
        url: String,
        /// The bound.
        after: Duration,
    },
    /// The final answer was not a success.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL that answered.
        url: String,
        /// The status line's code and reason.
        status: String,
    },
    /// Connection, TLS, protocol or decoding failure.
    #[error("could not fetch {url}: {reason}")]
    Network {
        /// The URL being fetched.
        url: String,
        /// The error chain.
        reason: String,
    },
    /// The client could not be built (bad user agent, TLS setup).
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
}

/// The fetcher. Cheap to share behind an `Arc`.
pub struct Fetcher {
    client: reqwest::Client,
    config: FetchConfig,
    robots: RobotsCache,
    token: String,
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

fn refusal_in(e: &reqwest::Error) -> Option<Refusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(refusal) = s.downcast_ref::<Refusal>() {
            return Some(refusal.clone());
        }
        source = s.source();
    }
    None
}

impl Fetcher {
    /// Builds the client. Logs a warning when the test-only loopback allowance is on.
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        if config.policy.allow_loopback_for_tests {
            tracing::warn!("TEST ONLY: loopback (127.0.0.0/8) may be fetched; never run a deployed server like this");
        }
        let policy = Arc::new(config.policy.clone());
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            // SECURITY: redirects are followed by hand so each target is checked before any
            // connection; no proxy (its address would be dialled instead of the checked one);
            // every host name resolves through the guard.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(policy, config.lookup.clone())))
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .timeout(config.timeout)
            .referer(false)
            .build()
            .map_err(|e| FetchError::Client(chain(&e)))?;
        let robots = RobotsCache::new(config.robots_ttl);
        let token = robots::product_token(&config.user_agent);
        Ok(Self { client, config, robots, token })
    }

    /// The configuration in force.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Fetches `url`: checked, robots.txt honoured, redirects followed and checked, bounded in
    /// size and time. Only a 2xx answer is a page.
    pub async fn fetch(&self, url: &str) -> Result<Page, FetchError> {
        let parsed = Url::parse(url.trim()).map_err(|reason| FetchError::BadUrl { url: url.to_string(), reason })?;
        let after = self.config.timeout;
        let page = tokio::time::timeout(after, self.follow(parsed, self.config.max_response_bytes, true))
            .await
            .map_err(|_| FetchError::Timeout { url: url.to_string(), after })??;
        if !(200..300).contains(&page.status) {
            let status = reqwest::StatusCode::from_u16(page.status).map(|s| s.to_string());
            return Err(FetchError::Status {
                url: page.url.to_string(),
                status: status.unwrap_or_else(|_| page.status.to_string()),
            });
        }
        Ok(page)
    }

    async fn follow(&self, start: Url, limit: usize, robots: bool) -> Result<Page, FetchError> {
        let mut url = start;
        let mut redirects = 0;
        loop {
            let what = if redirects == 0 { "to fetch" } else { "the redirect to" };
            self.config.policy.check_url(&url).map_err(|refusal| FetchError::Refused {
                what,
                url: url.to_string(),
                refusal: Box::new(refusal),
            })?;
            if robots && self.config.robots {
                self.check_robots(what, &url).await?;
            }
            let response = self
                .client
                .get(url.clone())
                .header(ACCEPT, "text/html, application/xhtml+xml, text/markdown;q=0.9, text/plain;q=0.9, application/json;q=0.9, image/*;q=0.8, */*;q=0.5")
                .send()
                .await
                .map_err(|e| self.send_error(what, &url, e))?;
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = response.headers().get(LOCATION)
            {
                if redirects == self.config.max_redirects {
                    return Err(FetchError::TooManyRedirects { url: url.to_string(), max: self.config.max_redirects });
                }
                let location = location.to_str().map_err(|_| FetchError::BadRedirect {
                    url: url.to_string(),
                    reason: "Location is not ASCII".into(),
                })?;
                let next = url.join(location).map_err(|e| FetchError::BadRedirect {
                    url: url.to_string(),
                    reason: format!("Location `{location}`: {e}"),
                })?;
                tracing::debug!(from = %url, to = %next, "redirect");
                redirects += 1;
                url = next;
                continue;
            }
            let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
            let (body, cut) = read_bounded(response, limit).await.map_err(|e| {
                if e.is_timeout() {
                    FetchError::Timeout { url: url.to_string(), after: self.config.timeout }
                } else {
                    FetchError::Network {
                        url: url.to_string(),
                        reason: format!("reading the body failed: {}", chain(&e)),
                    }
                }
            })?;
            return Ok(Page { url, status, content_type, body, cut_at: cut.then_some(limit), redirects });
        }
    }

    fn send_error(&self, what: &'static str, url: &Url, e: reqwest::Error) -> FetchError {
        if let Some(refusal) = refusal_in(&e) {
            return FetchError::Refused { what, url: url.to_string(), refusal: Box::new(refusal) };
        }
        if e.is_timeout() {
            return FetchError::Timeout { url: url.to_string(), after: self.config.timeout };
        }
        FetchError::Network { url: url.to_string(), reason: chain(&e) }
    }

    async fn check_robots(&self, what: &'static str, url: &Url) -> Result<(), FetchError> {
        if url.path() == "/robots.txt" {
            return Ok(());
        }
        let robots_url = robots::robots_url(url);
        let rules = match self.robots.get(url) {
            Some(rules) => rules,
            None => {
                let rules = match Box::pin(self.follow(robots_url.clone(), ROBOTS_LIMIT, false)).await {
                    Ok(page) => robots::from_response(&self.token, page.status, &page.body),
                    // The origin itself is refused (its name resolves to a forbidden address):
                    // that is the answer for the page too, not a robots.txt matter. Not cached.
                    Err(FetchError::Refused { what: "to fetch", refusal, .. }) => {
                        return Err(FetchError::Refused { what, url: url.to_string(), refusal });
                    }
                    // Unreachable: the page would not be reachable either; say so (RFC 9309
                    // would have us disallow everything, which is what not fetching is). Not
                    // cached, so the next call tries again.
                    Err(e @ (FetchError::Network { .. } | FetchError::Timeout { .. })) => return Err(e),
                    Err(e) => Rules::DisallowAll(format!("its robots.txt could not be fetched ({e})")),
                };
                let rules = Arc::new(rules);
                self.robots.insert(url, rules.clone());
                rules
            }
        };
        rules.check(url).map_err(|why| FetchError::Robots {
            url: url.to_string(),
            robots_url: robots_url.to_string(),
            agent: self.token.clone(),
            why,
        })
    }
}

/// Reads at most `limit` bytes of the (decoded) body; `true` when there was more.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}
