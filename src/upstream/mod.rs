//! Upstream identity: who the user is. Redirect-based providers (GitHub, GitHub Enterprise, any
//! number of OpenID Connect providers) implement [`IdentityProvider`]; users defined in the
//! configuration log in on our own form ([`local`]). Allow-lists are applied here, before any
//! code is issued, and again at every refresh ([`Upstreams::still_allowed`]).

pub mod github;
pub mod local;
pub mod oidc;

use std::time::Duration;

use async_trait::async_trait;

use crate::config::Config;
use crate::store::User;

/// Largest response read from a provider (bytes).
const MAX_RESPONSE: usize = 1 << 20;

/// Why an upstream login did not produce a user.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The user authenticated but is not allowed, or declined at the provider.
    #[error("{0}")]
    Denied(String),
    /// The provider failed, timed out or answered garbage.
    #[error("{0}")]
    Failed(String),
}

/// One upstream login: what the provider is sent, and what its answer must match.
pub struct UpstreamLogin<'a> {
    /// Our redirect URI at the provider (`<issuer>/callback/<id>`).
    pub callback: &'a str,
    /// The upstream `state`: the parked authorization request's id.
    pub state: &'a str,
    /// RFC 7636 verifier of the upstream leg (S256 challenge sent).
    pub pkce_verifier: &'a str,
    /// OpenID Connect Core §3.1.2.1 `nonce`; the ID token must carry it back.
    pub nonce: &'a str,
}

/// A provider the browser is sent to and returns from (`/callback/{id}`).
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Path segment and stored provider name (`github`, an `[[oidc]]` id).
    fn id(&self) -> &str;
    /// Button label on the login page.
    fn label(&self) -> &str;
    /// Where to send the browser (may need the provider's discovery document).
    async fn authorize_url(&self, login: &UpstreamLogin<'_>) -> Result<String, UpstreamError>;
    /// Redeems the provider's code and returns the allowed user. `iss` is the RFC 9207
    /// authorization response issuer, when the provider sent one.
    async fn exchange(&self, login: &UpstreamLogin<'_>, code: &str, iss: Option<&str>) -> Result<User, UpstreamError>;
    /// Whether a user who logged in here earlier passes this provider's allow-lists as they are
    /// configured now, judged on the identity captured at login (no call to the provider).
    fn still_allowed(&self, user: &User) -> bool;
}

/// The identity providers configured.
pub struct Upstreams {
    /// Redirect-based providers, in the order of the sign-in page.
    pub redirect: Vec<Box<dyn IdentityProvider>>,
    /// Users from the configuration.
    pub local: local::LocalUsers,
    /// The redirect provider users go to without seeing the sign-in page (`oauth.default_provider`).
    pub default_provider: Option<String>,
}

impl Upstreams {
    /// From the configuration; `http` is the shared outbound client (timeouts set).
    pub fn from_config(config: &Config, http: reqwest::Client) -> Self {
        let mut redirect: Vec<Box<dyn IdentityProvider>> = Vec::new();
        if config.github.enabled() {
            let resource_groups: Vec<String> = config.resources.iter().flat_map(|r| r.allowed_orgs.clone()).collect();
            redirect.push(Box::new(github::GithubProvider::new(config.github.clone(), http.clone(), &resource_groups)));
        }
        for o in &config.oidc {
            redirect.push(Box::new(oidc::OidcProvider::new(o.clone(), http.clone())));
        }
        let default_provider = Some(config.oauth.default_provider.clone()).filter(|d| !d.is_empty());
        Self { redirect, local: local::LocalUsers::from_config(&config.local), default_provider }
    }

    /// A redirect provider by id.
    pub fn provider(&self, id: &str) -> Option<&dyn IdentityProvider> {
        self.redirect.iter().find(|p| p.id() == id).map(|p| p.as_ref())
    }

    /// Whether anyone can log in at all.
    pub fn is_empty(&self) -> bool {
        self.redirect.is_empty() && self.local.is_empty()
    }

    /// The provider to send the browser to without showing the sign-in page: the configured
    /// default, or the only way to sign in when that is a redirect provider.
    pub fn direct(&self) -> Option<&dyn IdentityProvider> {
        if let Some(id) = &self.default_provider {
            return self.provider(id);
        }
        match (self.local.is_empty(), self.redirect.as_slice()) {
            (true, [only]) => Some(only.as_ref()),
            _ => None,
        }
    }

    /// Re-checks, at a refresh, a user who logged in earlier: their provider must still be
    /// configured (a local user must still exist) and its allow-lists must still admit them.
    /// The error says why not (for the log).
    pub fn still_allowed(&self, user: &User) -> Result<(), String> {
        if user.provider == "local" {
            return if self.local.contains(&user.name) {
                Ok(())
            } else {
                Err(format!("local user {} is no longer configured", user.name))
            };
        }
        match self.provider(&user.provider) {
            None => Err(format!("identity provider {:?} is no longer configured", user.provider)),
            Some(p) if p.still_allowed(user) => Ok(()),
            Some(_) => Err(format!("user {} is no longer on the allow-lists of {}", user.name, user.provider)),
        }
    }
}

/// Outbound HTTP failure, as the `oauth2` / `openidconnect` client closure needs an error type.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, sending or reading failed (or timed out).
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    /// The answer was larger than [`MAX_RESPONSE`] or could not be rebuilt.
    #[error("response too large or malformed")]
    Response,
}

/// Runs one `oauth2` / `openidconnect` request on our reqwest client: size-bounded, and bounded
/// in time by `timeout` (else by the client's own timeout).
pub async fn send(
    http: &reqwest::Client,
    req: oauth2::HttpRequest,
    timeout: Option<Duration>,
) -> Result<oauth2::HttpResponse, HttpError> {
    let mut req = reqwest::Request::try_from(req)?;
    if timeout.is_some() {
        *req.timeout_mut() = timeout;
    }
    let res = http.execute(req).await?;
    let mut builder = oauth2::http::Response::builder().status(res.status());
    for (name, value) in res.headers() {
        builder = builder.header(name, value);
    }
    let body = read_bounded(res).await.ok_or(HttpError::Response)?;
    builder.body(body).map_err(|_| HttpError::Response)
}

/// A response body of at most [`MAX_RESPONSE`] bytes.
pub async fn read_bounded(mut res: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.ok()? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE {
            return None;
        }
    }
    Some(body)
}

/// Whether `user` is on `list` (ids or names, case-insensitive); an empty list allows all.
pub fn listed(list: &[String], user: &User) -> bool {
    list.is_empty() || list.iter().any(|e| e.eq_ignore_ascii_case(&user.id) || e.eq_ignore_ascii_case(&user.name))
}
