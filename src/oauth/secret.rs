//! Secret values: generation, digests, constant-time comparison, redacted `Debug`.
//!
//! Client secrets, registration access tokens, authorization codes and refresh tokens are 256
//! random bits, so a plain SHA-256 digest is a safe way to store them (no dictionary to attack,
//! unlike passwords, which use argon2 in `upstream::local`), and it lets the store index them.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `len` random bytes from the OS CSPRNG, base64url without padding.
pub fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `value`, base64url: the form in which secrets are stored and looked up.
pub fn digest(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Constant-time equality of two strings (the length is not secret).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Whether `presented` hashes to `stored_digest`, compared in constant time.
pub fn verify_digest(presented: &str, stored_digest: &str) -> bool {
    constant_time_eq(&digest(presented), stored_digest)
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Generates a fresh 256-bit value.
            pub fn generate() -> Self {
                Self(random_token(32))
            }
            /// Wraps a value received from a client.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The secret itself; only for sending it to its owner.
            pub fn secret(&self) -> &str {
                &self.0
            }
            /// The digest under which it is stored.
            pub fn digest(&self) -> String {
                digest(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type!(
    /// RFC 6749 §2.3.1 client secret.
    ClientSecret
);
secret_type!(
    /// RFC 7592 §3 registration access token.
    RegistrationToken
);
secret_type!(
    /// RFC 6749 §4.1.2 authorization code.
    AuthCode
);
secret_type!(
    /// RFC 6749 §1.5 refresh token.
    RefreshToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = ClientSecret::new("s3cret");
        assert_eq!(format!("{s:?}"), "ClientSecret([redacted])");
        assert_eq!(s.secret(), "s3cret");
    }

    #[test]
    fn generated_values_are_long_and_distinct() {
        let a = AuthCode::generate();
        let b = AuthCode::generate();
        assert_eq!(a.secret().len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn digest_round_trip() {
        let t = RefreshToken::generate();
        assert!(verify_digest(t.secret(), &t.digest()));
        assert!(!verify_digest("other", &t.digest()));
        // RFC 6234 test vector for SHA-256("abc").
        assert_eq!(digest("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
