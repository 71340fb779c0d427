//! Request rate limits: per client address on the OAuth endpoints, per `client_id` on `/token`.
//!
//! Each limit is a rate such as `30/min`, enforced with the generic cell rate algorithm (GCRA):
//! a key may spend the whole rate at once (the burst) and then gets one request per
//! `period / count`. The state of a key is one timestamp (its "theoretical arrival time"), kept in
//! a bounded cache that forgets keys idle for a whole period (their state is then the same as a
//! new key's), so an attacker spraying addresses costs a bounded amount of memory.
//!
//! IPv6 addresses are limited per /64: one host usually owns the whole prefix.
//!
//! `governor` offers the same algorithm, but its keyed state store is an unbounded map that has to
//! be swept; moka (already used for caches here) bounds and expires keys by itself.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use sha2::Digest;

use crate::config::RateLimitConfig;

/// Most keys one limit remembers; beyond, the least recently used are forgotten.
const MAX_KEYS: u64 = 100_000;

/// A rate: `count` requests per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (and at once, as a burst).
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// Parses `<count>/<unit>` (units `s`, `sec`, `second`, `m`, `min`, `minute`, `h`, `hour`);
    /// `off` (or a count of 0) is no limit.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, unit) = s.split_once('/').ok_or_else(|| format!("{s:?} is not <count>/<s|min|h> or \"off\""))?;
        let count: u32 = count.trim().parse().map_err(|_| format!("{count:?} is not a whole number of requests"))?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("{other:?} is not a unit (s, min, h)")),
        };
        Ok((count > 0).then_some(Self { count, period }))
    }
}

/// The endpoints that are limited, each with its own budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// `/register` and `/register/{client_id}` (RFC 7591, RFC 7592), per address.
    Register,
    /// `/authorize`, per address.
    Authorize,
    /// `/login`, `/login/{provider}`, `/callback` (password guessing, upstream round trips), per
    /// address.
    Login,
    /// `/token`, per address.
    Token,
    /// `/token`, per `client_id` (secret guessing from many addresses).
    TokenPerClient,
    /// `/device_authorization`, `/device`, `/device/confirm` (RFC 8628 §5.1), per address.
    Device,
    /// `/revoke` and `/introspect`, per address.
    Revoke,
    /// `/verify`, per original client address (off by default).
    Verify,
}

impl Bucket {
    /// Every bucket, in `metrics` order.
    pub const ALL: [Bucket; 8] = [
        Self::Register,
        Self::Authorize,
        Self::Login,
        Self::Token,
        Self::TokenPerClient,
        Self::Device,
        Self::Revoke,
        Self::Verify,
    ];

