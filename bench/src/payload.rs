//! Request bodies in the official SDK shape, with the realistic event of issue 13: about 470
//! bytes of JSON with two targets, three metadata values, a browser user agent and a location.
//!
//! Every event is distinct (its metadata carries a request id unique to the run and the event,
//! because Trailmark stores identical content only once), and every request has its own
//! `Idempotency-Key`, as the SDKs send. Actors and targets are not unique per event: they are
//! drawn from populations the size of a real organization's (a few thousand users, tens of
//! thousands of documents, a hundred workspaces), a few acting far more than most, so indexes
//! on them see the repeated keys a real log has rather than one new key per event.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::dataset::Random;
use crate::load::Prepared;

/// Users acting across a run.
pub const USERS: u64 = 5_000;
/// Documents they act on.
pub const DOCUMENTS: u64 = 50_000;
/// Workspaces the documents live in.
pub const WORKSPACES: u64 = 100;

const ACTIONS: [&str; 6] = [
    "user.signed_in",
    "document.viewed",
    "document.updated",
    "document.shared",
    "document.created",
    "team.member_added",
];
const FIRST_NAMES: [&str; 12] = [
    "Ada", "Benjamin", "Chloe", "Dmitri", "Elif", "Farah", "Gustavo", "Hana", "Ivan", "Keiko",
    "Priya", "Tariq",
];
const LAST_NAMES: [&str; 10] = [
    "Okafor", "Novak", "Garcia", "Tanaka", "Muller", "Rossi", "Kowalski", "Haddad", "Larsen",
    "Walsh",
];
const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
];
const PLANS: [&str; 3] = ["enterprise", "business", "starter"];

/// Hands out event numbers and idempotency keys that never repeat within a run, nor across
/// runs (the run id), whichever part asks.
pub struct Events {
    next: AtomicU64,
    run_id: String,
    seed: u64,
}

impl Events {
    pub fn new() -> Arc<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Arc::new(Events {
            next: AtomicU64::new(1),
            run_id: format!("{:x}{:x}", nanos, std::process::id()),
            seed: nanos as u64,
        })
    }

    fn take(&self, count: u64) -> u64 {
        self.next.fetch_add(count, Ordering::Relaxed)
    }

    fn key(&self, first: u64) -> String {
        format!("bench-{}-{first}", self.run_id)
    }

    /// Event `n` of this run as the SDKs send it.
    pub fn event(&self, out: &mut String, n: u64, occurred_at: &str) {
        push_event(out, self.seed, n, occurred_at);
    }

    /// `{"organization_id", "event"}` for `POST /audit_logs/events`.
    pub fn single(&self, organization_id: &str) -> Prepared {
        let n = self.take(1);
        let mut body = String::with_capacity(600);
        let _ = write!(body, r#"{{"organization_id":"{organization_id}","event":"#);
        self.event(&mut body, n, &now_iso());
        body.push('}');
        Prepared {
            body: Bytes::from(body),
            idempotency_key: Some(self.key(n)),
            events: 1,
        }
    }

    /// `{"organization_id", "events": [size]}` for `POST /audit_logs/events/batch`.
    pub fn batch(&self, organization_id: &str, size: u64) -> Prepared {
        let first = self.take(size);
        let occurred_at = now_iso();
        let mut body = String::with_capacity(64 + 520 * size as usize);
        let _ = write!(
            body,
            r#"{{"organization_id":"{organization_id}","events":["#
        );
        for n in first..first + size {
            if n != first {
                body.push(',');
            }
            self.event(&mut body, n, &occurred_at);
        }
        body.push_str("]}");
        Prepared {
            body: Bytes::from(body),
            idempotency_key: Some(self.key(first)),
            events: size,
        }
    }
}

/// The events' JSON size, bytes: mean, least and most over a sample of them. The mean is the
/// size every per-event byte count is compared with.
pub struct EventSize {
    pub mean: f64,
    pub min: usize,
    pub max: usize,
}

impl EventSize {
    pub fn measure() -> Self {
        const SAMPLE: u64 = 10_000;
        let occurred_at = now_iso();
        let (mut total, mut min, mut max) = (0usize, usize::MAX, 0usize);
        let mut out = String::new();
        for n in 0..SAMPLE {
            out.clear();
            push_event(&mut out, 0x5eed, n, &occurred_at);
            total += out.len();
            min = min.min(out.len());
            max = max.max(out.len());
        }
        EventSize {
            mean: total as f64 / SAMPLE as f64,
            min,
            max,
        }
    }
}

