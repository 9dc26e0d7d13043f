//! The ledger: signed checkpoints of organizations' logs, and the proofs over them.
//!
//! A background task signs a checkpoint for every log that has grown since its last one, at most
//! once per interval (1 s by default). A reader who needs a checkpoint covering everything so far
//! (an export, an inclusion proof with no size given, the first checkpoint of a log) gets one
//! signed on the spot. Origins are `<ledger name>/<organization id>`; the ledger name is also the
//! signing key's name.

use std::collections::HashMap;
use std::time::Duration;

use trailmark_domain::Timestamp;
use trailmark_ledger::checkpoint::{Checkpoint, NoteSigner};
use trailmark_ledger::cosignature::{CosignatureVerifier, with_cosignatures};
use trailmark_ledger::leaf::leaf_bytes;
use trailmark_ledger::tlog::{TILE_HEIGHT, TILE_WIDTH, TilePath, entry_bundle};
use trailmark_ledger::tree::leaf_hash;
use trailmark_ledger::witness::AddCheckpoint;
use trailmark_store::{Hash, StoreError, StoredCheckpoint, StoredEvent};

use crate::{AppError, NotFoundKind, Trailmark};

/// Signs checkpoints for this instance.
pub(crate) struct Ledger {
    signer: NoteSigner,
    interval: Duration,
    /// Serializes signing so two requests do not sign the same size twice.
    signing: tokio::sync::Mutex<()>,
    witnesses: Vec<WitnessConfig>,
    /// The size each witness (by position) last cosigned of each organization's log, as far as
    /// this instance knows; unknown, it asks from 0 and learns the size from the 409.
    cosigned: std::sync::Mutex<HashMap<(usize, String), u64>>,
    http: reqwest::Client,
}

impl Ledger {
    pub(crate) fn new(
        signer: NoteSigner,
        interval: Duration,
        witnesses: Vec<WitnessConfig>,
    ) -> Self {
        Ledger {
            signer,
            interval,
            signing: tokio::sync::Mutex::new(()),
            witnesses,
            cosigned: std::sync::Mutex::default(),
            // A witness that does not answer in time leaves the checkpoint without its
            // cosignature; the next checkpoint asks again.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }
}

/// A C2SP tlog-witness to ask for cosignatures (`--witness URL=KEY`): its submission prefix
/// (`<url>/add-checkpoint` is posted to) and its cosignature verifier key.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    pub url: String,
    pub key: CosignatureVerifier,
}

/// What asking one witness gave.
enum Asked {
    Cosigned(String),
    /// The witness's latest cosigned size differs from the one sent (409).
    Conflict(u64),
}

/// An event's audit path in the tree of `tree_size` leaves, with that tree's root.
#[derive(Debug, Clone, PartialEq)]
pub struct InclusionProof {
    pub event: StoredEvent,
    pub tree_size: u64,
    pub root: Hash,
    pub proof: Vec<Hash>,
    /// The checkpoint signed for `tree_size`, when the caller asked for the latest tree.
    pub checkpoint: Option<StoredCheckpoint>,
}

/// Proof that the log of `first` events is a prefix of the log of `second` events.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub first_root: Hash,
    pub second_root: Hash,
    pub proof: Vec<Hash>,
}

impl Trailmark {
    /// The ledger's key name.
    pub fn ledger_name(&self) -> &str {
        self.inner.ledger.signer.name()
    }

    /// The ledger's verifier key (C2SP signed-note format).
    pub fn verifier_key(&self) -> String {
        self.inner.ledger.signer.verifier_key()
    }

    /// Signs and stores a checkpoint of the first `size` leaves of an organization's log.
    async fn sign(&self, organization_id: &str, size: u64) -> Result<StoredCheckpoint, AppError> {
        let started = std::time::Instant::now();
        let signed = self.sign_now(organization_id, size).await;
        self.metrics().checkpoint(signed.is_ok(), started.elapsed());
        signed
    }

