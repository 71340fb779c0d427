//! The shared backend: Redis (or a Redis-compatible server), for any number of replicas.
//!
//! Same contract as the embedded store (see [`super::Store`]); every record is a JSON
//! (serde_json) value and every ephemeral record carries a Redis TTL, so an expired record is
//! simply absent. Requires Redis 6.2 or later (`GETDEL`, `SET .. EXAT`).
//!
//! # Key layout
//!
//! Every key and the one pub/sub channel start with `store.key_prefix` (`P` below, default
//! `mcp-authd:`):
//!
//! | key | type | value | TTL |
//! |---|---|---|---|
//! | `P client:<client_id>` | string | [`ClientRecord`] JSON (RFC 7591) | none |
//! | `P pending:<id>` | string | [`PendingAuthorization`] JSON | the login TTL |
//! | `P code:<sha256>` | string | [`CodeGrant`] JSON (RFC 6749 §4.1.2) | the code TTL |
//! | `P code_redeemed:<sha256>` | string | the grant's `family_id` (tombstone) | `tombstone_ttl` |
//! | `P refresh:<sha256>` | string | [`RefreshRecord`] JSON (RFC 6749 §6) | until `expires_at` |
//! | `P refresh_used:<sha256>` | string | `1`: the token was rotated (RFC 9700 §4.14.2) | the record's remaining TTL |
//! | `P revocations` | sorted set | member: [`RevocationTarget`] JSON, score: `expires_at` | the latest `expires_at` |
//! | `P revocations:records` | hash | field: [`RevocationTarget`] JSON, value: [`Revocation`] JSON | the latest `expires_at` |
//! | channel `P revocations` | pub/sub | each new [`Revocation`] JSON (RFC 7009) | — |
//!
//! Revocations are keyed by their target, so revoking the same target again replaces the record
//! instead of adding a second one; the sorted set orders them by expiry so that expired ones are
//! pruned (from both keys, in one Lua script) on every `revoke` and every listing.
//!
//! One Redis server (standalone, or the address of a failover-managed primary); not Redis
//! Cluster, whose slots would split the multi-key scripts below.
//!
//! Single-use operations are atomic on the server: `take_pending` is `GETDEL`; `take_code` and
//! `rotate_refresh` are small Lua scripts (one script runs at a time in Redis).
//!
//! [`RevocationTarget`]: super::RevocationTarget

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Script, TlsCertificates,
};
use deadpool_redis::{Manager, Pool, PoolError, Runtime, TimeoutType};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{
    ClientRecord, CodeGrant, CodeTake, Consent, DevicePoll, DeviceRecord, FeedEvent, PendingAuthorization,
    RefreshRecord, RefreshTake, Revocation, Store, StoreError, StoreResult, User, now,
};
use crate::config::StoreConfig;

/// Longest wait for a TCP (and TLS) connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the answer to one command, and for a free pooled connection.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the readiness `PING`.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest pause between two reconnection attempts of the revocation feed.
const FEED_BACKOFF_MIN: Duration = Duration::from_millis(100);
const FEED_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the revocation feed pings its connection to notice a silently dead peer.
const FEED_PING_INTERVAL: Duration = Duration::from_secs(5);

/// Redeems an authorization code.
///
/// KEYS: code, tombstone. ARGV: tombstone TTL in ms.
/// Returns `{"fresh", grant}`, `{"replayed", family_id}`, `{"unknown"}` or `{"corrupt"}`.
const TAKE_CODE: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then
  local ok, rec = pcall(cjson.decode, v)
  if not ok or type(rec) ~= 'table' or type(rec.family_id) ~= 'string' then
    return {'corrupt'}
  end
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], rec.family_id, 'PX', ARGV[1])
  return {'fresh', v}
end
local family = redis.call('GET', KEYS[2])
if family then
  return {'replayed', family}
end
return {'unknown'}
"#;

/// Uses a refresh token: marks it used (until the record itself expires) and, the first time,
/// stores its successor.
///
/// KEYS: record, used marker, successor record, successor used marker.
/// ARGV: successor JSON and its expiry (seconds since the epoch), or nothing.
/// Returns `{"fresh", record}`, `{"reused", record}`, `{"unknown"}` or `{"corrupt"}`.
const ROTATE_REFRESH: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  return {'unknown'}
end
local ok, rec = pcall(cjson.decode, v)
if not ok or type(rec) ~= 'table' then
  return {'corrupt'}
