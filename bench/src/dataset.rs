//! The read benchmark's events: one organization's year of activity, generated from the
//! sequence number alone, so the queries can name values that exist (an actor, a document, one
//! event's request id) without reading the database.
//!
//! The shape follows a SaaS app's audit trail: sign-ins and sign-outs dominate, then document
//! activity, then rarer team, API-key, billing and settings changes. A few hundred users act
//! (some far more than others), each from a few addresses; every event targets its workspace,
//! most also a document, user, team, key or subscription; metadata holds a unique request id and
//! per-action details. Events arrive in time order over a year, and 1% are back-dated by up to
//! 30 days, as late imports are.

use serde_json::{Value, json};
use trailmark_domain::Timestamp;

/// Actions and their share of events, per ten thousand.
pub const ACTIONS: &[(&str, u32)] = &[
    ("user.signed_in", 3000),
    ("user.signed_out", 1800),
    ("user.password_changed", 200),
    ("user.mfa_enabled", 100),
    ("document.viewed", 1500),
    ("document.updated", 1400),
    ("document.created", 600),
    ("document.deleted", 200),
    ("document.shared", 300),
    ("team.member_added", 300),
    ("team.member_removed", 100),
    ("api_key.created", 50),
    ("api_key.revoked", 30),
    ("billing.plan_changed", 20),
    ("settings.updated", 400),
];

/// Target types, most common first (every event also targets its `workspace`).
pub const TARGET_TYPES: &[&str] = &[
    "workspace",
    "document",
    "user",
    "team",
    "api_key",
    "subscription",
];

pub const USERS: u64 = 300;
pub const DOCUMENTS: u64 = 20_000;
pub const TEAMS: u64 = 40;
pub const WORKSPACES: u64 = 8;
pub const DAY_MS: i64 = 86_400_000;

const FIRST_NAMES: [&str; 20] = [
    "Ada", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Gus", "Hana", "Ivan", "Jon", "Keiko",
    "Liam", "Maya", "Nikos", "Olu", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
];
const LAST_NAMES: [&str; 15] = [
    "Smith", "Okafor", "Novak", "Garcia", "Tanaka", "Muller", "Rossi", "Silva", "Kowalski",
    "Dubois", "Chen", "Haddad", "Larsen", "Moreau", "Walsh",
];
const TITLE_WORDS: [&str; 12] = [
    "Quarterly",
    "planning",
    "Roadmap",
    "Onboarding",
    "checklist",
    "Security",
    "review",
    "Pricing",
    "draft",
    "Incident",
    "postmortem",
    "Contract",
];
const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
];
const COUNTRIES: [&str; 8] = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "NL"];

/// One year of events for one organization.
#[derive(Clone, Copy)]
pub struct Dataset {
    pub events: u64,
    /// `received_at` of the first event, Unix milliseconds; the last is a year later.
    pub start_ms: i64,
    pub span_ms: i64,
}

impl Dataset {
    /// `events` events received over the year that ends now.
    pub fn ending_now(events: u64) -> Self {
        let span_ms = 365 * DAY_MS;
        Dataset {
            events,
            start_ms: Timestamp::now().unix_millis() - span_ms,
            span_ms,
        }
    }

    /// When event `sequence` was received: events arrive evenly over the year, in order.
    pub fn received_at(&self, sequence: u64) -> i64 {
        self.start_ms
            + (i128::from(self.span_ms) * i128::from(sequence) / i128::from(self.events.max(1)))
                as i64
    }

