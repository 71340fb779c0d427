//! The proxy configurations in deploy/ are valid for the proxies that run them, checked by each
//! proxy's own checker (Traefik has none: it is started and must load its routes). The same
//! files carry the end-to-end tests (tests/e2e_proxies.rs), so what is shipped is what is tested.

mod common;

use std::path::Path;

use common::proxies::{Kind, validate};

fn deploy(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)).unwrap()
}

const PROXY_CONFIGS: [&str; 5] =
    ["caddy/Caddyfile", "nginx/nginx.conf", "traefik/dynamic.yml", "envoy/envoy-grpc.yaml", "envoy/envoy-http.yaml"];

fn valid(kind: Kind) {
    if let Err(e) = validate(kind) {
        panic!("deploy/ configuration for {kind:?} is refused:\n{e}");
    }
}

#[test]
fn caddyfile_validates() {
    valid(Kind::Caddy);
}

#[test]
fn nginx_conf_validates() {
    valid(Kind::Nginx);
}

#[test]
fn envoy_grpc_yaml_validates() {
    valid(Kind::EnvoyGrpc);
}

#[test]
fn envoy_http_yaml_validates() {
    valid(Kind::EnvoyHttp);
}

#[test]
fn traefik_loads_its_routes() {
    valid(Kind::Traefik);
}

#[test]
fn mcp_authd_toml_is_valid() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .arg("--config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mcp-authd.toml"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The compose setups hang together: every resource of mcp-authd.toml is routed by every proxy,
/// every upstream a proxy names is a service of services.yml on that port, and the one address
/// mcp-authd trusts is the one every proxy gets.
#[test]
fn compose_files_agree_with_the_proxy_configs() {
    let authd = deploy("mcp-authd.toml");
    let services = deploy("services.yml");
    for (service, port) in [("echo", 3001), ("fetch", 3002), ("time", 3003)] {
        assert!(authd.contains(&format!("url = \"http://localhost:8000/{service}/mcp\"")), "{service}");
        assert!(services.contains(&format!("  {service}:\n")), "{service} is not a service");
        assert!(services.contains(&format!("\"--port\", \"{port}\"")), "{service} does not listen on {port}");
        for config in PROXY_CONFIGS {
            let text = deploy(config);
            assert!(text.contains(&format!("/{service}/")), "{config} does not route /{service}/");
            let upstream = [format!("{service}:{port}"), format!("address: {service}, port_value: {port}")];
            assert!(upstream.iter().any(|u| text.contains(u.as_str())), "{config} does not send /{service}/ to {port}");
        }
    }
    assert!(authd.contains("bind = \"0.0.0.0:8080\"") && authd.contains("grpc_bind = \"0.0.0.0:9191\""));
    assert!(authd.contains("trusted_proxies = [\"172.30.0.10\"]"));
    assert!(services.contains("subnet: 172.30.0.0/24"));
    for proxy in ["traefik", "caddy", "nginx", "envoy"] {
        let compose = deploy(&format!("{proxy}/docker-compose.yml"));
        assert!(compose.contains("include: [../services.yml]"), "{proxy}");
        assert!(compose.contains("ipv4_address: 172.30.0.10"), "{proxy} is not the trusted address");
        assert!(compose.contains("\"8000:8000\""), "{proxy} does not publish 8000");
    }
    // Only the proxy publishes a port: the MCP servers are not reachable around it.
    assert!(!services.contains("ports:"), "services.yml publishes a port");
}

/// A stand-in MCP server: answers every request 200 with its own name as the body.
fn stand_in(name: &'static str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
            });
        }
    });
    port
}