end
local ttl = redis.call('PTTL', KEYS[1])
local first
if ttl > 0 then
  first = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl)
else
  first = redis.call('SET', KEYS[2], '1', 'NX')
end
if not first then
  return {'reused', v}
end
if ARGV[1] then
  redis.call('SET', KEYS[3], ARGV[1], 'EXAT', ARGV[2])
  redis.call('DEL', KEYS[4])
end
return {'fresh', v}
"#;

/// Drops expired revocations from the sorted set and the hash (KEYS[1], KEYS[2]).
const PRUNE_REVOCATIONS: &str = r#"
local function prune(now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for i = 1, #dead, 1000 do
    redis.call('HDEL', KEYS[2], unpack(dead, i, math.min(i + 999, #dead)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
"#;

/// Records (or replaces) a revocation, prunes expired ones, keeps both keys alive exactly as
/// long as the latest revocation, and publishes the revocation.
///
/// KEYS: sorted set, hash. ARGV: target JSON, expires_at, revocation JSON, now, channel.
const REVOKE: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
prune(ARGV[4])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 2 then
  local exp = math.floor(tonumber(last[2])) + 1
  if exp < 100000000000 then
    redis.call('EXPIREAT', KEYS[1], exp)
    redis.call('EXPIREAT', KEYS[2], exp)
  end
end
redis.call('PUBLISH', ARGV[5], ARGV[3])
return 1
"#;

/// Prunes expired revocations and returns the bodies of the rest.
///
/// KEYS: sorted set, hash. ARGV: now.
const LIST_REVOCATIONS: &str = r#"
prune(ARGV[1])
return redis.call('HVALS', KEYS[2])
"#;

/// Stores a device authorization unless its user code is taken.
///
/// KEYS: user code key, device key. ARGV: device hash, record JSON, keep-until (epoch seconds).
const PUT_DEVICE: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'EXAT', ARGV[3])
return 1
"#;

/// Compare-and-set: replaces KEYS[1] by ARGV[2] (keeping its expiry) only if it still holds
/// ARGV[1]. Device updates are computed in Rust ([`DeviceRecord::poll`], `decide`) and applied
/// with this, retried on a conflict.
const COMPARE_AND_SET: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"#;

/// The Lua scripts, loaded once per server (`EVALSHA`, falling back to `EVAL`).
struct Scripts {
    take_code: Script,
    rotate_refresh: Script,
    revoke: Script,
    list_revocations: Script,
    put_device: Script,
    compare_and_set: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            take_code: Script::new(TAKE_CODE),
            rotate_refresh: Script::new(ROTATE_REFRESH),
            revoke: Script::new(&format!("{PRUNE_REVOCATIONS}{REVOKE}")),
            list_revocations: Script::new(&format!("{PRUNE_REVOCATIONS}{LIST_REVOCATIONS}")),
            put_device: Script::new(PUT_DEVICE),
            compare_and_set: Script::new(COMPARE_AND_SET),
        }
    }
}

/// The Redis-backed store: a deadpool pool of multiplexed connections plus, on demand, one
/// dedicated pub/sub connection for the revocation feed.
pub struct RedisStore {
    pool: Pool,
    /// Connection parameters (credentials and TLS roots included) for the pub/sub connection.
    client: Client,
    /// `store.key_prefix`.
    prefix: String,
    /// Where Redis is, without credentials, for error messages and logs.
    target: String,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: `Client`'s connection info holds the password; show only where and what.
        f.debug_struct("RedisStore").field("target", &self.target).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    // SECURITY: redis and deadpool errors name the failing operation and the server's reply,
    // never the URL or the password.
    StoreError::Unavailable(format!("redis: {err}"))
}

fn pool_error(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => unavailable(e),
        PoolError::Timeout(TimeoutType::Wait) => {
            unavailable(format_args!("no free connection within {COMMAND_TIMEOUT:?}"))
        }
        PoolError::Timeout(TimeoutType::Create) => {
            unavailable(format_args!("no connection within {CONNECT_TIMEOUT:?}"))
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            unavailable(format_args!("no answer to the health check within {COMMAND_TIMEOUT:?}"))
        }
        other => unavailable(other),
    }
}

