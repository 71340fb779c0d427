//! The decision point: is this request to a protected MCP server allowed?
//!
//! Used by `/verify` (ForwardAuth, see [`http`]) for every proxied MCP request, so the steady
//! state does no I/O: verified tokens are cached in memory (bounded, never past `exp`) and
//! revocations are held in memory, kept current by the store's revocation feed (Redis pub/sub)
//! or applied directly when this process revokes. If the feed is down, decisions that depend on
//! it fail closed (503). Order of checks, per shared/DESIGN.md: preflight and the resource's own
//! metadata pass; then token (signature, `exp`, `iss`, `typ`), revocation, audience (RFC 8707),
//! and the resource's policy (users, scopes).

pub mod answer;
pub mod grpc;
pub mod http;
pub mod resource;
pub mod revocation;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use moka::sync::Cache;

use crate::config::Config;
use crate::jwt::{AccessClaims, Keys};
use crate::oauth::scope;
use resource::{ProtectedResource, Resources};
use revocation::Revocations;

/// The original request as the proxy described it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginalRequest {
    /// HTTP method.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host, with port when not the default.
    pub host: String,
    /// Path and query.
    pub uri: String,
    /// `Mcp-Method` (2026-07-28 transport): the JSON-RPC method of a POST.
    pub mcp_method: Option<String>,
    /// `Mcp-Name`: the tool, prompt or resource a `tools/call`, `prompts/get` or
    /// `resources/read` addresses.
    pub mcp_name: Option<String>,
    /// A browser navigating (`GET`/`HEAD` accepting `text/html`, no token): may be sent to log
    /// in instead of getting a 401 (`verify.login_url`).
    pub browser: bool,
}

impl OriginalRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split(['?', '#']).next().unwrap_or("/")
    }
    /// `scheme://host`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
    /// Fills the MCP headers and the browser flag from the original request's headers
    /// (`header` looks one up by lower-case name).
    pub fn with_headers<'a>(mut self, header: impl Fn(&str) -> Option<&'a str>) -> Self {
        let value = |name| header(name).map(str::trim).filter(|v| !v.is_empty());
        self.mcp_method = value("mcp-method").map(str::to_owned);
        if self.mcp_method.is_none()
            && self.method == "POST"
            && value("mcp-protocol-version").is_some_and(labels_requests)
        {
            // SEP-2243: a server on 2026-07-28 or later refuses a request without Mcp-Method,
            // except the `initialize` handshake (sent before the headers are negotiated).
            self.mcp_method = Some("initialize".to_owned());
        }
        match value("mcp-name").map(decode_mcp_name) {
            Some(Some(name)) => self.mcp_name = Some(name),
            // SECURITY: a name we cannot read is judged as a request that does not say what it
            // is (it needs every rule's scope), not as a name no rule mentions.
            Some(None) => self.mcp_method = None,
            None => {}
        }
        self.browser = matches!(self.method.as_str(), "GET" | "HEAD")
            && header("authorization").is_none()
            && header("accept").is_some_and(|a| a.contains("text/html"));
        self
    }
    /// The whole original URL.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.uri)
    }
}

/// A verified token, as the cache keeps it (per token: what the decision needs, and the identity
/// headers it yields, built once; nothing twice, so 10,000 cached tokens stay small).
#[derive(Debug)]
pub struct Verified {
    /// `exp`.
    pub exp: i64,
    /// `iat`.
    pub iat: i64,
    /// `aud`: the resource (RFC 8707).
    pub aud: Box<str>,
    /// `jti`.
    pub jti: Box<str>,
    /// `sid`: the grant family.
    pub sid: Box<str>,
    /// `groups`.
    pub groups: Box<[Box<str>]>,
    /// Values of the identity headers back to back, in the order user id (`sub`), user name,
    /// user e-mail, client id, scope (the names are configured, see [`answer::Answers`]); value
    /// `i` ends at `ends[i]`. They are the source of those claims for the decision too. One
    /// buffer and five offsets, not five header values: 10,000 cached tokens, 1.7 MiB less.
    values: actix_web::web::Bytes,
    ends: [u16; 5],
    /// Whether the token named the user (else the name header repeats `sub`).
    has_name: bool,
    /// Whether it was judged against a current revocation set (see `verify.outage_grace`).
    judged: AtomicBool,
}

