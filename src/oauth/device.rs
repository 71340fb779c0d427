//! RFC 8628, the device authorization grant, for clients with no browser at hand (CLI bridges, CI
//! jobs, remote shells): the client gets a device code and a short user code; the user opens
//! `/device` anywhere, logs in (the same upstream login as `/authorize`), sees which client asks
//! for which MCP server and scopes, and approves or denies; the client polls the token endpoint.
//!
//! - User codes are 8 letters from an alphabet without vowels (no words) or look-alikes
//!   (RFC 8628 §6.1), shown as `WDJB-MJHT`, matched case- and separator-insensitively: 20^8 ≈
//!   2.6·10^10 codes, and [`Attempts`] locks an address out after a few wrong ones (§5.1).
//! - The device code is stored as a digest, bound to its client, spent once; polling faster than
//!   `interval` gets `slow_down` and a longer interval (§3.5). The state machine is
//!   [`DeviceRecord::poll`], applied atomically by the store.
//! - The confirmation page names the client, the resource and the scopes, because the user code
//!   may come from someone else (remote phishing, §5.4).
//! - Client authentication at `/device_authorization`: a confidential client that sends only its
//!   `client_id` is accepted there (RFC 8628 §3.1 asks for authentication "as described in RFC
//!   6749 §3.2.1"). Deliberately: the Python gateway's client bridge does exactly this, and a
//!   device code is worth nothing without the client's secret at the token endpoint, which is
//!   checked as always. Credentials that *are* sent must be right.

use std::net::IpAddr;
use std::time::Duration;

use moka::sync::Cache;
use rand::Rng;
use serde::Serialize;

use super::authorize::{AuthorizeError, resolve_resource};
use super::client::{self, ClientCredentials, GRANT_DEVICE_CODE};
use super::params::Params;
use super::scope;
use super::secret::{digest, random_token};
use crate::AppState;
use crate::error::{Error, ErrorCode};
use crate::store::{ClientRecord, DeviceRecord, DeviceStatus, PendingAuthorization, User, now};
use crate::upstream::listed;

/// RFC 8628 §6.1: consonants only, so no words and no 0/O or 1/I confusion.
const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code.
const USER_CODE_LEN: usize = 8;
/// Wrong user codes an address may enter before it is locked out.
const MAX_FAILURES: u32 = 10;
/// How long failures count (and a lockout lasts).
const LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// RFC 8628 §3.2 response.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    /// The device verification code (secret; stored only as a digest).
    pub device_code: String,
    /// The code the user types, `XXXX-XXXX`.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same, with the code filled in (for a link or a QR code).
    pub verification_uri_complete: String,
    /// Seconds the codes live.
    pub expires_in: u64,
    /// Least seconds between polls.
    pub interval: u64,
}

/// A user code as typed: upper-cased, separators and spaces dropped; `None` if it cannot be one.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let code: String =
        input.chars().filter(|c| !matches!(c, '-' | ' ' | '\t')).map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// `WDJBMJHT` → `WDJB-MJHT`.
pub fn display_user_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len().min(USER_CODE_LEN / 2));
    format!("{a}-{b}")
}

