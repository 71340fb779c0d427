//! The Streamable HTTP endpoint at `/mcp` (MCP "Transports" §Streamable HTTP, revisions
//! 2025-03-26 … 2026-07-28), written directly against the spec rather than through rmcp's
//! `StreamableHttpService`, so messages pass through as raw JSON (see the README section).
//!
//! - `POST`: one JSON-RPC message. `initialize` starts a session (one child); requests with
//!   `Mcp-Session-Id` go to that session's child; requests without it that carry 2026-07-28
//!   `_meta` (and `server/discover`) are stateless. A request's answer is plain JSON when the
//!   child's first word on it is the response, else an SSE stream (notifications, server
//!   requests, then the response). Notifications and client responses get 202.
//! - `GET`: the session's standalone SSE stream for server-to-client messages.
//! - `DELETE`: ends the session and stops its child.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::Proxy;
use crate::child::{Child, Event};
use crate::jsonrpc::{self, Kind, Message, ParamsPeek};
use crate::session::{InitError, Lookup};
use crate::stateless::{self, Outcome, Stateless};

/// Largest accepted POST body (the same default as rmcp's server).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
const USER_HEADER: &str = "x-user-id";
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The `/mcp` routes over `proxy`.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(proxy)
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn json(status: StatusCode, msg: &Message, session: Option<&str>) -> Response {
    let mut response =
        (status, [(header::CONTENT_TYPE, "application/json")], Body::from(msg.to_json())).into_response();
    set_session(&mut response, session);
    response
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

fn set_session(response: &mut Response, session: Option<&str>) {
    if let Some(value) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
}

fn sse(proxy: &Proxy, messages: impl Stream<Item = Message> + Send + 'static, session: Option<&str>) -> Response {
    let events = messages
        .map(|m| Ok::<_, Infallible>(SseEvent::default().data(m.to_json())))
        // Open streams must not hold up graceful shutdown.
        .take_until(proxy.shutdown.clone().cancelled_owned());
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE)).into_response();
    set_session(&mut response, session);
    response
}

/// What the client's `Accept` allows for a POST answer.
struct Accept {
    json: bool,
    sse: bool,
}

