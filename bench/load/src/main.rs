//! mcp-bench: a load client for this repository's MCP servers, built on rmcp's own client (the
//! official Rust MCP SDK), so what it measures is what an rmcp-based MCP client would see.
//!
//! `mcp-bench stdio-proxy` measures the `tools/call` round trip to a stdio MCP server made
//! directly on stdio (one child process per session, as an MCP host does it) against the same
//! call made over Streamable HTTP through `mcp-stdio-proxy` (one child per MCP session behind
//! it), for each session count given, with every session running its calls back to back and all
//! sessions at once. It prints a markdown table and writes the figures as JSON. Everything runs
//! on loopback, with a fixed number of calls and a timeout on each.
//!
//! Run (release build; `bench/stdio-proxy.sh` does all of this):
//!   cargo build --release -p mcp-bench -p mcp-stdio-proxy
//!   T=${CARGO_TARGET_DIR:-target}/release
//!   $T/mcp-bench stdio-proxy --fixture $T/mcp-stdio-fixture --proxy $T/mcp-stdio-proxy \
//!     --sessions 1,32 --calls 1000 --json bench/results-stdio-proxy.json
//!
//! `mcp-bench authd …` is the other half of `make bench`: the mcp-authd loads wrk cannot make
//! (ext_authz gRPC Check, /token refresh grants after a real login, /register), the Redis command
//! count per /verify, and the report (table + `bench/results.json`); see `bench/verify.sh` and
//! the `authd` module.
//!
//! It serves nothing itself. To try the proxy it starts by hand, see the curl in the header of
//! `examples/stdio-proxy/src/main.rs`.

#![forbid(unsafe_code)]

mod authd;
mod procstat;
mod report;
mod stdio_proxy;

use clap::{Parser, Subcommand};

/// Load client for mcp-authd and the MCP servers here: latency percentiles and throughput.
#[derive(Debug, Parser)]
#[command(name = "mcp-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tool calls direct on stdio vs through mcp-stdio-proxy (Streamable HTTP), per session count.
    StdioProxy(stdio_proxy::Args),
    /// mcp-authd: ext_authz gRPC Check, /token refresh, /register loads; Redis commands per
    /// /verify; wrk output and RSS as rows; the report of `make bench`.
    Authd {
        #[command(subcommand)]
        command: authd::Command,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::StdioProxy(args) => runtime.block_on(stdio_proxy::run(args)),
        Command::Authd { command } => runtime.block_on(authd::run(command)),
    }
}