fn encode<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(what: &str, json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A TTL in whole milliseconds, or `None` when it is zero (the record is born expired).
fn ttl_millis(ttl: Duration) -> Option<u64> {
    match u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX) {
        0 => None,
        ms => Some(ms),
    }
}

/// `redis://host:port/db`, without user name or password.
fn describe(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{db}"),
        ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        _ => "redis".to_owned(),
    }
}

impl RedisStore {
    /// Connects to `store.redis_url` (`redis://` or `rediss://`), applying `store.redis_password`
    /// when the URL carries none, and checks with a `PING` that the server answers, so that a
    /// wrong URL or password fails at start-up. Errors name the server but never the password.
    ///
    /// `rediss://` verifies the server's certificate and host name against the built-in web PKI
    /// roots (`webpki-roots`, not the system store), or against `store.redis_ca_file` (a
    /// private CA) when set. `rediss://...#insecure` is refused (the insecure TLS feature is off).
    pub async fn connect(cfg: &StoreConfig) -> anyhow::Result<Self> {
        let ca = match &cfg.redis_ca_file {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("store.redis_ca_file {}: {e}", path.display()))?)
            }
            None => None,
        };
        Self::connect_with_root_ca(cfg, ca.as_deref()).await
    }

    /// [`RedisStore::connect`], trusting only the PEM certificates in `root_ca_pem` (instead of
    /// the built-in web PKI roots) for a `rediss://` URL.
    async fn connect_with_root_ca(cfg: &StoreConfig, root_ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut info = cfg
            .redis_url
            .expose()
            .into_connection_info()
            .map_err(|e| anyhow::anyhow!("store.redis_url is not a usable Redis URL: {e}"))?;
        if info.redis_settings().password().is_none() && !cfg.redis_password.is_empty() {
            let redis = info.redis_settings().clone().set_password(cfg.redis_password.expose());
            info = info.set_redis_settings(redis);
        }
        let target = describe(&info);
        let client = match root_ca_pem {
            Some(pem) => {
                Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) })
            }
            None => Client::open(info),
        }
        .map_err(|e| anyhow::anyhow!("Redis at {target}: {e}"))?;

        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let manager = Manager::new_with_config(client.get_connection_info().clone(), conn_config)
            .map_err(|e| anyhow::anyhow!("Redis at {target}: {e}"))?;
        // Calls fail after a few seconds when Redis is gone instead of queueing forever: /verify
        // then answers 503 and /ready reports the outage.
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size.max(1))
            .wait_timeout(Some(COMMAND_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(COMMAND_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| anyhow::anyhow!("Redis at {target}: {e}"))?;

        let store = Self { pool, client, prefix: cfg.key_prefix.clone(), target, scripts: Scripts::new() };
        // Start-up may include a TLS handshake on a cold connection: allow it the full
        // connection budget rather than the readiness probe's.
        store
            .ping_within(CONNECT_TIMEOUT + COMMAND_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("cannot use Redis at {}: {e}", store.target))?;
        tracing::info!(redis = %store.target, prefix = %store.prefix, "connected to Redis");
        Ok(store)
    }

    /// `PING` through the pool, failing after `limit` so that a probe never hangs.
    async fn ping_within(&self, limit: Duration) -> StoreResult<()> {
        let answer = tokio::time::timeout(limit, async {
            let mut conn = self.conn().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(unavailable)
        })
        .await
        .map_err(|_| StoreError::Unavailable(format!("redis: no answer to PING within {limit:?}")))??;
        if answer == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("redis: unexpected PING answer {answer:?}")))
        }
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// The sorted set of revocations, also the name of the pub/sub channel.
    fn revocations_key(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    fn revocation_records_key(&self) -> String {
        format!("{}revocations:records", self.prefix)
    }

    async fn conn(&self) -> StoreResult<deadpool_redis::Connection> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn).await.map_err(unavailable)
    }

    async fn get_json<T: DeserializeOwned>(&self, kind: &str, id: &str) -> StoreResult<Option<T>> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(self.key(kind, id))).await?;
        raw.map(|json| decode(kind, &json)).transpose()
    }

    /// Applies `f` to a live device record and writes it back atomically (compare-and-set,
    /// retried when another replica changed it in between).
    async fn update_device<R>(
        &self,
        device_hash: &str,
        mut f: impl FnMut(Option<&mut DeviceRecord>) -> R,
    ) -> StoreResult<R> {
        let key = self.key("device", device_hash);
        for _ in 0..16 {
            let raw: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
            let Some(raw) = raw else {
                return Ok(f(None));
            };
            let mut record: DeviceRecord = decode("device", &raw)?;
            let out = f(Some(&mut record));
            let updated = encode(&record)?;
            if updated == raw {
                return Ok(out);
            }
            let mut conn = self.conn().await?;
            let swapped: i64 = self
                .scripts
                .compare_and_set
                .key(&key)
                .arg(&raw)
                .arg(&updated)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if swapped == 1 {
                return Ok(out);
            }
        }
        Err(StoreError::Unavailable("device authorization kept changing under concurrent updates".into()))
    }

    /// `SET key json PX ttl`; a zero TTL deletes the key instead (the record would be dead).
    async fn put_json<T: Serialize>(&self, kind: &str, id: &str, value: &T, ttl: Duration) -> StoreResult<()> {
        let json = encode(value)?;
        let key = self.key(kind, id);
        match ttl_millis(ttl) {
            Some(ms) => self.query(redis::cmd("SET").arg(key).arg(json).arg("PX").arg(ms)).await,
            None => self.query(redis::cmd("DEL").arg(key)).await,
        }
    }
}

