//! The SSRF guard of outbound fetches made on a caller's behalf: which URLs, host names and IP
//! addresses may be reached.
//!
//! A URL must be `https`, without user information or fragment, and its host on the operator's
//! allow-list when one is set. Every address the host stands for (the literal, or every answer of
//! the lookup) must be a public unicast address: the special-purpose ranges of the IANA registries
//! (RFC 6890 and the RFCs named in the tables) are refused. IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, NAT64, 6to4) are judged by that IPv4 address.
//!
//! Numeric spellings of IPv4 hosts (`2130706433`, `0x7f.1`, `127.1`) are not names here: the
//! WHATWG host parser of the `url` crate turns each into the address it denotes, which is what
//! gets checked and what the connector dials.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a URL or an address is refused; shown to the user as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only `https` is fetched.
    #[error("the URL must use https, not {0}")]
    Scheme(String),
    /// `https://user:pw@host/`.
    #[error("the URL must not contain user information")]
    UserInfo,
    /// `https://host/path#frag`.
    #[error("the URL must not contain a fragment")]
    Fragment,
    /// No host at all.
    #[error("the URL has no host")]
    NoHost,
    /// An allow-list is set and the host is not on it.
    #[error("the host {0} is not on this server's list of trusted client domains")]
    NotAllowed(String),
    /// The host is an address in a refused range.
    #[error("{0}")]
    Address(ForbiddenAddress),
    /// The name resolved to a refused address.
    #[error("{host} resolves to {reason}")]
    Resolved {
        /// The host name.
        host: String,
        /// The first refused address among the answers.
        reason: ForbiddenAddress,
    },
    /// The name resolved to nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

/// An address in a refused range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForbiddenAddress {
    /// The address.
    pub addr: IpAddr,
    /// The range, as CIDR.
    pub range: &'static str,
    /// What the range is.
    pub what: &'static str,
}

impl fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, a {} address ({}), which this server does not fetch from", self.addr, self.what, self.range)
    }
}

/// One refused range: network, prefix length, CIDR text, description, and whether the test and
/// development allowance (`private_ok`) lets it through.
type Range<A> = (A, u8, &'static str, &'static str, bool);

/// IPv4 ranges refused, the specific ones first.
const V4: &[Range<Ipv4Addr>] = &[
    (Ipv4Addr::new(169, 254, 169, 254), 32, "169.254.169.254/32", "cloud metadata service", false),
    (Ipv4Addr::new(100, 100, 100, 200), 32, "100.100.100.200/32", "cloud metadata service", false),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "0.0.0.0/8", "\"this network\" (RFC 791)", false),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "10.0.0.0/8", "private network (RFC 1918)", true),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "100.64.0.0/10", "shared address space (RFC 6598)", true),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "127.0.0.0/8", "loopback (RFC 1122)", true),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "169.254.0.0/16", "link-local (RFC 3927)", false),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "172.16.0.0/12", "private network (RFC 1918)", true),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "192.0.0.0/24", "IETF protocol assignment (RFC 6890)", false),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "192.0.2.0/24", "documentation (RFC 5737)", false),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "192.88.99.0/24", "6to4 relay anycast (RFC 7526)", false),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "192.168.0.0/16", "private network (RFC 1918)", true),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "198.18.0.0/15", "benchmarking (RFC 2544)", false),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "198.51.100.0/24", "documentation (RFC 5737)", false),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "203.0.113.0/24", "documentation (RFC 5737)", false),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "224.0.0.0/4", "multicast (RFC 5771)", false),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "240.0.0.0/4", "reserved or broadcast (RFC 1112, RFC 919)", false),
];

/// IPv6 ranges refused (after the IPv4-carrying forms, and before the global-unicast test).
const V6: &[Range<Ipv6Addr>] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "::/128", "unspecified (RFC 4291)", false),
    (Ipv6Addr::LOCALHOST, 128, "::1/128", "loopback (RFC 4291)", true),
    (Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128, "fd00:ec2::254/128", "cloud metadata service", false),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "64:ff9b:1::/48", "local-use NAT64 (RFC 8215)", false),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "100::/64", "discard-only (RFC 6666)", false),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "2001::/32", "Teredo (RFC 4380)", false),
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, "2001:2::/48", "benchmarking (RFC 5180)", false),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "2001:10::/28", "ORCHID (RFC 4843)", false),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "2001:db8::/32", "documentation (RFC 3849)", false),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "3fff::/20", "documentation (RFC 9637)", false),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "fc00::/7", "unique local (RFC 4193)", true),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "fe80::/10", "link-local (RFC 4291)", false),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "fec0::/10", "site-local (RFC 3879)", false),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "ff00::/8", "multicast (RFC 4291)", false),
];

