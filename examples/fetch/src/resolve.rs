//! Name resolution that checks before it answers.
//!
//! [`GuardedResolver`] is the `reqwest` DNS resolver of the fetch client. It looks the name up,
//! checks EVERY address (one forbidden address refuses the name), and hands exactly the checked
//! addresses to the connector, which dials one of them: there is no second lookup between the
//! check and the connection, so DNS rebinding has no window. Hosts that are IP literals never
//! reach a resolver (hyper's connector dials them directly); [`crate::guard::Policy::check_url`]
//! checks those before every request, redirects included.
//!
//! The lookup itself is a [`Lookup`]: the system resolver in production, a fixed table in tests.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::guard::Policy;

/// A boxed lookup future.
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Turns a host name into addresses. Implementations do no checking.
pub trait Lookup: Send + Sync + 'static {
    /// All addresses of `host`.
    fn lookup(&self, host: &str) -> LookupFuture;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A fixed name → addresses table; unknown names fail. For tests and air-gapped setups.
#[derive(Clone, Debug, Default)]
pub struct StaticLookup(pub HashMap<String, Vec<IpAddr>>);

impl StaticLookup {
    /// A table from `(name, addresses)` pairs.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, Vec<IpAddr>)>) -> Self {
        Self(entries.into_iter().map(|(name, addrs)| (name.to_ascii_lowercase(), addrs)).collect())
    }
}

impl Lookup for StaticLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let found = self.0.get(&host.trim_end_matches('.').to_ascii_lowercase()).cloned();
        let host = host.to_string();
        Box::pin(
            async move { found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("unknown host {host}"))) },
        )
    }
}

/// The resolver handed to `reqwest`: lookup, then [`Policy::check_name`] and
/// [`Policy::check_resolved`], then the checked addresses and nothing else.
pub struct GuardedResolver {
    policy: Arc<Policy>,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy` over `lookup`.
    pub fn new(policy: Arc<Policy>, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let lookup = self.lookup.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // SECURITY: the name rules again (a redirect's host passed check_url too, but this is
            // the one place every name goes through), then every answer.
            policy.check_name(&host)?;
            let addrs = lookup.lookup(&host).await?;
            policy.check_resolved(&host, &addrs)?;
            tracing::debug!(%host, ?addrs, "resolved and checked");
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
