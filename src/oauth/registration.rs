//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).
//!
//! Secrets are returned once, at creation, and stored as digests only; a read or update
//! response therefore carries no `client_secret` (RFC 7592 §3 lets the server omit it, the
//! client keeps the one it was given). Management requests with an unknown client id and with a
//! wrong registration access token get the same answer, so ids cannot be probed (RFC 7592 §3).

use serde_json::{Value, json};

use super::client::{ClientMetadata, RegistrationRequest};
use super::secret::{ClientSecret, RegistrationToken, constant_time_eq, random_token, verify_digest};
use crate::AppState;
use crate::error::{Error, ErrorCode};
use crate::store::{ClientRecord, RevocationTarget, now};

/// The answer for every failed management authentication.
fn not_authorized() -> Error {
    Error::oauth(ErrorCode::InvalidToken, "unknown client or invalid registration access token")
}

/// RFC 7591 §3: when an initial access token is configured, registration requires it.
pub fn check_initial_token(app: &AppState, bearer: Option<&str>) -> Result<(), Error> {
    let expected = app.config.registration.initial_access_token.expose();
    if expected.is_empty() {
        return Ok(());
    }
    match bearer {
        Some(b) if constant_time_eq(b, expected) => Ok(()),
        _ => Err(Error::oauth(ErrorCode::InvalidToken, "registration requires a valid initial access token")),
    }
}

/// The RFC 7591 §3.2.1 / RFC 7592 §3 response body.
pub fn response(
    app: &AppState,
    record: &ClientRecord,
    secret: Option<&ClientSecret>,
    token: Option<&RegistrationToken>,
) -> Value {
    let mut body = serde_json::to_value(&record.metadata).unwrap_or_else(|_| json!({}));
    let obj = body.as_object_mut().expect("metadata serializes to an object");
    obj.insert("client_id".into(), json!(record.client_id));
    obj.insert("client_id_issued_at".into(), json!(record.client_id_issued_at));
    if let Some(s) = secret {
        obj.insert("client_secret".into(), json!(s.secret()));
    }
    if record.secret_hash.is_some() {
        // Secrets do not expire.
        obj.insert("client_secret_expires_at".into(), json!(0));
    }
    if let Some(t) = token {
        obj.insert("registration_access_token".into(), json!(t.secret()));
    }
    obj.insert(
        "registration_client_uri".into(),
        json!(format!("{}/register/{}", app.config.base_url(), record.client_id)),
    );
    body
}

/// Registers a client; returns the record with its one-time secrets.
pub async fn register(
    app: &AppState,
    metadata: ClientMetadata,
) -> Result<(ClientRecord, Option<ClientSecret>, RegistrationToken), Error> {
    let secret = metadata.token_endpoint_auth_method.is_confidential().then(ClientSecret::generate);
    let token = RegistrationToken::generate();
    let record = ClientRecord {
        client_id: random_token(16),
        secret_hash: secret.as_ref().map(ClientSecret::digest),
        registration_token_hash: token.digest(),
        client_id_issued_at: now(),
        metadata,
    };
    app.store.put_client(&record).await?;
    tracing::info!(
        audit = "client_registered", client_id = %record.client_id,
        client_name = record.metadata.client_name.as_deref().unwrap_or(""),
        auth_method = ?record.metadata.token_endpoint_auth_method, "client registered"
    );
    Ok((record, secret, token))
}

/// RFC 7592 §2: authenticates a management request by its registration access token.
pub async fn authorize_management(
    app: &AppState,
    client_id: &str,
    bearer: Option<&str>,
) -> Result<ClientRecord, Error> {
    let Some(bearer) = bearer else {
        return Err(not_authorized());
    };
    let record = app.store.get_client(client_id).await?;
    // SECURITY: compare against a digest even for unknown clients, so both cases take as long.
    let stored = record.as_ref().map(|r| r.registration_token_hash.as_str()).unwrap_or("-");
    if !verify_digest(bearer, stored) {
        return Err(not_authorized());
    }
    record.ok_or_else(not_authorized)
}

/// RFC 7592 §2.2: replaces the client's metadata. A client that becomes confidential gets a
/// new secret (returned once); one that becomes public loses its secret.
pub async fn update(
    app: &AppState,
    mut record: ClientRecord,
    req: RegistrationRequest,
) -> Result<(ClientRecord, Option<ClientSecret>), Error> {
    // RFC 7592 §2.2 has the client repeat its client_id; the Python gateway's client bridge
    // leaves it out. The URL names the client and its registration access token authenticates
    // the request, so an absent id loses nothing; a different one is still refused.
    if req.client_id.as_deref().is_some_and(|id| id != record.client_id) {
        return Err(Error::invalid_request("client_id in the body must equal the client's id"));
    }
    if let Some(presented) = req.client_secret.as_deref() {
        let ok = record.secret_hash.as_deref().is_some_and(|h| verify_digest(presented, h));
        if !ok {
            return Err(Error::invalid_request("client_secret does not match the client's secret"));
        }
    }
    let metadata = req.validate(&app.config)?;
    let mut new_secret = None;
    match (metadata.token_endpoint_auth_method.is_confidential(), record.secret_hash.is_some()) {
        (true, false) => {
            let s = ClientSecret::generate();
            record.secret_hash = Some(s.digest());
            new_secret = Some(s);
        }
        (false, true) => record.secret_hash = None,
        _ => {}
    }
    record.metadata = metadata;
    app.store.put_client(&record).await?;
    tracing::info!(audit = "client_updated", client_id = %record.client_id, "client updated");
    Ok((record, new_secret))
}

/// RFC 7592 §2.3: deletes the client. Its refresh tokens die with it (a refresh needs the
/// client), and its access tokens are revoked at once.
pub async fn delete(app: &AppState, record: &ClientRecord) -> Result<(), Error> {
    app.store.delete_client(&record.client_id).await?;
    let until = now() + app.config.tokens.access_token_ttl as i64;
    app.revocations.revoke(app.store.as_ref(), RevocationTarget::Client(record.client_id.clone()), until).await?;
    tracing::info!(audit = "client_deleted", client_id = %record.client_id, "client deleted; its tokens are revoked");
    Ok(())
}
