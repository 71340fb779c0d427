//! The SSRF guard: which URLs, host names and IP addresses `fetch` may reach.
//!
//! Every address is classified against the IANA special-purpose registries (RFC 6890 and the
//! RFCs each entry names). An IPv4 address must be outside every special range; an IPv6 address
//! must be global unicast (2000::/3) outside the special ranges, except the forms that embed an
//! IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`), which are
//! judged by the IPv4 address they carry. IPv4-compatible (`::a.b.c.d`), Teredo and local-use NAT64
//! addresses are refused outright.
//!
//! Numeric IPv4 spellings (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, percent-encoded or
//! full-width digits) never reach this module as names: the `url` crate parses the host of an
//! `http`/`https` URL with the WHATWG host parser, which turns every one of them into the IPv4
//! address it denotes, and that address is what gets checked and what the connector dials.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a URL, host or address is refused. Shown to the caller as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address is in a range `fetch` never connects to.
    #[error("{0}")]
    Address(#[from] ForbiddenAddress),
    /// Only `http` and `https` URLs are fetched.
    #[error("the URL scheme `{0}` is not allowed; only http and https are fetched")]
    Scheme(String),
    /// The URL has no host (e.g. `http:///x` after normalisation).
    #[error("the URL has no host")]
    NoHost,
    /// A cloud metadata service host name.
    #[error("`{0}` is a cloud metadata service; mcp-fetch never fetches it")]
    MetadataName(String),
    /// The host is on the deny list.
    #[error("`{host}` is refused by the deny list (entry `{entry}`)")]
    Denied {
        /// The host of the URL.
        host: String,
        /// The deny-list entry it matched.
        entry: String,
    },
    /// An allow list is set and the host is not on it.
    #[error("`{0}` is not on the allow list of this server")]
    NotAllowed(String),
    /// The name resolved to no address at all.
    #[error("`{0}` resolved to no address")]
    NoAddress(String),
    /// One of the addresses the name resolved to is forbidden.
    #[error("`{host}` resolves to {reason}")]
    Resolved {
        /// The name that was resolved.
        host: String,
        /// The first forbidden address among the answers.
        reason: ForbiddenAddress,
    },
}

/// An address in a range `fetch` refuses, with the range and its registry entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForbiddenAddress {
    /// The address as the URL or the resolver gave it.
    pub addr: IpAddr,
    /// For an IPv6 form that carries an IPv4 address: that form and the IPv4 address.
    pub embedded: Option<(&'static str, Ipv4Addr)>,
    /// The forbidden range, as CIDR.
    pub range: &'static str,
    /// What the range is, with its RFC.
    pub what: &'static str,
}

impl fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((form, v4)) => write!(
                f,
                "{}, an {form} address carrying {v4}, which is in {} ({}); mcp-fetch does not fetch internal or special-purpose addresses",
                self.addr, self.range, self.what
            ),
            None => write!(
                f,
                "{}, which is in {} ({}); mcp-fetch does not fetch internal or special-purpose addresses",
                self.addr, self.range, self.what
            ),
        }
    }
}

impl std::error::Error for ForbiddenAddress {}

/// IPv4 ranges refused, first match wins (so the specific names come before their blocks).
const V4_RANGES: &[(Ipv4Addr, u8, &str, &str)] = &[
    (Ipv4Addr::new(169, 254, 169, 254), 32, "169.254.169.254/32", "cloud metadata service: AWS, GCP, Azure, OCI"),
    (Ipv4Addr::new(100, 100, 100, 200), 32, "100.100.100.200/32", "cloud metadata service: Alibaba Cloud"),
    (Ipv4Addr::new(0, 0, 0, 0), 32, "0.0.0.0/32", "unspecified address, RFC 1122"),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "0.0.0.0/8", "\"this network\", RFC 791"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "10.0.0.0/8", "private network, RFC 1918"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "100.64.0.0/10", "shared address space (carrier-grade NAT), RFC 6598"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "127.0.0.0/8", "loopback, RFC 1122"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "169.254.0.0/16", "link-local, RFC 3927"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "172.16.0.0/12", "private network, RFC 1918"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "192.0.0.0/24", "IETF protocol assignments, RFC 6890"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "192.0.2.0/24", "documentation (TEST-NET-1), RFC 5737"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "192.88.99.0/24", "6to4 relay anycast, RFC 7526"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "192.168.0.0/16", "private network, RFC 1918"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "198.18.0.0/15", "benchmarking, RFC 2544"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "198.51.100.0/24", "documentation (TEST-NET-2), RFC 5737"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "203.0.113.0/24", "documentation (TEST-NET-3), RFC 5737"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "224.0.0.0/4", "multicast, RFC 5771"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "255.255.255.255/32", "limited broadcast, RFC 919"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "240.0.0.0/4", "reserved, RFC 1112"),
];

