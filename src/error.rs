//! One error type for every endpoint, rendered as the RFC says.
//!
//! Token, registration, revocation and introspection errors are JSON bodies
//! `{"error", "error_description"}` (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 7009 §2.2.1,
//! RFC 6750 §3.1). `/authorize` errors are rendered separately (page or redirect, see
//! `http::authorize`). Internal failures are logged here and surface only as `server_error`.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// RFC error codes, with the wire spelling of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// RFC 6749 §5.2: the request is missing a parameter, repeats one, or is malformed.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed (unknown client, no or wrong secret).
    InvalidClient,
    /// RFC 6749 §5.2: the code or refresh token is invalid, expired, revoked, or was issued to
    /// another client or for another redirect URI; or the PKCE verifier does not match.
    InvalidGrant,
    /// RFC 6749 §5.2: the client may not use this grant type.
    UnauthorizedClient,
    /// RFC 6749 §5.2: the grant type is not supported.
    UnsupportedGrantType,
    /// RFC 6749 §4.1.2.1: the response type is not supported.
    UnsupportedResponseType,
    /// RFC 6749 §5.2: the requested scope is invalid or exceeds what was granted.
    InvalidScope,
    /// RFC 8707 §2: the requested resource is invalid or not allowed.
    InvalidTarget,
    /// RFC 7591 §3.2.2: a redirect URI is invalid.
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2: a metadata field is invalid.
    InvalidClientMetadata,
    /// RFC 6750 §3.1: the access token is missing its mark: expired, revoked, malformed.
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks a scope the request needs.
    InsufficientScope,
    /// RFC 6749 §4.1.2.1: the resource owner or server denied the request.
    AccessDenied,
    /// RFC 7009 §2.2.1: the token type cannot be revoked.
    UnsupportedTokenType,
    /// RFC 6749 §4.1.2.1: an unexpected condition.
    ServerError,
    /// RFC 6749 §4.1.2.1: the server cannot handle the request now (store unreachable).
    TemporarilyUnavailable,
    /// RFC 8628 §3.5: the user has not decided yet; poll again after `interval`.
    AuthorizationPending,
    /// RFC 8628 §3.5: polling too fast; add 5 seconds to the interval.
    SlowDown,
    /// RFC 8628 §3.5: the device code expired; start over.
    ExpiredToken,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The RFC error body.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error code.
    pub error: ErrorCode,
    /// Human-readable explanation (never contains a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// Every failure an endpoint can answer with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A protocol error with its RFC code.
    #[error("{code}: {description}")]
    OAuth {
        /// RFC error code.
        code: ErrorCode,
        /// `error_description`.
        description: String,
    },
    /// RFC 6749 §5.2 `invalid_client`; `basic` says the client tried HTTP Basic, so the 401
    /// carries a `WWW-Authenticate: Basic` challenge.
    #[error("invalid_client: {description}")]
    InvalidClient {
        /// `error_description`.
        description: String,
        /// Whether the client used the Authorization header.
        basic: bool,
    },
    /// An RFC 6749 §5.2 token-endpoint error, always 400 (RFC 8628 §3.5 answers to a device-code
    /// poll, `access_denied` among them, which elsewhere is a 403).
    #[error("{code}: {description}")]
    TokenEndpoint {
        /// RFC error code.
        code: ErrorCode,
        /// `error_description`.
        description: String,
    },
    /// The store could not be reached: 503, the request may be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many requests from this address or for this client: `429 Too Many Requests` with
    /// `Retry-After` (RFC 6585 §4) and `temporarily_unavailable`, the nearest RFC 6749 code.
    #[error("rate limited")]
    RateLimited(crate::ratelimit::RetryAfter),
    /// Anything else; logged, answered as `server_error`.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// A protocol error.
    pub fn oauth(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::OAuth { code, description: description.into() }
    }
    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::InvalidRequest, description)
    }
    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::InvalidGrant, description)
    }
    /// `invalid_client` without a Basic challenge.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::InvalidClient { description: description.into(), basic: false }
    }

    /// The RFC code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::OAuth { code, .. } | Self::TokenEndpoint { code, .. } => *code,
            Self::InvalidClient { .. } => ErrorCode::InvalidClient,
            Self::Store(_) | Self::RateLimited(_) => ErrorCode::TemporarilyUnavailable,
            Self::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// The `error_description` shown to the caller: internal details stay in the log.
    pub fn description(&self) -> String {
        match self {
            Self::OAuth { description, .. }
            | Self::TokenEndpoint { description, .. }
            | Self::InvalidClient { description, .. } => description.clone(),
            Self::Store(_) => "the authorization server's store is unavailable; retry later".into(),
            Self::RateLimited(wait) => format!("too many requests; retry in {} s", wait.secs()),
            Self::Internal(_) => "internal error".into(),
        }
    }

    /// The RFC body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: self.code(), error_description: Some(description_text(&self.description())) }
    }
}

