//! Users defined in the configuration, with argon2id password hashes
//! (`mcp-authd hash-password`). Verification runs on the blocking pool, and an unknown user is
//! checked against a dummy hash so that response time does not reveal which names exist.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHash, PasswordVerifier};

use crate::config::{LocalConfig, SecretString};
use crate::store::User;

#[derive(Clone)]
struct Entry {
    username: String,
    hash: SecretString,
    email: Option<String>,
    groups: Vec<String>,
}

/// The configured users, by lower-case name.
#[derive(Clone)]
pub struct LocalUsers {
    users: Arc<HashMap<String, Entry>>,
    dummy: Arc<String>,
    /// SECURITY: each argon2id verification holds its memory cost (19 MiB by default); without a
    /// bound, concurrent login attempts would take 19 MiB each (32 at once: 600 MiB, seen under
    /// load). One verification per core at a time; the others wait their turn.
    verifying: Arc<tokio::sync::Semaphore>,
}

impl Default for LocalUsers {
    fn default() -> Self {
        Self { users: Arc::default(), dummy: Arc::default(), verifying: verifying() }
    }
}

fn verifying() -> Arc<tokio::sync::Semaphore> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    Arc::new(tokio::sync::Semaphore::new(cores))
}

/// Hashes a password for the configuration (argon2id, default parameters, random salt).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

impl LocalUsers {
    /// From `[local]` (hashes were validated by `Config::validate`).
    pub fn from_config(cfg: &LocalConfig) -> Self {
        let users = cfg
            .users
            .iter()
            .map(|u| {
                let e = Entry {
                    username: u.username.clone(),
                    hash: u.password_hash.clone(),
                    email: u.email.clone(),
                    groups: u.groups.clone(),
                };
                (u.username.to_lowercase(), e)
            })
            .collect();
        let dummy = hash_password("dummy password for timing equalisation").unwrap_or_default();
        Self { users: Arc::new(users), dummy: Arc::new(dummy), verifying: verifying() }
    }

    /// Adds a user at run time (`serve --demo`).
    pub fn with_user(mut self, username: &str, password_hash: String, email: Option<String>) -> Self {
        let mut users = (*self.users).clone();
        users.insert(
            username.to_lowercase(),
            Entry { username: username.into(), hash: SecretString::new(password_hash), email, groups: Vec::new() },
        );
        self.users = Arc::new(users);
        self
    }

    /// Whether no user is configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether a user of this name is configured (case-insensitive).
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(&username.to_lowercase())
    }

    /// Checks a name and password; the user on success.
    pub async fn authenticate(&self, username: &str, password: &str) -> Option<User> {
        let entry = self.users.get(&username.to_lowercase()).cloned();
        let hash = entry.as_ref().map(|e| e.hash.expose().to_owned()).unwrap_or_else(|| (*self.dummy).clone());
        let password = password.to_owned();
        let Ok(_permit) = self.verifying.acquire().await else {
            return None;
        };
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        let entry = entry.filter(|_| ok)?;
        Some(User {
            id: format!("local:{}", entry.username),
            name: entry.username,
            email: entry.email,
            provider: "local".into(),
            groups: entry.groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LocalUser;

    #[tokio::test]
    async fn authenticate() {
        let hash = hash_password("correct horse").unwrap();
        let cfg = LocalConfig {
            users: vec![LocalUser {
                username: "Alice".into(),
                password_hash: SecretString::new(hash),
                email: None,
                groups: vec![],
            }],
        };
        let users = LocalUsers::from_config(&cfg);
        let u = users.authenticate("alice", "correct horse").await.unwrap();
        assert_eq!((u.id.as_str(), u.name.as_str()), ("local:Alice", "Alice"));
        assert!(users.authenticate("alice", "wrong").await.is_none());
        assert!(users.authenticate("bob", "correct horse").await.is_none());
    }
}
