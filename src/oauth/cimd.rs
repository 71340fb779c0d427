//! OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; the MCP
//! authorization spec 2025-11-25, "Client ID Metadata Documents"): a `client_id` that is an https
//! URL names a JSON document, served at that URL, that describes the client. No registration
//! happens: the document is fetched when the client is first seen (through the SSRF guard of
//! [`crate::fetch`]), validated with the same rules as an RFC 7591 registration, and cached as
//! its `Cache-Control` says, within the configured bounds.
//!
//! Such a client is always public (draft §4.1: there is no way to share a secret with it): it
//! uses `token_endpoint_auth_method: none` and PKCE, and presents its `client_id` at the token
//! endpoint. It is never stored and cannot be managed with RFC 7592.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;
use serde_json::Value;
use url::Url;

use super::client::{ClientMetadata, RegistrationRequest};
use crate::config::{CimdConfig, Config};
use crate::fetch::guard::{DomainList, Policy};
use crate::fetch::{FetchError, Fetcher};
use crate::store::{ClientRecord, now};

/// Longest `client_id` URL accepted.
const MAX_URL_LEN: usize = 2000;

/// Why a metadata document client cannot be used; the text is shown to the user (the
/// authorization error page) or the client (`invalid_client`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum DocumentError {
    /// The `client_id` URL breaks the draft's rules (§3).
    #[error("the client_id {0}")]
    ClientId(String),
    /// The document could not be fetched.
    #[error("the client's metadata document could not be fetched: {0}")]
    Fetch(#[from] FetchError),
    /// Not a JSON object.
    #[error("the client's metadata document is not a JSON object: {0}")]
    NotJson(String),
    /// Draft §4.1: the document's `client_id` must be its URL, character for character.
    #[error("the client's metadata document names another client_id ({0}); it must be the document's own URL")]
    Mismatch(String),
    /// Draft §4.1: a shared secret cannot exist for such a client.
    #[error("the client's metadata document must not contain {0} (a metadata document client has no secret)")]
    Secret(&'static str),
    /// Draft §4.1 and what this server supports.
    #[error("the client's metadata document asks for token_endpoint_auth_method {0:?}; {why}", why = auth_method_hint(.0))]
    AuthMethod(String),
    /// The metadata breaks the registration rules (redirect URIs, grants, …).
    #[error("the client's metadata document is invalid: {0}")]
    Metadata(String),
}

fn auth_method_hint(method: &str) -> &'static str {
    match method {
        "private_key_jwt" => "this server does not support private_key_jwt; use \"none\" (a public client with PKCE)",
        "client_secret_basic" | "client_secret_post" | "client_secret_jwt" => {
            "a shared secret is impossible with a metadata document; use \"none\" (a public client with PKCE)"
        }
        _ => "the only supported method for metadata document clients is \"none\"",
    }
}

