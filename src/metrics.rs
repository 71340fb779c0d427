//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4): decisions by outcome with
//! their latency, tokens issued by grant, refresh-token reuse detections, store errors. Plain
//! atomics, no registry: the /verify hot path pays one clock read and two relaxed increments.
//!
//! Like `/verify`, `/metrics` is for the inside: the proxy configurations in deploy/ do not
//! route it from outside.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::ratelimit::Bucket;
use crate::verify::Decision;

/// Outcomes of a decision, as the `outcome` label.
const OUTCOMES: [&str; 7] =
    ["allowed", "allowed_unchecked", "no_token", "invalid_token", "forbidden", "not_protected", "unavailable"];
/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 10] = [0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05];
/// Grants, as the `grant_type` label.
const GRANTS: [&str; 3] = ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"];

/// Requests answered with an error because the store failed (the whole process: errors are
/// rendered where the application state is out of reach).
pub static STORE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// A latency histogram with fixed buckets.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// Every counter of the process.
#[derive(Default)]
pub struct Metrics {
    decisions: [[AtomicU64; OUTCOMES.len()]; 2],
    latency: [Histogram; 2],
    tokens: [AtomicU64; GRANTS.len()],
    refresh_reuse: AtomicU64,
    rate_limited: [AtomicU64; Bucket::ALL.len()],
}

fn outcome(d: &Decision) -> usize {
    match d {
        Decision::Allow(Some(_)) => 0,
        Decision::Allow(None) => 1,
        Decision::Unauthorized { error: None, .. } => 2,
        Decision::Unauthorized { .. } => 3,
        Decision::Forbidden { .. } => 4,
        Decision::NotProtected => 5,
        Decision::Unavailable => 6,
    }
}

/// Which door a decision came through.
#[derive(Clone, Copy)]
pub enum Transport {
    /// `/verify` (ForwardAuth, Envoy HTTP ext_authz).
    Http = 0,
    /// Envoy ext_authz gRPC `Check`.
    Grpc = 1,
}

impl Metrics {
    /// One decision and how long it took.
    pub fn decision(&self, transport: Transport, d: &Decision, took: Duration) {
        self.decisions[transport as usize][outcome(d)].fetch_add(1, Relaxed);
        self.latency[transport as usize].observe(took);
    }
    /// Tokens issued by a grant.
    pub fn token_issued(&self, grant_type: &str) {
        if let Some(i) = GRANTS.iter().position(|g| *g == grant_type) {
            self.tokens[i].fetch_add(1, Relaxed);
        }
    }
    /// A rotated refresh token presented again (its family is revoked).
    pub fn refresh_reuse(&self) {
        self.refresh_reuse.fetch_add(1, Relaxed);
    }
    /// A request refused by a rate limit.
    pub fn rate_limited(&self, bucket: Bucket) {
        self.rate_limited[bucket as usize].fetch_add(1, Relaxed);
    }
    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let transports = ["http", "grpc"];
        out.push_str("# HELP mcp_authd_decisions_total Access decisions for proxied MCP requests, by outcome.\n");
        out.push_str("# TYPE mcp_authd_decisions_total counter\n");
        for (t, name) in transports.iter().enumerate() {
            for (i, o) in OUTCOMES.iter().enumerate() {
                let n = self.decisions[t][i].load(Relaxed);
                let _ = writeln!(out, "mcp_authd_decisions_total{{transport=\"{name}\",outcome=\"{o}\"}} {n}");
            }
        }
        out.push_str("# HELP mcp_authd_decision_seconds Time to decide, inside mcp-authd.\n");
        out.push_str("# TYPE mcp_authd_decision_seconds histogram\n");
        for (t, name) in transports.iter().enumerate() {
            let h = &self.latency[t];
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Relaxed);
                let _ =
                    writeln!(out, "mcp_authd_decision_seconds_bucket{{transport=\"{name}\",le=\"{b}\"}} {cumulative}");
            }
            let count = h.count.load(Relaxed);
            let _ = writeln!(out, "mcp_authd_decision_seconds_bucket{{transport=\"{name}\",le=\"+Inf\"}} {count}");
            let sum = h.sum_ns.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "mcp_authd_decision_seconds_sum{{transport=\"{name}\"}} {sum}");
            let _ = writeln!(out, "mcp_authd_decision_seconds_count{{transport=\"{name}\"}} {count}");
        }
        out.push_str("# HELP mcp_authd_tokens_issued_total Access tokens issued, by grant.\n");
        out.push_str("# TYPE mcp_authd_tokens_issued_total counter\n");
        for (i, g) in GRANTS.iter().enumerate() {
            let _ =
                writeln!(out, "mcp_authd_tokens_issued_total{{grant_type=\"{g}\"}} {}", self.tokens[i].load(Relaxed));
        }
        out.push_str(
            "# HELP mcp_authd_refresh_token_reuse_total Rotated refresh tokens presented again (family revoked).\n",
        );
        out.push_str("# TYPE mcp_authd_refresh_token_reuse_total counter\n");
        let _ = writeln!(out, "mcp_authd_refresh_token_reuse_total {}", self.refresh_reuse.load(Relaxed));
        out.push_str("# HELP mcp_authd_store_errors_total Requests answered 503 because the store failed.\n");
        out.push_str("# TYPE mcp_authd_store_errors_total counter\n");
        let _ = writeln!(out, "mcp_authd_store_errors_total {}", STORE_ERRORS.load(Relaxed));
        out.push_str("# HELP mcp_authd_rate_limited_total Requests answered 429 by a rate limit, by limit.\n");
        out.push_str("# TYPE mcp_authd_rate_limited_total counter\n");
        for b in Bucket::ALL {
            let n = self.rate_limited[b as usize].load(Relaxed);
            let _ = writeln!(out, "mcp_authd_rate_limited_total{{limit=\"{b}\"}} {n}");
        }
        out
    }
}
