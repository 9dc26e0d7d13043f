//! Every size limit Trailmark enforces, in one place.
//!
//! The metadata limits are WorkOS's (documented in the Audit Logs guide and the OpenAPI
//! `AuditLogEventIngestionDto`). WorkOS documents no limits for the other strings and arrays; the
//! ones here are Trailmark's, chosen so that a real event always fits and a hostile one cannot
//! make a single row unbounded.

/// WorkOS: at most 50 keys in one metadata object.
pub const METADATA_MAX_KEYS: usize = 50;
/// WorkOS: metadata keys match `^[a-zA-Z0-9_-]{0,40}$`.
pub const METADATA_KEY_MAX_CHARS: usize = 40;
/// WorkOS: metadata string values are at most 500 characters.
pub const METADATA_VALUE_MAX_CHARS: usize = 500;

/// Trailmark: action names such as `user.signed_in`.
pub const ACTION_MAX_CHARS: usize = 200;
/// Trailmark: ids, types and names of actors and targets.
pub const NAME_MAX_CHARS: usize = 500;
/// Trailmark: `context.location` (an IP address or a geolocation label).
pub const LOCATION_MAX_CHARS: usize = 500;
/// Trailmark: `context.user_agent`; real user agents stay far below this.
pub const USER_AGENT_MAX_CHARS: usize = 2_000;
/// Trailmark: targets of one event.
pub const TARGETS_MAX: usize = 100;
/// Trailmark: events in one batch request.
pub const BATCH_MAX_EVENTS: usize = 1_000;

/// WorkOS: organization names are required; Trailmark caps them like other names.
pub const ORGANIZATION_NAME_MAX_CHARS: usize = 500;
/// WorkOS OpenAPI: `external_id` is at most 128 ASCII characters.
pub const EXTERNAL_ID_MAX_CHARS: usize = 128;
/// WorkOS OpenAPI: organization metadata string values are at most 600 characters.
pub const ORGANIZATION_METADATA_VALUE_MAX_CHARS: usize = 600;
/// Trailmark: domains of one organization.
pub const DOMAINS_MAX: usize = 100;
/// RFC 1035: a domain name is at most 253 characters in text form.
pub const DOMAIN_MAX_CHARS: usize = 253;

/// Trailmark: target types one schema version may list.
pub const SCHEMA_TARGETS_MAX: usize = 100;