impl Verified {
    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { usize::from(self.ends[i - 1]) };
        start..usize::from(self.ends[i])
    }
    fn header(&self, i: usize) -> &str {
        // The values were built from UTF-8 strings (non-ASCII bytes are allowed in headers).
        std::str::from_utf8(&self.values[self.range(i)]).unwrap_or("")
    }
    /// Identity header value `i` (see `values`), sharing the buffer.
    pub fn header_value(&self, i: usize) -> HeaderValue {
        // Checked when built: every value can be a header value.
        HeaderValue::from_maybe_shared(self.values.slice(self.range(i)))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
    /// `sub`.
    pub fn sub(&self) -> &str {
        self.header(0)
    }
    /// `preferred_username`, if the token had one.
    pub fn name(&self) -> Option<&str> {
        self.has_name.then(|| self.header(1))
    }
    /// `email`, if the token had one.
    pub fn email(&self) -> Option<&str> {
        Some(self.header(2)).filter(|e| !e.is_empty())
    }
    /// `client_id`.
    pub fn client_id(&self) -> &str {
        self.header(3)
    }
    /// `scope`.
    pub fn scope(&self) -> &str {
        self.header(4)
    }
    /// What the revocation set looks it up by.
    pub fn ids(&self) -> revocation::TokenIds<'_> {
        revocation::TokenIds {
            jti: &self.jti,
            sid: &self.sid,
            client_id: self.client_id(),
            sub: self.sub(),
            iat: self.iat,
        }
    }

    /// From verified claims.
    pub fn new(claims: AccessClaims) -> Self {
        // The five values share one buffer (one allocation per cached token, not five).
        let parts = [
            claims.sub.as_str(),
            claims.preferred_username.as_deref().unwrap_or(&claims.sub),
            claims.email.as_deref().unwrap_or(""),
            claims.client_id.as_str(),
            claims.scope.as_str(),
        ];
        // SECURITY: a value that cannot be a header (control characters) becomes empty, and
        // every decision below reads the values as they will be sent. (So does a token whose
        // values would not fit in 64 KiB, which no header would carry.)
        let parts = parts.map(|p| if HeaderValue::from_str(p).is_ok() { p } else { "" });
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let parts = if total <= usize::from(u16::MAX) { parts } else { [""; 5] };
        let mut ends = [0u16; 5];
        let mut at = 0usize;
        for (i, p) in parts.iter().enumerate() {
            at += p.len();
            ends[i] = u16::try_from(at).unwrap_or(u16::MAX);
        }
        let values = actix_web::web::Bytes::from(parts.concat());
        Self {
            exp: claims.exp,
            iat: claims.iat,
            aud: claims.aud.into(),
            jti: claims.jti.into(),
            sid: claims.sid.into(),
            groups: claims.groups.into_iter().map(Into::into).collect(),
            values,
            ends,
            has_name: claims.preferred_username.is_some(),
            judged: AtomicBool::new(false),
        }
    }
}

/// What /verify answers.
#[derive(Debug)]
pub enum Decision {
    /// Let it through with the identity (`None` for preflight / metadata passes).
    Allow(Option<Arc<Verified>>),
    /// 401: no usable token. `error` is set when a token was presented.
    Unauthorized {
        /// The resource the client should get a token for.
        resource: Arc<ProtectedResource>,
        /// RFC 6750 error description when a token was sent.
        error: Option<&'static str>,
        /// The same token was refused for the same reason lately (and logged then).
        repeated: bool,
    },
    /// 403: valid token, not allowed.
    Forbidden {
        /// The resource.
        resource: Arc<ProtectedResource>,
        /// Scopes that would help (step-up), if a scope is what is missing.
        missing_scope: Option<String>,
        /// Why.
        description: &'static str,
    },
    /// 403: resources are configured and none covers this URL.
    NotProtected,
    /// 503: the decision depends on state this replica cannot see right now.
    Unavailable,
}

/// Whether an `MCP-Protocol-Version` is one whose servers require `Mcp-Method` (2026-07-28
/// and later; versions are `YYYY-MM-DD` dates).
fn labels_requests(version: &str) -> bool {
    let date = version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    date && version >= "2026-07-28"
}

