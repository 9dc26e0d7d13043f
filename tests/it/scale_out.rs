//! Several `trailmark serve` processes over one PostgreSQL database and one shared data
//! directory, as behind a load balancer: sequencing, idempotency, stream leases and exports are
//! coordinated through the database; and a PostgreSQL restart under load is answered with
//! retryable 503s, never a hang or a wrong 2xx, and recovered from without help.
//!
//! These tests always run on PostgreSQL (a database of their own, or a private cluster for the
//! restart), whichever backend the rest of the run tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_KEY, PrivateCluster, ServerProcess, TestDatabase, event, get, metrics, organization,
    post, wait_for_checkpoint,
};
use crate::receivers::{self, Kind};

const FAST: &[(&str, &str)] = &[
    ("TRAILMARK_STREAM_LEASE_SECS", "1"),
    ("TRAILMARK_CHECKPOINT_INTERVAL_MS", "100"),
];
/// [`FAST`] without the per-address and per-key rate limits, for a test whose clients send in a
/// closed loop: answered in a few milliseconds, they reach the limits meant for abuse (6,000
/// requests a minute from one address) within seconds.
const FAST_UNLIMITED: &[(&str, &str)] = &[
    ("TRAILMARK_STREAM_LEASE_SECS", "1"),
    ("TRAILMARK_CHECKPOINT_INTERVAL_MS", "100"),
    ("TRAILMARK_RATE_LIMIT_PER_ADDRESS", "0"),
    ("TRAILMARK_RATE_LIMIT_PER_KEY", "0"),
];
const SECRET: &str = "whsec_dHJhaWxtYXJrLXRlc3Qtc2lnbmluZw==";

/// Three instances sharing `data_dir` and `database`; the first starts alone so that it creates
/// the key files the others then read.
fn cluster(data_dir: &Path, database: &TestDatabase) -> Vec<ServerProcess> {
    let first = ServerProcess::start(data_dir, database, FAST);
    let mut instances = vec![first];
    for _ in 0..2 {
        instances.push(ServerProcess::start(data_dir, database, FAST));
    }
    instances
}

