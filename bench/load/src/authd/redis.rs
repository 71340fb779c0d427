//! `mcp-bench authd redis-commands`: how many Redis commands mcp-authd issues while it answers a
//! fixed number of `/verify` calls in steady state (the target: none). Read from Redis'
//! own `INFO commandstats` before and after (per-command `calls` counters), less the bench's own
//! `INFO`; the same over an idle period of equal length right after shows background traffic.
//! The bench talks RESP over a plain TCP connection (only `INFO`): no Redis client crate needed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::results::{self, Common, Record, RedisRecord};
use super::verify;

/// Per-command `calls` from the text of `INFO commandstats` (`cmdstat_get:calls=10,usec=…`).
pub fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, fields) = l.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// `after − before`, per command, without the commands that did not run; `own_info` of the
/// `info` calls are the bench's own.
pub fn difference(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    own_info: u64,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, a)| {
            let mut d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            if k == "info" {
                d = d.saturating_sub(own_info);
            }
            (k.clone(), d)
        })
        .filter(|(_, d)| *d > 0)
        .collect()
}

/// One connection to Redis that only ever sends `INFO commandstats`.
struct Info {
    conn: BufReader<TcpStream>,
}

impl Info {
    async fn connect(addr: &str) -> Result<Info> {
        let conn = TcpStream::connect(addr).await.with_context(|| format!("connecting to Redis at {addr}"))?;
        Ok(Info { conn: BufReader::new(conn) })
    }

    /// `INFO commandstats` (RESP: an array of bulk strings; the answer is one bulk string).
    async fn commandstats(&mut self) -> Result<BTreeMap<String, u64>> {
        self.conn.get_mut().write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n").await?;
        let mut header = String::new();
        self.conn.read_line(&mut header).await?;
        let Some(len) = header.trim_end().strip_prefix('$') else { bail!("unexpected answer to INFO: {header:?}") };
        let len: usize = len.parse().context("bulk length")?;
        let mut body = vec![0; len + 2];
        self.conn.read_exact(&mut body).await?;
        Ok(parse_commandstats(&String::from_utf8_lossy(&body)))
    }
}

/// Options of `mcp-bench authd redis-commands`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// The Redis server mcp-authd uses (`127.0.0.1:PORT`).
    #[arg(long)]
    redis: String,
    /// mcp-authd's issuer URL.
    #[arg(long)]
    base: String,
    /// The protected resource the tokens are for.
    #[arg(long)]
    resource: String,
    /// Tokens to send, one a line, in rotation (one line: the same token every call).
    #[arg(long, value_name = "PATH")]
    token_file: PathBuf,
    /// /verify calls.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Counts and appends the record.
pub async fn run(args: Args) -> Result<()> {
    let text =
        std::fs::read_to_string(&args.token_file).with_context(|| format!("reading {}", args.token_file.display()))?;
    let tokens: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    ensure!(!tokens.is_empty(), "{}: no token", args.token_file.display());
    let mut info = Info::connect(&args.redis).await?;
    let before = info.commandstats().await?;
    let counted = verify::count(&args.base, &args.resource, &tokens, args.requests, args.concurrency).await?;
    let after = info.commandstats().await?;
    tokio::time::sleep(counted.wall).await;
    let idle = info.commandstats().await?;
    // Each INFO is counted once it has run: `after` holds `before`'s, `idle` holds `after`'s.
    let by_command = difference(&before, &after, 1);
    let idle_commands = difference(&after, &idle, 1).values().sum();
    let record = RedisRecord {
        store: args.common.store.clone(),
        case: args.common.case.clone(),
        requests: counted.requests,
        unexpected: counted.not_ok(),
        seconds: counted.wall.as_secs_f64(),
        commands: by_command.values().sum(),
        by_command,
        idle_commands,
    };
    eprintln!(
        "{:<8} Redis commands during {} /verify calls ({}, {} distinct tokens, {:.2} s): {} {:?}; idle: {}; answers {:?}",
        record.store,
        record.requests,
        record.case,
        tokens.len(),
        record.seconds,
        record.commands,
        record.by_command,
        record.idle_commands,
        counted.statuses
    );
    results::append(&args.common.rows, &Record::RedisCommands(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_difference() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_info:calls=3,usec=100,usec_per_call=33.3,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_get:calls=10,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=0\r\n",
        );
        assert_eq!(before, BTreeMap::from([("info".to_owned(), 3), ("get".to_owned(), 10)]));
        let after = parse_commandstats(
            "cmdstat_info:calls=4,usec=1\r\ncmdstat_get:calls=10,usec=5\r\ncmdstat_ping:calls=2,usec=1\r\n",
        );
        assert_eq!(difference(&before, &after, 1), BTreeMap::from([("ping".to_owned(), 2)]));
        assert_eq!(difference(&before, &after, 0), BTreeMap::from([("info".to_owned(), 1), ("ping".to_owned(), 2)]));
    }
}
