//! One typed configuration: a TOML file, then `MCP_AUTHD__SECTION__KEY` environment overrides,
//! then `*_file` indirections for secrets. [`Config::validate`] reports every problem at once,
//! each naming the setting (file key and environment variable) it is about.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use url::Url;

/// Environment variable prefix: `MCP_AUTHD__SERVER__ISSUER` sets `server.issuer`.
pub const ENV_PREFIX: &str = "MCP_AUTHD";

/// Keys whose environment value is a comma-separated list.
const ENV_LIST_KEYS: &[&str] = &[
    "server.trusted_proxies",
    "oauth.scopes_supported",
    "oauth.default_scopes",
    "oauth.allowed_users",
    "github.allowed_users",
    "github.allowed_orgs",
    "github.allowed_teams",
    "github.scopes",
    "tokens.previous_key_files",
    "cimd.allowed_domains",
];

/// A secret read from the configuration. `Debug` never shows it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether a value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "[redacted]" })
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listening, public URL, proxies.
    pub server: ServerConfig,
    /// `[store]`: where state lives.
    pub store: StoreConfig,
    /// `[tokens]`: signing keys and lifetimes.
    pub tokens: TokenConfig,
    /// `[oauth]`: scopes and global user policy.
    pub oauth: OAuthConfig,
    /// `[registration]`: RFC 7591 dynamic client registration.
    pub registration: RegistrationConfig,
    /// `[cimd]`: clients identified by a Client ID Metadata Document URL.
    pub cimd: CimdConfig,
    /// `[github]`: GitHub / GitHub Enterprise login.
    pub github: GithubConfig,
    /// `[[oidc]]`: OpenID Connect providers (any number).
    pub oidc: Vec<OidcConfig>,
    /// `[local]`: users defined in the configuration.
    pub local: LocalConfig,
    /// `[verify]`: the ForwardAuth decision point.
    pub verify: VerifyConfig,
    /// `[[resources]]`: the protected MCP servers.
    pub resources: Vec<ResourceConfig>,
    /// `[rate_limit]`: requests per client address (and per client on /token).
    pub rate_limit: RateLimitConfig,
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// The issuer identifier and public base URL of this server (RFC 8414 §2).
    pub issuer: String,
    /// Directory for the embedded store and generated keys.
    pub data_dir: PathBuf,
    /// Networks whose `X-Forwarded-*` headers are believed (CIDR or bare address).
    pub trusted_proxies: Vec<String>,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// The operator's Unix socket (`mcp-authd clients`, `mcp-authd tokens`), relative to
    /// `data_dir` unless absolute; mode 0600. Empty = none.
    pub admin_socket: String,
    /// Seconds in-flight requests get to finish after SIGTERM (new connections are refused at
    /// once and `/ready` answers 503); then the process exits.
    pub shutdown_grace: u64,
    /// Most open client connections (the total over all workers); more wait in the listen
    /// backlog.
    pub max_connections: usize,
    /// Seconds a client has to send a request's head (line and headers) once it connects or
    /// after its previous request; slower ones get 408 and are disconnected.
    pub request_timeout: u64,
    /// Seconds an idle kept-alive connection stays open.
    pub keep_alive: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            issuer: "http://localhost:8080".into(),
            data_dir: PathBuf::from("./data"),
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1/128".into()],
            log_format: "text".into(),
            workers: 0,
            admin_socket: "admin.sock".into(),
            shutdown_grace: 30,
            max_connections: 10_000,
            request_timeout: 5,
            keep_alive: 30,
        }
    }
}

/// Which storage backend.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// redb file in the data directory (one replica).
    #[default]
    Embedded,
    /// Redis (any number of replicas).
    Redis,
}

/// `[store]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` or `redis`.
    #[serde(rename = "type")]
    pub kind: StoreKind,
    /// Embedded store file; default `<data_dir>/mcp-authd.redb`.
    pub path: Option<PathBuf>,
    /// Redis URL (`redis://` or `rediss://`); may carry credentials.
    pub redis_url: SecretString,
    /// File holding the Redis URL.
    pub redis_url_file: Option<PathBuf>,
    /// Redis password, if not in the URL.
    pub redis_password: SecretString,
    /// File holding the Redis password.
    pub redis_password_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for `rediss://` instead of the public web PKI roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of every Redis key and channel.
    pub key_prefix: String,
    /// Redis connection pool size.
    pub pool_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: None,
            redis_url: SecretString::default(),
            redis_url_file: None,
            redis_password: SecretString::default(),
            redis_password_file: None,
            redis_ca_file: None,
            key_prefix: "mcp-authd:".into(),
            pool_size: 16,
        }
    }
}

/// JWS algorithm of the access tokens.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    #[default]
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// `[tokens]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Signing algorithm for generated keys (a PEM file's type decides for loaded keys).
    pub algorithm: SigningAlgorithm,
    /// PEM (PKCS#8) private key to sign with; generated under `<data_dir>/keys` when unset.
    pub private_key_file: Option<PathBuf>,
    /// Older PEM keys still published in /jwks so their tokens stay valid.
    pub previous_key_files: Vec<PathBuf>,
    /// Access token lifetime, seconds.
    pub access_token_ttl: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_token_ttl: u64,
    /// Authorization code lifetime, seconds.
    pub code_ttl: u64,
    /// Time a user has to finish logging in, seconds.
    pub login_ttl: u64,
    /// RFC 8628 device code lifetime (`expires_in`), seconds.
    pub device_code_ttl: u64,
    /// RFC 8628 least seconds between two polls of the token endpoint (`interval`).
    pub device_poll_interval: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::RS256,
            private_key_file: None,
            previous_key_files: Vec::new(),
            access_token_ttl: 3600,
            refresh_token_ttl: 30 * 24 * 3600,
            code_ttl: 60,
            login_ttl: 600,
            device_code_ttl: 600,
            device_poll_interval: 5,
        }
    }
}

