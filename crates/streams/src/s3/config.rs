//! An `s3` stream's settings: `{bucket, region, prefix?, endpoint?, access_key_id,
//! secret_access_key, layout?: "object_per_event"|"ndjson_gzip"}` (`endpoint` for S3-compatible
//! stores, addressed path-style). The bucket, prefix and layout checks are shared with `gcs`.

use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

use super::Bucket;
use crate::settings::Reader;

/// The layouts an object-store stream writes ([`super::encode`]).
pub const LAYOUTS: &[&str] = &["object_per_event", "ndjson_gzip"];

/// How events become objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    ObjectPerEvent,
    NdjsonGzip,
}

/// A validated `s3` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: Bucket,
    pub layout: Layout,
    pub access_key_id: String,
    pub secret_access_key: String,
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
        let access_key_id = r.text("access_key_id", true);
        let secret_access_key = r.secret("secret_access_key", true);
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
                access_key_id: access_key_id?,
                secret_access_key: secret_access_key?,
            })
        })();
        r.finish(config)
    }
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
