//! One conformance suite for every [`Store`] backend: the embedded redb file and Redis (a real
//! `redis-server` per test, see `tests/common/redis.rs`).
//!
//! The suite checks the contract of `src/store/mod.rs`: single use of codes (RFC 6749 §4.1.2)
//! with replay detection, refresh token rotation with reuse detection (RFC 9700 §4.14.2),
//! idempotent revocations (RFC 7009), and TTL expiry, using short real TTLs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use mcp_authd::config::{SecretString, StoreConfig, StoreKind};
use mcp_authd::oauth::client::{AuthMethod, ClientMetadata};
use mcp_authd::store::embedded::EmbeddedStore;
use mcp_authd::store::redis::RedisStore;
use mcp_authd::store::{
    ClientRecord, CodeGrant, CodeTake, Consent, DevicePoll, DeviceRecord, DeviceStatus, FeedEvent,
    PendingAuthorization, RefreshRecord, RefreshTake, Revocation, RevocationTarget, Store, User, now,
};

use common::redis::{RedisServer, free_port};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn user() -> User {
    User {
        id: "12345".into(),
        name: "octocat".into(),
        email: Some("octocat@example.com".into()),
        provider: "github".into(),
        groups: vec!["acme".into()],
    }
}

fn client(client_id: &str, name: &str) -> ClientRecord {
    ClientRecord {
        client_id: client_id.into(),
        secret_hash: Some("c2VjcmV0LWRpZ2VzdA".into()),
        registration_token_hash: "cmVnLXRva2VuLWRpZ2VzdA".into(),
        client_id_issued_at: 1_700_000_000,
        metadata: ClientMetadata {
            redirect_uris: vec!["http://127.0.0.1:33418/callback".into()],
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            client_name: Some(name.into()),
            client_uri: None,
            logo_uri: None,
            scope: Some("mcp".into()),
            contacts: vec![],
            tos_uri: None,
            policy_uri: None,
            software_id: None,
            software_version: None,
            application_type: Some("native".into()),
        },
    }
}

fn pending() -> PendingAuthorization {
    PendingAuthorization {
        client_id: "client-1".into(),
        redirect_uri: "http://127.0.0.1:33418/callback".into(),
        redirect_uri_explicit: true,
        state: Some("xyz".into()),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        scope: "mcp".into(),
        resource: "https://mcp.example.com/mcp".into(),
        browser_binding: "YmluZGluZw".into(),
        provider: Some("github".into()),
        upstream_verifier: None,
        upstream_nonce: None,
        device: Some("ZGV2aWNlLWRpZ2VzdA".into()),
        user: Some(user()),
        auth_time: Some(1_700_000_000),
    }
}

fn grant(family_id: &str) -> CodeGrant {
    CodeGrant {
        client_id: "client-1".into(),
        redirect_uri: "http://127.0.0.1:33418/callback".into(),
        redirect_uri_explicit: true,
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        scope: "mcp".into(),
        resource: "https://mcp.example.com/mcp".into(),
        user: user(),
        family_id: family_id.into(),
        auth_time: AUTH_TIME,
    }
}

fn refresh(family_id: &str, expires_at: i64) -> RefreshRecord {
    RefreshRecord {
        client_id: "client-1".into(),
        family_id: family_id.into(),
        scope: "mcp".into(),
        resource: "https://mcp.example.com/mcp".into(),
        user: user(),
        expires_at,
        auth_time: AUTH_TIME,
    }
}

fn revocation(target: RevocationTarget, revoked_at: i64, expires_at: i64) -> Revocation {
    Revocation { target, revoked_at, expires_at }
}

const MINUTE: Duration = Duration::from_secs(60);
const AUTH_TIME: i64 = 1_700_000_123;

// ---------------------------------------------------------------------------------------------
// The suite

/// Every trait method, against one backend.
async fn suite(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    clients(&*store).await;
    pendings(&*store).await;
    consents(&*store).await;
    codes(&*store).await;
    refresh_tokens(&*store).await;
    revocations(&*store).await;
    concurrent_single_use(&store).await;
    devices(&store).await;
    expiry(&*store).await;
}

