//! Protected resources (RFC 9728): which MCP server a request is for, the audience its tokens
//! must carry (RFC 8707), and its policy.
//!
//! With `[[resources]]` configured, a request belongs to the configured resource whose URL is
//! the longest path-segment prefix of the request URL on the same origin; a request matching
//! none is refused. With none configured (local use), every request's own origin and path is
//! its resource, and a token is accepted for any resource path that is a segment prefix of it.
//!
//! A resource's policy: who may use it (users, organisations / groups, e-mail domains: a user
//! on any list that is set passes), the scopes every token needs, and per MCP method / tool
//! rules read from the `Mcp-Method` and `Mcp-Name` headers of the 2026-07-28 transport.

use std::sync::Arc;

use url::Url;

use super::OriginalRequest;
use crate::config::Config;

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
    /// The `scope` of a 401 challenge, before any rule's: what a client should ask for first
    /// (`required_scopes`, else the server's default scopes this resource has, else `scopes`).
    pub challenge_scopes: Vec<String>,
    /// Allowed users, lower case; empty = all.
    pub allowed_users: Vec<String>,
    /// Allowed organisations / groups (the `groups` claim).
    pub allowed_orgs: Vec<String>,
    /// Allowed e-mail domains, lower case.
    pub allowed_email_domains: Vec<String>,
    /// Per MCP method / tool rules.
    pub rules: Vec<Rule>,
    /// Whether it comes from `[[resources]]` (else derived from the request).
    pub configured: bool,
}

/// What requests for one MCP method (and tool, prompt or resource name) need.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// JSON-RPC method, or `*`.
    pub method: String,
    /// Exact name, or a prefix when `prefix` is set; `None` = any name.
    pub name: Option<String>,
    /// `name` is a prefix (configured with a trailing `*`).
    pub prefix: bool,
    /// Scopes the token must carry.
    pub required_scopes: Vec<String>,
}

