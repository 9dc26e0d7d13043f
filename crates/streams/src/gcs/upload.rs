//! One object per multipart upload through GCS's JSON API (`POST {endpoint}/upload/storage/v1/b/
//! {bucket}/o?uploadType=multipart`, `Authorization: Bearer <token>`): a JSON metadata part
//! (`name`, `contentType`, `contentEncoding` for gzip batches, `md5Hash` so GCS rejects a
//! corrupted body) then the object's bytes. Multipart rather than a media upload because only
//! the metadata part can set `contentEncoding: gzip` on the stored object (a media upload's
//! `Content-Encoding` header only compresses the request).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::Digest;
use serde_json::json;

use crate::s3::Object;

/// The multipart upload URL for `bucket` at `endpoint` (JSON API).
pub fn upload_url(endpoint: &str, bucket: &str) -> String {
    format!(
        "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
        endpoint.trim_end_matches('/'),
        crate::s3::encode_path(bucket)
    )
}

/// The `Content-Type` and body of a multipart upload of `object`; `boundary` must not occur in
/// the object's bytes (callers pass a random one).
pub fn multipart(object: &Object, boundary: &str) -> (String, Vec<u8>) {
    let mut metadata = json!({
        "name": object.key,
        "contentType": object.content_type,
        "md5Hash": STANDARD.encode(md5::Md5::digest(&object.body)),
    });
    if let Some(encoding) = object.content_encoding {
        metadata["contentEncoding"] = json!(encoding);
    }
    let mut body = format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: {}\r\n\r\n",
        object.content_type
    )
    .into_bytes();
    body.extend_from_slice(&object.body);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/related; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::gcs::token::token_request_body;

    #[test]
    fn multipart_uploads_carry_name_type_encoding_and_md5() {
        let object = Object {
            key: "audit/2026-08-01/1-2.ndjson.gz".into(),
            body: b"\x1f\x8bbytes".to_vec(),
            content_type: "application/x-ndjson",
            content_encoding: Some("gzip"),
            events: 2,
        };
        let (content_type, body) = multipart(&object, "b0undary");
        assert_eq!(content_type, "multipart/related; boundary=b0undary");
        let text = String::from_utf8_lossy(&body);
        let metadata: Value = serde_json::from_str(
            text.split("\r\n\r\n")
                .nth(1)
                .and_then(|rest| rest.split("\r\n").next())
                .unwrap_or_default(),
        )
        .expect("metadata part");
        assert_eq!(
            metadata,
            json!({"name": "audit/2026-08-01/1-2.ndjson.gz", "contentType": "application/x-ndjson",
                   "contentEncoding": "gzip", "md5Hash": STANDARD.encode(md5::Md5::digest(b"\x1f\x8bbytes"))})
        );
        assert!(body.ends_with(b"\x1f\x8bbytes\r\n--b0undary--\r\n"));
        assert_eq!(
            upload_url("http://127.0.0.1:4443/", "audit-gcs"),
            "http://127.0.0.1:4443/upload/storage/v1/b/audit-gcs/o?uploadType=multipart"
        );
        assert_eq!(
            token_request_body("h.c.s"),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=h.c.s"
        );
    }
}
