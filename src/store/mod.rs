//! Persistent state of the authorization server behind one small async trait.
//!
//! Everything the server remembers between requests goes through [`Store`]: registered clients
//! (RFC 7591), authorization requests waiting for the user to log in, authorization codes
//! (RFC 6749 §4.1.2, single use), refresh tokens (RFC 6749 §6, rotated with reuse detection per
//! RFC 9700 §4.14.2) and revocations (RFC 7009). Two backends implement it, `embedded` (a redb
//! file, the default) and `redis` (shared by any number of replicas); `tests/store_conformance.rs`
//! runs the same suite against both.
//!
//! Secrets never reach the store in clear: codes and refresh tokens are looked up by their
//! SHA-256 digest (see [`crate::oauth::secret`]) and client secrets are stored as digests.

pub mod embedded;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::config::{Config, StoreKind};
use crate::oauth::client::ClientMetadata;

/// A failure of the storage backend itself (never "not found", which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded; the record is left untouched.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The user as the upstream identity provider described them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable subject identifier (`sub`); GitHub's numeric id, or `local:<username>`.
    pub id: String,
    /// Display / login name (`X-User-Name`).
    pub name: String,
    /// Verified e-mail address, when the provider gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Which provider authenticated the user (`github`, `local`, ...).
    pub provider: String,
    /// Organisations / groups (GitHub organisations, configured groups), for resource policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A registered client (RFC 7591 §3.2.1), with its secrets reduced to digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// RFC 7591 `client_id`.
    pub client_id: String,
    /// SHA-256 digest of the client secret; `None` for public clients.
    pub secret_hash: Option<String>,
    /// SHA-256 digest of the RFC 7592 registration access token.
    pub registration_token_hash: String,
    /// Seconds since the epoch at which the client was registered.
    pub client_id_issued_at: i64,
    /// The registered metadata, validated.
    pub metadata: ClientMetadata,
}

/// A user's consent to a client for a resource, remembered (`oauth.consent = "remember"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The scopes consented to (space separated); a request within them is not asked again.
    pub scope: String,
    /// When (seconds since the epoch): a revocation of the user or the client after this
    /// forgets it.
    pub granted_at: i64,
}

/// An authorization request parked while the user logs in upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The client that asked.
    pub client_id: String,
    /// The redirect URI the code will be delivered to (validated against the registration).
    pub redirect_uri: String,
    /// Whether the request carried `redirect_uri` (then the token request must repeat it).
    pub redirect_uri_explicit: bool,
    /// Client state, echoed back verbatim.
    pub state: Option<String>,
    /// RFC 7636 S256 code challenge.
    pub code_challenge: String,
    /// Granted scope (space separated, already narrowed to what the server supports).
    pub scope: String,
    /// RFC 8707 resource the token will be bound to.
    pub resource: String,
    /// Digest of the browser-binding cookie set at /authorize (login CSRF protection).
    pub browser_binding: String,
    /// Upstream provider chosen for this login, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Upstream PKCE verifier (the upstream leg uses PKCE too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_verifier: Option<String>,
    /// OpenID Connect nonce sent upstream; the ID token must carry it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_nonce: Option<String>,
    /// RFC 8628: the digest of the device code this login approves or denies (then there is no
    /// redirect URI, and the login ends on a confirmation page instead of with a code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The user who logged in, while the device confirmation page waits for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// When that user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// What an authorization code stands for (RFC 6749 §4.1.2: bound to client and redirect URI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    /// The client the code was issued to; no other client may redeem it.
    pub client_id: String,
    /// The redirect URI used at /authorize.
    pub redirect_uri: String,
    /// Whether `redirect_uri` was sent at /authorize (RFC 6749 §4.1.3).
    pub redirect_uri_explicit: bool,
    /// RFC 7636 S256 challenge the verifier must match.
    pub code_challenge: String,
    /// Granted scope.
    pub scope: String,
    /// RFC 8707 resource (the access token's audience).
    pub resource: String,
    /// The authenticated user.
    pub user: User,
    /// The grant family every token issued from this code belongs to.
    pub family_id: String,
    /// When the user authenticated (seconds since the epoch).
    pub auth_time: i64,
}

/// The outcome of redeeming an authorization code.
// Returned once per redemption and moved straight into the grant: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum CodeTake {
    /// First use: the grant it stood for. The code is gone from the store.
    Fresh(CodeGrant),
    /// The code was redeemed before: the family of tokens issued from it must be revoked
    /// (RFC 6749 §4.1.2, RFC 9700 §4.1.1 / §4.5).
    Replayed {
        /// Family of the tokens issued at the first redemption.
        family_id: String,
    },
    /// Never issued, or expired.
    Unknown,
}