impl Rule {
    /// Whether this rule applies to a request for `method` and `name`.
    pub fn matches(&self, method: &str, name: Option<&str>) -> bool {
        if self.method != "*" && self.method != method {
            return false;
        }
        match (&self.name, name) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some(got)) if self.prefix => got.starts_with(want.as_str()),
            (Some(want), Some(got)) => want == got,
        }
    }
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
            challenge_scopes: scopes.clone(),
            scopes,
            required_scopes: Vec::new(),
            allowed_users: Vec::new(),
            allowed_orgs: Vec::new(),
            allowed_email_domains: Vec::new(),
            rules: Vec::new(),
            configured: false,
        }
    }

    /// RFC 9728 §3.1: the metadata URL, the well-known prefix inserted before the path.
    pub fn metadata_url(&self) -> String {
        let mut url = String::new();
        self.push_metadata_url(&mut url);
        url
    }

    /// [`Self::metadata_url`], appended to `out`.
    pub fn push_metadata_url(&self, out: &mut String) {
        out.push_str(&self.origin);
        out.push_str("/.well-known/oauth-protected-resource");
        out.push_str(&self.path);
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

    /// The resource's user policy: no list set lets every user in; otherwise the user must be
    /// on one of the lists that are set.
    pub fn allows_user(&self, claims: &super::Verified) -> bool {
        self.allows(claims.sub(), claims.name(), claims.email(), &claims.groups)
    }

    /// [`Self::allows_user`] on the parts of an identity (also used at refresh, on the stored user).
    pub fn allows<G: AsRef<str>>(&self, sub: &str, name: Option<&str>, email: Option<&str>, groups: &[G]) -> bool {
        if self.allowed_users.is_empty() && self.allowed_orgs.is_empty() && self.allowed_email_domains.is_empty() {
            return true;
        }
        let by_name = self
            .allowed_users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(sub) || name.is_some_and(|n| u.eq_ignore_ascii_case(n)));
        let by_org = self.allowed_orgs.iter().any(|o| groups.iter().any(|g| o.eq_ignore_ascii_case(g.as_ref())));
        // SECURITY: the whole domain after the last '@', so `example.com` admits neither
        // `evil-example.com` nor `example.com.evil`.
        let by_domain = email.and_then(|e| e.rsplit_once('@')).is_some_and(|(local, domain)| {
            !local.is_empty() && self.allowed_email_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
        });
        by_name || by_org || by_domain
    }

    /// The `scope` of a 401 challenge for `req`: what to ask for first, plus what the rules
    /// matching this request need, so that a client gets a token that works at the first try.
    pub fn challenge_scope(&self, req: &super::OriginalRequest) -> String {
        let mut scope = String::new();
        self.push_challenge_scope(req, &mut scope);
        scope
    }

    /// [`Self::challenge_scope`], appended to `out` (space-separated, each scope once).
    pub fn push_challenge_scope(&self, req: &super::OriginalRequest, out: &mut String) {
        let start = out.len();
        for s in self.challenge_scopes.iter().map(String::as_str).chain(self.rule_scopes(req)) {
            if out[start..].split(' ').any(|taken| taken == s) {
                continue;
            }
            if out.len() > start {
                out.push(' ');
            }
            out.push_str(s);
        }
    }

    /// Scopes a request needs beyond what every token needs here: those of the rules matching
    /// its MCP method and name. A POST that does not say its method (no `Mcp-Method`) needs
    /// the scopes of every rule, so leaving the header out never gets around a rule.
    pub fn rule_scopes<'a>(&'a self, req: &'a super::OriginalRequest) -> impl Iterator<Item = &'a str> + 'a {
        let is_post = req.method.eq_ignore_ascii_case("POST");
        self.rules
            .iter()
            .filter(move |r| {
                is_post
                    && match req.mcp_method.as_deref() {
                        Some(m) => r.matches(m, req.mcp_name.as_deref()),
                        None => true,
                    }
            })
            .flat_map(|r| r.required_scopes.iter().map(String::as_str))
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
                let defaults: Vec<String> =
                    config.oauth.default_scopes.iter().filter(|s| res.scopes.contains(s)).cloned().collect();
                if !res.required_scopes.is_empty() {
                    res.challenge_scopes = res.required_scopes.clone();
                } else if !defaults.is_empty() {
                    res.challenge_scopes = defaults;
                }
                res.allowed_users = r.allowed_users.iter().map(|u| u.to_lowercase()).collect();
                res.allowed_orgs = r.allowed_orgs.clone();
                res.allowed_email_domains =
                    r.allowed_email_domains.iter().map(|d| d.trim_start_matches('@').to_lowercase()).collect();
                res.rules = r
                    .rules
                    .iter()
                    .map(|rule| {
                        let (name, prefix) = match rule.name.as_deref() {
                            Some(n) => match n.strip_suffix('*') {
                                Some(p) => (Some(p.to_owned()), true),
                                None => (Some(n.to_owned()), false),
                            },
                            None => (None, false),
                        };
                        Rule {
                            method: rule.method.clone(),
                            name,
                            prefix,
                            required_scopes: rule.required_scopes.clone(),
                        }
                    })
                    .collect();
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
        if self.list.is_empty() {
            return Some(Arc::new(ProtectedResource::new(req.origin(), req.path(), default_scope.to_vec())));
        }
        // `scheme://host` compared in place: no allocation per request.
        let same_origin = |o: &str| {
            o.strip_prefix(req.scheme.as_str()).and_then(|rest| rest.strip_prefix("://")) == Some(req.host.as_str())
        };
        self.list.iter().find(|r| same_origin(&r.origin) && covers(&r.path, req.path())).cloned()
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

    /// The configured resource whose identifier is `url` (an access token's audience).
    pub fn by_url(&self, url: &str) -> Option<Arc<ProtectedResource>> {
        let url = url.trim_end_matches('/');
        self.list.iter().find(|r| r.url == url).cloned()
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
    use crate::jwt::AccessClaims;
    use crate::verify::Verified;

    fn req(host: &str, uri: &str) -> OriginalRequest {
        OriginalRequest {
            method: "POST".into(),
            scheme: "https".into(),
            host: host.into(),
            uri: uri.into(),
            ..OriginalRequest::default()
        }
    }

    fn configured() -> Resources {
        let mut c = Config::default();
        for url in ["https://mcp.example.com/mcp", "https://mcp.example.com/mcp/admin", "https://other.example.com/"] {
            c.resources.push(ResourceConfig { url: url.into(), ..Default::default() });
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

    fn claims(sub: &str, name: Option<&str>, email: Option<&str>, groups: &[&str]) -> Verified {
        Verified::new(AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: "a".into(),
            exp: 0,
            iat: 0,
            jti: "j".into(),
            client_id: "c".into(),
            scope: "mcp".into(),
            sid: "s".into(),
            auth_time: 0,
            preferred_username: name.map(Into::into),
            email: email.map(Into::into),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    }

    #[test]
    fn user_policy_is_any_list_that_is_set() {
        let mut c = Config::default();
        c.resources.push(ResourceConfig {
            url: "https://a.example/mcp".into(),
            allowed_users: vec!["Octocat".into()],
            allowed_orgs: vec!["acme".into()],
            allowed_email_domains: vec!["@Example.org".into()],
            ..Default::default()
        });
        let r = Resources::from_config(&c);
        let res = r.for_request(&req("a.example", "/mcp"), &[]).unwrap();
        assert!(res.allows_user(&claims("1", Some("octocat"), None, &[])));
        assert!(res.allows_user(&claims("2", None, None, &["ACME"])));
        assert!(res.allows_user(&claims("3", None, Some("x@example.ORG"), &[])));
        assert!(!res.allows_user(&claims("4", Some("other"), Some("x@sub.example.org"), &["acme-x"])));
        assert!(!res.allows_user(&claims("5", None, Some("x@example.org@evil.com"), &[])));
        let open = ProtectedResource::new("https://b.example".into(), "/", vec![]);
        assert!(open.allows_user(&claims("6", None, None, &[])));
    }

    #[test]
    fn rules_match_method_and_exact_or_prefix_name() {
        let rule = |method: &str, name: Option<&str>| {
            let (name, prefix) = match name {
                Some(n) => match n.strip_suffix('*') {
                    Some(p) => (Some(p.to_owned()), true),
                    None => (Some(n.to_owned()), false),
                },
                None => (None, false),
            };
            Rule { method: method.into(), name, prefix, required_scopes: vec!["s".into()] }
        };
        assert!(rule("tools/call", Some("a")).matches("tools/call", Some("a")));
        assert!(!rule("tools/call", Some("a")).matches("tools/call", Some("ab")));
        assert!(!rule("tools/call", Some("a")).matches("tools/call", None));
        assert!(!rule("tools/call", Some("a")).matches("prompts/get", Some("a")));
        assert!(rule("tools/call", Some("admin_*")).matches("tools/call", Some("admin_drop")));
        assert!(!rule("tools/call", Some("admin_*")).matches("tools/call", Some("user_admin_drop")));
        assert!(rule("tools/call", None).matches("tools/call", None));
        assert!(rule("*", None).matches("resources/read", Some("file:///x")));
    }
}
