//! Revocations held in memory for the /verify hot path (RFC 7009 effects without a store
//! round trip per request).
//!
//! The set is loaded from the store at start, updated directly when this process revokes, and,
//! for a shared store, kept current by its feed ([`crate::store::FeedEvent`]). While the feed is
//! down the set may be stale, so [`Revocations::is_revoked`] answers "don't know" and the caller
//! fails closed (or, for tokens verified before, uses the last known set for a configured grace:
//! [`Revocations::is_revoked_within`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;

use crate::jwt::AccessClaims;
use crate::store::{FeedEvent, Revocation, RevocationTarget, Store, StoreResult, now};

/// One map per kind, so the hot path looks up borrowed `&str`s without allocating.
#[derive(Debug, Default)]
struct Set {
    /// jti → (revoked_at, expires_at), and likewise for the others.
    tokens: HashMap<String, (i64, i64)>,
    families: HashMap<String, (i64, i64)>,
    clients: HashMap<String, (i64, i64)>,
    users: HashMap<String, (i64, i64)>,
}

impl Set {
    fn len(&self) -> usize {
        self.tokens.len() + self.families.len() + self.clients.len() + self.users.len()
    }

    fn map_mut(&mut self, target: &RevocationTarget) -> (&mut HashMap<String, (i64, i64)>, String) {
        match target {
            RevocationTarget::Token(id) => (&mut self.tokens, id.clone()),
            RevocationTarget::Family(id) => (&mut self.families, id.clone()),
            RevocationTarget::Client(id) => (&mut self.clients, id.clone()),
            RevocationTarget::User(id) => (&mut self.users, id.clone()),
        }
    }

    fn insert(&mut self, rev: &Revocation) {
        let (map, key) = self.map_mut(&rev.target);
        map.insert(key, (rev.revoked_at, rev.expires_at));
    }

    fn prune(&mut self, now: i64) {
        for map in [&mut self.tokens, &mut self.families, &mut self.clients, &mut self.users] {
            map.retain(|_, (_, exp)| *exp > now);
        }
    }
}

/// The in-memory revocation set and whether it is current.
/// What the revocation set looks a token up by.
#[derive(Debug, Clone, Copy)]
pub struct TokenIds<'a> {
    /// `jti`.
    pub jti: &'a str,
    /// `sid`: the grant family.
    pub sid: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// `sub`.
    pub sub: &'a str,
    /// `iat`.
    pub iat: i64,
}

impl<'a> From<&'a AccessClaims> for TokenIds<'a> {
    fn from(c: &'a AccessClaims) -> Self {
        Self { jti: &c.jti, sid: &c.sid, client_id: &c.client_id, sub: &c.sub, iat: c.iat }
    }
}

#[derive(Debug, Default)]
pub struct Revocations {
    set: RwLock<Set>,
    current: AtomicBool,
    /// When the set stopped being current (seconds since the epoch); 0 while it is, or before
    /// it was ever loaded.
    lost_at: AtomicI64,
}

impl Revocations {
    /// Whether a token is covered by a revocation; `None` when the set may be stale.
    pub fn is_revoked(&self, claims: &TokenIds<'_>) -> Option<bool> {
        if !self.current.load(Ordering::Acquire) {
            return None;
        }
        Some(self.lookup(claims))
    }

    /// [`Self::is_revoked`], or while the set has been stale for at most `grace` seconds, the
    /// answer of the set as last known.
    pub fn is_revoked_within(&self, claims: &TokenIds<'_>, grace: u64) -> Option<bool> {
        if let Some(answer) = self.is_revoked(claims) {
            return Some(answer);
        }
        let lost_at = self.lost_at.load(Ordering::Acquire);
        let within = lost_at > 0 && now().saturating_sub(lost_at) < i64::try_from(grace).unwrap_or(i64::MAX);
        within.then(|| self.lookup(claims))
    }

    fn lookup(&self, claims: &TokenIds<'_>) -> bool {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        set.tokens.contains_key(claims.jti)
            || set.families.contains_key(claims.sid)
            // Client and user revocations cover what was issued up to then.
            || set.clients.get(claims.client_id).is_some_and(|(at, _)| claims.iat <= *at)
            || set.users.get(claims.sub).is_some_and(|(at, _)| claims.iat <= *at)
    }

    /// The set is no longer current (the feed or a reload failed).
    fn lost(&self) {
        if self.current.swap(false, Ordering::AcqRel) {
            self.lost_at.store(now(), Ordering::Release);
        }
    }

    /// Whether a grant family is revoked; `None` when the set may be stale.
    pub fn is_family_revoked(&self, family_id: &str) -> Option<bool> {
        if !self.current.load(Ordering::Acquire) {
            return None;
        }
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        Some(set.families.contains_key(family_id))
    }

