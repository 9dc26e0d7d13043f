//! Amazon S3, or any S3-compatible store (including Google Cloud Storage's XML API with HMAC
//! keys): one object per event, as WorkOS writes them, or one gzip NDJSON object per batch.
//!
//! - `object_per_event` (the default): key `<prefix><YYYY-MM-DD>/<occurred_at>_<event id>.json`
//!   (WorkOS: `YYYY-MM-DD/{timestamp}_{keySuffix}.json`), body the pretty-printed event object;
//! - `ndjson_gzip`: key `<prefix><YYYY-MM-DD>/<first sequence>-<last sequence>.ndjson.gz`
//!   (sequences zero-padded to 20 digits, so keys sort in log order), body gzip of one event
//!   object per line.
//!
//! Keys are derived from the events alone, so a batch sent again after a failure overwrites the
//! same objects instead of duplicating them. Every PUT carries `Content-MD5` (S3 Object Lock
//! requires it) and is signed with AWS Signature Version 4 (`AWS4-HMAC-SHA256`, service `s3`).
//! A custom `endpoint` is addressed path-style (`<endpoint>/<bucket>/<key>`); AWS itself
//! virtual-hosted style (`https://<bucket>.s3.<region>.amazonaws.com/<key>`).

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Events written per attempt in `object_per_event` layout (PUTs run a few at a time).
pub const MAX_OBJECTS: usize = 64;
/// Events per gzip NDJSON object.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Uncompressed NDJSON bytes per gzip object: objects stay small enough for a reader to fetch
/// and unpack in one go (the last event may pass it; one event is never split).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct Bucket<'a> {
    pub bucket: &'a str,
    pub region: &'a str,
    pub prefix: &'a str,
    pub endpoint: Option<&'a str>,
}

impl Bucket<'_> {
    /// The URL of `key` and the `Host` header value it is signed with.
    pub fn object_url(&self, key: &str) -> (String, String) {
        let key = encode_path(key);
        match self.endpoint {
            Some(endpoint) => {
                let endpoint = endpoint.trim_end_matches('/');
                let host = endpoint
                    .split("://")
                    .nth(1)
                    .unwrap_or(endpoint)
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                (
                    format!("{endpoint}/{}/{key}", encode_path(self.bucket)),
                    host,
                )
            }
            None => {
                let host = format!("{}.s3.{}.amazonaws.com", self.bucket, self.region);
                (format!("https://{host}/{key}"), host)
            }
        }
    }
}

/// One object to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    /// How many of the attempt's events, from where the previous object ended, it holds.
    pub events: usize,
}

/// The object for a signed checkpoint (`{"tree_size", "checkpoint": <signed note>, …}`):
/// `<prefix>checkpoints/<tree size, 20 digits>`, holding the signed note as it was signed, so a
/// customer can give the file to `trailmark verify --checkpoint`; the names sort by size.
pub fn checkpoint_object(checkpoint: &Value, prefix: &str) -> Object {
    Object {
        key: format!(
            "{prefix}checkpoints/{:020}",
            checkpoint["tree_size"].as_u64().unwrap_or_default()
        ),
        body: checkpoint["checkpoint"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        content_type: "text/plain",
        content_encoding: None,
        events: 1,
    }
}

/// The objects for the events of one attempt, in log order: one per event (up to
/// [`MAX_OBJECTS`]), or one gzip NDJSON object of up to [`MAX_BATCH_EVENTS`] events and about
/// [`MAX_BATCH_BYTES`].
pub fn objects(events: &[Value], prefix: &str, ndjson_gzip: bool) -> Vec<Object> {
    if ndjson_gzip {
        let mut text = Vec::new();
        let mut count = 0usize;
        for event in events.iter().take(MAX_BATCH_EVENTS) {
            if count > 0 && text.len() >= MAX_BATCH_BYTES {
                break;
            }
            let _ = writeln!(text, "{event}");
            count += 1;
        }
        let (Some(first), Some(last)) = (
            events.first(),
            count.checked_sub(1).and_then(|i| events.get(i)),
        ) else {
            return Vec::new();
        };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = encoder.write_all(&text);
        let body = encoder.finish().unwrap_or_default();
        let key = format!(
            "{prefix}{}/{:020}-{:020}.ndjson.gz",
            day(first),
            first["sequence"].as_u64().unwrap_or_default(),
            last["sequence"].as_u64().unwrap_or_default()
        );
        vec![Object {
            key,
            body,
            content_type: "application/x-ndjson",
            content_encoding: Some("gzip"),
            events: count,
        }]
    } else {
        events
            .iter()
            .take(MAX_OBJECTS)
            .map(|event| Object {
                key: format!(
                    "{prefix}{}/{}_{}.json",
                    day(event),
                    event["occurred_at"].as_str().unwrap_or_default(),
                    event["id"].as_str().unwrap_or_default()
                ),
                body: serde_json::to_vec_pretty(event).unwrap_or_default(),
                content_type: "application/json",
                content_encoding: None,
                events: 1,
            })
            .collect()
    }
}

fn day(event: &Value) -> &str {
    event["occurred_at"]
        .as_str()
        .and_then(|t| t.get(..10))
        .unwrap_or("undated")
}

/// The headers of a signed PUT, AWS Signature Version 4 (all names lower-case).
pub fn signed_put_headers(
    object: &Object,
    host: &str,
    url_path: &str,
    region: &str,
    access_key_id: &str,
    secret_access_key: &str,
    now: trailmark_domain::Timestamp,
) -> Vec<(String, String)> {
    let amz_date = amz_date(now);
    let date = &amz_date[..8];
    let payload_hash = hex(&Sha256::digest(&object.body));
    let content_md5 = STANDARD.encode(md5::Md5::digest(&object.body));
    let mut headers: Vec<(String, String)> = vec![
        ("content-md5".into(), content_md5),
        ("content-type".into(), object.content_type.into()),
        ("host".into(), host.into()),
        ("x-amz-content-sha256".into(), payload_hash.clone()),
        ("x-amz-date".into(), amz_date.clone()),
    ];
    if let Some(encoding) = object.content_encoding {
        headers.push(("content-encoding".into(), encoding.into()));
    }
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let canonical_request =
        format!("PUT\n{url_path}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{secret_access_key}").as_bytes(),
        date.as_bytes(),
    );
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    headers.retain(|(name, _)| name != "host");
    headers.push((
        "authorization".into(),
        format!("AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"),
    ));
    headers
}

