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
//! Compatibility rule: the event object may gain keys, which changes the leaves of events
//! ingested after the change only; verifiers hash whatever keys an event carries.

use serde_json::Value;
use trailmark_domain::canonical::{CanonicalObject, canonical_json_without};

use crate::tree::{Hash, leaf_hash};

/// Keys of an exported or read event that are not part of its leaf.
pub const NON_LEAF_KEYS: [&str; 2] = ["leaf_hash", "inclusion_proof"];

/// The leaf bytes of an event object.
pub fn leaf_bytes(event_object: &Value) -> Vec<u8> {
    canonical_json_without(event_object, &NON_LEAF_KEYS)
}

/// The leaf hash of an event object.
pub fn event_leaf_hash(event_object: &Value) -> Hash {
    leaf_hash(&leaf_bytes(event_object))
}

/// [`event_leaf_hash`] of an event object written in canonical form (an exported line),
/// from its text: the same hash, without building the object.
pub fn canonical_event_leaf_hash(event_object: &CanonicalObject<'_>) -> Hash {
    leaf_hash(&event_object.without(&NON_LEAF_KEYS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