fn device(client_id: &str, user_code: &str, expires_in: i64) -> DeviceRecord {
    DeviceRecord {
        client_id: client_id.into(),
        scope: "mcp".into(),
        resource: "https://mcp.example.com/mcp".into(),
        user_code: user_code.into(),
        expires_at: now() + expires_in,
        interval: 5,
        last_poll_ms: 0,
        status: DeviceStatus::Pending,
        user: None,
        auth_time: 0,
        family_id: id(),
    }
}

/// RFC 8628 device authorizations: user-code uniqueness, the decision, the poll state machine
/// (client binding, pending, slow_down, approval spent once, replay, denial, expiry), and one
/// winner among concurrent polls of an approved code.
async fn devices(store: &Arc<dyn Store>) {
    let (hash, code) = (id(), id()[..8].to_uppercase());
    let rec = device("c1", &code, 600);
    assert!(store.put_device(&hash, &rec).await.unwrap());
    assert!(!store.put_device(&id(), &device("c2", &code, 600)).await.unwrap(), "user code already taken");
    let (found, got) = store.device_by_user_code(&code).await.unwrap().unwrap();
    assert_eq!((found.as_str(), &got), (hash.as_str(), &rec));
    assert!(store.device_by_user_code("NOSUCHCD").await.unwrap().is_none());

    let t0 = now() * 1000;
    assert_eq!(store.poll_device(&hash, "c2", t0).await.unwrap(), DevicePoll::WrongClient);
    assert_eq!(store.poll_device(&hash, "c1", t0).await.unwrap(), DevicePoll::Pending);
    assert_eq!(store.poll_device(&hash, "c1", t0 + 1000).await.unwrap(), DevicePoll::SlowDown);
    // The interval grew to 10 s and counts from the last poll.
    assert_eq!(store.poll_device(&hash, "c1", t0 + 9000).await.unwrap(), DevicePoll::SlowDown);
    assert_eq!(store.device_by_user_code(&code).await.unwrap().unwrap().1.interval, 15);
    assert_eq!(store.poll_device(&hash, "c1", t0 + 25_000).await.unwrap(), DevicePoll::Pending);

    let alice = user();
    assert!(store.decide_device(&hash, Some((alice.clone(), 1234))).await.unwrap());
    assert!(!store.decide_device(&hash, None).await.unwrap(), "decided once");
    match store.poll_device(&hash, "c1", t0 + 50_000).await.unwrap() {
        DevicePoll::Approved(r) => {
            assert_eq!(
                (r.user.as_ref(), r.auth_time, r.family_id.as_str()),
                (Some(&alice), 1234, rec.family_id.as_str())
            );
        }
        other => panic!("approved expected, got {other:?}"),
    }
    assert_eq!(
        store.poll_device(&hash, "c1", t0 + 80_000).await.unwrap(),
        DevicePoll::Replayed { family_id: rec.family_id.clone() }
    );
    assert_eq!(store.poll_device(&id(), "c1", t0).await.unwrap(), DevicePoll::Unknown);

    // Denied stays denied.
    let (hash, code) = (id(), id()[..8].to_uppercase());
    assert!(store.put_device(&hash, &device("c1", &code, 600)).await.unwrap());
    assert!(store.decide_device(&hash, None).await.unwrap());
    assert!(!store.decide_device(&hash, Some((user(), 1))).await.unwrap());
    assert_eq!(store.poll_device(&hash, "c1", t0).await.unwrap(), DevicePoll::Denied);

    // Expired: kept a while to say so, and no longer decidable.
    let (hash, code) = (id(), id()[..8].to_uppercase());
    assert!(store.put_device(&hash, &device("c1", &code, -1)).await.unwrap());
    assert!(!store.decide_device(&hash, Some((user(), 1))).await.unwrap());
    assert_eq!(store.poll_device(&hash, "c1", t0).await.unwrap(), DevicePoll::Expired);

    // Concurrent polls of an approved code: one gets it.
    let (hash, code) = (id(), id()[..8].to_uppercase());
    assert!(store.put_device(&hash, &device("c1", &code, 600)).await.unwrap());
    assert!(store.decide_device(&hash, Some((user(), 1))).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, hash) = (store.clone(), hash.clone());
        // Far enough apart that none is a slow_down.
        tasks.push(tokio::spawn(async move { store.poll_device(&hash, "c1", t0 + i * 60_000).await.unwrap() }));
    }
    let mut approved = 0;
    for t in tasks {
        match t.await.unwrap() {
            DevicePoll::Approved(_) => approved += 1,
            DevicePoll::Replayed { .. } | DevicePoll::SlowDown => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(approved, 1, "exactly one poll gets the tokens");
}

async fn clients(store: &dyn Store) {
    let cid = id();
    assert_eq!(store.get_client(&cid).await.unwrap(), None);
    let first = client(&cid, "first");
    store.put_client(&first).await.unwrap();
    assert_eq!(store.get_client(&cid).await.unwrap(), Some(first));

    let second = client(&cid, "second");
    store.put_client(&second).await.unwrap();
    assert_eq!(store.get_client(&cid).await.unwrap(), Some(second.clone()), "put replaces");

    // Listing walks every client (more than one SCAN page on Redis).
    let others: Vec<ClientRecord> = (0..1200).map(|i| client(&id(), &format!("listed {i}"))).collect();
    for c in &others {
        store.put_client(c).await.unwrap();
    }
    let listed = store.list_clients().await.unwrap();
    assert!(listed.contains(&second));
    for c in &others {
        assert!(listed.contains(c), "{} not listed", c.client_id);
    }
    for c in &others {
        store.delete_client(&c.client_id).await.unwrap();
    }

    assert!(store.delete_client(&cid).await.unwrap());
    assert_eq!(store.get_client(&cid).await.unwrap(), None);
    assert!(!store.delete_client(&cid).await.unwrap(), "second delete finds nothing");
}

async fn pendings(store: &dyn Store) {
    let pid = id();
    assert_eq!(store.get_pending(&pid).await.unwrap(), None);
    store.put_pending(&pid, &pending(), MINUTE).await.unwrap();
    assert_eq!(store.get_pending(&pid).await.unwrap(), Some(pending()));
    assert_eq!(store.get_pending(&pid).await.unwrap(), Some(pending()), "get does not consume");
    assert_eq!(store.take_pending(&pid).await.unwrap(), Some(pending()));
    assert_eq!(store.take_pending(&pid).await.unwrap(), None, "second take");
    assert_eq!(store.get_pending(&pid).await.unwrap(), None);
}

/// Remembered consents: kept under their key, overwritten by a newer answer, gone after their
/// lifetime.
async fn consents(store: &dyn Store) {
    let key = id();
    assert_eq!(store.get_consent(&key).await.unwrap(), None);
    let first = Consent { scope: "mcp".into(), granted_at: now() };
    store.put_consent(&key, &first, MINUTE).await.unwrap();
    assert_eq!(store.get_consent(&key).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_consent(&key).await.unwrap(), Some(first), "get does not consume");
    let wider = Consent { scope: "mcp admin".into(), granted_at: now() };
    store.put_consent(&key, &wider, MINUTE).await.unwrap();
    assert_eq!(store.get_consent(&key).await.unwrap(), Some(wider));
    assert_eq!(store.get_consent(&id()).await.unwrap(), None, "keys are separate");
    let short = id();
    store
        .put_consent(&short, &Consent { scope: "mcp".into(), granted_at: now() }, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(store.get_consent(&short).await.unwrap(), None, "consent expired");
}

async fn codes(store: &dyn Store) {
    let code = id();
    let family = id();
    store.put_code(&code, &grant(&family), MINUTE).await.unwrap();
    assert_eq!(store.take_code(&code, MINUTE).await.unwrap(), CodeTake::Fresh(grant(&family)));
    assert_eq!(store.take_code(&code, MINUTE).await.unwrap(), CodeTake::Replayed { family_id: family.clone() });
    assert_eq!(
        store.take_code(&code, MINUTE).await.unwrap(),
        CodeTake::Replayed { family_id: family },
        "still a replay the third time"
    );
    assert_eq!(store.take_code(&id(), MINUTE).await.unwrap(), CodeTake::Unknown);
}

async fn refresh_tokens(store: &dyn Store) {
    let token = id();
    let family = id();
    let record = refresh(&family, now() + 3600);
    assert_eq!(store.get_refresh(&token).await.unwrap(), RefreshTake::Unknown);
    assert_eq!(store.rotate_refresh(&token, None).await.unwrap(), RefreshTake::Unknown);

    store.put_refresh(&token, &record).await.unwrap();
    assert_eq!(store.get_refresh(&token).await.unwrap(), RefreshTake::Fresh(record.clone()));
    assert_eq!(store.get_refresh(&token).await.unwrap(), RefreshTake::Fresh(record.clone()), "reading uses nothing");

    // Rotation: the token is used and its successor stored, in one step.
    let next = id();
    let next_record = RefreshRecord { scope: "read".into(), ..refresh(&family, now() + 7200) };
    assert_eq!(
        store.rotate_refresh(&token, Some((&next, &next_record))).await.unwrap(),
        RefreshTake::Fresh(record.clone())
    );
    assert_eq!(
        store.get_refresh(&token).await.unwrap(),
        RefreshTake::Reused(record.clone()),
        "a rotated token reads as used"
    );
    assert_eq!(store.get_refresh(&next).await.unwrap(), RefreshTake::Fresh(next_record.clone()));
    // A replay stores nothing: its would-be successor never appears.
    let stray = id();
    assert_eq!(
        store.rotate_refresh(&token, Some((&stray, &record))).await.unwrap(),
        RefreshTake::Reused(record.clone())
    );
    assert_eq!(store.get_refresh(&stray).await.unwrap(), RefreshTake::Unknown, "no successor for a replay");
    assert_eq!(
        store.rotate_refresh(&token, None).await.unwrap(),
        RefreshTake::Reused(record.clone()),
        "still reuse the third time"
    );
    // An unknown token stores nothing either.
    assert_eq!(store.rotate_refresh(&id(), Some((&stray, &record))).await.unwrap(), RefreshTake::Unknown);
    assert_eq!(store.get_refresh(&stray).await.unwrap(), RefreshTake::Unknown);
    assert_eq!(store.rotate_refresh(&next, None).await.unwrap(), RefreshTake::Fresh(next_record));

    // Storing a token again starts it afresh.
    store.put_refresh(&token, &record).await.unwrap();
    assert_eq!(store.get_refresh(&token).await.unwrap(), RefreshTake::Fresh(record.clone()));
    assert_eq!(store.rotate_refresh(&token, None).await.unwrap(), RefreshTake::Fresh(record));

    // Born expired, stored or as a successor.
    let dead = id();
    store.put_refresh(&dead, &refresh(&family, now() - 10)).await.unwrap();
    assert_eq!(store.get_refresh(&dead).await.unwrap(), RefreshTake::Unknown);
    assert_eq!(store.rotate_refresh(&dead, None).await.unwrap(), RefreshTake::Unknown);
    let live = id();
    store.put_refresh(&live, &refresh(&family, now() + 3600)).await.unwrap();
    let dead_next = id();
    assert!(matches!(
        store.rotate_refresh(&live, Some((&dead_next, &refresh(&family, now() - 10)))).await.unwrap(),
        RefreshTake::Fresh(_)
    ));
    assert_eq!(store.get_refresh(&dead_next).await.unwrap(), RefreshTake::Unknown);
}

async fn revocations(store: &dyn Store) {
    let jti = id();
    let t = now();
    let far = t + 3600;
    let target = RevocationTarget::Token(jti.clone());
    store.revoke(&revocation(target.clone(), t - 5, far)).await.unwrap();
    let second = revocation(target.clone(), t, far + 60);
    store.revoke(&second).await.unwrap();
    let listed: Vec<Revocation> =
        store.revocations().await.unwrap().into_iter().filter(|r| r.target == target).collect();
    assert_eq!(listed, vec![second], "re-revoking a target replaces its record");

    let others = [
        revocation(RevocationTarget::Family(id()), t, far),
        revocation(RevocationTarget::Client(id()), t, far),
        revocation(RevocationTarget::User(id()), t, far),
    ];
    for r in &others {
        store.revoke(r).await.unwrap();
    }
    let expired = revocation(RevocationTarget::Token(id()), t - 100, t - 10);
    store.revoke(&expired).await.unwrap();
    let all = store.revocations().await.unwrap();
    for r in &others {
        assert!(all.contains(r), "{r:?} listed");
    }
    assert!(!all.iter().any(|r| r.target == expired.target), "expired revocation not listed");
    assert!(all.iter().all(|r| r.expires_at > now()));
}

/// 16 tasks race for one code, one refresh token, one pending request: one wins each.
async fn concurrent_single_use(store: &Arc<dyn Store>) {
    const N: usize = 16;
    let code = id();
    let family = id();
    store.put_code(&code, &grant(&family), MINUTE).await.unwrap();
    let token = id();
    let record = refresh(&family, now() + 3600);
    store.put_refresh(&token, &record).await.unwrap();
    let pid = id();
    store.put_pending(&pid, &pending(), MINUTE).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..N {
        let (store, code, token, pid, record) =
            (store.clone(), code.clone(), token.clone(), pid.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            (
                store.take_code(&code, MINUTE).await.unwrap(),
                store.rotate_refresh(&token, Some((&id(), &record))).await.unwrap(),
                store.take_pending(&pid).await.unwrap(),
            )
        }));
    }
    let (mut code_fresh, mut refresh_fresh, mut pending_won) = (0, 0, 0);
    for task in tasks {
        let (c, r, p) = task.await.unwrap();
        match c {
            CodeTake::Fresh(g) => {
                assert_eq!(g.family_id, family);
                code_fresh += 1;
            }
            CodeTake::Replayed { family_id } => assert_eq!(family_id, family),
            CodeTake::Unknown => panic!("a redeemed code must read as replayed, not unknown"),
        }
        match r {
            RefreshTake::Fresh(rec) => {
                assert_eq!(rec, record);
                refresh_fresh += 1;
            }
            RefreshTake::Reused(rec) => assert_eq!(rec, record),
            RefreshTake::Unknown => panic!("a rotated token must read as reused, not unknown"),
        }
        pending_won += usize::from(p.is_some());
    }
    assert_eq!(code_fresh, 1, "exactly one Fresh code take out of {N}");
    assert_eq!(refresh_fresh, 1, "exactly one Fresh refresh take out of {N}");
    assert_eq!(pending_won, 1, "exactly one pending take out of {N}");
}

