//! The figures of `make bench` for mcp-authd: every step appends one JSON line ([`Record`]) to a
//! rows file; `mcp-bench authd report` turns the file into one table, the targets next to
//! the measured values, and `bench/results.json` ([`Report`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::load::Measured;

/// The cases, by id: (id, description). The ids are what the scripts pass; the report prints the
/// cases in this order.
pub const CASES: &[(&str, &str)] = &[
    ("health", "/health (ceiling)"),
    ("metadata", "/.well-known/oauth-authorization-server (ceiling)"),
    ("verify-valid", "/verify valid token"),
    ("verify-badsig", "/verify bad signature"),
    ("verify-none", "/verify no token"),
    ("verify-expired", "/verify expired token"),
    ("verify-10k-tokens", "/verify 10,000 tokens in rotation"),
    ("grpc-check-valid", "ext_authz gRPC Check, valid token"),
    ("token-refresh", "/token refresh grant (rotating)"),
    ("register", "/register (public client)"),
    ("verify-valid-pinned", "/verify valid token, pinned 1+1 cores"),
    ("verify-badsig-pinned", "/verify bad signature, pinned 1+1 cores"),
];

/// The description of a case id (the id itself if unknown).
pub fn describe(case: &str) -> &str {
    CASES.iter().find(|(id, _)| *id == case).map_or(case, |(_, d)| d)
}

/// One line of the rows file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A load case.
    Load(Row),
    /// The server's resident memory at a quiet moment.
    Rss(RssRecord),
    /// Redis commands counted around a fixed number of /verify calls.
    RedisCommands(RedisRecord),
}

/// One load case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `embedded` or `redis` (the store of the mcp-authd under load), or another server's name.
    pub store: String,
    /// Case id, see [`CASES`].
    pub case: String,
    /// Load generator: `wrk` or `mcp-bench`.
    pub tool: String,
    /// Concurrent connections (gRPC: channels, one request in flight each).
    pub connections: usize,
    /// Server on one core, load generator on the other (`taskset`).
    #[serde(default)]
    pub pinned: bool,
    /// Length of the measured period, seconds.
    pub seconds: f64,
    /// Requests in the measured period.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Slowest request, microseconds.
    pub max_us: f64,
    /// Requests without an answer (wrk: socket errors; mcp-bench: transport errors).
    pub errors: u64,
    /// Answers other than the expected one (wrk can only tell 2xx/3xx from the rest: for a case
    /// expecting 401 this counts 2xx/3xx answers; the exact status is checked once before the run).
    pub unexpected: u64,
    /// The expected answer (`200`, `401`, `201`, `gRPC OK`).
    pub expected: String,
    /// mcp-authd's VmRSS right after the case, KiB.
    pub rss_after_kib: Option<u64>,
}

impl Row {
    /// A row from an mcp-bench run.
    pub fn from_measured(common: &Common, connections: usize, expected: &str, m: &Measured) -> Row {
        Row {
            store: common.store.clone(),
            case: common.case.clone(),
            tool: "mcp-bench".into(),
            connections,
            pinned: common.pinned,
            seconds: m.seconds,
            requests: m.requests,
            rps: m.rps(),
            p50_us: m.hist.value_at_quantile(0.50) as f64,
            p99_us: m.hist.value_at_quantile(0.99) as f64,
            max_us: m.hist.max() as f64,
            errors: m.errors,
            unexpected: m.unexpected,
            expected: expected.into(),
            rss_after_kib: common.pid.and_then(rss_kib),
        }
    }

    /// One line for the log while the bench runs.
    pub fn summary(&self) -> String {
        format!(
            "{:<8} {:<40} {:>9.0} req/s  p50 {:>8}  p99 {:>8}  errors {}  unexpected {}",
            self.store,
            describe(&self.case),
            self.rps,
            ms(self.p50_us),
            ms(self.p99_us),
            self.errors,
            self.unexpected
        )
    }
}

