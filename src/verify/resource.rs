//! Protected resources (RFC 9728): which MCP server a request is for, the audience its tokens
//! must carry (RFC 8707), and its policy.
//!
//! With `[[resources]]` configured, a request belongs to the configured resource whose URL is
//! the longest path-segment prefix of the request URL on the same origin; a request matching
//! none is refused. With none configured (local use), every request's own origin and path is
//! its resource, and a token is accepted for any resource path that is a segment prefix of it.

use std::sync::Arc;

use url::Url;

use super::OriginalRequest;
use crate::config::Config;
use crate::jwt::AccessClaims;

/// One protected MCP server.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The resource identifier, without a trailing slash (`https://mcp.example.com/mcp`).
    pub url: String,
    /// `scheme://host[:port]`, lower case.
    pub origin: String,
    /// Path without trailing slash (`""` for the root).
    pub path: String,
    /// `scopes_supported` of its metadata.
    pub scopes: Vec<String>,
    /// Scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// Allowed users, lower case; empty = all.
    pub allowed_users: Vec<String>,
    /// Whether it comes from `[[resources]]` (else derived from the request).
    pub configured: bool,
}

/// Segment-aware prefix: `/mcp` covers `/mcp` and `/mcp/x`, not `/mcpx`.
fn covers(prefix: &str, path: &str) -> bool {
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// `scheme://host[:port]` of a URL, with the default port dropped.
pub fn origin_of(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or("")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

impl ProtectedResource {
    fn new(origin: String, path: &str, scopes: Vec<String>) -> Self {
        let path = path.trim_end_matches('/').to_owned();
        Self {
            url: format!("{origin}{path}"),
            origin,
            path,
            scopes,
            required_scopes: Vec::new(),
            allowed_users: Vec::new(),
            configured: false,
        }
    }

    /// RFC 9728 §3.1: the metadata URL, the well-known prefix inserted before the path.
    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource{}", self.origin, self.path)
    }

    /// The `resource` value of its metadata: the URL as configured, or derived.
    pub fn identifier(&self) -> &str {
        &self.url
    }

    /// Whether a token with audience `aud` may be used here.
    pub fn accepts_audience(&self, aud: &str) -> bool {
        let aud = aud.trim_end_matches('/');
        if self.configured {
            return aud == self.url;
        }
        // Derived resources: the token's resource must be this origin and a prefix of the path.
        let Ok(url) = Url::parse(aud) else {
            return false;
        };
        origin_of(&url) == self.origin && covers(url.path().trim_end_matches('/'), &self.path)
    }

    /// The resource's user policy.
    pub fn allows_user(&self, claims: &AccessClaims) -> bool {
        self.allowed_users.is_empty()
            || self.allowed_users.iter().any(|u| {
                u.eq_ignore_ascii_case(&claims.sub)
                    || claims.preferred_username.as_deref().is_some_and(|n| u.eq_ignore_ascii_case(n))
            })
    }
}

/// The configured resources.
#[derive(Debug, Default)]
pub struct Resources {
    list: Vec<Arc<ProtectedResource>>,
}

impl Resources {
    /// From `[[resources]]` (validated URLs).
    pub fn from_config(config: &Config) -> Self {
        let mut list: Vec<Arc<ProtectedResource>> = config
            .resources
            .iter()
            .filter_map(|r| {
                let url = Url::parse(&r.url).ok()?;
                let scopes = if r.scopes.is_empty() { config.oauth.scopes_supported.clone() } else { r.scopes.clone() };
                let mut res = ProtectedResource::new(origin_of(&url), url.path(), scopes);
                res.required_scopes = r.required_scopes.clone();
                res.allowed_users = r.allowed_users.iter().map(|u| u.to_lowercase()).collect();
                res.configured = true;
                Some(Arc::new(res))
            })
            .collect();
        // Longest path first, so the most specific resource wins.
        list.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        Self { list }
    }

    /// Whether any resource is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The resource a request is for; `None` when resources are configured and none matches.
    pub fn for_request(&self, req: &OriginalRequest, default_scope: &[String]) -> Option<Arc<ProtectedResource>> {
        let origin = req.origin();
        if self.list.is_empty() {
            return Some(Arc::new(ProtectedResource::new(origin, req.path(), default_scope.to_vec())));
        }
        self.list.iter().find(|r| r.origin == origin && covers(&r.path, req.path())).cloned()
    }

    /// The resource whose metadata lives at `origin` + well-known + `path` (RFC 9728 §3.1).
    pub fn for_metadata(&self, origin: &str, path: &str, default_scope: &[String]) -> Option<Arc<ProtectedResource>> {
        let path = path.trim_end_matches('/');
        if self.list.is_empty() {
            return Some(Arc::new(ProtectedResource::new(origin.to_owned(), path, default_scope.to_vec())));
        }
        if let Some(exact) = self.list.iter().find(|r| r.origin == origin && r.path == path) {
            return Some(exact.clone());
        }
        // The root form on an origin with a single resource names that resource (clients fall
        // back to the root form, RFC 9728 §3.1).
        let mut on_origin = self.list.iter().filter(|r| r.origin == origin);
        match (path.is_empty(), on_origin.next(), on_origin.next()) {
            (true, Some(only), None) => Some(only.clone()),
            _ => None,
        }
    }

    /// Whether `resource` (an RFC 8707 value from a client) is one this server issues tokens for.
    pub fn is_known(&self, resource: &str) -> bool {
        let resource = resource.trim_end_matches('/');
        self.list.is_empty() || self.list.iter().any(|r| r.url == resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResourceConfig;

    fn req(host: &str, uri: &str) -> OriginalRequest {
        OriginalRequest { method: "POST".into(), scheme: "https".into(), host: host.into(), uri: uri.into() }
    }

    fn configured() -> Resources {
        let mut c = Config::default();
        for url in ["https://mcp.example.com/mcp", "https://mcp.example.com/mcp/admin", "https://other.example.com/"] {
            c.resources.push(ResourceConfig {
                url: url.into(),
                scopes: vec![],
                required_scopes: vec![],
                allowed_users: vec![],
            });
        }
        Resources::from_config(&c)
    }

    #[test]
    fn configured_matching_is_segment_aware_and_most_specific() {
        let r = configured();
        let d = vec!["mcp".to_string()];
        assert_eq!(r.for_request(&req("mcp.example.com", "/mcp"), &d).unwrap().url, "https://mcp.example.com/mcp");
        assert_eq!(
            r.for_request(&req("mcp.example.com", "/mcp/x?y=1"), &d).unwrap().url,
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            r.for_request(&req("mcp.example.com", "/mcp/admin/a"), &d).unwrap().url,
            "https://mcp.example.com/mcp/admin"
        );
        assert!(r.for_request(&req("mcp.example.com", "/mcpx"), &d).is_none());
        assert!(r.for_request(&req("evil.example.com", "/mcp"), &d).is_none());
        assert_eq!(r.for_request(&req("other.example.com", "/anything"), &d).unwrap().url, "https://other.example.com");
        assert!(r.is_known("https://mcp.example.com/mcp/"));
        assert!(!r.is_known("https://mcp.example.com/mc"));
    }

    #[test]
    fn audience_rules() {
        let r = configured();
        let d = vec![];
        let mcp = r.for_request(&req("mcp.example.com", "/mcp"), &d).unwrap();
        assert!(mcp.accepts_audience("https://mcp.example.com/mcp"));
        assert!(!mcp.accepts_audience("https://mcp.example.com/mcp/admin"));
        assert!(!mcp.accepts_audience("https://other.example.com"));
        let dynamic = Resources::default();
        let res = dynamic.for_request(&req("h.example", "/mcp/sub"), &d).unwrap();
        assert_eq!(res.metadata_url(), "https://h.example/.well-known/oauth-protected-resource/mcp/sub");
        assert!(res.accepts_audience("https://h.example/mcp"));
        assert!(res.accepts_audience("https://h.example/"));
        assert!(!res.accepts_audience("https://h.example/mc"));
        assert!(!res.accepts_audience("https://h.example.evil/mcp"));
        assert!(!res.accepts_audience("http://h.example/mcp"));
    }
}
