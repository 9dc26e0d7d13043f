//! An `s3` stream's settings: `{bucket, region, prefix?, endpoint?, access_key_id?,
//! secret_access_key?, role_arn?, external_id?, sts_endpoint?, server_side_encryption?:
//! "AES256"|"aws:kms", kms_key_id?, acl?: "bucket-owner-full-control", layout?:
//! "object_per_event"|"ndjson_gzip"}` (`endpoint` for S3-compatible stores, addressed
//! path-style). Access keys come as a pair or not at all: without them the stream uses the
//! credentials Trailmark itself runs with, if the operator lends them
//! ([`super::credentials::DefaultChain`]). The bucket, prefix and layout checks are shared with
//! `gcs`.

use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

use super::Bucket;
use crate::settings::Reader;

/// The layouts an object-store stream writes ([`super::encode`]).
pub const LAYOUTS: &[&str] = &["object_per_event", "ndjson_gzip"];
/// The server-side encryption S3 applies when asked (`x-amz-server-side-encryption`).
pub const ENCRYPTIONS: &[&str] = &["AES256", "aws:kms"];
/// The canned ACLs a stream may set (`x-amz-acl`): the one that gives a bucket owner in another
/// account the objects the stream writes.
pub const ACLS: &[&str] = &["bucket-owner-full-control"];

/// How events become objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    ObjectPerEvent,
    NdjsonGzip,
}

/// Static keys: an IAM user's access key.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A role the stream assumes (STS `AssumeRole`) before writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub arn: String,
    pub external_id: Option<String>,
    /// Where `AssumeRole` is sent: `https://sts.<region>.amazonaws.com` unless set.
    pub sts_endpoint: String,
}

/// A validated `s3` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: Bucket,
    pub layout: Layout,
    /// `None`: the credentials Trailmark runs with.
    pub keys: Option<StaticKeys>,
    pub role: Option<Role>,
    /// The `x-amz-*` headers every PUT carries (encryption, ACL), signed with it.
    pub object_headers: Vec<(String, String)>,
}

impl Config {
    /// # Errors
    ///
    /// Every problem, naming its field.
    pub fn parse(
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
    ) -> Result<Self, Vec<FieldProblem>> {
        let mut r = Reader::new(public, secrets);
        let name = bucket(&mut r);
        let region = r.text("region", true);
        let prefix = prefix(&mut r);
        let endpoint = r.url("endpoint", false);
        let access_key_id = r.text("access_key_id", false);
        let secret_access_key = r.secret("secret_access_key", false);
        let keys = match (access_key_id, secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => Some(StaticKeys {
                access_key_id,
                secret_access_key,
            }),
            (Some(_), None) => {
                r.problem(
                    "required",
                    "secret_access_key",
                    "secret_access_key is required with access_key_id",
                );
                None
            }
            (None, Some(_)) => {
                r.problem(
                    "required",
                    "access_key_id",
                    "access_key_id is required with secret_access_key",
                );
                None
            }
            (None, None) => None,
        };
        let role = role(&mut r, region.as_deref());
        let object_headers = object_headers(&mut r);
        let layout = layout(&mut r);
        let config = (|| {
            Some(Config {
                bucket: Bucket {
                    name: name?,
                    region: region?,
                    prefix,
                    endpoint,
                },
                layout,
                keys,
                role,
                object_headers,
            })
        })();
        r.finish(config)
    }
}

