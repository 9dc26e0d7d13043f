//! Microsoft Sentinel streams end to end, against the stand-in for Entra ID and the Logs
//! Ingestion API in `receivers.rs` (no real peer can be installed: it checks the documented wire
//! format strictly and refuses anything else). The token's lifetime and the answers the sink
//! acts on (401/403 renewal, 413, 429) are tested on the paused clock in
//! `crates/streams/src/sentinel/tests.rs`.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Options, TestApp, body, event};
use crate::receivers::{
    self, Kind, Receiver, SENTINEL_CLIENT, SENTINEL_DCR, SENTINEL_STREAM, SENTINEL_TENANT,
};

const SECRET: &str = "Qx8Q~right.client-secret_value";

fn sentinel_config(receiver: &Receiver, secret: &str) -> Value {
    json!({"endpoint": receiver.url, "authority": receiver.url, "dcr_immutable_id": SENTINEL_DCR,
           "stream_name": SENTINEL_STREAM, "tenant_id": SENTINEL_TENANT, "client_id": SENTINEL_CLIENT,
           "client_secret": secret})
}

async fn create_stream(app: &TestApp, organization: &str, config: Value) -> String {
    create_stream_from(app, organization, config, "now").await
}

/// A stream that starts at `start` (`now` or `beginning`).
async fn create_stream_from(
    app: &TestApp,
    organization: &str,
    config: Value,
    start: &str,
) -> String {
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "sentinel", "name": "Sentinel",
                    "start": start, "config": config}),
        )
        .await;
    assert_eq!(response.status(), 201);
    body(response).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn stream(app: &TestApp, id: &str) -> Value {
    body(app.get(&format!("/audit_logs/streams/{id}")).await).await
}

/// Waits (up to 20 s) until `done` holds for the stream; returns it.
async fn wait_stream(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = json!(null);
    for _ in 0..800 {
        last = stream(app, id).await;
        if done(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    last
}

/// Ingests `count` events whose metadata is about `padding` × 50 bytes.
async fn ingest(app: &TestApp, organization: &str, count: usize, padding: usize) {
    for n in 0..count {
        let mut submitted = event("user.signed_in");
        let mut metadata = serde_json::Map::new();
        metadata.insert("n".into(), json!(n));
        for key in 0..49 {
            metadata.insert(format!("k{key}"), json!("x".repeat(padding)));
        }
        submitted["metadata"] = Value::Object(metadata);
        assert_eq!(
            app.create_event(organization, &submitted, None)
                .await
                .status(),
            200
        );
    }
}

/// Every event arrives once, in log order, each as a record whose columns come from the event
/// object; a backlog larger than a call goes in several calls, each under 1 MB.
#[tokio::test]
async fn sentinel_streams_deliver_every_event_in_order_in_calls_under_a_megabyte_stand_in_receiver()
{
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Sentinel, SECRET, 0).await;
    // A backlog, read at once: about 25 KB each, 70 events are about 1.8 MB, more than a call.
    ingest(&app, &organization, 70, 500).await;
    let id = create_stream_from(
        &app,
        &organization,
        sentinel_config(&receiver, SECRET),
        "beginning",
    )
    .await;
    let delivered = receiver.wait_for_ingested(70).await;
    assert_eq!(delivered.len(), 70);
    let violations = receiver.violations();
    assert!(violations.is_empty(), "{violations:?}");

    // From the beginning: the 70 events (0 to 69), then the record of the stream's creation.
    let sequences = receiver.sequences();
    assert_eq!(sequences[..70], (0..70).collect::<Vec<u64>>());
    let (records, sizes, tokens) = receiver
        .log
        .lock()
        .map(|log| {
            (
                log.records.clone(),
                log.call_sizes.clone(),
                log.tokens.len(),
            )
        })
        .expect("log");
    assert!(sizes.len() >= 2, "calls: {sizes:?}");
    assert!(sizes.iter().all(|size| *size <= 1_000_000), "{sizes:?}");
    assert!(
        sizes.iter().any(|size| *size > 500_000),
        "calls are filled: {sizes:?}"
    );
    assert_eq!(tokens, 1, "one token serves every call");
    for record in &records {
        let event = &record["Event"];
        assert_eq!(record["TimeGenerated"], event["occurred_at"]);
        assert_eq!(record["EventId"], event["id"]);
        assert_eq!(record["OrganizationId"], organization.as_str());
        assert_eq!(record["Sequence"], event["sequence"]);
        assert_eq!(record["Action"], event["action"]);
        assert_eq!(record["Object"], "audit_log_event");
    }
    let caught_up = wait_stream(&app, &id, |s| s["lag_events"] == 0).await;
    assert_eq!(caught_up["state"], "active", "{caught_up}");
    // The settings are shown with the client secret masked.
    assert_eq!(caught_up["config"]["client_secret"], "****alue");
    assert_eq!(caught_up["config"]["authority"], receiver.url.as_str());
    // WorkOS's name for the type (its SDKs' `AuditLogConfigurationLogStreamType`).
    let configuration = body(
        app.get(&format!(
            "/organizations/{organization}/audit_log_configuration"
        ))
        .await,
    )
    .await;
    assert_eq!(configuration["log_stream"]["type"], "AzureSentinel");
}

/// Entra ID refusing the client secret makes the stream `invalid`, saying so; nothing is
/// skipped, and once the secret is fixed everything arrives in order.
#[tokio::test]
async fn sentinel_wrong_client_secret_is_invalid_naming_the_cause_then_recovers_stand_in_receiver()
{
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Sentinel, SECRET, 0).await;
    let id = create_stream(
        &app,
        &organization,
        sentinel_config(&receiver, "an-expired-secret"),
    )
    .await;
    ingest(&app, &organization, 5, 1).await;
    let invalid = wait_stream(&app, &id, |s| s["state"] == "invalid").await;
    let last_error = invalid["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("client_secret")
            && last_error.contains("401")
            && last_error.contains("AADSTS7000215"),
        "the error says why: {invalid}"
    );
    assert!(receiver.events().is_empty());

    let fixed = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"config": {"client_secret": SECRET}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(fixed.status(), 200);
    // The 5 events (1 to 5), then the record of the PATCH (6).
    receiver.wait_for(6).await;
    assert_eq!(receiver.sequences(), (1..7).collect::<Vec<u64>>());
    assert_eq!(
        receiver.actions().last().map(String::as_str),
        Some("trailmark.stream.updated")
    );
    let healthy = wait_stream(&app, &id, |s| s["lag_events"] == 0).await;
    assert_eq!(healthy["state"], "active", "{healthy}");
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );
}

