//! An event object ([`crate::record`]) as an OCSF event: what a SIEM that speaks the Open
//! Cybersecurity Schema Framework reads without a Trailmark-specific parser.
//!
//! Target: **OCSF [`OCSF_VERSION`] (1.3.0), class API Activity** (`class_uid` 6003, category
//! Application Activity, `category_uid` 6) — an audit log records what an actor did through an
//! application, which is what that class describes. No profile is applied, so there is no
//! `cloud`: the class requires it only with the Cloud profile, and Trailmark knows no cloud of
//! the app's. (The same events also validate as 1.1.0 to 1.8.0; only 1.3.0 is claimed.)
//!
//! | OCSF attribute | from the event object |
//! |---|---|
//! | `activity_id`, `activity_name` | the action's last `.` segment: `create`/`created` → 1 Create, `read`/`viewed` → 2 Read, `update`/`updated` → 3 Update, `delete`/`deleted` → 4 Delete, anything else → 99 Other (0 Unknown for a purged event) |
//! | `type_uid`, `type_name` | `600300 + activity_id`, `API Activity: <activity_name>` |
//! | `time` | `occurred_at` in Unix milliseconds (`received_at` when absent) |
//! | `severity_id`, `severity` | 1, `Informational`: an audit record states a fact, not a risk |
//! | `status_id` | left out: the event object does not say whether the action succeeded |
//! | `metadata.uid`, `.tenant_uid`, `.sequence` | `id`, `organization_id`, `sequence` |
//! | `metadata.original_time`, `.logged_time` | `occurred_at` as written, `received_at` in ms |
//! | `metadata.version`, `.product` | `1.3.0`, `{name: "Trailmark", vendor_name: "Trailmark"}` |
//! | `actor.user` | `actor`: `uid` = id, `name`, `type_id`/`type` from its type (`user` 1, `admin` 2, `system` 3, else 99 Other with the type as given) |
//! | `api.operation` | `action` |
//! | `src_endpoint` | `context.location`: `ip` when it is an IP address, else `name` |
//! | `http_request.user_agent` | `context.user_agent` |
//! | `resources[]` | `targets`: `uid` = id, `name`, `type`, `data` = the target's metadata |
//! | `unmapped` | the whole event object, unchanged (metadata, `leaf_hash`, salts included) |
//!
//! Nothing is lost: `unmapped` is the event object itself, so a reader recovers it exactly
//! (and with it the leaf hash's inputs). `raw_data` is not used: in 1.3.0 it is a string of at
//! most 65,535 characters, which a large event can exceed, and it would double every line.
//!
//! OCSF requires `actor` to name someone, `api.operation`, and `src_endpoint` to hold at least
//! one identifying attribute. A purged event's stub has none of these; each then reads
//! `[purged]` (as an erased value reads `[erased]`), so the event is still a valid OCSF event.
//!
//! Compatibility rule: attributes may be added; a mapped attribute keeps its meaning; moving to
//! a later OCSF version changes [`OCSF_VERSION`], which every event carries.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::Timestamp;

/// The OCSF schema version the events conform to (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";
/// API Activity.
pub const CLASS_UID: u64 = 6003;
/// Application Activity.
pub const CATEGORY_UID: u64 = 6;
/// What stands in for a required value a purged event no longer has.
const PURGED: &str = "[purged]";