    async fn sign_now(
        &self,
        organization_id: &str,
        size: u64,
    ) -> Result<StoredCheckpoint, AppError> {
        let signer = &self.inner.ledger.signer;
        let root = self.store().tree_root(organization_id, size).await?;
        let checkpoint = Checkpoint {
            origin: format!("{}/{organization_id}", signer.name()),
            size,
            root,
        };
        let stored = StoredCheckpoint {
            organization_id: organization_id.to_owned(),
            tree_size: size,
            root,
            note: signer.sign(&checkpoint),
            created_at: Timestamp::now(),
        };
        self.store().insert_checkpoint(stored.clone()).await?;
        Ok(self.cosign(stored).await)
    }

    /// `stored` with the cosignatures of every witness that gave one (C2SP tlog-witness), the
    /// cosigned note stored in its place. A witness that refuses or fails is logged and
    /// skipped: the checkpoint stands without its cosignature, and the next one asks again.
    async fn cosign(&self, stored: StoredCheckpoint) -> StoredCheckpoint {
        let ledger = &self.inner.ledger;
        let mut lines = Vec::new();
        for (position, witness) in ledger.witnesses.iter().enumerate() {
            match self.ask(position, witness, &stored).await {
                Ok(line) => lines.push(line),
                Err(reason) => tracing::warn!(
                    witness = %witness.url,
                    organization_id = %stored.organization_id,
                    tree_size = stored.tree_size,
                    "the witness did not cosign: {reason}"
                ),
            }
        }
        if lines.is_empty() {
            return stored;
        }
        let note = with_cosignatures(&stored.note, lines.iter().map(String::as_str));
        match self
            .store()
            .add_cosignatures(&stored.organization_id, stored.tree_size, note.clone())
            .await
        {
            Ok(()) => StoredCheckpoint { note, ..stored },
            Err(error) => {
                tracing::warn!("cannot store the cosignatures: {error}");
                stored
            }
        }
    }

    /// One witness's valid cosignature line on `stored`, sending the consistency proof from the
    /// size it last cosigned (learnt from its 409 when not known).
    async fn ask(
        &self,
        position: usize,
        witness: &WitnessConfig,
        stored: &StoredCheckpoint,
    ) -> Result<String, String> {
        let ledger = &self.inner.ledger;
        let key = (position, stored.organization_id.clone());
        let known = ledger
            .cosigned
            .lock()
            .ok()
            .and_then(|sizes| sizes.get(&key).copied())
            .unwrap_or(0);
        let mut old = known;
        for _ in 0..2 {
            match self.submit(witness, stored, old).await? {
                Asked::Cosigned(response) => {
                    if let Ok(mut sizes) = ledger.cosigned.lock() {
                        sizes.insert(key, stored.tree_size);
                    }
                    let cosigned = with_cosignatures(&stored.note, response.lines());
                    return match witness.key.cosigned_at(&cosigned) {
                        Ok(Some(_)) => response
                            .lines()
                            .find(|line| {
                                line.starts_with(&format!("\u{2014} {} ", witness.key.name()))
                            })
                            .map(str::to_owned)
                            .ok_or_else(|| "no cosignature line by its key".to_owned()),
                        Ok(None) => Err("its answer holds no cosignature by its key".into()),
                        Err(error) => Err(error.to_string()),
                    };
                }
                Asked::Conflict(latest) if latest != old && latest <= stored.tree_size => {
                    old = latest;
                }
                Asked::Conflict(latest) => {
                    return Err(format!(
                        "it has cosigned {latest} events of this log, which this log cannot extend to {}",
                        stored.tree_size
                    ));
                }
            }
        }
        Err("its cosigned size kept changing".into())
    }