    /// Event `sequence` as a client sends it (the `event` object of `POST /audit_logs/events`).
    pub fn event(&self, sequence: u64) -> Value {
        let mut random = Random::for_event(sequence);
        let action = pick_weighted(&mut random);
        let user = user_index(&mut random);
        let (actor_id, actor_name) = user_actor(user);
        let received_at = self.received_at(sequence);
        let occurred_at = if random.below(100) == 0 {
            // Back-dated: an import or a late sync, from one hour to 30 days earlier.
            received_at - DAY_MS / 24 - random.below(30 * DAY_MS as u64) as i64
        } else {
            received_at - random.below(1_500) as i64
        };
        let workspace = format!("ws_{}", user % WORKSPACES);
        let mut targets = vec![
            json!({"id": workspace, "type": "workspace", "name": format!("Workspace {}", user % WORKSPACES)}),
        ];
        let mut metadata = serde_json::Map::new();
        metadata.insert("request_id".into(), json!(request_id(sequence)));
        match action.split('.').next().unwrap_or_default() {
            "user" => {
                if action == "user.signed_in" {
                    metadata.insert(
                        "method".into(),
                        json!(["sso", "password", "magic_link"][random.below(3) as usize]),
                    );
                    metadata.insert("mfa".into(), json!(random.below(3) != 0));
                } else if action != "user.signed_out" {
                    targets.push(json!({"id": actor_id, "type": "user"}));
                }
                metadata.insert(
                    "country".into(),
                    json!(COUNTRIES[(user % COUNTRIES.len() as u64) as usize]),
                );
            }
            "document" => {
                let document = document_id(random.below(DOCUMENTS));
                targets.push(
                    json!({"id": document, "type": "document", "name": document_title(&document)}),
                );
                if action == "document.shared" {
                    let (other, _) = user_actor(random.below(USERS));
                    targets.push(json!({"id": other, "type": "user"}));
                    metadata.insert(
                        "permission".into(),
                        json!(["view", "comment", "edit"][random.below(3) as usize]),
                    );
                } else {
                    metadata.insert("size_bytes".into(), json!(random.below(5_000_000)));
                }
            }
            "team" => {
                let (other, _) = user_actor(random.below(USERS));
                targets
                    .push(json!({"id": format!("team_{}", random.below(TEAMS)), "type": "team"}));
                targets.push(json!({"id": other, "type": "user"}));
                metadata.insert(
                    "role".into(),
                    json!(["member", "admin"][random.below(2) as usize]),
                );
            }
            "api_key" => {
                targets.push(json!({"id": format!("key_{:08x}", random.next() as u32), "type": "api_key", "name": "CI deploy key"}));
                metadata.insert("scopes".into(), json!("events:write audit_logs:read"));
            }
            "billing" => {
                targets.push(
                    json!({"id": format!("sub_{}", user % WORKSPACES), "type": "subscription"}),
                );
                metadata.insert("from_plan".into(), json!("team"));
                metadata.insert("to_plan".into(), json!("enterprise"));
                metadata.insert("seats".into(), json!(10 + random.below(490)));
            }
            _ => {
                metadata.insert(
                    "setting".into(),
                    json!(
                        ["sso_enforced", "session_timeout", "ip_allowlist"]
                            [random.below(3) as usize]
                    ),
                );
                metadata.insert("old_value".into(), json!("false"));
                metadata.insert("new_value".into(), json!("true"));
            }
        }
        json!({
            "action": action,
            "occurred_at": Timestamp::from_unix_millis(occurred_at).to_string(),
            "actor": {"id": actor_id, "name": actor_name, "type": "user"},
            "targets": targets,
            "context": {
                "location": location(user, &mut random),
                "user_agent": USER_AGENTS[((user + random.below(2)) % USER_AGENTS.len() as u64) as usize],
            },
            "metadata": metadata,
        })
    }
}

/// The request id in event `sequence`'s metadata: unique, so a search for it finds one event.
pub fn request_id(sequence: u64) -> String {
    format!(
        "req_{:016x}",
        Random::for_event(sequence ^ 0xA5A5_5A5A).next()
    )
}

/// User `index`'s actor id and name (unique names for the first 300 users).
pub fn user_actor(index: u64) -> (String, String) {
    let first = FIRST_NAMES[(index % 20) as usize];
    let last = LAST_NAMES[((index / 20) % 15) as usize];
    (format!("user_{index:04}"), format!("{first} {last}"))
}

pub fn document_id(index: u64) -> String {
    format!("doc_{index:05}")
}

fn document_title(document: &str) -> String {
    let n: u64 = document[4..].parse().unwrap_or_default();
    format!(
        "{} {} {}",
        TITLE_WORDS[(n % 12) as usize],
        TITLE_WORDS[((n / 12) % 12) as usize],
        n
    )
}

/// Users act unevenly: the chance that the actor is below `k` is `sqrt(k / USERS)`, so a few
/// admins and service users produce much of the log and most users little of it.
fn user_index(random: &mut Random) -> u64 {
    let u = random.unit();
    ((u * u) * USERS as f64) as u64 % USERS
}

/// Each user works from a few addresses of their own; one in ten is IPv6.
fn location(user: u64, random: &mut Random) -> String {
    let address = user * 3 + random.below(3);
    if address.is_multiple_of(10) {
        format!("2001:db8:{:x}::{:x}", address / 256, address % 256 + 1)
    } else {
        format!(
            "{}.{}",
            ["198.51.100", "203.0.113", "192.0.2"][(address % 3) as usize],
            address % 251 + 1
        )
    }
}

fn pick_weighted(random: &mut Random) -> &'static str {
    let total: u32 = ACTIONS.iter().map(|(_, w)| w).sum();
    let mut point = random.below(u64::from(total)) as u32;
    for (action, weight) in ACTIONS {
        if point < *weight {
            return action;
        }
        point -= weight;
    }
    ACTIONS[0].0
}

/// SplitMix64: the data must be the same on every run, not unpredictable.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Random(seed)
    }

    fn for_event(sequence: u64) -> Self {
        Random(sequence.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x7472_6169_6C6D_6172)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0; the bias is negligible for these bounds).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailmark_domain::event::NewEvent;

    #[test]
    fn every_event_is_valid_and_the_same_on_every_call() {
        let dataset = Dataset::ending_now(10_000);
        let mut back_dated = 0;
        for sequence in 0..10_000 {
            let event = dataset.event(sequence);
            assert_eq!(event, dataset.event(sequence));
            let parsed = NewEvent::parse(&event).expect("a valid event");
            if parsed.occurred_at().unix_millis() < dataset.received_at(sequence) - DAY_MS / 24 {
                back_dated += 1;
            }
            assert!(
                parsed.search_text().contains(&request_id(sequence)),
                "the request id is searchable"
            );
        }
        assert!(
            (50..200).contains(&back_dated),
            "about 1% back-dated: {back_dated}"
        );
    }
}
