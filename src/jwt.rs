//! Signing keys and JWT access tokens (RFC 9068), published as a JWK Set (RFC 7517).
//!
//! The key id is the RFC 7638 thumbprint of the public key, so it is stable and derivable by
//! anyone holding the JWKS. Keys come from PEM files (`tokens.private_key_file`) or are generated
//! on first start under `<data_dir>/keys`, where `mcp-authd keys rotate` adds a new current key
//! and keeps the previous one published until every token it signed has expired.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, SigningAlgorithm};

/// RFC 9068 §2.1: the `typ` of a JWT access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of an access token (RFC 9068 §2.2, RFC 8693 §4.3 `client_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: this server.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The protected resource (RFC 8707) the token is for.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Unique id, for revocation.
    pub jti: String,
    /// The OAuth client.
    pub client_id: String,
    /// Granted scope, space separated.
    pub scope: String,
    /// Grant family (one login); revoking it revokes every token of the login.
    pub sid: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The user's login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The user's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's organisations / groups (RFC 9068 §2.2.3.1 `groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Why a token was not accepted. The message is safe to show the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TokenError(pub &'static str);

/// One key: what it signs with, how it verifies, and its public JWK.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// `validation` without the `exp` check (revoking an expired token).
    validation_any_exp: Validation,
    jwk: Jwk,
}

/// The signing key and the previous keys still accepted.
pub struct Keys {
    current: Key,
    previous: Vec<Key>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("current", &self.current.kid).finish_non_exhaustive()
    }
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
fn thumbprint(jwk: &Jwk) -> anyhow::Result<String> {
    let canonical = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, p.e, p.n),
        AlgorithmParameters::EllipticCurve(p) => {
            let crv = serde_json::to_string(&p.curve)?;
            format!(r#"{{"crv":{crv},"kty":"EC","x":"{}","y":"{}"}}"#, p.x, p.y)
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            let crv = serde_json::to_string(&p.curve)?;
            format!(r#"{{"crv":{crv},"kty":"OKP","x":"{}"}}"#, p.x)
        }
        _ => bail!("only RSA, EC and OKP keys sign tokens here"),
    };
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

impl Key {
    /// Reads a PKCS#8 (or PKCS#1 RSA) PEM private key; its type decides the algorithm.
    fn from_pem(pem: &[u8], issuer: &str) -> anyhow::Result<Self> {
        let (encoding, alg) = if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
            (k, Algorithm::RS256)
        } else if let Ok(k) = EncodingKey::from_ec_pem(pem) {
            (k, Algorithm::ES256)
        } else if let Ok(k) = EncodingKey::from_ed_pem(pem) {
            (k, Algorithm::EdDSA)
        } else {
            bail!("not an RSA, P-256 or Ed25519 private key in PEM form");
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).context("deriving the public key")?;
        let kid = thumbprint(&jwk)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).context("building the verification key")?;
        let mut validation = Validation::new(alg);
        // We are the issuer: clocks agree, so no leeway; a token is dead at `exp`.
        validation.leeway = 0;
        validation.validate_aud = false; // the audience is matched against the resource by /verify
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let mut validation_any_exp = validation.clone();
        validation_any_exp.validate_exp = false;
        validation_any_exp.required_spec_claims.remove("exp");
        Ok(Self { kid, alg, encoding, decoding, validation, validation_any_exp, jwk })
    }
}

