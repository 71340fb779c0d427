//! Clients: registration metadata (RFC 7591 §2) and client authentication (RFC 6749 §2.3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{cimd, redirect, scope, secret};
use crate::AppState;
use crate::config::Config;
use crate::error::{Error, ErrorCode};
use crate::store::{ClientRecord, StoreError};

/// RFC 6749 §4.1 grant.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
/// RFC 6749 §6 grant.
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// RFC 8628 §3.4 grant.
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Grant types this server issues tokens for.
pub const SUPPORTED_GRANTS: &[&str] = &[GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_DEVICE_CODE];

/// RFC 7591 §2 `token_endpoint_auth_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Public client: no secret, PKCE only.
    None,
    /// HTTP Basic with the client secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// Client secret in the form body (RFC 6749 §2.3.1).
    ClientSecretPost,
}

impl AuthMethod {
    /// Methods listed in `token_endpoint_auth_methods_supported`.
    pub const SUPPORTED: &[&str] = &["client_secret_basic", "client_secret_post", "none"];

    /// Whether the client holds a secret.
    pub fn is_confidential(self) -> bool {
        self != Self::None
    }
}

/// Validated client metadata, as stored and as returned by RFC 7591/7592.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// Registered redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// How the client authenticates at the token endpoint.
    pub token_endpoint_auth_method: AuthMethod,
    /// Grant types the client may use.
    pub grant_types: Vec<String>,
    /// Response types the client may use (`code`).
    pub response_types: Vec<String>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Client home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Logo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// Scopes the client may ask for (narrowed to what the server supports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Contacts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// Terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// Privacy policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    /// Software identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// Software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// `web` or `native` (OpenID Connect Registration §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
}

/// An RFC 7591 registration (or RFC 7592 update) request. Fields the server does not know are
/// ignored (RFC 7591 §2).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegistrationRequest {
    /// Validation: required for the code grant; each one per [`redirect::validate_registered`];
    /// at most `registration.max_redirect_uris`.
    pub redirect_uris: Option<Vec<String>>,
    /// Validation: `none`, `client_secret_basic` (default, RFC 7591 §2) or `client_secret_post`.
    pub token_endpoint_auth_method: Option<String>,
    /// Validation: subset of `authorization_code`, `refresh_token`; default `authorization_code`.
    pub grant_types: Option<Vec<String>>,
    /// Validation: `["code"]` (the default).
    pub response_types: Option<Vec<String>>,
    /// Validation: at most 200 characters, no control characters.
    pub client_name: Option<String>,
    /// Validation: an http(s) URL.
    pub client_uri: Option<String>,
    /// Validation: an http(s) URL.
    pub logo_uri: Option<String>,
    /// Validation: RFC 6749 §3.3 tokens; narrowed to the supported scopes.
    pub scope: Option<String>,
    /// Validation: at most 10 entries of at most 320 characters.
    pub contacts: Option<Vec<String>>,
    /// Validation: an http(s) URL.
    pub tos_uri: Option<String>,
    /// Validation: an http(s) URL.
    pub policy_uri: Option<String>,
    /// Validation: at most 200 characters.
    pub software_id: Option<String>,
    /// Validation: at most 200 characters.
    pub software_version: Option<String>,
    /// Validation: `web` or `native`.
    pub application_type: Option<String>,
    /// RFC 7592 §2.2: must equal the client's id on update.
    pub client_id: Option<String>,
    /// RFC 7592 §2.2: if sent on update, must equal the current secret.
    pub client_secret: Option<String>,
}

fn bad_metadata(msg: impl Into<String>) -> Error {
    Error::oauth(ErrorCode::InvalidClientMetadata, msg)
}

fn short_text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, Error> {
    match value {
        Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(bad_metadata(format!("{field} must be at most {max} characters without control characters")))
        }
        other => Ok(other),
    }
}

fn web_url(field: &str, value: Option<String>) -> Result<Option<String>, Error> {
    match value {
        None => Ok(None),
        Some(v) if v.len() <= 2000 && Url::parse(&v).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) => {
            Ok(Some(v))
        }
        Some(_) => Err(bad_metadata(format!("{field} must be an http(s) URL"))),
    }
}

