//! Fuzzes everything that parses client input in the domain crate: an arbitrary body is read as
//! JSON (as the HTTP edge does) and handed to the event, schema, organization and retention
//! parsers; any string in it is also parsed as a timestamp. None may panic, and a parsed event
//! must survive a round trip through its normalized JSON unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trailmark_domain::Timestamp;
use trailmark_domain::canonical::canonical_json;
use trailmark_domain::event::NewEvent;
use trailmark_domain::organization::OrganizationChanges;
use trailmark_domain::retention::parse_retention_update;
use trailmark_domain::schema::{ActionName, ActionSchema, CompiledSchema, SchemaDefinition};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Timestamp::parse(text);
        let _ = ActionName::parse(text);
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = canonical_json(&value);
    let _ = OrganizationChanges::parse(&value, true);
    let _ = parse_retention_update(&value);
    if let Ok(event) = NewEvent::parse(&value) {
        let reparsed = NewEvent::parse(&event.to_json()).expect("a normalized event parses");
        assert_eq!(reparsed, event, "normalization is stable");
    }
    if let Ok(definition) = SchemaDefinition::parse(&value) {
        let schema = ActionSchema {
            action: ActionName::parse("fuzz.action").expect("valid name"),
            version: 1,
            definition,
            created_at: Timestamp::from_unix_millis(0),
        };
        let compiled = CompiledSchema::compile(&schema).expect("a parsed definition compiles");
        if let Ok(event) = NewEvent::parse(&value["example_event"]) {
            let _ = compiled.check(&event);
        }
    }
});
