//! The ForwardAuth dialects of `/verify`: how each proxy describes the original request, and
//! how a [`Decision`] becomes the response the proxy acts on.
//!
//! Traefik (`forwardAuth`) and Caddy (`forward_auth`) send `X-Forwarded-Method`, `-Proto`,
//! `-Host` and `-Uri`. These headers are believed only when the request comes from an address
//! in `server.trusted_proxies`; from anywhere else they are ignored and the request is judged
//! as a request for the root of its own `Host`.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use ipnet::IpNet;
use url::{Position, Url};

use super::answer::{Answer, Answers};
use super::resource::origin_of;
use super::{Decision, OriginalRequest};
use crate::config::Config;

/// The request headers /verify reads, parsed once (a lookup by `&str` parses the name each time).
mod names {
    use actix_web::http::header::HeaderName;

    pub static HOST: HeaderName = HeaderName::from_static("host");
    pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
    pub static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
    pub static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
    pub static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
    pub static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
    pub static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
    pub static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
    pub static AUTHORIZATION: HeaderName = HeaderName::from_static("authorization");
    pub static ACCEPT: HeaderName = HeaderName::from_static("accept");

    /// The constant for a name `OriginalRequest::with_headers` asks for.
    pub fn known(name: &str) -> Option<&'static HeaderName> {
        Some(match name {
            "mcp-method" => &MCP_METHOD,
            "mcp-name" => &MCP_NAME,
            "mcp-protocol-version" => &MCP_PROTOCOL_VERSION,
            "authorization" => &AUTHORIZATION,
            "accept" => &ACCEPT,
            _ => return None,
        })
    }
}

/// One `X-Forwarded-For` hop: an address, perhaps with a port (`192.0.2.1:443`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// How /verify reads the proxies, parsed once from the configuration.
#[derive(Debug)]
pub struct Dialect {
    trusted: Vec<IpNet>,
    issuer_scheme: String,
}

impl Dialect {
    /// From the configuration.
    pub fn new(config: &Config) -> Self {
        Self {
            trusted: config.trusted_proxy_nets(),
            issuer_scheme: Url::parse(&config.server.issuer)
                .map(|u| u.scheme().to_owned())
                .unwrap_or_else(|_| "https".into()),
        }
    }

    /// The address of the person behind a request (for per-address limits): the peer, unless it
    /// is a trusted proxy; then `X-Forwarded-For` read from the right, where each proxy appended
    /// the address that called it, up to the first hop that is not a trusted proxy.
    // SECURITY: never the left-most hop: that one is whatever the client chose to write.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let mut addr = req.peer_addr().map(|a| a.ip())?;
        if !self.is_trusted(Some(addr)) {
            return Some(addr);
        }
        let lines: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
        for hop in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
            let Some(ip) = parse_hop(hop) else { break };
            addr = ip;
            if !self.is_trusted(Some(ip)) {
                break;
            }
        }
        Some(addr)
    }

    /// Whether `peer` may speak for the original request.
    pub fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            };
            self.trusted.iter().any(|n| n.contains(&ip))
        })
    }

    /// The original request, from the forwarded headers of a trusted proxy, with its MCP
    /// headers.
    pub fn original_request(&self, req: &HttpRequest) -> OriginalRequest {
        let headers = req.headers();
        self.forwarded_request(req).with_headers(|name| headers.get(names::known(name)?).and_then(|v| v.to_str().ok()))
    }

    /// Method, scheme, host and URI of the original request.
    fn forwarded_request(&self, req: &HttpRequest) -> OriginalRequest {
        let h = |name: &HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        // A proxy chain may list several values: the first is the client-facing one.
        let first = |name: &HeaderName| h(name).map(|v| v.split(',').next().unwrap_or(v).trim());
        let own_host = h(&names::HOST).unwrap_or("localhost");
        if !self.is_trusted(req.peer_addr().map(|a| a.ip())) {
            return normalize(req.method().as_str(), &self.issuer_scheme, own_host, "/");
        }
        let scheme = first(&names::X_FORWARDED_PROTO).unwrap_or(&self.issuer_scheme);
        // SECURITY: a proxy speaks one dialect, and passes the client's other headers on (Traefik
        // and Caddy copy them to the subrequest, so does nginx unless told not to). A request in
        // two dialects has one of them from the client: it is judged as nothing.
        let dialects = [
            h(&names::X_FORWARDED_URI).is_some(),
            h(&names::X_ORIGINAL_URL).is_some(),
            req.path().starts_with("/verify/"),
        ];
        if dialects.iter().filter(|d| **d).count() > 1 {
            return normalize(req.method().as_str(), scheme, "", "/");
        }
        // Traefik forwardAuth, Caddy forward_auth.
        if let Some(uri) = h(&names::X_FORWARDED_URI) {
            let method = h(&names::X_FORWARDED_METHOD).unwrap_or(req.method().as_str());
            return normalize(method, scheme, first(&names::X_FORWARDED_HOST).unwrap_or(own_host), uri);
        }
        // nginx auth_request with `X-Original-URL $scheme://$http_host$request_uri` and
        // `X-Original-Method $request_method` (the documented configuration).
        if let Some(raw) = h(&names::X_ORIGINAL_URL) {
            let method = h(&names::X_ORIGINAL_METHOD).unwrap_or(req.method().as_str());
            // The raw path, before URL parsing resolves what `ambiguous_path` refuses.
            let raw_path = raw.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]));
            let Some(url) = Url::parse(raw).ok().filter(|_| !raw_path.is_some_and(ambiguous_path)) else {
                return normalize(method, &self.issuer_scheme, "", "/");
            };
            let host = origin_of(&url);
            let host = host.split_once("://").map_or("", |(_, h)| h);
            let uri = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            return normalize(method, url.scheme(), host, &uri);
        }
        // Envoy HTTP ext_authz: the original path appended to the path prefix (`/verify`), the
        // original Host and method kept.
        if let Some(tail) = req.path().strip_prefix("/verify/") {
            let uri = match req.query_string() {
                "" => format!("/{tail}"),
                q => format!("/{tail}?{q}"),
            };
            return normalize(req.method().as_str(), scheme, first(&names::X_FORWARDED_HOST).unwrap_or(own_host), &uri);
        }
        normalize(
            h(&names::X_FORWARDED_METHOD).unwrap_or(req.method().as_str()),
            scheme,
            first(&names::X_FORWARDED_HOST).unwrap_or(own_host),
            "/",
        )
    }

    /// `scheme://host` of a request routed to us directly (RFC 9728 metadata): the forwarded
    /// proto and host from a trusted proxy, else our own `Host`.
    pub fn request_origin(&self, req: &HttpRequest) -> String {
        self.forwarded_request(req).origin()
    }
}