/// Splits a script's `{status, payload?}` answer.
fn script_reply(reply: Vec<String>) -> StoreResult<(String, Option<String>)> {
    let mut it = reply.into_iter();
    let status = it.next().ok_or_else(|| StoreError::Unavailable("redis: empty script reply".into()))?;
    Ok((status, it.next()))
}

fn payload(what: &str, payload: Option<String>) -> StoreResult<String> {
    payload.ok_or_else(|| StoreError::Unavailable(format!("redis: {what} script reply too short")))
}

#[async_trait]
impl Store for RedisStore {
    async fn put_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let json = encode(client)?;
        self.query(redis::cmd("SET").arg(self.key("client", &client.client_id)).arg(json)).await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.get_json("client", client_id).await
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let n: u64 = self.query(redis::cmd("DEL").arg(self.key("client", client_id))).await?;
        Ok(n > 0)
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        // SCAN, not KEYS: the server keeps answering others while the keyspace is walked.
        let pattern = self.key("client", "*");
        let mut conn = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.map_err(unavailable)?;
                for json in values.into_iter().flatten() {
                    out.push(decode("client", &json)?);
                }
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn put_consent(&self, key: &str, consent: &Consent, ttl: Duration) -> StoreResult<()> {
        self.put_json("consent", key, consent, ttl).await
    }

    async fn get_consent(&self, key: &str) -> StoreResult<Option<Consent>> {
        self.get_json("consent", key).await
    }

    async fn put_pending(&self, id: &str, pending: &PendingAuthorization, ttl: Duration) -> StoreResult<()> {
        self.put_json("pending", id, pending, ttl).await
    }

    async fn get_pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>> {
        self.get_json("pending", id).await
    }

    async fn take_pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>> {
        let raw: Option<String> = self.query(redis::cmd("GETDEL").arg(self.key("pending", id))).await?;
        raw.map(|json| decode("pending", &json)).transpose()
    }

    async fn put_device(&self, device_hash: &str, record: &DeviceRecord) -> StoreResult<bool> {
        let mut conn = self.conn().await?;
        let stored: i64 = self
            .scripts
            .put_device
            .key(self.key("device_user", &record.user_code))
            .key(self.key("device", device_hash))
            .arg(device_hash)
            .arg(encode(record)?)
            .arg(record.keep_until())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(stored == 1)
    }

    async fn device_by_user_code(&self, user_code: &str) -> StoreResult<Option<(String, DeviceRecord)>> {
        let Some(hash) =
            self.query::<Option<String>>(redis::cmd("GET").arg(self.key("device_user", user_code))).await?
        else {
            return Ok(None);
        };
        Ok(self.get_json::<DeviceRecord>("device", &hash).await?.map(|r| (hash, r)))
    }

    async fn decide_device(&self, device_hash: &str, approved_by: Option<(User, i64)>) -> StoreResult<bool> {
        let now = super::now();
        self.update_device(device_hash, |r| r.is_some_and(|r| r.decide(approved_by.clone(), now))).await
    }