    /// Adds one revocation to the set.
    pub fn apply(&self, rev: &Revocation) {
        let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
        let now = now();
        if set.len() > 1024 {
            set.prune(now);
        }
        if rev.expires_at > now {
            set.insert(rev);
        }
    }

    /// Replaces the set with the store's and marks it current.
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        let all = store.revocations().await?;
        let mut fresh = Set::default();
        for r in &all {
            fresh.insert(r);
        }
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.current.store(true, Ordering::Release);
        self.lost_at.store(0, Ordering::Release);
        Ok(())
    }

    /// Records a revocation in the store and applies it here at once.
    pub async fn revoke(&self, store: &dyn Store, target: RevocationTarget, expires_at: i64) -> StoreResult<()> {
        let rev = Revocation { target, revoked_at: now(), expires_at };
        store.revoke(&rev).await?;
        self.apply(&rev);
        tracing::info!(audit = "revocation", target = ?rev.target, "revoked");
        Ok(())
    }

    /// Loads the set and, for a shared store, follows its feed for as long as the process runs.
    pub async fn start(self: &Arc<Self>, store: Arc<dyn Store>) -> StoreResult<()> {
        let Some(mut feed) = store.revocation_feed() else {
            return self.reload(store.as_ref()).await;
        };
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(event) = feed.next().await {
                match event {
                    FeedEvent::Connected => match this.reload(store.as_ref()).await {
                        Ok(()) => tracing::info!("revocation feed connected; revocations reloaded"),
                        Err(err) => {
                            this.lost();
                            tracing::warn!(error = %err, "revocation reload failed; /verify fails closed");
                        }
                    },
                    FeedEvent::Revoked(rev) => this.apply(&rev),
                    FeedEvent::Disconnected => {
                        this.lost();
                        tracing::warn!("revocation feed lost; /verify fails closed until it is back");
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: "u1".into(),
            aud: "a".into(),
            exp: iat + 100,
            iat,
            jti: "j1".into(),
            client_id: "c1".into(),
            scope: String::new(),
            sid: "f1".into(),
            auth_time: iat,
            preferred_username: None,
            email: None,
            groups: Vec::new(),
        }
    }

    #[test]
    fn targets_and_staleness() {
        let r = Revocations::default();
        let now = now();
        assert_eq!(r.is_revoked(&(&claims(now)).into()), None, "not loaded yet: unknown");
        r.current.store(true, Ordering::Release);
        assert_eq!(r.is_revoked(&(&claims(now)).into()), Some(false));
        r.apply(&Revocation { target: RevocationTarget::Client("c1".into()), revoked_at: now, expires_at: now + 10 });
        assert_eq!(r.is_revoked(&(&claims(now)).into()), Some(true));
        assert_eq!(r.is_revoked(&(&claims(now + 1)).into()), Some(false), "issued after the client revocation");
        r.apply(&Revocation { target: RevocationTarget::Family("f1".into()), revoked_at: now, expires_at: now + 10 });
        assert_eq!(r.is_revoked(&(&claims(now + 1)).into()), Some(true));
        assert_eq!(r.is_family_revoked("f1"), Some(true));
        r.apply(&Revocation { target: RevocationTarget::Token("old".into()), revoked_at: now, expires_at: now - 1 });
        assert!(!r.set.read().unwrap().tokens.contains_key("old"));
    }

    #[test]
    fn outage_grace_uses_the_last_known_set_for_a_while() {
        let r = Revocations::default();
        let now = now();
        let (fresh, revoked) = (claims(now + 1), claims(now));
        assert_eq!(r.is_revoked_within(&(&fresh).into(), 60), None, "never loaded: no grace");
        r.current.store(true, Ordering::Release);
        r.apply(&Revocation { target: RevocationTarget::Client("c1".into()), revoked_at: now, expires_at: now + 10 });
        r.lost();
        assert_eq!(r.is_revoked(&(&fresh).into()), None, "stale");
        assert_eq!(r.is_revoked_within(&(&fresh).into(), 0), None, "no grace configured");
        assert_eq!(r.is_revoked_within(&(&fresh).into(), 60), Some(false), "within the grace");
        assert_eq!(r.is_revoked_within(&(&revoked).into(), 60), Some(true), "the last known set still counts");
        r.lost_at.store(now - 61, Ordering::Release);
        assert_eq!(r.is_revoked_within(&(&fresh).into(), 60), None, "grace over");
        r.lost();
        assert_eq!(r.lost_at.load(Ordering::Acquire), now - 61, "losing it again does not restart the grace");
    }
}
