//! The browser side of the code flow: `GET /authorize`, the login page (`GET/POST /login`,
//! `GET /login/{provider}`), and the upstream return (`GET /callback[/{provider}]`).
//!
//! The parked authorization request is bound to the browser that started it by an HttpOnly,
//! SameSite=Lax cookie whose digest the request stores: a login form posted from another site
//! does not carry it, and a callback arriving in another browser does not match it (login CSRF,
//! RFC 9700 §4.7). The upstream `state` is the parked request's random id.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::page::{self, escape};
use super::read_form;
use crate::AppState;
use crate::error::{Error, ErrorCode};
use crate::oauth::authorize::{self, AuthorizeError, error_redirect};
use crate::oauth::params::Params;
use crate::oauth::secret::{constant_time_eq, digest, random_token};
use crate::oauth::{cimd, client};
use crate::store::PendingAuthorization;
use crate::upstream::{IdentityProvider, UpstreamError, UpstreamLogin};

/// The browser-binding cookie.
const COOKIE: &str = "mcp_authd_login";

/// The query string, parsed strictly; the error is for an error page.
fn query(req: &HttpRequest) -> Result<Params, String> {
    Params::parse(req.query_string().as_bytes()).map_err(|e| format!("Malformed request: {e}."))
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, location)).finish()
}

pub(super) fn respond_error(err: AuthorizeError) -> HttpResponse {
    match err {
        AuthorizeError::Page { status, message } => page::error(status, &message),
        AuthorizeError::Redirect(location) => found(&location),
    }
}

/// The cookie value of this browser, reusing a well-formed existing one so that parallel
/// logins in one browser do not cancel each other.
pub(super) fn binding_cookie(req: &HttpRequest, app: &AppState) -> Cookie<'static> {
    let value = req
        .cookie(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .unwrap_or_else(|| random_token(32));
    Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.config.server.issuer.starts_with("https://"))
        .max_age(actix_web::cookie::time::Duration::seconds(app.config.tokens.login_ttl as i64))
        .finish()
}

/// Whether this browser is the one that started the parked request.
pub(super) fn same_browser(req: &HttpRequest, pending: &PendingAuthorization) -> bool {
    req.cookie(COOKIE).is_some_and(|c| constant_time_eq(&digest(c.value()), &pending.browser_binding))
}

fn login_ttl(app: &AppState) -> Duration {
    Duration::from_secs(app.config.tokens.login_ttl)
}

fn callback_url(app: &AppState, provider: &str) -> String {
    format!("{}/callback/{provider}", app.config.base_url())
}

/// Where to send the browser for a redirect provider, remembering the upstream PKCE verifier
/// and nonce in the parked request. A provider that cannot be reached gives an error page
/// (the user may go back and pick another way to sign in).
async fn upstream_redirect(
    app: &AppState,
    pending: &mut PendingAuthorization,
    provider: &dyn IdentityProvider,
    id: &str,
) -> Result<String, HttpResponse> {
    let (verifier, nonce) = (random_token(32), random_token(32));
    let callback = callback_url(app, provider.id());
    let login = UpstreamLogin { callback: &callback, state: id, pkce_verifier: &verifier, nonce: &nonce };
    let url = provider.authorize_url(&login).await.map_err(|e| {
        tracing::warn!(auth = "error", provider = provider.id(), reason = %e, "identity provider unavailable");
        provider_down(provider)
    })?;
    pending.provider = Some(provider.id().to_owned());
    pending.upstream_verifier = Some(verifier);
    pending.upstream_nonce = Some(nonce);
    Ok(url)
}

/// The page shown when a provider cannot be reached or answers garbage.
fn provider_down(provider: &dyn IdentityProvider) -> HttpResponse {
    page::error(
        502,
        &format!("{} cannot be reached right now. Try again in a moment, or sign in another way.", provider.label()),
    )
}

/// `GET /authorize`: validates, parks the request, and sends the browser to log in.
pub async fn get_authorize(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let mut pending = match authorize::validate(&app, req.query_string()).await {
        Ok(p) => p,
        Err(e) => return respond_error(e),
    };
    if app.upstreams.is_empty() {
        return respond_error(error_redirect(
            &pending.redirect_uri,
            pending.state.as_deref(),
            &app.config.server.issuer,
            ErrorCode::ServerError,
            "no login method is configured on this server",
        ));
    }
    let cookie = binding_cookie(&req, &app);
    pending.browser_binding = digest(cookie.value());
    go_log_in(&app, pending, cookie).await
}

