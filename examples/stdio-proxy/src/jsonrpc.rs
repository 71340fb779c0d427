//! JSON-RPC 2.0 envelopes as the proxy sees them (JSON-RPC 2.0 §4-5, MCP "Base Protocol").
//!
//! The proxy never re-models MCP messages: `params`, `result` and `error` stay raw JSON text
//! ([`RawValue`]) and are copied through untouched, so fields this crate (or rmcp) does not know
//! survive the trip. Only the envelope is parsed, to route by `id` and `method`, and only the
//! `id` is ever rewritten (see `child.rs` for why).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// JSON-RPC 2.0 §5.1 / JSON-RPC: invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 §5.1: the JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0 §5.1: the method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC 2.0 §5.1: invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC 2.0 §5.1: internal error (here: the stdio server is gone or unusable).
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined server error (JSON-RPC 2.0 §5.1 reserves -32000..-32099): the proxy
/// is at capacity (sessions or stateless children).
pub const SERVER_BUSY: i64 = -32000;
/// MCP 2026-07-28 (SEP-2243): an `Mcp-*` header does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// MCP 2026-07-28 (SEP-2575): the requested protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// One JSON-RPC message: request, notification, response or error, told apart by [`Kind`].
#[derive(Debug, Deserialize, Serialize)]
pub struct Message {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Request or response id: a string or an integer (JSON-RPC 2.0 §4). `null` reads as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Method name, on requests and notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Parameters, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Box<RawValue>>,
    /// Result of a successful response, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// Error object of a failed response, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<RawValue>>,
}

/// What a [`Message`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and a valid `id`: expects a response.
    Request,
    /// Has `method` and no `id`.
    Notification,
    /// Has `result` or `error` and an `id`.
    Response,
    /// Anything else (wrong version, bad id type, response without id, ...).
    Invalid,
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.as_i64().is_some() || id.as_u64().is_some()
}

impl Message {
    /// Parses one message; `Err` carries a short reason for the log or the client.
    pub fn parse(bytes: &[u8]) -> Result<Message, String> {
        serde_json::from_slice::<Message>(bytes).map_err(|e| e.to_string())
    }

    /// Classifies the message (JSON-RPC 2.0 §4, §4.1, §5).
    pub fn kind(&self) -> Kind {
        if self.jsonrpc != "2.0" {
            return Kind::Invalid;
        }
        match (&self.method, &self.id) {
            (Some(_), Some(id)) if valid_id(id) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (Some(_), Some(_)) => Kind::Invalid,
            (None, Some(id)) if valid_id(id) && (self.result.is_some() != self.error.is_some()) => Kind::Response,
            _ => Kind::Invalid,
        }
    }

    /// The method name, or `""`.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// A request (`id` given) or notification (`id` `None`).
    pub fn request(id: Option<Value>, method: &str, params: Option<Value>) -> Message {
        Message {
            jsonrpc: "2.0".into(),
            id,
            method: Some(method.to_owned()),
            params: params.map(|p| to_raw(&p)),
            result: None,
            error: None,
        }
    }

    /// A successful response.
    pub fn response(id: Value, result: &Value) -> Message {
        Message {
            jsonrpc: "2.0".into(),
            id: Some(id),
            method: None,
            params: None,
            result: Some(to_raw(result)),
            error: None,
        }
    }

    /// An error response (JSON-RPC 2.0 §5.1). `id` is `None` when the request's id is unknown.
    pub fn error(id: Option<Value>, code: i64, message: &str, data: Option<Value>) -> Message {
        let mut error = Map::new();
        error.insert("code".into(), code.into());
        error.insert("message".into(), message.into());
        if let Some(data) = data {
            error.insert("data".into(), data);
        }
        Message {
            jsonrpc: "2.0".into(),
            id,
            method: None,
            params: None,
            result: None,
            error: Some(to_raw(&Value::Object(error))),
        }
    }

    /// The `error.code` of an error response.
    pub fn error_code(&self) -> Option<i64> {
        #[derive(Deserialize)]
        struct Code {
            code: i64,
        }
        serde_json::from_str::<Code>(self.error.as_ref()?.get()).ok().map(|c| c.code)
    }

    /// Serialized as one compact JSON text (no raw newlines: fit for stdio lines and SSE `data:`).
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and raw JSON cannot fail.
        serde_json::to_string(self).expect("a JSON-RPC envelope serializes")
    }

    /// Serialized as one newline-terminated line for a child's stdin (MCP stdio transport).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a JSON-RPC envelope serializes");
        line.push(b'\n');
        line
    }

    /// The fields of `params` the proxy looks at; unknown or absent fields are `None`.
    pub fn peek_params(&self) -> ParamsPeek {
        self.params.as_ref().and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or_default()
    }
}

/// Wraps an owned JSON value as raw JSON.
pub fn to_raw(value: &Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("serde_json output is valid JSON")
}

