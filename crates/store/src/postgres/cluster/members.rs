//! Which instance sequences each organization: rendezvous hashing over the live members.
//!
//! Every instance that joined keeps a row in `cluster_members`, renewed each
//! [`HEARTBEAT`]; those renewed within [`LIVE_WINDOW`] (by the database's clock, so instances'
//! clocks need not agree) are the members. The `sequencers` members whose hash is highest are
//! the sequencers, and an organization's owner is the sequencer whose hash with the
//! organization's id is highest: each instance computes it alone, the same answer from the
//! same members, and a sequencer that leaves moves only its own organizations.
//!
//! Why few sequencers: with one PostgreSQL, each sequencer's turns are transactions of their
//! own, and PostgreSQL's work per event grows with the transactions. Two instances on eight
//! organizations cost PostgreSQL 88–99 µs an event as two sequencers and 51–62 µs as one
//! (`trailmark-bench postgres --only single`), where one instance alone costs it 40–54 µs.
//!
//! Ownership is an optimisation, never a guarantee: instances that see different members for a
//! moment both sequence an organization, and its head's row lock keeps its sequence gap-free
//! as it always has.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::postgres::pool_error;

/// How often an instance renews its row and reads the others'.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// A member whose row was not renewed for this long has stopped, or cannot reach the database.
const LIVE_WINDOW: Duration = Duration::from_secs(3);
/// Rows older than this are deleted when an instance joins: members that stopped long ago.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(3_600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub id: String,
    /// `HOST:PORT` its peers connect to.
    pub address: String,
}

/// The live members as this instance last read them.
pub(crate) struct Members {
    own: Member,
    /// How many members sequence organizations (at least one).
    sequencers: usize,
    /// The sequencers among the live members, as this instance last read them.
    live: RwLock<Arc<Vec<Member>>>,
}

impl Members {
    pub(crate) fn new(own: Member, sequencers: usize) -> Self {
        let sequencers = sequencers.max(1);
        let live = vec![own.clone()];
        Members {
            own,
            sequencers,
            live: RwLock::new(Arc::new(live)),
        }
    }

    /// The address of the member that sequences `organization_id`, or `None` if it is this one.
    pub(crate) fn owner_elsewhere(&self, organization_id: &str) -> Option<String> {
        let live = self.live.read().map(|live| Arc::clone(&live)).ok()?;
        let owner = owner(&live, organization_id)?;
        (owner.id != self.own.id).then(|| owner.address.clone())
    }

    fn replace(&self, mut members: Vec<Member>) {
        // Always itself: a heartbeat that read the rows just before its own was renewed, or an
        // instance cut off from the database, still takes part.
        if !members.iter().any(|member| member.id == self.own.id) {
            members.push(self.own.clone());
        }
        let sequencers = sequencers(members, self.sequencers);
        if let Ok(mut live) = self.live.write() {
            *live = Arc::new(sequencers);
        }
    }
}

/// The `count` members that sequence: the highest ranks, ties (which need equal 64-bit
/// hashes) by id.
pub(crate) fn sequencers(mut members: Vec<Member>, count: usize) -> Vec<Member> {
    members.sort_by_cached_key(|member| {
        std::cmp::Reverse((score(&member.id, "sequencer"), member.id.clone()))
    });
    members.truncate(count.max(1));
    members
}

/// The sequencer that owns `organization_id`: the highest score wins, ties by id.
pub(crate) fn owner<'a>(sequencers: &'a [Member], organization_id: &str) -> Option<&'a Member> {
    sequencers
        .iter()
        .max_by_key(|member| (score(&member.id, organization_id), &member.id))
}