/// `[oauth]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// Scopes this server issues (`scopes_supported` in the metadata).
    pub scopes_supported: Vec<String>,
    /// Scopes granted when a request asks for none the server knows.
    pub default_scopes: Vec<String>,
    /// Users allowed to log in at all (ids or names, case-insensitive); empty = everyone the
    /// identity provider accepts.
    pub allowed_users: Vec<String>,
    /// The identity provider users are sent to straight away (`github` or an `[[oidc]]` id),
    /// skipping the sign-in page; empty = the page, unless there is only one way to sign in.
    pub default_provider: String,
    /// Whether the user is asked to approve each client after signing in.
    pub consent: ConsentMode,
    /// Seconds a remembered consent lasts (`consent = "remember"`).
    pub consent_ttl: u64,
}

/// `oauth.consent`: when the consent page is shown.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Never: signing in is consenting (the default; the user chose to connect the client).
    #[default]
    Off,
    /// At every authorization.
    Always,
    /// Once per user, client and resource, until a wider scope is asked for, the consent
    /// expires (`consent_ttl`), or the user's or the client's tokens are revoked.
    Remember,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            scopes_supported: vec!["mcp".into()],
            default_scopes: vec!["mcp".into()],
            allowed_users: Vec::new(),
            default_provider: String::new(),
            consent: ConsentMode::Off,
            consent_ttl: 180 * 24 * 3600,
        }
    }
}

/// `[registration]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Whether `POST /register` is open.
    pub enabled: bool,
    /// RFC 7591 §3 initial access token; when set, registration requires it as a Bearer token.
    pub initial_access_token: SecretString,
    /// File holding the initial access token.
    pub initial_access_token_file: Option<PathBuf>,
    /// Most redirect URIs one client may register.
    pub max_redirect_uris: usize,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_access_token: SecretString::default(),
            initial_access_token_file: None,
            max_redirect_uris: 10,
        }
    }
}

/// `[cimd]`: OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
/// the MCP authorization spec 2025-11-25): a `client_id` that is an https URL names a JSON
/// document describing the client, fetched (through the SSRF guard of `crate::fetch`) and cached.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CimdConfig {
    /// Whether https `client_id`s are resolved (and `client_id_metadata_document_supported`
    /// advertised).
    pub enabled: bool,
    /// Hosts whose documents are trusted (`example.com` also covers `app.example.com`); empty =
    /// any public host.
    pub allowed_domains: Vec<String>,
    /// Largest document accepted, bytes.
    pub max_document_bytes: usize,
    /// Bound on one fetch (connect, TLS, headers and body), seconds.
    pub fetch_timeout_secs: u64,
    /// Least time a fetched document is kept (whatever its `max-age`), seconds; also how long a
    /// document without `max-age` is kept. `no-store` documents are never kept.
    pub cache_min_ttl: u64,
    /// Longest time a fetched document is kept, seconds.
    pub cache_max_ttl: u64,
    /// Most documents kept in memory.
    pub cache_capacity: u64,
    /// TEST / DEVELOPMENT ONLY: PEM CA certificate(s) trusted for document hosts, besides the
    /// system roots.
    pub extra_ca_file: Option<PathBuf>,
    /// TEST / DEVELOPMENT ONLY: fetch documents from loopback and private-network addresses
    /// (RFC 1918, unique-local). Cloud metadata and other special addresses stay refused. Warned
    /// about at start-up: with it, any user can make the server fetch from its own network.
    pub allow_private_addresses: bool,
}

impl Default for CimdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_domains: Vec::new(),
            max_document_bytes: 5 * 1024,
            fetch_timeout_secs: 5,
            cache_min_ttl: 60,
            cache_max_ttl: 24 * 3600,
            cache_capacity: 10_000,
            extra_ca_file: None,
            allow_private_addresses: false,
        }
    }
}

/// `[github]`: enabled when `client_id` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubConfig {
    /// OAuth App client id.
    pub client_id: String,
    /// OAuth App client secret.
    pub client_secret: SecretString,
    /// File holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Authorization endpoint (GitHub Enterprise: `https://HOST/login/oauth/authorize`).
    pub authorize_url: String,
    /// Token endpoint (GitHub Enterprise: `https://HOST/login/oauth/access_token`).
    pub token_url: String,
    /// REST API base (GitHub Enterprise: `https://HOST/api/v3`).
    pub api_url: String,
    /// Logins or numeric ids allowed (case-insensitive); empty = anyone (subject to orgs).
    pub allowed_users: Vec<String>,
    /// Organisations whose members are allowed; empty = no org check.
    pub allowed_orgs: Vec<String>,
    /// Teams whose members are allowed, as `org/team-slug` (case-insensitive); empty = no team
    /// check. Reading teams needs the `read:org` scope, which is then requested.
    pub allowed_teams: Vec<String>,
    /// Scopes requested from GitHub.
    pub scopes: Vec<String>,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: SecretString::default(),
            client_secret_file: None,
            authorize_url: "https://github.com/login/oauth/authorize".into(),
            token_url: "https://github.com/login/oauth/access_token".into(),
            api_url: "https://api.github.com".into(),
            allowed_users: Vec::new(),
            allowed_orgs: Vec::new(),
            allowed_teams: Vec::new(),
            scopes: vec!["read:user".into(), "user:email".into()],
        }
    }
}