/// A refresh token's grant (RFC 6749 §6), bound to client and resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The client it was issued to.
    pub client_id: String,
    /// The grant family (one per authorization code redemption).
    pub family_id: String,
    /// Granted scope.
    pub scope: String,
    /// RFC 8707 resource.
    pub resource: String,
    /// The user.
    pub user: User,
    /// Seconds since the epoch after which the token is dead.
    pub expires_at: i64,
    /// When the user authenticated.
    pub auth_time: i64,
}

/// What a refresh token is found to be, when read or rotated.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshTake {
    /// Not yet used (after [`Store::rotate_refresh`]: used now, and replaced).
    Fresh(RefreshRecord),
    /// The token was already rotated: someone replayed it (RFC 9700 §4.14.2).
    Reused(RefreshRecord),
    /// Never issued or expired.
    Unknown,
}

/// RFC 8628: a device authorization, from `POST /device_authorization` until its device code is
/// redeemed or dead. Stored under the device code's digest, found by its user code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The client that asked; only it may poll (RFC 8628 §3.4).
    pub client_id: String,
    /// Granted scope.
    pub scope: String,
    /// RFC 8707 resource.
    pub resource: String,
    /// The user code, normalised (upper case, no separator).
    pub user_code: String,
    /// Seconds since the epoch after which the device code is dead (`expired_token`).
    pub expires_at: i64,
    /// Least seconds between two polls; raised by 5 at each `slow_down` (RFC 8628 §3.5).
    pub interval: u64,
    /// When the client last polled (milliseconds since the epoch), 0 before the first poll.
    pub last_poll_ms: i64,
    /// Where the user's decision stands.
    pub status: DeviceStatus,
    /// The user who approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// When that user authenticated.
    #[serde(default)]
    pub auth_time: i64,
    /// The grant family of the tokens issued for it (revoked if the device code is replayed).
    pub family_id: String,
}

/// Where a device authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// The user has not decided yet.
    Pending,
    /// Approved: the next poll gets the tokens.
    Approved,
    /// Denied by the user.
    Denied,
    /// Tokens were issued; the device code is spent.
    Redeemed,
}

/// The outcome of one poll of the token endpoint with a device code (RFC 8628 §3.5).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum DevicePoll {
    /// No such device code (never issued, or long gone).
    Unknown,
    /// Another client's device code (nothing changed).
    WrongClient,
    /// `expired_token`.
    Expired,
    /// `authorization_pending`.
    Pending,
    /// `slow_down`: polled before `interval` passed; the interval grew by 5 s.
    SlowDown,
    /// `access_denied`.
    Denied,
    /// Approved and now spent: issue the tokens.
    Approved(DeviceRecord),
    /// Spent before: a replay; the family must be revoked.
    Replayed {
        /// Family of the tokens issued at the first redemption.
        family_id: String,
    },
}

impl DeviceRecord {
    /// One poll by `client_id` at `now_ms` (RFC 8628 §3.5), as every backend applies it
    /// atomically: updates the record (poll time, interval, spent) and says what to answer.
    pub fn poll(&mut self, client_id: &str, now_ms: i64) -> DevicePoll {
        if !crate::oauth::secret::constant_time_eq(client_id, &self.client_id) {
            return DevicePoll::WrongClient;
        }
        if now_ms / 1000 >= self.expires_at {
            return DevicePoll::Expired;
        }
        if self.status == DeviceStatus::Redeemed {
            return DevicePoll::Replayed { family_id: self.family_id.clone() };
        }
        let interval_ms = i64::try_from(self.interval).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        let too_soon = self.last_poll_ms > 0 && now_ms < self.last_poll_ms.saturating_add(interval_ms);
        self.last_poll_ms = now_ms;
        if too_soon {
            self.interval = self.interval.saturating_add(5);
            return DevicePoll::SlowDown;
        }
        match self.status {
            DeviceStatus::Pending => DevicePoll::Pending,
            DeviceStatus::Denied => DevicePoll::Denied,
            DeviceStatus::Approved => {
                self.status = DeviceStatus::Redeemed;
                DevicePoll::Approved(self.clone())
            }
            DeviceStatus::Redeemed => unreachable!("handled above"),
        }
    }

    /// The user's decision, taken only while pending and alive; `false` otherwise.
    pub fn decide(&mut self, approved_by: Option<(User, i64)>, now: i64) -> bool {
        if self.status != DeviceStatus::Pending || now >= self.expires_at {
            return false;
        }
        match approved_by {
            Some((user, auth_time)) => {
                self.status = DeviceStatus::Approved;
                self.user = Some(user);
                self.auth_time = auth_time;
            }
            None => self.status = DeviceStatus::Denied,
        }
        true
    }

    /// How long the store keeps it: a while past `expires_at`, to answer `expired_token` and
    /// to recognise a replay.
    pub fn keep_until(&self) -> i64 {
        self.expires_at.saturating_add(600)
    }
}

