//! S3 and GCS (through its S3-compatible API with HMAC keys) streams against a real
//! S3-compatible server, `s3s-fs` from crates.io, which checks every request's AWS Signature
//! Version 4. `./scripts/test` installs it; the binary is found on `PATH` or through
//! `TRAILMARK_S3S_FS`.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, body, event};

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
                               "batch": {"max_wait_seconds": 0},
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
    assert!(
        stored.iter().all(|(key, _)| key.ends_with(".ndjson.gz")),
        "{:?}",
        stored.iter().map(|(key, _)| key).collect::<Vec<_>>()
    );
    assert_eq!(
        batches(&stored),
        [(0..6).collect::<Vec<u64>>()],
        "one batch object, in log order"
    );
}

/// Patches a stream's `config`, expecting 200.
async fn patch_config(app: &TestApp, id: &str, config: Value) -> Value {
    let response = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(crate::helpers::ADMIN_KEY)
        .json(&json!({ "config": config }))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 200);
    body(response).await
}

/// The sequences inside each gzip NDJSON object, in key order.
fn batches(stored: &[(String, Vec<u8>)]) -> Vec<Vec<u64>> {
    stored
        .iter()
        .map(|(_, bytes)| {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(bytes.as_slice()),
                &mut text,
            )
            .expect("gzip");
            text.lines()
                .map(|line| {
                    serde_json::from_str::<Value>(line).expect("json")["sequence"]
                        .as_u64()
                        .unwrap_or(u64::MAX)
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn s3_gzip_batches_wait_for_their_window_or_go_out_when_full() {
    let server = s3_server("batched").await;
    let dir = server.root.path().join("batched");
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let created = body(
        app.post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "s3", "name": "Archive",
                    "config": {"bucket": "batched", "region": "us-east-1", "endpoint": server.url,
                               "layout": "ndjson_gzip", "batch": {"max_events": 10, "max_wait_seconds": 3},
                               "access_key_id": "AKIDTRAILMARK", "secret_access_key": "trailmark-test-secret"}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        created["config"]["batch"],
        json!({"max_events": 10, "max_wait_seconds": 3})
    );
    let id = created["id"].as_str().unwrap_or_default().to_owned();

    // A trickle: four events, far fewer than a full batch, wait out the window together.
    let started = std::time::Instant::now();
    ingest(&app, &organization, 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500).saturating_sub(started.elapsed()))
        .await;
    assert!(
        objects(&dir).is_empty(),
        "nothing is written before the oldest event has waited 3 s"
    );
    let stored = wait_objects(&dir, 1).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(2_900),
        "written after {:?}",
        started.elapsed()
    );
    assert_eq!(
        batches(&stored),
        [vec![0, 1, 2, 3]],
        "one object for the trickle"
    );

    // A burst: full batches go out at once, whatever the window; the rest waits for it.
    let patched = patch_config(&app, &id, json!({"batch": {"max_wait_seconds": 3600}})).await;
    assert_eq!(
        patched["config"]["batch"],
        json!({"max_events": 10, "max_wait_seconds": 3600}),
        "a patch keeps the batch fields it does not name"
    );
    let burst: Vec<Value> = (0..25).map(|_| event("user.signed_in")).collect();
    let response = app
        .post(
            "/audit_logs/events/batch",
            &json!({"organization_id": organization, "events": burst}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let stored = wait_objects(&dir, 3).await;
    assert_eq!(
        batches(&stored)[1..],
        [(4..14).collect::<Vec<u64>>(), (14..24).collect()],
        "two full batches of 10"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(objects(&dir).len(), 3, "the last 5 wait for their window");
    let health = body(app.get(&format!("/audit_logs/streams/{id}")).await).await;
    assert_eq!(
        (health["state"].clone(), health["lag_events"].clone()),
        (json!("active"), json!(5))
    );

    // Closing the window sends what is waiting without waiting for the hour to pass.
    patch_config(&app, &id, json!({"batch": {"max_wait_seconds": 0}})).await;
    let stored = wait_objects(&dir, 4).await;
    assert_eq!(
        batches(&stored).concat(),
        (0..29).collect::<Vec<u64>>(),
        "every event once, in log order"
    );
}

#[tokio::test]
async fn batch_settings_are_checked_field_by_field() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "SIEM",
                    "config": {"url": "https://siem.example.com/in",
                               "batch": {"max_events": 5000, "max_wait_seconds": "soon"}}}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let text = body(response).await.to_string();
    assert!(
        text.contains("config.batch.max_events") && text.contains("config.batch.max_wait_seconds"),
        "{text}"
    );
    let defaults = body(
        app.post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "SIEM",
                    "config": {"url": "https://siem.example.com/in"}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        defaults["config"]["batch"],
        json!({"max_events": 1000, "max_wait_seconds": 0}),
        "a webhook stream sends at once by default"
    );
}

#[tokio::test]
async fn s3_streams_write_each_new_signed_checkpoint_as_an_object_under_checkpoints() {
    let server = s3_server("audit-bucket").await;
    let app = TestApp::spawn_with(Options {
        stream_checkpoint_every: std::time::Duration::from_millis(200),
        ..Options::default()
    })
    .await;
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
    ingest(&app, &organization, 3).await;
    let bucket = server.root.path().join("audit-bucket");
    let wanted = format!("trailmark/checkpoints/{:020}", 3);
    let mut found = None;
    for _ in 0..400 {
        found = objects(&bucket).into_iter().find(|(key, _)| *key == wanted);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (_, note) = found.unwrap_or_else(|| {
        panic!(
            "no {wanted}: {:?}",
            objects(&bucket).iter().map(|(k, _)| k).collect::<Vec<_>>()
        )
    });
    let key = body(app.get("/audit_logs/ledger/public_key").await).await;
    let verifier = trailmark_ledger::checkpoint::NoteVerifier::parse(
        key["verifier_key"].as_str().unwrap_or_default(),
    )
    .expect("key");
    let signed = verifier
        .verify(std::str::from_utf8(&note).expect("text"))
        .expect("the object is the signed note itself");
    assert_eq!(signed.size, 3);
}