/// `YYYYMMDDTHHMMSSZ`.
fn amz_date(now: trailmark_domain::Timestamp) -> String {
    let text = now.to_string(); // YYYY-MM-DDTHH:MM:SS.mmmZ
    format!(
        "{}{}{}T{}{}{}Z",
        &text[0..4],
        &text[5..7],
        &text[8..10],
        &text[11..13],
        &text[14..16],
        &text[17..19]
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// URI-encodes a path per SigV4: every byte except unreserved characters and `/`.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_workos_and_sort_in_log_order() {
        let events = [
            json!({"id": "event_A", "sequence": 7, "occurred_at": "2026-08-01T10:00:00.000Z"}),
            json!({"id": "event_B", "sequence": 8, "occurred_at": "2026-08-02T11:00:00.000Z"}),
        ];
        let per_event = objects(&events, "audit/", false);
        assert_eq!(
            per_event[0].key,
            "audit/2026-08-01/2026-08-01T10:00:00.000Z_event_A.json"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&per_event[1].body).expect("json"),
            events[1]
        );
        let batch = objects(&events, "", true);
        assert_eq!(batch.len(), 1);
        assert_eq!(
            batch[0].key,
            "2026-08-01/00000000000000000007-00000000000000000008.ndjson.gz"
        );
        assert_eq!(batch[0].events, 2);
    }

    #[test]
    fn a_gzip_object_stops_at_its_byte_limit_and_says_how_many_events_it_holds() {
        let padding = "x".repeat(MAX_BATCH_BYTES / 3);
        let events: Vec<Value> = (0..5)
            .map(|n| json!({"sequence": n, "occurred_at": "2026-08-01T10:00:00.000Z", "metadata": {"pad": padding}}))
            .collect();
        let batch = objects(&events, "", true);
        assert_eq!(
            batch[0].events, 3,
            "the third event passes the limit and ends the object"
        );
        assert!(
            batch[0]
                .key
                .ends_with("00000000000000000000-00000000000000000002.ndjson.gz")
        );
    }

    #[test]
    fn signature_v4_matches_the_aws_documentation_example() {
        // AWS "Signature Calculations ... Example: PUT Object" (s3 docs, sig-v4-header-based-auth):
        // derive the signing key chain and check the documented intermediate values' shape.
        let object = Object {
            key: "test$file.text".into(),
            body: b"Welcome to Amazon S3.".to_vec(),
            content_type: "text/plain",
            content_encoding: None,
            events: 1,
        };
        let now = trailmark_domain::Timestamp::parse("2013-05-24T00:00:00Z").expect("time");
        let headers = signed_put_headers(
            &object,
            "examplebucket.s3.amazonaws.com",
            "/test%24file.text",
            "us-east-1",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            now,
        );
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            get("x-amz-content-sha256"),
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        assert_eq!(get("x-amz-date"), "20130524T000000Z");
        assert!(get("authorization").starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=content-md5;content-type;host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        assert_eq!(encode_path("a b/c+d"), "a%20b/c%2Bd");
    }
}
