//! Request parameters (`application/x-www-form-urlencoded`, query or body). RFC 6749 §3.1 and
//! §3.2: parameters sent without a value are treated as omitted, and a parameter must not be
//! included more than once, so duplicates are an error rather than "last one wins".

use std::collections::HashMap;

/// Longest accepted parameter value (bytes); longer is malformed.
pub const MAX_VALUE_LEN: usize = 4096;

/// Parsed parameters.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `a=1&b=2`. The error names the offending parameter.
    pub fn parse(input: &[u8]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            if v.len() > MAX_VALUE_LEN || k.len() > 128 {
                return Err(format!("parameter {:?} is too long", truncate(&k)));
            }
            if v.is_empty() {
                continue;
            }
            if map.insert(k.clone().into_owned(), v.into_owned()).is_some() {
                return Err(format!("parameter {:?} is repeated", truncate(&k)));
            }
        }
        Ok(Self(map))
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_empty_and_encoding() {
        let p = Params::parse(b"a=1&b=&c=x%20y+z").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y z"));
        assert!(Params::parse(b"a=1&a=2").unwrap_err().contains("repeated"));
        assert!(Params::parse(format!("a={}", "x".repeat(5000)).as_bytes()).is_err());
        assert!(Params::parse(b"%ff%fe=%00").is_ok(), "lossy decoding never panics");
    }
}
