//! Redirect URIs: what may be registered (RFC 7591 §2, RFC 8252 §7, OAuth 2.1 §2.3) and how a
//! presented one is matched against the registration (exact string comparison, OAuth 2.1
//! §4.1.1 / RFC 9700 §4.1.3, with only the port of a loopback URI left free, RFC 8252 §7.3).

use url::Url;

use crate::config::is_loopback_host;

/// Schemes that can never be a redirect target: they run code in the browser, read local
/// files, or leave the browser for something that is not the client.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "vbscript",
    "file",
    "about",
    "blob",
    "filesystem",
    "view-source",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "tel",
    "sms",
    "chrome",
    "chrome-extension-invalid",
    "urn",
];

/// The out-of-band "redirect URI" of OAuth 2.0 installed apps (dropped by OAuth 2.1). Registered
/// by device-code clients such as the Python gateway's client bridge; stored, never redirected to.
pub const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

/// Checks one URI a client wants to register. The error is the `error_description`.
pub fn validate_registered(uri: &str) -> Result<(), String> {
    if uri.is_empty() || uri.len() > 2000 {
        return Err("redirect URI must be 1 to 2000 characters".into());
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("redirect URI must not contain spaces or control characters".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("redirect URI is not an absolute URI: {e}"))?;
    if url.fragment().is_some() || uri.contains('#') {
        // RFC 6749 §3.1.2: the endpoint URI MUST NOT include a fragment component.
        return Err("redirect URI must not contain a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("redirect URI must not contain user information".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        // SECURITY: plain http only to the user's own machine (RFC 8252 §7.3, OAuth 2.1 §2.3.1).
        "http" if url.host_str().is_some_and(is_loopback_host) => Ok(()),
        "http" => {
            Err("http redirect URIs are allowed only for loopback hosts (127.0.0.1, [::1], localhost); use https"
                .into())
        }
        s if FORBIDDEN_SCHEMES.contains(&s) => Err(format!("redirect URI scheme {s:?} is not allowed")),
        // RFC 8252 §7.1: private-use URI schemes of native apps (com.example.app:/cb, cursor://...).
        _ => Ok(()),
    }
}

/// Finds the registered URI the presented one stands for: exactly equal, or a loopback URI
/// equal in everything but the port (native apps pick a free port at run time).
pub fn find_match<'a>(registered: &'a [String], presented: &str) -> Option<&'a str> {
    if presented == OOB {
        // SECURITY: accepted at registration for device-code clients, never a redirect target.
        return None;
    }
    if let Some(exact) = registered.iter().find(|r| r.as_str() == presented) {
        return Some(exact);
    }
    let p = Url::parse(presented).ok()?;
    if p.scheme() != "http" || !p.host_str().is_some_and(is_loopback_host) || p.fragment().is_some() {
        return None;
    }
    if !p.username().is_empty() || p.password().is_some() {
        return None;
    }
    // SECURITY: the same characters but for the port, not merely the same URL once parsed
    // (`http://127.0` and `http://127.0.0:` are one address to a URL parser; found by fuzzing).
    let presented = without_port(presented)?;
    registered.iter().map(String::as_str).find(|r| {
        Url::parse(r).is_ok_and(|u| u.scheme() == "http" && u.host_str().is_some_and(is_loopback_host))
            && without_port(r).is_some_and(|r| r == presented)
    })
}

/// `uri` without the port of its authority (`http://127.0.0.1:8080/cb` → `http://127.0.0.1/cb`).
pub fn without_port(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            &authority[..i]
        }
        _ => authority,
    };
    Some(format!("{scheme}://{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_uris_match_but_for_the_port_only() {
        let reg =
            vec!["http://127.0.0.1:33418/cb".to_owned(), "http://[::1]/cb".to_owned(), "http://127.0.0:".to_owned()];
        assert_eq!(find_match(&reg, "http://127.0.0.1:50000/cb"), Some("http://127.0.0.1:33418/cb"));
        assert_eq!(find_match(&reg, "http://127.0.0.1/cb"), Some("http://127.0.0.1:33418/cb"));
        assert_eq!(find_match(&reg, "http://[::1]:8080/cb"), Some("http://[::1]/cb"));
        // Found by fuzzing: one address to a URL parser, not the registered characters.
        assert_eq!(find_match(&reg, "http://127.0"), None);
        assert_eq!(find_match(&reg, "http://127.1:33418/cb"), None);
        assert_eq!(find_match(&reg, "http://127.0.0.1:50000/cb/"), None);
        assert_eq!(find_match(&reg, "http://127.0.0.1:50000/CB"), None);
        assert_eq!(without_port("http://[::1]:8080/x?y"), Some("http://[::1]/x?y".to_owned()));
        assert_eq!(without_port("http://[::1]/x"), Some("http://[::1]/x".to_owned()));
    }

    #[test]
    fn registration_rules() {
        let ok = [
            "https://client.example.com/cb",
            "http://localhost:3000/callback",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "com.example.app:/oauth2redirect",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
        ];
        for u in ok {
            assert!(validate_registered(u).is_ok(), "{u}");
        }
        let bad = [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "http://client.example.com/cb",
            "http://localhost.evil.com/cb",
            "https://client.example.com/cb#frag",
            "https://user:pw@client.example.com/cb",
            "/relative/cb",
            "",
            "https://client.example.com/cb\r\nX: y",
            "https://client.example.com/c b",
        ];
        for u in bad {
            assert!(validate_registered(u).is_err(), "{u}");
        }
    }

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        let reg = vec![
            "https://client.example.com/cb".to_string(),
            "http://127.0.0.1:1234/cb".to_string(),
            "http://localhost/callback".to_string(),
        ];
        let cases = [
            ("https://client.example.com/cb", true),
            ("https://client.example.com/cb/", false),
            ("https://client.example.com/cbx", false),
            ("https://client.example.com/c", false),
            ("https://client.example.com/cb?x=1", false),
            ("https://client.example.com.evil.com/cb", false),
            ("https://client.example.com:443/cb", false),
            ("HTTPS://client.example.com/cb", false),
            ("http://client.example.com/cb", false),
            ("http://127.0.0.1:5555/cb", true),
            ("http://127.0.0.1/cb", true),
            ("http://127.0.0.1:5555/cb2", false),
            ("http://127.0.0.1:5555/cb?x=1", false),
            ("http://[::1]:5555/cb", false),
            ("http://localhost:49152/callback", true),
            ("http://localhost.evil.com/callback", false),
            ("http://evil@localhost:1/callback", false),
            ("https://127.0.0.1:5555/cb", false),
        ];
        for (presented, want) in cases {
            assert_eq!(find_match(&reg, presented).is_some(), want, "{presented}");
        }
    }
}