/// An `Mcp-Name` value: names that are not plain ASCII come Base64-encoded between `=?base64?`
/// and `?=` (SEP-2243), and must be compared decoded, as the MCP server does. `None` when the
/// encoding is broken.
fn decode_mcp_name(value: &str) -> Option<String> {
    use base64::Engine;
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(inner) => {
            base64::engine::general_purpose::STANDARD.decode(inner).ok().and_then(|b| String::from_utf8(b).ok())
        }
        None => Some(value.to_owned()),
    }
}

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750 §2.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// One line per refusal (`auth=failure`); a missing token is routine and only at debug level,
/// as are repeats of a refused token within the minute its refusal is remembered.
pub fn log_decision(req: &OriginalRequest, decision: &Decision) {
    let why = match decision {
        Decision::Allow(_) => return,
        Decision::Unauthorized { error: None, .. } => {
            tracing::debug!(host = %req.host, "verify: no token");
            return;
        }
        // A client retrying a refused token: one line a minute, not one per request (a loop
        // of retries would otherwise cost a log write each and flood the log).
        Decision::Unauthorized { error: Some(e), repeated: true, .. } => {
            tracing::debug!(host = %req.host, decision = e, "verify: refused again");
            return;
        }
        Decision::Unauthorized { error: Some(e), .. } => *e,
        Decision::Forbidden { description, .. } => description,
        Decision::NotProtected => "not a protected resource",
        Decision::Unavailable => "revocations unavailable",
    };
    tracing::info!(
        audit = "verify_denied", auth = "failure", host = %req.host, path = %req.path(),
        mcp_method = req.mcp_method.as_deref().unwrap_or(""), decision = why, "request denied"
    );
}

/// Why a token was refused, and whether it was refused before (remembered in `rejected`).
struct Refusal {
    why: &'static str,
    repeated: bool,
}

/// Cache entries expire exactly at the token's `exp`.
struct UntilExp;

/// A cache key: the SHA-256 of the token. A token is ~800 bytes; its digest is 32, and a
/// collision-resistant digest is what makes keying by it as safe as keying by the token.
type TokenKey = [u8; 32];

fn token_key(token: &str) -> TokenKey {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref().try_into().unwrap_or([0; 32])
}

impl moka::Expiry<TokenKey, Arc<Verified>> for UntilExp {
    fn expire_after_create(&self, _key: &TokenKey, value: &Arc<Verified>, _now: Instant) -> Option<Duration> {
        let left = value.exp - crate::store::now();
        Some(Duration::from_secs(left.max(0) as u64))
    }
}

/// The decision point: keys, cache, revocations and resources.
pub struct Verifier {
    keys: Arc<Keys>,
    // Keys are digests of tokens we signed: a fast keyed hash of 32 bytes is enough.
    cache: Cache<TokenKey, Arc<Verified>, foldhash::quality::RandomState>,
    // Tokens refused lately, with why: a client retrying a bad or expired token costs a lookup,
    // not a signature check each time. (Distinct forged tokens each cost one: rate limits.)
    rejected: Cache<TokenKey, &'static str, foldhash::quality::RandomState>,
    revocations: Arc<Revocations>,
    resources: Resources,
    allow_preflight: bool,
    allow_metadata: bool,
    default_scopes: Vec<String>,
    outage_grace: u64,
    /// Tells this verifier's entries in [`RECENT`] from another's (tests build several).
    id: u64,
}

/// Slots per thread in [`RECENT`].
const RECENT_SLOTS: usize = 64;

/// A token as this thread last judged it, byte for byte: verified, or refused and why.
struct RecentToken {
    verifier: u64,
    token: Box<str>,
    verdict: Result<Arc<Verified>, &'static str>,
}

thread_local! {
    /// The tokens this worker thread judged lately, by their exact bytes: steady MCP traffic
    /// presents the same few tokens over and over (and a client with a dead token retries it),
    /// and an exact comparison (a memcmp of the token) is cheaper than the SHA-256 that keys the
    /// shared caches. A slot is picked by the token's last bytes (signature bytes, random); a
    /// miss falls through to the shared caches.
    static RECENT: std::cell::RefCell<Vec<Option<RecentToken>>> =
        std::cell::RefCell::new((0..RECENT_SLOTS).map(|_| None).collect());
}

fn recent_slot(token: &str) -> usize {
    let b = token.as_bytes();
    let tail = &b[b.len().saturating_sub(8)..];
    let mut x = 0u64;
    for byte in tail {
        x = (x << 8) | u64::from(*byte);
    }
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % RECENT_SLOTS
}

impl Verifier {
    /// Builds the decision point.
    pub fn new(config: &Config, keys: Arc<Keys>, revocations: Arc<Revocations>) -> Self {
        Self {
            keys,
            cache: Cache::builder()
                .max_capacity(config.verify.cache_capacity)
                .expire_after(UntilExp)
                .build_with_hasher(foldhash::quality::RandomState::default()),
            rejected: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build_with_hasher(foldhash::quality::RandomState::default()),
            revocations,
            resources: Resources::from_config(config),
            allow_preflight: config.verify.allow_preflight,
            allow_metadata: config.verify.allow_metadata,
            default_scopes: config.oauth.scopes_supported.clone(),
            outage_grace: config.verify.outage_grace,
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
        }
    }

