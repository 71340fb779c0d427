//! Session-based MCP (protocol revisions up to 2025-11-25, Streamable HTTP "Session Management"):
//! one child process per `Mcp-Session-Id`, spawned at `initialize`, stopped on HTTP DELETE, on
//! idle timeout, at shutdown, or when it dies on its own. Ended sessions are remembered for a
//! while so later requests learn why (404 plus a JSON-RPC error naming the cause).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::info;

use crate::child::{Child, ChildSpec, Event, Reason};
use crate::jsonrpc::Message;

/// How long an ended session's reason is kept for late requests.
const ENDED_TTL: Duration = Duration::from_secs(3600);
/// How many ended sessions are remembered at most.
const ENDED_MAX: usize = 10_000;

/// Limits of the session side.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Most sessions (children) at once, counting those still initializing.
    pub max_sessions: usize,
    /// Stop a session's child after this long without client messages and with nothing in flight.
    pub idle_timeout: Duration,
    /// How long a child may take to answer `initialize`.
    pub init_timeout: Duration,
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `--max-sessions` reached.
    #[error(
        "too many sessions: this proxy serves at most {0} at once (--max-sessions); end one with HTTP DELETE or retry later"
    )]
    Full(usize),
    /// The command could not be started.
    #[error("could not start the stdio server: {0}")]
    Spawn(#[source] std::io::Error),
    /// The child did not answer `initialize` in time.
    #[error("the stdio server did not answer initialize within {0:?}")]
    Timeout(Duration),
    /// The child died during `initialize`.
    #[error("{0}")]
    Gone(Reason),
}

/// What a session id refers to.
pub enum Lookup {
    /// A running session.
    Live(Arc<Child>),
    /// A session that ended, and why.
    Ended(Reason),
    /// Never seen (or forgotten).
    Unknown,
}

#[derive(Default)]
struct Inner {
    live: HashMap<Arc<str>, Arc<Child>>,
    starting: usize,
    ended: HashMap<Arc<str>, Reason>,
    ended_order: VecDeque<(Arc<str>, Instant)>,
}

impl Inner {
    fn remember_end(&mut self, id: &Arc<str>, reason: Reason) {
        // The first reason wins: after a DELETE, the child's exit is a consequence, not news.
        if !self.ended.contains_key(id) {
            self.ended.insert(id.clone(), reason);
            self.ended_order.push_back((id.clone(), Instant::now()));
        }
        while self.ended_order.len() > ENDED_MAX {
            if let Some((old, _)) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }
}

/// The live sessions.
pub struct Sessions {
    spec: ChildSpec,
    config: SessionConfig,
    inner: Mutex<Inner>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Releases a reserved session slot on every exit path of `create`.
struct Slot<'a>(&'a Sessions);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.0.inner).starting -= 1;
    }
}

impl Sessions {
    /// An empty session table for children running `spec`.
    pub fn new(spec: ChildSpec, config: SessionConfig) -> Arc<Sessions> {
        Arc::new(Sessions { spec, config, inner: Mutex::new(Inner::default()) })
    }

    /// Starts a child, hands it the client's `initialize` and waits for its answer. Returns the
    /// new session id (None if the child answered with an error: no session then) and the
    /// answer with the client's id restored.
    pub async fn create(self: &Arc<Self>, init: Message) -> Result<(Option<Arc<str>>, Message), InitError> {
        {
            let mut inner = lock(&self.inner);
            if inner.live.len() + inner.starting >= self.config.max_sessions {
                return Err(InitError::Full(self.config.max_sessions));
            }
            inner.starting += 1;
        }
        let _slot = Slot(self);
        // SECURITY: the session id is the only key to a session: 122 random bits (UUID v4).
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let weak = Arc::downgrade(self);
        let exit_id = id.clone();
        let child = Child::spawn(&self.spec, id.clone(), false, move |_, reason| {
            if let Some(sessions) = weak.upgrade() {
                sessions.ended(&exit_id, reason);
            }
        })
        .map_err(InitError::Spawn)?;
        let client_id = init.id.clone().unwrap_or_default();
        let (_, mut rx) = child.start_request(init).map_err(InitError::Gone)?;
        let answer = tokio::time::timeout(self.config.init_timeout, async {
            loop {
                match rx.recv().await {
                    Some(Event::Final(msg)) => return Ok(msg),
                    // Said before the handshake completed: keep it for the GET stream.
                    Some(Event::Message(msg)) => child.redirect(msg),
                    Some(Event::Closed(reason)) => return Err(InitError::Gone(reason)),
                    None => return Err(InitError::Gone("the stdio server dropped initialize".into())),
                }
            }
        })
        .await;
        let mut answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                child.kill("initialize failed");
                return Err(e);
            }
            Err(_) => {
                child.kill("initialize timed out");
                return Err(InitError::Timeout(self.config.init_timeout));
            }
        };
        answer.id = Some(client_id);
        if answer.error.is_some() {
            child.kill("it refused initialize");
            return Ok((None, answer));
        }
        let mut inner = lock(&self.inner);
        if let Some(reason) = child.dead() {
            return Err(InitError::Gone(reason));
        }
        inner.live.insert(id.clone(), child.clone());
        info!(session = %id, pid = child.pid(), sessions = inner.live.len(), "session started");
        Ok((Some(id), answer))
    }

    /// Finds a session.
    pub fn get(&self, id: &str) -> Lookup {
        let inner = lock(&self.inner);
        if let Some(child) = inner.live.get(id) {
            return Lookup::Live(child.clone());
        }
        match inner.ended.get(id) {
            Some(reason) => Lookup::Ended(reason.clone()),
            None => Lookup::Unknown,
        }
    }

    /// Ends a session at the client's request (HTTP DELETE). `false` if it is not live.
    pub fn delete(&self, id: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some((id, child)) = inner.live.remove_entry(id) else {
            return false;
        };
        inner.remember_end(&id, "the session was ended by the client (HTTP DELETE)".into());
        drop(inner);
        info!(session = %id, pid = child.pid(), "session deleted by the client");
        child.kill("the client ended the session");
        true
    }

    fn ended(&self, id: &Arc<str>, reason: Reason) {
        let mut inner = lock(&self.inner);
        inner.live.remove(id);
        inner.remember_end(id, reason);
    }

    /// Stops children idle past the timeout and forgets old ended sessions.
    pub fn reap(&self) {
        let mut inner = lock(&self.inner);
        while inner.ended_order.front().is_some_and(|(_, at)| at.elapsed() > ENDED_TTL) {
            if let Some((old, _)) = inner.ended_order.pop_front() {
                inner.ended.remove(&old);
            }
        }
        let idle = self.config.idle_timeout;
        for (id, child) in &inner.live {
            if child.idle_for().is_some_and(|d| d >= idle) && !child.stopping() {
                info!(session = %id, pid = child.pid(), "session idle for {}s: stopping its child", idle.as_secs());
                child.kill(format!("the session was idle for {}s (--idle-timeout-secs)", idle.as_secs()));
            }
        }
    }

    /// Live sessions (children), including those still initializing.
    pub fn count(&self) -> usize {
        let inner = lock(&self.inner);
        inner.live.len() + inner.starting
    }

    /// Stops every child and waits until all are reaped.
    pub async fn shutdown(&self) {
        let children: Vec<Arc<Child>> = lock(&self.inner).live.values().cloned().collect();
        for child in &children {
            child.kill("the proxy is shutting down");
        }
        futures_util::future::join_all(children.iter().map(|c| c.wait_exit())).await;
    }
}
