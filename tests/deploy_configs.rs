//! The proxy configurations in deploy/ are valid for the proxies that run them, checked by each
//! proxy's own checker (Traefik has none: it is started and must load its routes). The same
//! files carry the end-to-end tests (tests/e2e_proxies.rs), so what is shipped is what is tested.

mod common;

use common::proxies::{Kind, validate};

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
