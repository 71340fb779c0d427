//! Process and system figures for `requestTiming` and `healthProbe`, read from Linux procfs
//! (proc(5): `/proc/self/status`, `/proc/self/fd`, `/proc/loadavg`, `/proc/meminfo`). Where a
//! file is missing (not Linux, a locked-down container) the figure is `null`, not an error.

use std::time::Instant;

use serde_json::{Value, json};

/// The `Key:   value` line of a procfs file such as `/proc/self/status`, first number only.
fn field_number(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn load_average() -> Value {
    let Ok(text) = std::fs::read_to_string("/proc/loadavg") else {
        return Value::Null;
    };
    let n: Vec<f64> = text.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
    match n.as_slice() {
        [one, five, fifteen] => json!({ "1m": one, "5m": five, "15m": fifteen }),
        _ => Value::Null,
    }
}

/// CLOCK_MONOTONIC in seconds: comparable across processes on this host, unlike `Instant`.
pub fn monotonic_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// `healthProbe`: pid, uptime, RSS, threads, open fds, load, memory, version.
pub fn health(started: Instant) -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count());
    json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_seconds": started.elapsed().as_secs_f64(),
        "rss_kib": field_number(&status, "VmRSS"),
        "threads": field_number(&status, "Threads"),
        "open_fds": open_fds,
        "load_average": load_average(),
        "memory_total_kib": field_number(&meminfo, "MemTotal"),
        "memory_available_kib": field_number(&meminfo, "MemAvailable"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_procfs_fields() {
        let status = "Name:\tmcp-echo\nThreads:\t7\nVmRSS:\t   12345 kB\n";
        assert_eq!(field_number(status, "Threads"), Some(7));
        assert_eq!(field_number(status, "VmRSS"), Some(12345));
        assert_eq!(field_number(status, "VmSwap"), None);
    }

    #[test]
    fn reads_this_process() {
        let h = health(Instant::now());
        assert_eq!(h["pid"], std::process::id());
        assert!(h["threads"].as_u64().is_some_and(|t| t >= 1), "{h}");
        assert!(h["rss_kib"].as_u64().is_some_and(|r| r > 0), "{h}");
        assert!(h["open_fds"].as_u64().is_some_and(|n| n >= 3), "{h}");
        assert!(h["memory_total_kib"].as_u64().is_some_and(|m| m > 0), "{h}");
        assert!(monotonic_seconds() > 0.0);
    }
}
