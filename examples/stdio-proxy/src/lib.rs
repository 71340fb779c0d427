//! mcp-stdio-proxy: puts a stdio MCP server on Streamable HTTP at `/mcp`.
//!
//! A raw JSON-RPC bridge: one child process per MCP session ([`session`]), a small pool of
//! proxy-initialized children for stateless 2026-07-28 requests ([`pool`], [`stateless`]),
//! requests multiplexed by id over each child's stdio ([`child`]), the HTTP side in [`http`].
//! No auth here: the proxy in front asks mcp-authd and adds the identity headers.

#![forbid(unsafe_code)]

pub mod child;
pub mod http;
pub mod jsonrpc;
pub mod pool;
pub mod session;
pub mod stateless;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::child::ChildSpec;
use crate::pool::Pool;
use crate::session::{SessionConfig, Sessions};
use crate::stateless::Stateless;

/// Everything the proxy needs to run.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The stdio server command.
    pub spec: ChildSpec,
    /// Session limits and timeouts.
    pub sessions: SessionConfig,
    /// Most children for stateless requests.
    pub stateless_children: usize,
    /// `Host` values accepted (`*`: any), as `--allowed-host` of the other example servers.
    pub allowed_hosts: Vec<String>,
}

/// The running proxy: sessions, the stateless pool, and the shutdown signal.
pub struct Proxy {
    /// Session-based clients.
    pub sessions: Arc<Sessions>,
    /// Stateless clients.
    pub stateless: Arc<Stateless>,
    pool: Arc<Pool>,
    allowed_hosts: Vec<String>,
    /// Cancelled when the server shuts down; ends open SSE streams.
    pub shutdown: CancellationToken,
}

impl Proxy {
    /// Builds the proxy and starts its housekeeping task (idle timeouts, expired MRTR state).
    pub fn start(config: ProxyConfig, shutdown: CancellationToken) -> Arc<Proxy> {
        let idle = config.sessions.idle_timeout;
        let pool = Pool::new(config.spec.clone(), config.stateless_children, config.sessions.init_timeout, idle);
        let proxy = Arc::new(Proxy {
            sessions: Sessions::new(config.spec, config.sessions),
            stateless: Stateless::new(pool.clone()),
            pool,
            allowed_hosts: config.allowed_hosts,
            shutdown,
        });
        let tick = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        let weak = Arc::downgrade(&proxy);
        let stop = proxy.shutdown.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let Some(proxy) = weak.upgrade() else { return };
                proxy.sessions.reap();
                proxy.pool.reap();
                proxy.stateless.reap();
            }
        });
        proxy
    }

    /// Children running (sessions plus stateless pool).
    pub fn children(&self) -> usize {
        self.sessions.count() + self.pool.count()
    }

    /// Stops every child (stdin closed, then SIGTERM, then SIGKILL) and waits until all are reaped.
    pub async fn stop_children(&self) {
        tokio::join!(self.sessions.shutdown(), self.pool.shutdown());
    }

    /// DNS-rebinding guard: the `Host` header (and a browser's `Origin`) must name an allowed host.
    // SECURITY: without this a web page could reach a proxy on localhost through a rebound DNS
    // name and drive the wrapped server (which may run commands or read files).
    #[allow(clippy::result_large_err)]
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Response> {
        if self.allowed_hosts.iter().any(|h| h == "*") {
            return Ok(());
        }
        let forbidden = |what: &'static str| (StatusCode::FORBIDDEN, what).into_response();
        let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
        match host.and_then(|h| h.parse::<axum::http::uri::Authority>().ok()) {
            Some(authority) if host_allowed(&self.allowed_hosts, authority.host(), authority.port_u16()) => {}
            _ => return Err(forbidden("Forbidden: Host header is not allowed")),
        }
        if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
            let uri = origin.to_str().ok().and_then(|o| o.parse::<axum::http::Uri>().ok());
            match uri.as_ref().and_then(|u| u.authority()) {
                Some(authority) if host_allowed(&self.allowed_hosts, authority.host(), authority.port_u16()) => {}
                _ => return Err(forbidden("Forbidden: Origin header is not allowed")),
            }
        }
        Ok(())
    }
}

/// `host[:port]` against the allowed list: an entry without a port allows any port.
fn host_allowed(allowed: &[String], host: &str, port: Option<u16>) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|entry| {
        let (entry_host, entry_port) = match entry.parse::<axum::http::uri::Authority>() {
            Ok(a) => (a.host().to_owned(), a.port_u16()),
            Err(_) => (entry.clone(), None),
        };
        let entry_host = entry_host.trim_start_matches('[').trim_end_matches(']');
        entry_host.eq_ignore_ascii_case(host) && (entry_port.is_none() || entry_port == port)
    })
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts() {
        let allowed: Vec<String> = ["localhost", "127.0.0.1", "::1", "mcp.example.com:8443"].map(String::from).to_vec();
        assert!(host_allowed(&allowed, "localhost", Some(3000)));
        assert!(host_allowed(&allowed, "LOCALHOST", None));
        assert!(host_allowed(&allowed, "[::1]", Some(80)));
        assert!(host_allowed(&allowed, "mcp.example.com", Some(8443)));
        assert!(!host_allowed(&allowed, "mcp.example.com", Some(443)));
        assert!(!host_allowed(&allowed, "evil.example", None));
    }
}