    async fn poll_device(&self, device_hash: &str, client_id: &str, now_ms: i64) -> StoreResult<DevicePoll> {
        self.update_device(device_hash, |r| match r {
            Some(r) => r.poll(client_id, now_ms),
            None => DevicePoll::Unknown,
        })
        .await
    }

    async fn put_code(&self, code_hash: &str, grant: &CodeGrant, ttl: Duration) -> StoreResult<()> {
        self.put_json("code", code_hash, grant, ttl).await
    }

    async fn take_code(&self, code_hash: &str, tombstone_ttl: Duration) -> StoreResult<CodeTake> {
        // A zero tombstone TTL still needs a valid PX; one millisecond is as good as none.
        let tombstone_ms = ttl_millis(tombstone_ttl).unwrap_or(1);
        let mut conn = self.conn().await?;
        let reply: Vec<String> = self
            .scripts
            .take_code
            .key(self.key("code", code_hash))
            .key(self.key("code_redeemed", code_hash))
            .arg(tombstone_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let (status, data) = script_reply(reply)?;
        match status.as_str() {
            "fresh" => Ok(CodeTake::Fresh(decode("code", &payload("take_code", data)?)?)),
            "replayed" => Ok(CodeTake::Replayed { family_id: payload("take_code", data)? }),
            "unknown" => Ok(CodeTake::Unknown),
            "corrupt" => Err(StoreError::Corrupt("code: not a JSON grant with a family_id".into())),
            other => Err(StoreError::Unavailable(format!("redis: unexpected take_code reply {other:?}"))),
        }
    }

    async fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()> {
        let json = encode(record)?;
        let key = self.key("refresh", token_hash);
        let used = self.key("refresh_used", token_hash);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match u64::try_from(record.expires_at) {
            // Expires with the token itself (absolute time, so replicas agree).
            Ok(at) if record.expires_at > now() => {
                pipe.cmd("SET").arg(&key).arg(json).arg("EXAT").arg(at).ignore();
            }
            // Already dead: nothing to keep.
            _ => {
                pipe.cmd("DEL").arg(&key).ignore();
            }
        }
        // A (re)stored token starts unused, as in the embedded store.
        pipe.cmd("DEL").arg(used).ignore();
        let mut conn = self.conn().await?;
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn get_refresh(&self, token_hash: &str) -> StoreResult<RefreshTake> {
        let (raw, used): (Option<String>, Option<String>) = self
            .query(redis::cmd("MGET").arg(self.key("refresh", token_hash)).arg(self.key("refresh_used", token_hash)))
            .await?;
        match (raw, used) {
            (Some(json), None) => decode("refresh", &json).map(RefreshTake::Fresh),
            (Some(json), Some(_)) => decode("refresh", &json).map(RefreshTake::Reused),
            (None, _) => Ok(RefreshTake::Unknown),
        }
    }

    async fn rotate_refresh(&self, token_hash: &str, next: Option<(&str, &RefreshRecord)>) -> StoreResult<RefreshTake> {
        let mut invocation = self.scripts.rotate_refresh.prepare_invoke();
        invocation.key(self.key("refresh", token_hash)).key(self.key("refresh_used", token_hash));
        match next {
            // A successor that is already dead is not stored (as in `put_refresh`).
            Some((hash, record)) if record.expires_at > now() => {
                invocation
                    .key(self.key("refresh", hash))
                    .key(self.key("refresh_used", hash))
                    .arg(encode(record)?)
                    .arg(record.expires_at);
            }
            _ => {
                invocation.key(self.key("refresh", "-")).key(self.key("refresh_used", "-"));
            }
        }
        let mut conn = self.conn().await?;
        let reply: Vec<String> = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        let (status, data) = script_reply(reply)?;
        match status.as_str() {
            "fresh" => Ok(RefreshTake::Fresh(decode("refresh", &payload("rotate_refresh", data)?)?)),
            "reused" => Ok(RefreshTake::Reused(decode("refresh", &payload("rotate_refresh", data)?)?)),
            "unknown" => Ok(RefreshTake::Unknown),
            "corrupt" => Err(StoreError::Corrupt("refresh: not a JSON record".into())),
            other => Err(StoreError::Unavailable(format!("redis: unexpected rotate_refresh reply {other:?}"))),
        }
    }

    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        let target = encode(&revocation.target)?;
        let body = encode(revocation)?;
        let mut conn = self.conn().await?;
        self.scripts
            .revoke
            .key(self.revocations_key())
            .key(self.revocation_records_key())
            .arg(target)
            .arg(revocation.expires_at)
            .arg(body)
            .arg(now())
            .arg(self.revocations_key())
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn revocations(&self) -> StoreResult<Vec<Revocation>> {
        let now = now();
        let mut conn = self.conn().await?;
        let bodies: Vec<String> = self
            .scripts
            .list_revocations
            .key(self.revocations_key())
            .key(self.revocation_records_key())
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(bodies.len());
        for json in bodies {
            let rev: Revocation = decode("revocation", &json)?;
            if rev.expires_at > now {
                out.push(rev);
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.ping_within(PING_TIMEOUT).await
    }

    /// Opens a dedicated pub/sub connection subscribed to `<prefix>revocations`, held by a
    /// background task until the returned stream is dropped. Each call opens its own
    /// connection; the server needs one feed per process.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    fn revocation_feed(&self) -> Option<BoxStream<'static, FeedEvent>> {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(run_feed(self.client.clone(), self.revocations_key(), self.target.clone(), tx));
        Some(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|event| (event, rx)) }).boxed())
    }
}