impl GithubConfig {
    /// Whether GitHub login is configured.
    pub fn enabled(&self) -> bool {
        !self.client_id.is_empty()
    }
}

/// One `[[oidc]]` entry: an OpenID Connect provider, found by discovery from its issuer URL.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// Short name: the callback path `/callback/<id>`, the prefix of user ids (`<id>:<sub>`),
    /// and the stored provider name. Lower-case letters, digits, `-` and `_`.
    pub id: String,
    /// Name on the sign-in button; default: the id.
    pub label: String,
    /// Issuer URL; `<issuer>/.well-known/openid-configuration` is read (OIDC Discovery 1.0 §4).
    pub issuer: String,
    /// Client id registered at the provider.
    pub client_id: String,
    /// Client secret (client_secret_basic); empty = a public client (PKCE only).
    pub client_secret: SecretString,
    /// File holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Scopes requested; must include `openid`.
    pub scopes: Vec<String>,
    /// Claim holding the user's groups (a list of strings, or one string).
    pub groups_claim: String,
    /// Accept the `email` claim even without `email_verified: true` (some providers, e.g. Entra
    /// ID, never send it). Off by default: an unverified address is not an identity.
    pub trust_unverified_email: bool,
    /// Also read the userinfo endpoint (for providers that put profile, e-mail or group claims
    /// only there); its claims fill what the ID token lacks.
    pub userinfo: bool,
    /// E-mail addresses allowed (case-insensitive, verified addresses only).
    pub allowed_emails: Vec<String>,
    /// E-mail domains allowed (`example.com` matches `a@example.com`, not subdomains).
    pub allowed_email_domains: Vec<String>,
    /// Groups allowed (from `groups_claim`, case-insensitive). A user passes when on any list
    /// that is set; no list set = anyone the provider authenticates.
    pub allowed_groups: Vec<String>,
    /// Bound on each call to the provider (discovery, JWKS, token, userinfo), seconds.
    pub timeout_secs: u64,
    /// Least seconds between two JWKS fetches caused by an unknown key id (key rollover).
    pub jwks_refresh_secs: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            label: String::new(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: SecretString::default(),
            client_secret_file: None,
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            groups_claim: "groups".into(),
            trust_unverified_email: false,
            userinfo: false,
            allowed_emails: Vec::new(),
            allowed_email_domains: Vec::new(),
            allowed_groups: Vec::new(),
            timeout_secs: 10,
            jwks_refresh_secs: 60,
        }
    }
}

impl OidcConfig {
    /// The sign-in button's name.
    pub fn label(&self) -> &str {
        if self.label.is_empty() { &self.id } else { &self.label }
    }
}

/// `[local]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// `[[local.users]]`.
    pub users: Vec<LocalUser>,
}

/// One `[[local.users]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    /// Login name.
    pub username: String,
    /// Argon2 PHC string (`mcp-authd hash-password`).
    pub password_hash: SecretString,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Groups the user belongs to (the `groups` claim, matched by `resources.allowed_orgs`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[verify]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// Let CORS preflight requests (OPTIONS) through without a token.
    pub allow_preflight: bool,
    /// Let the protected server's own `/.well-known/oauth-protected-resource*` through.
    pub allow_metadata: bool,
    /// Pass the client's `Authorization` header on to the backend (`Authorization` response
    /// header of /verify). Off by default: the MCP server should not see the user's token.
    pub forward_token: bool,
    /// Most verified tokens kept in memory (about 1 KiB each).
    pub cache_capacity: u64,
    /// Header names of the identity handed to the backend.
    pub headers: IdentityHeaders,
    /// Address of the Envoy ext_authz gRPC service (`envoy.service.auth.v3.Authorization`)
    /// and the gRPC health service; empty = not started.
    pub grpc_bind: String,
    /// Where a browser (a `GET` that accepts `text/html` and carries no token) is sent instead
    /// of a 401, with the original URL appended as `rd`; empty = API answers for everyone.
    pub login_url: String,
    /// Seconds after the shared store's revocation feed is lost during which a token verified
    /// before (in the cache) is still judged against the revocations last known; a token not
    /// seen before gets 503 at once. 0 (the default) fails closed for every token at once.
    pub outage_grace: u64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            allow_preflight: true,
            allow_metadata: true,
            forward_token: false,
            cache_capacity: 20_000,
            headers: IdentityHeaders::default(),
            grpc_bind: String::new(),
            login_url: String::new(),
            outage_grace: 0,
        }
    }
}