/// IPv6 ranges refused outright, first match wins. The IPv4-carrying forms are handled before
/// this table, and everything outside 2000::/3 after it.
const V6_RANGES: &[(Ipv6Addr, u8, &str, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "::/128", "unspecified address, RFC 4291"),
    (Ipv6Addr::LOCALHOST, 128, "::1/128", "loopback, RFC 4291"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "64:ff9b:1::/48", "local-use NAT64, RFC 8215"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "100::/64", "discard-only, RFC 6666"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "2001::/32", "Teredo tunnelling, RFC 4380"),
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, "2001:2::/48", "benchmarking, RFC 5180"),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "2001:10::/28", "ORCHID (deprecated), RFC 4843"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "2001:db8::/32", "documentation, RFC 3849"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "3fff::/20", "documentation, RFC 9637"),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "5f00::/16", "SRv6 SIDs, RFC 9602"),
    (Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128, "fd00:ec2::254/128", "cloud metadata service: AWS IPv6"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "fc00::/7", "unique local addresses, RFC 4193"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "fe80::/10", "link-local, RFC 4291"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "fec0::/10", "site-local (deprecated), RFC 3879"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "ff00::/8", "multicast, RFC 4291"),
];

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn check_v4(ip: Ipv4Addr) -> Result<(), (&'static str, &'static str)> {
    match V4_RANGES.iter().find(|(net, len, _, _)| in_v4(ip, *net, *len)) {
        Some((_, _, range, what)) => Err((range, what)),
        None => Ok(()),
    }
}

/// Checks one address. `allow_loopback_v4` (the test-only allowance) lets plain IPv4 addresses
/// in 127.0.0.0/8 through and nothing else: not `::1`, not `::ffff:127.0.0.1`.
pub fn check_ip(addr: IpAddr, allow_loopback_v4: bool) -> Result<(), ForbiddenAddress> {
    let refuse =
        |embedded, (range, what): (&'static str, &'static str)| ForbiddenAddress { addr, embedded, range, what };
    match addr {
        IpAddr::V4(v4) => {
            if allow_loopback_v4 && v4.octets()[0] == 127 {
                return Ok(());
            }
            check_v4(v4).map_err(|r| refuse(None, r))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let low32 = Ipv4Addr::from(bits as u32);
            // SECURITY: the forms that carry an IPv4 address are judged by that address, so
            // `::ffff:127.0.0.1`, `64:ff9b::a9fe:a9fe` or `2002:7f00:1::` cannot reach what the
            // plain IPv4 address could not. The test allowance does not apply to them.
            if in_v6(v6, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96) {
                return check_v4(low32).map_err(|r| refuse(Some(("IPv4-mapped (::ffff:0:0/96)", low32)), r));
            }
            if in_v6(v6, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
                return check_v4(low32).map_err(|r| refuse(Some(("NAT64 (64:ff9b::/96, RFC 6052)", low32)), r));
            }
            if in_v6(v6, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
                let carried = Ipv4Addr::from((bits >> 80) as u32);
                return check_v4(carried).map_err(|r| refuse(Some(("6to4 (2002::/16, RFC 3056)", carried)), r));
            }
            if let Some((_, _, range, what)) = V6_RANGES.iter().find(|(net, len, _, _)| in_v6(v6, *net, *len)) {
                return Err(refuse(None, (range, what)));
            }
            // `::a.b.c.d` (IPv4-compatible, deprecated): ::/128 and ::1 are matched above.
            if in_v6(v6, Ipv6Addr::UNSPECIFIED, 96) {
                return Err(refuse(None, ("::/96", "IPv4-compatible IPv6 (deprecated), RFC 4291")));
            }
            if !in_v6(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
                return Err(refuse(None, ("outside 2000::/3", "not global unicast; reserved by the IETF, RFC 4291")));
            }
            Ok(())
        }
    }
}

