//! Stateless requests (MCP 2026-07-28): no `initialize`, no `Mcp-Session-Id`; each request
//! carries its protocol version, client info and capabilities in `_meta` (SEP-2575).
//!
//! - `server/discover` is answered by the proxy from a pooled child's `InitializeResult`.
//! - Other requests are sent to a child lent by the [`Pool`] for exactly this request; its
//!   notifications are streamed back on the POST response, the final answer ends it. Results get
//!   `resultType: "complete"`, which 2026-07-28 requires and a legacy child does not send.
//! - A child's server-to-client request (roots, sampling, elicitation) cannot go to a stateless
//!   client as a request: during `tools/call`, `prompts/get` or `resources/read` it is turned into
//!   an MRTR `input_required` result (SEP-2322). The call stays parked in the proxy, holding its
//!   child, under an unguessable `requestState`; the client's retry carries `inputResponses`,
//!   which are handed to the child as the answers, and the parked call continues. During other
//!   methods the child gets an error answer instead.
//! - Closing the HTTP response cancels the request (`notifications/cancelled` to the child).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::debug;

use crate::child::{Event, Reason};
use crate::jsonrpc::{self, Kind, Message, ParamsPeek};
use crate::pool::{Lease, Pool, PoolError};

/// How long a parked MRTR call waits for the client's retry.
pub const PARKED_TTL: Duration = Duration::from_secs(300);

/// Methods that may answer with `input_required` (SEP-2322).
fn may_require_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// Server-to-client requests that MRTR can carry (SEP-2322 `InputRequest`).
fn input_request_method(method: &str) -> bool {
    matches!(method, "roots/list" | "sampling/createMessage" | "elicitation/create")
}

/// All protocol revisions the proxy serves: sessions for the ones with `initialize`, stateless
/// requests for 2026-07-28.
pub fn supported_versions() -> Vec<&'static str> {
    rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().map(|v| v.as_str()).collect()
}

struct Parked {
    lease: Lease,
    pid: u64,
    rx: mpsc::UnboundedReceiver<Event>,
    /// MRTR input key → the child's id of its request.
    inputs: HashMap<String, Value>,
    method: String,
    owner: Option<String>,
    parked_at: Instant,
}

/// The stateless side: the pool and the parked MRTR calls.
pub struct Stateless {
    pool: Arc<Pool>,
    parked: Mutex<HashMap<String, Parked>>,
}

fn lock(m: &Mutex<HashMap<String, Parked>>) -> MutexGuard<'_, HashMap<String, Parked>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stateless request, checked and ready to run.
pub struct Request {
    /// The request, id as sent by the client.
    pub msg: Message,
    /// Its peeked params.
    pub peek: ParamsPeek,
    /// The identity header the proxy in front set (`X-User-Id`), if any: parked calls are bound to it.
    pub owner: Option<String>,
}

/// The answer: the proxy's own final message, or a running call to stream.
pub enum Outcome {
    /// One final message (errors, discover).
    Done(Message),
    /// A call in progress: poll [`Call::next`] until it returns `None`.
    Call(Call),
}

impl Stateless {
    /// The stateless side over `pool`.
    pub fn new(pool: Arc<Pool>) -> Arc<Stateless> {
        Arc::new(Stateless { pool, parked: Mutex::new(HashMap::new()) })
    }

    /// Validates the SEP-2575 metadata; `Err` is the JSON-RPC error to send (HTTP 400).
    pub fn check_meta(req: &Request) -> Result<(), Box<Message>> {
        let id = req.msg.id.clone();
        let meta = req.peek.meta.as_ref();
        let Some(version) = req.peek.protocol_version() else {
            return Err(Box::new(Message::error(
                id,
                jsonrpc::INVALID_PARAMS,
                "Invalid params: request _meta is missing or has malformed required fields: io.modelcontextprotocol/protocolVersion",
                None,
            )));
        };
        if !supported_versions().contains(&version) {
            return Err(Box::new(Message::error(
                id,
                jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                Some(json!({ "requested": version, "supported": supported_versions() })),
            )));
        }
        if !meta.and_then(|m| m.client_capabilities.as_ref()).is_some_and(Value::is_object) {
            return Err(Box::new(Message::error(
                id,
                jsonrpc::INVALID_PARAMS,
                "Invalid params: request _meta is missing or has malformed required fields: io.modelcontextprotocol/clientCapabilities",
                None,
            )));
        }
        Ok(())
    }