impl RegistrationRequest {
    /// Validates the request into metadata (RFC 7591 §3.2.2 errors).
    pub fn validate(self, config: &Config) -> Result<ClientMetadata, Error> {
        let auth_method = match self.token_endpoint_auth_method.as_deref() {
            None | Some("client_secret_basic") => AuthMethod::ClientSecretBasic,
            Some("client_secret_post") => AuthMethod::ClientSecretPost,
            Some("none") => AuthMethod::None,
            Some(other) => {
                return Err(bad_metadata(format!(
                    "token_endpoint_auth_method {other:?} is not supported; use one of {:?}",
                    AuthMethod::SUPPORTED
                )));
            }
        };
        let mut grant_types = self.grant_types.unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.into()]);
        grant_types.dedup();
        if grant_types.is_empty() {
            return Err(bad_metadata("grant_types must not be empty"));
        }
        if let Some(g) = grant_types.iter().find(|g| !SUPPORTED_GRANTS.contains(&g.as_str())) {
            return Err(bad_metadata(format!("grant type {g:?} is not supported; use {SUPPORTED_GRANTS:?}")));
        }
        let uses_code = grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE);
        // RFC 7591 §2: response_types defaults to ["code"]; a client without the code grant
        // (device code only) uses no response type.
        let response_types =
            self.response_types.unwrap_or_else(|| if uses_code { vec!["code".into()] } else { Vec::new() });
        if response_types.iter().any(|r| r != "code") {
            return Err(bad_metadata("only the response type \"code\" is supported"));
        }
        if uses_code != response_types.iter().any(|r| r == "code") {
            // RFC 7591 §2.1: grant_types and response_types must be consistent.
            return Err(bad_metadata("grant type authorization_code goes with response type code"));
        }
        let mut redirect_uris = self.redirect_uris.unwrap_or_default();
        redirect_uris.dedup();
        let uses_device = grant_types.iter().any(|g| g == GRANT_DEVICE_CODE);
        // A device-code client has no redirect; the out-of-band URI is kept for the clients that
        // send it (and never redirected to). A code-flow client needs a real one.
        let redirects = redirect_uris.iter().filter(|u| u.as_str() != redirect::OOB).count();
        if redirects < redirect_uris.len() && !uses_device {
            return Err(Error::oauth(
                ErrorCode::InvalidRedirectUri,
                format!(
                    "{} is only accepted from device-code clients (OAuth 2.1 has no out-of-band redirect)",
                    redirect::OOB
                ),
            ));
        }
        if uses_code && redirects == 0 && !uses_device {
            return Err(Error::oauth(
                ErrorCode::InvalidRedirectUri,
                "redirect_uris is required, e.g. {\"redirect_uris\":[\"http://localhost:3000/callback\"]}",
            ));
        }
        if redirect_uris.len() > config.registration.max_redirect_uris {
            return Err(Error::oauth(
                ErrorCode::InvalidRedirectUri,
                format!("at most {} redirect URIs may be registered", config.registration.max_redirect_uris),
            ));
        }
        for uri in redirect_uris.iter().filter(|u| u.as_str() != redirect::OOB) {
            redirect::validate_registered(uri).map_err(|e| Error::oauth(ErrorCode::InvalidRedirectUri, e))?;
        }
        let scope = match self.scope {
            None => None,
            Some(s) => Some(
                scope::grant(Some(&s), &config.oauth.scopes_supported, &config.oauth.default_scopes)
                    .map_err(|e| Error::oauth(ErrorCode::InvalidClientMetadata, e))?,
            ),
        };
        let contacts = self.contacts.unwrap_or_default();
        if contacts.len() > 10 || contacts.iter().any(|c| c.len() > 320 || c.chars().any(char::is_control)) {
            return Err(bad_metadata("contacts: at most 10 addresses of at most 320 characters"));
        }
        let application_type = match self.application_type.as_deref() {
            None => None,
            Some(t @ ("web" | "native")) => Some(t.to_owned()),
            Some(_) => {
                return Err(bad_metadata("application_type must be \"web\" or \"native\""));
            }
        };
        Ok(ClientMetadata {
            redirect_uris,
            token_endpoint_auth_method: auth_method,
            grant_types,
            response_types,
            client_name: short_text("client_name", self.client_name, 200)?,
            client_uri: web_url("client_uri", self.client_uri)?,
            logo_uri: web_url("logo_uri", self.logo_uri)?,
            scope,
            contacts,
            tos_uri: web_url("tos_uri", self.tos_uri)?,
            policy_uri: web_url("policy_uri", self.policy_uri)?,
            software_id: short_text("software_id", self.software_id, 200)?,
            software_version: short_text("software_version", self.software_version, 200)?,
            application_type,
        })
    }
}

/// Credentials a request presented (RFC 6749 §2.3.1), before checking them.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    /// The client id, from Basic or from the form.
    pub client_id: Option<String>,
    /// The secret, from Basic or from the form.
    pub secret: Option<secret::ClientSecret>,
    /// Whether they came in an `Authorization: Basic` header.
    pub via_basic: bool,
}