/// Cloud metadata host names, refused by name before any lookup (the address check refuses what
/// they resolve to as well; this makes the refusal independent of the resolver).
const METADATA_NAMES: &[&str] =
    &["metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"];

/// A list of domains matched as suffixes on a dot boundary: `example.com` matches `example.com`
/// and `docs.example.com`, not `badexample.com`.
#[derive(Clone, Debug, Default)]
pub struct DomainList(Vec<String>);

impl DomainList {
    /// Normalises each entry (lowercase, IDNA to ASCII, no leading `*.` or `.`, no trailing dot).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut out = Vec::new();
        for raw in entries {
            let entry = raw.as_ref().trim().trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.');
            if entry.is_empty() {
                continue;
            }
            let host = Host::parse(entry).map_err(|e| format!("bad domain `{}`: {e}", raw.as_ref()))?;
            out.push(match host {
                Host::Domain(d) => d,
                Host::Ipv4(ip) => ip.to_string(),
                Host::Ipv6(ip) => ip.to_string(),
            });
        }
        Ok(Self(out))
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry `host` matches, if any. IP hosts match only an identical entry.
    pub fn find(&self, host: &str, is_ip: bool) -> Option<&str> {
        self.0
            .iter()
            .find(|entry| {
                host == entry.as_str()
                    || (!is_ip && host.len() > entry.len() && host.ends_with(entry.as_str()) && {
                        host.as_bytes()[host.len() - entry.len() - 1] == b'.'
                    })
            })
            .map(String::as_str)
    }
}

/// What may be fetched: the address rules (fixed) plus the operator's domain lists and the
/// test-only loopback allowance.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// If not empty, only these domains (and their subdomains).
    pub allow: DomainList,
    /// Never these domains (and their subdomains); wins over `allow`.
    pub deny: DomainList,
    /// TEST ONLY: let plain IPv4 loopback (127.0.0.0/8) through. Nothing else.
    pub allow_loopback_for_tests: bool,
}