    /// Posts `add-checkpoint` from `old` to `stored`.
    async fn submit(
        &self,
        witness: &WitnessConfig,
        stored: &StoredCheckpoint,
        old: u64,
    ) -> Result<Asked, String> {
        let proof = if old == 0 || old == stored.tree_size {
            Vec::new()
        } else {
            self.store()
                .consistency_proof(&stored.organization_id, old, stored.tree_size)
                .await
                .map_err(|e| e.to_string())?
        };
        let body = AddCheckpoint {
            old,
            proof,
            note: stored.note.clone(),
        }
        .encode();
        let url = format!("{}/add-checkpoint", witness.url.trim_end_matches('/'));
        let response = self
            .inner
            .ledger
            .http
            .post(url)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| e.to_string())?;
        match status {
            200 => Ok(Asked::Cosigned(text)),
            409 => text
                .trim()
                .parse()
                .map(Asked::Conflict)
                .map_err(|_| format!("409 without a size: {text}")),
            _ => Err(format!("{status}: {}", text.trim())),
        }
    }

    /// The latest checkpoint with the cosignatures witnesses gave it (signature lines after the
    /// log's own), for delivery to customers and streams.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn cosigned_checkpoint(
        &self,
        organization_id: &str,
    ) -> Result<StoredCheckpoint, AppError> {
        self.latest_checkpoint(organization_id).await
    }

    /// The latest checkpoint, signing one first if the log has none yet.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn latest_checkpoint(
        &self,
        organization_id: &str,
    ) -> Result<StoredCheckpoint, AppError> {
        if let Some(latest) = self.store().latest_checkpoint(organization_id).await? {
            return Ok(latest);
        }
        let _signing = self.inner.ledger.signing.lock().await;
        let size = self.store().log_size(organization_id).await?;
        self.sign(organization_id, size).await
    }

    /// A checkpoint covering every event committed so far, signed now if the latest falls short.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn fresh_checkpoint(
        &self,
        organization_id: &str,
    ) -> Result<StoredCheckpoint, AppError> {
        let _signing = self.inner.ledger.signing.lock().await;
        let size = self.store().log_size(organization_id).await?;
        match self.store().latest_checkpoint(organization_id).await? {
            Some(latest) if latest.tree_size >= size => Ok(latest),
            _ => self.sign(organization_id, size).await,
        }
    }

    /// The inclusion proof of event `event_id` of `organization_id`'s log in the tree of
    /// `tree_size` leaves, or, with `None`, in a fresh checkpoint's tree (returned with it).
    ///
    /// # Errors
    ///
    /// [`AppError::NotFound`] if the organization has no such event; a problem naming
    /// `tree_size` if the tree does not contain the event or is larger than the log.
    pub async fn inclusion_proof(
        &self,
        organization_id: &str,
        event_id: &str,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, AppError> {
        let event = self
            .store()
            .get_event(event_id)
            .await?
            .filter(|event| event.organization_id == organization_id)
            .ok_or_else(|| AppError::not_found(NotFoundKind::Event, event_id))?;
        let (size, checkpoint) = match tree_size {
            Some(size) => (size, None),
            None => {
                let checkpoint = self.fresh_checkpoint(organization_id).await?;
                (checkpoint.tree_size, Some(checkpoint))
            }
        };
        if event.sequence >= size {
            return Err(AppError::field(
                "invalid_value",
                "tree_size",
                format!(
                    "tree_size must be greater than the event's sequence ({})",
                    event.sequence
                ),
            ));
        }
        let log_size = self.store().log_size(organization_id).await?;
        if size > log_size {
            return Err(AppError::field(
                "invalid_value",
                "tree_size",
                format!("the log has only {log_size} events"),
            ));
        }
        let proof = self
            .store()
            .inclusion_proofs(organization_id, vec![event.sequence], size)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let root = self.store().tree_root(organization_id, size).await?;
        Ok(InclusionProof {
            event,
            tree_size: size,
            root,
            proof,
            checkpoint,
        })
    }

    /// A C2SP tlog-tiles resource of the organization's log (`trailmark_ledger::tlog`): a hash
    /// tile, or an entry bundle of the events' leaf bytes, within the tree of the latest signed
    /// checkpoint, the one tlog clients read first. Tiles never change once full; a partial one
    /// is served at the width asked for, as long as the checkpoint's tree holds it.
    ///
    /// # Errors
    ///
    /// [`NotFoundKind::Tile`] for a tile the latest checkpoint's tree does not hold, and for an
    /// entry bundle holding an event whose contents retention removed (its leaf bytes are gone;
    /// the hash tiles still prove it); storage errors.
    pub async fn tlog_tile(
        &self,
        organization_id: &str,
        tile: TilePath,
    ) -> Result<Vec<u8>, AppError> {
        let size = self.latest_checkpoint(organization_id).await?.tree_size;
        let missing = || AppError::not_found(NotFoundKind::Tile, tile.path());
        match tile {
            TilePath::Hashes {
                level,
                index,
                width,
            } => {
                let hashes = self
                    .store()
                    .subtree_hashes(
                        organization_id,
                        size,
                        level * TILE_HEIGHT,
                        index.saturating_mul(TILE_WIDTH),
                        width,
                    )
                    .await
                    .map_err(|error| match error {
                        StoreError::Ledger(_) => missing(),
                        other => other.into(),
                    })?;
                Ok(hashes.concat())
            }
            TilePath::Entries { index, width } => {
                let first = index.saturating_mul(TILE_WIDTH);
                if first.saturating_add(width) > size {
                    return Err(missing());
                }
                let events = self
                    .store()
                    .events_after(organization_id, first.checked_sub(1), width as usize)
                    .await?;
                let entries = events
                    .iter()
                    .take(width as usize)
                    .map(|event| {
                        // An entry is the leaf's preimage: a stub's is gone, and a bundle that
                        // did not hash to the tiles' leaves would be worse than none.
                        let bytes = leaf_bytes(&event.leaf_object());
                        (event.purged_at.is_none() && leaf_hash(&bytes) == event.leaf_hash)
                            .then_some(bytes)
                            .ok_or_else(missing)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if entries.len() as u64 != width {
                    return Err(missing());
                }
                entry_bundle(entries.iter().map(Vec::as_slice)).map_err(|_| missing())
            }
        }
    }

    /// The consistency proof between the trees of `first` and `second` leaves.
    ///
    /// # Errors
    ///
    /// A problem naming `first` (0, or more than `second`) or `second` (larger than the log).
    pub async fn consistency_proof(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, AppError> {
        if first == 0 || first > second {
            return Err(AppError::field(
                "invalid_value",
                "first",
                "first must be at least 1 and at most second",
            ));
        }
        let log_size = self.store().log_size(organization_id).await?;
        if second > log_size {
            return Err(AppError::field(
                "invalid_value",
                "second",
                format!("the log has only {log_size} events"),
            ));
        }
        let proof = self
            .store()
            .consistency_proof(organization_id, first, second)
            .await?;
        Ok(ConsistencyProof {
            first,
            second,
            first_root: self.store().tree_root(organization_id, first).await?,
            second_root: self.store().tree_root(organization_id, second).await?,
            proof,
        })
    }

    /// Signs checkpoints for grown logs, every interval, until shutdown.
    pub(crate) async fn sign_grown_logs_forever(&self) {
        let mut ticks = tokio::time::interval(self.inner.ledger.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let grown = match self.store().logs_needing_checkpoint().await {
                Ok(grown) => grown,
                Err(error) => {
                    tracing::warn!(%error, "cannot list logs to checkpoint");
                    continue;
                }
            };
            let _signing = self.inner.ledger.signing.lock().await;
            for (organization_id, size) in grown {
                if let Err(error) = self.sign(&organization_id, size).await {
                    tracing::error!(organization = %organization_id, %error, "cannot sign a checkpoint");
                }
            }
        }
    }
}