/// A fresh private key of `alg`, as PKCS#8 PEM.
pub fn generate_pem(alg: SigningAlgorithm) -> anyhow::Result<String> {
    let unspecified = |_| anyhow::anyhow!("key generation failed");
    let der: Vec<u8> = match alg {
        SigningAlgorithm::RS256 => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(unspecified)?;
            kp.as_der().map_err(unspecified)?.as_ref().to_vec()
        }
        SigningAlgorithm::ES256 => {
            let kp =
                aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(unspecified)?;
            kp.to_pkcs8v1().map_err(unspecified)?.as_ref().to_vec()
        }
        SigningAlgorithm::EdDSA => {
            let kp = aws_lc_rs::signature::Ed25519KeyPair::generate().map_err(unspecified)?;
            kp.to_pkcs8v1().map_err(unspecified)?.as_ref().to_vec()
        }
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

/// The generated-keys directory's manifest.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Keyring {
    current: String,
    #[serde(default)]
    previous: Vec<Retired>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Retired {
    kid: String,
    retired_at: i64,
}

fn keys_dir(config: &Config) -> PathBuf {
    config.server.data_dir.join("keys")
}

/// Writes a file readable by the owner only.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn read_keyring(dir: &Path) -> anyhow::Result<Option<Keyring>> {
    let path = dir.join("keyring.json");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Adds a new key under `dir` and makes it current; returns its kid.
fn add_generated_key(dir: &Path, config: &Config, ring: &mut Keyring) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pem = generate_pem(config.tokens.algorithm)?;
    let key = Key::from_pem(pem.as_bytes(), &config.server.issuer)?;
    write_private(&dir.join(format!("{}.pem", key.kid)), pem.as_bytes())?;
    if !ring.current.is_empty() {
        ring.previous.push(Retired { kid: std::mem::take(&mut ring.current), retired_at: crate::store::now() });
    }
    ring.current = key.kid.clone();
    write_private(&dir.join("keyring.json"), &serde_json::to_vec_pretty(ring)?)?;
    Ok(key.kid)
}

/// `mcp-authd keys rotate`: a new current key; the old one stays published until the tokens
/// it signed have expired. Returns the new kid. Servers pick it up when they restart.
pub fn rotate(config: &Config) -> anyhow::Result<String> {
    if config.tokens.private_key_file.is_some() {
        bail!(
            "tokens.private_key_file is set: rotate by pointing it at a new key and listing the old one in tokens.previous_key_files"
        );
    }
    let dir = keys_dir(config);
    let mut ring = read_keyring(&dir)?.unwrap_or_default();
    add_generated_key(&dir, config, &mut ring)
}

/// Whether `pem` is a private key `serve` could sign with.
pub fn parses_as_signing_key(pem: &[u8]) -> bool {
    Key::from_pem(pem, "https://check.invalid").is_ok()
}

