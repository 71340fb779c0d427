//! The token endpoint's grants (RFC 6749 §4.1.3, §6): authorization code with PKCE, and
//! refresh token with rotation and reuse detection (RFC 9700 §4.14.2). Every token is bound to
//! the RFC 8707 resource of its grant.

use serde::Serialize;

use super::client::{GRANT_AUTHORIZATION_CODE, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN};
use super::params::Params;
use super::secret::{RefreshToken, digest, random_token};
use super::{pkce, scope};
use crate::AppState;
use crate::error::{Error, ErrorCode};
use crate::jwt::AccessClaims;
use crate::store::{CodeTake, DevicePoll, RefreshRecord, RefreshTake, RevocationTarget, StoreError, User, now};
use crate::verify::revocation::TokenIds;

/// RFC 6749 §5.1 successful response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The JWT access token (RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// A new refresh token, for clients registered for the refresh grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scope.
    pub scope: String,
}

/// What the tokens are issued for.
struct Issue<'a> {
    client_id: &'a str,
    user: &'a User,
    scope: &'a str,
    resource: &'a str,
    family_id: &'a str,
    auth_time: i64,
    refresh: NextRefresh<'a>,
}

/// Whether a refresh token goes with the access token.
enum NextRefresh<'a> {
    /// The client is not registered for the refresh grant.
    None,
    /// A new login: the family's first refresh token.
    First,
    /// Rotation: the presented token (its digest) is used up by the one issued.
    Replaces(&'a str),
}

impl NextRefresh<'_> {
    /// A new login's: a refresh token for clients registered for the refresh grant.
    fn first_if(client: &crate::store::ClientRecord) -> Self {
        if client.metadata.grant_types.iter().any(|g| g == GRANT_REFRESH_TOKEN) { Self::First } else { Self::None }
    }
}

/// RFC 8707 §2.2: a `resource` at the token endpoint must be the one granted.
fn check_resource(params: &Params, granted: &str) -> Result<(), Error> {
    match params.get("resource") {
        Some(r) if r.trim_end_matches('/') != granted => {
            Err(Error::oauth(ErrorCode::InvalidTarget, "resource differs from the one this grant is for"))
        }
        _ => Ok(()),
    }
}

/// Runs the grant named by `grant_type` for an authenticated client.
pub async fn exchange(
    app: &AppState,
    client: &crate::store::ClientRecord,
    params: &Params,
) -> Result<TokenResponse, Error> {
    let grants = &client.metadata.grant_types;
    let may = |g: &str| grants.iter().any(|x| x == g);
    match params.get("grant_type") {
        None => Err(Error::invalid_request("grant_type is required")),
        Some(g @ (GRANT_AUTHORIZATION_CODE | GRANT_REFRESH_TOKEN | GRANT_DEVICE_CODE)) if !may(g) => {
            Err(Error::oauth(ErrorCode::UnauthorizedClient, format!("the client did not register the {g} grant")))
        }
        Some(GRANT_AUTHORIZATION_CODE) => authorization_code(app, client, params).await,
        Some(GRANT_REFRESH_TOKEN) => refresh(app, client, params).await,
        Some(GRANT_DEVICE_CODE) => device_code(app, client, params).await,
        Some(_) => Err(Error::oauth(
            ErrorCode::UnsupportedGrantType,
            format!("supported grant types: authorization_code, refresh_token, {GRANT_DEVICE_CODE}"),
        )),
    }
}

/// RFC 8628 §3.4-3.5: one poll with a device code.
async fn device_code(
    app: &AppState,
    client: &crate::store::ClientRecord,
    params: &Params,
) -> Result<TokenResponse, Error> {
    let code = params.get("device_code").ok_or_else(|| Error::invalid_request("device_code is required"))?;
    let poll = |code: ErrorCode, description: &str| Error::TokenEndpoint { code, description: description.into() };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let record = match app.store.poll_device(&digest(code), &client.client_id, now_ms).await? {
        DevicePoll::Approved(record) => record,
        DevicePoll::Pending => {
            return Err(poll(ErrorCode::AuthorizationPending, "the user has not approved the request yet"));
        }
        DevicePoll::SlowDown => {
            return Err(poll(ErrorCode::SlowDown, "polling too fast: wait 5 seconds longer between requests"));
        }
        DevicePoll::Denied => return Err(poll(ErrorCode::AccessDenied, "the user denied the request")),
        DevicePoll::Expired => return Err(poll(ErrorCode::ExpiredToken, "the device code expired; start over")),
        DevicePoll::Replayed { family_id } => {
            revoke_family(app, &family_id).await?;
            tracing::warn!(audit = "device_code_replay", auth = "failure", client_id = %client.client_id, "device code replayed; its tokens are revoked");
            return Err(Error::invalid_grant("device code was already used; the tokens issued from it are revoked"));
        }
        DevicePoll::WrongClient => {
            tracing::warn!(audit = "device_code_wrong_client", auth = "failure", client_id = %client.client_id, "device code presented by another client");
            return Err(Error::invalid_grant("device code is invalid or was issued to another client"));
        }
        DevicePoll::Unknown => return Err(Error::invalid_grant("device code is invalid or expired")),
    };
    check_resource(params, &record.resource)?;
    let Some(user) = &record.user else {
        return Err(Error::Internal(anyhow::anyhow!("approved device authorization without a user")));
    };
    issue(
        app,
        Issue {
            client_id: &client.client_id,
            user,
            scope: &record.scope,
            resource: &record.resource,
            family_id: &record.family_id,
            auth_time: record.auth_time,
            refresh: NextRefresh::first_if(client),
        },
        GRANT_DEVICE_CODE,
    )
    .await
}

