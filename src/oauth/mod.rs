//! OAuth 2.1 protocol logic, free of HTTP framework types: clients and their authentication,
//! client ID metadata documents, redirect URI rules, PKCE, scopes, secrets, and the grants of
//! the token endpoint.

pub mod authorize;
pub mod cimd;
pub mod client;
pub mod device;
pub mod grant;
pub mod params;
pub mod pkce;
pub mod redirect;
pub mod registration;
pub mod revocation;
pub mod scope;
pub mod secret;
