//! Bearer tokens as /verify reads them: any string against our keys. Nothing but a token we
//! signed (and did not alter) may verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_authd::config::SigningAlgorithm;
use mcp_authd::jwt::Keys;

const ISSUER: &str = "https://auth.example.com";

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pem = mcp_authd::jwt::generate_pem(SigningAlgorithm::RS256).expect("a fresh key");
        Keys::from_pems(&pem, &[], ISSUER).expect("the key loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = mcp_authd::verify::bearer_token(token) {
        let _ = keys().verify(t);
    }
    // The fuzzer cannot forge our RS256 signature: anything that verifies is a bug.
    assert!(keys().verify(token).is_err(), "a fuzzed token verified: {token:?}");
    let _ = keys().verify_ignoring_expiry(token);
});