async fn authorization_code(
    app: &AppState,
    client: &crate::store::ClientRecord,
    params: &Params,
) -> Result<TokenResponse, Error> {
    let code = params.get("code").ok_or_else(|| Error::invalid_request("code is required"))?;
    let tombstone = std::time::Duration::from_secs(app.config.tokens.refresh_token_ttl.min(86_400));
    let grant = match app.store.take_code(&digest(code), tombstone).await? {
        CodeTake::Fresh(grant) => grant,
        CodeTake::Replayed { family_id } => {
            // RFC 6749 §4.1.2 / RFC 9700 §4.5: a replayed code revokes what it produced.
            revoke_family(app, &family_id).await?;
            tracing::warn!(audit = "code_replay", auth = "failure", client_id = %client.client_id, "authorization code replayed; its tokens are revoked");
            return Err(Error::invalid_grant(
                "authorization code was already used; the tokens issued from it are revoked",
            ));
        }
        CodeTake::Unknown => {
            return Err(Error::invalid_grant("authorization code is invalid or expired"));
        }
    };
    if grant.client_id != client.client_id {
        tracing::warn!(audit = "code_wrong_client", auth = "failure", client_id = %client.client_id, "code presented by another client");
        return Err(Error::invalid_grant("authorization code was issued to another client"));
    }
    let presented = params.get("redirect_uri");
    if (grant.redirect_uri_explicit || presented.is_some()) && presented != Some(grant.redirect_uri.as_str()) {
        // RFC 6749 §4.1.3: identical to the authorization request's redirect_uri.
        return Err(Error::invalid_grant("redirect_uri differs from the authorization request"));
    }
    pkce::verify(params.get("code_verifier"), &grant.code_challenge).map_err(Error::invalid_grant)?;
    check_resource(params, &grant.resource)?;
    issue(
        app,
        Issue {
            client_id: &client.client_id,
            user: &grant.user,
            scope: &grant.scope,
            resource: &grant.resource,
            family_id: &grant.family_id,
            auth_time: grant.auth_time,
            refresh: NextRefresh::first_if(client),
        },
        "authorization_code",
    )
    .await
}

async fn refresh(app: &AppState, client: &crate::store::ClientRecord, params: &Params) -> Result<TokenResponse, Error> {
    let token = params.get("refresh_token").ok_or_else(|| Error::invalid_request("refresh_token is required"))?;
    let hash = digest(token);
    // Read first, use later: a request refused for its scope or resource leaves the token as
    // it was, and the use itself is one atomic write with the successor (`issue`).
    let record: RefreshRecord = match app.store.get_refresh(&hash).await? {
        RefreshTake::Fresh(r) => r,
        RefreshTake::Reused(r) => return Err(refresh_reused(app, &client.client_id, &r).await),
        RefreshTake::Unknown => return Err(Error::invalid_grant("refresh token is invalid or expired")),
    };
    if record.client_id != client.client_id {
        // SECURITY: a token in another client's hands has leaked: revoke its family.
        revoke_family(app, &record.family_id).await?;
        tracing::warn!(audit = "refresh_wrong_client", auth = "failure", client_id = %client.client_id, "refresh token presented by another client; family revoked");
        return Err(Error::invalid_grant("refresh token was issued to another client"));
    }
    match app.revocations.is_revoked(&refresh_ids(&record)) {
        None => return Err(StoreError::Unavailable("revocation state not current".into()).into()),
        Some(true) => return Err(Error::invalid_grant("refresh token is revoked")),
        Some(false) => {}
    }
    check_resource(params, &record.resource)?;
    if let Err(why) = still_allowed(app, &record.user, &record.resource) {
        // The user was allowed at login but no longer is (the configuration changed, or the
        // user's provider was removed): end the whole login, its access tokens included.
        revoke_family(app, &record.family_id).await?;
        tracing::info!(audit = "refresh_denied", auth = "failure", client_id = %client.client_id, sub = %record.user.id,
            user = %record.user.name, provider = %record.user.provider, reason = %why, "user no longer allowed; login revoked");
        return Err(Error::invalid_grant("the user is no longer allowed to use this server; sign in again"));
    }
    let scope =
        scope::narrow(params.get("scope"), &record.scope).map_err(|e| Error::oauth(ErrorCode::InvalidScope, e))?;
    issue(
        app,
        Issue {
            client_id: &client.client_id,
            user: &record.user,
            scope: &scope,
            resource: &record.resource,
            family_id: &record.family_id,
            auth_time: record.auth_time,
            refresh: NextRefresh::Replaces(&hash),
        },
        "refresh_token",
    )
    .await
}

