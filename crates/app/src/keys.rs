//! API keys: who a presented `sk_…` key is, and the keys' lifecycle (create, list, revoke).
//!
//! Keys are looked up by their SHA-256. A found key is cached for [`KEY_CACHE_TTL`], so ingest
//! at thousands of requests a second does not read the key table each time; unknown keys are
//! never cached. That TTL bounds how stale a revocation can be: an instance that did not revoke
//! a key refuses it at most [`KEY_CACHE_TTL`] later (the instance that revoked it, at once), well
//! within the 5 s every instance over one database must keep. An expiry is checked on every
//! request, cached or not.
//!
//! `last_used_at` costs no write per request: each instance writes a key's last use at most once
//! per [`LAST_USE_EVERY`], in a task of its own after the request was authenticated (best
//! effort: a failed write is logged and retried on a later use). So the stored time is at most
//! about a minute old while a key is in use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope, key_is_live, parse_key_name};
use trailmark_domain::id::IdKind;
use trailmark_domain::{FieldProblem, Problems};
use trailmark_store::{ApiKeyRecord, Revocation};

use crate::audit::{Change, Origin};
use crate::{AppError, NotFoundKind, Trailmark};

/// The id under which the `TRAILMARK_API_KEY` key acts.
const BOOTSTRAP_KEY_ID: &str = "key_bootstrap";
/// How long a found key is trusted without re-reading it: the bound on how long another
/// instance still accepts a revoked key.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// How often, at most, one instance writes one key's `last_used_at`.
pub const LAST_USE_EVERY: Duration = Duration::from_secs(60);
/// Entries kept at most; the cache is cleared when full (keys are few in practice).
const KEY_CACHE_MAX: usize = 10_000;

/// Whom a key belongs to, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (`key_bootstrap` for `TRAILMARK_API_KEY`), recorded as the actor of the
    /// audit events Trailmark writes about itself.
    pub key_id: String,
    /// The key's name, as recorded in the events it causes (`TRAILMARK_API_KEY` for that key).
    pub key_name: String,
    pub scope: Scope,
    /// `Some` when the key is restricted to one organization.
    pub organization: Option<String>,
}

impl Principal {
    /// Whether this key may manage keys: an unrestricted admin key.
    pub fn manages_keys(&self) -> bool {
        self.scope == Scope::Admin && self.organization.is_none()
    }
}

/// A key to create, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: String,
    pub scope: Scope,
    pub organization_id: Option<String>,
    pub expires_at: Option<Timestamp>,
}

/// A key just created: its record, and its text, which exists nowhere else.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub record: ApiKeyRecord,
    pub secret: ApiKeySecret,
}

struct CachedKey {
    principal: Principal,
    expires_at: Option<Timestamp>,
    read_at: Instant,
}

#[derive(Default)]
pub(crate) struct KeyCache {
    found: Mutex<HashMap<[u8; 32], CachedKey>>,
    /// When this instance last wrote each key's `last_used_at`.
    last_use_written: Mutex<HashMap<String, Instant>>,
}

/// The record of a new key, checked: a name, an expiry still ahead of `now`, entropy for its
/// text. The organization's existence is the caller's to check (it needs storage). Shared by
/// [`Trailmark::create_api_key`] and `trailmark keys create`.
///
/// # Errors
///
/// Every problem with the name and the expiry, each naming its field.
pub fn new_key_record(
    new: NewApiKey,
    now: Timestamp,
    entropy: [u8; 32],
) -> Result<CreatedApiKey, Problems> {
    let mut problems = Vec::new();
    let name = parse_key_name(&new.name).map_err(|p| problems.push(p)).ok();
    if let Some(expires_at) = new.expires_at
        && expires_at <= now
    {
        problems.push(FieldProblem {
            code: "invalid_value",
            field: "expires_at".into(),
            message: "expires_at must be in the future".into(),
        });
    }
    let Some(name) = name.filter(|_| problems.is_empty()) else {
        return Err(Problems::Malformed(problems));
    };
    let secret = ApiKeySecret::from_entropy(entropy);
    Ok(CreatedApiKey {
        record: ApiKeyRecord {
            id: IdKind::ApiKey.generate().into_string(),
            hash: secret.hash(),
            name,
            prefix: secret.prefix(),
            scope: new.scope,
            organization_id: new.organization_id,
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
        },
        secret,
    })
}

