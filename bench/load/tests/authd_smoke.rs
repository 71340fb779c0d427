//! Smoke test of `mcp-bench authd …` against the debug build of the real mcp-authd on loopback:
//! a tiny run of each load (ext_authz gRPC Check, refresh grants after real logins, /register),
//! a wrk output and an RSS reading recorded as rows, then the report. It checks that every step
//! ran, got only expected answers and wrote its figures; it asserts nothing about speed.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_mcp-bench");
const RESOURCE: &str = "https://mcp.example.com/mcp";
const PASSWORD: &str = "smoke-password-4j2k";

/// The mcp-authd binary of the same profile (`<target>/<profile>/deps/<test>` → `<target>/<profile>/mcp-authd`).
fn mcp_authd() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(|deps| deps.parent()).context("test executable has no profile directory")?;
    let path = dir.join("mcp-authd");
    ensure!(
        path.is_file(),
        "{} is missing: this smoke test runs the real server; build it first with `cargo build --workspace` \
         (or `cargo build -p mcp-authd`)",
        path.display()
    );
    Ok(path)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// mcp-authd, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn healthy(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 12];
    s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").is_ok()
        && s.read_exact(&mut buf).is_ok()
        && &buf[9..12] == b"200"
}

fn bench(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(BENCH)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running mcp-bench")?;
    let mut input = child.stdin.take().context("stdin")?;
    input.write_all(stdin.unwrap_or_default().as_bytes())?;
    drop(input);
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "mcp-bench {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(stdout)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn authd_tiny_run_reports_every_step() -> Result<()> {
    let authd = mcp_authd()?;
    let dir = tempfile::tempdir()?;
    let (port, gport) = (free_port()?, free_port()?);
    let mut hash = Command::new(&authd).arg("hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    hash.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
    let hash = String::from_utf8(hash.wait_with_output()?.stdout)?.trim().to_owned();
    let config = dir.path().join("mcp-authd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nissuer = \"http://127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\n\
             [verify]\ngrpc_bind = \"127.0.0.1:{gport}\"\n\n[rate_limit]\nenabled = false\n\n[[resources]]\nurl = \"{RESOURCE}\"\n\n\
             [[local.users]]\nusername = \"smoke\"\npassword_hash = \"{hash}\"\n",
            path(&dir.path().join("data"))
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let server = Server(
        Command::new(&authd)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(port) {
        ensure!(Instant::now() < deadline, "mcp-authd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mint = Command::new(&authd)
        .arg("--config")
        .arg(&config)
        .args(["token", "mint", "--sub", "u1", "--aud", RESOURCE])
        .env("RUST_LOG", "warn")
        .output()?;
    ensure!(mint.status.success(), "token mint failed");
    let token_file = dir.path().join("valid.txt");
    std::fs::write(&token_file, &mint.stdout)?;

    let rows = dir.path().join("rows.jsonl");
    let pid = server.0.id().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let common = |case: &'static str| -> Vec<String> {
        ["--store", "embedded", "--case", case, "--rows", path(&rows), "--pid", &pid].map(str::to_owned).to_vec()
    };
    let short = ["--connections", "2", "--warmup-secs", "0.2", "--duration-secs", "0.5"];

    let mut args = vec!["authd", "grpc"];
    let c = common("grpc-check-valid");
    args.extend(strs(&c));
    let grpc_addr = format!("127.0.0.1:{gport}");
    args.extend(["--addr", &grpc_addr, "--resource", RESOURCE, "--token-file", path(&token_file)]);
    args.extend(short);
    bench(&args, None)?;

    let tokens = dir.path().join("tokens.txt");
    let mut args = vec!["authd", "refresh"];
    let c = common("token-refresh");
    args.extend(strs(&c));
    args.extend(["--base", &base, "--resource", RESOURCE, "--user", "smoke", "--password", PASSWORD]);
    args.extend(["--tokens-out", path(&tokens), "--tokens", "300"]);
    args.extend(short);
    bench(&args, None)?;
    let lines: Vec<String> = std::fs::read_to_string(&tokens)?.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 300, "exactly --tokens tokens");
    assert_eq!(lines.iter().collect::<std::collections::HashSet<_>>().len(), 300, "all distinct");
    assert!(lines.iter().all(|t| t.split('.').count() == 3), "JWTs");

    let mut args = vec!["authd", "register"];
    let c = common("register");
    args.extend(strs(&c));
    args.extend(["--base", &base]);
    args.extend(short);
    bench(&args, None)?;

    let wrk_out = "  2 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   \
                   512.34us  300.12us  10.23ms   90.12%\n     50%  480.00us\n     99%    1.20ms\n  \
                   1000 requests in 10.00s, 80.00MB read\nRequests/sec:    100.00\n";
    let mut args = vec!["authd", "wrk", "--expect", "401"];
    let c = common("verify-none");
    args.extend(strs(&c));
    bench(&args, Some(wrk_out))?;
    bench(&["authd", "rss", "--store", "embedded", "--pid", &pid, "--rows", path(&rows)], None)?;

    let json = dir.path().join("results.json");
    let table = bench(&["authd", "report", "--rows", path(&rows), "--json", path(&json), "--meta", "k=v"], None)?;
    assert!(table.contains("| store | case | tool | conns | req/s | p50 | p99 | errors | unexpected | RSS after |"));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(report["meta"]["k"], "v");
    let cases = report["cases"].as_array().context("cases")?;
    let ids: Vec<&str> = cases.iter().filter_map(|c| c["case"].as_str()).collect();
    assert_eq!(ids, ["verify-none", "grpc-check-valid", "token-refresh", "register"], "{report:#}");
    for c in cases {
        assert!(c["requests"].as_u64().unwrap_or(0) > 0, "{c:#}");
        assert_eq!(c["errors"], 0, "{c:#}");
        assert_eq!(c["unexpected"], if c["case"] == "verify-none" { 1000 } else { 0 }, "{c:#}");
        assert!(c["rss_after_kib"].as_u64().unwrap_or(0) > 0, "{c:#}");
    }
    assert!(report["rss"][0]["kib"].as_u64().unwrap_or(0) > 0);
    assert!(report["targets"].as_array().is_some_and(|t| !t.is_empty()));
    Ok(())
}