/// Parks a request (bound to `cookie`) and sends the browser to log in: the login page, or
/// straight to the one redirect provider when it is the only way.
pub(super) async fn go_log_in(
    app: &AppState,
    mut pending: PendingAuthorization,
    cookie: Cookie<'static>,
) -> HttpResponse {
    if app.upstreams.is_empty() {
        return page::error(503, "No login method is configured on this server.");
    }
    let id = random_token(32);
    let next = match app.upstreams.direct() {
        // The default provider, or the one way to log in: go straight there.
        Some(provider) => match upstream_redirect(app, &mut pending, provider, &id).await {
            Ok(url) => url,
            Err(page) => return page,
        },
        None => format!("{}/login?session={id}", app.config.base_url()),
    };
    if let Err(e) = app.store.put_pending(&id, &pending, login_ttl(app)).await {
        return respond_error(Error::from(e).into());
    }
    HttpResponse::Found().cookie(cookie).insert_header((header::LOCATION, next)).finish()
}

/// Loads the parked request of a login page, checking the browser.
pub(super) async fn pending_for(
    app: &AppState,
    req: &HttpRequest,
    session: Option<&str>,
) -> Result<PendingAuthorization, HttpResponse> {
    let expired = || page::error(400, "This sign-in link has expired or was already used.");
    let Some(session) = session.filter(|s| s.len() <= 64) else {
        return Err(expired());
    };
    let pending = match app.store.get_pending(session).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(respond_error(Error::from(e).into())),
    };
    if !same_browser(req, &pending) {
        return Err(page::error(400, "This sign-in was started in another browser (or cookies are blocked)."));
    }
    Ok(pending)
}

/// How the pages name a client: its `client_name`, else its id. A metadata document client's
/// name is followed by the host its document is served from: anyone can publish a document
/// claiming any name, but not on someone else's host.
pub(super) async fn client_label(app: &AppState, client_id: &str) -> String {
    let name = match client::lookup(app, client_id).await {
        Ok(Some(c)) => c.metadata.client_name.unwrap_or(c.client_id),
        _ => client_id.to_owned(),
    };
    if !cimd::is_document_client_id(client_id) {
        return name;
    }
    match url::Url::parse(client_id).ok().and_then(|u| u.host_str().map(str::to_owned)) {
        Some(host) if name != client_id => format!("{name} (from {host})"),
        _ => name,
    }
}

/// Renders the login page: the local form and a button per redirect provider.
async fn login_page(
    app: &AppState,
    session: &str,
    pending: &PendingAuthorization,
    error: Option<&str>,
) -> HttpResponse {
    let client_name = client_label(app, &pending.client_id).await;
    let redirect_host =
        url::Url::parse(&pending.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let base = app.config.base_url();
    let mut body = if pending.device.is_some() {
        format!("<p>Sign in to connect a device through <strong>{}</strong>.</p>", escape(&client_name))
    } else {
        format!(
            "<p>Sign in to continue to <strong>{}</strong> <span class=\"meta\">(returns to {})</span>.</p>",
            escape(&client_name),
            escape(&redirect_host)
        )
    };
    if let Some(e) = error {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)));
    }
    if !app.upstreams.local.is_empty() {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}/login\"><input type=\"hidden\" name=\"session\" value=\"{}\">\
<label for=\"username\">Username</label><input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
            escape(base),
            escape(session)
        ));
    }
    if !app.upstreams.redirect.is_empty() {
        // One list of links, each naming its provider in full (link purpose without context).
        body.push_str("<nav aria-label=\"Sign-in providers\"><ul class=\"providers\">");
        for p in &app.upstreams.redirect {
            body.push_str(&format!(
                "<li><a class=\"button\" href=\"{}/login/{}?session={}\">Sign in with {}</a></li>",
                escape(base),
                escape(p.id()),
                escape(session),
                escape(p.label())
            ));
        }
        body.push_str("</ul></nav>");
    }
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    page::render(status, "Sign in", &body)
}

/// `GET /login?session=`: the login page.
pub async fn get_login(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(e) => return page::error(400, &e),
    };
    let session = q.get("session").unwrap_or("");
    match pending_for(&app, &req, Some(session)).await {
        Ok(pending) => login_page(&app, session, &pending, None).await,
        Err(res) => res,
    }
}

