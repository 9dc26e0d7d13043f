//! Instances that hand each other their appends, so that one organization's appends are
//! sequenced by one instance.
//!
//! Without it, instances that take appends for one organization take turns on its head's row
//! lock: each turn waits for the other instance's commit, and two instances did 0.80x of one
//! (`trailmark-bench postgres`). With `--cluster-listen`, each organization has an owner among
//! the live instances that sequence (`--cluster-sequencers`, one by default; [`members`]:
//! rendezvous hashing over the rows they renew), and the others
//! hand it their prepared appends ([`peer`]) over an authenticated connection ([`channel`], in
//! the bytes of [`wire`]); the owner commits them in its own turns beside its own appends and
//! answers with their receipts. So one organization's turns never alternate between instances,
//! and each sequencer's committers write only the organizations it owns.
//!
//! Ownership only chooses who does the work; what keeps the log right is unchanged: the head's
//! row lock (two instances that both believe they own an organization just take turns, as
//! without a cluster) and idempotency claims, which make an unanswered hand-over safe to commit
//! here after all ([`peer`] says how). Appends without a claim (Trailmark's own events) are
//! never handed over.

mod channel;
mod members;
mod peer;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::StoreError;
use crate::model::{AppendOutcome, AppendRequest};
use crate::observe::{Handover, StoreObserver};
use crate::postgres::appender::Appender;
use crate::rules::PreparedAppend;
use members::{Member, Members};
use peer::{Handed, Peers};
use wire::Refusal;

/// How an instance joins the others over the same database.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where this instance takes its peers' appends.
    pub listen: SocketAddr,
    /// `HOST:PORT` at which the other instances reach `listen`; by default the address
    /// listened on (with the port chosen, for port 0), which must then name one interface.
    pub advertise: Option<String>,
    /// A key every instance has and no one else: the channel's secret is derived from it (the
    /// CLI gives the secrets key, which the instances share already).
    pub key: [u8; 32],
    /// How long a peer's answer is waited for before the append is committed here after all:
    /// longer than any commit of a healthy database, shorter than a client's patience.
    pub answer_timeout: Duration,
    /// How many of the instances sequence organizations (`members`' module says why few);
    /// every instance should be given the same number.
    pub sequencers: usize,
}

impl ClusterConfig {
    /// Listens at `listen`, advertised as itself, with the channel's secret derived from
    /// `key`, waiting 10 s for an answer, with one instance sequencing every organization.
    pub fn new(listen: SocketAddr, key: [u8; 32]) -> Self {
        ClusterConfig {
            listen,
            advertise: None,
            key,
            answer_timeout: Duration::from_secs(10),
            sequencers: 1,
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("answer_timeout", &self.answer_timeout)
            .field("sequencers", &self.sequencers)
            .finish_non_exhaustive()
    }
}

/// This instance's part in the cluster; its tasks end when it is dropped.
pub(crate) struct Cluster {
    members: Arc<Members>,
    peers: Peers,
    observer: Arc<dyn StoreObserver>,
    /// The heartbeat and the listener (which holds an [`Appender`], so it must end for the
    /// appender's committers to end).
    _tasks: JoinSet<()>,
}

impl Cluster {
    /// Listens at `config.listen`, takes its place among the members, and starts the heartbeat.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the address cannot be listened on or the database not
    /// reached.
    pub(crate) async fn join(
        config: &ClusterConfig,
        pool: &Pool,
        appender: Appender,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<Cluster, StoreError> {
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot listen for peers on {}: {e}", config.listen))
        })?;
        let advertise = match &config.advertise {
            Some(address) => address.clone(),
            None => {
                let bound = listener.local_addr().map_err(|e| {
                    StoreError::Unavailable(format!("the address listened on for peers: {e}"))
                })?;
                if bound.ip().is_unspecified() {
                    return Err(StoreError::Unavailable(format!(
                        "--cluster-listen {} listens on every interface: say with --cluster-advertise which address the other instances reach it at",
                        config.listen
                    )));
                }
                bound.to_string()
            }
        };
        let secret = Arc::new(channel::Secret::derive(&config.key));
        members::forget_old(pool).await?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)
            .map_err(|e| StoreError::Unavailable(format!("the system's random generator: {e}")))?;
        let members = Arc::new(Members::new(
            Member {
                id: hex::encode(id),
                address: advertise,
            },
            config.sequencers,
        ));
        members::heartbeat(pool, &members).await?;
        let mut tasks = JoinSet::new();
        tasks.spawn(members::keep_beating(pool.clone(), Arc::clone(&members)));
        tasks.spawn(peer::serve(listener, Arc::clone(&secret), appender));
        Ok(Cluster {
            members,
            peers: Peers::new(secret, config.answer_timeout),
            observer,
            _tasks: tasks,
        })
    }

    /// Appends `request`: handed to its organization's owner if that is another instance and
    /// the append has an idempotency claim; committed through `appender` otherwise, or if the
    /// owner does not answer or fails.
    pub(crate) async fn append(
        &self,
        appender: &Appender,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StoreError> {
        let append = PreparedAppend::prepare(request).await?;
        let owner = match &append.idempotency {
            Some(_) => self.members.owner_elsewhere(&append.organization_id),
            None => None,
        };
        let Some(owner) = owner else {
            return appender.append_prepared(append).await;
        };
        match self.peers.hand(&owner, &append).await {
            Handed::Answered(Ok(outcome)) => {
                self.observer.handover(Handover::Answered);
                return Ok(outcome);
            }
            Handed::Answered(Err(Refusal::OrganizationNotFound(id))) => {
                self.observer.handover(Handover::Answered);
                return Err(StoreError::OrganizationNotFound(id));
            }
            Handed::Answered(Err(Refusal::Failed(error))) => {
                tracing::warn!(
                    peer = owner,
                    error,
                    "the instance that sequences an organization failed an append; appending here"
                );
            }
            Handed::Unanswered => {}
        }
        self.observer.handover(Handover::CommittedHere);
        let ids: Vec<String> = append.events.iter().map(|e| e.id.clone()).collect();
        let outcome = appender.append_prepared(append).await?;
        Ok(first_answer(outcome, &ids))
    }
}