fn score(instance_id: &str, organization_id: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(instance_id.as_bytes());
    // The separator keeps ("ab", "c") and ("a", "bc") apart.
    hash.update([0]);
    hash.update(organization_id.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Deletes the rows of members that stopped long ago.
pub(crate) async fn forget_old(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    client
        .execute(
            "DELETE FROM cluster_members WHERE heartbeat_at < now() - make_interval(secs => $1)",
            &[&FORGOTTEN_AFTER.as_secs_f64()],
        )
        .await?;
    Ok(())
}

/// Renews this instance's row and reads the live members into `members`.
pub(crate) async fn heartbeat(pool: &Pool, members: &Members) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    client
        .execute(
            "INSERT INTO cluster_members (instance_id, address, heartbeat_at) VALUES ($1, $2, now())
             ON CONFLICT (instance_id) DO UPDATE SET address = excluded.address, heartbeat_at = now()",
            &[&members.own.id, &members.own.address],
        )
        .await?;
    let rows = client
        .query(
            "SELECT instance_id, address FROM cluster_members
             WHERE heartbeat_at > now() - make_interval(secs => $1)",
            &[&LIVE_WINDOW.as_secs_f64()],
        )
        .await?;
    members.replace(
        rows.iter()
            .map(|row| Member {
                id: row.get(0),
                address: row.get(1),
            })
            .collect(),
    );
    Ok(())
}

/// Renews this instance's row each [`HEARTBEAT`] for as long as it runs.
pub(crate) async fn keep_beating(pool: Pool, members: Arc<Members>) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match heartbeat(&pool, &members).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the cluster's heartbeat is renewed again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                // Its row ages out of the others' members, which then sequence what it owned.
                tracing::warn!(%error, "cannot renew this instance's cluster heartbeat");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> Vec<Member> {
        ids.iter()
            .map(|id| Member {
                id: (*id).into(),
                address: format!("{id}:7701"),
            })
            .collect()
    }

    #[test]
    fn every_instance_finds_the_same_owner_whatever_order_it_read_the_members_in() {
        let forward = members(&["a", "b", "c"]);
        let backward = members(&["c", "b", "a"]);
        for n in 0..200 {
            let organization = format!("org_{n}");
            assert_eq!(
                owner(&forward, &organization),
                owner(&backward, &organization)
            );
        }
    }

    #[test]
    fn organizations_spread_over_the_members() {
        let all = members(&["a", "b", "c", "d"]);
        let mut owned = std::collections::HashMap::new();
        for n in 0..4_000 {
            let owner = owner(&all, &format!("org_{n}")).expect("an owner");
            *owned.entry(owner.id.clone()).or_insert(0) += 1;
        }
        assert_eq!(owned.len(), 4);
        // 1,000 each on average; a share this far off would be a broken hash.
        assert!(
            owned.values().all(|&count| (800..1_200).contains(&count)),
            "{owned:?}"
        );
    }

    #[test]
    fn a_member_that_leaves_moves_only_its_own_organizations() {
        let all = members(&["a", "b", "c"]);
        let without_b = members(&["a", "c"]);
        for n in 0..500 {
            let organization = format!("org_{n}");
            let before = owner(&all, &organization).expect("an owner");
            let after = owner(&without_b, &organization).expect("an owner");
            if before.id != "b" {
                assert_eq!(before, after, "{organization} moved");
            }
        }
    }

    #[test]
    fn the_sequencers_are_the_same_few_whatever_order_the_members_were_read_in() {
        let forward = sequencers(members(&["a", "b", "c", "d"]), 2);
        let backward = sequencers(members(&["d", "c", "b", "a"]), 2);
        assert_eq!(forward, backward);
        assert_eq!(forward.len(), 2);
        let one = sequencers(members(&["a", "b", "c", "d"]), 1);
        assert_eq!(one[..], forward[..1]);
        assert_eq!(sequencers(members(&["a"]), 3).len(), 1);
    }

    #[test]
    fn with_one_sequencer_every_organization_has_the_same_owner() {
        let own = Member {
            id: "a".into(),
            address: "a:7701".into(),
        };
        let seen = Members::new(own, 1);
        seen.replace(members(&["a", "b", "c"]));
        let owners: std::collections::HashSet<Option<String>> = (0..100)
            .map(|n| seen.owner_elsewhere(&format!("org_{n}")))
            .collect();
        assert_eq!(owners.len(), 1, "{owners:?}");
    }

    #[test]
    fn an_instance_that_reads_members_without_itself_still_counts_itself() {
        let own = Member {
            id: "a".into(),
            address: "a:7701".into(),
        };
        let members_seen = Members::new(own, 2);
        members_seen.replace(members(&["b"]));
        let live = members_seen.live.read().expect("readable").clone();
        assert_eq!(live.len(), 2);
        let owned_here = (0..100)
            .filter(|n| members_seen.owner_elsewhere(&format!("org_{n}")).is_none())
            .count();
        assert!(owned_here > 0 && owned_here < 100, "{owned_here}");
    }
}