    /// Runs a checked stateless request.
    pub async fn handle(self: &Arc<Self>, req: Request) -> Outcome {
        let client_id = req.msg.id.clone().unwrap_or_default();
        let meta = req.peek.meta.as_ref();
        let capabilities = meta.and_then(|m| m.client_capabilities.clone()).unwrap_or_else(|| json!({}));
        let client_info = meta.and_then(|m| m.client_info.clone());
        let method = req.msg.method().to_owned();

        if let Some(state) = &req.peek.request_state {
            return match self.resume(state, &req, client_id.clone()) {
                Some(call) => Outcome::Call(call),
                None => Outcome::Done(Message::error(
                    Some(client_id),
                    jsonrpc::INVALID_PARAMS,
                    "Invalid params: requestState is unknown or expired; send the request again without it",
                    None,
                )),
            };
        }

        let key = Pool::key(&capabilities, client_info.as_ref());
        let lease = match self.pool.checkout(&key, &capabilities, client_info.as_ref()).await {
            Ok(lease) => lease,
            Err(e) => {
                let code = if matches!(e, PoolError::Busy(_)) { jsonrpc::SERVER_BUSY } else { jsonrpc::INTERNAL_ERROR };
                return Outcome::Done(Message::error(Some(client_id), code, &e.to_string(), None));
            }
        };
        if method == "server/discover" {
            return Outcome::Done(Message::response(client_id, &discover_result(lease.init())));
        }
        let mut msg = req.msg;
        strip_envelope(&mut msg);
        match lease.child().start_request(msg) {
            Ok((pid, rx)) => Outcome::Call(Call {
                st: self.clone(),
                lease: Some(lease),
                pid,
                rx: Some(rx),
                client_id,
                method,
                owner: req.owner,
                done: false,
            }),
            Err(reason) => Outcome::Done(gone(client_id, &reason)),
        }
    }

    /// Takes a parked call back for its retry and hands the child the client's answers.
    fn resume(self: &Arc<Self>, state: &str, req: &Request, client_id: Value) -> Option<Call> {
        let mut parked = lock(&self.parked);
        let p = parked.get(state)?;
        // SECURITY: a parked call continues only for the same method and, behind an auth proxy,
        // the same user; anyone else gets "unknown", exactly like a wrong token.
        if p.method != req.msg.method() || p.owner != req.owner {
            return None;
        }
        let p = parked.remove(state)?;
        drop(parked);
        let answers = req.peek.input_responses.clone().unwrap_or_default();
        let child = p.lease.child().clone();
        for (key, child_id) in p.inputs {
            let reply = match answers.get(&key) {
                Some(result) => Message::response(child_id, result),
                None => Message::error(Some(child_id), jsonrpc::INVALID_PARAMS, "the client sent no answer", None),
            };
            let _ = child.forward_response(reply);
        }
        Some(Call {
            st: self.clone(),
            lease: Some(p.lease),
            pid: p.pid,
            rx: Some(p.rx),
            client_id,
            method: p.method,
            owner: p.owner,
            done: false,
        })
    }

    /// Gives up on parked calls whose client never came back.
    pub fn reap(&self) {
        let expired: Vec<Parked> = {
            let mut parked = lock(&self.parked);
            let keys: Vec<String> =
                parked.iter().filter(|(_, p)| p.parked_at.elapsed() > PARKED_TTL).map(|(k, _)| k.clone()).collect();
            keys.iter().filter_map(|k| parked.remove(k)).collect()
        };
        for p in expired {
            let child = p.lease.child();
            for (_, child_id) in p.inputs {
                let _ = child.forward_response(Message::error(
                    Some(child_id),
                    jsonrpc::INTERNAL_ERROR,
                    "the client did not answer in time",
                    None,
                ));
            }
            child.cancel(p.pid, "the client did not come back with the requested input");
        }
    }
}

/// A stateless request in progress. Dropping it before the end cancels the request.
pub struct Call {
    st: Arc<Stateless>,
    lease: Option<Lease>,
    pid: u64,
    rx: Option<mpsc::UnboundedReceiver<Event>>,
    client_id: Value,
    method: String,
    owner: Option<String>,
    done: bool,
}

