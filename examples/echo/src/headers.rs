//! What the HTTP request of a tool call carried: its headers grouped as the proxy's forwarding
//! headers, the auth and identity headers (credentials redacted), and the rest; the identity
//! mcp-authd asserted (`X-User-*`, `X-Client-Id`, `X-Scope`, see DESIGN.md "The /verify
//! contract"); and a reading of the CORS headers (Fetch standard, "CORS protocol").
//!
//! Pure functions over an [`http::HeaderMap`], so they are unit-tested without a server.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::{Value, json};

/// The identity headers mcp-authd adds on an allowed request (DESIGN.md, `/verify` output).
pub const IDENTITY_HEADERS: [&str; 5] = ["x-user-id", "x-user-name", "x-user-email", "x-client-id", "x-scope"];

/// What `authContext` says when the gateway sent none of the identity headers.
pub const NO_IDENTITY_NOTE: &str = "not behind mcp-authd, or the proxy does not forward identity headers";

/// Which group a header belongs to in `printHeader`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Added by proxies on the way: `X-Forwarded-*`, `X-Real-IP`, `Forwarded` (RFC 7239), `Via`.
    Forwarded,
    /// Credentials and the identity mcp-authd asserted.
    Auth,
    /// Everything else.
    Other,
}

/// The group of a lower-case header name.
pub fn group_of(name: &str) -> Group {
    if name.starts_with("x-forwarded-") || matches!(name, "x-real-ip" | "forwarded" | "via") {
        Group::Forwarded
    } else if name.starts_with("x-user-")
        || matches!(name, "authorization" | "proxy-authorization" | "x-client-id" | "x-scope" | "cookie")
    {
        Group::Auth
    } else {
        Group::Other
    }
}

/// True when a name (header or environment variable) looks like it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    const MARKERS: [&str; 10] =
        ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASS", "CREDENTIAL", "AUTH", "PRIVATE", "COOKIE", "SESSION"];
    let upper = name.to_ascii_uppercase();
    MARKERS.iter().any(|m| upper.contains(m))
}

/// `Bearer abc` -> `Bearer <redacted, 3 chars>`; any other scheme likewise; a bare value too.
pub fn redact_credentials(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, rest)) if !scheme.is_empty() => {
            format!("{scheme} <redacted, {} chars>", rest.trim().chars().count())
        }
        _ => format!("<redacted, {} chars>", value.chars().count()),
    }
}

