//! The OAuth side of mcp-authd as an MCP client and a browser drive it (real HTTP, no redirect
//! followed automatically, the login cookie carried by hand, as `tests/common/oauth.rs` does it):
//! register a public client (RFC 7591), authorize with PKCE S256 (RFC 7636) and `resource`
//! (RFC 8707), log a local user in through the `/login` form, redeem the code, refresh
//! (RFC 6749 §6, rotating). On top: the `/token` refresh and `/register` loads.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::load::{self, Outcome, Timing, Worker};
use super::results::{self, Common, Record, Row};

/// The redirect URI the bench's clients register (nothing listens there: the code is read from
/// the `Location` header, never followed).
pub const REDIRECT: &str = "http://127.0.0.1:33418/callback";

/// An HTTP client that does not follow redirects and keeps connections alive.
pub fn http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()?)
}

/// Access and refresh token of a token response.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// The JWT.
    pub access: String,
    /// The opaque, rotating refresh token.
    pub refresh: String,
}

fn tokens_of(body: &Value) -> Option<Tokens> {
    Some(Tokens {
        access: body["access_token"].as_str()?.to_owned(),
        refresh: body["refresh_token"].as_str()?.to_owned(),
    })
}

/// mcp-authd's OAuth endpoints, for one protected resource.
#[derive(Clone, Debug)]
pub struct Flow {
    http: reqwest::Client,
    base: Url,
    resource: String,
}

/// What an MCP SDK registers (a public native client with a loopback redirect).
pub fn public_client() -> Value {
    json!({
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "mcp-bench",
        "application_type": "native",
    })
}

/// A PKCE pair (RFC 7636 §4.1, §4.2 S256): 32 random bytes as the verifier.
pub fn pkce() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

impl Flow {
    /// The server at `base` (its issuer URL), tokens for `resource`.
    pub fn new(base: &str, resource: &str) -> Result<Flow> {
        Ok(Flow { http: http()?, base: Url::parse(base).context("--base")?, resource: resource.into() })
    }

    fn url(&self, path: &str) -> Result<Url> {
        Ok(self.base.join(path)?)
    }

    /// `POST /register` of a public client; its `client_id`.
    pub async fn register(&self) -> Result<String> {
        let res = self.http.post(self.url("/register")?).json(&public_client()).send().await?;
        let status = res.status();
        let body: Value = res.json().await?;
        ensure!(status == StatusCode::CREATED, "/register answered {status}: {body}");
        Ok(body["client_id"].as_str().context("no client_id")?.to_owned())
    }

    /// Authorize → login page → `POST /login` → code → `POST /token`; the tokens.
    pub async fn login(&self, client_id: &str, user: &str, password: &str) -> Result<Tokens> {
        let (verifier, challenge) = pkce();
        let mut authorize = self.url("/authorize")?;
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "bench")
            .append_pair("scope", "mcp")
            .append_pair("resource", &self.resource);
        let res = self.http.get(authorize).send().await?;
        ensure!(res.status() == StatusCode::FOUND, "/authorize answered {}", res.status());
        let cookie = res
            .headers()
            .get(SET_COOKIE)
            .context("/authorize set no login cookie")?
            .to_str()?
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        let login = self.base.join(res.headers().get(LOCATION).context("no Location")?.to_str()?)?;
        let session = query_param(&login, "session").with_context(|| format!("no session in {login}"))?;
        let page = self.http.get(login).header(COOKIE, &cookie).send().await?;
        ensure!(page.status() == StatusCode::OK, "the login page answered {}", page.status());
        let form = [("session", session.as_str()), ("username", user), ("password", password)];
        let res = self.http.post(self.url("/login")?).header(COOKIE, &cookie).form(&form).send().await?;
        ensure!(res.status() == StatusCode::SEE_OTHER, "POST /login answered {} (wrong password?)", res.status());
        let back = Url::parse(res.headers().get(LOCATION).context("no Location")?.to_str()?)?;
        let code = query_param(&back, "code").with_context(|| format!("no code in {back}"))?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
            ("client_id", client_id),
            ("resource", self.resource.as_str()),
        ];
        let (status, body) = self.token(&form).await?;
        ensure!(status == StatusCode::OK, "code exchange answered {status}: {body}");
        tokens_of(&body).with_context(|| format!("no access or refresh token in {body}"))
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<(StatusCode, Value)> {
        let res = self.http.post(self.url("/token")?).form(form).send().await?;
        let status = res.status();
        let text = res.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A refresh grant by a public client, as the MCP SDKs send it (with `resource`).
    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> Result<(StatusCode, Option<Tokens>)> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
            ("resource", self.resource.as_str()),
        ];
        let (status, body) = self.token(&form).await?;
        Ok((status, tokens_of(&body)))
    }
}

/// Options of `mcp-bench authd refresh`.
#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    /// mcp-authd's issuer URL (`http://127.0.0.1:PORT`).
    #[arg(long)]
    base: String,
    /// The protected resource the tokens are for.
    #[arg(long)]
    resource: String,
    /// A `[[local.users]]` user.
    #[arg(long)]
    user: String,
    /// Its password (a throwaway one made for the bench).
    #[arg(long)]
    password: String,
    /// Write the access tokens the grants returned here, one a line.
    #[arg(long, value_name = "PATH")]
    tokens_out: Option<PathBuf>,
    /// Make at least this many distinct access tokens for `--tokens-out`, with more (unmeasured)
    /// refresh grants after the measured period if needed; exactly this many are written.
    #[arg(long, default_value_t = 0)]
    tokens: usize,
}