impl Call {
    /// The next message for the client; the last one is the final response.
    pub async fn next(&mut self) -> Option<Message> {
        if self.done {
            return None;
        }
        let rx = self.rx.as_mut()?;
        loop {
            let event = rx.recv().await;
            match event {
                Some(Event::Message(msg)) if msg.kind() == Kind::Request => {
                    if may_require_input(&self.method) && input_request_method(msg.method()) {
                        return Some(self.park(msg));
                    }
                    // SEP-2322: no server-to-client requests outside MRTR; tell the child.
                    let reply = Message::error(
                        msg.id.clone(),
                        jsonrpc::METHOD_NOT_FOUND,
                        "mcp-stdio-proxy: a stateless (2026-07-28) client cannot answer this request here",
                        None,
                    );
                    if let Some(lease) = &self.lease {
                        let _ = lease.child().forward_response(reply);
                    }
                }
                Some(Event::Message(msg)) => return Some(msg),
                Some(Event::Final(mut msg)) => {
                    self.done = true;
                    msg.id = Some(self.client_id.clone());
                    if let Some(result) = &msg.result {
                        msg.result = Some(if cacheable(&self.method) {
                            with_cache_hints(result)
                        } else {
                            mark_complete(result)
                        });
                    }
                    return Some(msg);
                }
                Some(Event::Closed(reason)) => {
                    self.done = true;
                    return Some(gone(self.client_id.clone(), &reason));
                }
                None => {
                    self.done = true;
                    return Some(Message::error(
                        Some(self.client_id.clone()),
                        jsonrpc::INTERNAL_ERROR,
                        "the request was cancelled",
                        None,
                    ));
                }
            }
        }
    }

    fn park(&mut self, server_request: Message) -> Message {
        self.done = true;
        // SECURITY: the requestState is a bearer handle to this call: 122 random bits.
        let state = uuid::Uuid::new_v4().simple().to_string();
        let key = "input-1".to_owned();
        let params: Value = server_request
            .params
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_else(|| json!({}));
        let result = json!({
            "resultType": "input_required",
            "inputRequests": { &key: { "method": server_request.method(), "params": params } },
            "requestState": state,
        });
        let (Some(lease), Some(rx)) = (self.lease.take(), self.rx.take()) else {
            return gone(self.client_id.clone(), &Reason::from("the call ended"));
        };
        debug!(session = %lease.child().tag(), method = server_request.method(), "parked a call for MRTR input");
        let parked = Parked {
            lease,
            pid: self.pid,
            rx,
            inputs: HashMap::from([(key, server_request.id.unwrap_or_default())]),
            method: self.method.clone(),
            owner: self.owner.clone(),
            parked_at: Instant::now(),
        };
        lock(&self.st.parked).insert(state, parked);
        Message::response(self.client_id.clone(), &result)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done
            && let Some(lease) = &self.lease
        {
            // 2026-07-28: a closed response stream is the client's cancellation.
            lease.child().cancel(self.pid, "the client closed the request");
        }
    }
}

/// The error for a request whose child is gone.
pub fn gone(client_id: Value, reason: &Reason) -> Message {
    Message::error(Some(client_id), jsonrpc::INTERNAL_ERROR, reason, Some(json!({ "reason": "child_exited" })))
}

/// SEP-2575 request-envelope keys in `_meta`.
const ENVELOPE_KEYS: [&str; 4] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/logLevel",
];

/// Removes the 2026-07-28 envelope from `_meta` before a request goes to a child that was
/// initialized with the handshake: the proxy already told the child who the client is, and
/// SDKs that know both eras refuse enveloped requests on a handshake connection (the Python
/// SDK 2.x does). Other `_meta` keys (progress token, extensions) and every other param are
/// kept as raw JSON; only the order of top-level members may change.
fn strip_envelope(msg: &mut Message) {
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;
    let Some(params) = &msg.params else { return };
    if !params.get().contains("io.modelcontextprotocol/") {
        return;
    }
    let Ok(mut top) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(params.get()) else { return };
    let Some(meta) = top.get("_meta") else { return };
    let Ok(mut meta) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(meta.get()) else { return };
    for key in ENVELOPE_KEYS {
        meta.remove(key);
    }
    if meta.is_empty() {
        top.remove("_meta");
    } else if let Ok(raw) = serde_json::value::to_raw_value(&meta) {
        top.insert("_meta".into(), raw);
    }
    if let Ok(raw) = serde_json::value::to_raw_value(&top) {
        msg.params = Some(raw);
    }
}

/// Adds `resultType: "complete"` to a result object that lacks it (2026-07-28 requires it on
/// every result; legacy servers never send it). The payload is otherwise left byte for byte.
fn mark_complete(result: &serde_json::value::RawValue) -> Box<serde_json::value::RawValue> {
    let text = result.get();
    let trimmed = text.trim_start();
    let Some(rest) = trimmed.strip_prefix('{') else {
        return result.to_owned();
    };
    if text.contains("\"resultType\"") {
        // Rare: decide on the parsed top level rather than guess from the text.
        let has =
            serde_json::from_str::<serde_json::Map<String, Value>>(text).is_ok_and(|m| m.contains_key("resultType"));
        if has {
            return result.to_owned();
        }
    }
    let sep = if rest.trim_start().starts_with('}') { "" } else { "," };
    let patched = format!("{{\"resultType\":\"complete\"{sep}{rest}");
    serde_json::value::RawValue::from_string(patched).unwrap_or_else(|_| result.to_owned())
}

