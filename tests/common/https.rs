//! A small HTTPS server on loopback for documents the authorization server fetches (Client ID
//! Metadata Documents): a throw-away CA and a `localhost` / `127.0.0.1` certificate made with the
//! `openssl` command, TLS by tokio-rustls, and a hand-written HTTP/1.1 answer per path whose
//! status, headers, body and delay the test sets. Every request is counted per path.
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// What one path answers.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Leave out `Content-Length` (the body then ends when the connection closes).
    pub no_length: bool,
}

impl Answer {
    /// 200 with a JSON body.
    pub fn json(body: &serde_json::Value) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap(),
            delay: Duration::ZERO,
            no_length: false,
        }
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    hits: HashMap<String, usize>,
}

/// The running server (stopped when the test's runtime ends).
pub struct DocServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    state: Arc<Mutex<State>>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`) and a certificate for `localhost` and `127.0.0.1` signed by it (`leaf.pem`,
/// key `leaf.key`), in `dir`.
fn make_certs(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mcp-authd test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

fn tls_config(dir: &Path) -> ServerConfig {
    let leaf = pem::parse(std::fs::read(dir.join("leaf.pem")).unwrap()).unwrap();
    let ca = pem::parse(std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let key = pem::parse(std::fs::read(dir.join("leaf.key")).unwrap()).unwrap();
    assert_eq!(key.tag(), "PRIVATE KEY", "openssl writes PKCS#8");
    let chain = vec![CertificateDer::from(leaf.contents().to_vec()), CertificateDer::from(ca.contents().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.contents().to_vec()));
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap()
}

impl DocServer {
    /// Starts serving (404 for every path until [`Self::set`]).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path());
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(dir.path())));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = serve(tls, state).await;
                    }
                });
            }
        });
        Self { port, dir, state }
    }

    /// The CA certificate file to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// What `path` answers from now on.
    pub fn set(&self, path: &str, answer: Answer) {
        self.state.lock().unwrap().answers.insert(path.to_owned(), answer);
    }

    /// Requests for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }
}

/// One request per connection: read the head, count it, answer, close.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = io.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let answer = {
        let mut s = state.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        s.answers.get(&path).cloned()
    };
    let answer = answer.unwrap_or(Answer {
        status: 404,
        headers: Vec::new(),
        body: b"not found".to_vec(),
        delay: Duration::ZERO,
        no_length: false,
    });
    tokio::time::sleep(answer.delay).await;
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", answer.status);
    for (k, v) in &answer.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !answer.no_length {
        out.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
    }
    out.push_str("\r\n");
    io.write_all(out.as_bytes()).await?;
    io.write_all(&answer.body).await?;
    io.shutdown().await
}