    /// The setting (`rate_limit.<name>`) and metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Authorize => "authorize",
            Self::Login => "login",
            Self::Token => "token",
            Self::TokenPerClient => "token_per_client",
            Self::Device => "device",
            Self::Revoke => "revoke",
            Self::Verify => "verify",
        }
    }

    /// Whether refusals are answered with an HTML page (people's browsers) rather than JSON.
    pub fn is_browser(self) -> bool {
        matches!(self, Self::Authorize | Self::Login | Self::Device)
    }

    /// Its rate in the configuration (validated).
    pub fn setting(self, cfg: &RateLimitConfig) -> &str {
        match self {
            Self::Register => &cfg.register,
            Self::Authorize => &cfg.authorize,
            Self::Login => &cfg.login,
            Self::Token => &cfg.token,
            Self::TokenPerClient => &cfg.token_per_client,
            Self::Device => &cfg.device,
            Self::Revoke => &cfg.revoke,
            Self::Verify => &cfg.verify,
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rate applied to many keys.
struct Limiter<K> {
    /// Time between two requests at the steady rate, ns.
    interval: u64,
    /// How far ahead of now a key's arrival time may run (the burst), ns.
    tolerance: u64,
    /// Per key: its theoretical arrival time, ns since [`Limits::epoch`].
    arrivals: Cache<K, Arc<AtomicU64>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> Limiter<K> {
    fn new(rate: Rate) -> Self {
        let period = u64::try_from(rate.period.as_nanos()).unwrap_or(u64::MAX);
        let interval = period / u64::from(rate.count);
        Self {
            interval,
            tolerance: period - interval,
            arrivals: Cache::builder().max_capacity(MAX_KEYS).time_to_idle(rate.period).build(),
        }
    }

    /// Spends one request of `key` at `now`; else how long until one is available.
    fn check(&self, key: K, now: u64) -> Result<(), Duration> {
        let cell = self.arrivals.get_with(key, || Arc::new(AtomicU64::new(0)));
        let mut seen = cell.load(Ordering::Relaxed);
        loop {
            let arrival = seen.max(now);
            if arrival - now > self.tolerance {
                return Err(Duration::from_nanos(arrival - now - self.tolerance));
            }
            match cell.compare_exchange_weak(seen, arrival + self.interval, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(current) => seen = current,
            }
        }
    }
}

/// A refusal: retry after this long (at least one second, as `Retry-After` counts seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up.
    pub fn secs(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

/// Every configured limit.
pub struct Limits {
    epoch: Instant,
    by_address: [Option<Limiter<IpAddr>>; Bucket::ALL.len()],
    /// Keyed by a digest of the `client_id`: its length is the caller's choice.
    by_client: Option<Limiter<[u8; 16]>>,
}

impl Limits {
    /// From `[rate_limit]` (validated: an unparsable rate is no limit here).
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let rate = |b: Bucket| if cfg.enabled { Rate::parse(b.setting(cfg)).ok().flatten() } else { None };
        Self {
            epoch: Instant::now(),
            by_address: Bucket::ALL.map(|b| if b == Bucket::TokenPerClient { None } else { rate(b).map(Limiter::new) }),
            by_client: rate(Bucket::TokenPerClient).map(Limiter::new),
        }
    }

    /// No limits at all.
    pub fn none() -> Self {
        Self { epoch: Instant::now(), by_address: Bucket::ALL.map(|_| None), by_client: None }
    }

    /// Whether `bucket` is limited per address.
    pub fn is_limited(&self, bucket: Bucket) -> bool {
        self.by_address[bucket as usize].is_some()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Spends one request of the person at `addr` on `bucket`. An unknown address (no peer: a
    /// Unix socket or a test) is not limited.
    pub fn check_address(&self, bucket: Bucket, addr: Option<IpAddr>) -> Result<(), RetryAfter> {
        match (&self.by_address[bucket as usize], addr) {
            (Some(limiter), Some(addr)) => limiter.check(address_key(addr), self.now()).map_err(RetryAfter),
            _ => Ok(()),
        }
    }

    /// Spends one `/token` request of `client_id`.
    pub fn check_client(&self, client_id: &str) -> Result<(), RetryAfter> {
        match &self.by_client {
            Some(limiter) => {
                let digest = sha2::Sha256::digest(client_id.as_bytes());
                let mut key = [0u8; 16];
                key.copy_from_slice(&digest[..16]);
                limiter.check(key, self.now()).map_err(RetryAfter)
            }
            None => Ok(()),
        }
    }
}

/// The key of an address: IPv4 (also when mapped into IPv6) as is, IPv6 by its /64.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("30/min"), Ok(Some(Rate { count: 30, period: Duration::from_secs(60) })));
        assert_eq!(Rate::parse(" 5 / s "), Ok(Some(Rate { count: 5, period: Duration::from_secs(1) })));
        assert_eq!(Rate::parse("1000/hour"), Ok(Some(Rate { count: 1000, period: Duration::from_secs(3600) })));
        assert_eq!(Rate::parse("off"), Ok(None));
        assert_eq!(Rate::parse("0/min"), Ok(None));
        for bad in ["", "30", "30/day", "-1/min", "x/min", "30/", "/min"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let l = Limiter::new(Rate { count: 3, period: Duration::from_secs(3) });
        let t = 100 * SEC;
        for _ in 0..3 {
            assert_eq!(l.check("a", t), Ok(()));
        }
        // The burst is spent: the next slot opens one interval (1 s) later.
        assert_eq!(l.check("a", t), Err(Duration::from_secs(1)));
        assert_eq!(l.check("a", t + SEC / 2), Err(Duration::from_secs(1) / 2));
        assert_eq!(l.check("a", t + SEC), Ok(()));
        assert!(l.check("a", t + SEC).is_err());
        // Other keys have their own budget.
        assert_eq!(l.check("b", t), Ok(()));
        // Idle for a whole period: the full burst again.
        for _ in 0..3 {
            assert_eq!(l.check("a", t + 5 * SEC), Ok(()));
        }
        assert!(l.check("a", t + 5 * SEC).is_err());
    }

    #[test]
    fn refusals_do_not_spend() {
        let l = Limiter::new(Rate { count: 1, period: Duration::from_secs(10) });
        assert_eq!(l.check("a", 0), Ok(()));
        for i in 0..100 {
            assert!(l.check("a", i * SEC / 100).is_err());
        }
        assert_eq!(l.check("a", 10 * SEC), Ok(()));
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).secs(), 1);
        assert_eq!(RetryAfter(Duration::from_secs(2)).secs(), 2);
        assert_eq!(RetryAfter(Duration::from_millis(2001)).secs(), 3);
    }

    #[test]
    fn disabled_means_no_limit() {
        let cfg = RateLimitConfig { enabled: false, ..RateLimitConfig::default() };
        let limits = Limits::new(&cfg);
        let addr = Some("192.0.2.1".parse().unwrap());
        for _ in 0..1000 {
            assert_eq!(limits.check_address(Bucket::Register, addr), Ok(()));
            assert_eq!(limits.check_client("c"), Ok(()));
        }
        let limits = Limits::new(&RateLimitConfig::default());
        assert!(limits.is_limited(Bucket::Register) && !limits.is_limited(Bucket::Verify));
    }
}