/// VmRSS of a process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RssRecord {
    /// Which server.
    pub store: String,
    /// When (`idle`, …).
    pub when: String,
    /// KiB.
    pub kib: u64,
}

/// Redis commands issued by mcp-authd while it answered a fixed number of /verify calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedisRecord {
    /// Which server.
    pub store: String,
    /// What was asked (`verify-valid`: one cached token; `verify-10k-tokens`: each of the
    /// rotation's tokens once, cached by the rotation case).
    pub case: String,
    /// /verify calls made.
    pub requests: u64,
    /// Of those, answers other than 200.
    pub unexpected: u64,
    /// How long they took, seconds.
    pub seconds: f64,
    /// Redis commands in that time (INFO commandstats after − before, less the bench's own INFO).
    pub commands: u64,
    /// The same, by command (only those with calls).
    pub by_command: BTreeMap<String, u64>,
    /// Commands in an idle period of the same length right after (background work, e.g. keep-alive
    /// pings of the revocation subscription), for comparison.
    pub idle_commands: u64,
}

/// Options every mcp-authd step takes: where the row goes and what it is.
#[derive(Clone, Debug, clap::Args)]
pub struct Common {
    /// Store of the mcp-authd under load (`embedded` or `redis`).
    #[arg(long)]
    pub store: String,
    /// Case id (see `mcp-bench authd report --help`).
    #[arg(long, default_value = "")]
    pub case: String,
    /// The rows file to append the result to (JSON lines).
    #[arg(long, value_name = "PATH")]
    pub rows: PathBuf,
    /// mcp-authd's process id, to read its VmRSS after the case.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The server was pinned to one core and the load generator to the other.
    #[arg(long)]
    pub pinned: bool,
}

/// Appends one record to the rows file.
pub fn append(path: &Path, record: &Record) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(record)?).with_context(|| format!("writing {}", path.display()))
}

/// Reads a rows file.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a record", path.display(), i + 1)))
        .collect()
}

/// VmRSS of `pid` in KiB, from `/proc/<pid>/status` (proc(5)).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Options of `mcp-bench authd rss`.
#[derive(Debug, clap::Args)]
pub struct RssArgs {
    #[command(flatten)]
    common: Common,
    /// When it is read (`idle`, …).
    #[arg(long, default_value = "idle")]
    when: String,
}

/// `mcp-bench authd rss`: records the server's VmRSS now.
pub fn record_rss(args: RssArgs) -> Result<()> {
    let Some(pid) = args.common.pid else { bail!("--pid is required") };
    let kib = rss_kib(pid).with_context(|| format!("reading VmRSS of process {pid}"))?;
    eprintln!("{:<8} RSS {}: {:.1} MiB", args.common.store, args.when, kib as f64 / 1024.0);
    append(&args.common.rows, &Record::Rss(RssRecord { store: args.common.store, when: args.when, kib }))
}

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPUs the OS offers.
    pub cpus: usize,
    /// From /proc/cpuinfo.
    pub cpu_model: String,
    /// From /proc/meminfo.
    pub memory_gib: f64,
    /// From /proc/sys/kernel/osrelease.
    pub kernel: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib: (mem_kib / 1048576.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

/// A target of issue 7 next to what was measured.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// Which server.
    pub store: String,
    /// The target.
    pub target: String,
    /// The measured value, in words.
    pub measured: String,
    /// Met, missed, or `None` when the figures needed are missing.
    pub met: Option<bool>,
}

/// `bench/results.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Which bench.
    pub bench: &'static str,
    /// Where it ran.
    pub machine: Machine,
    /// `--meta key=value` pairs from the script: date, git commit, tool versions, settings.
    pub meta: BTreeMap<String, String>,
    /// The load cases.
    pub cases: Vec<Row>,
    /// Resident memory at quiet moments.
    pub rss: Vec<RssRecord>,
    /// Redis commands per fixed number of /verify calls.
    pub redis_commands: Vec<RedisRecord>,
    /// The targets, evaluated.
    pub targets: Vec<Target>,
}

