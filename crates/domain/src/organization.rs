//! Organizations: the tenants whose audit logs Trailmark keeps (wire doc §4). Only the subset
//! audit logs need is modelled: name, domains, metadata, external id, and the retention period.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::Timestamp;
use crate::id::IdKind;
use crate::limits::{
    DOMAIN_MAX_CHARS, DOMAINS_MAX, EXTERNAL_ID_MAX_CHARS, METADATA_KEY_MAX_CHARS,
    METADATA_MAX_KEYS, ORGANIZATION_METADATA_VALUE_MAX_CHARS, ORGANIZATION_NAME_MAX_CHARS,
};
use crate::problem::{FieldProblem, FieldProblems, json_type};

/// A stored organization.
#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub domains: Vec<Domain>,
    pub metadata: BTreeMap<String, String>,
    pub external_id: Option<String>,
    pub allow_profiles_outside_organization: bool,
    /// `None` until set through the retention endpoint: events are then kept forever.
    pub retention_period_in_days: Option<u32>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One domain of an organization (`organization_domain`).
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub id: String,
    pub domain: String,
    pub state: DomainState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    Pending,
    Verified,
    /// Domains given through the deprecated `domains` string array.
    LegacyVerified,
}

impl DomainState {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainState::Pending => "pending",
            DomainState::Verified => "verified",
            DomainState::LegacyVerified => "legacy_verified",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DomainState::Pending),
            "verified" => Some(DomainState::Verified),
            "legacy_verified" => Some(DomainState::LegacyVerified),
            _ => None,
        }
    }
}

/// The fields a create or update request may set. On update, `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrganizationChanges {
    pub name: Option<String>,
    pub domains: Option<Vec<(String, DomainState)>>,
    /// `Some(None)` clears the external id.
    pub external_id: Option<Option<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub allow_profiles_outside_organization: Option<bool>,
}

impl OrganizationChanges {
    /// Parses `POST /organizations` (where `name` is required) or `PUT /organizations/{id}`.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its field.
    pub fn parse(value: &Value, creating: bool) -> Result<Self, Vec<FieldProblem>> {
        let mut problems = FieldProblems::default();
        let Value::Object(body) = value else {
            problems.push(
                "invalid_type",
                "body",
                format!(
                    "the request body must be a JSON object, got {}",
                    json_type(value)
                ),
            );
            return Err(problems.into_vec());
        };
        let mut changes = OrganizationChanges::default();

        match body.get("name") {
            None | Some(Value::Null) if creating => {
                problems.push("required", "name", "name is required")
            }
            None | Some(Value::Null) => {}
            Some(Value::String(name)) if name.trim().is_empty() => {
                problems.push("empty", "name", "name must not be empty")
            }
            Some(Value::String(name)) if name.chars().count() > ORGANIZATION_NAME_MAX_CHARS => {
                problems.push(
                    "too_long",
                    "name",
                    format!("name must be at most {ORGANIZATION_NAME_MAX_CHARS} characters"),
                )
            }
            Some(Value::String(name)) => changes.name = Some(name.clone()),
            Some(other) => problems.push(
                "invalid_type",
                "name",
                format!("name must be a string, got {}", json_type(other)),
            ),
        }

        let mut domains = Vec::new();
        let mut domains_given = false;
        if let Some(value) = body.get("domain_data").filter(|v| !v.is_null()) {
            domains_given = true;
            match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let field = format!("domain_data[{i}]");
                        let domain = item.get("domain").and_then(Value::as_str);
                        let state = match item.get("state") {
                            None | Some(Value::Null) => Some(DomainState::Pending),
                            Some(Value::String(s)) if s == "pending" || s == "verified" => {
                                DomainState::parse(s)
                            }
                            Some(_) => None,
                        };
                        match (domain, state) {
                            (Some(domain), Some(state)) => {
                                domains.push((domain.to_owned(), state, field))
                            }
                            (None, _) => problems.push(
                                "required",
                                format!("{field}.domain"),
                                "domain is required and must be a string",
                            ),
                            (_, None) => problems.push(
                                "invalid_value",
                                format!("{field}.state"),
                                "state must be 'pending' or 'verified'",
                            ),
                        }
                    }
                }
                other => problems.push(
                    "invalid_type",
                    "domain_data",
                    format!("domain_data must be an array, got {}", json_type(other)),
                ),
            }
        }
        if let Some(value) = body.get("domains").filter(|v| !v.is_null()) {
            domains_given = true;
            match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        match item.as_str() {
                            Some(domain) => domains.push((
                                domain.to_owned(),
                                DomainState::LegacyVerified,
                                format!("domains[{i}]"),
                            )),
                            None => problems.push(
                                "invalid_type",
                                format!("domains[{i}]"),
                                "each domain must be a string",
                            ),
                        }
                    }
                }
                other => problems.push(
                    "invalid_type",
                    "domains",
                    format!("domains must be an array, got {}", json_type(other)),
                ),
            }
        }
        if domains.len() > DOMAINS_MAX {
            problems.push(
                "too_many",
                "domain_data",
                format!("at most {DOMAINS_MAX} domains are allowed"),
            );
        }
        let mut parsed_domains: Vec<(String, DomainState)> = Vec::new();
        for (domain, state, field) in domains {
            let domain = domain.trim().to_ascii_lowercase();
            let plausible = !domain.is_empty()
                && domain.len() <= DOMAIN_MAX_CHARS
                && domain.contains('.')
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !plausible {
                problems.push(
                    "invalid_format",
                    field,
                    format!("'{domain}' is not a domain name"),
                );
            } else if !parsed_domains.iter().any(|(d, _)| *d == domain) {
                parsed_domains.push((domain, state));
            }
        }
        if domains_given {
            changes.domains = Some(parsed_domains);
        }

        match body.get("external_id") {
            None => {}
            Some(Value::Null) => changes.external_id = Some(None),
            Some(Value::String(id))
                if id.is_empty() || id.len() > EXTERNAL_ID_MAX_CHARS || !id.is_ascii() =>
            {
                problems.push(
                    "invalid_value",
                    "external_id",
                    format!("external_id must be 1 to {EXTERNAL_ID_MAX_CHARS} ASCII characters"),
                )
            }
            Some(Value::String(id)) => changes.external_id = Some(Some(id.clone())),
            Some(other) => problems.push(
                "invalid_type",
                "external_id",
                format!("external_id must be a string, got {}", json_type(other)),
            ),
        }

        match body.get("metadata") {
            None => {}
            Some(Value::Null) => changes.metadata = Some(BTreeMap::new()),
            Some(Value::Object(map)) => {
                changes.metadata = Some(organization_metadata(map, &mut problems))
            }
            Some(other) => problems.push(
                "invalid_type",
                "metadata",
                format!("metadata must be an object, got {}", json_type(other)),
            ),
        }

        match body.get("allow_profiles_outside_organization") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(allow)) => changes.allow_profiles_outside_organization = Some(*allow),
            Some(other) => problems.push(
                "invalid_type",
                "allow_profiles_outside_organization",
                format!(
                    "allow_profiles_outside_organization must be a boolean, got {}",
                    json_type(other)
                ),
            ),
        }

        if problems.is_empty() {
            Ok(changes)
        } else {
            Err(problems.into_vec())
        }
    }

    /// A new organization from a parsed create request.
    pub fn into_new_organization(self, now: Timestamp) -> Organization {
        let mut organization = Organization {
            id: IdKind::Organization.generate().into_string(),
            name: String::new(),
            domains: Vec::new(),
            metadata: BTreeMap::new(),
            external_id: None,
            allow_profiles_outside_organization: false,
            retention_period_in_days: None,
            created_at: now,
            updated_at: now,
        };
        self.apply_to(&mut organization, now);
        organization
    }

    /// Applies these changes to `organization`, keeping the ids of domains it already has.
    pub fn apply_to(self, organization: &mut Organization, now: Timestamp) {
        if let Some(name) = self.name {
            organization.name = name;
        }
        if let Some(domains) = self.domains {
            organization.domains = domains
                .into_iter()
                .map(|(domain, state)| {
                    let id = organization
                        .domains
                        .iter()
                        .find(|d| d.domain == domain)
                        .map_or_else(
                            || IdKind::OrganizationDomain.generate().into_string(),
                            |d| d.id.clone(),
                        );
                    Domain { id, domain, state }
                })
                .collect();
        }
        if let Some(external_id) = self.external_id {
            organization.external_id = external_id;
        }
        if let Some(metadata) = self.metadata {
            organization.metadata = metadata;
        }
        if let Some(allow) = self.allow_profiles_outside_organization {
            organization.allow_profiles_outside_organization = allow;
        }
        organization.updated_at = now;
    }
}

