//! `mcp-fetch`: an MCP server with one tool, `fetch`, that is safe against SSRF by construction.
//!
//! - [`guard`]: which URLs, names and addresses may be reached (every special-purpose range,
//!   IPv4 carried in IPv6, cloud metadata, domain allow/deny lists).
//! - [`resolve`]: name resolution that checks every answer and hands the connector only those.
//! - [`fetch`]: the client: redirects followed by hand and checked, size, time and redirect
//!   bounds, robots.txt.
//! - [`robots`]: robots.txt rules per origin (RFC 9309).
//! - [`content`] and [`html`]: what a body becomes (Markdown, text, JSON, image) and the window
//!   the caller asked for.
//! - [`server`]: the MCP tool.
#![forbid(unsafe_code)]

pub mod content;
pub mod fetch;
pub mod guard;
pub mod html;
pub mod resolve;
pub mod robots;
pub mod server;

pub use fetch::{FetchConfig, FetchError, Fetcher, Page};
pub use guard::{DomainList, Policy, Refusal};
pub use server::{FetchArgs, FetchServer};