/// Results that carry SEP-2549 caching hints (`ttlMs`, `cacheScope`) at 2026-07-28.
fn cacheable(method: &str) -> bool {
    matches!(method, "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" | "resources/read")
}

/// [`mark_complete`] plus the caching hints a legacy child never sends: no caching
/// (`ttlMs: 0`), private to this client. Only the top level is parsed; values stay as sent.
fn with_cache_hints(result: &serde_json::value::RawValue) -> Box<serde_json::value::RawValue> {
    type Top = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;
    let Ok(mut top) = serde_json::from_str::<Top>(result.get()) else {
        return mark_complete(result);
    };
    for (key, value) in [("resultType", r#""complete""#), ("ttlMs", "0"), ("cacheScope", r#""private""#)] {
        if !top.contains_key(key)
            && let Ok(raw) = serde_json::value::RawValue::from_string(value.to_owned())
        {
            top.insert(key.to_owned(), raw);
        }
    }
    serde_json::value::to_raw_value(&top).unwrap_or_else(|_| mark_complete(result))
}

/// The SEP-2575 `server/discover` result built from a child's `InitializeResult`.
fn discover_result(init: &Value) -> Value {
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": supported_versions(),
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "ttlMs": 0,
        "cacheScope": "private",
    });
    if let Some(instructions) = init.get("instructions").filter(|v| v.is_string()) {
        result["instructions"] = instructions.clone();
    }
    if let Some(info) = init.get("serverInfo") {
        result["_meta"] = json!({ "io.modelcontextprotocol/serverInfo": info });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn list_results_get_cache_hints_unless_present() {
        let out: Value = serde_json::from_str(with_cache_hints(&raw(r#"{"tools":[{"name":"a"}]}"#)).get()).unwrap();
        assert_eq!(out, json!({"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[{"name":"a"}]}));
        let kept: Value = serde_json::from_str(with_cache_hints(&raw(r#"{"tools":[],"ttlMs":5}"#)).get()).unwrap();
        assert_eq!(kept["ttlMs"], 5);
        assert!(cacheable("tools/list") && !cacheable("tools/call"));
    }

    #[test]
    fn result_type_is_added_once() {
        assert_eq!(mark_complete(&raw(r#"{"content":[]}"#)).get(), r#"{"resultType":"complete","content":[]}"#);
        assert_eq!(mark_complete(&raw("{}")).get(), r#"{"resultType":"complete"}"#);
        assert_eq!(mark_complete(&raw(r#"{"resultType":"x"}"#)).get(), r#"{"resultType":"x"}"#);
        let nested = r#"{"a":{"resultType":"inner"}}"#;
        assert_eq!(mark_complete(&raw(nested)).get(), r#"{"resultType":"complete","a":{"resultType":"inner"}}"#);
    }

    #[test]
    fn envelope_is_stripped_and_the_rest_kept() {
        let mut m = Message::request(
            Some(json!(1)),
            "tools/call",
            Some(json!({"name":"x","arguments":{"f":0.30000000000000004},"_meta":{
                "progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28",
                "io.modelcontextprotocol/clientCapabilities":{}}})),
        );
        strip_envelope(&mut m);
        let params: Value = serde_json::from_str(m.params.as_ref().unwrap().get()).unwrap();
        assert_eq!(params["_meta"], json!({"progressToken":"p"}));
        assert!(m.params.as_ref().unwrap().get().contains("0.30000000000000004"));
        let mut only_envelope = Message::request(
            Some(json!(2)),
            "tools/list",
            Some(json!({"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}})),
        );
        strip_envelope(&mut only_envelope);
        assert_eq!(only_envelope.params.as_ref().unwrap().get(), "{}");
    }

    #[test]
    fn discover_from_initialize() {
        let init = json!({"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"},"instructions":"hi"});
        let d = discover_result(&init);
        assert_eq!(d["capabilities"], json!({"tools":{}}));
        assert_eq!(d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "s");
        assert_eq!(d["instructions"], "hi");
        assert!(d["supportedVersions"].as_array().unwrap().contains(&json!("2026-07-28")));
    }
}