/// What a revocation covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum RevocationTarget {
    /// One access token, by `jti`.
    Token(String),
    /// Every token of one grant family (`sid` claim / refresh token family).
    Family(String),
    /// Every token issued to a client before the revocation (client deleted).
    Client(String),
    /// Every token issued for a user before the revocation.
    User(String),
}

/// A revocation, kept until no token it covers can still be alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    pub target: RevocationTarget,
    /// When (seconds since the epoch); `Client`/`User` revocations cover tokens issued up to then.
    pub revoked_at: i64,
    /// When the record may be forgotten (seconds since the epoch).
    pub expires_at: i64,
}

/// The storage contract. Every ephemeral record carries a TTL and disappears by itself.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces a client registration.
    async fn put_client(&self, client: &ClientRecord) -> StoreResult<()>;
    /// Looks a client up by `client_id`.
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;
    /// Deletes a client; `true` when it existed.
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool>;
    /// Every registered client, in no particular order (the operator's `clients list`).
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;

    /// Remembers a consent under `key` (a digest of user, client and resource) for `ttl`.
    async fn put_consent(&self, key: &str, consent: &Consent, ttl: Duration) -> StoreResult<()>;
    /// The consent remembered under `key`, if any and not expired.
    async fn get_consent(&self, key: &str) -> StoreResult<Option<Consent>>;
    /// Parks an authorization request under a random id for `ttl`.
    async fn put_pending(&self, id: &str, pending: &PendingAuthorization, ttl: Duration) -> StoreResult<()>;
    /// Reads a parked request without consuming it.
    async fn get_pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>>;
    /// Removes and returns a parked request (atomic: one caller wins).
    async fn take_pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>>;

    /// Stores an authorization code under its digest for `ttl`.
    async fn put_code(&self, code_hash: &str, grant: &CodeGrant, ttl: Duration) -> StoreResult<()>;
    /// Redeems a code atomically. A redeemed code leaves a tombstone for `tombstone_ttl` so
    /// that a replay is recognised as such.
    async fn take_code(&self, code_hash: &str, tombstone_ttl: Duration) -> StoreResult<CodeTake>;

    /// Stores a refresh token under its digest until `record.expires_at`.
    async fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()>;
    /// Reads a refresh token without using it.
    async fn get_refresh(&self, token_hash: &str) -> StoreResult<RefreshTake>;
    /// Uses a refresh token in one atomic write (RFC 9700 §4.14.2): when it is fresh, marks it
    /// used (kept until it would have expired, so that a replay reads as reuse) and stores its
    /// successor `next` (digest, record), if any; otherwise changes nothing. Says what the
    /// token was. One write, so one fsync per refresh grant on the embedded store.
    async fn rotate_refresh(&self, token_hash: &str, next: Option<(&str, &RefreshRecord)>) -> StoreResult<RefreshTake>;

    /// Stores a device authorization under its device code's digest, findable by its user code
    /// until [`DeviceRecord::keep_until`]. `false` (and nothing stored) when the user code is
    /// already taken: the caller draws another.
    async fn put_device(&self, device_hash: &str, record: &DeviceRecord) -> StoreResult<bool>;
    /// The device authorization a user code names: its device code digest and record.
    async fn device_by_user_code(&self, user_code: &str) -> StoreResult<Option<(String, DeviceRecord)>>;
    /// Records the user's decision ([`DeviceRecord::decide`]) atomically; `false` when there
    /// was nothing pending to decide.
    async fn decide_device(&self, device_hash: &str, approved_by: Option<(User, i64)>) -> StoreResult<bool>;
    /// One poll ([`DeviceRecord::poll`]) atomically: of two concurrent polls of an approved
    /// device code, one gets the tokens and the other a replay.
    async fn poll_device(&self, device_hash: &str, client_id: &str, now_ms: i64) -> StoreResult<DevicePoll>;

    /// Records a revocation (idempotent) and tells every replica about it.
    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()>;
    /// All revocations that have not expired yet.
    async fn revocations(&self) -> StoreResult<Vec<Revocation>>;

    /// Checks that the backend answers (readiness).
    async fn ping(&self) -> StoreResult<()>;

    /// Revocations recorded by other replicas, as they happen. `None` for a backend that only
    /// one process can use (every revocation is then local and applied directly).
    fn revocation_feed(&self) -> Option<BoxStream<'static, FeedEvent>> {
        None
    }
}

/// What the live revocation feed of a shared backend reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// The feed is (re)connected: reload [`Store::revocations`], then trust the feed again.
    Connected,
    /// Another replica (or this one) recorded a revocation.
    Revoked(Revocation),
    /// The feed is down: revocations may be missed until the next `Connected`.
    Disconnected,
}

/// Opens the backend the configuration names.
pub async fn from_config(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.kind {
        StoreKind::Embedded => {
            let path = config.embedded_store_path();
            Ok(Arc::new(embedded::EmbeddedStore::open(&path)?))
        }
        StoreKind::Redis => Ok(Arc::new(redis::RedisStore::connect(&config.store).await?)),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