fn new_user_code() -> String {
    let mut rng = rand::rng();
    (0..USER_CODE_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// The client of a device authorization request (see the module notes on authentication).
pub async fn client_of(app: &AppState, creds: &ClientCredentials) -> Result<ClientRecord, Error> {
    if creds.secret.is_some() || creds.via_basic {
        return client::authenticate(app, creds).await;
    }
    let unknown = || Error::InvalidClient { description: "unknown client".into(), basic: false };
    let Some(client_id) = creds.client_id.as_deref().filter(|id| !id.is_empty()) else {
        return Err(Error::InvalidClient { description: "client_id is required".into(), basic: false });
    };
    client::lookup(app, client_id).await?.ok_or_else(unknown)
}

/// `POST /device_authorization` (RFC 8628 §3.1-3.2) for `client`.
pub async fn start(app: &AppState, client: &ClientRecord, params: &Params) -> Result<DeviceAuthorization, Error> {
    if !client.metadata.grant_types.iter().any(|g| g == GRANT_DEVICE_CODE) {
        return Err(Error::oauth(ErrorCode::UnauthorizedClient, "the client did not register the device_code grant"));
    }
    let supported = &app.config.oauth.scopes_supported;
    let allowed: Vec<String> = match &client.metadata.scope {
        Some(s) => s.split(' ').filter(|x| supported.contains(&x.to_string())).map(str::to_owned).collect(),
        None => supported.clone(),
    };
    let scope = scope::grant(params.get("scope"), &allowed, &app.config.oauth.default_scopes)
        .map_err(|e| Error::oauth(ErrorCode::InvalidScope, e))?;
    let resource =
        resolve_resource(app, params.get("resource")).map_err(|e| Error::oauth(ErrorCode::InvalidTarget, e))?;
    let t = &app.config.tokens;
    let device_code = random_token(32);
    let mut record = DeviceRecord {
        client_id: client.client_id.clone(),
        scope,
        resource,
        user_code: String::new(),
        expires_at: now() + t.device_code_ttl as i64,
        interval: t.device_poll_interval,
        last_poll_ms: 0,
        status: DeviceStatus::Pending,
        user: None,
        auth_time: 0,
        family_id: random_token(16),
    };
    // A collision with a live code is rare (a few per 10^10): draw again.
    for _ in 0..5 {
        record.user_code = new_user_code();
        if app.store.put_device(&digest(&device_code), &record).await? {
            let base = app.config.base_url();
            let shown = display_user_code(&record.user_code);
            tracing::info!(audit = "device_authorization", client_id = %client.client_id, "device code issued");
            return Ok(DeviceAuthorization {
                device_code,
                verification_uri_complete: format!("{base}/device?user_code={shown}"),
                user_code: shown,
                verification_uri: format!("{base}/device"),
                expires_in: t.device_code_ttl,
                interval: t.device_poll_interval,
            });
        }
    }
    Err(Error::Internal(anyhow::anyhow!("no free user code after 5 draws")))
}

/// Wrong user codes per address (RFC 8628 §5.1: brute force), in memory.
pub struct Attempts {
    failures: Cache<IpAddr, u32>,
}

impl Default for Attempts {
    fn default() -> Self {
        Self { failures: Cache::builder().max_capacity(100_000).time_to_live(LOCKOUT).build() }
    }
}

impl Attempts {
    /// Whether `addr` is locked out.
    pub fn locked(&self, addr: IpAddr) -> bool {
        self.failures.get(&addr).is_some_and(|n| n >= MAX_FAILURES)
    }
    /// Counts a wrong code from `addr` (the lockout lasts [`LOCKOUT`] from the first failure).
    pub fn failed(&self, addr: IpAddr) {
        self.failures.entry(addr).and_upsert_with(|n| n.map_or(1, |e| e.into_value().saturating_add(1)));
    }
}

/// What `/device` found for a user code.
// Returned once per page view and taken apart at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Lookup {
    /// Pending: log the user in to decide (the digest of its device code, and the record).
    Found(String, DeviceRecord),
    /// Expired, decided, or never issued (counted as a failure when never issued).
    NotUsable,
    /// Too many wrong codes from this address.
    LockedOut,
}

/// Looks up a typed user code for the person at `addr`.
pub async fn lookup(app: &AppState, addr: IpAddr, typed: &str) -> Result<Lookup, Error> {
    if app.device_attempts.locked(addr) {
        return Ok(Lookup::LockedOut);
    }
    let Some(code) = normalize_user_code(typed) else {
        app.device_attempts.failed(addr);
        return Ok(Lookup::NotUsable);
    };
    match app.store.device_by_user_code(&code).await? {
        Some((hash, rec)) if rec.status == DeviceStatus::Pending && rec.expires_at > now() => {
            Ok(Lookup::Found(hash, rec))
        }
        Some(_) => Ok(Lookup::NotUsable),
        None => {
            tracing::info!(audit = "device_user_code_unknown", auth = "failure", %addr, "unknown user code");
            app.device_attempts.failed(addr);
            Ok(Lookup::NotUsable)
        }
    }
}

/// The parked login for a found device code (no redirect URI: it ends on the confirmation page).
pub fn pending_login(hash: String, rec: &DeviceRecord) -> PendingAuthorization {
    PendingAuthorization {
        client_id: rec.client_id.clone(),
        redirect_uri: String::new(),
        redirect_uri_explicit: false,
        state: None,
        code_challenge: String::new(),
        scope: rec.scope.clone(),
        resource: rec.resource.clone(),
        browser_binding: String::new(),
        provider: None,
        upstream_verifier: None,
        upstream_nonce: None,
        device: Some(hash),
        user: None,
        auth_time: None,
    }
}

/// The user logged in for a device code: park the login again with the user and send the
/// browser to the confirmation page. (Called from [`super::authorize::complete`].)
pub async fn logged_in(
    app: &AppState,
    mut pending: PendingAuthorization,
    user: User,
) -> Result<String, AuthorizeError> {
    if !listed(&app.config.oauth.allowed_users, &user) {
        tracing::info!(audit = "login_denied", auth = "failure", user = %user.name, provider = %user.provider, "user not allowed");
        return Err(AuthorizeError::Page {
            status: 403,
            message: "This user is not allowed to use this server.".into(),
        });
    }
    tracing::info!(audit = "login", auth = "success", client_id = %pending.client_id, sub = %user.id, user = %user.name, provider = %user.provider, "user logged in for a device code");
    pending.user = Some(user);
    pending.auth_time = Some(now());
    let id = random_token(32);
    app.store
        .put_pending(&id, &pending, Duration::from_secs(app.config.tokens.login_ttl))
        .await
        .map_err(Error::from)?;
    Ok(format!("{}/device/confirm?session={id}", app.config.base_url()))
}

/// The user's decision on the confirmation page; `false` when the device code is no longer
/// waiting for one (expired, or decided in another tab).
pub async fn decide(app: &AppState, pending: &PendingAuthorization, approve: bool) -> Result<bool, Error> {
    let (Some(hash), Some(user)) = (&pending.device, &pending.user) else {
        return Ok(false);
    };
    let approved_by = approve.then(|| (user.clone(), pending.auth_time.unwrap_or_else(now)));
    let decided = app.store.decide_device(hash, approved_by).await?;
    if decided {
        tracing::info!(
            audit = if approve { "device_approved" } else { "device_denied" },
            client_id = %pending.client_id, sub = %user.id, "device authorization decided"
        );
    }
    Ok(decided)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes() {
        for _ in 0..100 {
            let c = new_user_code();
            assert_eq!(normalize_user_code(&c).as_deref(), Some(c.as_str()));
            let shown = display_user_code(&c);
            assert_eq!(shown.len(), 9);
            assert_eq!(normalize_user_code(&shown.to_lowercase()).as_deref(), Some(c.as_str()));
        }
        assert_eq!(normalize_user_code("wdjb mjht").as_deref(), Some("WDJBMJHT"));
        for bad in ["WDJB-MJH", "WDJB-MJHTX", "WDJA-MJHT", "WDJB-MJH1", "", "ÄDJB-MJHT"] {
            assert!(normalize_user_code(bad).is_none(), "{bad}");
        }
    }
}