/// The outcome of an append committed here after its hand-over went unanswered. If the owner
/// committed it after all, this commit replays the owner's: the receipts then name this
/// request's own events (their ids were made when it was prepared), and the caller is answered
/// as for a first commit — with no replay header, counted as ingested, the streams woken.
/// Receipts of other events are a true replay: another request with the same identity.
fn first_answer(outcome: AppendOutcome, ids: &[String]) -> AppendOutcome {
    match outcome {
        // A batch whose every item was refused stores no event: nothing tells its first
        // commit from another's, so its replay stays one.
        AppendOutcome::Replayed { receipts, .. }
            if !ids.is_empty() && receipts.iter().map(|r| &r.id).eq(ids.iter()) =>
        {
            AppendOutcome::Appended { receipts }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Receipt;

    fn receipts(ids: &[&str]) -> Vec<Receipt> {
        ids.iter()
            .enumerate()
            .map(|(n, id)| Receipt {
                id: (*id).into(),
                sequence: n as u64,
                leaf_hash: [0; 32],
            })
            .collect()
    }

    #[test]
    fn a_replay_of_this_requests_own_events_is_answered_as_their_first_commit() {
        let ours = vec!["evt_a".to_owned(), "evt_b".to_owned()];
        let replay = AppendOutcome::Replayed {
            receipts: receipts(&["evt_a", "evt_b"]),
            outcome: Vec::new(),
        };
        assert_eq!(
            first_answer(replay, &ours),
            AppendOutcome::Appended {
                receipts: receipts(&["evt_a", "evt_b"])
            }
        );
    }

    #[test]
    fn a_replay_of_another_requests_events_stays_a_replay() {
        let ours = vec!["evt_a".to_owned()];
        let replay = AppendOutcome::Replayed {
            receipts: receipts(&["evt_other"]),
            outcome: b"outcome".to_vec(),
        };
        assert_eq!(first_answer(replay.clone(), &ours), replay);
        let empty = AppendOutcome::Replayed {
            receipts: Vec::new(),
            outcome: b"every item refused".to_vec(),
        };
        assert_eq!(first_answer(empty.clone(), &[]), empty);
        let appended = AppendOutcome::Appended {
            receipts: receipts(&["evt_a"]),
        };
        assert_eq!(first_answer(appended.clone(), &ours), appended);
    }
}
