//! What a proxy says the original request was (X-Forwarded-*, X-Original-URL, Envoy's path):
//! the canonical form /verify judges. Input: method, scheme, host and URI, one per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::verify::http::{normalize, parse_canonical};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let (method, scheme, host, uri) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let req = normalize(method, scheme, host, uri);
    // The fast path for input already canonical agrees with the URL parser, always.
    let scheme_in = if scheme.eq_ignore_ascii_case("http") { "http" } else { "https" };
    let uri_in = if uri.starts_with('/') { uri } else { "/" };
    assert_eq!(req, parse_canonical(method, scheme_in, host, uri_in), "{method:?} {scheme:?} {host:?} {uri:?}");
    assert!(req.scheme == "http" || req.scheme == "https");
    assert!(req.uri.starts_with('/'), "{req:?}");
    assert!(!req.host.is_empty() && !req.host.contains(['/', '?', '#', '@', ' ']), "{req:?}");
    // Canonical means stable: judging the canonical form again changes nothing.
    let again = normalize(&req.method, &req.scheme, &req.host, &req.uri);
    assert_eq!((&again.host, &again.uri), (&req.host, &req.uri), "{req:?}");
    // A path with dot segments or encoded slashes is judged as nothing (the root of localhost).
    let path = req.path();
    assert!(!path.split('/').any(|s| s == ".." || s == "."), "{req:?}");
    let with = req.with_headers(|name| match name {
        "mcp-name" => Some(host),
        "mcp-method" => Some(method),
        _ => None,
    });
    let _ = with.mcp_name;
});
