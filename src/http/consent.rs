//! The consent page (`oauth.consent`): after the user signs in, `GET /consent?session=` shows
//! which client asks for which MCP server (RFC 8707 resource) and scopes, and where the answer
//! goes; `POST /consent` allows (the code is issued) or denies (`access_denied` back to the
//! client, RFC 6749 §4.1.2.1, with `iss`, RFC 9207).
//!
//! CSRF: the form carries the parked request's id, random and known only to the page, and the
//! request is bound to the browser that started it (the login cookie, SameSite=Lax, so a
//! cross-site POST does not carry it); a POST whose `Origin` is another site is refused too.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::authorize::{client_label, pending_for, respond_error};
use super::page::{self, escape};
use super::read_form;
use crate::AppState;
use crate::config::ConsentMode;
use crate::error::Error;
use crate::oauth::authorize;
use crate::oauth::params::Params;
use crate::store::PendingAuthorization;

/// The parked request of a consent page: in this browser, with a signed-in user, not a device
/// sign-in (that one has its own confirmation page).
async fn awaiting_consent(
    app: &AppState,
    req: &HttpRequest,
    session: &str,
) -> Result<PendingAuthorization, HttpResponse> {
    let pending = pending_for(app, req, Some(session)).await?;
    if pending.user.is_none() || pending.device.is_some() {
        return Err(page::error(400, "This sign-in is not waiting for your approval."));
    }
    Ok(pending)
}

/// `GET /consent?session=`: who asks for what; allow or deny.
pub async fn get_consent(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let q = match Params::parse(req.query_string().as_bytes()) {
        Ok(q) => q,
        Err(e) => return page::error(400, &format!("Malformed request: {e}.")),
    };
    let session = q.get("session").unwrap_or("");
    let pending = match awaiting_consent(&app, &req, session).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let client = client_label(&app, &pending.client_id).await;
    let redirect_host =
        url::Url::parse(&pending.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let user = pending.user.as_ref().map(|u| u.name.as_str()).unwrap_or_default();
    let scopes: String = pending
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let remembered = if app.config.oauth.consent == ConsentMode::Remember {
        "<p class=\"meta\">Your answer is remembered for this application and server; revoking your tokens makes it ask again.</p>"
    } else {
        ""
    };
    let body = format!(
        "<p>Signed in as <strong>{user}</strong>.</p>\
<p><strong>{client}</strong> asks to use <strong>{resource}</strong> as you.</p>\
<p>Scopes:</p><ul class=\"scopes\">{scopes}</ul>\
<p>The answer goes back to <strong>{host}</strong>. Allow only if you started this in that application just now.</p>{remembered}\
<form method=\"post\" action=\"{base}/consent\"><input type=\"hidden\" name=\"session\" value=\"{session}\">\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
        user = escape(user),
        client = escape(&client),
        resource = escape(&pending.resource),
        host = escape(&redirect_host),
        base = escape(app.config.base_url()),
        session = escape(session),
    );
    page::render(actix_web::http::StatusCode::OK, "Allow access?", &body)
}

/// `POST /consent`: the user's decision.
pub async fn post_consent(app: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    // SECURITY: a browser names the page that posted; another site's form is refused outright.
    let own = url::Url::parse(&app.config.server.issuer).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != own
    {
        return page::error(403, "This approval was sent from another site.");
    }
    let form: Params = match read_form(&req, payload).await {
        Ok(f) => f,
        Err(e) => return page::error(400, &e.description()),
    };
    let session = form.get("session").unwrap_or("");
    if let Err(res) = awaiting_consent(&app, &req, session).await {
        return res;
    }
    let allow = match form.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => return page::error(400, "Choose Allow or Deny."),
    };
    // One decision per sign-in: taking the parked request is atomic.
    let pending = match app.store.take_pending(session).await {
        Ok(Some(p)) => p,
        Ok(None) => return page::error(400, "This sign-in has expired or was already answered."),
        Err(e) => return respond_error(Error::from(e).into()),
    };
    match authorize::decide_consent(&app, pending, allow).await {
        Ok(location) => HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish(),
        Err(authorize::AuthorizeError::Redirect(location)) => {
            HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
        }
        Err(e) => respond_error(e),
    }
}