/// Short-lived records of every kind, checked alive, then dead after one shared sleep.
async fn expiry(store: &dyn Store) {
    // Two-second lifetimes: the embedded store counts whole seconds, so a record lives between
    // one and two seconds there; 2.2 s later it is gone in both backends.
    let ttl = Duration::from_secs(2);
    let family = id();

    let pid = id();
    store.put_pending(&pid, &pending(), ttl).await.unwrap();
    let live_code = id();
    store.put_code(&live_code, &grant(&family), ttl).await.unwrap();
    let redeemed = id();
    store.put_code(&redeemed, &grant(&family), MINUTE).await.unwrap();
    assert!(matches!(store.take_code(&redeemed, ttl).await.unwrap(), CodeTake::Fresh(_)));
    let token = id();
    store.put_refresh(&token, &refresh(&family, now() + 2)).await.unwrap();
    let rotated = id();
    store.put_refresh(&rotated, &refresh(&family, now() + 2)).await.unwrap();
    assert!(matches!(store.rotate_refresh(&rotated, None).await.unwrap(), RefreshTake::Fresh(_)));
    let short = revocation(RevocationTarget::Family(id()), now(), now() + 2);
    store.revoke(&short).await.unwrap();

    // Alive now.
    assert!(store.get_pending(&pid).await.unwrap().is_some());
    assert_eq!(store.take_code(&redeemed, ttl).await.unwrap(), CodeTake::Replayed { family_id: family.clone() });
    assert!(matches!(store.get_refresh(&token).await.unwrap(), RefreshTake::Fresh(_)));
    assert!(matches!(store.rotate_refresh(&rotated, None).await.unwrap(), RefreshTake::Reused(_)));
    assert!(store.revocations().await.unwrap().contains(&short));

    tokio::time::sleep(Duration::from_millis(2200)).await;

    assert_eq!(store.get_pending(&pid).await.unwrap(), None, "pending expired");
    assert_eq!(store.take_pending(&pid).await.unwrap(), None, "pending expired");
    assert_eq!(store.take_code(&live_code, ttl).await.unwrap(), CodeTake::Unknown, "code expired");
    assert_eq!(store.take_code(&redeemed, ttl).await.unwrap(), CodeTake::Unknown, "tombstone expired");
    assert_eq!(store.get_refresh(&token).await.unwrap(), RefreshTake::Unknown, "refresh expired");
    assert_eq!(store.rotate_refresh(&token, None).await.unwrap(), RefreshTake::Unknown, "refresh expired");
    assert_eq!(store.rotate_refresh(&rotated, None).await.unwrap(), RefreshTake::Unknown, "used refresh expired");
    assert!(!store.revocations().await.unwrap().iter().any(|r| r.target == short.target), "revocation expired");
}