/// "Invalid tokens no slower than valid": an invalid case keeps at least this share of the valid
/// case's throughput (what run-to-run noise on this machine leaves as "the same").
pub const NO_SLOWER: f64 = 0.95;

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    /// Builds the report from the records, in the order of [`CASES`] within each store.
    pub fn new(records: Vec<Record>, meta: BTreeMap<String, String>) -> Report {
        let mut cases = Vec::new();
        let mut rss = Vec::new();
        let mut redis_commands = Vec::new();
        for r in records {
            match r {
                Record::Load(row) => cases.push(row),
                Record::Rss(r) => rss.push(r),
                Record::RedisCommands(r) => redis_commands.push(r),
            }
        }
        let mut stores: Vec<String> = Vec::new();
        for s in cases.iter().map(|c| &c.store).chain(rss.iter().map(|r| &r.store)) {
            if !stores.contains(s) {
                stores.push(s.clone());
            }
        }
        let order = |r: &Row| {
            let store = stores.iter().position(|s| *s == r.store).unwrap_or(usize::MAX);
            (store, CASES.iter().position(|(id, _)| *id == r.case).unwrap_or(usize::MAX))
        };
        cases.sort_by_key(order);
        let mut report =
            Report { bench: "mcp-authd", machine: Machine::here(), meta, cases, rss, redis_commands, targets: vec![] };
        report.targets = stores.iter().flat_map(|s| report.targets_for(s)).collect();
        report
    }

    fn row(&self, store: &str, case: &str) -> Option<&Row> {
        self.cases.iter().find(|r| r.store == store && r.case == case)
    }

    fn targets_for(&self, store: &str) -> Vec<Target> {
        let target = |target: &str, measured: String, met: Option<bool>| Target {
            store: store.into(),
            target: target.into(),
            measured,
            met,
        };
        let missing = || ("not measured".to_owned(), None);
        let mut out = Vec::new();
        let valid = self.row(store, "verify-valid");
        let (m, ok) = match (valid, self.row(store, "health")) {
            (Some(v), Some(h)) if h.rps > 0.0 => {
                let share = v.rps / h.rps;
                (format!("{:.0} %  ({:.0} vs {:.0} req/s)", share * 100.0, v.rps, h.rps), Some(share >= 0.8))
            }
            _ => missing(),
        };
        out.push(target("/verify valid ≥ 80 % of /health req/s", m, ok));
        let (m, ok) = match self.row(store, "verify-valid-pinned") {
            Some(p) => {
                (format!("p99 {}  (p50 {}, {:.0} req/s)", ms(p.p99_us), ms(p.p50_us), p.rps), Some(p.p99_us <= 1000.0))
            }
            None => missing(),
        };
        out.push(target("/verify p99 ≤ 1 ms, pinned 1+1 cores", m, ok));
        let invalid: Vec<&Row> =
            ["verify-badsig", "verify-none", "verify-expired"].iter().filter_map(|c| self.row(store, c)).collect();
        let (m, ok) = match valid {
            Some(v) if !invalid.is_empty() && v.rps > 0.0 => {
                let parts: Vec<String> = invalid
                    .iter()
                    .map(|r| format!("{} {:.0} %", r.case.trim_start_matches("verify-"), r.rps / v.rps * 100.0))
                    .collect();
                let worst = invalid.iter().map(|r| r.rps / v.rps).fold(f64::INFINITY, f64::min);
                (format!("req/s vs valid: {}", parts.join(", ")), Some(worst >= NO_SLOWER))
            }
            _ => missing(),
        };
        out.push(target("invalid tokens no slower than valid (≥ 95 % of its req/s)", m, ok));
        let redis: Vec<&RedisRecord> = self.redis_commands.iter().filter(|r| r.store == store).collect();
        if !redis.is_empty() {
            // The revocation feed PINGs its connection every 5 s whatever the traffic: a
            // keepalive that may fall in the window, not a command of /verify's.
            let of_verify = |r: &RedisRecord| r.commands - r.by_command.get("ping").copied().unwrap_or(0);
            let parts: Vec<String> = redis
                .iter()
                .map(|r| {
                    format!(
                        "{} per {} ({}; feed keepalive PINGs {}; idle {})",
                        of_verify(r),
                        r.requests,
                        r.case,
                        r.by_command.get("ping").copied().unwrap_or(0),
                        r.idle_commands
                    )
                })
                .collect();
            let ok = redis.iter().all(|r| of_verify(r) == 0 && r.unexpected == 0);
            out.push(target("0 Redis commands per 10,000 /verify", parts.join("; "), Some(ok)));
        }
        let (m, ok) = match self.row(store, "verify-10k-tokens").and_then(|r| r.rss_after_kib) {
            Some(kib) => (mib(kib), Some(kib <= 25 * 1024)),
            None => missing(),
        };
        out.push(target("RSS ≤ 25 MiB with 10,000 tokens cached", m, ok));
        let (m, ok) = match self.row(store, "token-refresh") {
            Some(r) => (format!("{:.0} /s", r.rps), Some(r.rps >= 1000.0 && r.errors == 0 && r.unexpected == 0)),
            None => missing(),
        };
        out.push(target("≥ 1,000 refresh grants/s (RS256)", m, ok));
        out
    }

    /// The table of cases, the RSS and Redis figures, and the targets, as markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| store | case | tool | conns | req/s | p50 | p99 | errors | unexpected | RSS after |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.cases {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
                r.store,
                describe(&r.case),
                r.tool,
                r.connections,
                r.rps,
                ms(r.p50_us),
                ms(r.p99_us),
                r.errors,
                if r.unexpected == 0 { "0".to_owned() } else { format!("{} (expected {})", r.unexpected, r.expected) },
                r.rss_after_kib.map_or_else(|| "–".into(), mib),
            ));
        }
        if !self.rss.is_empty() {
            out.push_str("\n| store | RSS | when |\n|---|---:|---|\n");
            for r in &self.rss {
                out.push_str(&format!("| {} | {} | {} |\n", r.store, mib(r.kib), r.when));
            }
        }
        if !self.redis_commands.is_empty() {
            out.push_str(
                "\n| store | Redis commands | /verify calls | over | same time idle | by command |\n\
                 |---|---:|---:|---|---:|---|\n",
            );
            for r in &self.redis_commands {
                let by: Vec<String> = r.by_command.iter().map(|(k, v)| format!("{k} {v}")).collect();
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    r.store,
                    r.commands,
                    r.requests,
                    describe(&r.case),
                    r.idle_commands,
                    if by.is_empty() { "–".into() } else { by.join(", ") }
                ));
            }
        }
        if !self.targets.is_empty() {
            out.push_str("\n| store | target (issue 7) | measured | met |\n|---|---|---|---|\n");
            for t in &self.targets {
                let met = match t.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "–",
                };
                out.push_str(&format!("| {} | {} | {} | {} |\n", t.store, t.target, t.measured, met));
            }
        }
        out
    }

    /// Writes the JSON (pretty, with a trailing newline).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// Options of `mcp-bench authd report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The rows file the steps appended to.
    #[arg(long, value_name = "PATH")]
    rows: PathBuf,
    /// Where to write the JSON.
    #[arg(long, value_name = "PATH", default_value = "bench/results.json")]
    json: PathBuf,
    /// `key=value` to record with the figures (date, git commit, tool versions, …); repeatable.
    #[arg(long, value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// Leave out the targets (figures of another server, for comparison).
    #[arg(long)]
    no_targets: bool,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("{s:?} is not key=value"))
}