/// The few `params` fields that steer routing, checked headers, stateless metadata and MRTR;
/// everything else in `params` is skipped while parsing and forwarded untouched.
#[derive(Debug, Default, Deserialize)]
pub struct ParamsPeek {
    /// `_meta` (MCP "General fields").
    #[serde(rename = "_meta", default)]
    pub meta: Option<MetaPeek>,
    /// `tools/call`, `prompts/get`: what SEP-2243 `Mcp-Name` must equal.
    #[serde(default)]
    pub name: Option<Value>,
    /// `resources/read|subscribe|unsubscribe`: what `Mcp-Name` must equal.
    #[serde(default)]
    pub uri: Option<Value>,
    /// `tasks/*`: what `Mcp-Name` must equal.
    #[serde(rename = "taskId", default)]
    pub task_id: Option<Value>,
    /// `notifications/progress` from a server: the token the client chose.
    #[serde(rename = "progressToken", default)]
    pub progress_token: Option<Value>,
    /// `notifications/cancelled`: the id of the request to cancel.
    #[serde(rename = "requestId", default)]
    pub request_id: Option<Value>,
    /// SEP-2322 (MRTR) retry: the opaque state of an earlier `input_required` result.
    #[serde(rename = "requestState", default)]
    pub request_state: Option<String>,
    /// SEP-2322 (MRTR) retry: the client's answers, keyed like `inputRequests`.
    #[serde(rename = "inputResponses", default)]
    pub input_responses: Option<Map<String, Value>>,
}

/// The reserved `_meta` keys the proxy reads (MCP "General fields", SEP-2575).
#[derive(Debug, Default, Deserialize)]
pub struct MetaPeek {
    /// Progress token the client wants `notifications/progress` tagged with.
    #[serde(rename = "progressToken", default)]
    pub progress_token: Option<Value>,
    /// SEP-2575: the protocol version of a stateless request.
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", default)]
    pub protocol_version: Option<Value>,
    /// SEP-2575: who the stateless client is.
    #[serde(rename = "io.modelcontextprotocol/clientInfo", default)]
    pub client_info: Option<Value>,
    /// SEP-2575: what the stateless client can do (required on 2026-07-28 requests).
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", default)]
    pub client_capabilities: Option<Value>,
}

impl ParamsPeek {
    /// The SEP-2243 `Mcp-Name` value this method's body implies, if the method has one.
    pub fn mcp_name(&self, method: &str) -> Option<&Value> {
        match method {
            "tools/call" | "prompts/get" => self.name.as_ref(),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => self.uri.as_ref(),
            "tasks/get" | "tasks/update" | "tasks/cancel" => self.task_id.as_ref(),
            _ => None,
        }
    }

    /// The per-request protocol version string from `_meta`, if present and a string.
    pub fn protocol_version(&self) -> Option<&str> {
        self.meta.as_ref()?.protocol_version.as_ref()?.as_str()
    }
}

/// JSON with object keys sorted at every level, so equal values give equal strings.
pub fn canonical(value: &Value) -> String {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&map[k]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // With serde_json's `preserve_order` on (some dependency may enable it), insertion order is
    // kept; without it, maps are already sorted. Either way `sort` inserts in sorted order.
    sort(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds() {
        let k = |s: &str| Message::parse(s.as_bytes()).unwrap().kind();
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Kind::Request);
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#), Kind::Request);
        assert_eq!(k(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Kind::Notification);
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#), Kind::Response);
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#), Kind::Response);
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#), Kind::Invalid);
        assert_eq!(k(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), Kind::Invalid);
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#), Kind::Invalid);
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#), Kind::Invalid);
    }

    #[test]
    fn raw_fields_pass_through_untouched() {
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"z":1,"a":{"unknownField":[1,2,{"x":null}]}}}"#;
        let mut m = Message::parse(text.as_bytes()).unwrap();
        m.id = Some(json!("client-1"));
        assert_eq!(
            m.to_json(),
            r#"{"jsonrpc":"2.0","id":"client-1","result":{"z":1,"a":{"unknownField":[1,2,{"x":null}]}}}"#
        );
    }

    #[test]
    fn peek_reads_routing_fields_only() {
        let m = Message::request(
            Some(json!(1)),
            "tools/call",
            Some(json!({"name":"echo","arguments":{"deep":{"x":1}},"_meta":{"progressToken":"p1",
              "io.modelcontextprotocol/protocolVersion":"2026-07-28"}})),
        );
        let p = m.peek_params();
        assert_eq!(p.mcp_name("tools/call"), Some(&json!("echo")));
        assert_eq!(p.meta.as_ref().unwrap().progress_token, Some(json!("p1")));
        assert_eq!(p.protocol_version(), Some("2026-07-28"));
    }

    #[test]
    fn error_code_and_canonical() {
        let e = Message::error(Some(json!(1)), METHOD_NOT_FOUND, "nope", None);
        assert_eq!(e.error_code(), Some(METHOD_NOT_FOUND));
        assert_eq!(
            canonical(&json!({"b":{"y":1,"x":2},"a":[{"d":1,"c":2}]})),
            r#"{"a":[{"c":2,"d":1}],"b":{"x":2,"y":1}}"#
        );
    }
}
