//! A throw-away `redis-server` per test: its own loopback port, its own temporary directory,
//! killed on drop. Never share one between tests that write to it.
//!
//! `redis-server` must be on `PATH` (Debian: `apt-get install redis-server`); a test that needs
//! one panics when it is missing rather than being skipped.
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server gets to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server` bound to 127.0.0.1.
pub struct RedisServer {
    /// The TCP port clients connect to (the TLS port for [`RedisServer::start_tls`]).
    pub port: u16,
    /// `redis://127.0.0.1:<port>` (or `rediss://` for TLS), without credentials.
    pub url: String,
    child: Option<Child>,
    dir: TempDir,
    args: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts a server with persistence off (`--save "" --appendonly no`).
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments appended to the defaults (later ones
    /// win), e.g. `["--requirepass", "pw"]` or `["--appendonly", "yes"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::launch(args, false)
    }

    /// Starts a server that speaks only TLS on [`RedisServer::port`] (`--port 0 --tls-port`),
    /// with the server certificate and key given (PEM files); clients are not asked for a
    /// certificate.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path, args: &[&str]) -> Self {
        let mut all: Vec<String> = vec![
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
            "--tls-ca-cert-file".into(),
            ca.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        Self::launch(&refs, true)
    }

    fn launch(args: &[&str], tls: bool) -> Self {
        let dir = tempfile::Builder::new().prefix("redis-test-").tempdir().expect("temp dir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // Another test may grab the port between our probe and redis' bind: try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn_and_wait(dir.path(), port, tls, &args) {
                Ok(child) => {
                    let scheme = if tls { "rediss" } else { "redis" };
                    return Self {
                        port,
                        url: format!("{scheme}://127.0.0.1:{port}"),
                        child: Some(child),
                        dir,
                        args,
                        tls,
                    };
                }
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start; its log:\n{last_log}");
    }

    /// The server's working directory (AOF / RDB files, `redis.log`, `redis.sock`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL), keeping its directory: simulates an outage or a crash.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if running and starts it again on the same port, with the same
    /// arguments and directory (so an AOF, if enabled, is replayed).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn_and_wait(self.dir.path(), self.port, self.tls, &self.args) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                // The old listening socket may linger for a moment.
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(log) => panic!("redis-server did not restart on port {}; its log:\n{log}", self.port),
            }
        }
    }
}

/// Spawns redis-server in `dir` and waits until it answers PING on its unix socket. On
/// failure, returns its output and log.
fn spawn_and_wait(dir: &Path, port: u16, tls: bool, args: &[String]) -> Result<Child, String> {
    let socket = dir.join("redis.sock");
    let log = dir.join("redis.log");
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let (plain_port, tls_port) = if tls { (0, port) } else { (port, 0) };
    let mut cmd = Command::new("redis-server");
    cmd.current_dir(dir)
        .args(["--bind", "127.0.0.1", "--port", &plain_port.to_string()])
        .args(["--tls-port", &tls_port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir", &dir.display().to_string()])
        .args(["--unixsocket", &socket.display().to_string(), "--unixsocketperm", "700"])
        .args(["--logfile", &log.display().to_string()])
        .args(["--daemonize", "no"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`redis-server` is not installed (not found on PATH); the Redis tests need it: \
             apt-get install redis-server"
        ),
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            return Err(format!("redis-server exited with {status}\n{stderr}{}", read_log()));
        }
        if ping_unix(&socket) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer to PING within {START_TIMEOUT:?}\n{}", read_log()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

/// Whether a server answers `PING` on `socket` (`-NOAUTH` counts: it is up, just locked).
fn ping_unix(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    if BufReader::new(stream).read_line(&mut line).is_err() {
        return false;
    }
    line.starts_with("+PONG") || line.starts_with("-NOAUTH")
}