impl Trailmark {
    /// The principal of the presented key, or `None` if no such key exists or it expired.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, AppError> {
        let hash = ApiKeySecret::new(presented).hash();
        if let Some(bootstrap) = &self.inner.config.bootstrap_key_hash
            && constant_time_eq(bootstrap, &hash)
        {
            return Ok(Some(Principal {
                key_id: BOOTSTRAP_KEY_ID.into(),
                key_name: "TRAILMARK_API_KEY".into(),
                scope: Scope::Admin,
                organization: None,
            }));
        }
        let now = Timestamp::now();
        let cache = &self.inner.keys.found;
        let cached = cache.lock().ok().and_then(|cache| {
            cache
                .get(&hash)
                .filter(|cached| cached.read_at.elapsed() < KEY_CACHE_TTL)
                .map(|cached| (cached.principal.clone(), cached.expires_at))
        });
        let (principal, expires_at) = match cached {
            Some(cached) => cached,
            None => {
                let Some(record) = self.store().find_api_key(hash).await? else {
                    return Ok(None);
                };
                let principal = Principal {
                    key_id: record.id,
                    key_name: record.name,
                    scope: record.scope,
                    organization: record.organization_id,
                };
                if let Ok(mut cache) = cache.lock() {
                    if cache.len() >= KEY_CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(
                        hash,
                        CachedKey {
                            principal: principal.clone(),
                            expires_at: record.expires_at,
                            read_at: Instant::now(),
                        },
                    );
                }
                (principal, record.expires_at)
            }
        };
        if !key_is_live(expires_at, now) {
            return Ok(None);
        }
        self.note_key_use(&principal.key_id, now);
        Ok(Some(principal))
    }

    /// Writes `key_id`'s last use, unless this instance did less than [`LAST_USE_EVERY`] ago.
    fn note_key_use(&self, key_id: &str, now: Timestamp) {
        let Ok(mut written) = self.inner.keys.last_use_written.lock() else {
            return;
        };
        if written
            .get(key_id)
            .is_some_and(|at| at.elapsed() < LAST_USE_EVERY)
        {
            return;
        }
        if written.len() >= KEY_CACHE_MAX {
            written.clear();
        }
        written.insert(key_id.to_owned(), Instant::now());
        drop(written);
        let (app, key_id) = (self.clone(), key_id.to_owned());
        tokio::spawn(async move {
            if let Err(error) = app.store().touch_api_key(&key_id, now).await {
                tracing::warn!(%key_id, %error, "cannot record the key's last use");
                // Tried again on the key's next use.
                if let Ok(mut written) = app.inner.keys.last_use_written.lock() {
                    written.remove(&key_id);
                }
            }
        });
    }

    /// Creates a key and records who did (in its organization's log when it is restricted to
    /// one). The returned secret is the only copy of the key's text.
    ///
    /// # Errors
    ///
    /// [`AppError::Problems`] naming `name` or `expires_at`, [`AppError::OrganizationNotFound`],
    /// storage errors.
    pub async fn create_api_key(
        &self,
        new: NewApiKey,
        origin: &Origin,
    ) -> Result<CreatedApiKey, AppError> {
        let mut entropy = [0; 32];
        getrandom::fill(&mut entropy)
            .map_err(|e| AppError::Internal(format!("no entropy for a key: {e}")))?;
        let created = new_key_record(new, Timestamp::now(), entropy)?;
        if let Some(organization_id) = &created.record.organization_id {
            self.live_organization(organization_id).await?;
        }
        self.store().insert_api_key(created.record.clone()).await?;
        self.audit_key(origin, Change::ApiKeyCreated(&created.record))
            .await?;
        Ok(created)
    }

    /// Every key, oldest first (their hashes are in the records; adapters never show them).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, AppError> {
        Ok(self.store().list_api_keys().await?)
    }

    /// Revokes the key `id`: this instance refuses it at once, every other one within
    /// [`KEY_CACHE_TTL`]. Unless `force`, the last live unrestricted admin key is kept.
    ///
    /// # Errors
    ///
    /// [`AppError::NotFound`] ([`NotFoundKind::ApiKey`]), [`AppError::LastAdminKey`], storage
    /// errors.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        force: bool,
        origin: &Origin,
    ) -> Result<ApiKeyRecord, AppError> {
        let revoked = match self
            .store()
            .revoke_api_key(id, !force, Timestamp::now())
            .await?
        {
            Revocation::Revoked(record) => record,
            Revocation::NotFound => return Err(AppError::not_found(NotFoundKind::ApiKey, id)),
            Revocation::LastAdminKey => return Err(AppError::LastAdminKey(id.to_owned())),
        };
        if let Ok(mut cache) = self.inner.keys.found.lock() {
            cache.remove(&revoked.hash);
        }
        self.audit_key(origin, Change::ApiKeyRevoked(&revoked))
            .await?;
        Ok(revoked)
    }

    /// Records a key's creation or revocation in the log of the organization the key is
    /// restricted to. An unrestricted key belongs to no organization's log: its changes are
    /// recorded in Trailmark's own log, whoever made them (an operator or an admin key).
    async fn audit_key(&self, origin: &Origin, change: Change<'_>) -> Result<(), AppError> {
        let (Change::ApiKeyCreated(key) | Change::ApiKeyRevoked(key)) = &change else {
            return Ok(());
        };
        match key.organization_id.clone() {
            Some(organization_id) => match self.audit(&organization_id, origin, change).await {
                // A key outlives a deleted organization, whose log takes no more events.
                Err(AppError::OrganizationNotFound(_)) => Ok(()),
                other => other,
            },
            None => {
                let (action, target, metadata) = change.parts("");
                self.record_operator_action(origin, action, target, metadata)
                    .await
            }
        }
    }
}

/// Compares two key hashes in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(name: &str, expires_at: Option<i64>) -> NewApiKey {
        NewApiKey {
            name: name.into(),
            scope: Scope::Read,
            organization_id: None,
            expires_at: expires_at.map(Timestamp::from_unix_millis),
        }
    }

    #[test]
    fn a_new_key_keeps_only_its_hash_and_prefix_and_names_every_problem() {
        let now = Timestamp::from_unix_millis(10_000);
        let created = new_key_record(asked(" ci ", Some(20_000)), now, [9; 32]).expect("valid");
        assert_eq!(created.record.name, "ci");
        assert_eq!(created.record.hash, created.secret.hash());
        assert!(created.secret.expose().starts_with(&created.record.prefix));
        assert!(created.record.id.starts_with("key_"));
        let Err(Problems::Malformed(problems)) =
            new_key_record(asked("", Some(10_000)), now, [9; 32])
        else {
            panic!("an empty name and a past expiry are refused");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["name", "expires_at"]);
    }
}