/// `GET <path>` through the proxy over a raw socket (HTTP clients would resolve the dot segments
/// and percent-decode before sending): the status and the body.
fn raw_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// What a client sends cannot change the request mcp-authd judges: forged forwarding headers (the
/// other proxies' dialects), and dot segments that a proxy would route one way while mcp-authd,
/// which resolves them, judges another (`/echo/mcp/../../fetch/mcp` with a token for fetch).
fn forged_requests_are_judged_as_routed(kind: Kind) {
    use common::server::{Options, Server, free_port};
    let (port, grpc) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port}");
    let (echo, fetch) = (format!("{public}/echo/mcp"), format!("{public}/fetch/mcp"));
    let s = Server::start_with(Options {
        toml: format!(
            "[verify]\ngrpc_bind = \"127.0.0.1:{grpc}\"\n\n[[resources]]\nurl = \"{echo}\"\n\n[[resources]]\nurl = \"{fetch}\"\n"
        ),
        issuer: Some(public.clone()),
        ..Options::default()
    });
    let up = common::proxies::Upstreams {
        authd: s.port,
        authd_grpc: grpc,
        echo: stand_in("echo"),
        fetch: stand_in("fetch"),
        time: free_port(),
    };
    let proxy = common::proxies::start_on(kind, &up, port);
    let echo_token = format!("Bearer {}", s.mint(&["--sub", "alice", "--aud", &echo]));
    let fetch_token = format!("Bearer {}", s.mint(&["--sub", "alice", "--aud", &fetch]));
    let ctx =
        |what: &str, got: &(u16, String)| format!("{kind:?}: {what}: {got:?}\n--- proxy log ---\n{}", proxy.log());

    let got = raw_get(port, "/echo/mcp", &[("Authorization", &echo_token)]);
    assert_eq!(got, (200, "echo".into()), "{}", ctx("a token for echo", &got));
    let got = raw_get(port, "/echo/mcp", &[]);
    assert_eq!(got.0, 401, "{}", ctx("no token", &got));

    let metadata = format!("{public}/.well-known/oauth-protected-resource/echo/mcp");
    let forged: [&[(&str, &str)]; 2] = [
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", &public[7..]),
            ("X-Forwarded-Uri", "/.well-known/oauth-protected-resource/echo/mcp"),
        ],
        &[("X-Original-URL", &metadata), ("X-Original-Method", "GET")],
    ];
    for headers in forged {
        // 401, or 403 where mcp-authd sees two dialects in one subrequest: refused either way.
        let got = raw_get(port, "/echo/mcp", headers);
        assert!(matches!(got.0, 401 | 403), "{}", ctx(&format!("no token, forged {headers:?}"), &got));
        let mut with_token = headers.to_vec();
        with_token.push(("Authorization", &fetch_token));
        let got = raw_get(port, "/echo/mcp", &with_token);
        assert_ne!(got.1, "echo", "{}", ctx(&format!("a token for fetch, forged {headers:?}"), &got));
    }
    let forged =
        [("X-Forwarded-Uri", "/fetch/mcp"), ("X-Original-URL", fetch.as_str()), ("Authorization", &fetch_token)];
    let got = raw_get(port, "/echo/mcp", &forged);
    assert_ne!(got.1, "echo", "{}", ctx("a token for fetch, forged fetch URL", &got));

    for path in [
        "/echo/mcp/../../fetch/mcp",
        "/echo/../fetch/mcp",
        "/echo/%2e%2e/fetch/mcp",
        "/echo/mcp%2F..%2F..%2Ffetch%2Fmcp",
    ] {
        let got = raw_get(port, path, &[("Authorization", &fetch_token)]);
        assert_ne!(got.1, "echo", "{}", ctx(&format!("a token for fetch at {path}"), &got));
        let got = raw_get(port, path, &[("Authorization", &echo_token)]);
        assert_ne!(got.1, "fetch", "{}", ctx(&format!("a token for echo at {path}"), &got));
    }
}

#[test]
fn traefik_judges_what_it_routes() {
    forged_requests_are_judged_as_routed(Kind::Traefik);
}

#[test]
fn caddy_judges_what_it_routes() {
    forged_requests_are_judged_as_routed(Kind::Caddy);
}

#[test]
fn nginx_judges_what_it_routes() {
    forged_requests_are_judged_as_routed(Kind::Nginx);
}

#[test]
fn envoy_http_judges_what_it_routes() {
    forged_requests_are_judged_as_routed(Kind::EnvoyHttp);
}

#[test]
fn envoy_grpc_judges_what_it_routes() {
    forged_requests_are_judged_as_routed(Kind::EnvoyGrpc);
}
