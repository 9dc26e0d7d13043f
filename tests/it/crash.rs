//! The real binary, killed with SIGKILL in the middle of a stream of ingests, loses no event it
//! acknowledged; on SIGTERM it finishes the requests in flight and exits cleanly.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use tokio::sync::Mutex;

use crate::helpers::{ADMIN_KEY, ServerProcess, TestDatabase, event};

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
    acknowledged: Arc<Mutex<Vec<(u64, String)>>>,
) -> Vec<(u64, String)> {
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
    let mut server = ServerProcess::start(data_dir.path(), &database, &[]);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let organization = create_organization(&client, &base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged_so_far = Arc::new(Mutex::new(Vec::new()));
    let ingest = tokio::spawn({
        let (base, organization, stop) = (base.clone(), organization.clone(), Arc::clone(&stop));
        let acknowledged = Arc::clone(&acknowledged_so_far);
        async move { ingest_until(&base, &organization, stop, 8, acknowledged).await }
    });
    // Let some events through (however slow the machine is), then kill the server mid-stream.
    for _ in 0..600 {
        if acknowledged_so_far.lock().await.len() >= 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    let acknowledged = ingest.await.expect("ingest task");
    assert!(
        acknowledged.len() >= 100,
        "only {} events were acknowledged before the kill",
        acknowledged.len()
    );

    let mut restarted = ServerProcess::start(data_dir.path(), &database, &[]);
    let base = restarted.base.clone();
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let stored = database
        .assert_log_holds(&organization, &acknowledged)
        .await;

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
    restarted.kill();
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(data_dir.path()).await;
    let mut server = ServerProcess::start(data_dir.path(), &database, &[]);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let organization = create_organization(&client, &base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ingest = tokio::spawn({
        let (base, organization, stop) = (base.clone(), organization.clone(), Arc::clone(&stop));
        async move { ingest_until(&base, &organization, stop, 8, Arc::default()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let status = server.child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.success(),
        "trailmark exited with {status} on SIGTERM"
    );
    let acknowledged = ingest.await.expect("ingest task");

    let stored = database.stored_events(&organization).await;
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
