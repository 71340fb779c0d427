//! Token revocation (RFC 7009) and introspection (RFC 7662).

use serde_json::{Value, json};

use super::grant::revoke_family;
use super::params::Params;
use super::secret::digest;
use crate::AppState;
use crate::error::{Error, ErrorCode};
use crate::store::{ClientRecord, RefreshTake, RevocationTarget, now};

fn not_yours() -> Error {
    // RFC 7009 §2.1: a token of another client is refused.
    Error::oauth(ErrorCode::UnauthorizedClient, "the token was not issued to this client")
}

/// RFC 7009 §2.1: revokes a refresh token (and its family: every token of that login) or an
/// access token. Unknown and invalid tokens are answered like revoked ones (§2.2).
pub async fn revoke(app: &AppState, client: &ClientRecord, params: &Params) -> Result<(), Error> {
    let token = params.get("token").ok_or_else(|| Error::invalid_request("token is required"))?;
    if let RefreshTake::Fresh(record) = app.store.get_refresh(&digest(token)).await? {
        if record.client_id != client.client_id {
            return Err(not_yours());
        }
        return revoke_family(app, &record.family_id).await;
    }
    if let Ok(claims) = app.keys.verify_ignoring_expiry(token) {
        if claims.client_id != client.client_id {
            return Err(not_yours());
        }
        if claims.exp > now() {
            app.revocations.revoke(app.store.as_ref(), RevocationTarget::Token(claims.jti), claims.exp).await?;
        }
    }
    Ok(())
}

/// RFC 7662 §2.2: what the server knows of a token. Only confidential clients may ask.
pub async fn introspect(app: &AppState, client: &ClientRecord, params: &Params) -> Result<Value, Error> {
    if client.secret_hash.is_none() {
        return Err(Error::invalid_client("introspection requires a confidential client"));
    }
    let token = params.get("token").ok_or_else(|| Error::invalid_request("token is required"))?;
    let inactive = json!({ "active": false });
    if let RefreshTake::Fresh(r) = app.store.get_refresh(&digest(token)).await? {
        if app.revocations.is_revoked(&super::grant::refresh_ids(&r)) != Some(false) {
            return Ok(inactive);
        }
        return Ok(json!({
            "active": true, "token_type": "refresh_token", "client_id": r.client_id, "scope": r.scope,
            "sub": r.user.id, "username": r.user.name, "aud": r.resource, "exp": r.expires_at,
            "iss": app.config.server.issuer,
        }));
    }
    let Ok(c) = app.keys.verify(token) else {
        return Ok(inactive);
    };
    if app.revocations.is_revoked(&(&c).into()) != Some(false) {
        return Ok(inactive);
    }
    Ok(json!({
        "active": true, "token_type": "Bearer", "client_id": c.client_id, "scope": c.scope, "sub": c.sub,
        "username": c.preferred_username, "aud": c.aud, "exp": c.exp, "iat": c.iat, "jti": c.jti, "iss": c.iss,
    }))
}
