//! How a [`Decision`] is told to the proxy, the same for every transport (`/verify` over HTTP,
//! Envoy's ext_authz over gRPC): the identity headers an allowed request carries on to the MCP
//! server, or the status, `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1) and JSON
//! body the client gets instead.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use serde::Serialize;
use url::Url;

use super::resource::ProtectedResource;
use super::{Decision, OriginalRequest, Verified};
use crate::config::Config;

/// What the proxy is told.
#[derive(Debug)]
pub enum Answer {
    /// Let the request through; with the identity when a token was checked.
    Allow(Option<Arc<Verified>>),
    /// Answer the client with this instead.
    Deny(Denial),
}

/// A refusal, as the client will see it.
#[derive(Debug)]
pub struct Denial {
    /// 401, 403, 302 (browser sent to log in) or 503.
    pub status: StatusCode,
    /// `WWW-Authenticate`, `Location`, `Retry-After`, `Cache-Control`, `Content-Type`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The RFC 6750 error object, or empty.
    pub body: String,
}

/// The configured shape of answers: identity header names, token forwarding, browser login.
#[derive(Debug)]
pub struct Answers {
    /// Identity header names, in the order of [`Verified::headers`].
    names: [HeaderName; 5],
    forward_token: bool,
    login_url: Option<Url>,
}

fn header_name(s: &str) -> HeaderName {
    HeaderName::try_from(s).unwrap_or_else(|_| HeaderName::from_static("x-invalid-header-name"))
}

impl Answers {
    /// From the configuration (validated).
    pub fn new(config: &Config) -> Self {
        let h = &config.verify.headers;
        Self {
            names: [
                header_name(&h.user_id),
                header_name(&h.user_name),
                header_name(&h.user_email),
                header_name(&h.client_id),
                header_name(&h.scope),
            ],
            forward_token: config.verify.forward_token,
            login_url: Some(config.verify.login_url.as_str())
                .filter(|u| !u.is_empty())
                .and_then(|u| Url::parse(u).ok()),
        }
    }

    /// The identity headers of a verified token.
    // SECURITY: every identity header is set, empty when unknown, so a value a client sent under
    // the same name can never pass for ours.
    pub fn identity<'a>(&'a self, v: &'a Verified) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> {
        self.names.iter().enumerate().map(|(i, name)| (name, v.header_value(i)))
    }

    /// The configured identity header names.
    pub fn names(&self) -> &[HeaderName; 5] {
        &self.names
    }

    /// Whether the client's `Authorization` header goes on to the MCP server.
    pub fn forward_token(&self) -> bool {
        self.forward_token
    }

    /// The answer to `decision` about `req`.
    pub fn answer(&self, decision: Decision, req: &OriginalRequest) -> Answer {
        let denial = match decision {
            Decision::Allow(identity) => return Answer::Allow(identity),
            Decision::Unauthorized { error: None, .. } if req.browser && self.login_url.is_some() => {
                self.login_redirect(req)
            }
            Decision::Unauthorized { resource, error, .. } => {
                let mut challenge = base_challenge(&resource, req);
                if let Some(why) = error {
                    challenge.push_str(", error=\"invalid_token\", error_description=\"");
                    challenge.push_str(why);
                    challenge.push('"');
                }
                json_error(
                    StatusCode::UNAUTHORIZED,
                    Some(challenge),
                    "invalid_token",
                    error.unwrap_or("a bearer token is required"),
                )
            }
            Decision::Forbidden { resource, missing_scope: Some(scope), description } => {
                // RFC 6750 §3.1 + MCP step-up authorization: say which scope would help.
                let challenge = format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{}\", error_description=\"{description}\"",
                    resource.metadata_url()
                );
                json_error(StatusCode::FORBIDDEN, Some(challenge), "insufficient_scope", description)
            }
            Decision::Forbidden { description, .. } => {
                json_error(StatusCode::FORBIDDEN, None, "access_denied", description)
            }
            Decision::NotProtected => json_error(
                StatusCode::FORBIDDEN,
                None,
                "access_denied",
                "no protected resource is configured for this URL",
            ),
            Decision::Unavailable => {
                let mut d = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "temporarily_unavailable",
                    "revocation state is not current; retry shortly",
                );
                d.headers.push((header::RETRY_AFTER, HeaderValue::from_static("1")));
                d
            }
        };
        Answer::Deny(denial)
    }

    /// 302 to `verify.login_url` with the original URL as `rd` (the oauth2-proxy convention),
    /// for a person who opened an MCP server's URL in a browser.
    fn login_redirect(&self, req: &OriginalRequest) -> Denial {
        let mut url = self.login_url.clone().expect("checked by the caller");
        url.query_pairs_mut().append_pair("rd", &req.url());
        let location = HeaderValue::from_str(url.as_str()).unwrap_or_else(|_| HeaderValue::from_static("/"));
        Denial {
            status: StatusCode::FOUND,
            headers: vec![(header::LOCATION, location), no_store()],
            body: String::new(),
        }
    }
}

/// `Bearer resource_metadata="…", scope="…"` (RFC 9728 §5.1, RFC 6750 §3). Written into one
/// buffer: refusals come in floods too (a client retrying a dead token).
fn base_challenge(resource: &ProtectedResource, req: &OriginalRequest) -> String {
    let mut c = String::with_capacity(192);
    c.push_str("Bearer resource_metadata=\"");
    resource.push_metadata_url(&mut c);
    c.push('"');
    let without_scope = c.len();
    c.push_str(", scope=\"");
    let scope_at = c.len();
    resource.push_challenge_scope(req, &mut c);
    if c.len() == scope_at {
        c.truncate(without_scope);
    } else {
        c.push('"');
    }
    c
}

fn no_store() -> (HeaderName, HeaderValue) {
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

/// The RFC 6750 §3 error object.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

fn json_error(status: StatusCode, challenge: Option<String>, error: &str, description: &str) -> Denial {
    let mut headers = Vec::with_capacity(4);
    headers.push(no_store());
    headers.push((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    // The challenge's bytes become the header value as they are (validated, not copied).
    if let Some(c) = challenge.and_then(|c| HeaderValue::from_maybe_shared(Bytes::from(c)).ok()) {
        headers.push((header::WWW_AUTHENTICATE, c));
    }
    let body = serde_json::to_string(&ErrorBody { error, error_description: description }).unwrap_or_default();
    Denial { status, headers, body }
}
