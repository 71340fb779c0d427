//! The real `mcp-authd` binary on a free loopback port, with its own data directory and
//! configuration, its output captured to files, killed on drop.
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Password of the test user `alice` in every server's configuration.
pub const ALICE_PASSWORD: &str = "alice-password-9f3k";
/// The protected MCP server every test configuration declares.
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// A second protected resource, for audience tests.
pub const OTHER_RESOURCE: &str = "https://other.example.com/mcp";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET /health` answers 200 (plain HTTP/1.0 over a socket, no client library needed).
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") && &buf[9..12] == b"200"
}

/// A running mcp-authd.
pub struct Server {
    /// Its port.
    pub port: u16,
    /// The issuer: `http://127.0.0.1:<port>`, or the proxy's URL ([`Options::issuer`]).
    pub base: String,
    dir: TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
    starts: usize,
}

/// The `[[local.users]]` entry for alice, hashed once per test binary.
fn alice_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| mcp_authd::upstream::local::hash_password(ALICE_PASSWORD).unwrap())
}

/// Configuration pieces a test adds.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra TOML appended to the base configuration.
    pub toml: String,
    /// Whether to define the local user alice.
    pub no_local_users: bool,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The issuer, when the server is reached through a proxy (`http://127.0.0.1:<proxy port>`):
    /// [`Server::url`] and the OAuth helpers then go through the proxy.
    pub issuer: Option<String>,
    /// Leave out the two base `[[resources]]` ([`RESOURCE`], [`OTHER_RESOURCE`]): the test
    /// declares its own.
    pub own_resources: bool,

    /// The port to listen on (when a peer must know it beforehand); a free one when `None`.
    pub port: Option<u16>,
}

impl Server {
    /// Starts a server with the base configuration: alice, two resources, embedded store.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a server with extra configuration.
    pub fn start_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = opts.port.unwrap_or_else(free_port);
        let base = opts.issuer.clone().unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
        let mut toml = format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nissuer = \"{base}\"\ndata_dir = \"{}\"\n\n",
            dir.path().join("data").display()
        );
        if !opts.own_resources {
            toml.push_str(&format!(
                "[[resources]]\nurl = \"{RESOURCE}\"\n\n[[resources]]\nurl = \"{OTHER_RESOURCE}\"\nrequired_scopes = [\"mcp\"]\n\n"
            ));
        }
        if !opts.no_local_users {
            toml.push_str(&format!(
                "[[local.users]]\nusername = \"alice\"\npassword_hash = \"{}\"\nemail = \"alice@example.com\"\n\n",
                alice_hash()
            ));
        }
        toml.push_str(&opts.toml);
        if !opts.toml.contains("[rate_limit]") {
            // Tests make many requests from one address in a few seconds; tests/rate_limits.rs
            // checks the limits themselves.
            toml.push_str("\n[rate_limit]\nenabled = false\n");
        }
        std::fs::write(dir.path().join("mcp-authd.toml"), toml).unwrap();
        let mut server = Self { port, base, dir, child: None, env: opts.env, starts: 0 };
        server.spawn();
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("server-{}.log", self.starts))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-authd"));
        cmd.arg("--config")
            .arg(self.dir.path().join("mcp-authd.toml"))
            .arg("serve")
            .env("RUST_LOG", "trace")
            .env_remove("MCP_AUTHD_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawning mcp-authd"));
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mcp-authd exited ({status}) during start:\n{}", self.logs());
            }
            if health_ok(self.port) {
                return;
            }
            assert!(Instant::now() < deadline, "mcp-authd did not become healthy:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops with SIGTERM (graceful) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(35);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (a graceful stop) and returns at once.
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }

    /// Waits for the process to exit (after [`Server::terminate`]), at most `limit`; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mcp-authd did not exit within {limit:?}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills with SIGKILL (a crash: no shutdown, nothing flushed) and waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (if running) and starts again on the same port, configuration and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the server wrote so far, across restarts.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| std::fs::read_to_string(self.dir.path().join(format!("server-{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `mcp-authd token mint` against this server's configuration and keys.
    pub fn mint(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
            .arg("--config")
            .arg(self.dir.path().join("mcp-authd.toml"))
            .args(["token", "mint"])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "token mint failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Replaces `from` (which must occur) by `to` in the configuration file; the change takes
    /// effect at the next [`Server::restart`], as an operator's edit would.
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.dir.path().join("mcp-authd.toml");
        let toml = std::fs::read_to_string(&path).unwrap();
        assert!(toml.contains(from), "{from:?} is not in the configuration:\n{toml}");
        std::fs::write(&path, toml.replace(from, to)).unwrap();
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