/// `role_arn`, `external_id` and `sts_endpoint`.
fn role(r: &mut Reader<'_>, region: Option<&str>) -> Option<Role> {
    let arn = r.text("role_arn", false);
    let external_id = r.text("external_id", false);
    let sts_endpoint = r.url("sts_endpoint", false);
    let Some(arn) = arn else {
        for orphan in ["external_id", "sts_endpoint"] {
            if r.public.contains_key(orphan) {
                r.problem(
                    "invalid_value",
                    orphan,
                    &format!("{orphan} is used only with role_arn"),
                );
            }
        }
        return None;
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[5].starts_with("role/")
    {
        r.problem(
            "invalid_value",
            "role_arn",
            "role_arn must be an IAM role's ARN, like arn:aws:iam::123456789012:role/trailmark-audit-logs",
        );
        return None;
    }
    // AWS's pattern for an external id: 2 to 1224 of [\w+=,.@:/-].
    if let Some(id) = &external_id
        && (!(2..=1224).contains(&id.len())
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/-_".contains(&b)))
    {
        r.problem(
            "invalid_value",
            "external_id",
            "external_id must be 2 to 1224 characters of letters, digits and +=,.@:/-_",
        );
    }
    let sts_endpoint = sts_endpoint
        .map(|url| url.trim_end_matches('/').to_owned())
        .or_else(|| region.map(|region| format!("https://sts.{region}.amazonaws.com")))?;
    Some(Role {
        arn,
        external_id,
        sts_endpoint,
    })
}

/// `server_side_encryption`, `kms_key_id` and `acl`, as the headers a PUT sends.
fn object_headers(r: &mut Reader<'_>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let encryption = optional_choice(r, "server_side_encryption", ENCRYPTIONS);
    let kms_key_id = r.text("kms_key_id", false);
    match (encryption.as_deref(), kms_key_id) {
        (Some("aws:kms"), key) => {
            headers.push(("x-amz-server-side-encryption".into(), "aws:kms".into()));
            if let Some(key) = key {
                headers.push(("x-amz-server-side-encryption-aws-kms-key-id".into(), key));
            }
        }
        (_, Some(_)) => r.problem(
            "invalid_value",
            "kms_key_id",
            "kms_key_id is used only with server_side_encryption 'aws:kms'",
        ),
        (Some(other), None) => {
            headers.push(("x-amz-server-side-encryption".into(), other.to_owned()));
        }
        (None, None) => {}
    }
    if let Some(acl) = optional_choice(r, "acl", ACLS) {
        headers.push(("x-amz-acl".into(), acl));
    }
    headers
}

/// One of `choices`, or nothing.
fn optional_choice(r: &mut Reader<'_>, key: &str, choices: &[&str]) -> Option<String> {
    let given = r.text(key, false)?;
    if choices.contains(&given.as_str()) {
        return Some(given);
    }
    let listed: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
    r.problem(
        "invalid_value",
        key,
        &format!("{key} must be {}", listed.join(" or ")),
    );
    None
}

/// `bucket`: S3 and GCS naming rules, loosely (what both accept).
pub(crate) fn bucket(r: &mut Reader<'_>) -> Option<String> {
    let name = r.text("bucket", true)?;
    let valid = (3..=63).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if !valid {
        r.problem(
            "invalid_value",
            "bucket",
            "bucket must be 3 to 63 characters of a-z, 0-9, '.', '-' and '_'",
        );
        return None;
    }
    Some(name)
}

/// `prefix`: written before every key, so it may not climb out or start at the root.
pub(crate) fn prefix(r: &mut Reader<'_>) -> String {
    match r.text("prefix", false) {
        Some(prefix) if prefix.starts_with('/') || prefix.contains("..") => {
            r.problem(
                "invalid_value",
                "prefix",
                "prefix must not start with '/' or contain '..'",
            );
            String::new()
        }
        Some(prefix) => prefix,
        None => String::new(),
    }
}

/// `layout`, `object_per_event` when not given.
pub(crate) fn layout(r: &mut Reader<'_>) -> Layout {
    match r.choice("layout", LAYOUTS, "object_per_event").as_str() {
        "ndjson_gzip" => Layout::NdjsonGzip,
        _ => Layout::ObjectPerEvent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(public: Value, secrets: Value) -> Result<Config, Vec<FieldProblem>> {
        let (Value::Object(mut public), Value::Object(mut secrets)) = (public, secrets) else {
            return Err(Vec::new());
        };
        Config::parse(&mut public, &mut secrets)
    }

    #[test]
    fn a_role_takes_its_regional_sts_endpoint_and_objects_their_headers() {
        let config = parse(
            json!({"bucket": "acme-audit", "region": "eu-west-1",
                   "role_arn": "arn:aws:iam::444455556666:role/trailmark-audit-logs",
                   "external_id": "acme-7f3a9c2e", "server_side_encryption": "aws:kms",
                   "kms_key_id": "alias/audit", "acl": "bucket-owner-full-control"}),
            json!({}),
        )
        .expect("valid");
        assert_eq!(config.keys, None, "no keys: the default chain, if lent");
        let role = config.role.expect("role");
        assert_eq!(role.sts_endpoint, "https://sts.eu-west-1.amazonaws.com");
        assert_eq!(role.external_id.as_deref(), Some("acme-7f3a9c2e"));
        assert_eq!(
            config.object_headers,
            [
                (
                    "x-amz-server-side-encryption".to_owned(),
                    "aws:kms".to_owned()
                ),
                (
                    "x-amz-server-side-encryption-aws-kms-key-id".to_owned(),
                    "alias/audit".to_owned()
                ),
                (
                    "x-amz-acl".to_owned(),
                    "bucket-owner-full-control".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn half_a_key_pair_and_role_settings_without_a_role_are_refused() {
        let problems = parse(
            json!({"bucket": "acme-audit", "region": "eu-west-1", "access_key_id": "AKIAEXAMPLE",
                   "external_id": "x1", "server_side_encryption": "AES256", "kms_key_id": "k"}),
            json!({}),
        )
        .expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "config.secret_access_key",
                "config.external_id",
                "config.kms_key_id"
            ]
        );
    }
}