/// The OCSF API Activity event for `event`, an event object (a stored event as
/// [`crate::record::event_object`] writes it, with or without `leaf_hash`, or a purged stub).
pub fn api_activity(event: &Value) -> Value {
    let purged = event["purged"] == Value::Bool(true);
    let action = event["action"].as_str();
    let (activity_id, activity_name) = match action {
        Some(action) => activity(action),
        None => (0, "Unknown"),
    };
    let received_at = event["received_at"]
        .as_str()
        .and_then(|t| Timestamp::parse(t).ok());
    let occurred_at = event["occurred_at"]
        .as_str()
        .and_then(|t| Timestamp::parse(t).ok());
    let time = occurred_at
        .or(received_at)
        .map_or(0, Timestamp::unix_millis);

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": "Trailmark", "vendor_name": "Trailmark"}),
    );
    copy_string(&event["id"], "uid", &mut metadata);
    copy_string(&event["organization_id"], "tenant_uid", &mut metadata);
    if let Some(sequence) = event["sequence"].as_u64() {
        metadata.insert("sequence".into(), json!(sequence));
    }
    copy_string(&event["occurred_at"], "original_time", &mut metadata);
    if let Some(received_at) = received_at {
        metadata.insert("logged_time".into(), json!(received_at.unix_millis()));
    }

    let mut ocsf = Map::new();
    ocsf.insert("class_uid".into(), json!(CLASS_UID));
    ocsf.insert("class_name".into(), json!("API Activity"));
    ocsf.insert("category_uid".into(), json!(CATEGORY_UID));
    ocsf.insert("category_name".into(), json!("Application Activity"));
    ocsf.insert("activity_id".into(), json!(activity_id));
    ocsf.insert("activity_name".into(), json!(activity_name));
    ocsf.insert(
        "type_uid".into(),
        json!(CLASS_UID * 100 + u64::from(activity_id)),
    );
    ocsf.insert(
        "type_name".into(),
        json!(format!("API Activity: {activity_name}")),
    );
    ocsf.insert("time".into(), json!(time));
    ocsf.insert("severity_id".into(), json!(1));
    ocsf.insert("severity".into(), json!("Informational"));
    ocsf.insert("metadata".into(), Value::Object(metadata));
    ocsf.insert("actor".into(), json!({"user": user(&event["actor"])}));
    ocsf.insert("api".into(), json!({"operation": action.unwrap_or(PURGED)}));
    ocsf.insert(
        "src_endpoint".into(),
        endpoint(event["context"]["location"].as_str()),
    );
    if let Some(user_agent) = event["context"]["user_agent"].as_str() {
        ocsf.insert("http_request".into(), json!({"user_agent": user_agent}));
    }
    if let Some(targets) = event["targets"].as_array() {
        ocsf.insert(
            "resources".into(),
            Value::Array(targets.iter().map(resource).collect()),
        );
    }
    if purged {
        ocsf.insert(
            "message".into(),
            json!("The event's contents were purged by retention."),
        );
    }
    ocsf.insert("unmapped".into(), event.clone());
    Value::Object(ocsf)
}

