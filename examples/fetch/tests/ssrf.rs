//! The SSRF guard end to end: the fetch tool over real MCP, real HTTP on loopback, and listeners
//! that count connections to prove that a refused target is never connected to.
//!
//! Nothing here connects anywhere but 127.0.0.0/8 and ::1: the non-loopback targets (10.0.0.1,
//! 169.254.169.254, …) appear only as URLs and lookup answers that must be refused before any
//! connection, which the loopback decoys show.

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use common::*;
use mcp_fetch::{DomainList, FetchConfig, Policy};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn loopback_is_refused_by_default_in_every_spelling() {
    let decoy = Counting::bind("127.0.0.1:0").await;
    let port = decoy.addr.port();
    let client = client_with(FetchConfig::default()).await;
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.2:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://%31%32%37.0.0.1:{port}/"),
        format!("http://evil.example@127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::127.0.0.1]:{port}/"),
    ] {
        let err = fetch_err(&client, &url).await;
        assert!(err.starts_with("refused to fetch"), "{url}: {err}");
        assert!(err.contains("127.0.0.0/8") || err.contains("::/96"), "{url}: {err}");
    }
    assert_eq!(decoy.count(), 0, "a refused address was connected to");
}

#[tokio::test]
async fn localhost_by_name_is_refused_by_default() {
    // The system resolver: `localhost` resolves to loopback, which is refused after lookup and
    // before any connection.
    let decoy = Counting::bind("127.0.0.1:0").await;
    let client = client_with(FetchConfig::default()).await;
    let err = fetch_err(&client, &format!("http://localhost:{}/", decoy.addr.port())).await;
    assert!(err.contains("`localhost` resolves to 127.0.0.1, which is in 127.0.0.0/8 (loopback"), "{err}");
    assert_eq!(decoy.count(), 0);
}