/// `[rate_limit]`: each limit is `<count>/<s|min|h>` (that many at once, then the steady rate)
/// or `"off"`, per client address (the `X-Forwarded-For` hop before the trusted proxies; IPv6 per
/// /64). Refusals are `429` with `Retry-After`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `false` lifts every limit (benchmarks, load tests).
    pub enabled: bool,
    /// `/register` and `/register/{client_id}`.
    pub register: String,
    /// `/authorize`.
    pub authorize: String,
    /// `/login`, `/login/{provider}`, `/callback`.
    pub login: String,
    /// `/token`, per address.
    pub token: String,
    /// `/token`, per `client_id`, whichever address it comes from.
    pub token_per_client: String,
    /// `/device_authorization`, `/device`, `/device/confirm`.
    pub device: String,
    /// `/revoke` and `/introspect`.
    pub revoke: String,
    /// `/verify`, per original client address (from the proxy's `X-Forwarded-For`): off by
    /// default (the proxy asks for every MCP request). The gRPC `Check` is not limited.
    pub verify: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            register: "30/min".into(),
            authorize: "60/min".into(),
            login: "30/min".into(),
            token: "300/min".into(),
            token_per_client: "120/min".into(),
            device: "30/min".into(),
            revoke: "300/min".into(),
            verify: "off".into(),
        }
    }
}

/// Names of the identity headers /verify returns.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityHeaders {
    /// User id (`sub`).
    pub user_id: String,
    /// User name.
    pub user_name: String,
    /// User e-mail.
    pub user_email: String,
    /// OAuth client id.
    pub client_id: String,
    /// Granted scope.
    pub scope: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            user_id: "X-User-Id".into(),
            user_name: "X-User-Name".into(),
            user_email: "X-User-Email".into(),
            client_id: "X-Client-Id".into(),
            scope: "X-Scope".into(),
        }
    }
}

/// One protected MCP server, `[[resources]]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Canonical URL of the MCP server (RFC 8707 resource, RFC 9728 `resource`).
    pub url: String,
    /// Scopes this resource advertises (`scopes_supported`); default: the server's.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Scopes a token must carry to be let through.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Users allowed (ids or names, case-insensitive); empty = every logged-in user.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Organisations / groups allowed (the token's `groups` claim: GitHub organisations,
    /// local users' `groups`), case-insensitive. A user passes when on any allow-list that is set.
    #[serde(default)]
    pub allowed_orgs: Vec<String>,
    /// E-mail domains allowed (`example.com` matches `alice@example.com`, not subdomains).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Per MCP method / tool rules, from the `Mcp-Method` / `Mcp-Name` request headers.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One `[[resources.rules]]` entry: what a request for one MCP method (and name) needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The JSON-RPC method (`tools/call`, `resources/read`, `prompts/get`, ...), or `*`.
    pub method: String,
    /// The tool, prompt or resource (`Mcp-Name`): exact, or a prefix ending in `*`; absent = any.
    #[serde(default)]
    pub name: Option<String>,
    /// Scopes the token must carry for such a request (403 `insufficient_scope` otherwise).
    pub required_scopes: Vec<String>,
}

/// Every problem found, one line each.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// `server.issuer (MCP_AUTHD__SERVER__ISSUER)`: how problems name a setting.
fn setting(key: &str) -> String {
    format!("{key} ({ENV_PREFIX}__{})", key.replace('.', "__").to_uppercase())
}

/// Reads a `*_file` secret; `name` is how problems name the setting.
fn read_secret_file(path: &Path, name: &str, problems: &mut Vec<String>) -> Option<SecretString> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(SecretString::new(s.trim_end_matches(['\r', '\n']))),
        Err(e) => {
            problems.push(format!("{name}: cannot read {}: {e}", path.display()));
            None
        }
    }
}