impl Keys {
    /// Loads the configured keys, or the generated ones (generating the first on first start).
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let issuer = &config.server.issuer;
        let read = |p: &Path| -> anyhow::Result<Key> {
            let pem = std::fs::read(p).with_context(|| format!("reading key {}", p.display()))?;
            Key::from_pem(&pem, issuer).with_context(|| format!("key {}", p.display()))
        };
        let (current, previous) = if let Some(file) = &config.tokens.private_key_file {
            let prev = config.tokens.previous_key_files.iter().map(|p| read(p)).collect::<anyhow::Result<_>>()?;
            (read(file)?, prev)
        } else {
            let dir = keys_dir(config);
            let mut ring = match read_keyring(&dir)? {
                Some(ring) => ring,
                None => {
                    let mut ring = Keyring::default();
                    let kid = add_generated_key(&dir, config, &mut ring)?;
                    tracing::info!(%kid, dir = %dir.display(), "generated a signing key");
                    ring
                }
            };
            // Forget keys whose last token has expired.
            let horizon = crate::store::now() - config.tokens.access_token_ttl as i64;
            let before = ring.previous.len();
            ring.previous.retain(|r| r.retired_at > horizon);
            if ring.previous.len() != before {
                write_private(&dir.join("keyring.json"), &serde_json::to_vec_pretty(&ring)?)?;
            }
            let path = |kid: &str| dir.join(format!("{kid}.pem"));
            let prev = ring.previous.iter().map(|r| read(&path(&r.kid))).collect::<anyhow::Result<_>>()?;
            (read(&path(&ring.current))?, prev)
        };
        Ok(Self::new(current, previous))
    }

    fn new(current: Key, previous: Vec<Key>) -> Self {
        let mut index = HashMap::new();
        index.insert(current.kid.clone(), 0);
        for (i, k) in previous.iter().enumerate() {
            index.entry(k.kid.clone()).or_insert(i + 1);
        }
        Self { current, previous, index }
    }

    /// Keys built from PEM strings (tests, tools).
    pub fn from_pems(current: &str, previous: &[&str], issuer: &str) -> anyhow::Result<Self> {
        let prev = previous.iter().map(|p| Key::from_pem(p.as_bytes(), issuer)).collect::<anyhow::Result<_>>()?;
        Ok(Self::new(Key::from_pem(current.as_bytes(), issuer)?, prev))
    }

    fn by_kid(&self, kid: &str) -> Option<&Key> {
        match self.index.get(kid)? {
            0 => Some(&self.current),
            i => self.previous.get(i - 1),
        }
    }

    /// The current key id.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    /// The algorithm of the current key (for `*_signing_alg_values_supported`).
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut algs = vec![self.current.alg];
        for k in &self.previous {
            if !algs.contains(&k.alg) {
                algs.push(k.alg);
            }
        }
        algs
    }

    /// Signs access token claims with the current key (`typ: at+jwt`, `kid`).
    pub fn sign(&self, claims: &AccessClaims) -> anyhow::Result<String> {
        let mut header = Header::new(self.current.alg);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(self.current.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.current.encoding).context("signing an access token")
    }

    /// Verifies an access token: `typ`, known `kid`, the key's own algorithm (no `none`, no
    /// HS256-with-the-public-key), signature, `iss`, `exp`. The audience is left to the caller.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let key = self.key_for(token)?;
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &key.validation).map(|data| data.claims).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError("token expired"),
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenError("token from another issuer"),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError("bad signature"),
                _ => TokenError("invalid token"),
            },
        )
    }

    /// Verifies signature and issuer but accepts expired tokens (RFC 7009 revocation of a
    /// token that may be past its `exp`).
    pub fn verify_ignoring_expiry(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let key = self.key_for(token)?;
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &key.validation_any_exp)
            .map(|d| d.claims)
            .map_err(|_| TokenError("invalid token"))
    }

    /// The key a token names, after the header checks every verification shares: `typ`, a
    /// known `kid`, and that key's own algorithm.
    fn key_for(&self, token: &str) -> Result<&Key, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError("malformed token"))?;
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            // RFC 9068 §4: reject JWTs that are not access tokens (e.g. ID tokens).
            return Err(TokenError("not an access token (typ)"));
        }
        let key = header.kid.as_deref().and_then(|kid| self.by_kid(kid)).ok_or(TokenError("unknown signing key"))?;
        if header.alg != key.alg {
            // SECURITY: the algorithm is the key's, never the token's choice.
            return Err(TokenError("algorithm does not match the signing key"));
        }
        Ok(key)
    }

    /// The public keys, current first (RFC 7517 §5).
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: std::iter::once(&self.current).chain(&self.previous).map(|k| k.jwk.clone()).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://auth.example.com";

    fn claims(exp_in: i64) -> AccessClaims {
        let now = crate::store::now();
        AccessClaims {
            iss: ISS.into(),
            sub: "42".into(),
            aud: "https://mcp.example.com/mcp".into(),
            exp: now + exp_in,
            iat: now,
            jti: "j1".into(),
            client_id: "c1".into(),
            scope: "mcp".into(),
            sid: "f1".into(),
            auth_time: now,
            preferred_username: Some("octocat".into()),
            email: None,
            groups: Vec::new(),
        }
    }

    /// jsonwebtoken needs exactly one crypto backend; this signs and verifies with each
    /// algorithm so a backend mix-up fails here rather than at the first request.
    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in [SigningAlgorithm::RS256, SigningAlgorithm::ES256, SigningAlgorithm::EdDSA] {
            let pem = generate_pem(alg).unwrap();
            let keys = Keys::from_pems(&pem, &[], ISS).unwrap();
            let token = keys.sign(&claims(60)).unwrap();
            assert_eq!(keys.verify(&token).unwrap(), claims(60), "{alg:?}");
            assert_eq!(keys.current_kid().len(), 43);
            let jwks = serde_json::to_value(keys.jwks()).unwrap();
            assert_eq!(jwks["keys"][0]["kid"], keys.current_kid());
            assert_eq!(jwks["keys"][0]["use"], "sig");
            assert!(jwks["keys"][0].get("d").is_none(), "private part must not be published");
        }
    }

    #[test]
    fn rfc7638_thumbprint_vector() {
        // RFC 7638 §3.1 example key.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk: Jwk = serde_json::from_value(serde_json::json!({"kty":"RSA","n":n,"e":"AQAB","alg":"RS256"})).unwrap();
        assert_eq!(thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let pem = generate_pem(SigningAlgorithm::RS256).unwrap();
        let keys = Keys::from_pems(&pem, &[], ISS).unwrap();
        let good = keys.sign(&claims(60)).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let payload = parts[1];
        // alg: none
        let none =
            format!("{}.{}.", enc(serde_json::json!({"alg":"none","typ":"at+jwt","kid":keys.current_kid()})), payload);
        assert!(keys.verify(&none).is_err());
        // HS256 keyed with the public key's JWK text.
        let public = serde_json::to_vec(&keys.jwks().keys[0]).unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(keys.current_kid().into());
        let hs = jsonwebtoken::encode(&h, &claims(60), &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(keys.verify(&hs).unwrap_err(), TokenError("algorithm does not match the signing key"));
        // Signed by another key.
        let other = Keys::from_pems(&generate_pem(SigningAlgorithm::RS256).unwrap(), &[], ISS).unwrap();
        assert_eq!(keys.verify(&other.sign(&claims(60)).unwrap()).unwrap_err(), TokenError("unknown signing key"));
        // Tampered payload.
        let tampered = format!("{}.{}.{}", parts[0], enc(serde_json::json!({"sub":"admin"})), parts[2]);
        assert!(keys.verify(&tampered).is_err());
        // Expired.
        assert_eq!(keys.verify(&keys.sign(&claims(-1)).unwrap()).unwrap_err(), TokenError("token expired"));
        assert!(keys.verify_ignoring_expiry(&keys.sign(&claims(-1)).unwrap()).is_ok());
        // Wrong typ.
        let mut idt = Header::new(Algorithm::RS256);
        idt.kid = Some(keys.current_kid().into());
        idt.typ = Some("JWT".into());
        let id_token = jsonwebtoken::encode(&idt, &claims(60), &keys.current.encoding).unwrap();
        assert_eq!(keys.verify(&id_token).unwrap_err(), TokenError("not an access token (typ)"));
        // Garbage.
        for junk in ["", "a.b.c", "....", "eyJhbGciOiJub25lIn0"] {
            assert!(keys.verify(junk).is_err());
        }
    }

    #[test]
    fn rotation_keeps_previous_key_valid() {
        let dir = std::env::temp_dir().join(format!("mcp-authd-keys-{}", crate::oauth::secret::random_token(6)));
        let mut config = Config::default();
        config.server.data_dir = dir.clone();
        config.server.issuer = ISS.into();
        config.tokens.algorithm = SigningAlgorithm::ES256;
        let first = Keys::load(&config).unwrap();
        let token = first.sign(&claims(60)).unwrap();
        assert_eq!(Keys::load(&config).unwrap().current_kid(), first.current_kid(), "stable across restarts");
        let new_kid = rotate(&config).unwrap();
        let second = Keys::load(&config).unwrap();
        assert_eq!(second.current_kid(), new_kid);
        assert_ne!(new_kid, first.current_kid());
        assert!(second.verify(&token).is_ok(), "old tokens still verify");
        assert_eq!(second.jwks().keys.len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