impl ClientCredentials {
    /// Combines the `Authorization` header and the form fields. Using two methods at once is
    /// an error (RFC 6749 §2.3).
    pub fn from_request(
        authorization: Option<&str>,
        form_client_id: Option<&str>,
        form_secret: Option<&str>,
    ) -> Result<Self, Error> {
        let basic = authorization
            .and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")))
            .map(parse_basic)
            .transpose()?;
        match basic {
            Some((id, secret)) => {
                if form_secret.is_some() {
                    return Err(Error::invalid_request("use one client authentication method, not two"));
                }
                if form_client_id.is_some_and(|f| f != id) {
                    return Err(Error::InvalidClient {
                        description: "client_id differs from the authenticated client".into(),
                        basic: true,
                    });
                }
                Ok(Self { client_id: Some(id), secret: Some(secret::ClientSecret::new(secret)), via_basic: true })
            }
            None => Ok(Self {
                client_id: form_client_id.map(str::to_owned),
                secret: form_secret.map(secret::ClientSecret::new),
                via_basic: false,
            }),
        }
    }
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
fn parse_basic(b64: &str) -> Result<(String, String), Error> {
    let bad = || Error::InvalidClient { description: "malformed Basic credentials".into(), basic: true };
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).ok_or_else(bad)
    };
    Ok((decode(id)?, decode(secret)?))
}

/// Why a client could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A metadata document client whose document cannot be used.
    #[error(transparent)]
    Document(#[from] cimd::DocumentError),
}

impl From<LookupError> for Error {
    fn from(err: LookupError) -> Self {
        match err {
            LookupError::Store(e) => Error::Store(e),
            LookupError::Document(e) => Error::invalid_client(e.to_string()),
        }
    }
}

/// The client `client_id` names: a registered one from the store, or, when `[cimd]` is enabled
/// and the id is an https URL, the client its metadata document describes (never stored).
pub async fn lookup(app: &AppState, client_id: &str) -> Result<Option<ClientRecord>, LookupError> {
    if let Some(documents) = &app.cimd
        && cimd::is_document_client_id(client_id)
    {
        return Ok(Some(documents.client(client_id, &app.config).await?));
    }
    if client_id.is_empty() || client_id.len() > MAX_REGISTERED_ID_LEN {
        return Ok(None);
    }
    Ok(app.store.get_client(client_id).await?)
}

/// Longest id of a registered client looked up in the store (ours are 22 characters).
const MAX_REGISTERED_ID_LEN: usize = 256;

/// Authenticates the client of a token, revocation or introspection request. Public clients
/// identify themselves with `client_id` alone; confidential ones must present their secret.
pub async fn authenticate(app: &AppState, creds: &ClientCredentials) -> Result<ClientRecord, Error> {
    let fail = |d: &str| Error::InvalidClient { description: d.into(), basic: creds.via_basic };
    let Some(client_id) = creds.client_id.as_deref().filter(|id| !id.is_empty()) else {
        return Err(fail("client authentication is required (client_id)"));
    };
    let client = match lookup(app, client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return Err(fail("unknown client or bad credentials")),
        Err(LookupError::Document(e)) => return Err(fail(&e.to_string())),
        Err(LookupError::Store(e)) => return Err(e.into()),
    };
    match (&client.secret_hash, &creds.secret) {
        (None, None) => Ok(client),
        (None, Some(_)) => Err(fail("this is a public client; it has no secret to present")),
        (Some(_), None) => Err(fail("this client must authenticate with its client_secret")),
        (Some(hash), Some(presented)) => {
            // SECURITY: digest comparison in constant time.
            if secret::verify_digest(presented.secret(), hash) {
                Ok(client)
            } else {
                Err(fail("unknown client or bad credentials"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<ClientMetadata, Error> {
        serde_json::from_str::<RegistrationRequest>(json).unwrap().validate(&Config::default())
    }

    #[test]
    fn defaults_and_narrowing() {
        let m =
            req(r#"{"redirect_uris":["http://localhost:3000/cb"],"scope":"read write","unknown_field":1}"#).unwrap();
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(m.grant_types, vec!["authorization_code"]);
        assert_eq!(m.response_types, vec!["code"]);
        assert_eq!(m.scope.as_deref(), Some("mcp"));
    }

    #[test]
    fn rejections_carry_the_rfc_code() {
        let cases = [
            (r#"{}"#, ErrorCode::InvalidRedirectUri),
            (r#"{"redirect_uris":["javascript:alert(1)"]}"#, ErrorCode::InvalidRedirectUri),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"grant_types":["password"]}"#,
                ErrorCode::InvalidClientMetadata,
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}"#,
                ErrorCode::InvalidClientMetadata,
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#,
                ErrorCode::InvalidClientMetadata,
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"client_uri":"javascript:x"}"#,
                ErrorCode::InvalidClientMetadata,
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"application_type":"evil"}"#,
                ErrorCode::InvalidClientMetadata,
            ),
        ];
        for (json, code) in cases {
            assert_eq!(req(json).unwrap_err().code(), code, "{json}");
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:p%3Ass"));
        let c = ClientCredentials::from_request(Some(&header), None, None).unwrap();
        assert_eq!(c.client_id.as_deref(), Some("my client"));
        assert_eq!(c.secret.unwrap().secret(), "p:ss");
        assert!(ClientCredentials::from_request(Some(&header), None, Some("x")).is_err());
        assert!(ClientCredentials::from_request(Some("Basic !!!"), None, None).is_err());
    }
}
