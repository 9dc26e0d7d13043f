//! The real binary, killed with SIGKILL in the middle of a stream of ingests, loses no event it
//! acknowledged; on SIGTERM it finishes the requests in flight and exits cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use tokio::sync::Mutex;

use crate::helpers::{ADMIN_KEY, TestDatabase, event};

/// Starts `trailmark serve` on a free port over `data_dir` and `database`, and returns it with
/// its base URL.
fn start(data_dir: &std::path::Path, database: &TestDatabase) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("TRAILMARK_DATABASE_URL", database.url())
        .env("TRAILMARK_API_KEY", ADMIN_KEY)
        .env("TRAILMARK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start trailmark");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .expect("read stdout");
        if let Some(address) = line.split("listening on ").nth(1) {
            break address.trim().to_owned();
        }
    };
    (child, base)
}

async fn create_organization(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/organizations"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .expect("create");
    let created: serde_json::Value = response.json().await.expect("json");
    created["id"].as_str().expect("id").to_owned()
}

/// Sends numbered events from `workers` tasks until `stop`; returns the acknowledged receipts.
async fn ingest_until(
    base: &str,
    organization: &str,
    stop: Arc<AtomicBool>,
    workers: usize,
) -> Vec<(u64, String)> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, base, organization) =
                (client.clone(), base.to_owned(), organization.to_owned());
            let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut submitted = event("crash.test");
                    submitted["metadata"] = json!({"worker": worker, "n": n});
                    n += 1;
                    let sent = client
                        .post(format!("{base}/audit_logs/events"))
                        .bearer_auth(ADMIN_KEY)
                        .json(&json!({"organization_id": organization, "event": submitted}))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 200 {
                        break;
                    }
                    let Ok(receipt) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    let id = receipt["id"].as_str().unwrap_or_default().to_owned();
                    acknowledged
                        .lock()
                        .await
                        .push((receipt["sequence"].as_u64().unwrap_or(u64::MAX), id));
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    acknowledged.lock().await.clone()
}

#[tokio::test]
async fn kill_9_during_ingest_loses_no_acknowledged_event() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(data_dir.path()).await;
    let (mut server, base) = start(data_dir.path(), &database);
    let client = reqwest::Client::new();
    let organization = create_organization(&client, &base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ingest = tokio::spawn({
        let (base, organization, stop) = (base.clone(), organization.clone(), Arc::clone(&stop));
        async move { ingest_until(&base, &organization, stop, 8).await }
    });
    // Let a few hundred events through, then kill the server mid-stream.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.kill().expect("SIGKILL");
    server.wait().expect("reap");
    stop.store(true, Ordering::Relaxed);
    let acknowledged = ingest.await.expect("ingest task");
    assert!(
        acknowledged.len() > 50,
        "only {} events were acknowledged before the kill",
        acknowledged.len()
    );

    let (mut restarted, base) = start(data_dir.path(), &database);
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let stored = database
        .store()
        .await
        .events_after(&organization, None, 1_000_000)
        .await
        .expect("read");
    let stored_ids: std::collections::HashMap<&str, u64> =
        stored.iter().map(|e| (e.id.as_str(), e.sequence)).collect();
    for (sequence, id) in &acknowledged {
        assert_eq!(
            stored_ids.get(id.as_str()),
            Some(sequence),
            "acknowledged event {id} (sequence {sequence}) was lost"
        );
    }
    let sequences: Vec<u64> = stored.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (0..stored.len() as u64).collect::<Vec<_>>(),
        "the log is gap-free after the crash"
    );

    // The log continues where it stopped.
    let response = client
        .post(format!("{base}/audit_logs/events"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"organization_id": organization, "event": event("after.restart")}))
        .send()
        .await
        .expect("ingest after restart");
    let receipt: serde_json::Value = response.json().await.expect("json");
    assert_eq!(receipt["sequence"], stored.len() as u64);
    restarted.kill().expect("stop");
    restarted.wait().expect("reap");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(data_dir.path()).await;
    let (mut server, base) = start(data_dir.path(), &database);
    let client = reqwest::Client::new();
    let organization = create_organization(&client, &base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ingest = tokio::spawn({
        let (base, organization, stop) = (base.clone(), organization.clone(), Arc::clone(&stop));
        async move { ingest_until(&base, &organization, stop, 8).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let status = server.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.success(),
        "trailmark exited with {status} on SIGTERM"
    );
    let acknowledged = ingest.await.expect("ingest task");

    let stored = database
        .store()
        .await
        .events_after(&organization, None, 1_000_000)
        .await
        .expect("read");
    let stored_ids: std::collections::HashSet<&str> =
        stored.iter().map(|e| e.id.as_str()).collect();
    assert!(!acknowledged.is_empty());
    assert!(
        acknowledged
            .iter()
            .all(|(_, id)| stored_ids.contains(id.as_str())),
        "every answered request was committed"
    );
}
