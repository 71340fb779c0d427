//! The default backend: one redb file in the data directory, nothing to install.
//!
//! Every write is its own redb transaction committed with `Durability::Immediate`, so a write
//! that was acknowledged survives a crash (`kill -9`) and the file is never left half-written
//! (redb's copy-on-write commit). Single-use takes are atomic because redb serialises write
//! transactions. Records carry their expiry; expired records read as absent and a background
//! sweep deletes them. One process owns the file (redb locks it), so this backend is for one
//! replica; use Redis for more.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    ClientRecord, CodeGrant, CodeTake, Consent, DevicePoll, DeviceRecord, PendingAuthorization, RefreshRecord,
    RefreshTake, Revocation, Store, StoreError, StoreResult, User, now,
};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

const CLIENTS: Table = TableDefinition::new("clients");
const PENDING: Table = TableDefinition::new("pending_authorizations");
const CODES: Table = TableDefinition::new("codes");
const CODE_TOMBSTONES: Table = TableDefinition::new("code_tombstones");
const REFRESH: Table = TableDefinition::new("refresh_tokens");
const REVOCATIONS: Table = TableDefinition::new("revocations");
const DEVICES: Table = TableDefinition::new("device_authorizations");
const USER_CODES: Table = TableDefinition::new("device_user_codes");
const CONSENTS: Table = TableDefinition::new("consents");

/// Every table, created at open.
const TABLES: [Table; 9] =
    [CLIENTS, PENDING, CODES, CODE_TOMBSTONES, REFRESH, REVOCATIONS, DEVICES, USER_CODES, CONSENTS];

/// Tables holding records with an expiry, swept periodically.
const EXPIRING: [Table; 8] = [PENDING, CODES, CODE_TOMBSTONES, REFRESH, REVOCATIONS, DEVICES, USER_CODES, CONSENTS];

/// How a record sits in a table: its value and, for ephemeral records, when it dies.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    #[serde(rename = "exp", default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(rename = "v")]
    value: T,
}

impl<T> Envelope<T> {
    fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|exp| exp > now)
    }
}

/// redb's own page cache (its default is 1 GiB, which reading the tables fills: 16 MiB more
/// resident than the Redis store after `make bench`'s 30,000 refresh grants and a restart). Lookups are by key in shallow B-trees whose
/// inner pages stay in this 1 MiB; leaves come from the OS page cache when not.
const CACHE_BYTES: usize = 1 << 20;

/// A refresh token record plus whether it has been used (rotated) already.
#[derive(Serialize, Deserialize)]
struct RefreshEntry {
    record: RefreshRecord,
    rotated: bool,
}

/// The redb-backed store.
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn encode<T: Serialize>(value: &T, expires_at: Option<i64>) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(&Envelope { expires_at, value }).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<Envelope<T>> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn expiry_after(ttl: Duration) -> i64 {
    now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

/// Reads a live record from an open table.
fn read_live<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> StoreResult<Option<T>> {
    let Some(raw) = table.get(key).map_err(unavailable)? else {
        return Ok(None);
    };
    let env: Envelope<T> = decode(raw.value())?;
    Ok(env.live(now()).then_some(env.value))
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating its directory and every table.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| anyhow::anyhow!("cannot open store file {}: {e}", path.display()))?;
        let txn = db.begin_write()?;
        for table in TABLES {
            txn.open_table(table)?;
        }
        txn.commit()?;
        let store = Self { db: Arc::new(db) };
        store.spawn_sweeper();
        Ok(store)
    }

    /// Deletes expired records once a minute, for as long as the store lives.
    fn spawn_sweeper(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.db);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(db) = weak.upgrade() else { break };
                let swept = tokio::task::spawn_blocking(move || sweep(&db)).await;
                if let Ok(Err(err)) = swept {
                    tracing::warn!(error = %err, "embedded store sweep failed");
                }
            }
        });
    }

    /// Runs `f` in a write transaction on the blocking pool and commits it.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(unavailable)?;
            let out = f(&txn)?;
            txn.commit().map_err(unavailable)?;
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }

    /// Reads one live record.
    async fn get<T: DeserializeOwned + Send + 'static>(&self, table: Table, key: &str) -> StoreResult<Option<T>> {
        let db = self.db.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(table).map_err(unavailable)?;
            read_live(&table, &key)
        })
        .await
        .map_err(unavailable)?
    }

    /// Inserts or replaces one record.
    async fn put<T: Serialize>(&self, table: Table, key: &str, value: &T, expires_at: Option<i64>) -> StoreResult<()> {
        let bytes = encode(value, expires_at)?;
        let key = key.to_owned();
        self.write(move |txn| {
            let mut t = txn.open_table(table).map_err(unavailable)?;
            t.insert(key.as_str(), bytes.as_slice()).map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// Removes one record and returns it if it was live.
    async fn take<T: DeserializeOwned + Send + 'static>(&self, table: Table, key: &str) -> StoreResult<Option<T>> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut t = txn.open_table(table).map_err(unavailable)?;
            let Some(raw) = t.remove(key.as_str()).map_err(unavailable)? else {
                return Ok(None);
            };
            let env: Envelope<T> = decode(raw.value())?;
            Ok(env.live(now()).then_some(env.value))
        })
        .await
    }
}

