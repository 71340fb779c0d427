//! Shared test harness: the real binary, a throw-away redis-server, a GitHub stand-in, an HTTPS
//! document server, and the client side of the OAuth flows.
#![allow(dead_code)]

pub mod github;
pub mod https;
pub mod oauth;
pub mod oidc;
pub mod proxies;
pub mod redis;
pub mod server;