impl Accept {
    fn from(headers: &HeaderMap) -> Accept {
        let values: Vec<String> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter(|entry| {
                !entry.split(';').skip(1).any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"))
            })
            .map(|entry| entry.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .collect();
        if values.is_empty() {
            return Accept { json: true, sse: true };
        }
        let any = values.iter().any(|v| v == "*/*");
        Accept {
            json: any || values.iter().any(|v| v == "application/json" || v == "application/*"),
            sse: any || values.iter().any(|v| v == "text/event-stream" || v == "text/*"),
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(format!("duplicate {name} header"));
    }
    first.to_str().map(Some).map_err(|_| format!("{name} header is not valid text"))
}

/// SEP-2243: `Mcp-Method` / `Mcp-Name` must agree with the body when present, and are required
/// from 2026-07-28 on (except on `initialize`).
// SECURITY: mcp-authd's /verify may allow or deny per MCP method and tool from these headers
// without reading the body; a body that says otherwise would slip past that policy, so it is
// refused here.
fn check_standard_headers(headers: &HeaderMap, msg: &Message, peek: &ParamsPeek) -> Result<(), String> {
    let method = msg.method();
    let version = header_str(headers, VERSION_HEADER)?;
    let required = version.is_some_and(|v| v >= "2026-07-28") && method != "initialize";
    match header_str(headers, METHOD_HEADER)? {
        None if required => return Err("missing required Mcp-Method header".into()),
        Some(value) if value != method => {
            return Err(format!("Mcp-Method header `{value}` does not match body method `{method}`"));
        }
        _ => {}
    }
    let Some(expected) = peek.mcp_name(method) else { return Ok(()) };
    let expected = match expected {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match header_str(headers, NAME_HEADER)? {
        None if required => Err(format!("missing required Mcp-Name header for `{method}`")),
        None => Ok(()),
        Some(raw) => {
            let decoded = decode_header_value(raw).ok_or("Mcp-Name header is not valid Base64")?;
            if decoded == expected {
                Ok(())
            } else {
                Err(format!("Mcp-Name header `{decoded}` does not match body value `{expected}`"))
            }
        }
    }
}

/// SEP-2243 value encoding: `=?base64?<b64>?=` wraps values that are not plain header text.
fn decode_header_value(value: &str) -> Option<String> {
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(inner) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(inner).ok()?).ok(),
        None => Some(value.to_owned()),
    }
}

fn known_version(v: &str) -> bool {
    stateless::supported_versions().contains(&v)
}

/// The HTTP status for a stateless request's final message (as rmcp's server maps them).
fn stateless_status(msg: &Message) -> StatusCode {
    match msg.error_code() {
        Some(jsonrpc::HEADER_MISMATCH | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION | -32021) => StatusCode::BAD_REQUEST,
        Some(jsonrpc::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(jsonrpc::SERVER_BUSY) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

async fn post_mcp(State(proxy): State<Arc<Proxy>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = proxy.check_origin(&headers) {
        return response;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let accept = Accept::from(&headers);
    if !accept.json && !accept.sse {
        return text(StatusCode::NOT_ACCEPTABLE, "Not Acceptable: accept application/json and text/event-stream");
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let error = Message::error(None, jsonrpc::INVALID_REQUEST, "JSON-RPC batches are not supported", None);
        return json(StatusCode::BAD_REQUEST, &error, None);
    }
    let msg = match Message::parse(&body) {
        Ok(msg) => msg,
        Err(e) => {
            let error = Message::error(None, jsonrpc::PARSE_ERROR, &format!("Parse error: {e}"), None);
            return json(StatusCode::BAD_REQUEST, &error, None);
        }
    };
    let kind = msg.kind();
    if kind == Kind::Invalid {
        let error = Message::error(None, jsonrpc::INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message", None);
        return json(StatusCode::BAD_REQUEST, &error, None);
    }
    let peek =
        if matches!(kind, Kind::Request | Kind::Notification) { msg.peek_params() } else { ParamsPeek::default() };
    if let Err(reason) = check_standard_headers(&headers, &msg, &peek) {
        let error = Message::error(msg.id.clone(), jsonrpc::HEADER_MISMATCH, &reason, None);
        return json(StatusCode::BAD_REQUEST, &error, None);
    }
    match header_str(&headers, SESSION_HEADER) {
        Ok(Some(session)) => session_post(&proxy, session, msg, kind, &headers, &accept).await,
        Ok(None) => match kind {
            Kind::Request if msg.method() == "initialize" => initialize(&proxy, msg, &accept).await,
            Kind::Request if peek.protocol_version().is_some() || msg.method() == "server/discover" => {
                stateless_post(&proxy, msg, peek, &headers, &accept).await
            }
            Kind::Request => text(
                StatusCode::BAD_REQUEST,
                "Bad Request: Mcp-Session-Id header is required (initialize first, or send 2026-07-28 request _meta)",
            ),
            // Stateless notifications have nowhere to go (cancellation is closing the stream).
            Kind::Notification => accepted(),
            _ => {
                let error = Message::error(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "no server request is waiting for this response",
                    None,
                );
                json(StatusCode::BAD_REQUEST, &error, None)
            }
        },
        Err(e) => {
            let error = Message::error(msg.id.clone(), jsonrpc::INVALID_REQUEST, &e, None);
            json(StatusCode::BAD_REQUEST, &error, None)
        }
    }
}

async fn initialize(proxy: &Proxy, msg: Message, accept: &Accept) -> Response {
    let client_id = msg.id.clone();
    match proxy.sessions.create(msg).await {
        Ok((session, answer)) => respond_final(proxy, answer, accept, session.as_deref()),
        Err(e) => {
            let status = match e {
                InitError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let code = if matches!(e, InitError::Full(_)) { jsonrpc::SERVER_BUSY } else { jsonrpc::INTERNAL_ERROR };
            tracing::warn!(error = %e, "initialize refused");
            json(status, &Message::error(client_id, code, &e.to_string(), None), None)
        }
    }
}

fn respond_final(proxy: &Proxy, msg: Message, accept: &Accept, session: Option<&str>) -> Response {
    if accept.json {
        json(StatusCode::OK, &msg, session)
    } else {
        sse(proxy, futures_util::stream::once(async move { msg }), session)
    }
}

fn ended(id: Option<Value>, reason: &str) -> Response {
    // 404 tells the client the session is over (it may initialize again); the body says why.
    let error = Message::error(
        id,
        jsonrpc::INTERNAL_ERROR,
        &format!("session ended: {reason}"),
        Some(serde_json::json!({ "reason": "session_ended" })),
    );
    json(StatusCode::NOT_FOUND, &error, None)
}

async fn session_post(
    proxy: &Proxy,
    session: &str,
    msg: Message,
    kind: Kind,
    headers: &HeaderMap,
    accept: &Accept,
) -> Response {
    let child = match proxy.sessions.get(session) {
        Lookup::Live(child) => child,
        Lookup::Ended(reason) => return ended(msg.id.clone(), &reason),
        Lookup::Unknown => return text(StatusCode::NOT_FOUND, "Not Found: unknown or expired session"),
    };
    match header_str(headers, VERSION_HEADER) {
        Ok(Some(v)) if !known_version(v) => {
            return text(StatusCode::BAD_REQUEST, "Bad Request: Unsupported MCP-Protocol-Version");
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "Bad Request: Invalid MCP-Protocol-Version header"),
        _ => {}
    }
    match kind {
        Kind::Request if msg.method() == "initialize" => {
            let error =
                Message::error(msg.id.clone(), jsonrpc::INVALID_REQUEST, "the session is already initialized", None);
            json(StatusCode::BAD_REQUEST, &error, None)
        }
        Kind::Request => {
            let client_id = msg.id.clone().unwrap_or_default();
            match child.start_request(msg) {
                Ok((_, rx)) => {
                    let stream = session_stream(rx, client_id);
                    respond(proxy, stream, accept, false, Some(child)).await
                }
                Err(reason) => ended(Some(client_id), &reason),
            }
        }
        Kind::Notification => match child.forward_notification(msg) {
            Ok(()) => accepted(),
            Err(reason) => ended(None, &reason),
        },
        _ => match child.forward_response(msg) {
            Ok(()) => accepted(),
            Err(reason) => ended(None, &reason),
        },
    }
}

/// A session request's messages: routed notifications and server requests, then the response
/// with the client's id put back.
fn session_stream(rx: mpsc::UnboundedReceiver<Event>, client_id: Value) -> impl Stream<Item = Message> + Send {
    futures_util::stream::unfold(Some(rx), move |rx| {
        let client_id = client_id.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Event::Message(msg)) => Some((msg, Some(rx))),
                Some(Event::Final(mut msg)) => {
                    msg.id = Some(client_id);
                    Some((msg, None))
                }
                Some(Event::Closed(reason)) => Some((stateless::gone(client_id, &reason), None)),
                None => Some((
                    Message::error(Some(client_id), jsonrpc::INTERNAL_ERROR, "the request was cancelled", None),
                    None,
                )),
            }
        }
    })
}

/// Answers a request from its message stream: JSON if the first message is the response (and
/// the client takes JSON), else SSE. A client that takes only JSON gets the response alone; what
/// came before it goes to the session's GET stream.
async fn respond(
    proxy: &Proxy,
    messages: impl Stream<Item = Message> + Send + 'static,
    accept: &Accept,
    stateless: bool,
    child: Option<Arc<Child>>,
) -> Response {
    let mut messages = Box::pin(messages);
    let Some(first) = messages.next().await else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error: no answer");
    };
    let status = |m: &Message| if stateless { stateless_status(m) } else { StatusCode::OK };
    if first.kind() == Kind::Response && (accept.json || !accept.sse) {
        return json(status(&first), &first, None);
    }
    if accept.sse {
        let rest = messages;
        return sse(proxy, futures_util::stream::once(async move { first }).chain(rest), None);
    }
    let mut next = Some(first);
    while let Some(msg) = next {
        if msg.kind() == Kind::Response {
            return json(status(&msg), &msg, None);
        }
        if let Some(child) = &child {
            child.redirect(msg);
        }
        next = messages.next().await;
    }
    text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error: no answer")
}

async fn stateless_post(
    proxy: &Proxy,
    msg: Message,
    peek: ParamsPeek,
    headers: &HeaderMap,
    accept: &Accept,
) -> Response {
    // The header must name the same version as `_meta` (2026-07-28 "Protocol Version Header").
    let header_version = header_str(headers, VERSION_HEADER).ok().flatten();
    if let Some(meta_version) = peek.protocol_version()
        && header_version != Some(meta_version)
    {
        let reason = match header_version {
            None => "request _meta protocolVersion requires MCP-Protocol-Version header".to_owned(),
            Some(h) => {
                format!(
                    "MCP-Protocol-Version header ({h}) does not match request _meta protocolVersion ({meta_version})"
                )
            }
        };
        return json(
            StatusCode::BAD_REQUEST,
            &Message::error(msg.id.clone(), jsonrpc::HEADER_MISMATCH, &reason, None),
            None,
        );
    }
    let owner = header_str(headers, USER_HEADER).ok().flatten().map(str::to_owned);
    let req = stateless::Request { msg, peek, owner };
    if let Err(error) = Stateless::check_meta(&req) {
        return json(StatusCode::BAD_REQUEST, &error, None);
    }
    match proxy.stateless.handle(req).await {
        Outcome::Done(msg) => json(stateless_status(&msg), &msg, None),
        Outcome::Call(call) => {
            let stream =
                futures_util::stream::unfold(call, |mut call| async move { call.next().await.map(|m| (m, call)) });
            respond(proxy, stream, accept, true, None).await
        }
    }
}

async fn get_mcp(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    if let Err(response) = proxy.check_origin(&headers) {
        return response;
    }
    if !Accept::from(&headers).sse {
        return text(StatusCode::NOT_ACCEPTABLE, "Not Acceptable: GET needs Accept: text/event-stream");
    }
    let Ok(Some(session)) = header_str(&headers, SESSION_HEADER) else {
        // Stateless clients have no standalone stream.
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")], "Method Not Allowed").into_response();
    };
    let child = match proxy.sessions.get(session) {
        Lookup::Live(child) => child,
        Lookup::Ended(reason) => return ended(None, &reason),
        Lookup::Unknown => return text(StatusCode::NOT_FOUND, "Not Found: unknown or expired session"),
    };
    match child.open_standalone() {
        Ok(rx) => {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
            sse(&proxy, stream, None)
        }
        Err(reason) => ended(None, &reason),
    }
}

async fn delete_mcp(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    if let Err(response) = proxy.check_origin(&headers) {
        return response;
    }
    let Ok(Some(session)) = header_str(&headers, SESSION_HEADER) else {
        return text(StatusCode::BAD_REQUEST, "Bad Request: Mcp-Session-Id header is required");
    };
    if proxy.sessions.delete(session) {
        StatusCode::OK.into_response()
    } else {
        text(StatusCode::NOT_FOUND, "Not Found: unknown or expired session")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn standard_headers_must_match_the_body() {
        let msg = Message::request(Some(json!(1)), "tools/call", Some(json!({"name":"echo"})));
        let peek = msg.peek_params();
        assert!(check_standard_headers(&headers(&[]), &msg, &peek).is_ok());
        assert!(
            check_standard_headers(&headers(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]), &msg, &peek)
                .is_ok()
        );
        assert!(check_standard_headers(&headers(&[("mcp-method", "tools/list")]), &msg, &peek).is_err());
        assert!(check_standard_headers(&headers(&[("mcp-name", "other")]), &msg, &peek).is_err());
        assert!(check_standard_headers(&headers(&[("mcp-name", "=?base64?ZWNobw==?=")]), &msg, &peek).is_ok());
        let modern = [("mcp-protocol-version", "2026-07-28")];
        assert!(check_standard_headers(&headers(&modern), &msg, &peek).is_err());
        let dup = [("mcp-method", "tools/call"), ("mcp-method", "tools/call")];
        assert!(check_standard_headers(&headers(&dup), &msg, &peek).is_err());
    }

    #[test]
    fn accept_parsing() {
        let a = Accept::from(&headers(&[("accept", "application/json, text/event-stream")]));
        assert!(a.json && a.sse);
        let a = Accept::from(&headers(&[("accept", "application/json;q=1, text/event-stream;q=0")]));
        assert!(a.json && !a.sse);
        let a = Accept::from(&headers(&[]));
        assert!(a.json && a.sse);
    }
}