#[tokio::test]
async fn the_test_allowance_opens_ipv4_loopback_only() {
    let origin = spawn_origin(Origin::default()).await;
    let v6_decoy = Counting::bind("[::1]:0").await;
    let v4_decoy = Counting::bind("127.0.0.1:0").await;
    let client = client_with(test_config()).await;
    assert!(fetch_ok(&client, &format!("http://127.0.0.1:{}/text", origin.port())).await.contains("hello, plain text"));
    assert!(fetch_ok(&client, &format!("http://localhost:{}/text", origin.port())).await.contains("hello, plain text"));
    for url in [
        format!("http://[::1]:{}/", v6_decoy.addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/", v4_decoy.addr.port()),
        format!("http://[64:ff9b::7f00:1]:{}/", v4_decoy.addr.port()),
    ] {
        let err = fetch_err(&client, &url).await;
        assert!(err.starts_with("refused to fetch"), "{url}: {err}");
    }
    assert_eq!((v6_decoy.count(), v4_decoy.count()), (0, 0));
}

#[tokio::test]
async fn internal_ip_literals_are_refused() {
    let client = client_with(test_config()).await;
    for (url, range) in [
        ("http://10.0.0.1/", "10.0.0.0/8 (private network, RFC 1918)"),
        ("http://172.16.5.4/", "172.16.0.0/12"),
        ("http://192.168.1.1/", "192.168.0.0/16"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254/32 (cloud metadata service"),
        ("http://2852039166/latest/meta-data/", "169.254.169.254/32"),
        ("http://169.254.1.1/", "169.254.0.0/16 (link-local"),
        ("http://100.64.0.1/", "100.64.0.0/10"),
        ("http://0.0.0.0/", "0.0.0.0/32 (unspecified"),
        ("http://0/", "0.0.0.0/32"),
        ("http://255.255.255.255/", "255.255.255.255/32 (limited broadcast"),
        ("http://224.0.0.1/", "224.0.0.0/4 (multicast"),
        ("http://192.0.2.1/", "192.0.2.0/24 (documentation"),
        ("http://240.0.0.1/", "240.0.0.0/4"),
        ("http://[::]/", "::/128"),
        ("http://[fe80::1]/", "fe80::/10"),
        ("http://[fc00::1]/", "fc00::/7"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254/128 (cloud metadata service: AWS IPv6)"),
        ("http://[fec0::1]/", "fec0::/10"),
        ("http://[ff02::1]/", "ff00::/8"),
        ("http://[2001:db8::1]/", "2001:db8::/32"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped"),
        ("http://[2002:a9fe:a9fe::1]/", "6to4"),
        ("http://[64:ff9b::a00:1]/", "NAT64"),
    ] {
        let err = fetch_err(&client, url).await;
        assert!(err.contains(range), "{url}: {err}");
    }
}

#[tokio::test]
async fn other_schemes_and_metadata_names_are_refused() {
    let client = client_with(test_config()).await;
    for url in ["file:///etc/passwd", "ftp://example.com/", "gopher://127.0.0.1/"] {
        assert!(fetch_err(&client, url).await.contains("only http and https"), "{url}");
    }
    for url in ["http://metadata.google.internal/computeMetadata/v1/", "http://metadata/", "http://metadata.goog./"] {
        assert!(fetch_err(&client, url).await.contains("cloud metadata service"), "{url}");
    }
    assert!(fetch_err(&client, "not a url").await.contains("invalid URL"));
}

#[tokio::test]
async fn redirects_to_forbidden_targets_are_refused_before_connecting() {
    let origin = spawn_origin(Origin::default()).await;
    let v4_decoy = Counting::bind("127.0.0.1:0").await;
    let v6_decoy = Counting::bind("[::1]:0").await;
    let (lookup, lookups) = CountingLookup::new([]);
    let client = client_with(FetchConfig { lookup, ..test_config() }).await;
    let start = |to: &str| format!("http://127.0.0.1:{}/to?url={}", origin.port(), to.replace('&', "%26"));
    for (to, expect) in [
        ("http://10.0.0.1/".to_string(), "10.0.0.0/8"),
        ("http://169.254.169.254/latest/meta-data/iam/".to_string(), "169.254.169.254/32"),
        ("http://[fd00:ec2::254]/".to_string(), "fd00:ec2::254/128"),
        ("http://metadata.google.internal/".to_string(), "cloud metadata service"),
        (format!("http://[::ffff:127.0.0.1]:{}/", v4_decoy.addr.port()), "IPv4-mapped"),
        (format!("http://[::1]:{}/", v6_decoy.addr.port()), "::1/128"),
        ("file:///etc/passwd".to_string(), "only http and https"),
    ] {
        let err = fetch_err(&client, &start(&to)).await;
        assert!(err.starts_with("refused the redirect to"), "{to}: {err}");
        assert!(err.contains(expect), "{to}: {err}");
    }
    assert_eq!((v4_decoy.count(), v6_decoy.count()), (0, 0), "a refused redirect target was connected to");
    assert_eq!(lookups.load(Ordering::SeqCst), 0, "a refused redirect target was even looked up");
}

#[tokio::test]
async fn every_resolved_address_is_checked_and_only_checked_ones_are_dialled() {
    let origin = spawn_origin(Origin::default()).await;
    let decoy = Counting::bind("127.0.0.1:0").await;
    let (lookup, lookups) = CountingLookup::new([
        ("public.test", vec![ip("127.0.0.1")]),
        ("mixed.test", vec![ip("127.0.0.1"), ip("10.0.0.1")]),
        ("meta.test", vec![ip("169.254.169.254")]),
        ("six.test", vec![ip("127.0.0.1"), ip("::1")]),
        ("mapped.test", vec![ip("::ffff:127.0.0.1")]),
        ("ula.test", vec![ip("fd00::1")]),
    ]);
    let client = client_with(FetchConfig { lookup, ..test_config() }).await;
    let text = fetch_ok(&client, &format!("http://public.test:{}/text", origin.port())).await;
    assert!(text.contains("hello, plain text"), "{text}");
    for (host, expect) in [
        ("mixed.test", "`mixed.test` resolves to 10.0.0.1, which is in 10.0.0.0/8"),
        ("meta.test", "`meta.test` resolves to 169.254.169.254, which is in 169.254.169.254/32 (cloud metadata"),
        ("six.test", "`six.test` resolves to ::1"),
        ("mapped.test", "IPv4-mapped"),
        ("ula.test", "fc00::/7"),
    ] {
        let err = fetch_err(&client, &format!("http://{host}:{}/", decoy.addr.port())).await;
        assert!(err.starts_with(&format!("refused to fetch http://{host}:{}/: ", decoy.addr.port())), "{err}");
        assert!(err.contains(expect), "{host}: {err}");
    }
    assert_eq!(decoy.count(), 0, "a name with a forbidden address was connected to");
    assert!(lookups.load(Ordering::SeqCst) >= 6);
    // A redirect to a name is resolved and checked the same way.
    let err = fetch_err(
        &client,
        &format!("http://127.0.0.1:{}/to?url=http://mixed.test:{}/", origin.port(), decoy.addr.port()),
    )
    .await;
    assert!(err.starts_with("refused the redirect to") && err.contains("10.0.0.0/8"), "{err}");
    assert_eq!(decoy.count(), 0);
}

#[tokio::test]
async fn allow_and_deny_lists_match_on_dot_boundaries() {
    let origin = spawn_origin(Origin::default()).await;
    let port = origin.port();
    let names = ["example.test", "docs.example.test", "badexample.test", "other.test", "secret.example.test"];
    let entries = names.iter().map(|n| (*n, vec![ip("127.0.0.1")])).collect::<Vec<_>>();

    let (lookup, _) = CountingLookup::new(entries.clone());
    let mut allow = test_config();
    allow.lookup = lookup;
    allow.policy.allow = DomainList::new(&["example.test"]).unwrap();
    allow.policy.deny = DomainList::new(&["secret.example.test"]).unwrap();
    let client = client_with(allow).await;
    for ok in ["example.test", "docs.example.test"] {
        assert!(fetch_ok(&client, &format!("http://{ok}:{port}/text")).await.contains("hello"), "{ok}");
    }
    for refused in ["badexample.test", "other.test"] {
        let err = fetch_err(&client, &format!("http://{refused}:{port}/text")).await;
        assert!(err.contains(&format!("`{refused}` is not on the allow list")), "{err}");
    }
    let err = fetch_err(&client, &format!("http://secret.example.test:{port}/text")).await;
    assert!(err.contains("refused by the deny list (entry `secret.example.test`)"), "{err}");
    // An IP literal is not on a domain allow list; redirects are held to the list as well.
    assert!(fetch_err(&client, &format!("http://127.0.0.1:{port}/text")).await.contains("not on the allow list"));
    let err =
        fetch_err(&client, &format!("http://docs.example.test:{port}/to?url=http://other.test:{port}/text")).await;
    assert!(err.starts_with("refused the redirect to") && err.contains("not on the allow list"), "{err}");

    let (lookup, _) = CountingLookup::new(entries);
    let mut deny = test_config();
    deny.lookup = lookup;
    deny.policy.deny = DomainList::new(&["example.test"]).unwrap();
    let client = client_with(deny).await;
    assert!(fetch_err(&client, &format!("http://docs.example.test:{port}/text")).await.contains("deny list"));
    assert!(fetch_ok(&client, &format!("http://badexample.test:{port}/text")).await.contains("hello"));
    assert!(fetch_ok(&client, &format!("http://other.test:{port}/text")).await.contains("hello"));
}

#[tokio::test]
async fn deny_list_accepts_ip_literals_exactly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
    let other = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, origin_router(Origin::default())).await.unwrap() });
    let decoy = Counting::bind("127.0.0.1:0").await;
    let mut config = test_config();
    config.policy = Policy { deny: DomainList::new(&["127.0.0.1"]).unwrap(), ..config.policy };
    let client = client_with(config).await;
    let err = fetch_err(&client, &format!("http://127.0.0.1:{}/text", decoy.addr.port())).await;
    assert!(err.contains("refused by the deny list (entry `127.0.0.1`)"), "{err}");
    assert_eq!(decoy.count(), 0);
    assert!(fetch_ok(&client, &format!("http://{other}/text")).await.contains("hello, plain text"));
}
