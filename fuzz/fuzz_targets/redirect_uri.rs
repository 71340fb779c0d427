//! Redirect URI rules: what may be registered, and which registered URI a presented one
//! stands for (exact, loopback ports aside: RFC 8252 §7.3). Input: lines; the last is presented.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::oauth::redirect::{find_match, validate_registered};

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
            // Only a loopback URI may differ, and only in its port.
            let (a, b) = (url::Url::parse(found).unwrap(), url::Url::parse(presented).unwrap());
            assert!(matches!(a.host_str(), Some("127.0.0.1" | "[::1]")), "{found} ~ {presented}");
            assert_eq!(
                (a.scheme(), a.host_str(), a.path(), a.query()),
                (b.scheme(), b.host_str(), b.path(), b.query())
            );
        }
    }
});
