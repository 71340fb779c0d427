//! Session bookkeeping for `--stateful` mode (MCP 2025-11-25 "Session Management": the server
//! hands out `Mcp-Session-Id` at `initialize`; DELETE ends a session).
//!
//! rmcp's [`LocalSessionManager`] keeps the sessions in memory and closes one after
//! `SessionConfig::keep_alive` without traffic: that is our idle expiry. It has no bound on the
//! number of sessions, so [`BoundedSessionManager`] wraps it and refuses to create more than
//! `--max-sessions`. The refusal inside `create_session` is the hard, race-free limit, but rmcp
//! turns any session-manager error into a 500; [`refuse_when_full`] runs first and answers an
//! `initialize` that would exceed the bound with a clear 503 and a JSON-RPC error instead.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, SessionConfig, SessionTransport,
};
use rmcp::transport::streamable_http_server::session::{ServerSseMessage, SessionId, SessionManager};
use serde_json::json;

/// The largest `initialize` body [`refuse_when_full`] reads (rmcp's own POST limit is 4 MiB).
const MAX_INITIALIZE_BODY: usize = 4 * 1024 * 1024;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// `--max-sessions` sessions are open.
    #[error("too many open sessions (limit {max}): end one with HTTP DELETE or wait until idle ones expire")]
    Full {
        /// The configured bound.
        max: usize,
    },
    /// rmcp's in-memory manager failed.
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

/// rmcp's in-memory session manager with idle expiry and a bound on the number of sessions.
#[derive(Debug)]
pub struct BoundedSessionManager {
    inner: LocalSessionManager,
    max_sessions: usize,
    // Serializes "count, then create" so two concurrent initializes cannot both take the last slot.
    create_lock: tokio::sync::Mutex<()>,
}

impl BoundedSessionManager {
    /// At most `max_sessions` sessions, each closed after `idle_timeout` without a message.
    pub fn new(max_sessions: usize, idle_timeout: Duration) -> Self {
        let mut inner = LocalSessionManager::default();
        let mut config = SessionConfig::default();
        config.keep_alive = Some(idle_timeout);
        inner.session_config = config;
        Self { inner, max_sessions, create_lock: tokio::sync::Mutex::new(()) }
    }

    /// The configured bound.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// Sessions open now.
    pub async fn len(&self) -> usize {
        self.inner.sessions.read().await.len()
    }

    /// True when a new session would be refused.
    pub async fn is_full(&self) -> bool {
        self.len().await >= self.max_sessions
    }
}

impl SessionManager for BoundedSessionManager {
    type Error = SessionError;
    type Transport = SessionTransport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let _guard = self.create_lock.lock().await;
        if self.is_full().await {
            tracing::warn!(max = self.max_sessions, "session refused: limit reached");
            return Err(SessionError::Full { max: self.max_sessions });
        }
        let (id, transport) = self.inner.create_session().await?;
        tracing::info!(session = %id, "session created");
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        tracing::info!(session = %id, "session closed");
        Ok(self.inner.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_stream(id, message).await?)
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.resume(id, last_event_id).await?)
    }
}

/// The JSON-RPC id of the body when it is an `initialize` request.
fn initialize_id(body: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Probe {
        method: Option<String>,
        id: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    (probe.method.as_deref() == Some("initialize")).then(|| probe.id.unwrap_or(serde_json::Value::Null))
}

/// axum middleware in front of `/mcp`: when the session table is full, a session-less POST that
/// is an `initialize` gets 503 + `Retry-After` + a JSON-RPC error naming the limit. Everything
/// else passes untouched; the body is read only in that rare case.
pub async fn refuse_when_full(
    State(sessions): State<Arc<BoundedSessionManager>>,
    request: Request,
    next: Next,
) -> Response {
    let session_less_post = request.method() == http::Method::POST && !request.headers().contains_key("mcp-session-id");
    if !session_less_post || !sessions.is_full().await {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_INITIALIZE_BODY).await else {
        return (http::StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response();
    };
    let Some(id) = initialize_id(&bytes) else {
        return next.run(Request::from_parts(parts, Body::from(bytes))).await;
    };
    let message = SessionError::Full { max: sessions.max_sessions() }.to_string();
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32000, "message": message } });
    (http::StatusCode::SERVICE_UNAVAILABLE, [(http::header::RETRY_AFTER, "60")], axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_initialize() {
        let init = br#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}"#;
        assert_eq!(initialize_id(init), Some(json!(7)));
        assert_eq!(initialize_id(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#), None);
        assert_eq!(initialize_id(b"not json"), None);
    }

    #[tokio::test]
    async fn bound_is_enforced_and_freed() -> anyhow::Result<()> {
        let m = BoundedSessionManager::new(2, Duration::from_secs(60));
        let (a, _ta) = m.create_session().await?;
        let (_b, _tb) = m.create_session().await?;
        assert!(m.is_full().await);
        let err = m.create_session().await.err().expect("third session refused");
        assert!(matches!(err, SessionError::Full { max: 2 }), "{err}");
        m.close_session(&a).await?;
        assert_eq!(m.len().await, 1);
        m.create_session().await?;
        Ok(())
    }
}
