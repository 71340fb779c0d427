//! RFC 8628 device authorization: `POST /device_authorization` (the client), and the pages the
//! person uses on any browser: `GET /device` (enter the code), then the usual login, then
//! `GET/POST /device/confirm` (approve or deny). The protocol is in `crate::oauth::device`.
//!
//! The confirmation is bound to the browser that logged in by the same HttpOnly SameSite=Lax
//! cookie as `/authorize` (a form posted from another site does not carry it: no CSRF).

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::authorize::{binding_cookie, client_label, go_log_in, same_browser};
use super::page::{self, escape};
use super::{no_store, read_form};
use crate::AppState;
use crate::error::Error;
use crate::oauth::client::ClientCredentials;
use crate::oauth::device::{self, Lookup};
use crate::oauth::params::Params;
use crate::oauth::secret::digest;

/// `POST /device_authorization` (RFC 8628 §3.1).
pub async fn post_device_authorization(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let form = read_form(&req, payload).await?;
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let creds = ClientCredentials::from_request(authorization, form.get("client_id"), form.get("client_secret"))?;
    let client = device::client_of(&app, &creds).await?;
    let answer = device::start(&app, &client, &form).await?;
    Ok(no_store(HttpResponse::Ok()).json(answer))
}

fn enter_code_page(app: &AppState, error: Option<&str>, status: u16) -> HttpResponse {
    let mut body = String::from("<p>Enter the code shown on your device.</p>");
    if let Some(e) = error {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)));
    }
    body.push_str(&format!(
        "<form method=\"get\" action=\"{}/device\"><label for=\"user_code\">Code</label>\
<input id=\"user_code\" name=\"user_code\" autocomplete=\"one-time-code\" autocapitalize=\"characters\" \
spellcheck=\"false\" placeholder=\"XXXX-XXXX\" required autofocus><button type=\"submit\">Continue</button></form>",
        escape(app.config.base_url())
    ));
    page::render(actix_web::http::StatusCode::from_u16(status).unwrap_or_default(), "Connect a device", &body)
}

/// `GET /device[?user_code=]`: the code entry form, or, with a code, on to log in.
pub async fn get_device(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let q = match Params::parse(req.query_string().as_bytes()) {
        Ok(q) => q,
        Err(e) => return page::error(400, &format!("Malformed request: {e}.")),
    };
    let Some(typed) = q.get("user_code") else {
        return enter_code_page(&app, None, 200);
    };
    let addr = app.dialect.client_ip(&req).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let (hash, record) = match device::lookup(&app, addr, typed).await {
        Ok(Lookup::Found(hash, record)) => (hash, record),
        Ok(Lookup::NotUsable) => {
            return enter_code_page(&app, Some("That code is not valid, or it has expired or been used."), 400);
        }
        Ok(Lookup::LockedOut) => {
            return page::error(429, "Too many wrong codes from this address. Try again in 15 minutes.");
        }
        Err(e) => return page::error(503, &e.description()),
    };
    let mut pending = device::pending_login(hash, &record);
    let cookie = binding_cookie(&req, &app);
    pending.browser_binding = digest(cookie.value());
    go_log_in(&app, pending, cookie).await
}

/// `GET /device/confirm?session=`: who asks for what; approve or deny.
pub async fn get_device_confirm(app: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let q = Params::parse(req.query_string().as_bytes()).unwrap_or_default();
    let session = q.get("session").unwrap_or("");
    let pending = match confirmable(&app, &req, session).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let client_name = client_label(&app, &pending.client_id).await;
    let user = pending.user.as_ref().map(|u| u.name.as_str()).unwrap_or_default();
    let body = format!(
        "<p>Signed in as <strong>{user}</strong>.</p>\
<p>A device asks to use <strong>{resource}</strong> as you, with the scopes <strong>{scope}</strong>, through the client \
<strong>{name}</strong> <span class=\"meta\">({client_id})</span>.</p>\
<p>Approve only if you started this on your own device just now.</p>\
<form method=\"post\" action=\"{base}/device/confirm\"><input type=\"hidden\" name=\"session\" value=\"{session}\">\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button> \
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
        user = escape(user),
        resource = escape(&pending.resource),
        scope = escape(&pending.scope),
        name = escape(if client_name == pending.client_id { "unnamed client" } else { &client_name }),
        client_id = escape(&pending.client_id),
        base = escape(app.config.base_url()),
        session = escape(session),
    );
    page::render(actix_web::http::StatusCode::OK, "Approve this device?", &body)
}

/// `POST /device/confirm`: records the decision (once).
pub async fn post_device_confirm(app: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let form: Params = match read_form(&req, payload).await {
        Ok(f) => f,
        Err(e) => return page::error(400, &e.description()),
    };
    let session = form.get("session").unwrap_or("");
    let approve = match form.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return page::error(400, "Choose Approve or Deny."),
    };
    if let Err(res) = confirmable(&app, &req, session).await {
        return res;
    }
    let pending = match app.store.take_pending(session).await {
        Ok(Some(p)) => p,
        Ok(None) => return page::error(400, "This confirmation has expired or was already used."),
        Err(e) => return page::error(503, &Error::from(e).description()),
    };
    match device::decide(&app, &pending, approve).await {
        Ok(true) if approve => page::render(
            actix_web::http::StatusCode::OK,
            "Device approved",
            "<p>Approved. You can close this window and return to your device.</p>",
        ),
        Ok(true) => page::render(
            actix_web::http::StatusCode::OK,
            "Device denied",
            "<p>Denied. The device gets no access. You can close this window.</p>",
        ),
        Ok(false) => page::error(400, "This code has expired or was already decided."),
        Err(e) => page::error(503, &e.description()),
    }
}

/// The parked confirmation of this browser, with its logged-in user.
async fn confirmable(
    app: &AppState,
    req: &HttpRequest,
    session: &str,
) -> Result<crate::store::PendingAuthorization, HttpResponse> {
    let expired = || page::error(400, "This confirmation has expired or was already used.");
    if session.is_empty() || session.len() > 64 {
        return Err(expired());
    }
    let pending = match app.store.get_pending(session).await {
        Ok(Some(p)) if p.device.is_some() && p.user.is_some() => p,
        Ok(_) => return Err(expired()),
        Err(e) => return Err(page::error(503, &Error::from(e).description())),
    };
    if !same_browser(req, &pending) {
        return Err(page::error(400, "This confirmation was started in another browser (or cookies are blocked)."));
    }
    Ok(pending)
}