/// The response the proxy acts on.
pub fn respond(
    answers: &Answers,
    decision: Decision,
    req: &OriginalRequest,
    authorization: Option<&HeaderValue>,
) -> HttpResponse {
    match answers.answer(decision, req) {
        Answer::Allow(identity) => {
            let mut res = HttpResponse::Ok();
            if let Some(v) = identity {
                for (name, value) in answers.identity(&v) {
                    res.insert_header((name.clone(), value));
                }
                if answers.forward_token()
                    && let Some(auth) = authorization
                {
                    res.insert_header((header::AUTHORIZATION, auth.clone()));
                }
            }
            res.finish()
        }
        Answer::Deny(denial) => {
            let mut res = HttpResponse::build(denial.status);
            for h in denial.headers {
                res.insert_header(h);
            }
            res.body(denial.body)
        }
    }
}

/// Canonical form of the original request: the URL parser percent-encodes what needs it and
/// refuses hosts that are not hosts; what does not parse is judged as the root of `localhost`.
/// Input already in canonical form is taken as it is.
pub fn normalize(method: &str, scheme: &str, host: &str, uri: &str) -> OriginalRequest {
    let scheme = if scheme.eq_ignore_ascii_case("http") { "http" } else { "https" };
    let uri = if uri.starts_with('/') { uri } else { "/" };
    if already_canonical(scheme, host, uri) {
        return OriginalRequest {
            method: method.to_ascii_uppercase(),
            scheme: scheme.into(),
            host: host.into(),
            uri: uri.into(),
            ..OriginalRequest::default()
        };
    }
    parse_canonical(method, scheme, host, uri)
}

/// Whether the URL parser would give `host` and `uri` back unchanged: a lower-case DNS name
/// whose last label starts with a letter (so not an IPv4 address in any notation), no IDNA
/// label, an explicit port only when not the scheme's default, and a path and query of
/// characters that are never percent-encoded, with no escapes, dot segments or backslashes.
/// The common request (what every proxy sends) then costs no URL parse. The fuzz target
/// `forwarded` checks that this agrees with [`parse_canonical`] on every input it accepts.
fn already_canonical(scheme: &str, host: &str, uri: &str) -> bool {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && !p.starts_with('0')
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n != if scheme == "http" { 80 } else { 443 })
    });
    let labels_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with("xn--")
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && name.rsplit('.').next().is_some_and(|last| last.starts_with(|c: char| c.is_ascii_lowercase()));
    let uri_ok = uri.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-'
                    | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'?'
            )
    }) && !ambiguous_path(uri);
    port_ok && labels_ok && uri_ok
}

