//! Form bodies and queries (`/token`, `/revoke`, `/introspect`, `/authorize`, the device
//! endpoints), and the values the grants read from them: scope, PKCE.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::oauth::params::{MAX_VALUE_LEN, Params};
use mcp_authd::oauth::{pkce, scope};

fuzz_target!(|data: &[u8]| {
    let Ok(params) = Params::parse(data) else {
        return;
    };
    for name in ["grant_type", "code", "code_verifier", "refresh_token", "scope", "resource", "state"] {
        if let Some(v) = params.get(name) {
            assert!(!v.is_empty() && v.len() <= MAX_VALUE_LEN);
        }
    }
    let supported = vec!["mcp".to_owned(), "read".to_owned(), "write".to_owned()];
    if let Ok(granted) = scope::grant(params.get("scope"), &supported, &supported[..1]) {
        // Whatever is granted is a subset of what is supported.
        for s in granted.split(' ').filter(|s| !s.is_empty()) {
            assert!(supported.iter().any(|x| x == s), "{s:?} granted");
        }
        if let Ok(narrowed) = scope::narrow(params.get("state"), &granted) {
            assert!(scope::contains_all(
                &granted,
                &narrowed.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>()
            ));
        }
    }
    if let Ok(challenge) = pkce::validate_challenge(params.get("code_challenge"), params.get("code_challenge_method")) {
        // A verifier matches only the challenge made from it.
        if let Some(verifier) = params.get("code_verifier") {
            if pkce::verify(Some(verifier), &challenge).is_ok() {
                assert_eq!(pkce::challenge_for(verifier), challenge);
            }
        }
    }
});
