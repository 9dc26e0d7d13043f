//! The JSON of every object the API returns, written by hand from the domain types so that
//! compatibility with WorkOS's shapes (wire doc §2, §4) is decided here and nowhere else.
//! Timestamps are always `YYYY-MM-DDTHH:MM:SS.mmmZ`.

use serde_json::{Value, json};
use trailmark_domain::organization::Organization;
use trailmark_domain::schema::ActionSchema;
use trailmark_store::{ActionSummary, Page};

/// The WorkOS list envelope. `list_metadata.after` is the cursor for the next page and `null`
/// on the last one (SDKs paginate until it is null); `before` likewise for the previous page.
pub fn list<T>(page: &Page<T>, cursor: impl Fn(&T) -> String, item: impl Fn(&T) -> Value) -> Value {
    let before = if page.more_before {
        page.items.first().map(&cursor)
    } else {
        None
    };
    let after = if page.more_after {
        page.items.last().map(&cursor)
    } else {
        None
    };
    json!({
        "object": "list",
        "data": page.items.iter().map(item).collect::<Vec<_>>(),
        "list_metadata": {"before": before, "after": after},
    })
}

/// `organization`, with every key any SDK requires (wire doc §4).
pub fn organization(organization: &Organization) -> Value {
    json!({
        "object": "organization",
        "id": organization.id,
        "name": organization.name,
        "domains": organization.domains.iter().map(|domain| json!({
            "object": "organization_domain",
            "id": domain.id,
            "organization_id": organization.id,
            "domain": domain.domain,
            "state": domain.state.as_str(),
            "created_at": organization.created_at.to_string(),
            "updated_at": organization.updated_at.to_string(),
        })).collect::<Vec<_>>(),
        "metadata": organization.metadata,
        "external_id": organization.external_id,
        "allow_profiles_outside_organization": organization.allow_profiles_outside_organization,
        "created_at": organization.created_at.to_string(),
        "updated_at": organization.updated_at.to_string(),
    })
}

/// `audit_log_schema`: the stored definition echoed as submitted, plus version and time.
pub fn schema(schema: &ActionSchema) -> Value {
    let mut body = schema.definition.to_json();
    if let Value::Object(map) = &mut body {
        map.insert("object".into(), json!("audit_log_schema"));
        map.insert("version".into(), json!(schema.version));
        map.insert("created_at".into(), json!(schema.created_at.to_string()));
    }
    body
}

/// `audit_log_action`, embedding the latest schema version.
pub fn action(action: &ActionSummary) -> Value {
    json!({
        "object": "audit_log_action",
        "name": action.latest.action.as_str(),
        "schema": schema(&action.latest),
        "created_at": action.created_at.to_string(),
        "updated_at": action.updated_at.to_string(),
    })
}

/// `{"retention_period_in_days": N | null}`: the key is always present (Python 10.8 requires it).
pub fn retention(organization: &Organization) -> Value {
    json!({"retention_period_in_days": organization.retention_period_in_days})
}