/// Organization metadata (WorkOS OpenAPI): at most 50 keys of at most 40 characters, string
/// values of at most 600 characters. A `null` value drops the key.
fn organization_metadata(
    map: &Map<String, Value>,
    problems: &mut FieldProblems,
) -> BTreeMap<String, String> {
    if map.len() > METADATA_MAX_KEYS {
        problems.push(
            "too_many",
            "metadata",
            format!("metadata may have at most {METADATA_MAX_KEYS} keys"),
        );
    }
    let mut metadata = BTreeMap::new();
    for (key, value) in map {
        let field = format!("metadata.{key}");
        if key.is_empty() || key.chars().count() > METADATA_KEY_MAX_CHARS {
            problems.push(
                "invalid_value",
                &field,
                format!("metadata keys must be 1 to {METADATA_KEY_MAX_CHARS} characters"),
            );
            continue;
        }
        match value {
            Value::Null => {}
            Value::String(text) if text.chars().count() > ORGANIZATION_METADATA_VALUE_MAX_CHARS => problems.push(
                "too_long",
                &field,
                format!("metadata values must be at most {ORGANIZATION_METADATA_VALUE_MAX_CHARS} characters"),
            ),
            Value::String(text) => {
                metadata.insert(key.clone(), text.clone());
            }
            other => problems.push("invalid_type", &field, format!("metadata values must be strings, got {}", json_type(other))),
        }
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_needs_a_name_and_checks_every_field() {
        let problems = OrganizationChanges::parse(
            &json!({"domain_data": [{"domain": "acme.test", "state": "maybe"}], "external_id": 5, "metadata": {"k": 1}}),
            true,
        )
        .unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "domain_data[0].state", "external_id", "metadata.k"]
        );
    }

    #[test]
    fn update_changes_only_what_is_given_and_keeps_domain_ids() {
        let created = OrganizationChanges::parse(
            &json!({"name": "Acme", "domain_data": [{"domain": "Acme.test", "state": "verified"}]}),
            true,
        )
        .expect("valid")
        .into_new_organization(Timestamp::from_unix_millis(1));
        assert_eq!(created.domains[0].domain, "acme.test");
        let mut updated = created.clone();
        OrganizationChanges::parse(&json!({"domains": ["acme.test", "acme.example"]}), false)
            .expect("valid")
            .apply_to(&mut updated, Timestamp::from_unix_millis(2));
        assert_eq!(updated.name, "Acme");
        assert_eq!(updated.domains.len(), 2);
        assert_eq!(updated.domains[0].id, created.domains[0].id);
        assert_eq!(updated.updated_at, Timestamp::from_unix_millis(2));
    }
}