impl Config {
    /// Loads the file (when given) and the environment, resolves `*_file` secrets, and
    /// validates. Every problem is reported in one error.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigErrors(vec![format!("configuration file {} does not exist", path.display())]));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let mut env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in ENV_LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        let raw = builder.add_source(env).build().map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let mut cfg: Config = raw.try_deserialize().map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        cfg.resolve_files()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Replaces each secret by the content of its `*_file`, when one is set.
    fn resolve_files(&mut self) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        let pairs: [(&Option<PathBuf>, &mut SecretString, &str); 4] = [
            (&self.github.client_secret_file, &mut self.github.client_secret, "github.client_secret_file"),
            (&self.store.redis_url_file, &mut self.store.redis_url, "store.redis_url_file"),
            (&self.store.redis_password_file, &mut self.store.redis_password, "store.redis_password_file"),
            (
                &self.registration.initial_access_token_file,
                &mut self.registration.initial_access_token,
                "registration.initial_access_token_file",
            ),
        ];
        for (file, value, key) in pairs {
            if let Some(path) = file
                && let Some(secret) = read_secret_file(path, &setting(key), &mut problems)
            {
                *value = secret;
            }
        }
        for (i, o) in self.oidc.iter_mut().enumerate() {
            if let Some(path) = &o.client_secret_file
                && let Some(secret) = read_secret_file(path, &format!("oidc[{i}].client_secret_file"), &mut problems)
            {
                o.client_secret = secret;
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigErrors(problems)) }
    }

    /// Checks every setting and returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut p = Vec::new();
        if self.server.bind.parse::<SocketAddr>().is_err() {
            p.push(format!("{}: {:?} is not an address:port", setting("server.bind"), self.server.bind));
        }
        match Url::parse(&self.server.issuer) {
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    p.push(format!("{}: must be an http(s) URL", setting("server.issuer")));
                } else if url.query().is_some() || url.fragment().is_some() {
                    // RFC 8414 §2: no query or fragment components.
                    p.push(format!("{}: must have no query or fragment", setting("server.issuer")));
                } else if url.scheme() == "http" && !is_loopback_host(url.host_str().unwrap_or("")) {
                    p.push(format!(
                        "{}: must use https unless the host is loopback (OAuth 2.1 §1.5)",
                        setting("server.issuer")
                    ));
                }
            }
            Err(e) => p.push(format!("{}: {e}", setting("server.issuer"))),
        }
        for net in &self.server.trusted_proxies {
            if parse_net(net).is_none() {
                p.push(format!("{}: {net:?} is not an address or CIDR", setting("server.trusted_proxies")));
            }
        }
        if self.server.max_connections == 0 {
            p.push(format!("{}: must be at least 1", setting("server.max_connections")));
        }
        if !(1..=300).contains(&self.server.request_timeout) {
            p.push(format!("{}: must be 1 to 300 seconds", setting("server.request_timeout")));
        }
        if self.server.keep_alive > 3600 {
            p.push(format!("{}: at most 3600 seconds", setting("server.keep_alive")));
        }
        if !matches!(self.server.log_format.as_str(), "text" | "json") {
            p.push(format!("{}: must be \"text\" or \"json\"", setting("server.log_format")));
        }
        if self.store.kind == StoreKind::Redis {
            match Url::parse(self.store.redis_url.expose()) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "unix" | "redis+unix") => {}
                Ok(_) => p.push(format!("{}: must be a redis:// or rediss:// URL", setting("store.redis_url"))),
                Err(_) => p.push(format!(
                    "{}: required for store.type = \"redis\" (or store.redis_url_file)",
                    setting("store.redis_url")
                )),
            }
            if let Some(ca) = &self.store.redis_ca_file
                && !ca.is_file()
            {
                p.push(format!("{}: {} is not a readable file", setting("store.redis_ca_file"), ca.display()));
            }
            if self.store.pool_size == 0 {
                p.push(format!("{}: must be at least 1", setting("store.pool_size")));
            }
        }
        let t = &self.tokens;
        for (v, key, max) in [
            (t.access_token_ttl, "tokens.access_token_ttl", 86_400),
            (t.refresh_token_ttl, "tokens.refresh_token_ttl", 366 * 86_400),
            (t.code_ttl, "tokens.code_ttl", 600),
            (t.login_ttl, "tokens.login_ttl", 3600),
            (t.device_code_ttl, "tokens.device_code_ttl", 3600),
            (t.device_poll_interval, "tokens.device_poll_interval", 60),
        ] {
            if v == 0 || v > max {
                p.push(format!("{}: must be between 1 and {max} seconds", setting(key)));
            }
        }
        for (i, path) in t.private_key_file.iter().chain(&t.previous_key_files).enumerate() {
            if !path.is_file() {
                let key = if i == 0 && t.private_key_file.is_some() {
                    "tokens.private_key_file"
                } else {
                    "tokens.previous_key_files"
                };
                p.push(format!("{}: {} is not a readable file", setting(key), path.display()));
            }
        }
        if self.oauth.scopes_supported.iter().any(|s| !crate::oauth::scope::is_scope_token(s)) {
            p.push(format!(
                "{}: scope names are printable ASCII without spaces or quotes",
                setting("oauth.scopes_supported")
            ));
        }
        if self.oauth.default_scopes.iter().any(|s| !self.oauth.scopes_supported.contains(s)) {
            p.push(format!(
                "{}: every default scope must be in oauth.scopes_supported",
                setting("oauth.default_scopes")
            ));
        }
        if self.registration.max_redirect_uris == 0 {
            p.push(format!("{}: must be at least 1", setting("registration.max_redirect_uris")));
        }
        self.validate_cimd(&mut p);
        let gh = &self.github;
        if gh.enabled() {
            if gh.client_secret.is_empty() {
                p.push(format!(
                    "{}: required when github.client_id is set (or github.client_secret_file)",
                    setting("github.client_secret")
                ));
            }
            for team in &gh.allowed_teams {
                if !team
                    .split_once('/')
                    .is_some_and(|(org, slug)| !org.is_empty() && !slug.is_empty() && !slug.contains('/'))
                {
                    p.push(format!("{}: {team:?} is not org/team-slug", setting("github.allowed_teams")));
                }
            }
            for (v, key) in [
                (&gh.authorize_url, "github.authorize_url"),
                (&gh.token_url, "github.token_url"),
                (&gh.api_url, "github.api_url"),
            ] {
                if !Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                    p.push(format!("{}: {v:?} is not an http(s) URL", setting(key)));
                }
            }
        }
        self.validate_oidc(&mut p);
        for (i, u) in self.local.users.iter().enumerate() {
            if u.username.is_empty() || u.username.chars().any(|c| c.is_control() || c == ':') {
                p.push(format!("local.users[{i}].username: must be non-empty, without ':' or control characters"));
            }
            if argon2::PasswordHash::new(u.password_hash.expose()).is_err() {
                p.push(format!(
                    "local.users[{i}].password_hash: not an argon2 PHC string (make one with `mcp-authd hash-password`)"
                ));
            }
        }
        for (i, r) in self.resources.iter().enumerate() {
            match Url::parse(&r.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.fragment().is_none() && u.query().is_none() => {}
                _ => p.push(format!(
                    "resources[{i}].url: {:?} must be an absolute http(s) URL without query or fragment (RFC 8707 §2)",
                    r.url
                )),
            }
            for (j, rule) in r.rules.iter().enumerate() {
                if rule.method.is_empty() || rule.method.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    p.push(format!("resources[{i}].rules[{j}].method: must be a JSON-RPC method name or \"*\""));
                }
                if rule.name.as_deref().is_some_and(|n| n.is_empty() || n.strip_suffix('*').unwrap_or(n).contains('*'))
                {
                    p.push(format!(
                        "resources[{i}].rules[{j}].name: must be a name, or a prefix followed by one trailing '*'"
                    ));
                }
                if rule.required_scopes.is_empty() {
                    p.push(format!("resources[{i}].rules[{j}].required_scopes: must name at least one scope"));
                }
            }
            let needed = r.required_scopes.iter().map(|s| (s, "required_scopes".to_owned()));
            let by_rules = r.rules.iter().enumerate().flat_map(|(j, rule)| {
                rule.required_scopes.iter().map(move |s| (s, format!("rules[{j}].required_scopes")))
            });
            for (scope, key) in needed.chain(by_rules) {
                if !self.oauth.scopes_supported.contains(scope) {
                    p.push(format!(
                        "resources[{i}].{key}: {scope:?} is not in oauth.scopes_supported, so no token can carry it"
                    ));
                }
            }
        }
        if !self.verify.grpc_bind.is_empty() && self.verify.grpc_bind.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!("{}: {:?} is not an address:port", setting("verify.grpc_bind"), self.verify.grpc_bind));
        }
        if !self.verify.login_url.is_empty()
            && !Url::parse(&self.verify.login_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            p.push(format!("{}: {:?} is not an http(s) URL", setting("verify.login_url"), self.verify.login_url));
        }
        if self.server.shutdown_grace > 3600 {
            p.push(format!("{}: at most 3600 seconds", setting("server.shutdown_grace")));
        }
        for bucket in crate::ratelimit::Bucket::ALL {
            let key = format!("rate_limit.{bucket}");
            if let Err(e) = crate::ratelimit::Rate::parse(bucket.setting(&self.rate_limit)) {
                p.push(format!("{}: {e}", setting(&key)));
            }
        }
        if self.verify.outage_grace > 3600 {
            p.push(format!(
                "{}: {} s is more than an hour of revocations that may be missed; at most 3600",
                setting("verify.outage_grace"),
                self.verify.outage_grace
            ));
        }
        if p.is_empty() { Ok(()) } else { Err(ConfigErrors(p)) }
    }

    /// What [`Self::validate`] cannot see in the settings alone but `serve` would fail on: the
    /// files and directories they name (`mcp-authd check-config` runs both). Reads, never writes.
    pub fn check_environment(&self) -> Vec<String> {
        let mut p = Vec::new();
        let keys = self.tokens.private_key_file.iter().map(|f| (f, "tokens.private_key_file"));
        let previous = self.tokens.previous_key_files.iter().map(|f| (f, "tokens.previous_key_files"));
        for (file, key) in keys.chain(previous) {
            match std::fs::read(file) {
                Ok(pem) if crate::jwt::parses_as_signing_key(&pem) => {}
                Ok(_) => {
                    p.push(format!("{}: {} is not a PEM private key of a supported kind", setting(key), file.display()))
                }
                Err(e) => p.push(format!("{}: cannot read {}: {e}", setting(key), file.display())),
            }
        }
        if let Some(ca) = self.cimd.extra_ca_file.as_ref().filter(|_| self.cimd.enabled) {
            let key = setting("cimd.extra_ca_file");
            match std::fs::read(ca) {
                Ok(text) if pem::parse_many(&text).is_ok_and(|p| p.iter().any(|c| c.tag() == "CERTIFICATE")) => {}
                Ok(_) => p.push(format!("{key}: {} holds no PEM certificate", ca.display())),
                Err(e) => p.push(format!("{key}: cannot read {}: {e}", ca.display())),
            }
        }
        // The data directory holds the embedded store and generated keys: it must be writable.
        let needs_dir = self.store.kind == StoreKind::Embedded || self.tokens.private_key_file.is_none();
        if needs_dir && let Some(why) = unwritable(&self.server.data_dir) {
            p.push(format!("{}: {} {why}", setting("server.data_dir"), self.server.data_dir.display()));
        }
        p
    }

    /// `[cimd]`.
    fn validate_cimd(&self, p: &mut Vec<String>) {
        let c = &self.cimd;
        if let Err(e) = crate::fetch::guard::DomainList::new(&c.allowed_domains) {
            p.push(format!("{}: {e}", setting("cimd.allowed_domains")));
        }
        if !(256..=1024 * 1024).contains(&c.max_document_bytes) {
            p.push(format!("{}: must be between 256 and 1048576 bytes", setting("cimd.max_document_bytes")));
        }
        if c.fetch_timeout_secs == 0 || c.fetch_timeout_secs > 60 {
            p.push(format!("{}: must be between 1 and 60 seconds", setting("cimd.fetch_timeout_secs")));
        }
        if c.cache_max_ttl > 7 * 86_400 {
            p.push(format!("{}: at most 604800 seconds (a week)", setting("cimd.cache_max_ttl")));
        }
        if c.cache_min_ttl > c.cache_max_ttl {
            p.push(format!("{}: must not exceed cimd.cache_max_ttl", setting("cimd.cache_min_ttl")));
        }
        if let Some(ca) = &c.extra_ca_file
            && !ca.is_file()
        {
            p.push(format!("{}: {} is not a readable file", setting("cimd.extra_ca_file"), ca.display()));
        }
    }

    /// `[[oidc]]` and `oauth.default_provider`.
    fn validate_oidc(&self, p: &mut Vec<String>) {
        let mut seen: Vec<&str> = Vec::new();
        for (i, o) in self.oidc.iter().enumerate() {
            let key = |k: &str| format!("oidc[{i}].{k}");
            let id_ok = !o.id.is_empty()
                && o.id.len() <= 32
                && o.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !id_ok {
                p.push(format!("{}: 1 to 32 lower-case letters, digits, '-' or '_'", key("id")));
            } else if matches!(o.id.as_str(), "github" | "local") {
                p.push(format!("{}: {:?} is reserved for the built-in provider", key("id"), o.id));
            } else if seen.contains(&o.id.as_str()) {
                p.push(format!("{}: {:?} is used by another [[oidc]] entry", key("id"), o.id));
            }
            seen.push(&o.id);
            match Url::parse(&o.issuer) {
                Ok(u)
                    if u.scheme() == "https"
                        || (u.scheme() == "http" && is_loopback_host(u.host_str().unwrap_or(""))) =>
                {
                    if u.query().is_some() || u.fragment().is_some() {
                        p.push(format!("{}: must have no query or fragment (OIDC Discovery §2)", key("issuer")));
                    }
                }
                Ok(_) => p.push(format!("{}: must be an https URL (http only on loopback)", key("issuer"))),
                Err(_) => {
                    p.push(format!("{}: {:?} is not a URL (e.g. https://accounts.google.com)", key("issuer"), o.issuer))
                }
            }
            if o.client_id.is_empty() {
                p.push(format!("{}: required (the client registered at the provider)", key("client_id")));
            }
            if !o.scopes.iter().any(|s| s == "openid") {
                p.push(format!("{}: must include \"openid\"", key("scopes")));
            }
            if o.scopes.iter().any(|s| !crate::oauth::scope::is_scope_token(s)) {
                p.push(format!("{}: scope names are printable ASCII without spaces or quotes", key("scopes")));
            }
            if o.groups_claim.is_empty() {
                p.push(format!("{}: must name a claim", key("groups_claim")));
            }
            if o.timeout_secs == 0 || o.timeout_secs > 120 {
                p.push(format!("{}: must be between 1 and 120 seconds", key("timeout_secs")));
            }
            if o.jwks_refresh_secs > 86_400 {
                p.push(format!("{}: must be at most 86400 seconds", key("jwks_refresh_secs")));
            }
            if o.label.chars().any(char::is_control) {
                p.push(format!("{}: must not contain control characters", key("label")));
            }
        }
        let d = &self.oauth.default_provider;
        let known = (d == "github" && self.github.enabled()) || self.oidc.iter().any(|o| &o.id == d);
        if !d.is_empty() && !known {
            p.push(format!(
                "{}: {d:?} is not a configured redirect provider (github, or an [[oidc]] id)",
                setting("oauth.default_provider")
            ));
        }
    }

    /// Risky but legal settings, for the operator to read at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.store.kind == StoreKind::Redis && self.tokens.private_key_file.is_none() {
            w.push("store.type = \"redis\" without tokens.private_key_file: each replica generates its own signing key, so replicas will not accept each other's tokens".into());
        }
        for o in &self.oidc {
            if o.trust_unverified_email && (!o.allowed_emails.is_empty() || !o.allowed_email_domains.is_empty()) {
                w.push(format!(
                    "oidc {:?}: trust_unverified_email with an e-mail allow-list: anyone who can set an address at the provider passes",
                    o.id
                ));
            }
        }
        if self.cimd.enabled && self.cimd.allow_private_addresses {
            w.push("cimd.allow_private_addresses = true: for tests and development only; anyone can make this server fetch client metadata documents from loopback and private-network addresses".into());
        }
        if self.cimd.enabled && self.cimd.extra_ca_file.is_some() {
            w.push("cimd.extra_ca_file is set: client metadata document hosts are trusted with that CA too (tests and development)".into());
        }
        let issuer_host = Url::parse(&self.server.issuer).ok().and_then(|u| u.host_str().map(str::to_owned));
        let bind_ip = self.server.bind.parse::<SocketAddr>().ok().map(|a| a.ip());
        if let (Some(host), Some(ip)) = (issuer_host, bind_ip)
            && is_loopback_host(&host)
            && !ip.is_loopback()
        {
            w.push(format!(
                "server.issuer {:?} is a loopback URL but the server listens on {}: clients on other machines are sent to log in there; set server.issuer to the public URL they reach this server at",
                self.server.issuer, self.server.bind
            ));
        }
        if self.verify.forward_token {
            w.push("verify.forward_token = true: the MCP servers behind the proxy receive users' bearer tokens".into());
        }
        if self.resources.is_empty() {
            w.push(
                "no [[resources]] configured: any URL behind the proxy is treated as its own protected resource".into(),
            );
        }
        w
    }

    /// The embedded store's file.
    pub fn embedded_store_path(&self) -> PathBuf {
        self.store.path.clone().unwrap_or_else(|| self.server.data_dir.join("mcp-authd.redb"))
    }

    /// The issuer without a trailing slash, for building endpoint URLs.
    pub fn base_url(&self) -> &str {
        self.server.issuer.trim_end_matches('/')
    }

    /// `server.trusted_proxies`, parsed (validate() has checked them).
    pub fn trusted_proxy_nets(&self) -> Vec<IpNet> {
        self.server.trusted_proxies.iter().filter_map(|s| parse_net(s)).collect()
    }
}

