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