// ---------------------------------------------------------------------------------------------
// Durability: what one store instance wrote, the next one reads.

struct Written {
    client: ClientRecord,
    pid: String,
    code: String,
    family: String,
    token: String,
    used_token: String,
    record: RefreshRecord,
    revocation: Revocation,
}

async fn write_durable(store: &dyn Store) -> Written {
    let family = id();
    let w = Written {
        client: client(&id(), "durable"),
        pid: id(),
        code: id(),
        family: family.clone(),
        token: id(),
        used_token: id(),
        record: refresh(&family, now() + 3600),
        revocation: revocation(RevocationTarget::Family(family.clone()), now(), now() + 3600),
    };
    store.put_client(&w.client).await.unwrap();
    store.put_pending(&w.pid, &pending(), MINUTE).await.unwrap();
    store.put_code(&w.code, &grant(&family), MINUTE).await.unwrap();
    store.put_refresh(&w.token, &w.record).await.unwrap();
    store.put_refresh(&w.used_token, &w.record).await.unwrap();
    assert!(matches!(store.rotate_refresh(&w.used_token, None).await.unwrap(), RefreshTake::Fresh(_)));
    store.revoke(&w.revocation).await.unwrap();
    w
}

async fn check_durable(store: &dyn Store, w: &Written) {
    assert_eq!(store.get_client(&w.client.client_id).await.unwrap().as_ref(), Some(&w.client));
    assert_eq!(store.take_pending(&w.pid).await.unwrap(), Some(pending()));
    match store.take_code(&w.code, MINUTE).await.unwrap() {
        CodeTake::Fresh(g) => assert_eq!(g.family_id, w.family),
        other => panic!("code lost: {other:?}"),
    }
    assert_eq!(store.rotate_refresh(&w.token, None).await.unwrap(), RefreshTake::Fresh(w.record.clone()));
    assert_eq!(
        store.rotate_refresh(&w.used_token, None).await.unwrap(),
        RefreshTake::Reused(w.record.clone()),
        "rotation survives"
    );
    assert!(store.revocations().await.unwrap().contains(&w.revocation));
}