/// `POST /login`: checks a local user's password and completes the authorization.
pub async fn post_login(app: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let form: Params = match read_form(&req, payload).await {
        Ok(f) => f,
        Err(e) => return page::error(400, &e.description()),
    };
    let session = form.get("session").unwrap_or("");
    let pending = match pending_for(&app, &req, Some(session)).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let (username, password) = (form.get("username").unwrap_or(""), form.get("password").unwrap_or(""));
    let Some(user) = app.upstreams.local.authenticate(username, password).await else {
        // The name typed (bounded; the log escapes it), never the password.
        let tried: String = username.chars().take(64).collect();
        tracing::info!(audit = "login_failed", auth = "failure", provider = "local", user = %tried, "wrong username or password");
        return login_page(&app, session, &pending, Some("Wrong username or password.")).await;
    };
    // Consume the parked request: one login, one code.
    let pending = match app.store.take_pending(session).await {
        Ok(Some(p)) => p,
        Ok(None) => return page::error(400, "This sign-in link has expired or was already used."),
        Err(e) => return respond_error(Error::from(e).into()),
    };
    match authorize::complete(&app, pending, user).await {
        Ok(location) => HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish(),
        Err(e) => respond_error(e),
    }
}

/// `GET /login/{provider}?session=`: the user chose a redirect provider.
pub async fn get_login_provider(app: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let Some(provider) = app.upstreams.provider(&path) else {
        return page::error(404, "Unknown sign-in method.");
    };
    let q = match query(&req) {
        Ok(q) => q,
        Err(e) => return page::error(400, &e),
    };
    let session = q.get("session").unwrap_or("");
    let mut pending = match pending_for(&app, &req, Some(session)).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let url = match upstream_redirect(&app, &mut pending, provider, session).await {
        Ok(url) => url,
        Err(page) => return page,
    };
    if let Err(e) = app.store.put_pending(session, &pending, login_ttl(&app)).await {
        return respond_error(Error::from(e).into());
    }
    found(&url)
}

/// `GET /callback[/{provider}]`: the provider sends the browser back with a code.
pub async fn get_callback(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(e) => return page::error(400, &e),
    };
    // `/callback` alone is the first redirect provider (the Python gateway's path).
    let provider = match req.match_info().get("provider") {
        Some(id) => app.upstreams.provider(id),
        None => app.upstreams.redirect.first().map(|p| p.as_ref()),
    };
    let Some(provider) = provider else {
        return page::error(404, "Unknown sign-in method.");
    };
    let Some(state) = q.get("state").filter(|s| s.len() <= 64) else {
        return page::error(400, "The identity provider's answer has no state.");
    };
    let pending = match app.store.take_pending(state).await {
        Ok(Some(p)) => p,
        Ok(None) => return page::error(400, "This sign-in has expired or was already completed."),
        Err(e) => return respond_error(Error::from(e).into()),
    };
    if !same_browser(&req, &pending) || pending.provider.as_deref() != Some(provider.id()) {
        return page::error(400, "This sign-in was started in another browser (or cookies are blocked).");
    }
    let issuer = app.config.server.issuer.clone();
    let back = |code: ErrorCode, description: &str| {
        if pending.device.is_some() {
            // A device sign-in has no redirect URI: the person reads it here.
            return page::error(if code == ErrorCode::AccessDenied { 403 } else { 502 }, description);
        }
        respond_error(error_redirect(&pending.redirect_uri, pending.state.as_deref(), &issuer, code, description))
    };
    if q.get("error").is_some() {
        return back(ErrorCode::AccessDenied, "the user declined at the identity provider");
    }
    let (Some(code), Some(verifier)) = (q.get("code"), pending.upstream_verifier.as_deref()) else {
        return back(ErrorCode::ServerError, "the identity provider returned no code");
    };
    let callback = callback_url(&app, provider.id());
    let login = UpstreamLogin {
        callback: &callback,
        state,
        pkce_verifier: verifier,
        nonce: pending.upstream_nonce.as_deref().unwrap_or(""),
    };
    match provider.exchange(&login, code, q.get("iss")).await {
        Ok(user) => match authorize::complete(&app, pending, user).await {
            Ok(location) => found(&location),
            Err(e) => respond_error(e),
        },
        Err(UpstreamError::Denied(why)) => {
            tracing::info!(audit = "login_denied", auth = "failure", provider = provider.id(), reason = %why, "login denied");
            back(ErrorCode::AccessDenied, "this user is not allowed to use this server")
        }
        Err(UpstreamError::Failed(why)) => {
            tracing::warn!(auth = "error", provider = provider.id(), reason = %why, "upstream login failed");
            back(ErrorCode::ServerError, "the identity provider could not be reached or failed")
        }
    }
}
