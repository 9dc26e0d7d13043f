//! API keys: who a presented `sk_…` key is. Keys are looked up by their SHA-256; found keys are
//! cached briefly, so ingest at thousands of requests a second does not read the key table each
//! time; unknown keys are never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use trailmark_domain::api_key::{ApiKeySecret, Scope};

use crate::{AppError, Trailmark};

/// The id under which the `TRAILMARK_API_KEY` key acts.
const BOOTSTRAP_KEY_ID: &str = "key_bootstrap";
/// How long a found key is trusted without re-reading it.
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; the cache is cleared when full (keys are few in practice).
const KEY_CACHE_MAX: usize = 10_000;

/// Whom a key belongs to, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (`key_bootstrap` for `TRAILMARK_API_KEY`), recorded as the actor of the
    /// audit events Trailmark writes about itself.
    pub key_id: String,
    /// What the key is called in the events it causes: `TRAILMARK_API_KEY`, or `<scope> key`
    /// (stored keys carry no name of their own yet).
    pub key_name: String,
    pub scope: Scope,
    /// `Some` when the key is restricted to one organization.
    pub organization: Option<String>,
}

#[derive(Default)]
pub(crate) struct KeyCache(Mutex<HashMap<[u8; 32], (Principal, Instant)>>);

impl Trailmark {
    /// The principal of the presented key, or `None` if no such key exists.
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
        let cache = &self.inner.keys.0;
        let cached = cache.lock().ok().and_then(|cache| {
            cache
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
                .map(|(principal, _)| principal.clone())
        });
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(record) = self.store().find_api_key(hash).await? else {
            return Ok(None);
        };
        let principal = Principal {
            key_id: record.id,
            key_name: format!("{} key", record.scope.as_str()),
            scope: record.scope,
            organization: record.organization_id,
        };
        if let Ok(mut cache) = cache.lock() {
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (principal.clone(), Instant::now()));
        }
        Ok(Some(principal))
    }
}

/// Compares two key hashes in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