/// `mcp-bench authd report`: prints the tables and writes the JSON.
pub fn report(args: ReportArgs) -> Result<()> {
    let mut report = Report::new(read(&args.rows)?, args.meta.into_iter().collect());
    if args.no_targets {
        report.targets.clear();
    }
    print!("{}", report.markdown());
    report.write_json(&args.json)?;
    eprintln!("wrote {}", args.json.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(store: &str, case: &str, rps: f64, p99_us: f64) -> Record {
        Record::Load(Row {
            store: store.into(),
            case: case.into(),
            tool: "wrk".into(),
            connections: 32,
            pinned: case.ends_with("pinned"),
            seconds: 10.0,
            requests: (rps * 10.0) as u64,
            rps,
            p50_us: p99_us / 2.0,
            p99_us,
            max_us: p99_us * 3.0,
            errors: 0,
            unexpected: 0,
            expected: "200".into(),
            rss_after_kib: Some(20 * 1024),
        })
    }

    #[test]
    fn rows_file_round_trip_and_targets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/rows.jsonl");
        let records = vec![
            row("embedded", "verify-valid", 45_000.0, 900.0),
            row("embedded", "health", 50_000.0, 800.0),
            row("embedded", "verify-badsig", 40_000.0, 950.0),
            row("embedded", "verify-valid-pinned", 30_000.0, 1_200.0),
            row("embedded", "verify-10k-tokens", 44_000.0, 900.0),
            row("embedded", "token-refresh", 1_500.0, 30_000.0),
            Record::Rss(RssRecord { store: "embedded".into(), when: "idle".into(), kib: 9_000 }),
            Record::RedisCommands(RedisRecord {
                store: "redis".into(),
                case: "verify-valid".into(),
                requests: 10_000,
                unexpected: 0,
                seconds: 0.4,
                commands: 0,
                by_command: BTreeMap::new(),
                idle_commands: 0,
            }),
            row("redis", "verify-valid", 45_000.0, 900.0),
        ];
        for r in &records {
            append(&path, r).unwrap();
        }
        assert_eq!(read(&path).unwrap(), records);

        let report = Report::new(records, BTreeMap::from([("git_commit".to_owned(), "abc".to_owned())]));
        let cases: Vec<&str> = report.cases.iter().map(|r| r.case.as_str()).collect();
        assert_eq!(cases[..2], ["health", "verify-valid"], "ordered as CASES, per store");
        let met = |store: &str, prefix: &str| {
            report.targets.iter().find(|t| t.store == store && t.target.starts_with(prefix)).unwrap().met
        };
        assert_eq!(met("embedded", "/verify valid ≥ 80 %"), Some(true), "90 %");
        assert_eq!(met("embedded", "/verify p99 ≤ 1 ms"), Some(false), "1.2 ms");
        assert_eq!(met("embedded", "invalid tokens"), Some(false), "89 % of valid");
        assert_eq!(met("embedded", "RSS"), Some(true));
        assert_eq!(met("embedded", "≥ 1,000 refresh"), Some(true));
        assert_eq!(met("redis", "0 Redis commands"), Some(true));
        assert_eq!(met("redis", "/verify valid ≥ 80 %"), None, "no /health row for redis");

        let md = report.markdown();
        assert!(
            md.contains(
                "| embedded | /verify valid token | wrk | 32 | 45000 | 0.450 ms | 0.900 ms | 0 | 0 | 20.0 MiB |"
            ),
            "{md}"
        );
        assert!(md.contains("| redis | 0 | 10000 | /verify valid token | 0 | – |"), "{md}");
        assert!(md.contains("| embedded | /verify p99 ≤ 1 ms, pinned 1+1 cores | p99 1.200 ms"), "{md}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["meta"]["git_commit"], "abc");
        assert_eq!(json["cases"][1]["case"], "verify-valid");
        assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    }

    #[test]
    fn reads_own_rss() {
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
