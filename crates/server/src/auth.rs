//! Who is calling: the `Caller` extractor turns `Authorization: Bearer sk_…` into a scope and an
//! optional organization restriction (`Trailmark::authenticate`), or rejects the request with
//! 401; a known key over its rate limit gets 429 (`crate::rate_limit`).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use trailmark_app::audit::Origin;
use trailmark_app::keys::Principal;
use trailmark_domain::api_key::Scope;

use crate::error::ApiError;
use crate::rate_limit::ClientAddress;
use crate::state::AppState;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id (`key_bootstrap` for `TRAILMARK_API_KEY`), recorded as the actor of the
    /// audit events Trailmark writes about itself.
    pub key_id: String,
    /// The key's name in those events.
    pub key_name: String,
    pub scope: Scope,
    /// `Some` when the key is restricted to one organization.
    pub organization: Option<String>,
    /// The client's address (`unknown` without a connection, as in router tests).
    pub address: String,
}

impl Caller {
    /// The caller as the origin of a change the application records.
    pub fn origin(&self) -> Origin {
        Origin::ApiKey {
            key_id: self.key_id.clone(),
            key_name: self.key_name.clone(),
            address: self.address.clone(),
        }
    }

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
        let address = parts
            .extensions
            .get::<ClientAddress>()
            .map_or_else(|| "unknown".to_owned(), |ClientAddress(ip)| ip.to_string());
        let caller = state
            .app
            .authenticate(presented)
            .await?
            .map(|principal: Principal| Caller {
                key_id: principal.key_id,
                key_name: principal.key_name,
                scope: principal.scope,
                organization: principal.organization,
                address,
            })
            .ok_or(ApiError::Unauthorized)?;
        state.rate_limiter.check_key(&caller.key_id)?;
        Ok(caller)
    }
}
