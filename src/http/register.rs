//! `POST /register` (RFC 7591) and `GET/PUT/DELETE /register/{client_id}` (RFC 7592).
//!
//! The body is read as JSON whatever its Content-Type says, so `curl -d '{...}'` works.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{bearer, no_store, read_body};
use crate::AppState;
use crate::error::{Error, ErrorCode};
use crate::oauth::client::RegistrationRequest;
use crate::oauth::registration;

fn parse(body: &[u8]) -> Result<RegistrationRequest, Error> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    let bad = |e: String| {
        Error::oauth(ErrorCode::InvalidClientMetadata, format!("the body is not a JSON client metadata object: {e}"))
    };
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(bad("expected an object".into()));
    }
    // Straight into the typed request, not through a map: a metadata field given twice is an
    // error ("duplicate field"), not whichever copy a map keeps (parsers differ on that).
    serde_json::from_slice(body).map_err(|e| bad(e.to_string()))
}

/// Registers a client: 201 with its id and, for confidential clients, its secret.
pub async fn post_register(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    if !app.config.registration.enabled {
        return Err(Error::oauth(ErrorCode::AccessDenied, "dynamic client registration is disabled"));
    }
    registration::check_initial_token(&app, bearer(&req))?;
    let metadata = parse(&read_body(payload).await?)?.validate(&app.config)?;
    let (record, secret, token) = registration::register(&app, metadata).await?;
    Ok(no_store(HttpResponse::Created()).json(registration::response(&app, &record, secret.as_ref(), Some(&token))))
}

/// RFC 7592 §2.1: reads the registration.
pub async fn get_client(
    app: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let record = registration::authorize_management(&app, &path, bearer(&req)).await?;
    Ok(no_store(HttpResponse::Ok()).json(registration::response(&app, &record, None, None)))
}

/// RFC 7592 §2.2: replaces the registration.
pub async fn put_client(
    app: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let record = registration::authorize_management(&app, &path, bearer(&req)).await?;
    let update = parse(&read_body(payload).await?)?;
    let (record, secret) = registration::update(&app, record, update).await?;
    Ok(no_store(HttpResponse::Ok()).json(registration::response(&app, &record, secret.as_ref(), None)))
}

/// RFC 7592 §2.3: deletes the client and revokes its tokens; 204.
pub async fn delete_client(
    app: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let record = registration::authorize_management(&app, &path, bearer(&req)).await?;
    registration::delete(&app, &record).await?;
    Ok(no_store(HttpResponse::NoContent()).finish())
}