// ---------------------------------------------------------------------------------------------
// Embedded

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    assert!(store.revocation_feed().is_none(), "a one-process backend has no feed");
    suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("store.redb");
    let store = EmbeddedStore::open(&path).unwrap();
    let written = write_durable(&store).await;
    drop(store);
    let reopened = EmbeddedStore::open(&path).unwrap();
    check_durable(&reopened, &written).await;
}

// ---------------------------------------------------------------------------------------------
// Redis

fn redis_config(url: &str) -> StoreConfig {
    StoreConfig {
        kind: StoreKind::Redis,
        redis_url: SecretString::new(url),
        key_prefix: "test:".into(),
        pool_size: 8,
        ..StoreConfig::default()
    }
}

async fn redis_store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&redis_config(&server.url)).await.expect("connect to redis")
}

/// A plain connection for looking at the keys themselves.
async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_conformance() {
    let server = RedisServer::start();
    suite(Arc::new(redis_store(&server).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_survives_a_new_store_instance() {
    let server = RedisServer::start();
    let written = write_durable(&redis_store(&server).await).await;

    // Another prefix is another namespace.
    let mut cfg = redis_config(&server.url);
    cfg.key_prefix = "other:".into();
    let other = RedisStore::connect(&cfg).await.unwrap();
    assert_eq!(other.get_client(&written.client.client_id).await.unwrap(), None);
    assert!(other.revocations().await.unwrap().is_empty());

    check_durable(&redis_store(&server).await, &written).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_survives_a_server_restart_with_aof() {
    let mut server = RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"]);
    let written = write_durable(&redis_store(&server).await).await;
    server.restart();
    check_durable(&redis_store(&server).await, &written).await;
}

/// Every key is under the prefix, and every key but the clients' carries a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_layout_and_ttls() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let written = write_durable(&store).await;
    assert!(matches!(store.take_code(&written.code, MINUTE).await.unwrap(), CodeTake::Fresh(_)));

    let mut raw = raw_redis(&server.url).await;
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut raw).await.unwrap();
    keys.sort();
    let expected_kinds = [
        "test:client:",
        "test:code_redeemed:",
        "test:pending:",
        "test:refresh:",
        "test:refresh_used:",
        "test:revocations",
        "test:revocations:records",
    ];
    for kind in expected_kinds {
        assert!(keys.iter().any(|k| k.starts_with(kind)), "a {kind}* key in {keys:?}");
    }
    for key in &keys {
        assert!(key.starts_with("test:"), "{key} is under the prefix");
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut raw).await.unwrap();
        if key.starts_with("test:client:") {
            assert_eq!(ttl, -1, "{key}: clients do not expire");
        } else {
            assert!(ttl > 0, "{key} has a TTL (got {ttl})");
        }
    }
    let zset: Vec<String> =
        redis::cmd("ZRANGE").arg("test:revocations").arg(0).arg(-1).query_async(&mut raw).await.unwrap();
    assert_eq!(zset, vec![serde_json::to_string(&written.revocation.target).unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revocation_feed() {
    let server = RedisServer::start();
    let subscriber = redis_store(&server).await;
    let other_replica = redis_store(&server).await;
    let mut feed = subscriber.revocation_feed().expect("redis has a feed");
    let first = tokio::time::timeout(Duration::from_secs(1), feed.next()).await;
    assert_eq!(first.expect("Connected within 1 s"), Some(FeedEvent::Connected));

    let rev = revocation(RevocationTarget::Token(id()), now(), now() + 3600);
    other_replica.revoke(&rev).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(1), feed.next()).await;
    assert_eq!(next.expect("Revoked within 1 s"), Some(FeedEvent::Revoked(rev)));
}

async fn next_event(feed: &mut BoxStream<'static, FeedEvent>, secs: u64) -> Option<FeedEvent> {
    tokio::time::timeout(Duration::from_secs(secs), feed.next())
        .await
        .unwrap_or_else(|_| panic!("no feed event within {secs} s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_feed_reports_outage_and_reconnects() {
    let mut server = RedisServer::start();
    let store = redis_store(&server).await;
    let mut feed = store.revocation_feed().unwrap();
    assert_eq!(next_event(&mut feed, 1).await, Some(FeedEvent::Connected));

    server.stop();
    assert_eq!(next_event(&mut feed, 10).await, Some(FeedEvent::Disconnected));
    let down = Instant::now();
    store.ping().await.expect_err("ping fails while Redis is down");
    assert!(down.elapsed() < Duration::from_secs(3), "ping failed fast: {:?}", down.elapsed());

    server.restart();
    assert_eq!(next_event(&mut feed, 10).await, Some(FeedEvent::Connected), "reconnected");
    let rev = revocation(RevocationTarget::User(id()), now(), now() + 3600);
    store.revoke(&rev).await.expect("the pool reconnects too");
    assert_eq!(next_event(&mut feed, 1).await, Some(FeedEvent::Revoked(rev)));
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_password() {
    const PASSWORD: &str = "s3cret-Redis-pw";
    let server = RedisServer::start_with_args(&["--requirepass", PASSWORD]);

    // store.redis_password, applied to a URL without credentials.
    let mut cfg = redis_config(&server.url);
    cfg.redis_password = SecretString::new(PASSWORD);
    let store = RedisStore::connect(&cfg).await.expect("password from redis_password");
    let written = write_durable(&store).await;
    let mut feed = store.revocation_feed().unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(1), feed.next()).await.unwrap(),
        Some(FeedEvent::Connected),
        "the pub/sub connection authenticates too"
    );

    // The password in the URL.
    let in_url = format!("redis://:{PASSWORD}@127.0.0.1:{}", server.port);
    let store = RedisStore::connect(&redis_config(&in_url)).await.expect("password in URL");
    check_durable(&store, &written).await;

    // No password: refused at start-up.
    let err = RedisStore::connect(&redis_config(&server.url)).await.expect_err("no password");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("127.0.0.1:{}", server.port)), "{msg}");

    // A wrong password: refused, and never echoed.
    let mut cfg = redis_config(&server.url);
    cfg.redis_password = SecretString::new("wrong-hunter2");
    let err = RedisStore::connect(&cfg).await.expect_err("wrong password");
    let msg = format!("{err:#} {err:?}");
    assert!(!msg.contains("hunter2"), "{msg}");
    let wrong_url = format!("redis://:wrong-hunter2@127.0.0.1:{}", server.port);
    let err = RedisStore::connect(&redis_config(&wrong_url)).await.expect_err("wrong password");
    let msg = format!("{err:#} {err:?}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_fails_fast_without_leaking_the_password() {
    let port = free_port(); // nobody listens
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let started = Instant::now();
    let err = RedisStore::connect(&redis_config(&url)).await.expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast: {:?}", started.elapsed());
    let msg = format!("{err:#} {err:?}");
    assert!(msg.contains(&format!("redis://127.0.0.1:{port}/0")), "names the server: {msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    let err = RedisStore::connect(&redis_config("http://:hunter2@example.com")).await.err().unwrap();
    let msg = format!("{err:#} {err:?}");
    assert!(msg.contains("store.redis_url"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Redis over TLS, with a CA made for the test.

struct TestPki {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

/// A CA and a server certificate for 127.0.0.1 / localhost, made with the `openssl` CLI.
fn make_pki() -> TestPki {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let openssl = |args: &str| {
        let out = std::process::Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir.path())
            .output()
            .expect("the TLS test needs the `openssl` CLI (apt-get install openssl)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openssl {args}: {err}");
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=mcp-authd-test-CA \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
    ));
    openssl(&format!("req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"));
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
         -days 2 -extfile server.ext",
    );
    TestPki { ca: p("ca.crt"), cert: p("server.crt"), key: p("server.key"), _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_private_ca() {
    const PASSWORD: &str = "tls-pw-hunter2";
    let pki = make_pki();
    let server = RedisServer::start_tls(&pki.cert, &pki.key, &pki.ca, &["--requirepass", PASSWORD]);
    assert!(server.url.starts_with("rediss://"));
    let mut cfg = redis_config(&server.url);
    cfg.redis_password = SecretString::new(PASSWORD);
    let untrusted = cfg.clone();
    cfg.redis_ca_file = Some(pki.ca.clone());

    let store = RedisStore::connect(&cfg).await.expect("TLS connect");
    let mut feed = store.revocation_feed().unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(2), feed.next()).await.unwrap(),
        Some(FeedEvent::Connected),
        "pub/sub over TLS"
    );
    suite(Arc::new(store)).await;

    // Without the private CA the server's certificate is not trusted: no silent fallback.
    let err = RedisStore::connect(&untrusted).await.expect_err("untrusted certificate");
    let msg = format!("{err:#}");
    assert!(msg.contains("rediss://127.0.0.1"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    // Turning verification off is not possible either.
    let insecure = format!("rediss://127.0.0.1:{}/#insecure", server.port);
    let mut cfg = redis_config(&insecure);
    cfg.redis_password = SecretString::new(PASSWORD);
    let err = RedisStore::connect(&cfg).await.expect_err("#insecure refused");
    assert!(format!("{err:#}").contains("insecure"), "{err:#}");
    // Plain text to a TLS port fails too.
    let plain = format!("redis://127.0.0.1:{}", server.port);
    assert!(RedisStore::connect(&redis_config(&plain)).await.is_err());
}