/// [`normalize`] by the URL parser (public for the fuzz target's differential check).
#[doc(hidden)]
pub fn parse_canonical(method: &str, scheme: &str, host: &str, uri: &str) -> OriginalRequest {
    // SECURITY: a path the proxy may route differently from how it would be judged here is judged
    // as nothing at all (see `ambiguous_path`).
    // SECURITY: the host is only a host (and port): `X-Forwarded-Host: mcp.example.com/b` with
    // the path `/a` would otherwise be judged as `/b/a`, another resource's URL, while the
    // proxy routes `/a` (found by fuzzing: fuzz/fuzz_targets/forwarded.rs).
    // And it is there: with none, `https://` + `/x.example.com/b` would parse with the path's
    // first segment as the host.
    let host_only = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    // Control characters too: the URL parser drops tabs and line breaks, which can join
    // `%5` and `c` into an escape `ambiguous_path` would have refused (found by fuzzing).
    let parsed = Some(uri)
        .filter(|u| host_only && !u.bytes().any(|b| b.is_ascii_control()) && !ambiguous_path(u))
        .and_then(|uri| Url::parse(&format!("{scheme}://{host}{uri}")).ok())
        .filter(|u| u.host_str().is_some() && u.username().is_empty() && u.password().is_none());
    let Some(url) = parsed else {
        return OriginalRequest {
            method: method.to_owned(),
            scheme: scheme.into(),
            host: "localhost".into(),
            uri: "/".into(),
            ..OriginalRequest::default()
        };
    };
    // Slices of the canonical serialization: `host[:port]` (the default port dropped) and
    // `path[?query]`.
    OriginalRequest {
        method: method.to_ascii_uppercase(),
        scheme: scheme.into(),
        host: url[Position::BeforeHost..Position::AfterPort].to_owned(),
        uri: url[Position::BeforePath..Position::AfterQuery].to_owned(),
        ..OriginalRequest::default()
    }
}