/// The API Activity `activity_id` and its name for an action such as `document.created`.
fn activity(action: &str) -> (u8, &'static str) {
    let verb = action.rsplit('.').next().unwrap_or(action);
    match verb.to_ascii_lowercase().as_str() {
        "create" | "created" => (1, "Create"),
        "read" | "viewed" => (2, "Read"),
        "update" | "updated" => (3, "Update"),
        "delete" | "deleted" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// OCSF's User object for the event's actor.
fn user(actor: &Value) -> Value {
    let mut user = Map::new();
    user.insert("uid".into(), json!(actor["id"].as_str().unwrap_or(PURGED)));
    copy_string(&actor["name"], "name", &mut user);
    if let Some(kind) = actor["type"].as_str() {
        let (type_id, name) = match kind {
            "user" => (1, "User"),
            "admin" => (2, "Admin"),
            "system" => (3, "System"),
            other => (99, other),
        };
        user.insert("type_id".into(), json!(type_id));
        user.insert("type".into(), json!(name));
    }
    Value::Object(user)
}

/// OCSF's Network Endpoint for `context.location`: WorkOS documents it as the client's IP
/// address, but it is free text, so anything else is kept as the endpoint's name.
fn endpoint(location: Option<&str>) -> Value {
    match location {
        Some(location) if location.parse::<IpAddr>().is_ok() => json!({"ip": location}),
        Some(location) => json!({"name": location}),
        None => json!({"name": PURGED}),
    }
}

/// OCSF's Resource Details for one target.
fn resource(target: &Value) -> Value {
    let mut resource = Map::new();
    copy_string(&target["id"], "uid", &mut resource);
    copy_string(&target["name"], "name", &mut resource);
    copy_string(&target["type"], "type", &mut resource);
    if let Some(metadata) = target.get("metadata").filter(|m| !m.is_null()) {
        resource.insert("data".into(), metadata.clone());
    }
    Value::Object(resource)
}

fn copy_string(value: &Value, key: &str, into: &mut Map<String, Value>) {
    if let Some(text) = value.as_str() {
        into.insert(key.into(), json!(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        json!({"object": "audit_log_event", "id": "event_01", "organization_id": "org_01",
            "sequence": 41, "action": "document.updated", "occurred_at": "2026-08-01T10:00:00.000Z",
            "received_at": "2026-08-01T10:00:00.120Z", "version": 2,
            "actor": {"id": "user_1", "type": "user", "name": "Jon Smith", "metadata": {"role": "owner"}},
            "targets": [{"id": "doc_1", "type": "document", "name": "Plan", "metadata": {"size": "3"}},
                        {"id": "team_1", "type": "team"}],
            "context": {"location": "192.0.2.8", "user_agent": "Firefox"},
            "metadata": {"plan": "pro"}, "leaf_hash": "AAAA"})
    }

    #[test]
    fn maps_every_attribute_of_the_table() {
        let ocsf = api_activity(&event());
        assert_eq!(
            ocsf,
            json!({
                "class_uid": 6003, "class_name": "API Activity",
                "category_uid": 6, "category_name": "Application Activity",
                "activity_id": 3, "activity_name": "Update",
                "type_uid": 600303, "type_name": "API Activity: Update",
                "time": 1_785_578_400_000_i64, "severity_id": 1, "severity": "Informational",
                "metadata": {"version": "1.3.0",
                    "product": {"name": "Trailmark", "vendor_name": "Trailmark"},
                    "uid": "event_01", "tenant_uid": "org_01", "sequence": 41,
                    "original_time": "2026-08-01T10:00:00.000Z", "logged_time": 1_785_578_400_120_i64},
                "actor": {"user": {"uid": "user_1", "name": "Jon Smith", "type_id": 1, "type": "User"}},
                "api": {"operation": "document.updated"},
                "src_endpoint": {"ip": "192.0.2.8"},
                "http_request": {"user_agent": "Firefox"},
                "resources": [{"uid": "doc_1", "name": "Plan", "type": "document", "data": {"size": "3"}},
                              {"uid": "team_1", "type": "team"}],
                "unmapped": event(),
            })
        );
    }

    #[test]
    fn the_activity_comes_from_the_actions_verb() {
        let cases = [
            ("user.create", 1),
            ("user.created", 1),
            ("report.read", 2),
            ("report.viewed", 2),
            ("team.update", 3),
            ("team.Updated", 3),
            ("key.delete", 4),
            ("key.deleted", 4),
            ("user.signed_in", 99),
            ("created_report.exported", 99),
            ("deleted", 4),
        ];
        for (action, id) in cases {
            let mut event = event();
            event["action"] = json!(action);
            let ocsf = api_activity(&event);
            assert_eq!(ocsf["activity_id"], id, "{action}");
            assert_eq!(ocsf["type_uid"], 600_300 + id, "{action}");
        }
    }

    #[test]
    fn actor_types_and_locations_that_are_not_ips() {
        let mut event = event();
        event["actor"] = json!({"id": "svc_1", "type": "api_key"});
        event["context"] = json!({"location": "Berlin"});
        event["targets"] = json!([]);
        let ocsf = api_activity(&event);
        assert_eq!(
            ocsf["actor"],
            json!({"user": {"uid": "svc_1", "type_id": 99, "type": "api_key"}})
        );
        assert_eq!(ocsf["src_endpoint"], json!({"name": "Berlin"}));
        assert_eq!(ocsf.get("http_request"), None);
        assert_eq!(ocsf["resources"], json!([]));
        event["context"]["location"] = json!("2001:db8::1");
        assert_eq!(
            api_activity(&event)["src_endpoint"],
            json!({"ip": "2001:db8::1"})
        );
    }

    #[test]
    fn a_purged_stub_still_has_every_required_attribute() {
        let stub = json!({"object": "audit_log_event", "id": "event_01", "organization_id": "org_01",
            "sequence": 0, "received_at": "2026-08-01T10:00:00.120Z", "purged": true,
            "purged_at": "2026-09-01T00:00:00.000Z", "leaf_hash": "AAAA"});
        let ocsf = api_activity(&stub);
        assert_eq!(ocsf["activity_id"], 0);
        assert_eq!(ocsf["type_uid"], 600_300);
        assert_eq!(ocsf["time"], 1_785_578_400_120_i64);
        assert_eq!(ocsf["actor"], json!({"user": {"uid": "[purged]"}}));
        assert_eq!(ocsf["api"], json!({"operation": "[purged]"}));
        assert_eq!(ocsf["src_endpoint"], json!({"name": "[purged]"}));
        assert_eq!(ocsf["unmapped"], stub);
    }
}
