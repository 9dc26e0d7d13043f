//! An event's leaf in its organization's Merkle log.
//!
//! **Leaf bytes** = the RFC 8785 canonical JSON (`trailmark_domain::canonical`) of the event
//! object exactly as the read API returns it (`trailmark_domain::record`: `object`, `id`,
//! `organization_id`, `sequence`, `action`, `occurred_at`, `received_at`, `version`, `actor`,
//! `targets`, `context`, `metadata`), *without* the `leaf_hash` key (and without
//! `inclusion_proof`, which exports add). **Leaf hash** = `SHA-256(0x00 ‖ leaf bytes)`
//! (RFC 6962 §2.1).
//!
//! So anyone holding an event as read or exported can recompute its leaf: drop `leaf_hash` and
//! `inclusion_proof`, canonicalize, hash with the 0x00 prefix. Worked example: the object
//! `{"object":"audit_log_event","id":"event_1",…}` canonicalizes to its keys in sorted order with
//! no whitespace, e.g. `{"action":"a.b","actor":{"id":"u","type":"user"},"context":{…},"id":"event_1",…}`.
//!
//! **Leaf version 2.** An event stored since leaf version 2 carries `salt` (or, after an
//! erasure, `salts` and `erased`): its leaf bytes are then the canonical JSON of its *committed
//! object* instead, where each value that can name a person is replaced by a salted hash of it
//! ([`crate::commit`]). Reading the event tells a verifier which rule applies.
//!
//! Compatibility rule: the event object may gain keys, which changes the leaves of events
//! ingested after the change only; verifiers hash whatever keys an event carries.

use serde_json::Value;
use trailmark_domain::Timestamp;
use trailmark_domain::canonical::{
    CanonicalObject, EXACT_INTEGER, canonical_json, canonical_json_without,
};
use trailmark_domain::record::{Placement, canonical_event_object, into_event_object};

use crate::commit::{
    SALTING_KEYS, Salt, Salting, committed_object, committed_with_sequence_at,
    into_committed_object, seeded_committed_bytes,
};
use crate::tree::{Hash, leaf_hash, leaf_hash_of_parts};

/// Keys of an exported or read event that are not part of its leaf.
pub const NON_LEAF_KEYS: [&str; 2] = ["leaf_hash", "inclusion_proof"];

/// The leaf bytes of an event object, by the rule of its leaf version. Salts that do not decode
/// or do not fit the event give bytes no honest leaf has, so such an event fails verification
/// as altered.
pub fn leaf_bytes(event_object: &Value) -> Vec<u8> {
    match Salting::of(event_object) {
        Ok(None) => canonical_json_without(event_object, &NON_LEAF_KEYS),
        Ok(Some(salting @ Salting::Seed(_))) => {
            let text = canonical_json(event_object);
            std::str::from_utf8(&text)
                .ok()
                .and_then(CanonicalObject::parse)
                .and_then(|object| seeded_committed_bytes(&object))
                .unwrap_or_else(|| match committed_object(event_object, &salting) {
                    Ok(committed) => canonical_json(&committed),
                    Err(_) => text,
                })
        }
        Ok(Some(salting)) => match committed_object(event_object, &salting) {
            Ok(committed) => canonical_json(&committed),
            Err(_) => canonical_json(event_object),
        },
        Err(_) => canonical_json(event_object),
    }
}

/// The leaf hash of an event object.
pub fn event_leaf_hash(event_object: &Value) -> Hash {
    leaf_hash(&leaf_bytes(event_object))
}

/// [`event_leaf_hash`] of an event object written in canonical form (an exported line): for an
/// event before leaf version 2 the same hash from its text, without building the object.
pub fn canonical_event_leaf_hash(event_object: &CanonicalObject<'_>) -> Hash {
    leaf_hash(&canonical_leaf_bytes(event_object))
}

/// The leaf bytes whose [`leaf_hash`] [`canonical_event_leaf_hash`] gives, for a caller that
/// hashes two leaves at once (`tree::leaf_hash_pair`).
pub fn canonical_leaf_bytes(event_object: &CanonicalObject<'_>) -> Vec<u8> {
    if SALTING_KEYS
        .iter()
        .any(|key| event_object.get(key).is_some())
    {
        if let Some(committed) = seeded_committed_bytes(event_object) {
            return committed;
        }
        let text = event_object.without(&[]);
        return match serde_json::from_slice::<Value>(&text) {
            Ok(object) => match Salting::of(&object) {
                Ok(Some(salting)) => match into_committed_object(object, &salting) {
                    Ok(committed) => canonical_json(&committed),
                    // Bytes no honest leaf has: the check then fails as for any altered event.
                    Err(_) => text,
                },
                _ => text,
            },
            Err(_) => text,
        };
    }
    event_object.without(&NON_LEAF_KEYS)
}

