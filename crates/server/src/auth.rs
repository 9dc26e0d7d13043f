//! Who is calling: the `Caller` extractor turns `Authorization: Bearer sk_…` into a scope and an
//! optional organization restriction, or rejects the request with 401.
//!
//! Keys are looked up by their SHA-256. Found keys are cached briefly so ingest at thousands of
//! requests a second does not read the key table each time; unknown keys are never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use trailmark_domain::api_key::{ApiKeySecret, Scope};

use crate::error::ApiError;
use crate::state::AppState;

/// The id under which the `TRAILMARK_API_KEY` key acts.
const BOOTSTRAP_KEY_ID: &str = "key_bootstrap";

/// How long a found key is trusted without re-reading it.
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; the cache is cleared when full (keys are few in practice).
const KEY_CACHE_MAX: usize = 10_000;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id (`key_bootstrap` for `TRAILMARK_API_KEY`), recorded as the actor of the
    /// audit events Trailmark writes about itself.
    pub key_id: String,
    pub scope: Scope,
    /// `Some` when the key is restricted to one organization.
    pub organization: Option<String>,
}

impl Caller {
    /// # Errors
    ///
    /// 403 if the key's scope does not allow `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.scope.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "This API key has the '{}' scope; this request needs '{}'.",
                self.scope.as_str(),
                needed.as_str()
            )))
        }
    }

    /// # Errors
    ///
    /// 403 if the key is restricted to another organization.
    pub fn require_organization(&self, organization_id: &str) -> Result<(), ApiError> {
        match &self.organization {
            Some(own) if own != organization_id => Err(ApiError::Forbidden(
                "This API key is restricted to another organization.".into(),
            )),
            _ => Ok(()),
        }
    }

    /// # Errors
    ///
    /// 403 if the key is restricted to one organization: the request concerns the whole
    /// environment (creating organizations or schemas).
    pub fn require_unrestricted(&self) -> Result<(), ApiError> {
        if self.organization.is_some() {
            Err(ApiError::Forbidden("This API key is restricted to one organization; this request needs an unrestricted key.".into()))
        } else {
            Ok(())
        }
    }
}

#[derive(Default)]
pub(crate) struct KeyCache(Mutex<HashMap<[u8; 32], (Caller, Instant)>>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let hash = ApiKeySecret::new(presented).hash();

        if let Some(bootstrap) = &state.config.bootstrap_key_hash
            && constant_time_eq(bootstrap, &hash)
        {
            return Ok(Caller {
                key_id: BOOTSTRAP_KEY_ID.into(),
                scope: Scope::Admin,
                organization: None,
            });
        }
        let cached = state.keys.0.lock().ok().and_then(|cache| {
            cache
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
                .map(|(caller, _)| caller.clone())
        });
        if let Some(caller) = cached {
            return Ok(caller);
        }
        let record = state
            .store
            .find_api_key(hash)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let caller = Caller {
            key_id: record.id,
            scope: record.scope,
            organization: record.organization_id,
        };
        if let Ok(mut cache) = state.keys.0.lock() {
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (caller.clone(), Instant::now()));
        }
        Ok(caller)
    }
}

/// Compares two key hashes in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
