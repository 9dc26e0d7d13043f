//! The ledger service: signs checkpoints of organizations' logs and serves proofs.
//!
//! A background task signs a checkpoint for every log that has grown since its last one, at most
//! once per interval (1 s by default). A reader who needs a checkpoint covering everything so far
//! (an export, or the first checkpoint of a log) gets one signed on the spot.
//!
//! Origins are `<ledger name>/<organization id>`; the ledger name is also the signing key's name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use trailmark_domain::Timestamp;
use trailmark_ledger::checkpoint::{Checkpoint, NoteSigner};
use trailmark_store::{Store, StoreError, StoredCheckpoint};

use crate::metrics::Metrics;

/// Signs checkpoints for this instance.
pub struct Ledger {
    signer: NoteSigner,
    interval: Duration,
    /// Serializes on-demand signing so two requests do not sign the same size twice.
    signing: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Ledger {
    pub fn new(signer: NoteSigner, interval: Duration, metrics: Arc<Metrics>) -> Self {
        Ledger {
            signer,
            interval,
            signing: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// Signs and stores a checkpoint of the first `size` leaves of an organization's log.
    async fn sign(
        &self,
        store: &dyn Store,
        organization_id: &str,
        size: u64,
    ) -> Result<StoredCheckpoint, StoreError> {
        let started = Instant::now();
        let signed = self.sign_now(store, organization_id, size).await;
        self.metrics.checkpoint(signed.is_ok(), started.elapsed());
        signed
    }

    async fn sign_now(
        &self,
        store: &dyn Store,
        organization_id: &str,
        size: u64,
    ) -> Result<StoredCheckpoint, StoreError> {
        let root = store.tree_root(organization_id, size).await?;
        let checkpoint = Checkpoint {
            origin: format!("{}/{organization_id}", self.signer.name()),
            size,
            root,
        };
        let stored = StoredCheckpoint {
            organization_id: organization_id.to_owned(),
            tree_size: size,
            root,
            note: self.signer.sign(&checkpoint),
            created_at: Timestamp::now(),
        };
        store.insert_checkpoint(stored.clone()).await?;
        Ok(stored)
    }

    /// The latest checkpoint, signing one first if the log has none yet.
    pub async fn latest(
        &self,
        store: &dyn Store,
        organization_id: &str,
    ) -> Result<StoredCheckpoint, StoreError> {
        if let Some(latest) = store.latest_checkpoint(organization_id).await? {
            return Ok(latest);
        }
        let _signing = self.signing.lock().await;
        let size = store.log_size(organization_id).await?;
        self.sign(store, organization_id, size).await
    }

    /// A checkpoint covering every event committed so far, signed now if the latest falls short.
    pub async fn fresh(
        &self,
        store: &dyn Store,
        organization_id: &str,
    ) -> Result<StoredCheckpoint, StoreError> {
        let _signing = self.signing.lock().await;
        let size = store.log_size(organization_id).await?;
        match store.latest_checkpoint(organization_id).await? {
            Some(latest) if latest.tree_size >= size => Ok(latest),
            _ => self.sign(store, organization_id, size).await,
        }
    }

    /// Signs checkpoints for grown logs, every interval, forever.
    pub fn spawn_signer(self: Arc<Self>, store: Arc<dyn Store>) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let grown = match store.logs_needing_checkpoint().await {
                    Ok(grown) => grown,
                    Err(error) => {
                        tracing::warn!(%error, "cannot list logs to checkpoint");
                        continue;
                    }
                };
                let _signing = self.signing.lock().await;
                for (organization_id, size) in grown {
                    if let Err(error) = self.sign(store.as_ref(), &organization_id, size).await {
                        tracing::error!(organization = %organization_id, %error, "cannot sign a checkpoint");
                    }
                }
            }
        });
    }
}
