//! OpenID Connect providers (Google, Keycloak, Entra ID, Auth0, Dex, ...) by issuer URL, through
//! the `openidconnect` crate: Discovery 1.0 (§4, the issuer must match), the authorization code
//! flow with PKCE S256, `state` and `nonce` (Core §3.1.2.1), and ID token validation (Core
//! §3.1.3.7: signature by the provider's JWKS, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`,
//! `at_hash`). Claims become our [`User`]: `<id>:<sub>` (namespaced, so two providers cannot
//! claim each other's users), `preferred_username` / `name`, `email` when verified, groups from
//! a configurable claim. Then the provider's allow-lists (e-mail, e-mail domain, group).
//!
//! The discovery document is fetched at the first login (not at start-up: a provider that is
//! down must not keep the server from starting) and kept for an hour; when a refresh fails the
//! previous document stays in use. Key rollover: an ID token signed with a key id we do not
//! know makes us fetch the JWKS again, at most once per `jwks_refresh_secs`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IdToken, IdTokenClaims, IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, SignatureVerificationError, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};

use super::{IdentityProvider, UpstreamError, UpstreamLogin, send};
use crate::config::OidcConfig;
use crate::store::User;

/// How long a discovery document is used before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Clock skew tolerated on `iat`, and the oldest `iat` accepted (the token was just issued).
const IAT_SKEW: i64 = 300;
const IAT_MAX_AGE: i64 = 600;
/// Most groups kept from the groups claim (they travel in every access token).
const MAX_GROUPS: usize = 200;