/// `a=1; b=2` -> `a=<redacted>; b=<redacted>`: cookie names stay, values go.
pub fn redact_cookie(value: &str) -> String {
    value
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| match c.split_once('=') {
            Some((name, _)) => format!("{name}=<redacted>"),
            None => "<redacted>".to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The value of one header as `printHeader` shows it.
fn shown_value(name: &str, raw: &str) -> String {
    // SECURITY: credentials never leave the server in a tool result. The session id is the
    // exception: the caller already holds it, and sessionInfo shows it anyway.
    match name {
        "authorization" | "proxy-authorization" => redact_credentials(raw),
        "cookie" => redact_cookie(raw),
        "mcp-session-id" => raw.to_string(),
        _ if looks_secret(name) => format!("<redacted, {} chars>", raw.chars().count()),
        _ => raw.to_string(),
    }
}

fn value_text(value: &http::HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// `printHeader`: the headers grouped as forwarded / auth / other, credentials redacted.
/// A header sent more than once appears as an array of its values.
pub fn grouped(headers: &HeaderMap) -> Value {
    let mut groups: [BTreeMap<String, Value>; 3] = Default::default();
    for name in headers.keys() {
        let key = name.as_str();
        let values: Vec<String> = headers.get_all(name).iter().map(|v| shown_value(key, &value_text(v))).collect();
        let value = match values.as_slice() {
            [one] => Value::String(one.clone()),
            _ => json!(values),
        };
        let slot = match group_of(key) {
            Group::Forwarded => 0,
            Group::Auth => 1,
            Group::Other => 2,
        };
        groups[slot].insert(key.to_string(), value);
    }
    let [forwarded, auth, other] = groups;
    json!({
        "forwarded": forwarded,
        "auth": auth,
        "other": other,
        "count": headers.len(),
    })
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(value_text)
}

/// `authContext`: the identity the gateway asserted, and a note when there is none.
pub fn auth_context(headers: &HeaderMap) -> Value {
    let get = |n: &str| header(headers, n);
    let present: Vec<&str> = IDENTITY_HEADERS.iter().copied().filter(|n| headers.contains_key(*n)).collect();
    let missing: Vec<&str> = IDENTITY_HEADERS.iter().copied().filter(|n| !headers.contains_key(*n)).collect();
    let scopes: Vec<String> =
        get("x-scope").map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    let note = if present.is_empty() {
        NO_IDENTITY_NOTE.to_string()
    } else if missing.is_empty() {
        "identity asserted by the gateway (these headers are trusted only because the server is \
         reachable through the proxy alone)"
            .to_string()
    } else {
        format!("partial identity: the proxy did not forward {}", missing.join(", "))
    };
    json!({
        "authenticated": !present.is_empty(),
        "user_id": get("x-user-id"),
        "user_name": get("x-user-name"),
        "user_email": get("x-user-email"),
        "client_id": get("x-client-id"),
        "scope": get("x-scope"),
        "scopes": scopes,
        "note": note,
    })
}

/// The `host[:port]` of an origin such as `https://app.example.com:8443`.
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// `corsAnalysis`: the Origin and `Access-Control-Request-*` headers and what they mean.
pub fn cors_analysis(method: &http::Method, headers: &HeaderMap) -> Value {
    let origin = header(headers, "origin");
    let host = header(headers, "x-forwarded-host").or_else(|| header(headers, "host"));
    let request_method = header(headers, "access-control-request-method");
    let request_headers: Vec<String> = header(headers, "access-control-request-headers")
        .map(|v| v.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
        .unwrap_or_default();
    let mut findings = Vec::new();
    let kind = match origin.as_deref() {
        None => {
            findings.push(
                "no Origin header: not a cross-origin browser request (MCP clients outside a browser \
                 do not send Origin)"
                    .to_string(),
            );
            "no-origin"
        }
        Some("null") => {
            findings.push(
                "Origin: null is an opaque origin (a file:// page, a sandboxed iframe or a cross-origin \
                 redirect); treat it as untrusted"
                    .to_string(),
            );
            "opaque-origin"
        }
        Some(o)
            if origin_authority(o)
                .is_some_and(|a| Some(a.to_ascii_lowercase()) == host.as_ref().map(|h| h.to_ascii_lowercase())) =>
        {
            findings.push(format!("same origin: {o} matches the Host the request was sent to"));
            "same-origin"
        }
        Some(o) => {
            findings.push(format!(
                "cross-origin: a page at {o} is calling this server; a browser exposes the response only \
                 if it carries a matching Access-Control-Allow-Origin"
            ));
            "cross-origin"
        }
    };
    if let Some(m) = &request_method {
        findings.push(format!(
            "Access-Control-Request-Method: {m} marks a CORS preflight; browsers send it on OPTIONS, so \
             on a {method} it was copied by a client or proxy"
        ));
    }
    let non_safelisted: Vec<&String> = request_headers
        .iter()
        .filter(|h| !matches!(h.as_str(), "accept" | "accept-language" | "content-language" | "range"))
        .collect();
    if !non_safelisted.is_empty() {
        findings.push(format!(
            "the preflight asks to send non-safelisted headers ({}); the answer must list them in \
             Access-Control-Allow-Headers",
            non_safelisted.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    findings.push(
        "mcp-echo adds no Access-Control-Allow-* headers itself: answer CORS at the proxy if browsers \
         must call it; DNS rebinding is blocked by the Host allow list (--allowed-host)"
            .to_string(),
    );
    json!({
        "request_method": method.as_str(),
        "origin": origin,
        "host": host,
        "kind": kind,
        "access_control_request_method": request_method,
        "access_control_request_headers": request_headers,
        "sec_fetch_site": header(headers, "sec-fetch-site"),
        "sec_fetch_mode": header(headers, "sec-fetch-mode"),
        "findings": findings,
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method};

    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn groups_and_redacts() {
        let h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("via", "1.1 traefik"),
            ("authorization", "Bearer abc.def.ghi"),
            ("cookie", "sid=s3cret; theme=dark"),
            ("x-user-id", "42"),
            ("x-api-key", "k3y"),
            ("accept", "application/json"),
            ("accept", "text/event-stream"),
            ("mcp-session-id", "abc"),
        ]);
        let g = grouped(&h);
        assert_eq!(g["forwarded"]["x-forwarded-for"], "10.0.0.1");
        assert_eq!(g["forwarded"]["via"], "1.1 traefik");
        assert_eq!(g["auth"]["authorization"], "Bearer <redacted, 11 chars>");
        assert_eq!(g["auth"]["cookie"], "sid=<redacted>; theme=<redacted>");
        assert_eq!(g["auth"]["x-user-id"], "42");
        assert_eq!(g["other"]["x-api-key"], "<redacted, 3 chars>");
        assert_eq!(g["other"]["accept"], json!(["application/json", "text/event-stream"]));
        assert_eq!(g["other"]["mcp-session-id"], "abc");
        let text = g.to_string();
        assert!(!text.contains("abc.def.ghi") && !text.contains("s3cret") && !text.contains("k3y"));
    }

    #[test]
    fn redacts_any_scheme() {
        assert_eq!(redact_credentials("Basic dXNlcjpwdw=="), "Basic <redacted, 12 chars>");
        assert_eq!(redact_credentials("opaque"), "<redacted, 6 chars>");
    }

    #[test]
    fn secret_names() {
        for n in ["GITHUB_TOKEN", "db_password", "AWS_SECRET_ACCESS_KEY", "x-auth", "SESSION_ID", "PRIVATE_PEM"] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["PATH", "HOME", "MCP_PORT", "RUST_LOG"] {
            assert!(!looks_secret(n), "{n}");
        }
    }

    #[test]
    fn auth_context_full_partial_none() {
        let none = auth_context(&HeaderMap::new());
        assert_eq!(none["authenticated"], false);
        assert_eq!(none["note"], NO_IDENTITY_NOTE);
        let partial = auth_context(&map(&[("x-user-id", "7"), ("x-scope", "mcp:read mcp:write")]));
        assert_eq!(partial["user_id"], "7");
        assert_eq!(partial["scopes"], json!(["mcp:read", "mcp:write"]));
        assert!(partial["note"].as_str().unwrap().contains("x-user-name"));
    }

    #[test]
    fn cors_kinds() {
        let post = Method::POST;
        assert_eq!(cors_analysis(&post, &HeaderMap::new())["kind"], "no-origin");
        let same = map(&[("origin", "http://localhost:3000"), ("host", "localhost:3000")]);
        assert_eq!(cors_analysis(&post, &same)["kind"], "same-origin");
        let cross = map(&[
            ("origin", "https://evil.example"),
            ("host", "localhost:3000"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "Content-Type, Authorization"),
        ]);
        let c = cors_analysis(&post, &cross);
        assert_eq!(c["kind"], "cross-origin");
        assert_eq!(c["access_control_request_headers"], json!(["content-type", "authorization"]));
        assert!(c["findings"].to_string().contains("preflight"));
        assert_eq!(cors_analysis(&post, &map(&[("origin", "null")]))["kind"], "opaque-origin");
    }
}
