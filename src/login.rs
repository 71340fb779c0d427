//! `mcp-authd login`: a token from the terminal through the device flow (RFC 8628), for operators
//! who need one for curl. Discovers the endpoints (RFC 8414), registers a public device-code
//! client unless one is given (RFC 7591), prints the code and the URL to open on stderr, polls,
//! and prints the access token (or the whole token response) on stdout. Nothing is stored.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What to log in to.
pub struct Login {
    /// The authorization server's issuer URL.
    pub issuer: String,
    /// RFC 8707 resource (the MCP server's URL); the server's only one when absent.
    pub resource: Option<String>,
    /// Requested scope.
    pub scope: Option<String>,
    /// An already registered device-code client; one is registered when absent.
    pub client_id: Option<String>,
    /// Print the whole token response (JSON) instead of the access token.
    pub json: bool,
}

async fn json_of(res: reqwest::Response, what: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let status = res.status();
    let body: Value = res.json().await.with_context(|| format!("{what}: the answer is not JSON"))?;
    Ok((status, body))
}

/// Runs the device flow.
pub async fn run(login: Login) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcp-authd-login/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let issuer = login.issuer.trim_end_matches('/');
    let url = format!("{issuer}/.well-known/oauth-authorization-server");
    let (status, meta) = json_of(http.get(&url).send().await.with_context(|| format!("GET {url}"))?, &url).await?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    let endpoint = |name: &str| meta[name].as_str().map(str::to_owned).with_context(|| format!("{url} has no {name}"));
    let device_endpoint = endpoint("device_authorization_endpoint")?;
    let token_endpoint = endpoint("token_endpoint")?;
    let client_id = match login.client_id {
        Some(id) => id,
        None => {
            let register = endpoint("registration_endpoint")?;
            let body = serde_json::json!({
                "client_name": "mcp-authd login (CLI)",
                "grant_types": [DEVICE_GRANT],
                "token_endpoint_auth_method": "none",
            });
            let (status, client) =
                json_of(http.post(&register).json(&body).send().await.context("registering")?, "registration").await?;
            anyhow::ensure!(status.is_success(), "registration refused ({status}): {client}");
            client["client_id"].as_str().context("registration answered no client_id")?.to_owned()
        }
    };
    let mut form = vec![("client_id", client_id.clone())];
    form.extend(login.resource.map(|r| ("resource", r)));
    form.extend(login.scope.map(|s| ("scope", s)));
    let (status, device) = json_of(
        http.post(&device_endpoint).form(&form).send().await.context("device authorization request")?,
        "device authorization",
    )
    .await?;
    anyhow::ensure!(status.is_success(), "device authorization refused ({status}): {device}");
    let code = device["device_code"].as_str().context("no device_code")?.to_owned();
    let open = device["verification_uri_complete"].as_str().or(device["verification_uri"].as_str()).unwrap_or("");
    eprintln!("To sign in, open {open}");
    eprintln!("and check that it shows the code {}", device["user_code"].as_str().unwrap_or(""));
    let mut interval = device["interval"].as_u64().unwrap_or(5).max(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(device["expires_in"].as_u64().unwrap_or(600));
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if std::time::Instant::now() > deadline {
            bail!("the code expired before it was approved");
        }
        let poll = [("grant_type", DEVICE_GRANT), ("device_code", code.as_str()), ("client_id", client_id.as_str())];
        let (status, answer) =
            json_of(http.post(&token_endpoint).form(&poll).send().await.context("polling")?, "token").await?;
        if status.is_success() {
            if login.json {
                println!("{answer}");
            } else {
                println!("{}", answer["access_token"].as_str().context("no access_token")?);
            }
            return Ok(());
        }
        match answer["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += 5,
            Some("access_denied") => bail!("the request was denied"),
            Some("expired_token") => bail!("the code expired before it was approved"),
            _ => bail!("the token endpoint refused ({status}): {answer}"),
        }
    }
}
