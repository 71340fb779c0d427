//! Children for stateless requests (MCP 2026-07-28, SEP-2567: no `initialize`, no session).
//!
//! A stdio server still expects the legacy handshake, so the proxy performs it itself: a pooled
//! child is initialized with the client capabilities and client info that the stateless request
//! carries in `_meta` (SEP-2575), and only serves requests whose `_meta` names the same ones (the
//! pool key), because a server may behave differently for different capabilities.
//!
//! A child is lent to one request at a time ([`Lease`]): everything it says while lent (progress,
//! logs, server-to-client requests) belongs to that request, so nothing said for one client can
//! reach another. The pool holds at most `max` children; idle ones of another key are evicted
//! when a new key needs room, and idle ones are stopped after the idle timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::child::{Child, ChildSpec, Event, Reason};
use crate::jsonrpc::Message;

/// The protocol version the proxy offers a pooled child in `initialize`: the newest revision
/// that still has the handshake (the child may answer with an older one).
pub const CHILD_PROTOCOL_VERSION: &str = "2025-11-25";
/// How long a stateless request waits for a free child before it gets an error.
const CHECKOUT_WAIT: Duration = Duration::from_secs(30);
/// How long a returned child may take to answer requests its client abandoned before it is
/// stopped instead of reused.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Why no child could be lent.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every child is busy and none freed up in time.
    #[error("all {0} stateless children are busy (--stateless-children); retry later")]
    Busy(usize),
    /// The command could not be started.
    #[error("could not start the stdio server: {0}")]
    Spawn(#[source] std::io::Error),
    /// The proxy's `initialize` failed.
    #[error("the stdio server failed to initialize: {0}")]
    Init(String),
}

struct Idle {
    key: Arc<str>,
    child: Arc<Child>,
    init: Arc<Value>,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    idle: Vec<Idle>,
    all: HashMap<Arc<str>, Arc<Child>>,
    /// Children alive or starting (the bound).
    total: usize,
}

/// The stateless pool.
pub struct Pool {
    spec: ChildSpec,
    max: usize,
    init_timeout: Duration,
    idle_timeout: Duration,
    inner: Mutex<Inner>,
    freed: Notify,
    seq: AtomicU64,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child lent to one stateless request; returned to the pool on drop.
pub struct Lease {
    pool: Arc<Pool>,
    child: Arc<Child>,
    key: Arc<str>,
    init: Arc<Value>,
}

impl Lease {
    /// The lent child.
    pub fn child(&self) -> &Arc<Child> {
        &self.child
    }

