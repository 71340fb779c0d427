//! GitHub and GitHub Enterprise login (OAuth Apps): the authorization code flow with PKCE
//! through the `oauth2` crate, then the REST API for the user, their e-mail and organisations.
//! Every URL is configurable, which is how GitHub Enterprise (and the tests' loopback stand-in)
//! are reached.

use async_trait::async_trait;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use super::{IdentityProvider, UpstreamError, listed};
use crate::config::GithubConfig;
use crate::store::User;

/// Largest API response read (bytes).
const MAX_RESPONSE: usize = 1 << 20;

/// The GitHub provider.
pub struct GithubProvider {
    cfg: GithubConfig,
    http: reqwest::Client,
    /// Whether the user's organisations are read (an org allow-list here or on a resource).
    fetch_orgs: bool,
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct GithubOrg {
    login: String,
}

/// Outbound HTTP failure, as the `oauth2` crate's client closure needs an error type.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error("response too large or malformed")]
    Response,
}

/// Runs one `oauth2` request on our reqwest client (size-bounded).
async fn send(http: &reqwest::Client, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HttpError> {
    let res = http.execute(reqwest::Request::try_from(req)?).await?;
    let mut builder = oauth2::http::Response::builder().status(res.status());
    for (name, value) in res.headers() {
        builder = builder.header(name, value);
    }
    let body = read_bounded(res).await.ok_or(HttpError::Response)?;
    builder.body(body).map_err(|_| HttpError::Response)
}

async fn read_bounded(mut res: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.ok()? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE {
            return None;
        }
    }
    Some(body)
}

impl GithubProvider {
    /// A provider for the configured OAuth App. With `resource_orgs` (some resource's policy
    /// names organisations) the user's organisations are read at every login.
    pub fn new(cfg: GithubConfig, http: reqwest::Client, resource_orgs: bool) -> Self {
        let fetch_orgs = resource_orgs || !cfg.allowed_orgs.is_empty();
        Self { cfg, http, fetch_orgs }
    }

    fn scopes(&self) -> Vec<String> {
        let mut scopes = self.cfg.scopes.clone();
        if self.fetch_orgs && !scopes.iter().any(|s| s == "read:org") {
            scopes.push("read:org".into());
        }
        scopes
    }

    async fn api<T: for<'de> Deserialize<'de>>(&self, token: &str, path: &str) -> Result<T, UpstreamError> {
        let url = format!("{}{path}", self.cfg.api_url.trim_end_matches('/'));
        let res = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| UpstreamError::Failed(format!("GitHub API {path} unreachable: {}", e.without_url())))?;
        let status = res.status();
        if !status.is_success() {
            return Err(UpstreamError::Failed(format!("GitHub API {path} answered {status}")));
        }
        let body = read_bounded(res)
            .await
            .ok_or_else(|| UpstreamError::Failed(format!("GitHub API {path}: response too large")))?;
        serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::Failed(format!("GitHub API {path}: unexpected response")))
    }
}

#[async_trait]
impl IdentityProvider for GithubProvider {
    fn id(&self) -> &'static str {
        "github"
    }

    fn label(&self) -> &str {
        "GitHub"
    }

    fn authorize_url(&self, callback: &str, state: &str, pkce_verifier: &str) -> String {
        let (Ok(auth), Ok(redirect)) =
            (AuthUrl::new(self.cfg.authorize_url.clone()), RedirectUrl::new(callback.to_owned()))
        else {
            return self.cfg.authorize_url.clone();
        };
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let state = state.to_owned();
        let (url, _) = BasicClient::new(ClientId::new(self.cfg.client_id.clone()))
            .set_auth_uri(auth)
            .set_redirect_uri(redirect)
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes().into_iter().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        url.into()
    }

    async fn exchange(&self, callback: &str, code: &str, pkce_verifier: &str) -> Result<User, UpstreamError> {
        let bad_config = |_| UpstreamError::Failed("GitHub URLs are misconfigured".into());
        let client = BasicClient::new(ClientId::new(self.cfg.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.cfg.client_secret.expose().to_owned()))
            // GitHub documents the secret as a form parameter.
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::new(self.cfg.token_url.clone()).map_err(bad_config)?)
            .set_redirect_uri(RedirectUrl::new(callback.to_owned()).map_err(bad_config)?);
        // The future owns its client handle (a borrowed one trips the async-trait Send bound).
        let http = |req| {
            let client = self.http.clone();
            async move { send(&client, req).await }
        };
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                oauth2::RequestTokenError::ServerResponse(r) => {
                    UpstreamError::Failed(format!("GitHub refused the code: {}", r.error()))
                }
                oauth2::RequestTokenError::Request(_) => {
                    UpstreamError::Failed("GitHub token endpoint unreachable".into())
                }
                _ => UpstreamError::Failed("GitHub token endpoint answered unexpectedly".into()),
            })?;
        let access = token.access_token().secret();
        let gh: GithubUser = self.api(access, "/user").await?;
        let mut user =
            User { id: gh.id.to_string(), name: gh.login, email: gh.email, provider: "github".into(), groups: vec![] };
        if user.email.is_none() {
            // Only with the user:email scope; a failure here is not fatal.
            if let Ok(emails) = self.api::<Vec<GithubEmail>>(access, "/user/emails").await {
                user.email = emails.into_iter().find(|e| e.primary && e.verified).map(|e| e.email);
            }
        }
        // Allowed when no list is set, or when on either list that is set.
        let (users, orgs) = (&self.cfg.allowed_users, &self.cfg.allowed_orgs);
        let mut allowed = users.is_empty() && orgs.is_empty();
        if !allowed && !users.is_empty() {
            allowed = listed(users, &user);
        }
        if self.fetch_orgs {
            let member_of: Vec<GithubOrg> = self.api(access, "/user/orgs?per_page=100").await?;
            user.groups = member_of.into_iter().map(|o| o.login).collect();
        }
        if !allowed && !orgs.is_empty() {
            allowed = user.groups.iter().any(|g| orgs.iter().any(|a| a.eq_ignore_ascii_case(g)));
        }
        if !allowed {
            return Err(UpstreamError::Denied(format!("GitHub user {} is not allowed", user.name)));
        }
        Ok(user)
    }
}