/// Whether `client_id` is to be resolved as a metadata document (an https URL).
pub fn is_document_client_id(client_id: &str) -> bool {
    // `get`, not indexing: byte 8 may fall inside a character (found by tests/hostile_input.rs).
    client_id.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// Draft §3: an https URL with a path, without fragment, user information or dot segments.
/// It must also be in the normal form a URL parser gives it, because the document's `client_id`
/// is compared with it as a string and the token's `client_id` is this very string.
pub fn parse_client_id(client_id: &str) -> Result<Url, DocumentError> {
    let bad = |why: &str| DocumentError::ClientId(why.to_owned());
    if client_id.len() > MAX_URL_LEN {
        return Err(bad(&format!("is longer than {MAX_URL_LEN} characters")));
    }
    let url = Url::parse(client_id).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if url.scheme() != "https" {
        return Err(bad("must be an https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain user information"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not contain a fragment"));
    }
    if url.path() == "/" {
        return Err(bad("must contain a path (e.g. https://app.example.com/oauth/client.json)"));
    }
    let dotted = url.path_segments().into_iter().flatten().any(|s| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    });
    if dotted || url.as_str() != client_id {
        // SECURITY: `/a/../b`, `HTTPS://Host`, `:443` and the like would name the same document
        // under several client ids.
        return Err(bad(&format!("must be written in normal form, without dot segments (here: {})", url.as_str())));
    }
    Ok(url)
}

/// Validates a fetched document for the client id `url` (draft §4.1) into client metadata: the
/// registration rules of [`RegistrationRequest::validate`] apply, as a public client.
pub fn validate_document(url: &str, body: &[u8], config: &Config) -> Result<ClientMetadata, DocumentError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| DocumentError::NotJson(e.to_string()))?;
    let Value::Object(mut doc) = value else {
        return Err(DocumentError::NotJson("the top level is not an object".into()));
    };
    match doc.get("client_id") {
        Some(Value::String(id)) if id == url => {}
        Some(Value::String(id)) => {
            // Shown on a page and in an error body: bounded (the page escapes it).
            let shown: String = id.chars().take(120).collect();
            let more = if shown.len() < id.len() { "…" } else { "" };
            return Err(DocumentError::Mismatch(format!("{shown:?}{more}")));
        }
        Some(_) => return Err(DocumentError::Mismatch("not a string".into())),
        None => return Err(DocumentError::Mismatch("none".into())),
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if doc.contains_key(secret) {
            return Err(DocumentError::Secret(secret));
        }
    }
    match doc.get("token_endpoint_auth_method") {
        None => {
            // RFC 7591's default (client_secret_basic) cannot apply to a client without a secret.
            doc.insert("token_endpoint_auth_method".into(), Value::String("none".into()));
        }
        Some(Value::String(m)) if m == "none" => {}
        Some(Value::String(m)) => return Err(DocumentError::AuthMethod(m.clone())),
        Some(other) => return Err(DocumentError::AuthMethod(other.to_string())),
    }
    let request: RegistrationRequest =
        serde_json::from_value(Value::Object(doc)).map_err(|e| DocumentError::Metadata(e.to_string()))?;
    request.validate(config).map_err(|e| DocumentError::Metadata(e.description()))
}

/// How long a document may be kept, from its `Cache-Control` (RFC 9111 §5.2.2): not at all with
/// `no-store` or `no-cache`; `max-age` clamped to `[min, max]`; `min` without `max-age`.
pub fn cache_ttl(cache_control: Option<&str>, min: Duration, max: Duration) -> Option<Duration> {
    let mut ttl = min;
    for directive in cache_control.unwrap_or("").split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        let (name, value) = directive.split_once('=').unwrap_or((&directive, ""));
        match name.trim() {
            "no-store" | "no-cache" => return None,
            "max-age" => {
                let secs = value.trim().trim_matches('"').parse::<u64>().unwrap_or(0);
                ttl = Duration::from_secs(secs).clamp(min, max);
            }
            _ => {}
        }
    }
    (!ttl.is_zero()).then_some(ttl)
}

/// A cached client and how long it is kept.
struct Cached {
    client: ClientRecord,
    ttl: Duration,
}

/// Per-entry lifetimes for the cache.
struct PerEntry;

