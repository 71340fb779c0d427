//! robots.txt (RFC 9309), fetched with the same guarded client and cached per origin.
//!
//! Parsing and matching are `texting_robots` (Google's and reppy's test suites, fuzzed, run over
//! 34 million real robots.txt files). The rules for this server's product token (the user agent
//! up to the first `/` or space, `mcp-fetch` by default) apply, else those for `*`.
//!
//! How the answer for `/robots.txt` is read:
//! - 2xx: the rules in the first 512 KiB (RFC 9309 §2.5 asks for at least 500 KiB).
//! - 401, 403: everything disallowed (as the reference Python fetch server does: the site does
//!   not let unauthenticated clients in).
//! - other 4xx, 404 included: no rules (RFC 9309 §2.3.1.3).
//! - 5xx, or unreachable (including a redirect to a refused address): everything disallowed
//!   (RFC 9309 §2.3.1.4).
//!
//! Redirects are followed (at most the configured number, each checked like any other).

use std::sync::Arc;
use std::time::Duration;

use texting_robots::Robot;
use url::Url;

/// Bytes of robots.txt read.
pub const ROBOTS_LIMIT: usize = 512 * 1024;

/// What an origin's robots.txt says for this server.
pub enum Rules {
    /// No robots.txt (or a 4xx for it): everything allowed.
    AllowAll,
    /// Nothing allowed, and why.
    DisallowAll(String),
    /// The parsed rules.
    Parsed(Robot),
}

/// The robots.txt URL of `url`'s origin.
pub fn robots_url(url: &Url) -> Url {
    let mut robots = url.clone();
    robots.set_path("/robots.txt");
    robots.set_query(None);
    robots.set_fragment(None);
    let _ = robots.set_username("");
    let _ = robots.set_password(None);
    robots
}

/// The product token robots.txt groups are matched against: `mcp-fetch` of
/// `mcp-fetch/0.1 (+https://…)`.
pub fn product_token(user_agent: &str) -> String {
    let token: String =
        user_agent.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    if token.is_empty() { "*".to_string() } else { token.to_ascii_lowercase() }
}

/// Parses a robots.txt body; a body that does not parse disallows everything.
pub fn parse(token: &str, body: &[u8]) -> Rules {
    let body = &body[..body.len().min(ROBOTS_LIMIT)];
    // SECURITY: a parser panic on hostile input must not take the request down with it.
    match std::panic::catch_unwind(|| Robot::new(token, body)) {
        Ok(Ok(robot)) => Rules::Parsed(robot),
        Ok(Err(e)) => Rules::DisallowAll(format!("its robots.txt could not be parsed ({e})")),
        Err(_) => Rules::DisallowAll("its robots.txt could not be parsed".to_string()),
    }
}

/// The rules from an HTTP status and body.
pub fn from_response(token: &str, status: u16, body: &[u8]) -> Rules {
    match status {
        200..=299 => parse(token, body),
        401 | 403 => Rules::DisallowAll(format!("its robots.txt answered HTTP {status}")),
        400..=499 => Rules::AllowAll,
        _ => Rules::DisallowAll(format!("its robots.txt answered HTTP {status}")),
    }
}

impl Rules {
    /// `Ok` if `url` may be fetched, else the reason.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        match self {
            Rules::AllowAll => Ok(()),
            Rules::DisallowAll(why) => Err(why.clone()),
            Rules::Parsed(robot) => {
                if robot.allowed(url.as_str()) {
                    Ok(())
                } else {
                    Err("its robots.txt disallows this path".to_string())
                }
            }
        }
    }
}

/// Rules per origin, kept briefly.
#[derive(Clone)]
pub struct RobotsCache {
    cache: moka::sync::Cache<String, Arc<Rules>>,
}

impl RobotsCache {
    /// A cache keeping each origin's rules for `ttl` (at most 1024 origins).
    pub fn new(ttl: Duration) -> Self {
        Self { cache: moka::sync::Cache::builder().max_capacity(1024).time_to_live(ttl).build() }
    }

    /// The cached rules of `url`'s origin.
    pub fn get(&self, url: &Url) -> Option<Arc<Rules>> {
        self.cache.get(&url.origin().ascii_serialization())
    }

    /// Caches the rules of `url`'s origin.
    pub fn insert(&self, url: &Url, rules: Arc<Rules>) {
        self.cache.insert(url.origin().ascii_serialization(), rules);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn product_token_is_the_first_word() {
        assert_eq!(product_token("mcp-fetch/0.1 (+https://example.com)"), "mcp-fetch");
        assert_eq!(product_token("MyBot"), "mybot");
        assert_eq!(product_token("/weird"), "*");
    }

    #[test]
    fn robots_url_is_the_origin_root() {
        assert_eq!(
            robots_url(&url("https://u:p@example.com:8443/a/b?c#d")).as_str(),
            "https://example.com:8443/robots.txt"
        );
    }

    #[test]
    fn our_group_wins_over_star() {
        let body = b"User-agent: *\nDisallow: /\n\nUser-agent: mcp-fetch\nDisallow: /private\n";
        let rules = parse("mcp-fetch", body);
        assert!(rules.check(&url("http://h/public")).is_ok());
        assert!(rules.check(&url("http://h/private/x")).is_err());
        let other = parse("otherbot", body);
        assert!(other.check(&url("http://h/public")).is_err());
    }

    #[test]
    fn star_applies_without_our_group() {
        let rules = parse("mcp-fetch", b"User-agent: *\nDisallow: /no\nAllow: /no/but-yes\n");
        assert!(rules.check(&url("http://h/no/x")).is_err());
        assert!(rules.check(&url("http://h/no/but-yes/x")).is_ok());
        assert!(rules.check(&url("http://h/yes")).is_ok());
        assert!(rules.check(&url("http://h/robots.txt")).is_ok());
    }

    #[test]
    fn statuses_per_rfc_9309() {
        assert!(from_response("mcp-fetch", 404, b"").check(&url("http://h/x")).is_ok());
        assert!(from_response("mcp-fetch", 410, b"").check(&url("http://h/x")).is_ok());
        assert!(from_response("mcp-fetch", 401, b"").check(&url("http://h/x")).is_err());
        assert!(from_response("mcp-fetch", 403, b"").check(&url("http://h/x")).is_err());
        assert!(from_response("mcp-fetch", 500, b"").check(&url("http://h/x")).is_err());
        assert!(from_response("mcp-fetch", 503, b"").check(&url("http://h/x")).is_err());
        assert!(from_response("mcp-fetch", 200, b"garbage\0\xff").check(&url("http://h/x")).is_ok());
    }

    #[test]
    fn the_cache_is_per_origin() {
        let cache = RobotsCache::new(Duration::from_secs(60));
        cache.insert(&url("http://a.test:80/x"), Arc::new(Rules::AllowAll));
        assert!(cache.get(&url("http://a.test/y?z")).is_some());
        assert!(cache.get(&url("https://a.test/y")).is_none());
        assert!(cache.get(&url("http://a.test:81/y")).is_none());
    }
}
