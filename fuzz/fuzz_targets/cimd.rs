//! Client ID Metadata Documents: the `client_id` URL rules, a fetched document's validation, and
//! the cache lifetime read from `Cache-Control`. Input: the client id, a newline, the
//! Cache-Control value, a newline, the document.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_authd::config::Config;
use mcp_authd::oauth::client::AuthMethod;
use mcp_authd::oauth::{cimd, redirect};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(id), Some(cache), Some(doc)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(id) = std::str::from_utf8(id) else { return };
    if let Ok(url) = cimd::parse_client_id(id) {
        // Accepted ids are https, already in normal form (compared as strings later).
        assert_eq!(url.as_str(), id);
        assert_eq!(url.scheme(), "https");
        assert!(url.fragment().is_none() && url.username().is_empty() && url.password().is_none());
    }
    let config = Config::default();
    if let Ok(meta) = cimd::validate_document(id, doc, &config) {
        // A document client is public and its redirect URIs obey the registration rules.
        assert_eq!(meta.token_endpoint_auth_method, AuthMethod::None);
        for uri in meta.redirect_uris.iter().filter(|u| u.as_str() != redirect::OOB) {
            assert!(redirect::validate_registered(uri).is_ok(), "{uri:?}");
        }
    }
    let (min, max) = (Duration::from_secs(60), Duration::from_secs(86_400));
    if let Ok(cache) = std::str::from_utf8(cache)
        && let Some(ttl) = cimd::cache_ttl(Some(cache), min, max)
    {
        assert!(ttl >= min && ttl <= max, "{ttl:?} for {cache:?}");
    }
});
