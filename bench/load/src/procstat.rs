//! CPU time of the processes taking part in a run, from Linux `/proc/<pid>/stat` (proc(5):
//! `utime` and `stime`, summed over all threads, in clock ticks of `USER_HZ`), so a run can say
//! how much CPU the client, the proxy and the stdio servers each spent per call.
//!
//! Where `/proc` cannot be read (not Linux, a process already gone), the figure is `None` and the
//! report leaves it out; the latency figures do not depend on it.

use std::path::Path;

/// Microseconds per clock tick: `USER_HZ` is 100 in the Linux `/proc` ABI on every architecture.
const TICK_US: u64 = 10_000;
/// Less CPU than this (20 ticks) in a whole run is too coarse to divide into a per-call figure
/// (over 5 % off): reported as unknown instead.
const MIN_TOTAL_US: u64 = 20 * TICK_US;

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces and
/// parentheses, hence the split at the last `)`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time (user + system) the process has used so far, in microseconds.
pub fn cpu_us(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // proc(5): field 3 is `state` (index 0 here); `utime` is field 14, `stime` field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * TICK_US)
}

/// Process ids whose parent is `parent` (the stdio servers a proxy started).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(parent))
        .collect()
}

/// The processes of one run, grouped by role.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    /// The load client (this process).
    pub client: Vec<u32>,
    /// mcp-stdio-proxy (empty in direct mode).
    pub proxy: Vec<u32>,
    /// The stdio MCP servers.
    pub servers: Vec<u32>,
}

/// CPU microseconds used so far by each role (`None` if any of its processes cannot be read).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    client: Option<u64>,
    proxy: Option<u64>,
    servers: Option<u64>,
}

fn sum(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|p| cpu_us(*p)).sum()
}

impl Roles {
    /// Reads the CPU time of every process now.
    pub fn sample(&self) -> Sample {
        Sample { client: sum(&self.client), proxy: sum(&self.proxy), servers: sum(&self.servers) }
    }
}

/// CPU microseconds per measured call, by role, between two samples.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CpuPerCall {
    /// The load client: rmcp's client, its transport, and (over HTTP) reqwest and the kernel's
    /// TCP work charged to it.
    pub client_us: Option<f64>,
    /// The proxy (absent in direct mode).
    pub proxy_us: Option<f64>,
    /// All stdio servers together.
    pub servers_us: Option<f64>,
}

impl CpuPerCall {
    /// The difference `after - before`, divided by `calls`; `None` where it cannot be read or is
    /// too small to be meaningful at tick resolution.
    pub fn between(before: Sample, after: Sample, calls: u64, has_proxy: bool) -> CpuPerCall {
        let per = |b: Option<u64>, a: Option<u64>| {
            let used = a?.saturating_sub(b?);
            (used >= MIN_TOTAL_US).then(|| used as f64 / calls.max(1) as f64)
        };
        CpuPerCall {
            client_us: per(before.client, after.client),
            proxy_us: if has_proxy { per(before.proxy, after.proxy) } else { None },
            servers_us: per(before.servers, after.servers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        // Burn a little CPU so the figure is certainly readable (it may still round to 0 ticks).
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_us(std::process::id()).is_some(), "/proc/self/stat should be readable on Linux");
    }

    #[test]
    fn per_call_needs_enough_ticks() {
        let at = |us| Sample { client: Some(us), proxy: None, servers: Some(0) };
        let cpu = CpuPerCall::between(at(0), at(MIN_TOTAL_US * 2), 100, true);
        assert_eq!(cpu.client_us, Some((MIN_TOTAL_US * 2) as f64 / 100.0));
        assert_eq!(cpu.proxy_us, None, "unreadable");
        assert_eq!(cpu.servers_us, None, "no CPU at all is below the resolution");
        assert_eq!(CpuPerCall::between(at(0), at(TICK_US), 1, false).client_us, None, "one tick is too coarse");
    }

    #[test]
    fn finds_a_child() -> anyhow::Result<()> {
        let mut child = std::process::Command::new("sleep").arg("5").spawn()?;
        let found = children_of(std::process::id()).contains(&child.id());
        child.kill()?;
        child.wait()?;
        assert!(found, "the spawned sleep should be listed as our child");
        Ok(())
    }
}