fn v4_in(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn check_v4(addr: IpAddr, v4: Ipv4Addr, private_ok: bool) -> Result<(), ForbiddenAddress> {
    match V4.iter().find(|(net, len, ..)| v4_in(v4, *net, *len)) {
        Some((.., ok)) if *ok && private_ok => Ok(()),
        Some((_, _, range, what, _)) => Err(ForbiddenAddress { addr, range, what }),
        None => Ok(()),
    }
}

/// Checks one address. `private_ok` (tests and development only) lets loopback and private
/// networks through; cloud metadata, link-local and the other special ranges stay refused.
pub fn check_ip(addr: IpAddr, private_ok: bool) -> Result<(), ForbiddenAddress> {
    let v6 = match addr {
        IpAddr::V4(v4) => return check_v4(addr, v4, private_ok),
        IpAddr::V6(v6) => v6,
    };
    let bits = u128::from(v6);
    // SECURITY: forms carrying an IPv4 address reach that address: judge them by it.
    if v6_in(v6, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || v6_in(v6, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
    {
        return check_v4(addr, Ipv4Addr::from(bits as u32), private_ok);
    }
    if v6_in(v6, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return check_v4(addr, Ipv4Addr::from((bits >> 80) as u32), private_ok);
    }
    if let Some((.., range, what, ok)) = V6.iter().find(|(net, len, ..)| v6_in(v6, *net, *len)) {
        return if *ok && private_ok { Ok(()) } else { Err(ForbiddenAddress { addr, range, what }) };
    }
    if v6_in(v6, Ipv6Addr::UNSPECIFIED, 96) {
        return Err(ForbiddenAddress { addr, range: "::/96", what: "IPv4-compatible (RFC 4291, deprecated)" });
    }
    if !v6_in(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return Err(ForbiddenAddress { addr, range: "outside 2000::/3", what: "not global unicast (RFC 4291)" });
    }
    Ok(())
}

/// Domains matched as suffixes on a label boundary: `example.com` covers `example.com` and
/// `app.example.com`, not `badexample.com`.
#[derive(Clone, Debug, Default)]
pub struct DomainList(Vec<String>);

impl DomainList {
    /// Normalises the entries (lower case, IDNA, no leading `*.` or `.`, no trailing dot).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(entries.len());
        for raw in entries {
            let raw = raw.as_ref();
            let entry = raw.trim().trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.');
            if entry.is_empty() {
                return Err(format!("{raw:?} is not a domain"));
            }
            match Host::parse(entry).map_err(|e| format!("{raw:?} is not a domain: {e}"))? {
                Host::Domain(d) => out.push(d),
                Host::Ipv4(_) | Host::Ipv6(_) => return Err(format!("{raw:?}: list domains, not addresses")),
            }
        }
        Ok(Self(out))
    }

    /// Whether the list is empty (then every host passes).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `host` (a normalised domain) is an entry or below one.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.0.iter().any(|e| {
            host == e
                || (host.len() > e.len() && host.ends_with(e.as_str()) && host[..host.len() - e.len()].ends_with('.'))
        })
    }
}

/// What may be fetched.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// If not empty, only hosts these domains cover.
    pub allowed: DomainList,
    /// TESTS AND DEVELOPMENT ONLY: loopback and private networks pass.
    pub private_ok: bool,
}

impl Policy {
    /// Checks a URL before anything is resolved or connected: scheme, user information,
    /// fragment, an address host, and the allow-list. Names are checked when resolved
    /// ([`Self::check_resolved`]).
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if url.scheme() != "https" {
            return Err(Refusal::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::UserInfo);
        }
        if url.fragment().is_some() {
            return Err(Refusal::Fragment);
        }
        match url.host() {
            None => Err(Refusal::NoHost),
            Some(Host::Ipv4(ip)) => self.check_literal(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_literal(IpAddr::V6(ip)),
            Some(Host::Domain(d)) if !self.allowed.is_empty() && !self.allowed.covers(d) => {
                Err(Refusal::NotAllowed(d.to_owned()))
            }
            Some(Host::Domain(_)) => Ok(()),
        }
    }

    fn check_literal(&self, ip: IpAddr) -> Result<(), Refusal> {
        if !self.allowed.is_empty() {
            // The allow-list names domains: an address is never on it.
            return Err(Refusal::NotAllowed(ip.to_string()));
        }
        check_ip(ip, self.private_ok).map_err(Refusal::Address)
    }

