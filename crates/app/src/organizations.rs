//! Organizations: the tenants whose logs Trailmark keeps (WorkOS's organizations API, the subset
//! audit logs need). Deleting one leaves its log: an audit trail outlives the tenant record.

use trailmark_domain::Timestamp;
use trailmark_domain::organization::{Organization, OrganizationChanges};
use trailmark_store::{OrganizationFilter, Page, PageRequest, StreamRecord};

use crate::audit::{Change, Origin};
use crate::console::is_trailmark_log;
use crate::{AppError, Trailmark};

impl Trailmark {
    /// A new organization from validated changes.
    ///
    /// # Errors
    ///
    /// [`AppError::Conflict`] (`external_id`) or storage errors.
    pub async fn create_organization(
        &self,
        changes: OrganizationChanges,
    ) -> Result<Organization, AppError> {
        Ok(self
            .store()
            .insert_organization(changes.into_new_organization(Timestamp::now()))
            .await?)
    }

    /// The live organization `id`.
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`] if it does not exist or was deleted.
    pub async fn live_organization(&self, id: &str) -> Result<Organization, AppError> {
        refuse_trailmark_log(id)?;
        self.store()
            .get_organization(id)
            .await?
            .ok_or_else(|| AppError::OrganizationNotFound(id.to_owned()))
    }

    /// Live organizations matching `filter`, one page.
    ///
    /// # Errors
    ///
    /// Storage errors; a cursor the list did not issue.
    pub async fn list_organizations(
        &self,
        filter: OrganizationFilter,
        page: PageRequest,
    ) -> Result<Page<Organization>, AppError> {
        let mut page = self.store().list_organizations(filter, page).await?;
        // Trailmark's own log has the oldest id there can be: it is only ever the last item
        // of a page, so leaving it out never breaks the cursors.
        page.items
            .retain(|organization| !is_trailmark_log(&organization.id));
        Ok(page)
    }

    /// Applies `changes` to the live organization `id`.
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`], [`AppError::Conflict`] (`external_id`).
    pub async fn update_organization(
        &self,
        id: &str,
        changes: OrganizationChanges,
    ) -> Result<Organization, AppError> {
        let mut organization = self.live_organization(id).await?;
        changes.apply_to(&mut organization, Timestamp::now());
        if !self
            .store()
            .update_organization(organization.clone())
            .await?
        {
            return Err(AppError::OrganizationNotFound(id.to_owned()));
        }
        Ok(organization)
    }

    /// Deletes the organization `id`; its events and log stay.
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`].
    pub async fn delete_organization(&self, id: &str) -> Result<(), AppError> {
        refuse_trailmark_log(id)?;
        if !self
            .store()
            .delete_organization(id, Timestamp::now())
            .await?
        {
            return Err(AppError::OrganizationNotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Sets the organization's retention period, recording who asked ([`crate::audit`]).
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`].
    pub async fn set_retention(
        &self,
        id: &str,
        days: u32,
        origin: &Origin,
    ) -> Result<Organization, AppError> {
        refuse_trailmark_log(id)?;
        let organization = self
            .store()
            .set_retention(id, days, Timestamp::now())
            .await?
            .ok_or_else(|| AppError::OrganizationNotFound(id.to_owned()))?;
        self.audit(id, origin, Change::RetentionSet { days })
            .await?;
        Ok(organization)
    }

    /// The organization's first log stream, if any: what WorkOS's audit-log configuration
    /// reports.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn first_stream(&self, id: &str) -> Result<Option<StreamRecord>, AppError> {
        Ok(self
            .store()
            .list_streams(Some(id))
            .await?
            .into_iter()
            .next())
    }
}

/// Trailmark's own log is not an organization of the API's: not found there.
///
/// # Errors
///
/// [`AppError::OrganizationNotFound`] for [`crate::console::TRAILMARK_LOG`].
pub(crate) fn refuse_trailmark_log(id: &str) -> Result<(), AppError> {
    if is_trailmark_log(id) {
        Err(AppError::OrganizationNotFound(id.to_owned()))
    } else {
        Ok(())
    }
}