/// One login's refresh chain: each grant's refresh token is the next grant's.
struct RefreshWorker {
    flow: Arc<Flow>,
    client_id: String,
    user: Arc<(String, String)>,
    refresh: String,
    access: Vec<String>,
}

impl RefreshWorker {
    async fn step(&mut self) -> Outcome {
        match self.flow.refresh(&self.client_id, &self.refresh).await {
            Ok((StatusCode::OK, Some(t))) => {
                self.refresh = t.refresh;
                self.access.push(t.access);
                Outcome::Expected
            }
            Ok(_) => {
                // The chain is broken (should not happen): log in again to go on.
                if let Ok(t) = self.flow.login(&self.client_id, &self.user.0, &self.user.1).await {
                    self.refresh = t.refresh;
                }
                Outcome::Unexpected
            }
            Err(_) => Outcome::Error,
        }
    }
}

impl Worker for RefreshWorker {
    async fn once(&mut self) -> Outcome {
        self.step().await
    }
}

/// `mcp-bench authd refresh`: one real login per connection, then refresh grants chained per
/// login, all connections at once.
pub async fn refresh(args: RefreshArgs) -> Result<()> {
    let flow = Arc::new(Flow::new(&args.base, &args.resource)?);
    let user = Arc::new((args.user.clone(), args.password.clone()));
    let n = args.timing.connections;
    let logins = (0..n).map(|_| {
        let (flow, user) = (flow.clone(), user.clone());
        async move {
            let client_id = flow.register().await?;
            let t = flow.login(&client_id, &user.0, &user.1).await?;
            Ok::<_, anyhow::Error>(RefreshWorker { flow, client_id, user, refresh: t.refresh, access: vec![t.access] })
        }
    });
    let workers = join_all(logins).await.into_iter().collect::<Result<Vec<_>>>().context("logging in")?;
    eprintln!("{:<8} {n} logins done (register, authorize, /login, code exchange)", args.common.store);
    let (measured, mut workers) = load::run(workers, args.timing.warmup(), args.timing.duration()).await?;
    let row = Row::from_measured(&args.common, n, "200", &measured);
    eprintln!("{}", row.summary());
    results::append(&args.common.rows, &Record::Load(row))?;

    if let Some(path) = &args.tokens_out {
        let mut seen = HashSet::new();
        let mut tokens: Vec<String> = Vec::new();
        let mut rounds = 0;
        loop {
            for w in &mut workers {
                for t in w.access.drain(..) {
                    if tokens.len() < args.tokens && seen.insert(t.clone()) {
                        tokens.push(t);
                    }
                }
            }
            if tokens.len() >= args.tokens {
                break;
            }
            rounds += 1;
            ensure!(rounds <= 100, "could not collect {} distinct access tokens", args.tokens);
            let per_worker = (args.tokens - tokens.len()).div_ceil(workers.len());
            let more = workers.into_iter().map(|mut w| async move {
                for _ in 0..per_worker {
                    if w.step().await != Outcome::Expected {
                        bail!("a refresh grant failed while collecting tokens");
                    }
                }
                Ok(w)
            });
            workers = join_all(more).await.into_iter().collect::<Result<Vec<_>>>()?;
        }
        std::fs::write(path, tokens.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("{:<8} wrote {} distinct access tokens to {}", args.common.store, tokens.len(), path.display());
    }
    Ok(())
}

/// Options of `mcp-bench authd register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    /// mcp-authd's issuer URL.
    #[arg(long)]
    base: String,
}

struct RegisterWorker {
    http: reqwest::Client,
    url: Url,
    body: Arc<Vec<u8>>,
}

impl Worker for RegisterWorker {
    async fn once(&mut self) -> Outcome {
        let sent = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body((*self.body).clone())
            .send()
            .await;
        match sent {
            Ok(res) => {
                let created = res.status() == StatusCode::CREATED;
                match res.bytes().await {
                    Ok(body) if created && body.windows(9).any(|w| w == b"client_id") => Outcome::Expected,
                    Ok(_) => Outcome::Unexpected,
                    Err(_) => Outcome::Error,
                }
            }
            Err(_) => Outcome::Error,
        }
    }
}

/// `mcp-bench authd register`: `POST /register` of a public client, back to back per connection.
pub async fn register(args: RegisterArgs) -> Result<()> {
    let http = http()?;
    let url = Url::parse(&args.base)?.join("/register")?;
    let body = Arc::new(serde_json::to_vec(&public_client())?);
    let workers = (0..args.timing.connections)
        .map(|_| RegisterWorker { http: http.clone(), url: url.clone(), body: body.clone() })
        .collect();
    let (measured, _) = load::run(workers, args.timing.warmup(), args.timing.duration()).await?;
    let row = Row::from_measured(&args.common, args.timing.connections, "201", &measured);
    eprintln!("{}", row.summary());
    results::append(&args.common.rows, &Record::Load(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_is_s256_of_the_verifier() {
        let (verifier, challenge) = pkce();
        assert_eq!(verifier.len(), 43, "32 bytes, base64url without padding (RFC 7636 §4.1: 43..128)");
        assert!(verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(challenge, URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())));
        assert_ne!(pkce().0, verifier);
        // RFC 7636 Appendix B.
        let b = URL_SAFE_NO_PAD.encode(Sha256::digest(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert_eq!(b, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn token_response_fields() {
        let t = tokens_of(&json!({"access_token": "a", "refresh_token": "r", "token_type": "Bearer"})).unwrap();
        assert_eq!((t.access.as_str(), t.refresh.as_str()), ("a", "r"));
        assert!(tokens_of(&json!({"access_token": "a"})).is_none());
    }
}