/// One event as the SDKs send it: the `n`th of a run seeded with `seed`.
pub fn push_event(out: &mut String, seed: u64, n: u64, occurred_at: &str) {
    let mut random = Random::new(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ seed);
    let user = skewed(&mut random, USERS);
    let document = skewed(&mut random, DOCUMENTS);
    // A document belongs to one workspace, a user signs in from one of a few addresses.
    let workspace = document % WORKSPACES;
    let address = random.below(3);
    let action = ACTIONS[random.below(ACTIONS.len() as u64) as usize];
    let first = FIRST_NAMES[(user % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[(user / FIRST_NAMES.len() as u64 % LAST_NAMES.len() as u64) as usize];
    let agent = USER_AGENTS[(user % USER_AGENTS.len() as u64) as usize];
    let plan = PLANS[(workspace % PLANS.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"action":"{action}","occurred_at":"{occurred_at}","actor":{{"id":"user_{}","name":"{first} {last}","type":"user"}},"targets":[{{"id":"doc_{}","type":"document"}},{{"id":"ws_{}","type":"workspace"}}],"context":{{"location":"10.{}.{}.{}","user_agent":"{agent}"}},"metadata":{{"request_id":"req_{}","plan":"{plan}","mfa":{}}}}}"#,
        id_like(0x75, user, 10),
        id_like(0x64, document, 10),
        id_like(0x77, workspace, 8),
        user / 250,
        user % 250,
        10 + address,
        id_like(seed, n, 16),
        random.below(4) != 0,
    );
}

/// An index in `0..population`, low indexes far more often than high ones (the square of a
/// uniform draw): a few users and documents account for much of the activity.
fn skewed(random: &mut Random, population: u64) -> u64 {
    let unit = random.unit();
    ((unit * unit) * population as f64) as u64 % population
}

/// `len` (at most 25) Crockford base-32 characters that depend only on `space` and `index`:
/// the same user always has the same id.
fn id_like(space: u64, index: u64, len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut random = Random::new(space.rotate_left(32) ^ index);
    let value = (u128::from(random.next()) << 64) | u128::from(random.next());
    (0..len.min(25))
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// The current time as the SDKs write it: ISO 8601, milliseconds, `Z`.
pub fn now_iso() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("a UTC timestamp always formats with a fixed description")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_official_shape_and_never_repeat() {
        let events = Events::new();
        let a = events.single("org_1");
        let b = events.single("org_1");
        assert_ne!(a.body, b.body);
        assert_ne!(a.idempotency_key, b.idempotency_key);
        let parsed: serde_json::Value =
            serde_json::from_slice(&a.body).expect("the single body is JSON");
        assert_eq!(parsed["event"]["targets"][1]["type"], "workspace");
        assert!(
            parsed["event"]["occurred_at"]
                .as_str()
                .is_some_and(|t| t.len() == 24 && t.ends_with('Z'))
        );

        let batch = events.batch("org_1", 3);
        let parsed: serde_json::Value =
            serde_json::from_slice(&batch.body).expect("the batch body is JSON");
        let requests: Vec<_> = parsed["events"]
            .as_array()
            .expect("events is an array")
            .iter()
            .map(|e| e["metadata"]["request_id"].clone())
            .collect();
        assert_eq!(requests.len(), 3);
        assert_ne!(requests[0], requests[1]);
    }

    #[test]
    fn the_event_is_the_realistic_one_and_trailmark_keeps_all_of_it() {
        let occurred_at = now_iso();
        let mut wire = String::new();
        push_event(&mut wire, 7, 42, &occurred_at);
        let value: serde_json::Value = serde_json::from_str(&wire).expect("the event is JSON");
        assert_eq!(value["targets"].as_array().map(Vec::len), Some(2));
        assert_eq!(value["metadata"].as_object().map(|m| m.len()), Some(3));
        assert!(
            value["context"]["user_agent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("Mozilla/5.0 ("))
        );
        // Valid for Trailmark, and stored whole: its normalized JSON is the same size, so the
        // JSON size the bench divides by is what Trailmark keeps of each event.
        let event = trailmark_domain::event::NewEvent::parse(&value).expect("a valid event");
        assert_eq!(event.to_json().to_string().len(), wire.len());

        let size = EventSize::measure();
        assert!(
            (440.0..=500.0).contains(&size.mean),
            "mean {} bytes",
            size.mean
        );
    }

    #[test]
    fn actors_and_targets_come_from_a_population_with_heavy_hitters() {
        let mut users = std::collections::HashMap::<String, u64>::new();
        let mut out = String::new();
        for n in 0..20_000 {
            out.clear();
            push_event(&mut out, 1, n, "2026-01-01T00:00:00.000Z");
            let value: serde_json::Value = serde_json::from_str(&out).expect("JSON");
            let actor = value["actor"]["id"]
                .as_str()
                .expect("an actor id")
                .to_owned();
            *users.entry(actor).or_default() += 1;
        }
        assert!(
            (2_000..=USERS as usize).contains(&users.len()),
            "{} users",
            users.len()
        );
        let busiest = users.values().max().copied().unwrap_or(0);
        assert!(busiest > 20, "the busiest user acted {busiest} times");
    }
}
