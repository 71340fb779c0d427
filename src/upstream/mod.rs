//! Upstream identity: who the user is. Redirect-based providers (GitHub, GitHub Enterprise)
//! implement [`IdentityProvider`]; users defined in the configuration log in on our own form
//! ([`local`]). Allow-lists are applied here, before any code is issued.

pub mod github;
pub mod local;

use async_trait::async_trait;

use crate::config::Config;
use crate::store::User;

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

/// A provider the browser is sent to and returns from (`/callback/{id}`).
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Path segment and stored name (`github`).
    fn id(&self) -> &'static str;
    /// Button label on the login page.
    fn label(&self) -> &str;
    /// Where to send the browser. `state` identifies the parked authorization request.
    fn authorize_url(&self, callback: &str, state: &str, pkce_verifier: &str) -> String;
    /// Redeems the provider's code and returns the allowed user.
    async fn exchange(&self, callback: &str, code: &str, pkce_verifier: &str) -> Result<User, UpstreamError>;
}

/// The identity providers configured.
pub struct Upstreams {
    /// Redirect-based providers.
    pub redirect: Vec<Box<dyn IdentityProvider>>,
    /// Users from the configuration.
    pub local: local::LocalUsers,
}

impl Upstreams {
    /// From the configuration; `http` is the shared outbound client (timeouts set).
    pub fn from_config(config: &Config, http: reqwest::Client) -> Self {
        let mut redirect: Vec<Box<dyn IdentityProvider>> = Vec::new();
        if config.github.enabled() {
            let resource_orgs = config.resources.iter().any(|r| !r.allowed_orgs.is_empty());
            redirect.push(Box::new(github::GithubProvider::new(config.github.clone(), http, resource_orgs)));
        }
        Self { redirect, local: local::LocalUsers::from_config(&config.local) }
    }

    /// A redirect provider by id.
    pub fn provider(&self, id: &str) -> Option<&dyn IdentityProvider> {
        self.redirect.iter().find(|p| p.id() == id).map(|p| p.as_ref())
    }

    /// Whether anyone can log in at all.
    pub fn is_empty(&self) -> bool {
        self.redirect.is_empty() && self.local.is_empty()
    }
}

/// Whether `user` is on `list` (ids or names, case-insensitive); an empty list allows all.
pub fn listed(list: &[String], user: &User) -> bool {
    list.is_empty() || list.iter().any(|e| e.eq_ignore_ascii_case(&user.id) || e.eq_ignore_ascii_case(&user.name))
}
