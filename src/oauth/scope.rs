//! Scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens.

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Splits a scope string into its tokens, rejecting malformed ones.
pub fn parse(scope: &str) -> Result<Vec<&str>, String> {
    let mut out: Vec<&str> = Vec::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err("scope contains characters RFC 6749 §3.3 does not allow".into());
        }
        if !out.contains(&token) {
            out.push(token);
        }
    }
    Ok(out)
}

/// What the server grants for a request: the requested scopes it supports; when none is left
/// (or none was asked for), the defaults (RFC 6749 §3.3 lets the server narrow the request).
pub fn grant(requested: Option<&str>, supported: &[String], defaults: &[String]) -> Result<String, String> {
    let requested = parse(requested.unwrap_or(""))?;
    let granted: Vec<&str> = requested.into_iter().filter(|s| supported.iter().any(|x| x == s)).collect();
    Ok(if granted.is_empty() { defaults.join(" ") } else { granted.join(" ") })
}

/// A refresh request may ask for a subset of the original grant (RFC 6749 §6).
pub fn narrow(requested: Option<&str>, granted: &str) -> Result<String, String> {
    let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else {
        return Ok(granted.to_owned());
    };
    let have = parse(granted)?;
    let want = parse(requested)?;
    match want.iter().find(|w| !have.contains(w)) {
        Some(extra) => Err(format!("scope {extra:?} was not granted originally")),
        None => Ok(want.join(" ")),
    }
}

/// Whether `scope` contains every one of `required`.
pub fn contains_all(scope: &str, required: &[String]) -> bool {
    required.iter().all(|r| contains(scope, r))
}

/// Whether the space-separated `scope` contains `one`.
pub fn contains(scope: &str, one: &str) -> bool {
    scope.split(' ').any(|s| s == one)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn grant_narrows_to_supported_or_defaults() {
        let sup = v(&["mcp", "admin"]);
        let def = v(&["mcp"]);
        assert_eq!(grant(Some("mcp admin"), &sup, &def).unwrap(), "mcp admin");
        assert_eq!(grant(Some("read write"), &sup, &def).unwrap(), "mcp");
        assert_eq!(grant(None, &sup, &def).unwrap(), "mcp");
        assert_eq!(grant(Some("admin admin"), &sup, &def).unwrap(), "admin");
        assert!(grant(Some("bad\"quote"), &sup, &def).is_err());
    }

    #[test]
    fn narrow_refuses_widening() {
        assert_eq!(narrow(None, "a b").unwrap(), "a b");
        assert_eq!(narrow(Some("a"), "a b").unwrap(), "a");
        assert!(narrow(Some("c"), "a b").is_err());
    }

    #[test]
    fn contains_all_is_token_exact() {
        assert!(contains_all("mcp admin", &v(&["admin"])));
        assert!(!contains_all("mcp administrator", &v(&["admin"])));
        assert!(contains_all("", &[]));
    }
}