/// An event's leaf before its sequence number is known, so that the one place that assigns
/// sequences (inside a commit) only has to hash: the leaf bytes of its event object up to the
/// `sequence` value, and after it. Every backend computes leaves through it, so a leaf is the
/// same whichever database stored the event.
#[derive(Debug, Clone)]
pub struct LeafTemplate {
    before: Vec<u8>,
    after: Vec<u8>,
}

impl LeafTemplate {
    /// The template of the event whose normalized body is `body`, placed in `organization_id`'s
    /// log with `id`, received at `received_at`.
    pub fn new(id: &str, organization_id: &str, received_at: Timestamp, body: &Value) -> Self {
        let placement = Placement {
            id,
            organization_id,
            sequence: 0,
            received_at,
        };
        if let Ok(Some(salting)) = Salting::of(body) {
            if let Salting::Seed(seed) = &salting
                && let Some(template) = Self::seeded(placement, body, seed)
            {
                return template;
            }
            let committed_bytes = |sequence| {
                let object = into_event_object(
                    Placement {
                        sequence,
                        ..placement
                    },
                    body.clone(),
                );
                into_committed_object(object, &salting).map(|committed| canonical_json(&committed))
            };
            if let (Ok(zero), Ok(one)) = (committed_bytes(0), committed_bytes(1)) {
                // The two differ in the one digit of the sequence and nowhere else, wherever
                // the committed object's keys sort (a key the scan does not take, say).
                let at = zero.iter().zip(&one).position(|(a, b)| a != b);
                if let Some(at) = at {
                    return LeafTemplate {
                        before: zero[..at].to_vec(),
                        after: zero[at + 1..].to_vec(),
                    };
                }
            }
        }
        // The event object carries no `leaf_hash` or `inclusion_proof` (the non-leaf keys), so
        // its canonical form is its leaf bytes.
        let (zero, at) = canonical_event_object(placement, body);
        LeafTemplate {
            before: zero[..at].to_vec(),
            after: zero[(at + 1).min(zero.len())..].to_vec(),
        }
    }

    /// The template of a version-2 event salted by its seed, built from the canonical text of
    /// its event object (see [`seeded_committed_bytes`]); `None` where that path does not apply.
    fn seeded(placement: Placement<'_>, body: &Value, seed: &Salt) -> Option<Self> {
        // The canonical event object leaves the seed out, as the committed object does.
        let (zero, _) = canonical_event_object(placement, body);
        Self::from_event_object(&zero, seed)
    }

    /// The template of a version-2 event salted by `seed`, from the canonical text of its event
    /// object at sequence 0 without the seed (`record::canonical_event_object_of`); `None` where
    /// the text is not read that way (see [`seeded_committed_bytes`]), and then
    /// [`LeafTemplate::new`] takes the event's JSON instead.
    pub fn from_event_object(object: &[u8], seed: &Salt) -> Option<Self> {
        let text = std::str::from_utf8(object).ok()?;
        let (mut before, at) = committed_with_sequence_at(&CanonicalObject::parse(text)?, seed)?;
        let at = at?;
        // The sequence 0 written there is one digit, which each hash puts its own in place of.
        let after = before.split_off(at + 1);
        before.truncate(at);
        Some(LeafTemplate { before, after })
    }

    /// The template's two parts: the leaf bytes before the sequence number and after it. With
    /// [`LeafTemplate::from_parts`], how a template crosses from one process to another (an
    /// instance handing an append to the instance that sequences its organization).
    pub fn parts(&self) -> (&[u8], &[u8]) {
        (&self.before, &self.after)
    }

    /// The template whose [`LeafTemplate::parts`] are `before` and `after`.
    pub fn from_parts(before: Vec<u8>, after: Vec<u8>) -> Self {
        LeafTemplate { before, after }
    }

