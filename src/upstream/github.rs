//! GitHub and GitHub Enterprise login (OAuth Apps): the authorization code flow with PKCE
//! through the `oauth2` crate, then the REST API for the user, their e-mail, organisations and
//! teams.
//! Every URL is configurable, which is how GitHub Enterprise (and the tests' loopback stand-in)
//! are reached.

use async_trait::async_trait;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use super::{IdentityProvider, UpstreamError, UpstreamLogin, listed, read_bounded, send};
use crate::config::GithubConfig;
use crate::store::User;

/// The GitHub provider.
pub struct GithubProvider {
    cfg: GithubConfig,
    http: reqwest::Client,
    /// Whether the user's organisations are read (an org allow-list here or on a resource).
    fetch_orgs: bool,
    /// Whether the user's teams are read (a team allow-list here, or `org/team` on a resource).
    fetch_teams: bool,
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

/// An entry of `GET /user/teams`.
#[derive(Deserialize)]
struct GithubTeam {
    slug: String,
    organization: GithubOrg,
}

impl GithubProvider {
    /// A provider for the configured OAuth App. `resource_groups` are the groups some
    /// resource's policy names: with any, the user's organisations are read at every login, and
    /// with an `org/team` among them, the user's teams too.
    pub fn new(cfg: GithubConfig, http: reqwest::Client, resource_groups: &[String]) -> Self {
        let fetch_teams = !cfg.allowed_teams.is_empty() || resource_groups.iter().any(|g| g.contains('/'));
        let fetch_orgs = !resource_groups.is_empty() || !cfg.allowed_orgs.is_empty();
        Self { cfg, http, fetch_orgs, fetch_teams }
    }

    fn scopes(&self) -> Vec<String> {
        let mut scopes = self.cfg.scopes.clone();
        if (self.fetch_orgs || self.fetch_teams) && !scopes.iter().any(|s| s == "read:org") {
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
    fn id(&self) -> &str {
        "github"
    }

    fn label(&self) -> &str {
        "GitHub"
    }

    async fn authorize_url(&self, login: &UpstreamLogin<'_>) -> Result<String, UpstreamError> {
        let (Ok(auth), Ok(redirect)) =
            (AuthUrl::new(self.cfg.authorize_url.clone()), RedirectUrl::new(login.callback.to_owned()))
        else {
            return Err(UpstreamError::Failed("GitHub URLs are misconfigured".into()));
        };
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(login.pkce_verifier.to_owned()));
        let state = login.state.to_owned();
        let (url, _) = BasicClient::new(ClientId::new(self.cfg.client_id.clone()))
            .set_auth_uri(auth)
            .set_redirect_uri(redirect)
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes().into_iter().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        Ok(url.into())
    }

    async fn exchange(&self, login: &UpstreamLogin<'_>, code: &str, _iss: Option<&str>) -> Result<User, UpstreamError> {
        let (callback, pkce_verifier) = (login.callback, login.pkce_verifier);
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
            async move { send(&client, req, None).await }
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
        if self.fetch_orgs {
            let member_of: Vec<GithubOrg> = self.api(access, "/user/orgs?per_page=100").await?;
            user.groups = member_of.into_iter().map(|o| o.login).collect();
        }
        if self.fetch_teams {
            // Teams are groups too, as `org/team-slug` (no organisation name has a slash).
            let teams: Vec<GithubTeam> = self.api(access, "/user/teams?per_page=100").await?;
            user.groups.extend(teams.into_iter().map(|t| format!("{}/{}", t.organization.login, t.slug)));
        }
        if !self.still_allowed(&user) {
            return Err(UpstreamError::Denied(format!("GitHub user {} is not allowed", user.name)));
        }
        Ok(user)
    }

    /// Allowed when no list is set, or when on any list that is set. At a refresh the
    /// organisations and teams are those read at login: leaving one on GitHub takes effect at the
    /// next login, removing one from `allowed_orgs` or `allowed_teams` at the next refresh.
    fn still_allowed(&self, user: &User) -> bool {
        let (users, orgs, teams) = (&self.cfg.allowed_users, &self.cfg.allowed_orgs, &self.cfg.allowed_teams);
        if users.is_empty() && orgs.is_empty() && teams.is_empty() {
            return true;
        }
        let member = |list: &[String]| user.groups.iter().any(|g| list.iter().any(|a| a.eq_ignore_ascii_case(g)));
        (!users.is_empty() && listed(users, user)) || member(orgs) || member(teams)
    }
}