/// Claims beyond the standard ones (the groups claim is configurable), kept as JSON.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type IdTokenWithExtras =
    IdToken<ExtraClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// What the provider said about the user, before it becomes a [`User`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub sub: String,
    /// `preferred_username`.
    pub preferred_username: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified`.
    pub email_verified: Option<bool>,
    /// The groups claim.
    pub groups: Vec<String>,
}

/// The provider's metadata and keys as last fetched.
#[derive(Clone)]
struct Discovered {
    metadata: CoreProviderMetadata,
    jwks: CoreJsonWebKeySet,
    discovered_at: Instant,
    jwks_fetched_at: Instant,
}

/// One `[[oidc]]` provider.
pub struct OidcProvider {
    cfg: OidcConfig,
    http: reqwest::Client,
    /// One fetch at a time: concurrent logins wait for it rather than stampede the provider.
    state: tokio::sync::Mutex<Option<Discovered>>,
}

/// The groups claim: a list of strings or a single string; anything else is no groups.
fn groups_of(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(|v| v.as_str()).take(MAX_GROUPS).map(str::to_owned).collect()
        }
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

impl OidcProvider {
    /// A provider for one `[[oidc]]` entry (validated); nothing is fetched yet.
    pub fn new(cfg: OidcConfig, http: reqwest::Client) -> Self {
        Self { cfg, http, state: tokio::sync::Mutex::new(None) }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_secs)
    }

    /// Runs the crate's requests on our client, each bounded by `timeout_secs`.
    fn http_client(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, super::HttpError>> + Send + 'static>,
    > + Send
    + Sync
    + 'static {
        let (client, timeout) = (self.http.clone(), self.timeout());
        move |req| {
            let client = client.clone();
            Box::pin(async move { send(&client, req, Some(timeout)).await })
        }
    }

    /// The discovery document and keys, fetched when missing or older than [`METADATA_TTL`].
    async fn discovered(&self) -> Result<Discovered, UpstreamError> {
        let mut state = self.state.lock().await;
        if let Some(d) = state.as_ref().filter(|d| d.discovered_at.elapsed() < METADATA_TTL) {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|_| UpstreamError::Failed(format!("{}: the issuer URL is invalid", self.cfg.id)))?;
        let http = self.http_client();
        // Discovery checks that the document's `issuer` is ours (OIDC Discovery §4.3) and
        // fetches the JWKS.
        match CoreProviderMetadata::discover_async(issuer, &http).await {
            Ok(metadata) => {
                let now = Instant::now();
                let d =
                    Discovered { jwks: metadata.jwks().clone(), metadata, discovered_at: now, jwks_fetched_at: now };
                *state = Some(d.clone());
                tracing::info!(provider = %self.cfg.id, issuer = %self.cfg.issuer, "OpenID provider discovered");
                Ok(d)
            }
            Err(e) => match state.as_ref() {
                // A stale document beats no login at all; try again at the next login.
                Some(old) => {
                    tracing::warn!(provider = %self.cfg.id, error = %e, "OpenID discovery failed; using the previous document");
                    Ok(old.clone())
                }
                None => Err(UpstreamError::Failed(format!(
                    "{}: OpenID discovery at {} failed: {e}",
                    self.cfg.id, self.cfg.issuer
                ))),
            },
        }
    }

    /// Fetches the JWKS again after an unknown key id, unless it was fetched less than
    /// `jwks_refresh_secs` ago (then `None`: an attacker's made-up key ids must not make us
    /// hammer the provider). A fetch made meanwhile by another login counts.
    async fn refreshed_jwks(&self, seen: &Discovered) -> Option<CoreJsonWebKeySet> {
        let mut state = self.state.lock().await;
        let current = state.as_mut()?;
        if current.jwks_fetched_at > seen.jwks_fetched_at {
            return Some(current.jwks.clone());
        }
        if current.jwks_fetched_at.elapsed() < Duration::from_secs(self.cfg.jwks_refresh_secs) {
            tracing::warn!(provider = %self.cfg.id, "unknown ID token key id; the JWKS was fetched too recently to fetch it again");
            return None;
        }
        let http = self.http_client();
        current.jwks_fetched_at = Instant::now();
        match JsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &http).await {
            Ok(jwks) => {
                tracing::info!(provider = %self.cfg.id, keys = jwks.keys().len(), "OpenID provider keys fetched again (key rollover)");
                current.jwks = jwks;
                Some(current.jwks.clone())
            }
            Err(e) => {
                tracing::warn!(provider = %self.cfg.id, error = %e, "fetching the OpenID provider's JWKS failed");
                None
            }
        }
    }

    fn client(&self, d: &Discovered, callback: &str) -> Result<CoreClientWithEndpoints, UpstreamError> {
        let secret =
            Some(self.cfg.client_secret.expose()).filter(|s| !s.is_empty()).map(|s| ClientSecret::new(s.to_owned()));
        let redirect = RedirectUrl::new(callback.to_owned())
            .map_err(|_| UpstreamError::Failed("the callback URL is invalid".into()))?;
        Ok(CoreClient::from_provider_metadata(
            d.metadata.clone().set_jwks(d.jwks.clone()),
            ClientId::new(self.cfg.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect))
    }

    /// Core §3.1.3.7 checks on `jwks`: signature (asymmetric algorithms the provider announces),
    /// `iss`, `aud` (no untrusted extra audience), `exp`, `iat` window, `nonce`.
    fn verify<'t>(
        &self,
        d: &Discovered,
        jwks: CoreJsonWebKeySet,
        token: &'t IdTokenWithExtras,
        nonce: &Nonce,
    ) -> Result<&'t IdTokenClaims<ExtraClaims, CoreGenderClaim>, ClaimsVerificationError> {
        // SECURITY: no HS* (a client secret is no signing key we want to trust) and no `none`.
        let mut algs: Vec<CoreJwsSigningAlgorithm> = d
            .metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    CoreJwsSigningAlgorithm::HmacSha256
                        | CoreJwsSigningAlgorithm::HmacSha384
                        | CoreJwsSigningAlgorithm::HmacSha512
                        | CoreJwsSigningAlgorithm::None
                )
            })
            .cloned()
            .collect();
        if algs.is_empty() {
            algs.push(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256);
        }
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.cfg.client_id.clone()),
            d.metadata.issuer().clone(),
            jwks,
        )
        .set_allowed_algs(algs)
        .set_issue_time_verifier_fn(|iat| {
            let age = crate::store::now() - iat.timestamp();
            if age < -IAT_SKEW {
                Err(format!("issued {}s in the future", -age))
            } else if age > IAT_MAX_AGE {
                Err(format!("issued {age}s ago"))
            } else {
                Ok(())
            }
        });
        token.claims(&verifier, nonce)
    }

    /// Core §3.1.3.7 steps 4-5, which the crate leaves to us: with several audiences `azp` is
    /// required, and an `azp` must be our client id.
    fn check_azp(&self, claims: &IdTokenClaims<ExtraClaims, CoreGenderClaim>) -> Result<(), String> {
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != self.cfg.client_id => {
                Err(format!("azp is {:?}, not our client id", azp.as_str()))
            }
            None if claims.audiences().len() > 1 => Err("several audiences and no azp".into()),
            _ => Ok(()),
        }
    }

    /// The user, from what the provider said.
    pub fn to_user(&self, identity: Identity) -> User {
        let trusted = self.cfg.trust_unverified_email || identity.email_verified == Some(true);
        let email = identity.email.filter(|e| trusted && !e.is_empty());
        let name = identity
            .preferred_username
            .or(identity.name)
            .or_else(|| email.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| identity.sub.clone());
        User {
            id: format!("{}:{}", self.cfg.id, identity.sub),
            name,
            email,
            provider: self.cfg.id.clone(),
            groups: identity.groups,
        }
    }

    /// The allow-lists: no list set admits everyone; else the user must be on one list that is set.
    fn allows(&self, user: &User) -> bool {
        let c = &self.cfg;
        if c.allowed_emails.is_empty() && c.allowed_email_domains.is_empty() && c.allowed_groups.is_empty() {
            return true;
        }
        let email = user.email.as_deref();
        let by_email = email.is_some_and(|e| c.allowed_emails.iter().any(|a| a.eq_ignore_ascii_case(e)));
        // SECURITY: the whole domain after the last '@' (no suffix match).
        let by_domain = email.and_then(|e| e.rsplit_once('@')).is_some_and(|(local, domain)| {
            !local.is_empty()
                && c.allowed_email_domains.iter().any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain))
        });
        let by_group = user.groups.iter().any(|g| c.allowed_groups.iter().any(|a| a.eq_ignore_ascii_case(g)));
        by_email || by_domain || by_group
    }
}

/// The client type `from_provider_metadata` gives, with the redirect URI set.
type CoreClientWithEndpoints = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn failed(id: &str, what: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Failed(format!("{id}: {what}"))
}

#[async_trait]
impl IdentityProvider for OidcProvider {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn label(&self) -> &str {
        self.cfg.label()
    }

    async fn authorize_url(&self, login: &UpstreamLogin<'_>) -> Result<String, UpstreamError> {
        let d = self.discovered().await?;
        let client = self.client(&d, login.callback)?;
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(login.pkce_verifier.to_owned()));
        let (state, nonce) = (login.state.to_owned(), login.nonce.to_owned());
        // `openid` is added by the crate.
        let scopes = self.cfg.scopes.iter().filter(|s| *s != "openid").cloned().map(Scope::new);
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scopes(scopes)
            .set_pkce_challenge(challenge)
            .url();
        Ok(url.into())
    }

    async fn exchange(&self, login: &UpstreamLogin<'_>, code: &str, iss: Option<&str>) -> Result<User, UpstreamError> {
        let id = self.cfg.id.as_str();
        let d = self.discovered().await?;
        // RFC 9207 §2.4: an `iss` in the authorization response must be this provider's
        // (mix-up defence when several providers are configured).
        if let Some(iss) = iss
            && iss != d.metadata.issuer().as_str()
        {
            return Err(failed(id, format!("the authorization response came from issuer {iss:?}")));
        }
        let client = self.client(&d, login.callback)?;
        let http = self.http_client();
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| failed(id, "the provider announces no token endpoint"))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                oauth2::RequestTokenError::ServerResponse(r) => {
                    failed(id, format!("the provider refused the code: {}", r.error()))
                }
                oauth2::RequestTokenError::Request(e) => failed(id, format!("token endpoint unreachable: {e}")),
                other => failed(id, format!("token endpoint answered unexpectedly: {other}")),
            })?;
        let raw = token.id_token().ok_or_else(|| failed(id, "the token response has no ID token"))?.to_string();
        let id_token: IdTokenWithExtras = raw.parse().map_err(|_| failed(id, "the ID token is malformed"))?;
        let nonce = Nonce::new(login.nonce.to_owned());
        let mut jwks = d.jwks.clone();
        let claims = match self.verify(&d, jwks.clone(), &id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                // Key rollover: the provider may sign with a key published after our fetch.
                let Some(fresh) = self.refreshed_jwks(&d).await else {
                    return Err(failed(id, "the ID token is signed with an unknown key"));
                };
                jwks = fresh;
                self.verify(&d, jwks.clone(), &id_token, &nonce)
            }
            other => other,
        }
        .map_err(|e| failed(id, format!("ID token rejected: {e}")))?;
        self.check_azp(claims).map_err(|e| failed(id, format!("ID token rejected: {e}")))?;
        // Core §3.1.3.8: `at_hash`, when present, binds the access token to the ID token.
        if let Some(expected) = claims.access_token_hash() {
            let keys = CoreIdTokenVerifier::new_public_client(
                ClientId::new(self.cfg.client_id.clone()),
                d.metadata.issuer().clone(),
                jwks,
            );
            let actual = id_token
                .signing_alg()
                .ok()
                .zip(id_token.signing_key(&keys).ok())
                .and_then(|(alg, key)| AccessTokenHash::from_token(token.access_token(), alg, key).ok());
            if actual.as_ref() != Some(expected) {
                return Err(failed(id, "ID token rejected: at_hash does not match the access token"));
            }
        }
        let mut identity = Identity {
            sub: claims.subject().to_string(),
            preferred_username: claims.preferred_username().map(|u| u.to_string()),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified(),
            groups: groups_of(claims.additional_claims().rest.get(&self.cfg.groups_claim)),
        };
        if self.cfg.userinfo {
            // Core §5.3.2: the userinfo `sub` must be the ID token's (checked by the crate).
            let request = client
                .user_info(token.access_token().clone(), Some(claims.subject().clone()))
                .map_err(|_| failed(id, "userinfo is enabled but the provider announces no userinfo endpoint"))?;
            let info: UserInfoClaims<ExtraClaims, CoreGenderClaim> =
                request.request_async(&http).await.map_err(|e| failed(id, format!("userinfo failed: {e}")))?;
            identity.preferred_username =
                identity.preferred_username.or_else(|| info.preferred_username().map(|u| u.to_string()));
            identity.name = identity.name.or_else(|| info.name().and_then(|n| n.get(None)).map(|n| n.to_string()));
            if identity.email.is_none() {
                identity.email = info.email().map(|e| e.to_string());
                identity.email_verified = info.email_verified();
            }
            if identity.groups.is_empty() {
                identity.groups = groups_of(info.additional_claims().rest.get(&self.cfg.groups_claim));
            }
        }
        let user = self.to_user(identity);
        if !self.allows(&user) {
            return Err(UpstreamError::Denied(format!("{} is not on the allow-lists of {id}", user.name)));
        }
        Ok(user)
    }

    fn still_allowed(&self, user: &User) -> bool {
        self.allows(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(f: impl FnOnce(&mut OidcConfig)) -> OidcProvider {
        let mut cfg = OidcConfig { id: "corp".into(), issuer: "https://idp.example.com".into(), ..Default::default() };
        f(&mut cfg);
        OidcProvider::new(cfg, reqwest::Client::new())
    }

    fn identity(email: &str, verified: Option<bool>, groups: &[&str]) -> Identity {
        Identity {
            sub: "248289761001".into(),
            email: Some(email.into()),
            email_verified: verified,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn claims_become_a_namespaced_user() {
        let p = provider(|_| {});
        let mut i = identity("jane@example.com", Some(true), &["eng"]);
        i.preferred_username = Some("j.doe".into());
        i.name = Some("Jane Doe".into());
        let u = p.to_user(i);
        assert_eq!(
            u,
            User {
                id: "corp:248289761001".into(),
                name: "j.doe".into(),
                email: Some("jane@example.com".into()),
                provider: "corp".into(),
                groups: vec!["eng".into()],
            }
        );
        // Name falls back to name, then the e-mail, then sub.
        let mut i = identity("jane@example.com", Some(true), &[]);
        i.name = Some("Jane Doe".into());
        assert_eq!(p.to_user(i).name, "Jane Doe");
        assert_eq!(p.to_user(identity("jane@example.com", Some(true), &[])).name, "jane@example.com");
        assert_eq!(p.to_user(identity("jane@example.com", None, &[])).name, "248289761001");
    }

    #[test]
    fn unverified_email_is_dropped_unless_trusted() {
        let p = provider(|_| {});
        assert_eq!(p.to_user(identity("a@example.com", Some(false), &[])).email, None);
        assert_eq!(p.to_user(identity("a@example.com", None, &[])).email, None);
        let trusting = provider(|c| c.trust_unverified_email = true);
        assert_eq!(trusting.to_user(identity("a@example.com", None, &[])).email.as_deref(), Some("a@example.com"));
    }

    #[test]
    fn allow_lists_any_list_that_is_set() {
        let open = provider(|_| {});
        assert!(open.allows(&open.to_user(identity("x@evil.example", Some(true), &[]))));
        let p = provider(|c| {
            c.allowed_emails = vec!["Boss@Partner.example".into()];
            c.allowed_email_domains = vec!["@example.com".into()];
            c.allowed_groups = vec!["Engineers".into()];
        });
        let allowed = |email: &str, verified: bool, groups: &[&str]| {
            p.allows(&p.to_user(identity(email, Some(verified), groups)))
        };
        assert!(allowed("boss@partner.example", true, &[]));
        assert!(allowed("a@EXAMPLE.com", true, &[]));
        assert!(allowed("x@other.example", true, &["engineers"]));
        assert!(!allowed("a@example.com", false, &[]), "unverified addresses do not count");
        assert!(!allowed("a@sub.example.com", true, &[]));
        assert!(!allowed("a@example.com.evil", true, &[]));
        assert!(!allowed("a@example.com@evil.example", true, &["engineers-x"]));
    }

    #[test]
    fn groups_claim_shapes() {
        assert_eq!(groups_of(Some(&serde_json::json!(["a", 1, "b"]))), vec!["a", "b"]);
        assert_eq!(groups_of(Some(&serde_json::json!("solo"))), vec!["solo"]);
        assert!(groups_of(Some(&serde_json::json!({"a": 1}))).is_empty());
        assert!(groups_of(None).is_empty());
    }
}