/// Sends `count` events spread over `bases`, 8 at a time; returns the receipts.
async fn ingest_through(
    bases: &[String],
    organization: &str,
    count: usize,
    tag: &str,
) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut receipts = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(8) {
        let sends = chunk.iter().map(|&n| {
            let base = &bases[n % bases.len()];
            let mut submitted = event("user.signed_in");
            submitted["metadata"] = json!({"tag": tag, "n": n});
            let client = client.clone();
            async move {
                let response = post(
                    &client,
                    base,
                    "/audit_logs/events",
                    json!({"organization_id": organization, "event": submitted}),
                )
                .await;
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("receipt")
            }
        });
        receipts.extend(futures_util::future::join_all(sends).await);
    }
    receipts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_sequence_one_log_gap_free_and_verifiably() {
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let instances = cluster(data_dir.path(), &database);
    let bases: Vec<String> = instances.iter().map(|i| i.base.clone()).collect();
    let client = reqwest::Client::new();
    let organization = organization(&client, &bases[0]).await;

    // Concurrent ingest through all three at once, one batch call among them.
    let receipts = ingest_through(&bases, &organization, 240, "spread").await;
    let batch: Vec<Value> = (0..60).map(|_| event("user.batch")).collect();
    let batch_response: Value = post(
        &client,
        &bases[2],
        "/audit_logs/events/batch",
        json!({"organization_id": organization, "events": batch}),
    )
    .await
    .json()
    .await
    .expect("json");
    let mut sequences: Vec<u64> = receipts
        .iter()
        .chain(batch_response["data"].as_array().expect("data"))
        .map(|r| r["sequence"].as_u64().expect("sequence"))
        .collect();
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (0..300).collect::<Vec<_>>(),
        "unique and gap-free"
    );

    // Each instance reads the others' writes.
    for base in &bases {
        let page = get(
            &client,
            base,
            &format!("/audit_logs/events?organization_id={organization}&limit=1"),
        )
        .await;
        assert_eq!(page["data"][0]["sequence"], 299, "{base}");
    }

    // The whole database passes the offline audit against the instances' shared key.
    wait_for_checkpoint(&client, &bases[1], &organization, 300).await;
    let key = get(&client, &bases[2], "/audit_logs/ledger/public_key").await;
    let output = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "verify",
            &format!("--database={}", database.url()),
            "--public-key",
        ])
        .arg(key["verifier_key"].as_str().expect("key"))
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("300 events re-hashed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_sent_to_two_instances_stores_one_event() {
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let instances = cluster(data_dir.path(), &database);
    let client = reqwest::Client::new();
    let organization = organization(&client, &instances[0].base).await;

    for round in 0..10 {
        let key = format!("retry-{round}");
        let sends = instances.iter().map(|instance| {
            let request = client
                .post(format!("{}/audit_logs/events", instance.base))
                .bearer_auth(ADMIN_KEY)
                .header("Idempotency-Key", &key)
                .json(&json!({"organization_id": organization, "event": event("user.signed_in")}));
            async move {
                let response = request.send().await.expect("request");
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("receipt")
            }
        });
        let answers = futures_util::future::join_all(sends).await;
        let ids: BTreeSet<&str> = answers
            .iter()
            .map(|a| a["id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids.len(), 1, "round {round}: {answers:?}");
    }
    let stored = database.stored_events(&organization).await;
    assert_eq!(stored.len(), 10, "one event per key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_delivered_by_one_instance_at_a_time_and_survives_its_holder_being_killed() {
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let receiver = receivers::start(Kind::Http, SECRET, 0).await;
    let client = reqwest::Client::new();

    // The first instance runs alone until it delivers, so it holds the stream's lease.
    let mut holder = ServerProcess::start(data_dir.path(), &database, FAST);
    let organization = organization(&client, &holder.base).await;
    let created = post(
        &client,
        &holder.base,
        "/audit_logs/streams",
        json!({"organization_id": organization, "type": "http", "name": "SIEM", "start": "beginning",
               "config": {"url": receiver.url, "format": "ndjson", "signing_secret": SECRET}}),
    )
    .await;
    assert_eq!(created.status(), 201);
    ingest_through(
        std::slice::from_ref(&holder.base),
        &organization,
        20,
        "alone",
    )
    .await;
    // From the beginning: the record of the stream's own creation (0), then the events.
    receiver.wait_for(21).await;

    let others: Vec<ServerProcess> = (0..2)
        .map(|_| ServerProcess::start(data_dir.path(), &database, FAST))
        .collect();
    let mut bases: Vec<String> = others.iter().map(|i| i.base.clone()).collect();
    bases.push(holder.base.clone());
    ingest_through(&bases, &organization, 180, "three").await;
    let delivered = receiver.wait_for(201).await.len();
    let sequences = receiver.sequences();
    assert_eq!(
        sequences,
        (0..201).collect::<Vec<u64>>(),
        "with three instances running, each event was delivered once and in order ({delivered})"
    );

    holder.kill();
    let survivors: Vec<String> = others.iter().map(|i| i.base.clone()).collect();
    ingest_through(&survivors, &organization, 100, "after-kill").await;
    receiver.wait_for(301).await;
    let unique: BTreeSet<u64> = receiver.sequences().into_iter().collect();
    assert_eq!(
        unique,
        (0..301).collect::<BTreeSet<u64>>(),
        "another instance took the lease over and delivered everything"
    );
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_created_on_one_instance_is_served_by_another() {
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let instances = cluster(data_dir.path(), &database);
    let client = reqwest::Client::new();
    let organization = organization(&client, &instances[0].base).await;
    let bases: Vec<String> = instances.iter().map(|i| i.base.clone()).collect();
    ingest_through(&bases, &organization, 30, "export").await;

    let created: Value = post(
        &client,
        &bases[0],
        "/audit_logs/exports",
        json!({"organization_id": organization, "range_start": "2026-01-01T00:00:00Z",
               "range_end": "2026-12-31T00:00:00Z", "format": "ndjson"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let id = created["id"].as_str().expect("id");
    let mut ready = json!(null);
    for _ in 0..200 {
        ready = get(&client, &bases[1], &format!("/audit_logs/exports/{id}")).await;
        if ready["state"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready["state"], "ready", "{ready}");
    let url = ready["url"].as_str().expect("url");
    assert!(
        url.starts_with(&bases[1]),
        "{url} is served by the instance asked"
    );
    let file = client.get(url).send().await.expect("download");
    assert_eq!(file.status(), 200);
    let text = file.text().await.expect("text");
    let lines: Vec<&str> = text.lines().collect();
    // The range covers the record of the export's own creation (sequence 30), too.
    assert_eq!(
        lines.len(),
        32,
        "30 events, the record of the export and the manifest"
    );
}

/// What one request during the outage got back.
#[derive(Debug)]
enum Answer {
    Stored { id: String, sequence: u64 },
    Retryable,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_gets_retryable_503s_and_the_instances_recover() {
    let cluster = PrivateCluster::create();
    let data_dir = tempfile::tempdir().expect("dir");
    // The cluster is the test's own: the database goes when its directory does.
    let database = TestDatabase::Postgres {
        dropped_as: None,
        url: cluster.url(),
    };
    let instances = [
        ServerProcess::start(data_dir.path(), &database, FAST_UNLIMITED),
        ServerProcess::start(data_dir.path(), &database, FAST_UNLIMITED),
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let organization = organization(&client, &instances[0].base).await;

    let stop_at = Instant::now() + Duration::from_secs(12);
    let senders: Vec<_> = (0..6)
        .map(|worker| {
            let (client, base, organization) = (
                client.clone(),
                instances[worker % 2].base.clone(),
                organization.clone(),
            );
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while Instant::now() < stop_at {
                    let started = Instant::now();
                    let response = client
                        .post(format!("{base}/audit_logs/events"))
                        .bearer_auth(ADMIN_KEY)
                        .json(&json!({"organization_id": organization, "event": event("user.signed_in")}))
                        .send()
                        .await
                        .expect("an answer, not a hang or a dropped connection");
                    let status = response.status().as_u16();
                    let retry_after = response.headers().get("retry-after").cloned();
                    let body: Value = response.json().await.expect("a JSON body");
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "answered in {:?}",
                        started.elapsed()
                    );
                    answers.push(match status {
                        200 => Answer::Stored {
                            id: body["id"].as_str().expect("id").to_owned(),
                            sequence: body["sequence"].as_u64().expect("sequence"),
                        },
                        503 => {
                            assert_eq!(body["code"], "service_unavailable", "{body}");
                            assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
                            Answer::Retryable
                        }
                        other => panic!("status {other} during the restart: {body}"),
                    });
                    if status == 503 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = client
        .get(format!("{}/readyz", instances[1].base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "not ready while the database is down");
    cluster.start();

    let mut answers = Vec::new();
    for sender in senders {
        answers.extend(sender.await.expect("sender"));
    }
    let retryable = answers
        .iter()
        .filter(|a| matches!(a, Answer::Retryable))
        .count();
    assert!(retryable > 0, "the outage was seen");
    // After the restart, both instances store events again.
    let tail = ingest_through(
        &[instances[0].base.clone(), instances[1].base.clone()],
        &organization,
        10,
        "after",
    )
    .await;
    assert_eq!(tail.len(), 10);

    // Every 200 is in the log under the sequence it was given; the log has no gaps.
    let acknowledged: Vec<(u64, String)> = answers
        .into_iter()
        .filter_map(|answer| match answer {
            Answer::Stored { id, sequence } => Some((sequence, id)),
            Answer::Retryable => None,
        })
        .collect();
    database
        .assert_log_holds(&organization, &acknowledged)
        .await;
}

/// [`FAST_UNLIMITED`], with each instance taking its peers' appends on a port of its own.
const CLUSTERED: &[(&str, &str)] = &[
    ("TRAILMARK_STREAM_LEASE_SECS", "1"),
    ("TRAILMARK_CHECKPOINT_INTERVAL_MS", "100"),
    ("TRAILMARK_RATE_LIMIT_PER_ADDRESS", "0"),
    ("TRAILMARK_RATE_LIMIT_PER_KEY", "0"),
    ("TRAILMARK_CLUSTER_LISTEN", "127.0.0.1:0"),
];

/// Two instances with [`CLUSTERED`]; the first starts alone, so that it creates the key files
/// the second then reads.
fn clustered_pair(data_dir: &Path, database: &TestDatabase) -> [ServerProcess; 2] {
    let first = ServerProcess::start(data_dir, database, CLUSTERED);
    [first, ServerProcess::start(data_dir, database, CLUSTERED)]
}

/// The value of the series `name` (with its labels, as written) in `base`'s `/metrics`, or 0
/// if it has none yet.
async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    metrics(client, base)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

const COMMITTED_EVENTS: &str = "trailmark_store_commit_events_sum";
const ANSWERED: &str = "trailmark_store_handovers_total{outcome=\"answered\"}";

/// Events each instance committed and appends each had answered by a peer, so far.
async fn commit_counts(client: &reqwest::Client, bases: &[String]) -> Vec<(f64, f64)> {
    let mut counts = Vec::new();
    for base in bases {
        counts.push((
            metric(client, base, COMMITTED_EVENTS).await,
            metric(client, base, ANSWERED).await,
        ));
    }
    counts
}

/// Sends one event through each instance until one instance commits both: the instances then
/// see each other as members. Returns the index of the instance that sequences `organization`.
async fn owner_of(client: &reqwest::Client, bases: &[String], organization: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = commit_counts(client, bases).await;
        ingest_through(bases, organization, bases.len(), "find the owner").await;
        let after = commit_counts(client, bases).await;
        let committed: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).collect();
        if let Some(owner) = committed.iter().position(|&c| c == bases.len() as f64)
            && committed.iter().sum::<f64>() == bases.len() as f64
        {
            return owner;
        }
        assert!(
            Instant::now() < deadline,
            "no instance came to sequence {organization}: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cluster_listen_one_instance_commits_an_organizations_appends_the_others_hand_it() {
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let instances = clustered_pair(data_dir.path(), &database);
    let bases: Vec<String> = instances.iter().map(|i| i.base.clone()).collect();
    let client = reqwest::Client::new();
    let organization = organization(&client, &bases[0]).await;
    let owner = owner_of(&client, &bases, &organization).await;
    let other = 1 - owner;
    let earlier = database.stored_events(&organization).await.len();

    let before = commit_counts(&client, &bases).await;
    let receipts = ingest_through(&bases, &organization, 200, "spread").await;
    let batch: Vec<Value> = (0..50).map(|_| event("user.batch")).collect();
    let response = post(
        &client,
        &bases[other],
        "/audit_logs/events/batch",
        json!({"organization_id": organization, "events": batch}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let after = commit_counts(&client, &bases).await;

    // Every event was committed by the owner; half the single events and the batch were handed
    // to it by the other instance, which committed none.
    assert_eq!(after[owner].0 - before[owner].0, 250.0);
    assert_eq!(after[other].0 - before[other].0, 0.0);
    assert_eq!(
        after[other].1 - before[other].1,
        101.0,
        "appends handed over"
    );
    assert_eq!(after[owner].1 - before[owner].1, 0.0);

    // The receipts the other instance passed on are the log's.
    let acknowledged: Vec<(u64, String)> = receipts
        .iter()
        .map(|r| {
            (
                r["sequence"].as_u64().expect("sequence"),
                r["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    let stored = database
        .assert_log_holds(&organization, &acknowledged)
        .await;
    assert_eq!(stored.len(), earlier + 250);

    // An idempotency key sent to both instances at once still stores one event.
    let sends = bases.iter().map(|base| {
        client
            .post(format!("{base}/audit_logs/events"))
            .bearer_auth(ADMIN_KEY)
            .header("Idempotency-Key", "handed-over-once")
            .json(&json!({"organization_id": organization, "event": event("user.signed_in")}))
            .send()
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut ids = BTreeSet::new();
    for answer in answers {
        let answer = answer.expect("request");
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.expect("json");
        ids.insert(body["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(
        database.stored_events(&organization).await.len(),
        earlier + 251
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_killed_mid_stream_loses_no_acknowledged_event_and_its_peer_carries_on() {
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let mut instances = clustered_pair(data_dir.path(), &database);
    let bases: Vec<String> = instances.iter().map(|i| i.base.clone()).collect();
    let client = reqwest::Client::new();
    let organization = organization(&client, &bases[0]).await;
    let owner = owner_of(&client, &bases, &organization).await;
    let survivor = bases[1 - owner].clone();
    let earlier = database.stored_events(&organization).await.len();

    // Eight clients send through the survivor, which hands everything to the owner, until the
    // owner is killed; they go on after, and every request must succeed.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..8 {
        let (client, survivor, organization) =
            (client.clone(), survivor.clone(), organization.clone());
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut submitted = event("user.signed_in");
                submitted["metadata"] = json!({"worker": worker, "n": n});
                n += 1;
                let response = post(
                    &client,
                    &survivor,
                    "/audit_logs/events",
                    json!({"organization_id": organization, "event": submitted}),
                )
                .await;
                assert_eq!(response.status(), 200, "{:?}", response.text().await);
                let receipt: Value = response.json().await.expect("receipt");
                acknowledged.lock().expect("lock").push((
                    receipt["sequence"].as_u64().expect("sequence"),
                    receipt["id"].as_str().expect("id").to_owned(),
                ));
            }
        }));
    }
    let count = || acknowledged.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < 300 {
        assert!(Instant::now() < deadline, "only {} acknowledged", count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_kill = metric(&client, &survivor, ANSWERED).await;
    assert!(
        before_kill >= 290.0,
        "the owner committed them: {before_kill}"
    );
    instances[owner].kill();
    let killed_at = count();
    while count() < killed_at + 300 {
        assert!(Instant::now() < deadline, "only {} acknowledged", count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client failed");
    }

    // The survivor committed what the owner no longer could, and the log holds every
    // acknowledged event once, gap-free.
    assert!(metric(&client, &survivor, COMMITTED_EVENTS).await >= 290.0);
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let stored = database
        .assert_log_holds(&organization, &acknowledged)
        .await;
    assert_eq!(
        stored.len(),
        earlier + acknowledged.len(),
        "each stored once"
    );
}

#[test]
fn cluster_listen_is_refused_with_an_embedded_database() {
    let data_dir = tempfile::tempdir().expect("dir");
    let output = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cluster-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env_remove("TRAILMARK_DATABASE_URL")
        .env_remove("TRAILMARK_DATABASE")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cluster-listen needs a PostgreSQL --database"),
        "{stderr}"
    );
}
