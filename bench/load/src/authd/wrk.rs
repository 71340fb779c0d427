//! `mcp-bench authd wrk`: reads what `wrk --latency` printed (standard input) and appends it as a
//! row, so wrk's figures and mcp-bench's land in one table.

use std::io::Read;

use anyhow::{Context, Result, bail};

use super::results::{self, Common, Record, Row};

/// What wrk reports about one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Connections (`N threads and M connections`).
    pub connections: usize,
    /// Completed requests.
    pub requests: u64,
    /// Length of the run, seconds.
    pub seconds: f64,
    /// `Requests/sec`.
    pub rps: f64,
    /// Latency distribution, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// Thread stats `Max`, microseconds.
    pub max_us: f64,
    /// `Socket errors`: connect + read + write + timeout.
    pub socket_errors: u64,
    /// `Non-2xx or 3xx responses`.
    pub non_2xx: u64,
}

/// A wrk duration (`480.00us`, `1.20ms`, `2.00s`, `1.00m`, `1.00h`) in microseconds.
fn micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(n * factor)
}

/// Parses `wrk --latency` output.
pub fn parse(text: &str) -> Result<Summary> {
    let mut s = Summary {
        connections: 0,
        requests: 0,
        seconds: 0.0,
        rps: f64::NAN,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        max_us: f64::NAN,
        socket_errors: 0,
        non_2xx: 0,
    };
    let mut seen_requests = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [_, "threads", "and", n, "connections"] => s.connections = n.parse()?,
            ["Latency", _avg, _stdev, max, ..] => s.max_us = micros(max).context("Latency Max")?,
            ["50%", v] => s.p50_us = micros(v).context("50%")?,
            ["99%", v] => s.p99_us = micros(v).context("99%")?,
            [n, "requests", "in", t, ..] => {
                s.requests = n.parse()?;
                s.seconds = micros(t.trim_end_matches(',')).context("run length")? / 1e6;
                seen_requests = true;
            }
            ["Socket", "errors:", rest @ ..] => {
                s.socket_errors = rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => s.non_2xx = n.parse()?,
            ["Requests/sec:", v] => s.rps = v.parse()?,
            _ => {}
        }
    }
    if !seen_requests || s.rps.is_nan() || s.p99_us.is_nan() {
        bail!("not the output of `wrk --latency`:\n{text}");
    }
    Ok(s)
}

/// Options of `mcp-bench authd wrk`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// The HTTP status the case expects; wrk only tells 2xx/3xx from the rest, so 2xx means
    /// "all 2xx/3xx" and anything else "none 2xx/3xx".
    #[arg(long)]
    expect: u16,
}

/// `mcp-bench authd wrk`: wrk's output on standard input → one row.
pub fn record(args: Args) -> Result<()> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let s = parse(&text)?;
    let unexpected = if (200..400).contains(&args.expect) { s.non_2xx } else { s.requests - s.non_2xx.min(s.requests) };
    let row = Row {
        store: args.common.store.clone(),
        case: args.common.case.clone(),
        tool: "wrk".into(),
        connections: s.connections,
        pinned: args.common.pinned,
        seconds: s.seconds,
        requests: s.requests,
        rps: s.rps,
        p50_us: s.p50_us,
        p99_us: s.p99_us,
        max_us: s.max_us,
        errors: s.socket_errors,
        unexpected,
        expected: args.expect.to_string(),
        rss_after_kib: args.common.pid.and_then(results::rss_kib),
    };
    eprintln!("{}", row.summary());
    results::append(&args.common.rows, &Record::Load(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 10s test @ http://127.0.0.1:40000/verify
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.34us  300.12us  10.23ms   90.12%
    Req/Sec    31.23k     2.12k   35.00k    70.00%
  Latency Distribution
     50%  480.00us
     75%  600.00us
     90%  700.00us
     99%    1.20ms
  623456 requests in 10.00s, 80.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 17
Requests/sec:  62345.60
Transfer/sec:      8.00MB
";

    #[test]
    fn parses_wrk_latency_output() {
        let s = parse(OUT).unwrap();
        assert_eq!(
            s,
            Summary {
                connections: 32,
                requests: 623456,
                seconds: 10.0,
                rps: 62345.6,
                p50_us: 480.0,
                p99_us: 1200.0,
                max_us: 10230.0,
                socket_errors: 3,
                non_2xx: 17,
            }
        );
        let clean = OUT.replace("  Socket errors: connect 0, read 2, write 0, timeout 1\n", "");
        assert_eq!(parse(&clean).unwrap().socket_errors, 0, "wrk omits the line when there are none");
        assert!(parse("wrk: connection refused").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(micros("480.00us"), Some(480.0));
        assert_eq!(micros("1.50s"), Some(1.5e6));
        assert_eq!(micros("2.00m"), Some(120e6));
        assert_eq!(micros("3.00x"), None);
    }
}
