//! Redirect URI rules: what may be registered, and which registered URI a presented one
//! stands for (exact, loopback ports aside: RFC 8252 §7.3). Input: lines; the last is presented.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::config::is_loopback_host;
use mcp_authd::oauth::redirect::{find_match, validate_registered, without_port};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let presented = lines.pop().unwrap_or("");
    let registered: Vec<String> =
        lines.into_iter().filter(|u| validate_registered(u).is_ok()).map(str::to_owned).collect();
    if let Some(found) = find_match(&registered, presented) {
        assert!(registered.iter().any(|r| r == found));
        if found != presented {
            // Only a loopback http URI may differ, and only in its port, character for character.
            let a = url::Url::parse(found).unwrap();
            assert!(a.scheme() == "http" && a.host_str().is_some_and(is_loopback_host), "{found} ~ {presented}");
            assert_eq!(without_port(found), without_port(presented), "{found} ~ {presented}");
        }
    }
});
