//! `POST /token` (RFC 6749 §3.2), `POST /revoke` (RFC 7009), `POST /introspect` (RFC 7662).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{no_store, read_form};
use crate::AppState;
use crate::error::Error;
use crate::oauth::client::{self, ClientCredentials};
use crate::oauth::params::Params;
use crate::oauth::{grant, revocation};
use crate::ratelimit::Bucket;
use crate::store::ClientRecord;

/// The credentials the calling client presented, in the Authorization header or the form.
fn credentials(req: &HttpRequest, form: &Params) -> Result<ClientCredentials, Error> {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    ClientCredentials::from_request(authorization, form.get("client_id"), form.get("client_secret"))
}

/// Authenticates the calling client from the Authorization header or the form.
async fn client_of(app: &AppState, req: &HttpRequest, form: &Params) -> Result<ClientRecord, Error> {
    client::authenticate(app, &credentials(req, form)?).await
}

/// Issues tokens for the `authorization_code` and `refresh_token` grants.
pub async fn post_token(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let form = read_form(&req, payload).await?;
    let creds = credentials(&req, &form)?;
    // SECURITY: per client before authenticating it: guessing a secret from many addresses.
    if let Some(id) = &creds.client_id
        && let Err(wait) = app.limits.check_client(id)
    {
        return Ok(super::rate_limited(&app, Bucket::TokenPerClient, wait, app.dialect.client_ip(&req)));
    }
    let client = client::authenticate(&app, &creds).await?;
    let tokens = grant::exchange(&app, &client, &form).await?;
    Ok(no_store(HttpResponse::Ok()).json(tokens))
}

/// Revokes a token; 200 whether or not it was valid (RFC 7009 §2.2).
pub async fn post_revoke(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let form = read_form(&req, payload).await?;
    let client = client_of(&app, &req, &form).await?;
    revocation::revoke(&app, &client, &form).await?;
    Ok(no_store(HttpResponse::Ok()).finish())
}

/// Describes a token to an authenticated confidential client.
pub async fn post_introspect(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let form = read_form(&req, payload).await?;
    let client = client_of(&app, &req, &form).await?;
    let body = revocation::introspect(&app, &client, &form).await?;
    Ok(no_store(HttpResponse::Ok()).json(body))
}
