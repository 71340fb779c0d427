//! PKCE (RFC 7636), S256 only: OAuth 2.1 §4.1.1 and RFC 9700 §2.1.1 make it mandatory here,
//! and `plain` would defeat its purpose, so it is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::secret::constant_time_eq;

/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`.
fn is_valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.2: a S256 challenge is base64url(SHA-256) without padding: 43 characters.
pub fn validate_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<String, String> {
    let Some(challenge) = challenge.filter(|c| !c.is_empty()) else {
        return Err("code_challenge is required (PKCE, RFC 7636)".into());
    };
    match method {
        Some("S256") => {}
        Some("plain") => return Err("code_challenge_method plain is not allowed; use S256".into()),
        Some(_) => return Err("code_challenge_method must be S256".into()),
        // RFC 7636 §4.3 would default to plain, which this server does not accept.
        None => return Err("code_challenge_method is required and must be S256".into()),
    }
    let ok = challenge.len() == 43 && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|d| d.len() == 32);
    if !ok {
        return Err("code_challenge is not a S256 challenge (43 base64url characters)".into());
    }
    Ok(challenge.to_owned())
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn verify(verifier: Option<&str>, challenge: &str) -> Result<(), String> {
    let Some(verifier) = verifier else {
        return Err("code_verifier is required".into());
    };
    if !is_valid_verifier(verifier) {
        return Err("code_verifier must be 43-128 unreserved characters (RFC 7636 §4.1)".into());
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if constant_time_eq(&computed, challenge) {
        Ok(())
    } else {
        Err("code_verifier does not match the code_challenge".into())
    }
}

/// A S256 challenge for `verifier` (for the upstream leg, where this server is the client).
pub fn challenge_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(challenge_for(VERIFIER), CHALLENGE);
        assert!(verify(Some(VERIFIER), CHALLENGE).is_ok());
    }

    #[test]
    fn wrong_missing_or_malformed_verifier() {
        assert!(verify(None, CHALLENGE).is_err());
        assert!(verify(Some(&VERIFIER.replace('d', "e")), CHALLENGE).is_err());
        assert!(verify(Some("short"), CHALLENGE).is_err());
        assert!(verify(Some(&"a".repeat(129)), CHALLENGE).is_err());
        assert!(verify(Some(&format!("{}+", &VERIFIER[..43])), CHALLENGE).is_err());
    }

    #[test]
    fn only_s256_challenges() {
        assert!(validate_challenge(Some(CHALLENGE), Some("S256")).is_ok());
        assert!(validate_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(validate_challenge(Some(CHALLENGE), None).is_err());
        assert!(validate_challenge(None, Some("S256")).is_err());
        assert!(validate_challenge(Some("abc"), Some("S256")).is_err());
        assert!(validate_challenge(Some(VERIFIER), Some("s256")).is_err());
    }
}
