//! The authorization endpoint's logic (RFC 6749 §4.1.1, OAuth 2.1 §4.1): validate the request,
//! park it while the user logs in, then issue a code bound to client, redirect URI, PKCE
//! challenge, resource and user, and build the redirect back (with `iss`, RFC 9207).
//!
//! Errors found before the client and its redirect URI are known good must not redirect (an
//! open redirector otherwise, RFC 6749 §4.1.2.1): they are [`AuthorizeError::Page`]. Later
//! errors go back to the client: [`AuthorizeError::Redirect`].

use std::time::Duration;

use url::Url;

use super::client::{GRANT_AUTHORIZATION_CODE, LookupError, lookup};
use super::params::Params;
use super::secret::{AuthCode, digest, random_token};
use super::{pkce, redirect, scope};
use crate::AppState;
use crate::config::ConsentMode;
use crate::error::{Error, ErrorCode};
use crate::store::{CodeGrant, Consent, PendingAuthorization, User, now};
use crate::upstream::listed;
use crate::verify::revocation::TokenIds;

/// Longest `state` echoed back.
const MAX_STATE_LEN: usize = 2048;

/// A failed authorization request.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the user; never redirected (client or redirect URI not trusted).
    Page {
        /// HTTP status of the page.
        status: u16,
        /// What went wrong (escaped when rendered).
        message: String,
    },
    /// Sent back to the client's redirect URI.
    Redirect(String),
}

impl AuthorizeError {
    fn page(message: impl Into<String>) -> Self {
        Self::Page { status: 400, message: message.into() }
    }
}

impl From<Error> for AuthorizeError {
    fn from(err: Error) -> Self {
        match err {
            Error::Store(_) => Self::Page {
                status: 503,
                message: "The authorization server is temporarily unavailable. Try again shortly.".into(),
            },
            other => {
                if let Error::Internal(e) = &other {
                    tracing::error!(error = ?e, "internal error at /authorize");
                }
                Self::Page { status: 500, message: "The authorization server failed to handle the request.".into() }
            }
        }
    }
}

/// `redirect_uri` with `params` added to its query, plus `iss` (RFC 9207 §2).
pub fn redirect_with(redirect_uri: &str, issuer: &str, params: &[(&str, Option<&str>)]) -> String {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.append_pair("iss", issuer);
    }
    url.into()
}

/// An error redirect (RFC 6749 §4.1.2.1).
pub fn error_redirect(
    pending_redirect: &str,
    state: Option<&str>,
    issuer: &str,
    code: ErrorCode,
    description: &str,
) -> AuthorizeError {
    AuthorizeError::Redirect(redirect_with(
        pending_redirect,
        issuer,
        &[
            ("error", Some(code.as_str())),
            ("error_description", Some(&crate::error::description_text(description))),
            ("state", state),
        ],
    ))
}

