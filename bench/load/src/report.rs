//! Results of a run: one [`Row`] per (server, mode, session count), printed as markdown tables
//! and written as JSON ([`Report`]).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::procstat::CpuPerCall;

/// Latencies are recorded in microseconds, up to an hour, to 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// How the client reached the stdio server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Mode {
    /// rmcp's child-process transport: the client spawns the server and talks on its stdio.
    Direct,
    /// rmcp's Streamable HTTP client with its default reqwest client (which keeps no idle
    /// connections: every POST opens a new TCP connection) → mcp-stdio-proxy → the child's stdio.
    Proxy,
    /// As `proxy`, but with a reqwest client that keeps connections alive between calls.
    ProxyKeepalive,
}

impl Mode {
    /// The name used in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Proxy => "proxy",
            Mode::ProxyKeepalive => "proxy-keepalive",
        }
    }
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Which stdio server and tool.
    pub server: String,
    /// Direct or through the proxy.
    pub mode: Mode,
    /// Concurrent sessions (one child process each).
    pub sessions: usize,
    /// Measured calls in all (sessions × calls per session).
    pub calls: u64,
    /// Wall time to open all sessions at once (`initialize`, which starts a child process each).
    pub open_seconds: f64,
    /// Calls per session before measuring (not counted).
    pub warmup_per_session: u64,
    /// Wall time of the measured calls.
    pub seconds: f64,
    /// Measured calls divided by wall time.
    pub calls_per_sec: f64,
    /// Round-trip percentiles, microseconds.
    pub p50_us: u64,
    /// 90th percentile, microseconds.
    pub p90_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Slowest call, microseconds.
    pub max_us: u64,
    /// Mean, microseconds.
    pub mean_us: f64,
    /// CPU time per call by process role, from /proc.
    pub cpu_per_call: CpuPerCall,
}

impl Row {
    /// Builds a row from the merged histogram of all sessions.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        server: &str,
        mode: Mode,
        sessions: usize,
        warmup: u64,
        hist: &Histogram<u64>,
        wall: Duration,
        cpu_per_call: CpuPerCall,
    ) -> Row {
        let seconds = wall.as_secs_f64();
        Row {
            server: server.to_owned(),
            mode,
            sessions,
            calls: hist.len(),
            open_seconds: 0.0,
            warmup_per_session: warmup,
            seconds,
            calls_per_sec: if seconds > 0.0 { hist.len() as f64 / seconds } else { 0.0 },
            p50_us: hist.value_at_quantile(0.50),
            p90_us: hist.value_at_quantile(0.90),
            p99_us: hist.value_at_quantile(0.99),
            max_us: hist.max(),
            mean_us: hist.mean(),
            cpu_per_call,
        }
    }

    /// Records how long opening the sessions took.
    pub fn opened_in(mut self, wall: Duration) -> Row {
        self.open_seconds = wall.as_secs_f64();
        self
    }
}

/// The whole run, as written to `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Which scenario (`stdio-proxy`).
    pub bench: &'static str,
    /// CPUs the machine offers (client, proxy and servers share them).
    pub cpus: usize,
    /// Seconds since the Unix epoch when the run ended.
    pub finished_unix: u64,
    /// The measurements.
    pub rows: Vec<Row>,
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn cpu(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

impl Report {
    /// The main table (latency and throughput), then CPU per call, then the proxy's cost next to
    /// direct stdio for each server and session count.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| server | mode | sessions | calls | calls/s | p50 | p99 |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} | {} |\n",
                r.server,
                r.mode.name(),
                r.sessions,
                r.calls,
                r.calls_per_sec,
                ms(r.p50_us),
                ms(r.p99_us)
            ));
        }
        out.push_str(
            "\nCPU µs per call, from /proc (the processes share the machine's CPUs; – : under 0.2 s in all, \
             too coarse to divide):\n\n",
        );
        out.push_str("| server | mode | sessions | client | proxy | server(s) |\n");
        out.push_str("|---|---|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let c = &r.cpu_per_call;
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.server,
                r.mode.name(),
                r.sessions,
                cpu(c.client_us),
                cpu(c.proxy_us),
                cpu(c.servers_us)
            ));
        }
        let overhead: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.mode != Mode::Direct)
            .filter_map(|p| {
                let d = self
                    .rows
                    .iter()
                    .find(|d| d.mode == Mode::Direct && d.server == p.server && d.sessions == p.sessions)?;
                Some(format!(
                    "| {} | {} | {} | {:+.3} ms | {:+.3} ms | {:.2}× |\n",
                    p.server,
                    p.mode.name(),
                    p.sessions,
                    (p.p50_us as f64 - d.p50_us as f64) / 1000.0,
                    (p.p99_us as f64 - d.p99_us as f64) / 1000.0,
                    if p.calls_per_sec > 0.0 { d.calls_per_sec / p.calls_per_sec } else { f64::NAN },
                ))
            })
            .collect();
        if !overhead.is_empty() {
            out.push_str("\nThrough the proxy vs direct stdio:\n\n");
            out.push_str("| server | mode | sessions | Δp50 | Δp99 | direct calls/s ÷ proxy calls/s |\n");
            out.push_str("|---|---|---:|---:|---:|---:|\n");
            out.extend(overhead);
        }
        out
    }

    /// Writes the JSON (pretty, with a trailing newline), creating the parent directory.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_table() {
        let mut h = histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let none = CpuPerCall { client_us: None, proxy_us: None, servers_us: None };
        let direct = Row::new("s", Mode::Direct, 1, 0, &h, Duration::from_secs(1), none);
        assert_eq!(direct.calls, 1000);
        assert_eq!(direct.p50_us, 500);
        assert_eq!(direct.p99_us, 990);
        assert!((direct.calls_per_sec - 1000.0).abs() < 1e-9);
        let proxy = Row::new("s", Mode::Proxy, 1, 0, &h, Duration::from_secs(2), none);
        let report = Report { bench: "t", cpus: 2, finished_unix: 0, rows: vec![direct, proxy] };
        let md = report.markdown();
        assert!(md.contains("| s | direct | 1 | 1000 | 1000 | 0.500 ms | 0.990 ms |"), "{md}");
        assert!(md.contains("| s | proxy | 1 | +0.000 ms | +0.000 ms | 2.00× |"), "{md}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][1]["mode"], "proxy");
        assert_eq!(json["rows"][0]["cpu_per_call"]["proxy_us"], serde_json::Value::Null);
    }
}