/// What the revocation set looks a refresh token up by: its login's family, and its user and
/// client as of the login (a revocation of either made after the login covers it).
pub fn refresh_ids(record: &RefreshRecord) -> TokenIds<'_> {
    TokenIds {
        jti: "",
        sid: &record.family_id,
        client_id: &record.client_id,
        sub: &record.user.id,
        iat: record.auth_time,
    }
}

/// RFC 9700 §4.14.2: a rotated token came back; one of the two holders is an attacker, so the
/// whole family goes. The error to answer with.
async fn refresh_reused(app: &AppState, client_id: &str, record: &RefreshRecord) -> Error {
    if let Err(e) = revoke_family(app, &record.family_id).await {
        return e;
    }
    app.metrics.refresh_reuse();
    tracing::warn!(audit = "refresh_reuse", auth = "failure", client_id = %client_id, sub = %record.user.id, "refresh token reused; family revoked");
    Error::invalid_grant("refresh token was already used; this login is revoked")
}

/// The allow-lists again, as configured now, at a refresh: the global `oauth.allowed_users`,
/// the user's provider (still configured, and its allow-lists), and the resource's user policy.
/// Judged on the identity captured at login: no call upstream (GitHub organisations or IdP
/// groups that changed upstream count from the next login; see the README).
fn still_allowed(app: &AppState, user: &User, resource: &str) -> Result<(), String> {
    if !crate::upstream::listed(&app.config.oauth.allowed_users, user) {
        return Err("not on oauth.allowed_users".into());
    }
    app.upstreams.still_allowed(user)?;
    let policy = app.verifier.resources().by_url(resource);
    if policy.is_some_and(|r| !r.allows(&user.id, Some(&user.name), user.email.as_deref(), &user.groups)) {
        return Err(format!("not allowed by the policy of {resource}"));
    }
    Ok(())
}

/// Revokes every token of a grant family (kept as long as a refresh token of it could live).
pub async fn revoke_family(app: &AppState, family_id: &str) -> Result<(), Error> {
    let until = now() + app.config.tokens.refresh_token_ttl.max(app.config.tokens.access_token_ttl) as i64;
    app.revocations.revoke(app.store.as_ref(), RevocationTarget::Family(family_id.to_owned()), until).await?;
    Ok(())
}

/// Signs the access token and stores a new refresh token.
async fn issue(app: &AppState, what: Issue<'_>, grant_type: &'static str) -> Result<TokenResponse, Error> {
    let t = &app.config.tokens;
    let now = now();
    let claims = AccessClaims {
        iss: app.config.server.issuer.clone(),
        sub: what.user.id.clone(),
        aud: what.resource.to_owned(),
        exp: now + t.access_token_ttl as i64,
        iat: now,
        jti: random_token(16),
        client_id: what.client_id.to_owned(),
        scope: what.scope.to_owned(),
        sid: what.family_id.to_owned(),
        auth_time: what.auth_time,
        preferred_username: Some(what.user.name.clone()),
        email: what.user.email.clone(),
        groups: what.user.groups.clone(),
    };
    let access_token = app.keys.sign(&claims)?;
    let refresh_token = match what.refresh {
        NextRefresh::None => None,
        refresh => {
            let token = RefreshToken::generate();
            let record = RefreshRecord {
                client_id: what.client_id.to_owned(),
                family_id: what.family_id.to_owned(),
                scope: what.scope.to_owned(),
                resource: what.resource.to_owned(),
                user: what.user.clone(),
                expires_at: now + t.refresh_token_ttl as i64,
                auth_time: what.auth_time,
            };
            if let NextRefresh::Replaces(used) = refresh {
                match app.store.rotate_refresh(used, Some((&token.digest(), &record))).await? {
                    RefreshTake::Fresh(_) => {}
                    // Used by a concurrent request since it was read: the same replay.
                    RefreshTake::Reused(r) => return Err(refresh_reused(app, what.client_id, &r).await),
                    RefreshTake::Unknown => return Err(Error::invalid_grant("refresh token is invalid or expired")),
                }
            } else {
                app.store.put_refresh(&token.digest(), &record).await?;
            }
            Some(token.secret().to_owned())
        }
    };
    app.metrics.token_issued(grant_type);
    tracing::info!(
        audit = "token_issued", auth = "success", grant_type, client_id = %what.client_id, sub = %what.user.id,
        aud = %what.resource, jti = %claims.jti, "tokens issued"
    );
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: t.access_token_ttl,
        refresh_token,
        scope: what.scope.to_owned(),
    })
}