    /// The leaf hash of the event at `sequence`: [`event_leaf_hash`] of its event object.
    /// The writer hashes every event's leaf in its turn, one after another, so the parts are
    /// hashed where they lie rather than copied into one message first.
    pub fn hash(&self, sequence: u64) -> Hash {
        if sequence <= EXACT_INTEGER {
            // Up to 2^53 every integer is a double, which RFC 8785 writes as its digits.
            let mut digits = itoa::Buffer::new();
            leaf_hash_of_parts(&[
                &self.before,
                digits.format(sequence).as_bytes(),
                &self.after,
            ])
        } else {
            // Above, not every integer is one: the nearest double's digits.
            let number = canonical_json(&Value::from(sequence));
            leaf_hash_of_parts(&[&self.before, &number, &self.after])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use trailmark_domain::record::event_object;

    /// Sequences written with one digit and with more, and on both sides of 2^53, above which
    /// RFC 8785 writes the nearest double rather than the integer.
    const SEQUENCES: [u64; 13] = [
        0,
        1,
        9,
        10,
        11,
        99,
        100,
        12_345,
        1 << 40,
        (1 << 53) - 1,
        1 << 53,
        (1 << 53) + 1,
        u64::MAX,
    ];

    #[test]
    fn a_leaf_template_hashes_as_the_whole_event_object_does() {
        let body = json!({
            "action": "user.signed_in",
            "occurred_at": "2026-08-01T10:00:00.000Z",
            "actor": {"id": "user_1", "type": "user", "name": "Sequence 0 \"1\"", "metadata": {"sequence": "1"}},
            "targets": [{"id": "team_10", "type": "team", "metadata": {"n": "11"}}],
            "context": {"location": "192.0.2.1", "user_agent": "UA/1.0"},
            "metadata": {"attempt": "1", "note": "ü \\u0001 1 \"sequence\":0", "sequence": 0}
        });
        let received_at = Timestamp::from_unix_millis(1_785_578_400_001);
        let template = LeafTemplate::new("event_01", "org_1", received_at, &body);
        for sequence in SEQUENCES {
            let object = event_object(
                Placement {
                    id: "event_01",
                    organization_id: "org_1",
                    sequence,
                    received_at,
                },
                &body,
            );
            assert_eq!(
                template.hash(sequence),
                event_leaf_hash(&object),
                "{sequence}"
            );
        }
    }

    #[test]
    fn a_version_two_template_hashes_as_the_event_object_before_and_after_an_erasure() {
        let body = json!({
            "action": "user.signed_in",
            "occurred_at": "2026-08-01T10:00:00.000Z",
            "actor": {"id": "user_1", "type": "user", "name": "Ana", "metadata": {"sequence": 1}},
            "targets": [{"id": "team_10", "type": "team"}],
            "context": {"location": "192.0.2.1"},
            "metadata": {"sequence": "0"},
            "salt": crate::commit::seed_text(&[9; crate::commit::SALT_BYTES]),
        });
        let received_at = Timestamp::from_unix_millis(1_785_578_400_001);
        let template = LeafTemplate::new("event_01", "org_1", received_at, &body);
        let erased =
            crate::commit::erase(&body, &["/actor/id".into(), "/metadata/sequence".into()])
                .expect("erases");
        for sequence in SEQUENCES {
            let placement = Placement {
                id: "event_01",
                organization_id: "org_1",
                sequence,
                received_at,
            };
            let leaf = template.hash(sequence);
            assert_eq!(
                leaf,
                event_leaf_hash(&event_object(placement, &body)),
                "{sequence}"
            );
            assert_eq!(
                leaf,
                event_leaf_hash(&event_object(placement, &erased)),
                "{sequence}"
            );
            let line = String::from_utf8(canonical_json(&event_object(placement, &erased)))
                .expect("UTF-8");
            let parsed = CanonicalObject::parse(&line).expect("canonical");
            assert_eq!(leaf, canonical_event_leaf_hash(&parsed), "{sequence}");
            let v1 = LeafTemplate::new("event_01", "org_1", received_at, &{
                let mut plain = body.clone();
                plain.as_object_mut().map(|map| map.remove("salt"));
                plain
            });
            assert_ne!(leaf, v1.hash(sequence), "the versions differ");
        }
    }

    /// Version-2 bodies of every shape the erasable traversal distinguishes, including keys
    /// and values the canonical scan does not take (so the tree is built instead).
    fn version_two_bodies() -> Vec<Value> {
        let salt = crate::commit::seed_text(&[5; crate::commit::SALT_BYTES]);
        let mut bodies = vec![
            json!({"action": "a.b", "actor": {"id": "u", "type": "user"}, "targets": []}),
            json!({"action": "a.b", "actor": {"id": "u", "type": "user", "name": null,
                   "metadata": {"a/b": "1", "t~": [1, {"x": "y"}], "z": {"deep": true}}},
                   "targets": [{"id": "t1", "type": "doc", "name": "N", "metadata": {"k": 1.5}},
                               {"type": "team"}],
                   "context": {"location": "10.0.0.1", "user_agent": "UA \"1\" \u{1}", "x": 1},
                   "metadata": {"": "empty key", "email": "ana@acme.test", "n": -3}}),
            json!({"action": "a.b", "actor": "not an object", "targets": "not an array",
                   "context": [1], "metadata": 7}),
            json!({"action": "a.b", "actor": {"id": "u", "type": "user", "metadata": "flat"},
                   "targets": [1, "t", null, {"id": 2}], "context": null, "metadata": {}}),
            json!({"action": "a.b", "actor": {"id": "ü", "type": "user"},
                   "metadata": {"é": "non-ASCII key", "sequence": 0}}),
            json!({"action": "a.b", "actor": {"id": "u", "type": "user"},
                   "metadata": {"quote\"d": 1, "n": 1e21}}),
            // Commitments hashed two by two, one or two blocks each, beside ones hashed alone:
            // a value too long for a short hash and a key too long for the salt's block.
            json!({"action": "a.b", "actor": {"id": "u".repeat(60), "type": "user", "name": "N"},
                   "context": {"location": "192.0.2.1", "user_agent": "U".repeat(150)},
                   "metadata": {"k".repeat(100): "long key", "a": "x".repeat(103),
                                "b": "y".repeat(104), "c": "z".repeat(30)}}),
        ];
        for body in &mut bodies {
            body["occurred_at"] = json!("2026-08-01T10:00:00.000Z");
            body["salt"] = json!(salt);
        }
        bodies
    }

    #[test]
    fn the_text_path_commits_as_the_tree_does() {
        let received_at = Timestamp::from_unix_millis(1_785_578_400_001);
        for body in version_two_bodies() {
            let template = LeafTemplate::new("event_01", "org_1", received_at, &body);
            for sequence in [0, 1, 10, 1 << 40] {
                let placement = Placement {
                    id: "event_01",
                    organization_id: "org_1",
                    sequence,
                    received_at,
                };
                let object = event_object(placement, &body);
                let salting = Salting::of(&object).expect("decodes").expect("version 2");
                let tree = canonical_json(&committed_object(&object, &salting).expect("commits"));
                let tree_leaf = leaf_hash(&tree);
                assert_eq!(leaf_bytes(&object), tree, "{body}");
                assert_eq!(template.hash(sequence), tree_leaf, "{body} at {sequence}");
                let line = String::from_utf8(canonical_json(&object)).expect("UTF-8");
                if let Some(parsed) = CanonicalObject::parse(&line) {
                    assert_eq!(canonical_event_leaf_hash(&parsed), tree_leaf, "{line}");
                    if let Some(text) = seeded_committed_bytes(&parsed) {
                        assert_eq!(text, tree, "{line}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_seeded_template_takes_the_text_path() {
        let body = &version_two_bodies()[1];
        let Ok(Some(Salting::Seed(seed))) = Salting::of(body) else {
            panic!("seeded");
        };
        let placement = Placement {
            id: "event_01",
            organization_id: "org_1",
            sequence: 0,
            received_at: Timestamp::from_unix_millis(1_785_578_400_001),
        };
        let template = LeafTemplate::seeded(placement, body, &seed).expect("the text path");
        assert_eq!(
            template.hash(0),
            event_leaf_hash(&event_object(placement, body))
        );
    }

    #[test]
    fn the_text_path_leaves_erased_events_and_named_versions_to_the_tree() {
        let body = &version_two_bodies()[1];
        let placement = Placement {
            id: "event_01",
            organization_id: "org_1",
            sequence: 3,
            received_at: Timestamp::from_unix_millis(1_785_578_400_001),
        };
        let erased = crate::commit::erase(body, &["/actor/id".into()]).expect("erases");
        let mut named = event_object(placement, body);
        named["leaf_version"] = json!(9);
        for object in [event_object(placement, &erased), named] {
            let line = String::from_utf8(canonical_json(&object)).expect("UTF-8");
            let parsed = CanonicalObject::parse(&line).expect("canonical");
            assert_eq!(seeded_committed_bytes(&parsed), None, "{line}");
            assert_eq!(
                canonical_event_leaf_hash(&parsed),
                event_leaf_hash(&object),
                "{line}"
            );
        }
    }

    #[test]
    fn the_leaf_ignores_key_order_and_non_leaf_keys() {
        let event =
            json!({"object": "audit_log_event", "id": "event_1", "sequence": 0, "metadata": null});
        let reordered = json!({"metadata": null, "sequence": 0, "id": "event_1", "object": "audit_log_event",
                               "leaf_hash": "ignored", "inclusion_proof": ["ignored"]});
        assert_eq!(event_leaf_hash(&event), event_leaf_hash(&reordered));
        assert_eq!(
            leaf_bytes(&event),
            br#"{"id":"event_1","metadata":null,"object":"audit_log_event","sequence":0}"#
        );
        assert_ne!(
            event_leaf_hash(&event),
            event_leaf_hash(&json!({"id": "event_2"}))
        );
    }

    #[test]
    fn a_canonical_line_hashes_like_its_object() {
        let event = json!({"object": "audit_log_event", "id": "event_1", "sequence": 0,
                           "metadata": {"note": "é\n\"", "n": 3}, "actor": null, "targets": [],
                           "leaf_hash": "ignored", "inclusion_proof": ["ignored"]});
        let line =
            String::from_utf8(trailmark_domain::canonical::canonical_json(&event)).expect("utf-8");
        let object = CanonicalObject::parse(&line).expect("canonical");
        assert_eq!(canonical_event_leaf_hash(&object), event_leaf_hash(&event));
    }
}