/// Deletes every expired record in one transaction.
fn sweep(db: &Database) -> StoreResult<()> {
    let txn = db.begin_write().map_err(unavailable)?;
    let now = now();
    for table in EXPIRING {
        let mut t = txn.open_table(table).map_err(unavailable)?;
        t.retain(|_, raw| {
            serde_json::from_slice::<Envelope<serde::de::IgnoredAny>>(raw)
                .map(|env| env.live(now))
                // SECURITY: an undecodable record is kept for an operator to look at, not
                // silently dropped.
                .unwrap_or(true)
        })
        .map_err(unavailable)?;
    }
    txn.commit().map_err(unavailable)
}

impl EmbeddedStore {
    /// Applies `f` to a live device record in one write transaction, writing it back.
    async fn update_device<R: Send + 'static>(
        &self,
        device_hash: &str,
        f: impl FnOnce(Option<&mut DeviceRecord>) -> R + Send + 'static,
    ) -> StoreResult<R> {
        let key = device_hash.to_owned();
        self.write(move |txn| {
            let mut t = txn.open_table(DEVICES).map_err(unavailable)?;
            let Some(mut record) = read_live::<DeviceRecord>(&t, &key)? else {
                return Ok(f(None));
            };
            let out = f(Some(&mut record));
            let bytes = encode(&record, Some(record.keep_until()))?;
            t.insert(key.as_str(), bytes.as_slice()).map_err(unavailable)?;
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn put_client(&self, client: &ClientRecord) -> StoreResult<()> {
        self.put(CLIENTS, &client.client_id, client, None).await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.get(CLIENTS, client_id).await
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        Ok(self.take::<ClientRecord>(CLIENTS, client_id).await?.is_some())
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(CLIENTS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(unavailable)? {
                let (_, raw) = row.map_err(unavailable)?;
                out.push(decode::<ClientRecord>(raw.value())?.value);
            }
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }

    async fn put_consent(&self, key: &str, consent: &Consent, ttl: Duration) -> StoreResult<()> {
        self.put(CONSENTS, key, consent, Some(expiry_after(ttl))).await
    }

    async fn get_consent(&self, key: &str) -> StoreResult<Option<Consent>> {
        self.get(CONSENTS, key).await
    }

    async fn put_pending(&self, id: &str, pending: &PendingAuthorization, ttl: Duration) -> StoreResult<()> {
        self.put(PENDING, id, pending, Some(expiry_after(ttl))).await
    }

    async fn get_pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>> {
        self.get(PENDING, id).await
    }

    async fn take_pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>> {
        self.take(PENDING, id).await
    }

    async fn put_device(&self, device_hash: &str, record: &DeviceRecord) -> StoreResult<bool> {
        let (key, record) = (device_hash.to_owned(), record.clone());
        self.write(move |txn| {
            let mut codes = txn.open_table(USER_CODES).map_err(unavailable)?;
            if read_live::<String>(&codes, &record.user_code)?.is_some() {
                return Ok(false);
            }
            let until = Some(record.keep_until());
            codes.insert(record.user_code.as_str(), encode(&key, until)?.as_slice()).map_err(unavailable)?;
            let mut devices = txn.open_table(DEVICES).map_err(unavailable)?;
            devices.insert(key.as_str(), encode(&record, until)?.as_slice()).map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn device_by_user_code(&self, user_code: &str) -> StoreResult<Option<(String, DeviceRecord)>> {
        let Some(hash) = self.get::<String>(USER_CODES, user_code).await? else {
            return Ok(None);
        };
        Ok(self.get::<DeviceRecord>(DEVICES, &hash).await?.map(|r| (hash, r)))
    }

    async fn decide_device(&self, device_hash: &str, approved_by: Option<(User, i64)>) -> StoreResult<bool> {
        self.update_device(device_hash, move |r| r.is_some_and(|r| r.decide(approved_by, now()))).await
    }

    async fn poll_device(&self, device_hash: &str, client_id: &str, now_ms: i64) -> StoreResult<DevicePoll> {
        let client_id = client_id.to_owned();
        self.update_device(device_hash, move |r| match r {
            Some(r) => r.poll(&client_id, now_ms),
            None => DevicePoll::Unknown,
        })
        .await
    }

    async fn put_code(&self, code_hash: &str, grant: &CodeGrant, ttl: Duration) -> StoreResult<()> {
        self.put(CODES, code_hash, grant, Some(expiry_after(ttl))).await
    }

    async fn take_code(&self, code_hash: &str, tombstone_ttl: Duration) -> StoreResult<CodeTake> {
        let key = code_hash.to_owned();
        self.write(move |txn| {
            let mut codes = txn.open_table(CODES).map_err(unavailable)?;
            let mut tombstones = txn.open_table(CODE_TOMBSTONES).map_err(unavailable)?;
            let taken = match codes.remove(key.as_str()).map_err(unavailable)? {
                Some(raw) => Some(decode::<CodeGrant>(raw.value())?),
                None => None,
            };
            match taken {
                Some(env) if env.live(now()) => {
                    let mark = encode(&env.value.family_id, Some(expiry_after(tombstone_ttl)))?;
                    tombstones.insert(key.as_str(), mark.as_slice()).map_err(unavailable)?;
                    Ok(CodeTake::Fresh(env.value))
                }
                _ => Ok(match read_live::<String>(&tombstones, &key)? {
                    Some(family_id) => CodeTake::Replayed { family_id },
                    None => CodeTake::Unknown,
                }),
            }
        })
        .await
    }

    async fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()> {
        let entry = RefreshEntry { record: record.clone(), rotated: false };
        self.put(REFRESH, token_hash, &entry, Some(record.expires_at)).await
    }

    async fn get_refresh(&self, token_hash: &str) -> StoreResult<RefreshTake> {
        let entry: Option<RefreshEntry> = self.get(REFRESH, token_hash).await?;
        Ok(match entry {
            None => RefreshTake::Unknown,
            Some(e) if e.rotated => RefreshTake::Reused(e.record),
            Some(e) => RefreshTake::Fresh(e.record),
        })
    }

    async fn rotate_refresh(&self, token_hash: &str, next: Option<(&str, &RefreshRecord)>) -> StoreResult<RefreshTake> {
        let key = token_hash.to_owned();
        let next = match next {
            Some((hash, record)) => {
                let entry = RefreshEntry { record: record.clone(), rotated: false };
                Some((hash.to_owned(), encode(&entry, Some(record.expires_at))?))
            }
            None => None,
        };
        self.write(move |txn| {
            let mut t = txn.open_table(REFRESH).map_err(unavailable)?;
            let Some(mut entry) = read_live::<RefreshEntry>(&t, &key)? else {
                return Ok(RefreshTake::Unknown);
            };
            if entry.rotated {
                return Ok(RefreshTake::Reused(entry.record));
            }
            // The used token stays (marked) until it would have expired, so that a replay is
            // recognised as reuse rather than as an unknown token.
            entry.rotated = true;
            let bytes = encode(&entry, Some(entry.record.expires_at))?;
            t.insert(key.as_str(), bytes.as_slice()).map_err(unavailable)?;
            if let Some((hash, bytes)) = &next {
                t.insert(hash.as_str(), bytes.as_slice()).map_err(unavailable)?;
            }
            Ok(RefreshTake::Fresh(entry.record))
        })
        .await
    }

    async fn revoke(&self, revocation: &Revocation) -> StoreResult<()> {
        let key = serde_json::to_string(&revocation.target).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.put(REVOCATIONS, &key, revocation, Some(revocation.expires_at)).await
    }

    async fn revocations(&self) -> StoreResult<Vec<Revocation>> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(REVOCATIONS).map_err(unavailable)?;
            let now = now();
            let mut out = Vec::new();
            for row in table.iter().map_err(unavailable)? {
                let (_, raw) = row.map_err(unavailable)?;
                let env: Envelope<Revocation> = decode(raw.value())?;
                if env.live(now) {
                    out.push(env.value);
                }
            }
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }

    async fn ping(&self) -> StoreResult<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.begin_read().map(drop).map_err(unavailable))
            .await
            .map_err(unavailable)?
    }
}
