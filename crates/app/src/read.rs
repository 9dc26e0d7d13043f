//! Reading the logs: searches, single events, log sizes.

use trailmark_store::{SearchPage, SearchRequest, StoredEvent};

use crate::{AppError, NotFoundKind, Trailmark};

impl Trailmark {
    /// One organization's events matching `request`, in sequence order. Every acknowledged
    /// event is visible (read-your-writes).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn search(
        &self,
        organization_id: &str,
        request: SearchRequest,
    ) -> Result<SearchPage, AppError> {
        Ok(self.store().search_events(organization_id, request).await?)
    }

    /// The event `id`, if it belongs to `organization` (any organization when `None`).
    ///
    /// # Errors
    ///
    /// [`AppError::NotFound`] otherwise, so another organization's event does not leak.
    pub async fn event(
        &self,
        id: &str,
        organization: Option<&str>,
    ) -> Result<StoredEvent, AppError> {
        self.store()
            .get_event(id)
            .await?
            .filter(|event| organization.is_none_or(|own| own == event.organization_id))
            .ok_or_else(|| AppError::not_found(NotFoundKind::Event, id))
    }

    /// The number of events in an organization's log.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn log_size(&self, organization_id: &str) -> Result<u64, AppError> {
        Ok(self.store().log_size(organization_id).await?)
    }
}
