//! `mcp-bench authd …`: the loads on mcp-authd that wrk cannot make, and the report of
//! `make bench` (issue 7: /verify at the speed of a static response).
//!
//! `bench/verify.sh` drives it: it starts mcp-authd per store, runs wrk for the /verify and
//! /health cases and these subcommands for the rest; every step appends one JSON line to a rows
//! file, and `report` prints the table and writes `bench/results.json`.
//!
//! - `grpc`: Envoy ext_authz `Check` with envoy-types' tonic client ([`grpc`]);
//! - `refresh`: one real login per connection (register, authorize with PKCE, `/login`, code
//!   exchange), then chained refresh grants; also collects the access tokens they return, which
//!   are the rotation case's 10,000 distinct tokens ([`flow`]);
//! - `register`: `POST /register` per second ([`flow`]);
//! - `redis-commands`: Redis commands per fixed number of `/verify` calls ([`redis`]);
//! - `wrk`: wrk's output → a row ([`wrk`]); `rss`: the server's VmRSS now;
//! - `report`: the table, the targets next to the figures, the JSON ([`results`]).
//!
//! Load only ever goes to the addresses given, which the script keeps on loopback.

pub mod flow;
pub mod grpc;
pub mod load;
pub mod redis;
pub mod results;
pub mod verify;
pub mod wrk;

use anyhow::Result;

/// The subcommands of `mcp-bench authd`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// ext_authz gRPC Check with a valid token: N channels, one Check in flight each.
    Grpc(grpc::Args),
    /// /token refresh grants per second, chained per login (one real login per connection).
    Refresh(flow::RefreshArgs),
    /// /register (public client) per second.
    Register(flow::RegisterArgs),
    /// Redis commands mcp-authd issues during a fixed number of /verify calls.
    RedisCommands(redis::Args),
    /// Reads `wrk --latency` output on standard input and records it as a row.
    Wrk(wrk::Args),
    /// Records the server's VmRSS now.
    Rss(results::RssArgs),
    /// Prints the table of a rows file and writes bench/results.json.
    Report(results::ReportArgs),
}

/// Runs one subcommand.
pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Grpc(args) => grpc::run(args).await,
        Command::Refresh(args) => flow::refresh(args).await,
        Command::Register(args) => flow::register(args).await,
        Command::RedisCommands(args) => redis::run(args).await,
        Command::Wrk(args) => wrk::record(args),
        Command::Rss(args) => results::record_rss(args),
        Command::Report(args) => results::report(args),
    }
}