/// With `event_format: ocsf`, each record's `Event` is the OCSF event holding the event object,
/// and its columns still come from the event object; signed checkpoints travel as they are.
/// Settings are checked field by field.
#[tokio::test]
async fn sentinel_streams_in_ocsf_send_ocsf_events_and_checkpoints_stand_in_receiver() {
    let app = TestApp::spawn_with(Options {
        stream_checkpoint_every: std::time::Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Sentinel, SECRET, 0).await;
    let mut config = sentinel_config(&receiver, SECRET);
    config["event_format"] = json!("ocsf");
    let id = create_stream(&app, &organization, config).await;
    ingest(&app, &organization, 3, 1).await;
    // The record of the stream's creation (0) and the 3 events: a checkpoint of 4.
    let checkpoint = |records: &[Value]| {
        records
            .iter()
            .find(|r| r["EventId"] == "checkpoint_4")
            .cloned()
    };
    let events = |records: &[Value]| {
        records
            .iter()
            .filter(|r| r["Object"] == "audit_log_event")
            .count()
    };
    // Checkpoints are not held back while events wait for their batch: either may come first.
    let mut all = Vec::new();
    for _ in 0..400 {
        all = receiver.log.lock().map(|l| l.records.clone()).expect("log");
        if checkpoint(&all).is_some() && events(&all) >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let checkpoint = checkpoint(&all).unwrap_or_else(|| panic!("no checkpoint of 4: {all:?}"));
    assert_eq!(checkpoint["Object"], "ledger_checkpoint");
    assert_eq!(checkpoint["Event"]["object"], "ledger_checkpoint");
    assert_eq!(checkpoint["Event"]["tree_size"], 4);
    assert_eq!(
        checkpoint["TimeGenerated"],
        checkpoint["Event"]["created_at"]
    );
    let records: Vec<Value> = all
        .into_iter()
        .filter(|r| r["Object"] == "audit_log_event")
        .collect();
    assert_eq!(records.len(), 3);
    for (n, record) in records.iter().enumerate() {
        let ocsf = &record["Event"];
        assert_eq!(ocsf["class_uid"], 6003);
        assert_eq!(ocsf["metadata"]["version"], "1.3.0");
        assert_eq!(ocsf["unmapped"]["id"], record["EventId"]);
        assert_eq!(ocsf["unmapped"]["sequence"], n as u64 + 1);
        assert_eq!(record["Sequence"], n as u64 + 1);
        assert_eq!(record["TimeGenerated"], ocsf["unmapped"]["occurred_at"]);
    }
    assert_eq!(stream(&app, &id).await["config"]["event_format"], "ocsf");

    for (kind, config, field) in [
        (
            "sentinel",
            json!({"endpoint": receiver.url, "dcr_immutable_id": "rule-1", "stream_name": "Trailmark",
                   "tenant_id": SENTINEL_TENANT, "client_id": SENTINEL_CLIENT, "client_secret": "s",
                   "event_format": "cef"}),
            vec![
                "config.dcr_immutable_id",
                "config.stream_name",
                "config.event_format",
            ],
        ),
        (
            "syslog",
            json!({"host": "127.0.0.1", "format": "cef", "event_format": "ocsf"}),
            vec!["config.event_format"],
        ),
    ] {
        let response = app
            .post(
                "/audit_logs/streams",
                &json!({"organization_id": organization, "type": kind, "name": "Bad", "config": config}),
            )
            .await;
        assert_eq!(response.status(), 422);
        let answer = body(response).await;
        let mut fields: Vec<&str> = answer["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str())
            .collect();
        fields.sort_unstable();
        let mut expected = field.clone();
        expected.sort_unstable();
        assert_eq!(fields, expected, "{answer}");
    }
}