/// Why one subscription ended.
enum FeedEnd {
    /// The consumer dropped the stream: stop for good.
    Closed,
    /// The connection broke (or never came up): report and reconnect.
    Lost(String),
}

/// Keeps one subscription alive, reconnecting with a capped exponential backoff, until the
/// receiving stream is dropped.
async fn run_feed(client: Client, channel: String, target: String, tx: mpsc::Sender<FeedEvent>) {
    let mut backoff = FEED_BACKOFF_MIN;
    // Whether the consumer already knows the feed is down (one Disconnected per outage,
    // including a first connection that fails).
    let mut down_reported = false;
    loop {
        let (end, was_connected) = subscribe_once(&client, &channel, &tx).await;
        match end {
            FeedEnd::Closed => return,
            FeedEnd::Lost(why) => {
                tracing::warn!(redis = %target, error = %why, "revocation feed down");
            }
        }
        if was_connected {
            backoff = FEED_BACKOFF_MIN;
            down_reported = false;
        }
        if !down_reported {
            // SECURITY: consumers must distrust their revocation view until the next Connected.
            if tx.send(FeedEvent::Disconnected).await.is_err() {
                return;
            }
            down_reported = true;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(FEED_BACKOFF_MAX);
    }
}

/// One connection's life: connect, subscribe, announce `Connected`, relay messages, and ping
/// now and then so that a silently dead connection is noticed. Returns how it ended and
/// whether `Connected` was sent.
async fn subscribe_once(client: &Client, channel: &str, tx: &mpsc::Sender<FeedEvent>) -> (FeedEnd, bool) {
    let setup = async {
        let pubsub = client.get_async_pubsub().await?;
        let (mut sink, stream) = pubsub.split();
        sink.subscribe(channel).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    let (mut sink, mut stream) = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT + COMMAND_TIMEOUT, setup) => match r {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return (FeedEnd::Lost(e.to_string()), false),
            Err(_) => return (FeedEnd::Lost("timed out subscribing".into()), false),
        },
        () = tx.closed() => return (FeedEnd::Closed, false),
    };
    if tx.send(FeedEvent::Connected).await.is_err() {
        return (FeedEnd::Closed, true);
    }
    let mut ping = tokio::time::interval(FEED_PING_INTERVAL);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return (FeedEnd::Lost("connection closed".into()), true);
                };
                let event = match serde_json::from_slice::<Revocation>(msg.get_payload_bytes()) {
                    Ok(rev) => FeedEvent::Revoked(rev),
                    Err(e) => {
                        // SECURITY: a revocation we cannot read may be one we miss; make the
                        // consumer fall back to the stored list (Disconnected, then Connected).
                        tracing::warn!(error = %e, "undecodable message on the revocation channel");
                        if tx.send(FeedEvent::Disconnected).await.is_err() {
                            return (FeedEnd::Closed, true);
                        }
                        FeedEvent::Connected
                    }
                };
                if tx.send(event).await.is_err() {
                    return (FeedEnd::Closed, true);
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return (FeedEnd::Lost(e.to_string()), true),
                    Err(_) => return (FeedEnd::Lost("no answer to PING".into()), true),
                }
            }
            () = tx.closed() => return (FeedEnd::Closed, true),
        }
    }
}