/// Validates an authorization request (the raw query string) into a parked request, without
/// the browser binding (the HTTP layer adds it).
pub async fn validate(app: &AppState, query: &str) -> Result<PendingAuthorization, AuthorizeError> {
    let params = match Params::parse(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => return Err(AuthorizeError::page(format!("Malformed request: {e}."))),
    };
    let Some(client_id) = params.get("client_id") else {
        return Err(AuthorizeError::page("The request has no client_id."));
    };
    let client = match lookup(app, client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return Err(AuthorizeError::page("The client is not registered with this server.")),
        Err(LookupError::Store(e)) => return Err(Error::from(e).into()),
        Err(LookupError::Document(e)) => {
            // Not a redirect: without a usable document, the redirect URI is not trusted. A 400
            // even when the document's server failed: the caller chose that server.
            let mut message = e.to_string();
            if let Some(first) = message.get(..1) {
                message.replace_range(..1, &first.to_uppercase());
            }
            return Err(AuthorizeError::page(format!("{message}.")));
        }
    };
    let registered = &client.metadata.redirect_uris;
    let (redirect_uri, explicit) = match params.get("redirect_uri") {
        Some(presented) => match redirect::find_match(registered, presented) {
            // The presented value (a loopback one may differ in port) is where the code goes.
            Some(_) => (presented.to_owned(), true),
            None if super::cimd::is_document_client_id(&client.client_id) => {
                return Err(AuthorizeError::page(
                    "The redirect_uri is not listed in the redirect_uris of the client's metadata document.",
                ));
            }
            None => {
                return Err(AuthorizeError::page("The redirect_uri is not registered for this client."));
            }
        },
        None if registered.len() == 1 => (registered[0].clone(), false),
        None => {
            return Err(AuthorizeError::page("The request has no redirect_uri and the client registered several."));
        }
    };
    // From here on, errors go back to the client.
    let issuer = app.config.server.issuer.as_str();
    let state = params.get("state");
    let fail = |code: ErrorCode, description: &str| error_redirect(&redirect_uri, state, issuer, code, description);
    if state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(error_redirect(&redirect_uri, None, issuer, ErrorCode::InvalidRequest, "state is too long"));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(fail(ErrorCode::InvalidRequest, "response_type is required")),
        Some(_) => {
            return Err(fail(ErrorCode::UnsupportedResponseType, "only response_type=code is supported"));
        }
    }
    if !client.metadata.grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
        return Err(fail(ErrorCode::UnauthorizedClient, "the client did not register the authorization_code grant"));
    }
    let code_challenge = pkce::validate_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
        .map_err(|e| fail(ErrorCode::InvalidRequest, &e))?;
    let supported = &app.config.oauth.scopes_supported;
    let allowed: Vec<String> = match &client.metadata.scope {
        Some(s) => s.split(' ').filter(|x| supported.contains(&x.to_string())).map(str::to_owned).collect(),
        None => supported.clone(),
    };
    let granted = scope::grant(params.get("scope"), &allowed, &app.config.oauth.default_scopes)
        .map_err(|e| fail(ErrorCode::InvalidScope, &e))?;
    let resource = resolve_resource(app, params.get("resource")).map_err(|e| fail(ErrorCode::InvalidTarget, &e))?;
    Ok(PendingAuthorization {
        client_id: client.client_id,
        redirect_uri,
        redirect_uri_explicit: explicit,
        state: state.map(str::to_owned),
        code_challenge,
        scope: granted,
        resource,
        browser_binding: String::new(),
        provider: None,
        upstream_verifier: None,
        upstream_nonce: None,
        device: None,
        user: None,
        auth_time: None,
    })
}

/// RFC 8707 §2: an absolute URI without fragment, and one this server protects. Without it,
/// the single configured resource is implied.
pub(crate) fn resolve_resource(app: &AppState, resource: Option<&str>) -> Result<String, String> {
    let resources = app.verifier.resources();
    let Some(r) = resource else {
        let configured = &app.config.resources;
        return match configured.as_slice() {
            [only] => Ok(only.url.trim_end_matches('/').to_owned()),
            _ => Err("the resource parameter (RFC 8707) is required: the URL of the MCP server".into()),
        };
    };
    let ok = Url::parse(r)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.fragment().is_none() && u.host_str().is_some());
    if !ok {
        return Err("resource must be an absolute http(s) URI without fragment".into());
    }
    if !resources.is_known(r) {
        return Err("resource is not a protected resource of this server".into());
    }
    Ok(r.trim_end_matches('/').to_owned())
}

/// The user logged in: check the global allow-list, then either send the browser to the consent
/// page (`oauth.consent`) or issue the code; the redirect to follow.
pub async fn complete(app: &AppState, pending: PendingAuthorization, user: User) -> Result<String, AuthorizeError> {
    if pending.device.is_some() {
        return super::device::logged_in(app, pending, user).await;
    }
    let issuer = app.config.server.issuer.as_str();
    let state = pending.state.as_deref();
    if !listed(&app.config.oauth.allowed_users, &user) {
        tracing::info!(audit = "login_denied", auth = "failure", user = %user.name, provider = %user.provider, "user not allowed");
        return Err(error_redirect(
            &pending.redirect_uri,
            state,
            issuer,
            ErrorCode::AccessDenied,
            "this user is not allowed to use this server",
        ));
    }
    if consent_needed(app, &pending, &user).await? {
        return park_for_consent(app, pending, user).await;
    }
    issue_code(app, pending, user).await
}

/// The digest a remembered consent is stored under.
fn consent_key(user: &User, client_id: &str, resource: &str) -> String {
    digest(&format!("consent\n{}\n{client_id}\n{resource}", user.id))
}