impl Expiry<String, Arc<Cached>> for PerEntry {
    fn expire_after_create(&self, _: &String, value: &Arc<Cached>, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// How long a failed fetch or a refused document is remembered (at most `cache_min_ttl`): a
/// burst of requests naming a broken or hostile URL costs one fetch, not one each.
const FAILURE_TTL: Duration = Duration::from_secs(10);

/// Resolves metadata document clients: fetch, validate, cache.
pub struct Documents {
    fetcher: Fetcher,
    cache: Cache<String, Arc<Cached>>,
    failures: Option<Cache<String, DocumentError>>,
    /// One lock per URL being fetched, so that concurrent requests for a document not yet
    /// cached wait for one fetch instead of each making their own.
    in_flight: Cache<String, Arc<tokio::sync::Mutex<()>>>,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl Documents {
    /// Builds the fetcher and the caches from `[cimd]`.
    pub fn new(c: &CimdConfig) -> anyhow::Result<Self> {
        let allowed = DomainList::new(&c.allowed_domains).map_err(anyhow::Error::msg)?;
        let policy = Policy { allowed, private_ok: c.allow_private_addresses };
        let timeout = Duration::from_secs(c.fetch_timeout_secs);
        let fetcher = Fetcher::new(policy, c.extra_ca_file.as_deref(), timeout, c.max_document_bytes)?;
        let min_ttl = Duration::from_secs(c.cache_min_ttl);
        let failure_ttl = FAILURE_TTL.min(min_ttl);
        Ok(Self {
            fetcher,
            cache: Cache::builder().max_capacity(c.cache_capacity).expire_after(PerEntry).build(),
            failures: (!failure_ttl.is_zero())
                .then(|| Cache::builder().max_capacity(c.cache_capacity).time_to_live(failure_ttl).build()),
            in_flight: Cache::builder().max_capacity(c.cache_capacity).time_to_idle(timeout * 2).build(),
            min_ttl,
            max_ttl: Duration::from_secs(c.cache_max_ttl),
        })
    }

    fn cached(&self, client_id: &str) -> Option<Result<ClientRecord, DocumentError>> {
        if let Some(hit) = self.cache.get(client_id) {
            return Some(Ok(hit.client.clone()));
        }
        self.failures.as_ref().and_then(|f| f.get(client_id)).map(Err)
    }

    /// The client `client_id` (an https URL) stands for: from the cache, or fetched now.
    pub async fn client(&self, client_id: &str, config: &Config) -> Result<ClientRecord, DocumentError> {
        if let Some(answer) = self.cached(client_id) {
            return answer;
        }
        let url = parse_client_id(client_id)?;
        let lock = self.in_flight.get_with(client_id.to_owned(), || Arc::new(tokio::sync::Mutex::new(())));
        let _fetching = lock.lock().await;
        // Whoever held the lock before may have fetched it.
        if let Some(answer) = self.cached(client_id) {
            return answer;
        }
        let answer = self.fetch(&url, client_id, config).await;
        if let (Err(e), Some(failures)) = (&answer, &self.failures) {
            failures.insert(client_id.to_owned(), e.clone());
        }
        answer
    }

    async fn fetch(&self, url: &Url, client_id: &str, config: &Config) -> Result<ClientRecord, DocumentError> {
        let fetched = self.fetcher.get(url).await.inspect_err(|e| {
            tracing::info!(audit = "cimd_fetch_failed", auth = "failure", client_id, reason = %e, "client metadata document not fetched");
        })?;
        let metadata = validate_document(client_id, &fetched.body, config).inspect_err(|e| {
            tracing::info!(audit = "cimd_invalid", auth = "failure", client_id, reason = %e, "client metadata document refused");
        })?;
        let client = ClientRecord {
            client_id: client_id.to_owned(),
            secret_hash: None,
            // Never matched: a document client is not stored, so RFC 7592 never finds it.
            registration_token_hash: String::new(),
            client_id_issued_at: now(),
            metadata,
        };
        let ttl = cache_ttl(fetched.cache_control.as_deref(), self.min_ttl, self.max_ttl);
        tracing::info!(
            audit = "cimd_fetched",
            client_id,
            cache_secs = ttl.map_or(0, |t| t.as_secs()),
            "client metadata document fetched"
        );
        if let Some(ttl) = ttl {
            self.cache.insert(client_id.to_owned(), Arc::new(Cached { client: client.clone(), ttl }));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "https://app.example.com/oauth/client.json";

    fn doc(extra: Value) -> Vec<u8> {
        let mut d = serde_json::json!({
            "client_id": ID,
            "client_name": "Example MCP client",
            "redirect_uris": ["http://127.0.0.1:3000/callback", "https://app.example.com/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                d.as_object_mut().unwrap().remove(k);
            } else {
                d[k] = v.clone();
            }
        }
        serde_json::to_vec(&d).unwrap()
    }

    fn check(extra: Value) -> Result<ClientMetadata, DocumentError> {
        validate_document(ID, &doc(extra), &Config::default())
    }

    #[test]
    fn a_good_document_is_a_public_client() {
        let m = check(serde_json::json!({})).unwrap();
        assert_eq!(m.token_endpoint_auth_method, super::super::client::AuthMethod::None);
        assert_eq!(m.redirect_uris.len(), 2);
        assert_eq!(m.client_name.as_deref(), Some("Example MCP client"));
        // Without the method, still public (RFC 7591's default needs a secret).
        let m = check(serde_json::json!({"token_endpoint_auth_method": null})).unwrap();
        assert!(!m.token_endpoint_auth_method.is_confidential());
    }

    #[test]
    fn documents_are_refused_with_a_reason() {
        let cases: [(Value, &str); 9] = [
            (serde_json::json!({"client_id": "https://app.example.com/other.json"}), "names another client_id"),
            (serde_json::json!({"client_id": "https://APP.example.com/oauth/client.json"}), "names another client_id"),
            (serde_json::json!({"client_id": null}), "names another client_id (none)"),
            (serde_json::json!({"client_secret": "s"}), "must not contain client_secret"),
            (serde_json::json!({"token_endpoint_auth_method": "private_key_jwt"}), "does not support private_key_jwt"),
            (serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"}), "shared secret is impossible"),
            (
                serde_json::json!({"redirect_uris": ["http://evil.example.com/cb"]}),
                "http redirect URIs are allowed only",
            ),
            (serde_json::json!({"redirect_uris": null}), "redirect_uris is required"),
            (serde_json::json!({"grant_types": ["client_credentials"]}), "not supported"),
        ];
        for (extra, want) in cases {
            let err = check(extra.clone()).expect_err(&extra.to_string()).to_string();
            assert!(err.contains(want), "{extra}: {err}");
        }
        assert!(matches!(validate_document(ID, b"<html>", &Config::default()), Err(DocumentError::NotJson(_))));
        let long = check(serde_json::json!({"client_id": "x".repeat(4000)})).unwrap_err().to_string();
        assert!(long.len() < 300 && long.contains("xxx\"…"), "{long}");
        assert!(matches!(validate_document(ID, b"[1]", &Config::default()), Err(DocumentError::NotJson(_))));
    }

    #[test]
    fn client_id_urls() {
        assert!(parse_client_id(ID).is_ok());
        assert!(parse_client_id("https://app.example.com:8443/c.json?v=1").is_ok());
        for bad in [
            "http://app.example.com/c.json",
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/c.json#x",
            "https://u:p@app.example.com/c.json",
            "https://app.example.com/a/../c.json",
            "https://app.example.com/a/%2E%2e/c.json",
            "https://app.example.com/./c.json",
            "https://APP.example.com/c.json",
            "https://app.example.com:443/c.json",
            "https://app.example.com/c d.json",
            "https://",
        ] {
            assert!(parse_client_id(bad).is_err(), "{bad}");
        }
        assert!(is_document_client_id("https://a.example/x"));
        assert!(is_document_client_id("HTTPS://a.example/x"));
        assert!(!is_document_client_id("3f9a0c"));
        assert!(!is_document_client_id("http://a.example/x"));
        assert!(!is_document_client_id("ééééé"));
        assert!(!is_document_client_id("https:/"));
    }

    #[test]
    fn cache_lifetimes_follow_cache_control_within_bounds() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let secs = |h: Option<&str>| cache_ttl(h, min, max).map(|d| d.as_secs());
        assert_eq!(secs(None), Some(60));
        assert_eq!(secs(Some("public, max-age=300")), Some(300));
        assert_eq!(secs(Some("max-age=5")), Some(60));
        assert_eq!(secs(Some("max-age=86400")), Some(3600));
        assert_eq!(secs(Some("Max-Age=\"120\"")), Some(120));
        assert_eq!(secs(Some("max-age=300, no-store")), None);
        assert_eq!(secs(Some("no-cache")), None);
        assert_eq!(secs(Some("max-age=junk")), Some(60));
        assert_eq!(cache_ttl(Some("max-age=0"), Duration::ZERO, max), None);
    }
}
