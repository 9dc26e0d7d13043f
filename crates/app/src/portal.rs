//! The Admin Portal's links and sessions. A link opens one session (even when two requests
//! race); a session lasts while it is used; a deleted organization closes its portal.

use trailmark_domain::Timestamp;
use trailmark_store::{NewPortalSession, PortalLink, PortalRedemption, PortalSession};

use crate::audit::{Change, Origin};
use crate::{AppError, Trailmark};

impl Trailmark {
    /// Stores a newly issued link (only its token's hash), recording who asked for it
    /// ([`crate::audit`]).
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`] if the link's organization does not exist.
    pub async fn issue_portal_link(
        &self,
        link: PortalLink,
        origin: &Origin,
    ) -> Result<(), AppError> {
        self.live_organization(&link.organization_id).await?;
        let (organization_id, intent) = (link.organization_id.clone(), link.intent);
        self.store().insert_portal_link(link).await?;
        self.audit(
            &organization_id,
            origin,
            Change::PortalLinkCreated {
                intent: intent.as_str(),
            },
        )
        .await
    }

    /// Opens the link whose token hashes to `token_hash`, creating `session`.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn redeem_portal_link(
        &self,
        token_hash: [u8; 32],
        session: NewPortalSession,
    ) -> Result<PortalRedemption, AppError> {
        Ok(self
            .store()
            .redeem_portal_link(token_hash, Timestamp::now(), session)
            .await?)
    }

    /// The open session whose cookie secret hashes to `secret_hash`, renewed until
    /// `renew_until`, with its organization's name; `None` if it expired or its organization
    /// was deleted.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn portal_session(
        &self,
        secret_hash: [u8; 32],
        renew_until: Timestamp,
    ) -> Result<Option<(PortalSession, String)>, AppError> {
        let Some(session) = self
            .store()
            .touch_portal_session(secret_hash, Timestamp::now(), renew_until)
            .await?
        else {
            return Ok(None);
        };
        Ok(self
            .store()
            .get_organization(&session.organization_id)
            .await?
            .map(|organization| (session, organization.name)))
    }
}