impl Policy {
    /// Checks a URL before any connection: scheme, IP-literal host, metadata names, domain lists.
    /// A host name's addresses are checked when it is resolved (see [`crate::resolve`]).
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(Refusal::Scheme(other.to_string())),
        }
        match url.host() {
            None => Err(Refusal::NoHost),
            Some(Host::Ipv4(ip)) => self.check_host_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_host_ip(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                // SECURITY: defence in depth; the WHATWG parser never leaves a numeric host as
                // a domain for http(s), but if a name does parse as an address, judge the address.
                if let Ok(ip) = name.trim_end_matches('.').parse::<IpAddr>() {
                    return self.check_host_ip(ip);
                }
                self.check_name(name)
            }
        }
    }

    fn check_host_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        check_ip(ip, self.allow_loopback_for_tests)?;
        self.check_lists(&ip.to_string(), true)
    }

    /// Checks a host name (not an address): metadata names and the domain lists.
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        let host = name.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(Refusal::NoHost);
        }
        if METADATA_NAMES
            .iter()
            .any(|m| host == *m || (host.ends_with(m) && host[..host.len() - m.len()].ends_with('.')))
        {
            return Err(Refusal::MetadataName(host));
        }
        self.check_lists(&host, false)
    }

    fn check_lists(&self, host: &str, is_ip: bool) -> Result<(), Refusal> {
        if let Some(entry) = self.deny.find(host, is_ip) {
            return Err(Refusal::Denied { host: host.to_string(), entry: entry.to_string() });
        }
        if !self.allow.is_empty() && self.allow.find(host, is_ip).is_none() {
            return Err(Refusal::NotAllowed(host.to_string()));
        }
        Ok(())
    }

    /// Checks every address a name resolved to; one forbidden address refuses the name.
    pub fn check_resolved(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Refusal> {
        if addrs.is_empty() {
            return Err(Refusal::NoAddress(host.to_string()));
        }
        for addr in addrs {
            check_ip(*addr, self.allow_loopback_for_tests)
                .map_err(|reason| Refusal::Resolved { host: host.to_string(), reason })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }
    fn range_of(ip: IpAddr) -> &'static str {
        check_ip(ip, false).expect_err(&format!("{ip} must be refused")).range
    }

    /// The first and last address of every table entry are refused, as that entry or as one
    /// listed before it (a more specific entry inside it, e.g. 169.254.169.254/32).
    #[test]
    fn every_table_range_is_refused_at_both_edges() {
        for (i, (net, len, range, _)) in V4_RANGES.iter().enumerate() {
            let host_bits = u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0);
            for ip in [u32::from(*net) & !host_bits, u32::from(*net) | host_bits].map(Ipv4Addr::from) {
                let err = check_ip(IpAddr::V4(ip), false).expect_err(&format!("{ip} in {range}"));
                assert!(V4_RANGES[..=i].iter().any(|r| r.2 == err.range), "{ip}: {} for {range}", err.range);
            }
        }
        for (i, (net, len, range, _)) in V6_RANGES.iter().enumerate() {
            let host_bits = u128::MAX.checked_shr(u32::from(*len)).unwrap_or(0);
            for ip in [u128::from(*net) & !host_bits, u128::from(*net) | host_bits].map(Ipv6Addr::from) {
                let err = check_ip(IpAddr::V6(ip), false).expect_err(&format!("{ip} in {range}"));
                assert!(V6_RANGES[..=i].iter().any(|r| r.2 == err.range), "{ip}: {} for {range}", err.range);
            }
        }
    }

    #[test]
    fn ipv4_ranges_by_name() {
        let cases = [
            ("127.0.0.1", "127.0.0.0/8"),
            ("127.255.255.254", "127.0.0.0/8"),
            ("10.0.0.1", "10.0.0.0/8"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("172.31.255.255", "172.16.0.0/12"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("169.254.0.1", "169.254.0.0/16"),
            ("169.254.169.254", "169.254.169.254/32"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("100.127.255.255", "100.64.0.0/10"),
            ("100.100.100.200", "100.100.100.200/32"),
            ("224.0.0.1", "224.0.0.0/4"),
            ("239.255.255.250", "224.0.0.0/4"),
            ("255.255.255.255", "255.255.255.255/32"),
            ("0.0.0.0", "0.0.0.0/32"),
            ("0.1.2.3", "0.0.0.0/8"),
            ("192.0.0.8", "192.0.0.0/24"),
            ("192.0.2.1", "192.0.2.0/24"),
            ("198.51.100.7", "198.51.100.0/24"),
            ("203.0.113.9", "203.0.113.0/24"),
            ("198.18.0.1", "198.18.0.0/15"),
            ("198.19.255.255", "198.18.0.0/15"),
            ("192.88.99.1", "192.88.99.0/24"),
            ("240.0.0.1", "240.0.0.0/4"),
            ("250.1.2.3", "240.0.0.0/4"),
        ];
        for (ip, range) in cases {
            assert_eq!(range_of(v4(ip)), range, "{ip}");
        }
    }

    #[test]
    fn public_ipv4_is_allowed_including_range_neighbours() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(check_ip(v4(ip), false), Ok(()), "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_by_name() {
        let cases = [
            ("::", "::/128"),
            ("::1", "::1/128"),
            ("fe80::1", "fe80::/10"),
            ("febf:ffff::1", "fe80::/10"),
            ("fc00::1", "fc00::/7"),
            ("fd12:3456::1", "fc00::/7"),
            ("fd00:ec2::254", "fd00:ec2::254/128"),
            ("fec0::1", "fec0::/10"),
            ("ff02::1", "ff00::/8"),
            ("ff05::2", "ff00::/8"),
            ("2001:db8::1", "2001:db8::/32"),
            ("3fff::1", "3fff::/20"),
            ("2001::1", "2001::/32"),
            ("2001:2::1", "2001:2::/48"),
            ("2001:10::1", "2001:10::/28"),
            ("64:ff9b:1::1", "64:ff9b:1::/48"),
            ("100::1", "100::/64"),
            ("5f00::1", "5f00::/16"),
            ("::7f00:1", "::/96"),
            ("::a9fe:a9fe", "::/96"),
            ("::8.8.8.8", "::/96"),
            ("4000::1", "outside 2000::/3"),
            ("1::1", "outside 2000::/3"),
        ];
        for (ip, range) in cases {
            assert_eq!(range_of(v6(ip)), range, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4() {
        let cases = [
            ("::ffff:127.0.0.1", "127.0.0.0/8", "IPv4-mapped (::ffff:0:0/96)"),
            ("::ffff:7f00:1", "127.0.0.0/8", "IPv4-mapped (::ffff:0:0/96)"),
            ("::ffff:10.1.2.3", "10.0.0.0/8", "IPv4-mapped (::ffff:0:0/96)"),
            ("::ffff:169.254.169.254", "169.254.169.254/32", "IPv4-mapped (::ffff:0:0/96)"),
            ("::ffff:0.0.0.0", "0.0.0.0/32", "IPv4-mapped (::ffff:0:0/96)"),
            ("64:ff9b::127.0.0.1", "127.0.0.0/8", "NAT64 (64:ff9b::/96, RFC 6052)"),
            ("64:ff9b::a9fe:a9fe", "169.254.169.254/32", "NAT64 (64:ff9b::/96, RFC 6052)"),
            ("64:ff9b::c0a8:101", "192.168.0.0/16", "NAT64 (64:ff9b::/96, RFC 6052)"),
            ("2002:7f00:1::", "127.0.0.0/8", "6to4 (2002::/16, RFC 3056)"),
            ("2002:a00:1::1", "10.0.0.0/8", "6to4 (2002::/16, RFC 3056)"),
            ("2002:a9fe:a9fe::", "169.254.169.254/32", "6to4 (2002::/16, RFC 3056)"),
        ];
        for (ip, range, form) in cases {
            let err = check_ip(v6(ip), false).expect_err(ip);
            assert_eq!((err.range, err.embedded.map(|e| e.0)), (range, Some(form)), "{ip}");
            assert!(err.to_string().contains(form), "{err}");
        }
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(check_ip(v6(ip), false), Ok(()), "{ip}");
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for ip in ["2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001::1", "2001:1::1", "2001:4:112::1"] {
            assert_eq!(check_ip(v6(ip), false), Ok(()), "{ip}");
        }
    }

    #[test]
    fn the_test_allowance_permits_ipv4_loopback_and_nothing_else() {
        for ip in ["127.0.0.1", "127.0.0.2", "127.255.255.254"] {
            assert_eq!(check_ip(v4(ip), true), Ok(()), "{ip}");
            assert!(check_ip(v4(ip), false).is_err(), "{ip}");
        }
        for ip in ["10.0.0.1", "169.254.169.254", "0.0.0.0", "192.168.0.1", "100.64.0.1"] {
            assert!(check_ip(v4(ip), true).is_err(), "{ip}");
        }
        for ip in ["::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "::7f00:1"] {
            assert!(check_ip(v6(ip), true).is_err(), "{ip}");
        }
    }

    fn url_refusal(policy: &Policy, url: &str) -> Refusal {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        policy.check_url(&parsed).expect_err(url)
    }

    /// The WHATWG host parser (the `url` crate) turns every numeric IPv4 spelling into the
    /// address it denotes; the check sees that address.
    #[test]
    fn numeric_ipv4_spellings_are_the_address_they_denote() {
        let policy = Policy::default();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://0x7F.0.0.1/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://127.1/",
            "http://127.0.1/",
            "http://127.0.0.1./",
            "http://0x00007f.1/",
            "http://00000000000000177.0.0.1/",
            "http://%31%32%37.0.0.1/",
            "http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
            "http://example.com@127.0.0.1/",
            "http://user:pass@2130706433:8080/x",
            "HTTP://0X7F.1/",
        ] {
            let parsed = Url::parse(url).unwrap();
            assert_eq!(parsed.host(), Some(Host::Ipv4(Ipv4Addr::new(127, 0, 0, 1))), "{url}");
            match url_refusal(&policy, url) {
                Refusal::Address(a) => assert_eq!(a.range, "127.0.0.0/8", "{url}"),
                other => panic!("{url}: {other}"),
            }
        }
        for (url, ip, range) in [
            ("http://0/", "0.0.0.0", "0.0.0.0/32"),
            ("http://0x0/", "0.0.0.0", "0.0.0.0/32"),
            ("http://2852039166/", "169.254.169.254", "169.254.169.254/32"),
            ("http://0xa9fea9fe/", "169.254.169.254", "169.254.169.254/32"),
            ("http://0251.0376.0251.0376/", "169.254.169.254", "169.254.169.254/32"),
            ("http://169.254.43518/", "169.254.169.254", "169.254.169.254/32"),
            ("http://10.1/", "10.0.0.1", "10.0.0.0/8"),
            ("http://012.0.0.1/", "10.0.0.1", "10.0.0.0/8"),
            ("http://0xc0.0xa8.1.1/", "192.168.1.1", "192.168.0.0/16"),
            ("http://3232235777/", "192.168.1.1", "192.168.0.0/16"),
            ("http://4294967295/", "255.255.255.255", "255.255.255.255/32"),
        ] {
            match url_refusal(&policy, url) {
                Refusal::Address(a) => assert_eq!((a.addr, a.range), (v4(ip), range), "{url}"),
                other => panic!("{url}: {other}"),
            }
        }
        // Numbers out of range are not hosts at all.
        assert!(Url::parse("http://4294967296/").is_err());
        assert!(Url::parse("http://127.0.0.1.1/").is_err());
    }

    #[test]
    fn ipv6_literals_in_urls() {
        let policy = Policy::default();
        for (url, range) in [
            ("http://[::1]/", "::1/128"),
            ("http://[::]/", "::/128"),
            ("http://[::ffff:127.0.0.1]/", "127.0.0.0/8"),
            ("http://[0:0:0:0:0:ffff:7f00:1]/", "127.0.0.0/8"),
            ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254/32"),
            ("http://[::127.0.0.1]/", "::/96"),
            ("http://[fd00:ec2::254]/", "fd00:ec2::254/128"),
            ("http://[fe80::1]/", "fe80::/10"),
            ("http://[fc00::1]:8080/", "fc00::/7"),
            ("http://[64:ff9b::a9fe:a9fe]/", "169.254.169.254/32"),
        ] {
            match url_refusal(&policy, url) {
                Refusal::Address(a) => assert_eq!(a.range, range, "{url}"),
                other => panic!("{url}: {other}"),
            }
        }
    }

    #[test]
    fn only_http_and_https() {
        let policy = Policy::default();
        for url in ["file:///etc/passwd", "ftp://example.com/", "gopher://example.com/", "data:text/plain,hi"] {
            assert!(matches!(url_refusal(&policy, url), Refusal::Scheme(_)), "{url}");
        }
        assert_eq!(policy.check_url(&Url::parse("https://example.com/").unwrap()), Ok(()));
        assert_eq!(policy.check_url(&Url::parse("http://example.com:8080/x?y#z").unwrap()), Ok(()));
    }

    #[test]
    fn metadata_names_are_refused_by_name() {
        let policy = Policy::default();
        for url in [
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://metadata/",
            "http://metadata.goog/",
            "http://instance-data/latest/meta-data/",
            "http://x.metadata.google.internal/",
        ] {
            assert!(matches!(url_refusal(&policy, url), Refusal::MetadataName(_)), "{url}");
        }
        // A name merely containing the word is fine.
        assert_eq!(policy.check_url(&Url::parse("http://mymetadata.example/").unwrap()), Ok(()));
    }

    #[test]
    fn domain_lists_match_suffixes_on_a_dot_boundary() {
        let allow = Policy { allow: DomainList::new(&["example.com", "*.docs.rs"]).unwrap(), ..Policy::default() };
        for ok in ["http://example.com/", "http://www.example.com/", "http://a.b.example.com./", "https://x.docs.rs/"] {
            assert_eq!(allow.check_url(&Url::parse(ok).unwrap()), Ok(()), "{ok}");
        }
        for bad in
            ["http://badexample.com/", "http://example.com.evil.net/", "http://other.org/", "http://docs.rs.evil/"]
        {
            assert!(matches!(url_refusal(&allow, bad), Refusal::NotAllowed(_)), "{bad}");
        }
        let deny = Policy { deny: DomainList::new(&["Evil.COM.", "10.0.0.0"]).unwrap(), ..Policy::default() };
        assert!(matches!(url_refusal(&deny, "http://evil.com/"), Refusal::Denied { .. }));
        assert!(matches!(url_refusal(&deny, "http://a.evil.com/"), Refusal::Denied { .. }));
        assert_eq!(deny.check_url(&Url::parse("http://notevil.com/").unwrap()), Ok(()));
        // Deny wins over allow.
        let both = Policy {
            allow: DomainList::new(&["example.com"]).unwrap(),
            deny: DomainList::new(&["secret.example.com"]).unwrap(),
            ..Policy::default()
        };
        assert_eq!(both.check_url(&Url::parse("http://www.example.com/").unwrap()), Ok(()));
        assert!(matches!(url_refusal(&both, "http://x.secret.example.com/"), Refusal::Denied { .. }));
        // IDN entries are compared in their ASCII form.
        let idn = Policy { allow: DomainList::new(&["bücher.example"]).unwrap(), ..Policy::default() };
        assert_eq!(idn.check_url(&Url::parse("http://www.BÜCHER.example/").unwrap()), Ok(()));
    }

    #[test]
    fn ip_hosts_match_list_entries_only_exactly() {
        let allow = Policy {
            allow: DomainList::new(&["127.0.0.1", "0.1"]).unwrap(),
            allow_loopback_for_tests: true,
            ..Policy::default()
        };
        assert_eq!(allow.check_url(&Url::parse("http://127.0.0.1:9/").unwrap()), Ok(()));
        assert!(matches!(url_refusal(&allow, "http://127.0.0.2/"), Refusal::NotAllowed(_)));
        // Even with an allow-list entry, a forbidden address stays forbidden.
        let allow_private = Policy { allow: DomainList::new(&["10.0.0.1"]).unwrap(), ..Policy::default() };
        assert!(matches!(url_refusal(&allow_private, "http://10.0.0.1/"), Refusal::Address(_)));
    }

    #[test]
    fn every_resolved_address_is_checked() {
        let policy = Policy::default();
        assert_eq!(policy.check_resolved("a.test", &[v4("93.184.216.34"), v6("2606:4700::1")]), Ok(()));
        let err = policy.check_resolved("a.test", &[v4("93.184.216.34"), v4("10.0.0.1")]).unwrap_err();
        assert!(matches!(&err, Refusal::Resolved { reason, .. } if reason.range == "10.0.0.0/8"), "{err}");
        let err = policy.check_resolved("a.test", &[v6("2606:4700::1"), v6("::ffff:169.254.169.254")]).unwrap_err();
        assert!(err.to_string().contains("169.254.169.254"), "{err}");
        assert!(matches!(policy.check_resolved("a.test", &[]), Err(Refusal::NoAddress(_))));
        let testing = Policy { allow_loopback_for_tests: true, ..Policy::default() };
        assert_eq!(testing.check_resolved("localhost", &[v4("127.0.0.1")]), Ok(()));
        assert!(testing.check_resolved("localhost", &[v4("127.0.0.1"), v6("::1")]).is_err());
    }

    #[test]
    fn messages_name_the_address_and_the_range() {
        let err = url_refusal(&Policy::default(), "http://0x7f.1/");
        assert_eq!(
            err.to_string(),
            "127.0.0.1, which is in 127.0.0.0/8 (loopback, RFC 1122); mcp-fetch does not fetch internal or special-purpose addresses"
        );
    }
}
