//! S3 and GCS (through its S3-compatible API with HMAC keys) streams against a real
//! S3-compatible server, `s3s-fs` from crates.io, which checks every request's AWS Signature
//! Version 4. `./scripts/test` installs it; the binary is found on `PATH` or through
//! `TRAILMARK_S3S_FS`.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{TestApp, body, event};

/// A running s3s-fs with one bucket, serving files under a temporary root.
struct S3Server {
    child: Child,
    url: String,
    root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn s3_server(bucket: &str) -> S3Server {
    let root = tempfile::tempdir().expect("root");
    std::fs::create_dir_all(root.path().join(bucket)).expect("bucket");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let binary = std::env::var("TRAILMARK_S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
    let child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "AKIDTRAILMARK", "--secret-key", "trailmark-test-secret"])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary} ({e}); ./scripts/test installs it with `cargo install s3s-fs`"));
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    S3Server { child, url, root }
}

/// Every object under `dir`, as (key relative to it, bytes), sorted by key.
fn objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(key) = path.strip_prefix(dir) {
                let key = key.to_string_lossy().into_owned();
                // s3s-fs keeps its metadata beside the objects in dot-files.
                if !key.split('/').any(|part| part.starts_with('.')) {
                    found.push((key, std::fs::read(&path).unwrap_or_default()));
                }
            }
        }
    }
    found.sort();
    found
}

async fn wait_objects(dir: &Path, count: usize) -> Vec<(String, Vec<u8>)> {
    for _ in 0..400 {
        if objects(dir).len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    objects(dir)
}

async fn ingest(app: &TestApp, organization: &str, count: usize) {
    for n in 0..count {
        let mut submitted = event("user.signed_in");
        submitted["occurred_at"] = json!(format!("2026-08-0{}T10:00:{:02}.000Z", 1 + n % 2, n));
        submitted["metadata"] = json!({"n": n});
        assert_eq!(
            app.create_event(organization, &submitted, None)
                .await
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn s3_gets_one_signed_object_per_event_named_as_workos_names_them() {
    let server = s3_server("audit-bucket").await;
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "s3", "name": "S3",
                    "config": {"bucket": "audit-bucket", "region": "us-east-1", "prefix": "trailmark/", "endpoint": server.url,
                               "access_key_id": "AKIDTRAILMARK", "secret_access_key": "trailmark-test-secret"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created = body(response).await;
    assert_eq!(created["config"]["secret_access_key"], "****cret");
    ingest(&app, &organization, 10).await;
    let stored = wait_objects(&server.root.path().join("audit-bucket"), 10).await;
    assert_eq!(
        stored.len(),
        10,
        "{:?}",
        stored.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let mut sequences = Vec::new();
    for (key, bytes) in &stored {
        let event: Value = serde_json::from_slice(bytes).expect("a JSON object");
        assert_eq!(
            *key,
            format!(
                "trailmark/{}/{}_{}.json",
                &event["occurred_at"].as_str().unwrap_or_default()[..10],
                event["occurred_at"].as_str().unwrap_or_default(),
                event["id"].as_str().unwrap_or_default()
            )
        );
        assert!(
            String::from_utf8_lossy(bytes).contains("\n  \""),
            "pretty-printed, as WorkOS writes them"
        );
        sequences.push(event["sequence"].as_u64().unwrap_or(u64::MAX));
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (0..10).collect::<Vec<u64>>());
    // The objects exist once the store answered; the cursor moves once that answer is recorded.
    let mut health = json!(null);
    for _ in 0..400 {
        health = body(
            app.get(&format!(
                "/audit_logs/streams/{}",
                created["id"].as_str().unwrap_or_default()
            ))
            .await,
        )
        .await;
        if health["lag_events"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        (health["state"].clone(), health["lag_events"].clone()),
        (json!("active"), json!(0))
    );
}

#[tokio::test]
async fn gcs_hmac_keys_write_gzip_ndjson_batches_and_a_wrong_secret_is_invalid() {
    let server = s3_server("gcs-bucket").await;
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let created = body(
        app.post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "gcs", "name": "GCS",
                    "config": {"bucket": "gcs-bucket", "endpoint": server.url, "layout": "ndjson_gzip",
                               "hmac_access_id": "AKIDTRAILMARK", "hmac_secret": "not-the-secret"}}),
        )
        .await,
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    ingest(&app, &organization, 6).await;
    let mut state = json!(null);
    for _ in 0..200 {
        state = body(app.get(&format!("/audit_logs/streams/{id}")).await).await;
        if state["state"] == "invalid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        state["state"], "invalid",
        "the store refused the signature: {state}"
    );
    let configuration = body(
        app.get(&format!(
            "/organizations/{organization}/audit_log_configuration"
        ))
        .await,
    )
    .await;
    assert_eq!(configuration["log_stream"]["type"], "GoogleCloudStorage");

    let fixed = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(crate::helpers::ADMIN_KEY)
        .json(&json!({"config": {"hmac_secret": "trailmark-test-secret"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(fixed.status(), 200);
    let stored = wait_objects(&server.root.path().join("gcs-bucket"), 1).await;
    let mut sequences = Vec::new();
    for (key, bytes) in &stored {
        assert!(key.ends_with(".ndjson.gz"), "{key}");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(bytes.as_slice()),
            &mut text,
        )
        .expect("gzip");
        sequences.extend(text.lines().map(|line| {
            serde_json::from_str::<Value>(line).expect("json")["sequence"]
                .as_u64()
                .unwrap_or(u64::MAX)
        }));
    }
    assert_eq!(
        sequences,
        (0..6).collect::<Vec<u64>>(),
        "one batch object, in log order"
    );
}