/// Why `dir` (or, while it does not exist, the nearest existing parent it would be made in)
/// cannot be written; `None` when it can.
fn unwritable(dir: &std::path::Path) -> Option<String> {
    let mut at = dir;
    while !at.exists() {
        at = match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => std::path::Path::new("."),
        };
    }
    if !at.is_dir() {
        return Some(format!("cannot be created: {} is not a directory", at.display()));
    }
    // A probe file, removed at once: permissions alone do not tell about read-only mounts.
    let probe = at.join(format!(".mcp-authd-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) if at == dir => Some(format!("is not writable: {e}")),
        Err(e) => Some(format!("cannot be created in {}: {e}", at.display())),
    }
}

/// Parses `10.0.0.0/8` or a bare address (as a /32 or /128).
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// `localhost`, `127.x.y.z` or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn every_problem_is_reported_with_its_setting() {
        let mut c = Config::default();
        c.server.issuer = "http://auth.example.com".into();
        c.server.bind = "nowhere".into();
        c.tokens.code_ttl = 0;
        c.store.kind = StoreKind::Redis;
        let errs = c.validate().unwrap_err().0;
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with("server.bind (MCP_AUTHD__SERVER__BIND)"));
        assert!(errs[1].contains("must use https"));
        assert!(errs.iter().any(|e| e.starts_with("store.redis_url (MCP_AUTHD__STORE__REDIS_URL)")));
        assert!(errs.iter().any(|e| e.starts_with("tokens.code_ttl")));
    }

    #[test]
    fn oidc_settings_are_validated() {
        let mut c = Config::default();
        let good = OidcConfig {
            id: "corp".into(),
            issuer: "https://login.example.com/realms/main".into(),
            client_id: "mcp".into(),
            ..Default::default()
        };
        c.oidc = vec![good.clone()];
        c.oauth.default_provider = "corp".into();
        c.validate().expect("a minimal provider validates");
        c.oidc.push(OidcConfig {
            id: "corp".into(),
            issuer: "http://idp.example.com".into(),
            client_id: String::new(),
            scopes: vec!["profile".into()],
            timeout_secs: 0,
            ..Default::default()
        });
        c.oidc.push(OidcConfig { id: "Git Hub".into(), issuer: "not a url".into(), ..good.clone() });
        c.oidc.push(OidcConfig { id: "github".into(), ..good });
        c.oauth.default_provider = "nowhere".into();
        let errs = c.validate().unwrap_err().0;
        for want in [
            "oidc[1].id: \"corp\" is used by another",
            "oidc[1].issuer: must be an https URL",
            "oidc[1].client_id: required",
            "oidc[1].scopes: must include \"openid\"",
            "oidc[1].timeout_secs",
            "oidc[2].id: 1 to 32 lower-case",
            "oidc[2].issuer: \"not a url\" is not a URL",
            "oidc[3].id: \"github\" is reserved",
            "oauth.default_provider (MCP_AUTHD__OAUTH__DEFAULT_PROVIDER): \"nowhere\"",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "{want:?} missing from {errs:#?}");
        }
        assert_eq!(errs.len(), 9, "{errs:#?}");
    }

    #[test]
    fn cimd_settings_are_validated() {
        let mut c = Config::default();
        assert!(c.cimd.enabled && c.warnings().iter().all(|w| !w.contains("cimd")));
        c.cimd.allowed_domains = vec!["example.com".into(), "10.0.0.1".into()];
        c.cimd.max_document_bytes = 10;
        c.cimd.fetch_timeout_secs = 0;
        c.cimd.cache_min_ttl = 7200;
        c.cimd.cache_max_ttl = 3600;
        c.cimd.extra_ca_file = Some("/nonexistent/ca.pem".into());
        let errs = c.validate().unwrap_err().0;
        for want in [
            "cimd.allowed_domains (MCP_AUTHD__CIMD__ALLOWED_DOMAINS): \"10.0.0.1\": list domains",
            "cimd.max_document_bytes",
            "cimd.fetch_timeout_secs",
            "cimd.cache_min_ttl",
            "cimd.extra_ca_file",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "{want:?} missing from {errs:#?}");
        }
        assert_eq!(errs.len(), 5, "{errs:#?}");
        c.cimd.allow_private_addresses = true;
        assert!(c.warnings().iter().any(|w| w.starts_with("cimd.allow_private_addresses = true")));
    }

    #[test]
    fn the_cimd_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        let mut c = Config::default();
        c.server.data_dir = dir.path().join("data");
        c.cimd.extra_ca_file = Some(file);
        let problems = c.check_environment();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].starts_with("cimd.extra_ca_file (MCP_AUTHD__CIMD__EXTRA_CA_FILE):"), "{problems:#?}");
        assert!(problems[0].ends_with("holds no PEM certificate"), "{problems:#?}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let mut c = Config::default();
        c.github.client_secret = s;
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "LOCALHOST"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["localhost.evil.com", "10.0.0.1", "example.com", ""] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