    /// Checks every address a name resolved to: one refused address refuses the name (a
    /// resolver answering with a public and a private address must not get a second chance).
    pub fn check_resolved(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Refusal> {
        if addrs.is_empty() {
            return Err(Refusal::NoAddress(host.to_owned()));
        }
        for ip in addrs {
            check_ip(*ip, self.private_ok).map_err(|reason| Refusal::Resolved { host: host.to_owned(), reason })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refused(url: &str, policy: &Policy) -> Refusal {
        policy.check_url(&Url::parse(url).unwrap()).expect_err(url)
    }

    #[test]
    fn special_addresses_are_refused() {
        for (a, range) in [
            ("127.0.0.1", "127.0.0.0/8"),
            ("10.1.2.3", "10.0.0.0/8"),
            ("172.31.255.255", "172.16.0.0/12"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("169.254.169.254", "169.254.169.254/32"),
            ("169.254.1.1", "169.254.0.0/16"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("0.0.0.0", "0.0.0.0/8"),
            ("255.255.255.255", "240.0.0.0/4"),
            ("224.0.0.1", "224.0.0.0/4"),
            ("::1", "::1/128"),
            ("::", "::/128"),
            ("fd00::1", "fc00::/7"),
            ("fe80::1", "fe80::/10"),
            ("fd00:ec2::254", "fd00:ec2::254/128"),
            ("ff02::1", "ff00::/8"),
            ("::ffff:127.0.0.1", "127.0.0.0/8"),
            ("::ffff:169.254.169.254", "169.254.169.254/32"),
            ("64:ff9b::a00:1", "10.0.0.0/8"),
            ("2002:c0a8:101::1", "192.168.0.0/16"),
            ("::7f00:1", "::/96"),
            ("4000::1", "outside 2000::/3"),
        ] {
            assert_eq!(check_ip(ip(a), false).map_err(|e| e.range), Err(range), "{a}");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"] {
            assert_eq!(check_ip(ip(a), false), Ok(()), "{a}");
        }
    }

    #[test]
    fn the_development_allowance_opens_private_networks_only() {
        for a in ["127.0.0.1", "10.0.0.1", "192.168.0.1", "::1", "fd12::1", "::ffff:127.0.0.1"] {
            assert_eq!(check_ip(ip(a), true), Ok(()), "{a}");
        }
        for a in ["169.254.169.254", "fd00:ec2::254", "169.254.3.4", "fe80::1", "0.0.0.0", "224.0.0.1", "::"] {
            assert!(check_ip(ip(a), true).is_err(), "{a}");
        }
    }

    #[test]
    fn urls() {
        let p = Policy::default();
        assert_eq!(p.check_url(&Url::parse("https://client.example.com/app.json").unwrap()), Ok(()));
        assert_eq!(refused("http://client.example.com/x", &p), Refusal::Scheme("http".into()));
        assert_eq!(refused("https://u:p@client.example.com/x", &p), Refusal::UserInfo);
        assert_eq!(refused("https://client.example.com/x#f", &p), Refusal::Fragment);
        for url in ["https://127.0.0.1/x", "https://2130706433/x", "https://0x7f.1/x", "https://[::ffff:7f00:1]/x"] {
            assert!(matches!(refused(url, &p), Refusal::Address(a) if a.range == "127.0.0.0/8"), "{url}");
        }
        let msg = refused("https://10.0.0.5/c.json", &p).to_string();
        assert_eq!(
            msg,
            "10.0.0.5, a private network (RFC 1918) address (10.0.0.0/8), which this server does not fetch from"
        );
    }

    #[test]
    fn allow_lists_match_on_label_boundaries() {
        let p = Policy { allowed: DomainList::new(&["example.com", "*.tools.dev."]).unwrap(), private_ok: false };
        for ok in ["https://example.com/a", "https://app.EXAMPLE.com/a", "https://x.tools.dev/a"] {
            assert_eq!(p.check_url(&Url::parse(ok).unwrap()), Ok(()), "{ok}");
        }
        for bad in ["https://badexample.com/a", "https://example.com.evil.net/a", "https://tools.dev.x/a"] {
            assert!(matches!(refused(bad, &p), Refusal::NotAllowed(_)), "{bad}");
        }
        assert!(matches!(refused("https://93.184.216.34/a", &p), Refusal::NotAllowed(_)));
        assert!(DomainList::new(&["10.0.0.1"]).is_err());
        assert!(DomainList::new(&[""]).is_err());
    }

    #[test]
    fn every_answer_is_checked() {
        let p = Policy::default();
        assert_eq!(p.check_resolved("a.test", &[ip("93.184.216.34"), ip("2606:4700::1")]), Ok(()));
        let err = p.check_resolved("a.test", &[ip("93.184.216.34"), ip("10.0.0.1")]).unwrap_err();
        assert!(err.to_string().starts_with("a.test resolves to 10.0.0.1, a private network"), "{err}");
        assert_eq!(p.check_resolved("a.test", &[]), Err(Refusal::NoAddress("a.test".into())));
    }
}