/// Longest `error_description` sent: descriptions may quote the caller's input.
const MAX_DESCRIPTION: usize = 300;

/// An `error_description` as RFC 6749 §5.2 (and §4.1.2.1) allows it: printable ASCII without
/// `"` and `\` (`%x20-21 / %x23-5B / %x5D-7E`), at most [`MAX_DESCRIPTION`] characters. Quoted
/// input loses its double quotes (to `'`), control and non-ASCII characters (to `?`), and its
/// tail, so that what a caller sent comes back neither raw nor in full.
pub fn description_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_DESCRIPTION)
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            // SECURITY: descriptions quote input; no markup survives, whatever renders them.
            '<' | '>' => '?',
            ' '..='~' => c,
            _ => '?',
        })
        .collect();
    if text.chars().nth(MAX_DESCRIPTION).is_some() {
        out.truncate(MAX_DESCRIPTION - 3);
        out.push_str("...");
    }
    out
}

impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::TokenEndpoint { .. } => StatusCode::BAD_REQUEST,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => self.code().status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(err) => tracing::error!(error = ?err, "internal error"),
            Self::Store(err) => {
                crate::metrics::STORE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %err, "store error")
            }
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        // RFC 6749 §5.1/§5.2: token responses and their errors must not be cached.
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        res.insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        // The description may quote the caller's input: never let a browser read it as HTML.
        res.insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")));
        if let Self::InvalidClient { basic: true, .. } = self {
            // RFC 6749 §5.2: a client that tried Basic gets the matching challenge.
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mcp-authd\", charset=\"UTF-8\""),
            ));
        }
        if let Self::RateLimited(wait) = self {
            res.insert_header((header::RETRY_AFTER, wait.secs()));
        }
        if self.code() == ErrorCode::InvalidToken {
            // RFC 6750 §3.
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\"")));
        }
        res.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn internal_errors_do_not_leak() {
        let err = Error::Internal(anyhow::anyhow!("db password is hunter2"));
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(res.into_body()).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"server_error","error_description":"internal error"}"#);
    }

    #[test]
    fn descriptions_keep_to_the_rfc_characters() {
        assert_eq!(description_text("plain text: ok"), "plain text: ok");
        assert_eq!(
            description_text("redirect_uri \"a\\b\r\n<é>\" is not registered"),
            "redirect_uri 'a/b?????' is not registered"
        );
        let long = description_text(&"x".repeat(5000));
        assert_eq!(long.len(), MAX_DESCRIPTION);
        assert!(long.ends_with("..."));
        for c in description_text("\0\u{7f}\u{202e}\"\\\t").chars() {
            assert!(matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'), "{c:?}");
        }
    }

    #[actix_web::test]
    async fn invalid_client_with_basic_gets_a_challenge() {
        let err = Error::InvalidClient { description: "bad secret".into(), basic: true };
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap().starts_with("Basic"));
        assert_eq!(res.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
    }
}
