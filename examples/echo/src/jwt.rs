//! `bearerDecode`: read the JWT in an `Authorization: Bearer` header (RFC 6750 §2.1) without
//! verifying it. A JWS compact serialization is three base64url parts (RFC 7515 §7.1), a JWE
//! five (RFC 7516 §7.1); the time claims are NumericDate seconds (RFC 7519 §2, §4.1.4-6).
//!
//! Nothing here checks a signature: mcp-authd did that at the proxy. The output says so.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Shown when no `Authorization` header reached the server.
pub const NO_TOKEN: &str = "no Authorization header reached this server: mcp-authd does not pass the client's \
     token on unless `verify.forward_token = true` and the proxy forwards the Authorization header";

/// Decodes the `Authorization` header value (or its absence) at `now`.
pub fn decode_authorization(authorization: Option<&str>, now: DateTime<Utc>) -> Value {
    let Some(value) = authorization else {
        return not_decoded(NO_TOKEN.to_string());
    };
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        Some((scheme, _)) => {
            return not_decoded(format!("the Authorization header uses the {scheme} scheme, not Bearer"));
        }
        None => return not_decoded("the Authorization header has no scheme (expected `Bearer <token>`)".into()),
    };
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [header, payload, signature] => match (json_part(header), json_part(payload)) {
            (Ok(header), Ok(claims)) => decoded(header, claims, signature, now),
            (Err(e), _) => not_decoded(format!("not a JWT: the header part {e}")),
            (_, Err(e)) => not_decoded(format!("not a JWT: the payload part {e}")),
        },
        [header, ..] if parts.len() == 5 => {
            let alg = json_part(header).ok().and_then(|h| h.get("enc").cloned());
            not_decoded(format!(
                "an encrypted JWT (JWE, enc {}): its claims cannot be read without the recipient's key",
                alg.unwrap_or(Value::Null)
            ))
        }
        _ => not_decoded(format!(
            "not a JWT: an opaque bearer token of {} chars (a JWT has three dot-separated parts)",
            token.chars().count()
        )),
    }
}

fn not_decoded(message: String) -> Value {
    json!({ "decoded": false, "message": message })
}

/// One base64url part decoded and parsed as a JSON object.
fn json_part(part: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|e| format!("is not base64url ({e})"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("is JSON but not an object".into()),
        Err(e) => Err(format!("is not JSON ({e})")),
    }
}

fn decoded(header: Map<String, Value>, claims: Map<String, Value>, signature: &str, now: DateTime<Utc>) -> Value {
    let time = |claim: &str| claims.get(claim).and_then(Value::as_i64).map(|t| describe_time(t, now));
    let expiry = match claims.get("exp").and_then(Value::as_i64) {
        None => "no exp claim: the token never expires".to_string(),
        Some(exp) => {
            let at = DateTime::from_timestamp(exp, 0).map(|d| d.to_rfc3339()).unwrap_or_else(|| exp.to_string());
            let left = exp - now.timestamp();
            if left > 0 {
                format!("expires in {} ({at})", human_duration(left))
            } else {
                format!("expired {} ago ({at})", human_duration(-left))
            }
        }
    };
    json!({
        "decoded": true,
        "verified": false,
        "header": header,
        "claims": claims,
        "signature_bytes": URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')).map(|s| s.len()).ok(),
        "expiry": expiry,
        "times": { "exp": time("exp"), "iat": time("iat"), "nbf": time("nbf") },
        "note": "decoded only: the signature is not verified here (mcp-authd verified it at the proxy)",
    })
}

/// A NumericDate as Unix seconds, UTC date and "in …" / "… ago".
fn describe_time(t: i64, now: DateTime<Utc>) -> Value {
    let delta = t - now.timestamp();
    let relative =
        if delta >= 0 { format!("in {}", human_duration(delta)) } else { format!("{} ago", human_duration(-delta)) };
    json!({
        "unix": t,
        "utc": DateTime::from_timestamp(t, 0).map(|d| d.to_rfc3339()),
        "relative": relative,
    })
}

/// `3725` -> `1 h 2 min`: the largest unit and the next one, so it reads at a glance.
pub fn human_duration(seconds: i64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    let s = seconds.unsigned_abs();
    let first = UNITS.iter().position(|(size, _)| s >= *size).unwrap_or(UNITS.len() - 1);
    let (size, name) = UNITS[first];
    let mut text = format!("{} {name}", s / size);
    if let Some((next, next_name)) = UNITS.get(first + 1) {
        let n = (s % size) / next;
        if n > 0 {
            text.push_str(&format!(" {n} {next_name}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn decodes_claims_and_expiry() {
        let token = format!(
            "{}.{}.{}",
            b64(&json!({"alg": "RS256", "typ": "at+jwt", "kid": "k1"})),
            b64(&json!({"sub": "alice", "exp": 1_800_003_600, "iat": 1_799_999_000})),
            URL_SAFE_NO_PAD.encode([1u8; 32])
        );
        let out = decode_authorization(Some(&format!("Bearer {token}")), now());
        assert_eq!(out["decoded"], true);
        assert_eq!(out["verified"], false);
        assert_eq!(out["header"]["typ"], "at+jwt");
        assert_eq!(out["claims"]["sub"], "alice");
        assert_eq!(out["signature_bytes"], 32);
        assert_eq!(out["expiry"], "expires in 1 h (2027-01-15T09:00:00+00:00)");
        assert_eq!(out["times"]["iat"]["relative"], "16 min 40 s ago");
    }

    #[test]
    fn expired_token() {
        let token = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&json!({"exp": 1_799_999_990})));
        let out = decode_authorization(Some(&format!("bearer {token}")), now());
        assert_eq!(out["expiry"].as_str().unwrap().split(" (").next(), Some("expired 10 s ago"));
    }

    #[test]
    fn clear_messages_when_not_a_jwt() {
        let none = decode_authorization(None, now());
        assert_eq!(none["decoded"], false);
        assert!(none["message"].as_str().unwrap().contains("forward_token"));
        let basic = decode_authorization(Some("Basic dXNlcjpwdw=="), now());
        assert!(basic["message"].as_str().unwrap().contains("Basic scheme"));
        let opaque = decode_authorization(Some("Bearer 0123456789"), now());
        assert!(opaque["message"].as_str().unwrap().contains("opaque bearer token of 10 chars"));
        let garbage = decode_authorization(Some("Bearer a.b.c"), now());
        assert!(garbage["message"].as_str().unwrap().starts_with("not a JWT"));
        let jwe = format!("{}.x.y.z.w", b64(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"})));
        let out = decode_authorization(Some(&format!("Bearer {jwe}")), now());
        assert!(out["message"].as_str().unwrap().contains("encrypted JWT"));
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(59), "59 s");
        assert_eq!(human_duration(3_725), "1 h 2 min");
        assert_eq!(human_duration(7_200), "2 h");
        assert_eq!(human_duration(90_061), "1 d 1 h");
    }
}