    /// The configured resources.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Verifies a token, from the cache when it was verified before.
    fn verified(&self, token: &str) -> Result<Arc<Verified>, Refusal> {
        let now = crate::store::now();
        let slot = recent_slot(token);
        let recent = RECENT.with_borrow(|r| match &r[slot] {
            Some(e) if e.verifier == self.id && &*e.token == token => match &e.verdict {
                Ok(v) if v.exp >= now => Some(Ok(v.clone())),
                Ok(_) => None,
                // Refusals are final (see `rejected`).
                Err(why) => Some(Err(Refusal { why, repeated: true })),
            },
            _ => None,
        });
        if let Some(verdict) = recent {
            return verdict;
        }
        let verdict = self.verified_shared(token);
        RECENT.with_borrow_mut(|r| {
            let remembered = verdict.as_ref().map(Arc::clone).map_err(|refusal| refusal.why);
            r[slot] = Some(RecentToken { verifier: self.id, token: token.into(), verdict: remembered });
        });
        verdict
    }

    /// [`Self::verified`] by the shared cache, keyed by the token's digest.
    fn verified_shared(&self, token: &str) -> Result<Arc<Verified>, Refusal> {
        let key = token_key(token);
        if let Some(hit) = self.cache.get(&key) {
            // The cache evicts at `exp`, but eviction is lazy: check again.
            if hit.exp >= crate::store::now() {
                return Ok(hit);
            }
        }
        if let Some(why) = self.rejected.get(&key) {
            return Err(Refusal { why, repeated: true });
        }
        // SECURITY: only verdicts that cannot change are remembered (an expired or badly signed
        // token stays refused; keys change only with a restart, which empties this cache).
        let claims = self.keys.verify(token).map_err(|e| {
            self.rejected.insert(key, e.0);
            Refusal { why: e.0, repeated: false }
        })?;
        let verified = Arc::new(Verified::new(claims));
        self.cache.insert(key, verified.clone());
        Ok(verified)
    }

    /// Decides one request.
    pub fn decide(&self, req: &OriginalRequest, bearer: Option<&str>) -> Decision {
        if self.allow_preflight && req.method.eq_ignore_ascii_case("OPTIONS") {
            return Decision::Allow(None);
        }
        if self.allow_metadata && req.path().starts_with("/.well-known/oauth-protected-resource") {
            return Decision::Allow(None);
        }
        let Some(resource) = self.resources.for_request(req, &self.default_scopes) else {
            return Decision::NotProtected;
        };
        let Some(token) = bearer else {
            return Decision::Unauthorized { resource, error: None, repeated: false };
        };
        let verified = match self.verified(token) {
            Ok(v) => v,
            Err(Refusal { why, repeated }) => {
                return Decision::Unauthorized { resource, error: Some(why), repeated };
            }
        };
        let claims = &*verified;
        let revoked = match self.revocations.is_revoked(&claims.ids()) {
            Some(revoked) => {
                if !claims.judged.load(Ordering::Relaxed) {
                    claims.judged.store(true, Ordering::Relaxed);
                }
                Some(revoked)
            }
            // The revocation feed is down: a token judged before keeps its standing against the
            // revocations last known, for `verify.outage_grace`; any other waits (503).
            None if claims.judged.load(Ordering::Relaxed) => {
                self.revocations.is_revoked_within(&claims.ids(), self.outage_grace)
            }
            None => None,
        };
        match revoked {
            None => return Decision::Unavailable,
            Some(true) => {
                return Decision::Unauthorized { resource, error: Some("token revoked"), repeated: false };
            }
            Some(false) => {}
        }
        if !resource.accepts_audience(&claims.aud) {
            // RFC 8707 / RFC 9068 §4: a token for another resource is not valid here.
            return Decision::Unauthorized {
                resource,
                error: Some("token is for another resource (aud)"),
                repeated: false,
            };
        }
        if !resource.allows_user(claims) {
            return Decision::Forbidden {
                resource,
                missing_scope: None,
                description: "user is not allowed to use this resource",
            };
        }
        let has_all = resource
            .required_scopes
            .iter()
            .map(String::as_str)
            .chain(resource.rule_scopes(req))
            .all(|s| scope::contains(claims.scope(), s));
        if !has_all {
            // RFC 6750 §3.1: `scope` names what this request needs, so the client can ask for it
            // (MCP step-up authorization).
            let mut all: Vec<&str> = Vec::new();
            for s in resource.required_scopes.iter().map(String::as_str).chain(resource.rule_scopes(req)) {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
            let needed = all.join(" ");
            return Decision::Forbidden {
                resource,
                missing_scope: Some(needed),
                description: "token lacks a scope this request needs",
            };
        }
        Decision::Allow(Some(verified))
    }
}
