//! Smoke test of `mcp-bench stdio-proxy`: a tiny run (1 session, 20 calls) against the debug
//! builds of mcp-stdio-proxy and its fixture server, on loopback. It checks that both modes ran
//! and reported sane figures; it asserts nothing about speed (that is what the bench is for).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_mcp-bench");

/// A binary of the mcp-stdio-proxy package, built into the same profile directory as this test
/// (`<target>/<profile>/deps/<test>` → `<target>/<profile>/<name>`).
fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(|deps| deps.parent()).context("test executable has no profile directory")?;
    let path = dir.join(name);
    ensure!(
        path.is_file(),
        "{} is missing: the smoke test runs the mcp-stdio-proxy package's binaries; \
         build them first with `cargo build --workspace` (or `cargo build -p mcp-stdio-proxy`)",
        path.display()
    );
    Ok(path)
}

#[test]
fn stdio_proxy_tiny_run_reports_both_modes() -> Result<()> {
    let fixture = sibling_binary("mcp-stdio-fixture")?;
    let proxy = sibling_binary("mcp-stdio-proxy")?;
    let dir = tempfile::tempdir()?;
    let json_path = dir.path().join("out/results.json");
    let output = Command::new(BENCH)
        .arg("stdio-proxy")
        .arg("--fixture")
        .arg(&fixture)
        .arg("--proxy")
        .arg(&proxy)
        .args(["--sessions", "1", "--calls", "20", "--warmup", "2", "--call-timeout-secs", "20"])
        .args(["--startup-timeout-secs", "60"])
        .arg("--json")
        .arg(&json_path)
        .output()
        .context("running mcp-bench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "mcp-bench failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("| server | mode | sessions | calls | calls/s | p50 | p99 |"), "no table:\n{stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path)?)?;
    assert_eq!(report["bench"], "stdio-proxy");
    let rows = report["rows"].as_array().context("rows")?;
    let mut modes: Vec<&str> = rows.iter().filter_map(|r| r["mode"].as_str()).collect();
    modes.sort_unstable();
    assert_eq!(modes, ["direct", "proxy"], "{report:#}");
    for row in rows {
        let mode = &row["mode"];
        assert_eq!(row["server"], "fixture echo", "{row:#}");
        assert_eq!(row["sessions"], 1, "{row:#}");
        assert_eq!(row["calls"], 20, "{mode}: every measured call is counted");
        assert!(row["calls_per_sec"].as_f64().context("calls_per_sec")? > 0.0, "{mode}: {row:#}");
        let p50 = row["p50_us"].as_u64().context("p50_us")?;
        let p99 = row["p99_us"].as_u64().context("p99_us")?;
        let max = row["max_us"].as_u64().context("max_us")?;
        assert!(p50 > 0 && p50 <= p99 && p99 <= max, "{mode}: p50 {p50} ≤ p99 {p99} ≤ max {max}");
        assert!(stdout.contains(&format!("| fixture echo | {} | 1 | 20 |", mode.as_str().unwrap_or(""))), "{stdout}");
    }
    Ok(())
}