/// Whether the path of `uri` has a dot segment (`.`, `..`, percent-encoded or not), an encoded
/// slash or a backslash. URL parsing resolves these, so the path judged would not be the one a
/// proxy that routes on the raw path sends to the MCP server: `/echo/../fetch/mcp` would be
/// judged as fetch's and routed to echo. No MCP client sends such a path.
fn ambiguous_path(uri: &str) -> bool {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f")
        || lower.contains("%5c")
        || path.contains('\\')
        || lower.split('/').any(|seg| matches!(seg, "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_only_a_host() {
        // Found by fuzzing: the host carried a path, and the judged URL became another one.
        let nothing = normalize("GET", "https", "localhost", "/");
        for host in [
            "2/z%5c",
            "mcp.example.com/b",
            "mcp.example.com?x",
            "mcp.example.com#f",
            "a@mcp.example.com",
            "h\\x",
            "h x",
        ] {
            let r = normalize("POST", "https", host, "/a");
            assert_eq!((r.host.as_str(), r.uri.as_str()), (nothing.host.as_str(), nothing.uri.as_str()), "{host}");
        }
        for uri in ["/x/%5\n\nc0", "/x/%2\tf", "/a\r\n/b", "/a\0"] {
            let r = normalize("POST", "https", "h", uri);
            assert_eq!((r.host.as_str(), r.uri.as_str()), ("localhost", "/"), "{uri:?}");
        }
        let r = normalize("POST", "https", "", "//mcp.example.com/b");
        assert_eq!((r.host.as_str(), r.uri.as_str()), ("localhost", "/"), "no host: the path does not become one");
        assert_eq!(normalize("POST", "https", "[::1]:8443", "/a").host, "[::1]:8443");
        assert_eq!(normalize("POST", "https", "mcp_x.example.com", "/a").host, "mcp_x.example.com");
    }

    #[test]
    fn normalization() {
        let r = normalize("post", "https", "MCP.Example.com:443", "/mcp?x=1");
        assert_eq!(
            r,
            OriginalRequest {
                method: "POST".into(),
                scheme: "https".into(),
                host: "mcp.example.com".into(),
                uri: "/mcp?x=1".into(),
                ..OriginalRequest::default()
            }
        );
        assert_eq!(normalize("GET", "http", "h:8080", "/a\"b").uri, "/a%22b");
        assert_eq!(normalize("GET", "https", "evil\" x", "/").host, "localhost");
        assert_eq!(normalize("GET", "https", "user@h", "/").host, "localhost");
        assert_eq!(normalize("GET", "https", "h", "relative").uri, "/");
        assert_eq!(normalize("GET", "javascript", "h", "/").scheme, "https");
        for path in [
            "/echo/../fetch/mcp",
            "/echo/%2E%2E/fetch/mcp",
            "/echo/.%2e/x",
            "/a/./b",
            "/a/..",
            "/a%2Fb",
            "/a\\b",
            "/a%5cb",
        ] {
            let r = normalize("POST", "https", "h", path);
            assert_eq!((r.host.as_str(), r.uri.as_str()), ("localhost", "/"), "{path}");
        }
        for path in ["/mcp", "/mcp/x.y", "/mcp/..x", "/mcp/?q=../x", "/.well-known/oauth-protected-resource/mcp"] {
            assert_eq!(normalize("POST", "https", "h", path).host, "h", "{path}");
        }
    }

    fn request(peer: &str, path: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = actix_web::test::TestRequest::get().uri(path).peer_addr(peer.parse().unwrap());
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn the_client_address_is_the_last_untrusted_hop() {
        let mut config = Config::default();
        config.server.trusted_proxies = vec!["10.0.0.0/8".into()];
        let d = Dialect::new(&config);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let xff = |peer: &str, lines: &[&str]| {
            let mut r = actix_web::test::TestRequest::get().uri("/token").peer_addr(peer.parse().unwrap());
            for line in lines {
                r = r.append_header(("x-forwarded-for", *line));
            }
            d.client_ip(&r.to_http_request())
        };
        // An untrusted peer's header is not read at all.
        assert_eq!(xff("192.0.2.9:1", &["198.51.100.1"]), ip("192.0.2.9"));
        // A trusted proxy appended the real client to what the client wrote itself.
        assert_eq!(xff("10.0.0.2:1", &["1.1.1.1, 192.0.2.7"]), ip("192.0.2.7"));
        // Two trusted proxies in a row, over two header lines.
        assert_eq!(xff("10.0.0.2:1", &["6.6.6.6, 192.0.2.7", "10.0.0.3"]), ip("192.0.2.7"));
        assert_eq!(xff("10.0.0.2:1", &["[2001:db8::5]:4711, 10.0.0.3:80"]), ip("2001:db8::5"));
        // Garbage where the client's hop should be: the last proxy is all that is known.
        assert_eq!(xff("10.0.0.2:1", &["not-an-address, 10.0.0.3"]), ip("10.0.0.3"));
        assert_eq!(xff("10.0.0.2:1", &[]), ip("10.0.0.2"));
    }

    #[test]
    fn each_proxy_dialect_from_a_trusted_peer() {
        let d = Dialect::new(&Config::default());
        let want = |method: &str, host: &str, uri: &str| OriginalRequest {
            method: method.into(),
            scheme: "https".into(),
            host: host.into(),
            uri: uri.into(),
            ..OriginalRequest::default()
        };
        let traefik = request(
            "127.0.0.1:1",
            "/verify",
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "mcp.example.com"),
                ("x-forwarded-uri", "/mcp?a=1"),
            ],
        );
        assert_eq!(d.original_request(&traefik), want("POST", "mcp.example.com", "/mcp?a=1"));
        let nginx = request(
            "127.0.0.1:1",
            "/verify",
            &[("x-original-url", "https://mcp.example.com:443/mcp/x?a=1"), ("x-original-method", "DELETE")],
        );
        assert_eq!(d.original_request(&nginx), want("DELETE", "mcp.example.com", "/mcp/x?a=1"));
        let envoy =
            request("127.0.0.1:1", "/verify/mcp/x?a=1", &[("host", "mcp.example.com"), ("x-forwarded-proto", "https")]);
        assert_eq!(d.original_request(&envoy), want("GET", "mcp.example.com", "/mcp/x?a=1"));
        // The same from an untrusted peer: none of it is believed.
        for r in [
            request(
                "10.9.9.9:1",
                "/verify",
                &[("host", "auth.local"), ("x-forwarded-host", "mcp.example.com"), ("x-forwarded-uri", "/mcp")],
            ),
            request(
                "10.9.9.9:1",
                "/verify",
                &[("host", "auth.local"), ("x-original-url", "https://mcp.example.com/mcp")],
            ),
            request("10.9.9.9:1", "/verify/mcp", &[("host", "auth.local")]),
        ] {
            let o = d.original_request(&r);
            assert_eq!((o.host.as_str(), o.uri.as_str()), ("auth.local", "/"));
        }
    }

    #[test]
    fn trusted_networks() {
        let d = Dialect::new(&Config::default());
        assert!(d.is_trusted(Some("127.0.0.1".parse().unwrap())));
        assert!(d.is_trusted(Some("::ffff:127.0.0.1".parse().unwrap())));
        assert!(d.is_trusted(Some("::1".parse().unwrap())));
        assert!(!d.is_trusted(Some("10.1.2.3".parse().unwrap())));
        assert!(!d.is_trusted(None));
    }
}