    /// The child's answer to the proxy's `initialize` (an MCP `InitializeResult`).
    pub fn init(&self) -> &Value {
        &self.init
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (pool, child, key, init) = (self.pool.clone(), self.child.clone(), self.key.clone(), self.init.clone());
        if child.stopping() {
            return;
        }
        if child.pending_count() == 0 {
            pool.put_back(key, child, init);
            return;
        }
        // An abandoned request is still running: lend the child again only once it answered.
        tokio::spawn(async move {
            let deadline = Instant::now() + DRAIN_WAIT;
            while child.pending_count() > 0 && Instant::now() < deadline && !child.stopping() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if child.pending_count() == 0 {
                pool.put_back(key, child, init);
            } else {
                child.kill("a cancelled stateless request was never answered");
            }
        });
    }
}

impl Pool {
    /// An empty pool of at most `max` children running `spec`.
    pub fn new(spec: ChildSpec, max: usize, init_timeout: Duration, idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            spec,
            max: max.max(1),
            init_timeout,
            idle_timeout,
            inner: Mutex::new(Inner::default()),
            freed: Notify::new(),
            seq: AtomicU64::new(1),
        })
    }

    /// The pool key of a stateless request: its client capabilities and client info.
    pub fn key(capabilities: &Value, client_info: Option<&Value>) -> String {
        crate::jsonrpc::canonical(&json!({ "capabilities": capabilities, "clientInfo": client_info }))
    }

    /// Lends a child initialized for `key`, starting one if there is room, else waiting.
    pub async fn checkout(
        self: &Arc<Self>,
        key: &str,
        capabilities: &Value,
        client_info: Option<&Value>,
    ) -> Result<Lease, PoolError> {
        let deadline = tokio::time::Instant::now() + CHECKOUT_WAIT;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut inner = lock(&self.inner);
                inner.idle.retain(|i| !i.child.stopping());
                if let Some(pos) = inner.idle.iter().position(|i| &*i.key == key) {
                    let idle = inner.idle.swap_remove(pos);
                    return Ok(Lease { pool: self.clone(), child: idle.child, key: idle.key, init: idle.init });
                }
                if inner.total < self.max {
                    inner.total += 1;
                    break;
                }
                // Full: make room by stopping the idle child that waited longest (its exit
                // frees the slot and wakes us).
                if let Some(oldest) = (0..inner.idle.len()).min_by_key(|&i| inner.idle[i].since) {
                    let victim = inner.idle.swap_remove(oldest);
                    debug!(session = %victim.child.tag(), "evicting an idle stateless child for other capabilities");
                    victim.child.kill("its pool slot went to a client with other capabilities");
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(PoolError::Busy(self.max));
            }
        }
        let tag: Arc<str> = format!("stateless-{}", self.seq.fetch_add(1, Ordering::Relaxed)).into();
        let weak = Arc::downgrade(self);
        let child = match Child::spawn(&self.spec, tag.clone(), true, move |child, _| {
            if let Some(pool) = weak.upgrade() {
                pool.exited(child);
            }
        }) {
            Ok(child) => child,
            Err(e) => {
                lock(&self.inner).total -= 1;
                self.freed.notify_one();
                return Err(PoolError::Spawn(e));
            }
        };
        lock(&self.inner).all.insert(tag, child.clone());
        match self.initialize(&child, capabilities, client_info).await {
            Ok(init) => {
                info!(session = %child.tag(), pid = child.pid(), "stateless child ready");
                Ok(Lease { pool: self.clone(), child, key: key.into(), init: Arc::new(init) })
            }
            Err(e) => {
                child.kill("initialize failed");
                Err(e)
            }
        }
    }

    /// The legacy handshake, done by the proxy on the stateless client's behalf.
    async fn initialize(
        &self,
        child: &Arc<Child>,
        capabilities: &Value,
        client_info: Option<&Value>,
    ) -> Result<Value, PoolError> {
        let client_info = client_info
            .cloned()
            .unwrap_or_else(|| json!({ "name": "mcp-stdio-proxy", "version": env!("CARGO_PKG_VERSION") }));
        let init = Message::request(
            Some(json!(0)),
            "initialize",
            Some(json!({
                "protocolVersion": CHILD_PROTOCOL_VERSION,
                "capabilities": capabilities,
                "clientInfo": client_info,
            })),
        );
        let gone = |r: Reason| PoolError::Init(r.to_string());
        let (_, mut rx) = child.start_request(init).map_err(gone)?;
        let answer = tokio::time::timeout(self.init_timeout, async {
            loop {
                match rx.recv().await {
                    Some(Event::Final(msg)) => return Ok(msg),
                    Some(Event::Message(msg)) => child.redirect(msg),
                    Some(Event::Closed(reason)) => return Err(gone(reason)),
                    None => return Err(PoolError::Init("initialize was dropped".into())),
                }
            }
        })
        .await
        .map_err(|_| PoolError::Init(format!("no answer to initialize within {:?}", self.init_timeout)))??;
        let result = match (answer.result, answer.error) {
            (Some(result), _) => serde_json::from_str::<Value>(result.get()).unwrap_or_default(),
            (None, Some(error)) => return Err(PoolError::Init(error.get().to_owned())),
            (None, None) => return Err(PoolError::Init("empty answer to initialize".into())),
        };
        child.forward_notification(Message::request(None, "notifications/initialized", None)).map_err(gone)?;
        Ok(result)
    }

    fn put_back(&self, key: Arc<str>, child: Arc<Child>, init: Arc<Value>) {
        lock(&self.inner).idle.push(Idle { key, child, init, since: Instant::now() });
        self.freed.notify_one();
    }

    fn exited(&self, child: &Arc<Child>) {
        let mut inner = lock(&self.inner);
        inner.total -= 1;
        inner.idle.retain(|i| !Arc::ptr_eq(&i.child, child));
        inner.all.remove(child.tag());
        drop(inner);
        self.freed.notify_one();
    }

    /// Stops children idle past the timeout.
    pub fn reap(&self) {
        let mut inner = lock(&self.inner);
        let idle_timeout = self.idle_timeout;
        inner.idle.retain(|i| {
            if i.since.elapsed() < idle_timeout {
                return true;
            }
            info!(session = %i.child.tag(), pid = i.child.pid(), "stateless child idle: stopping it");
            i.child.kill(format!("idle for {}s (--idle-timeout-secs)", idle_timeout.as_secs()));
            false
        });
    }

    /// Children alive or starting.
    pub fn count(&self) -> usize {
        lock(&self.inner).total
    }

    /// Stops every child and waits until all are reaped.
    pub async fn shutdown(&self) {
        let children: Vec<Arc<Child>> = lock(&self.inner).all.values().cloned().collect();
        for child in &children {
            child.kill("the proxy is shutting down");
        }
        futures_util::future::join_all(children.iter().map(|c| c.wait_exit())).await;
    }
}