/// Whether the user must be asked (`oauth.consent`): always, or with `remember` unless a
/// consent to this client for this resource covers the scopes and has not been revoked since.
async fn consent_needed(app: &AppState, pending: &PendingAuthorization, user: &User) -> Result<bool, AuthorizeError> {
    match app.config.oauth.consent {
        ConsentMode::Off => Ok(false),
        ConsentMode::Always => Ok(true),
        ConsentMode::Remember => {
            let key = consent_key(user, &pending.client_id, &pending.resource);
            let Some(consent) = app.store.get_consent(&key).await.map_err(Error::from)? else {
                return Ok(true);
            };
            let wanted: Vec<String> = pending.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
            // The user's or the client's tokens revoked since (the operator, a deleted client):
            // ask again. A stale revocation set (its feed down) asks too.
            let ids =
                TokenIds { jti: "", sid: "", client_id: &pending.client_id, sub: &user.id, iat: consent.granted_at };
            let revoked = app.revocations.is_revoked(&ids) != Some(false);
            Ok(revoked || !scope::contains_all(&consent.scope, &wanted))
        }
    }
}

/// Parks the authorization with the user who logged in, and sends the browser to the consent
/// page (`GET /consent?session=`), in the same browser (the parked request keeps its binding).
async fn park_for_consent(
    app: &AppState,
    mut pending: PendingAuthorization,
    user: User,
) -> Result<String, AuthorizeError> {
    pending.user = Some(user);
    pending.auth_time = Some(now());
    let id = random_token(32);
    let ttl = Duration::from_secs(app.config.tokens.login_ttl);
    app.store.put_pending(&id, &pending, ttl).await.map_err(Error::from)?;
    Ok(format!("{}/consent?session={id}", app.config.base_url()))
}

/// The user's answer on the consent page, for an authorization parked by [`complete`]. Allowed:
/// the code (and, with `remember`, the consent kept); denied: `access_denied` back to the client.
pub async fn decide_consent(
    app: &AppState,
    pending: PendingAuthorization,
    allow: bool,
) -> Result<String, AuthorizeError> {
    let Some(user) = pending.user.clone() else {
        return Err(AuthorizeError::Page { status: 400, message: "This request has no sign-in to approve.".into() });
    };
    let issuer = app.config.server.issuer.as_str();
    if !allow {
        tracing::info!(audit = "consent_denied", auth = "failure", client_id = %pending.client_id, sub = %user.id, resource = %pending.resource, "the user denied the client");
        return Err(error_redirect(
            &pending.redirect_uri,
            pending.state.as_deref(),
            issuer,
            ErrorCode::AccessDenied,
            "the user denied the request",
        ));
    }
    tracing::info!(audit = "consent_granted", client_id = %pending.client_id, sub = %user.id, resource = %pending.resource, scope = %pending.scope, "the user allowed the client");
    if app.config.oauth.consent == ConsentMode::Remember {
        let consent = Consent { scope: pending.scope.clone(), granted_at: now() };
        let ttl = Duration::from_secs(app.config.oauth.consent_ttl);
        let key = consent_key(&user, &pending.client_id, &pending.resource);
        app.store.put_consent(&key, &consent, ttl).await.map_err(Error::from)?;
    }
    issue_code(app, pending, user).await
}

/// Issues the code for a completed login and builds the redirect back to the client.
async fn issue_code(app: &AppState, pending: PendingAuthorization, user: User) -> Result<String, AuthorizeError> {
    let issuer = app.config.server.issuer.as_str();
    let state = pending.state.as_deref();
    let code = AuthCode::generate();
    let grant = CodeGrant {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        redirect_uri_explicit: pending.redirect_uri_explicit,
        code_challenge: pending.code_challenge,
        scope: pending.scope,
        resource: pending.resource,
        user,
        family_id: random_token(16),
        auth_time: now(),
    };
    app.store
        .put_code(&code.digest(), &grant, Duration::from_secs(app.config.tokens.code_ttl))
        .await
        .map_err(Error::from)?;
    tracing::info!(
        audit = "login", auth = "success", client_id = %grant.client_id, sub = %grant.user.id,
        user = %grant.user.name, provider = %grant.user.provider, "user logged in; code issued"
    );
    Ok(redirect_with(&pending.redirect_uri, issuer, &[("code", Some(code.secret())), ("state", state)]))
}
