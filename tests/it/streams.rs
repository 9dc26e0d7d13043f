//! Log streams end to end, against strict local receivers (`receivers.rs`): every event
//! delivered, in order, signed or authenticated as each vendor documents; failures retried or
//! marked invalid, never skipped; one dead stream never delays another; a kill -9 loses nothing.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Options, ServerProcess, TestApp, TestDatabase, body, event};
use crate::receivers::{self, Kind, Receiver};

async fn ingest(app: &TestApp, organization: &str, from: usize, count: usize) {
    for n in from..from + count {
        let mut submitted = event("user.signed_in");
        submitted["metadata"] = json!({"n": n});
        assert_eq!(
            app.create_event(organization, &submitted, None)
                .await
                .status(),
            200
        );
    }
}

async fn create_stream(app: &TestApp, request: Value) -> Value {
    let response = app.post("/audit_logs/streams", &request).await;
    assert_eq!(response.status(), 201);
    body(response).await
}

async fn stream(app: &TestApp, id: &str) -> Value {
    body(app.get(&format!("/audit_logs/streams/{id}")).await).await
}

/// Waits until the stream's state is `state`.
async fn wait_state(app: &TestApp, id: &str, state: &str) -> Value {
    let mut last = json!(null);
    for _ in 0..200 {
        last = stream(app, id).await;
        if last["state"] == state {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("stream {id} never became {state}: {last}");
}

/// The stream once it has no events left to deliver (or its last state after 10 s).
async fn caught_up(app: &TestApp, id: &str) -> Value {
    let mut last = json!(null);
    for _ in 0..400 {
        last = stream(app, id).await;
        if last["lag_events"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    last
}

fn http_stream(organization: &str, receiver: &Receiver, format: &str) -> Value {
    json!({"organization_id": organization, "type": "http", "name": "SIEM", "start": "beginning",
           "config": {"url": receiver.url, "format": format, "signing_secret": receiver.log.lock().map(|l| l.credential.clone()).unwrap_or_default(),
                      "headers": {"X-Tenant": "acme"}}})
}

const SECRET: &str = "whsec_dHJhaWxtYXJrLXRlc3Qtc2lnbmluZw==";

#[tokio::test]
async fn http_streams_deliver_every_event_in_order_signed() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 0, 5).await;
    let json_receiver = receivers::start(Kind::Http, SECRET, 0).await;
    let ndjson_receiver = receivers::start(Kind::Http, SECRET, 0).await;
    let created = create_stream(&app, http_stream(&organization, &json_receiver, "json")).await;
    create_stream(&app, http_stream(&organization, &ndjson_receiver, "ndjson")).await;
    assert_eq!(created["object"], "log_stream");
    assert!(
        created["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("log_stream_"))
    );
    assert_eq!(
        created["config"]["signing_secret"],
        json!("****Zw=="),
        "secrets are masked"
    );
    assert_eq!(created["config"]["headers"]["X-Tenant"], "****acme");

    ingest(&app, &organization, 5, 15).await;
    // The log holds the 20 events and, at 5 and 6, the records of the two streams' creation.
    let mut expected_actions = vec!["user.signed_in"; 22];
    expected_actions[5] = "trailmark.stream.created";
    expected_actions[6] = "trailmark.stream.created";
    for receiver in [&json_receiver, &ndjson_receiver] {
        receiver.wait_for(22).await;
        assert_eq!(
            receiver.sequences(),
            (0..22).collect::<Vec<u64>>(),
            "every event, once, in log order"
        );
        assert_eq!(receiver.actions(), expected_actions);
        assert!(
            receiver.violations().is_empty(),
            "{:?}",
            receiver.violations()
        );
    }
    let listed = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&order=asc&limit=1"
        ))
        .await,
    )
    .await;
    assert_eq!(
        json_receiver.events()[0],
        listed["data"][0],
        "the payload carries the event object"
    );

    // The receiver has the events once it answered; the cursor moves once that answer is recorded.
    let health = caught_up(&app, created["id"].as_str().unwrap_or_default()).await;
    assert_eq!(
        (
            health["state"].clone(),
            health["lag_events"].clone(),
            health["cursor"].clone()
        ),
        (json!("active"), json!(0), json!(21))
    );
    assert!(health["last_synced_at"].is_string());

    let configuration = body(
        app.get(&format!(
            "/organizations/{organization}/audit_log_configuration"
        ))
        .await,
    )
    .await;
    assert_eq!(configuration["log_stream"]["type"], "GenericHttps");
    assert_eq!(configuration["log_stream"]["state"], "active");
}

#[tokio::test]
async fn datadog_with_a_wrong_key_is_invalid_until_fixed_then_catches_up() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Datadog, "dd-right-key", 0).await;
    let created = create_stream(
        &app,
        json!({"organization_id": organization, "type": "datadog", "name": "Datadog",
               "config": {"site": "datadoghq.eu", "api_key": "dd-wrong-key", "endpoint": receiver.url, "source": "acme-app"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    ingest(&app, &organization, 0, 8).await;
    let invalid = wait_state(&app, &id, "invalid").await;
    assert!(
        invalid["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("403"),
        "{invalid}"
    );
    // From `now` (the default): after the record of its own creation (0), the 8 events (1 to 8).
    assert_eq!(invalid["lag_events"], 8, "nothing was skipped");
    let metrics = app.metrics().await;
    let labels = format!("stream_id=\"{id}\",organization_id=\"{organization}\",type=\"datadog\"");
    for series in [
        format!("trailmark_stream_lag_events{{{labels}}} 8"),
        format!("trailmark_stream_state{{{labels},state=\"invalid\"}} 1"),
        format!("trailmark_stream_state{{{labels},state=\"active\"}} 0"),
    ] {
        assert!(
            metrics.lines().any(|line| line == series),
            "{series} in\n{metrics}"
        );
    }

    let response = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"config": {"api_key": "dd-right-key"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 200);
    // The 8 events (1 to 8), then the record of the PATCH (9).
    receiver.wait_for(9).await;
    assert_eq!(receiver.sequences(), (1..10).collect::<Vec<u64>>());
    let mut expected_actions = vec!["user.signed_in"; 9];
    expected_actions[8] = "trailmark.stream.updated";
    assert_eq!(receiver.actions(), expected_actions);
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );
    // The PATCH already made it `active`; the cursor moves once the receiver's 202 is recorded.
    let healthy = caught_up(&app, &id).await;
    assert_eq!(
        (healthy["state"].clone(), healthy["lag_events"].clone()),
        (json!("active"), json!(0)),
        "{healthy}"
    );
}

#[tokio::test]
async fn splunk_hec_receives_every_event_and_a_down_destination_is_retried() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Splunk, "hec-token", 3).await;
    let created = create_stream(
        &app,
        json!({"organization_id": organization, "type": "splunk", "name": "Splunk",
               "config": {"url": receiver.url, "token": "hec-token", "index": "audit"}}),
    )
    .await;
    ingest(&app, &organization, 0, 12).await;
    let id = created["id"].as_str().unwrap_or_default();
    // From `now`: after the record of its own creation (0), the 12 events (1 to 12).
    receiver.wait_for(12).await;
    assert_eq!(
        receiver.sequences(),
        (1..13).collect::<Vec<u64>>(),
        "delivered in order after the outage"
    );
    let requests = receiver.log.lock().map(|l| l.requests).unwrap_or_default();
    assert!(requests > 3, "the first attempts failed and were retried");
    assert_eq!(
        wait_state(&app, id, "active").await["last_error"],
        json!(null)
    );
}

/// Issue 16 (Splunk indexer acknowledgement), against the stand-in receiver in ack mode (a HEC
/// token with acknowledgement on refuses requests without `X-Splunk-Request-Channel`): every
/// request carries the stream's channel, and the cursor moves only once Splunk acknowledged the
/// batch — while it withholds the acknowledgement, the events are received but the stream
/// still lags.
#[tokio::test]
async fn splunk_indexer_acknowledgement_moves_the_cursor_only_once_acknowledged_stand_in_receiver()
{
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::SplunkAck, "hec-token", 0).await;
    // The stand-in is strict: without a channel, HEC refuses the request.
    let unchannelled = reqwest::Client::new()
        .post(format!("{}/services/collector/event", receiver.url))
        .header("Authorization", "Splunk hec-token")
        .body(r#"{"time": 1, "event": {"id": "x"}}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(unchannelled.status(), 400);
    assert_eq!(receiver.violations(), ["no X-Splunk-Request-Channel"]);

    receiver.withhold_acks(true);
    let created = create_stream(
        &app,
        json!({"organization_id": organization, "type": "splunk", "name": "Splunk",
               "config": {"url": receiver.url, "token": "hec-token"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    // Within the second a Splunk batch waits for more: one batch.
    ingest(&app, &organization, 0, 3).await;
    assert_eq!(receiver.wait_for(3).await.len(), 3);
    for _ in 0..400 {
        if receiver.ack_queries() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        receiver.ack_queries() >= 2,
        "Trailmark asks whether the batch was indexed"
    );
    let waiting = stream(&app, &id).await;
    assert_eq!(
        (waiting["cursor"].clone(), waiting["lag_events"].clone()),
        (json!(0), json!(3)),
        "received but not acknowledged: the cursor stays after the record of the stream's creation: {waiting}"
    );

    receiver.withhold_acks(false);
    let caught_up = caught_up(&app, &id).await;
    assert_eq!(
        (caught_up["cursor"].clone(), caught_up["lag_events"].clone()),
        (json!(3), json!(0)),
        "{caught_up}"
    );
    let channels = receiver.channels();
    assert!(!channels.is_empty());
    assert!(
        channels
            .iter()
            .all(|channel| channel == &channels[0] && channel.len() == 36),
        "one channel per stream: {channels:?}"
    );
    assert_eq!(
        receiver.violations().len(),
        1,
        "only the test's own request lacked a channel"
    );
    assert_eq!(
        receiver.sequences()[..3],
        [1, 2, 3],
        "delivered in order (a batch sent again after a timeout may repeat)"
    );
}

#[tokio::test]
async fn a_dead_stream_never_delays_a_live_one() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    // Nothing listens on port 9: every delivery fails with a refused connection.
    create_stream(
        &app,
        json!({"organization_id": organization, "type": "http", "name": "Dead", "config": {"url": "http://127.0.0.1:9/hook"}}),
    )
    .await;
    let live = receivers::start(Kind::Http, SECRET, 0).await;
    create_stream(&app, http_stream(&organization, &live, "json")).await;
    ingest(&app, &organization, 0, 30).await;
    // From the beginning: the records of both streams' creation (0 and 1), then the 30 events.
    live.wait_for(32).await;
    assert_eq!(live.sequences(), (0..32).collect::<Vec<u64>>());
    let streams = body(
        app.get(&format!(
            "/audit_logs/streams?organization_id={organization}"
        ))
        .await,
    )
    .await;
    let dead = streams["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "Dead")
        .cloned()
        .unwrap_or_default();
    assert_eq!(dead["state"], "error");
    // From `now`, after its own creation (0): the live one's (1) and the 30 events.
    assert_eq!(dead["lag_events"], 31);
}

#[tokio::test]
async fn replay_and_test_events() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Http, SECRET, 0).await;
    let created = create_stream(&app, http_stream(&organization, &receiver, "json")).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    ingest(&app, &organization, 0, 6).await;
    // The record of the stream's creation (0), then the 6 events (1 to 6).
    receiver.wait_for(7).await;

    let replayed = app
        .post(
            &format!("/audit_logs/streams/{id}/replay"),
            &json!({"from_sequence": 2}),
        )
        .await;
    assert_eq!(replayed.status(), 200);
    // Sent again from 2, up to the record of the replay itself (7).
    receiver.wait_for(13).await;
    assert_eq!(
        receiver.sequences(),
        [0, 1, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6, 7],
        "a replay sends again from the sequence"
    );
    assert_eq!(
        receiver.actions().last().map(String::as_str),
        Some("trailmark.stream.replayed")
    );

    let tested = body(
        app.post(&format!("/audit_logs/streams/{id}/test"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(
        receiver.wait_for(14).await[13]["action"],
        "trailmark.stream.test"
    );

    receiver.set_credential("whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==");
    let refused = body(
        app.post(&format!("/audit_logs/streams/{id}/test"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(
        (refused["delivered"].clone(), refused["outcome"].clone()),
        (json!(false), json!("invalid"))
    );
}

/// Issue 15: the test event's `webhook-id` is its own, so a receiver that de-duplicates on it
/// still takes the first real event (whose batch is `<stream>_0_0`).
#[tokio::test]
async fn issue_15_test_events_have_webhook_ids_of_their_own() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Http, SECRET, 0).await;
    receiver.deduplicate();
    // From `now`: the stream starts after the record of its own creation (0), so the test events
    // go out before its first batch, the one a reused id would make the receiver drop.
    let mut request = http_stream(&organization, &receiver, "json");
    request["start"] = json!("now");
    let created = create_stream(&app, request).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..2 {
        let tested = body(
            app.post(&format!("/audit_logs/streams/{id}/test"), &json!({}))
                .await,
        )
        .await;
        assert_eq!(tested["delivered"], true, "{tested}");
    }
    ingest(&app, &organization, 0, 1).await;
    let events = receiver.wait_for(3).await;
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "trailmark.stream.test",
            "trailmark.stream.test",
            "user.signed_in"
        ],
        "each test event and then event 0 (sequence 1) arrive: {:?}",
        receiver.webhook_ids()
    );
    let ids = receiver.webhook_ids();
    assert_eq!(ids[2], format!("{id}_1_1"));
    for test_id in &ids[..2] {
        assert!(test_id.starts_with(&format!("{id}_event_")), "{test_id}");
    }
    assert_ne!(ids[0], ids[1], "every test event has its own id");
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );
}

/// Issue 16: a signing secret Trailmark generates is shown once, in the answer that made it
/// (creation, `PATCH` with `"signing_secret": null`, rotation), never again; after a rotation the
/// old secret signs beside the new one until its grace period ends.
#[tokio::test]
async fn issue_16_generated_secrets_are_shown_once_and_rotation_signs_with_both_during_grace() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Http, "", 0).await;
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "SIEM",
                    "config": {"url": receiver.url}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created = body(response).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let first = created["signing_secret"]
        .as_str()
        .expect("the generated secret, in clear")
        .to_owned();
    assert!(first.starts_with("whsec_"), "{first}");
    assert_eq!(
        created["config"]["signing_secret"],
        json!(format!("****{}", &first[first.len() - 4..]))
    );
    let read = stream(&app, &id).await;
    assert!(read.get("signing_secret").is_none(), "shown once: {read}");
    let listed = body(
        app.get(&format!(
            "/audit_logs/streams?organization_id={organization}"
        ))
        .await,
    )
    .await;
    assert!(!listed.to_string().contains(&first[6..]), "{listed}");

    receiver.set_credential(&first);
    ingest(&app, &organization, 0, 1).await;
    assert_eq!(receiver.wait_for_ingested(1).await.len(), 1);

    let rotated = body(
        app.post(
            &format!("/audit_logs/streams/{id}/rotate_secret"),
            &json!({"grace_period_seconds": 3600}),
        )
        .await,
    )
    .await;
    let second = rotated["signing_secret"]
        .as_str()
        .expect("the new secret")
        .to_owned();
    assert_ne!(second, first);
    assert!(
        rotated["config"]["previous_signing_secret"]["expires_at"].is_string(),
        "{rotated}"
    );
    // A receiver still on the old secret, then one on the new: both verify during the grace.
    ingest(&app, &organization, 1, 1).await;
    assert_eq!(receiver.wait_for_ingested(2).await.len(), 2);
    receiver.set_credential(&second);
    ingest(&app, &organization, 2, 1).await;
    assert_eq!(receiver.wait_for_ingested(3).await.len(), 3);

    // A rotation without a body takes the default grace; with a grace of 0, only the new secret
    // signs, and a receiver on the old one refuses.
    let no_body = app
        .client
        .post(app.url(&format!("/audit_logs/streams/{id}/rotate_secret")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(no_body.status(), 200);
    let third = body(no_body).await["signing_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let immediate = body(
        app.post(
            &format!("/audit_logs/streams/{id}/rotate_secret"),
            &json!({"grace_period_seconds": 0}),
        )
        .await,
    )
    .await;
    let fourth = immediate["signing_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    receiver.set_credential(&third);
    ingest(&app, &organization, 3, 1).await;
    wait_state(&app, &id, "invalid").await;
    receiver.set_credential(&fourth);
    // A PATCH with new settings retries at once; `"signing_secret": null` makes (and shows) one.
    let patched = body(
        app.client
            .patch(app.url(&format!("/audit_logs/streams/{id}")))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"config": {"signing_secret": null}}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    let fifth = patched["signing_secret"]
        .as_str()
        .expect("shown once")
        .to_owned();
    assert!(
        patched["config"].get("previous_signing_secret").is_none(),
        "{patched}"
    );
    receiver.set_credential(&fifth);
    assert_eq!(receiver.wait_for_ingested(4).await.len(), 4);
    let named = body(
        app.client
            .patch(app.url(&format!("/audit_logs/streams/{id}")))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": "SIEM 2"}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert!(named.get("signing_secret").is_none(), "{named}");

    for (request, field) in [
        (
            json!({"grace_period_seconds": 604_801}),
            "grace_period_seconds",
        ),
        (json!({"grace_period_seconds": -1}), "grace_period_seconds"),
        (json!({"grace_period": 60}), "grace_period"),
    ] {
        let refused = app
            .post(&format!("/audit_logs/streams/{id}/rotate_secret"), &request)
            .await;
        assert_eq!(refused.status(), 422, "{request}");
        assert_eq!(
            body(refused).await["errors"][0]["field"],
            field,
            "{request}"
        );
    }
    let splunk = receivers::start(Kind::Splunk, "token", 0).await;
    let other = create_stream(
        &app,
        json!({"organization_id": organization, "type": "splunk", "name": "Splunk",
               "config": {"url": splunk.url, "token": "token"}}),
    )
    .await;
    assert!(other.get("signing_secret").is_none());
    let refused = app
        .post(
            &format!(
                "/audit_logs/streams/{}/rotate_secret",
                other["id"].as_str().unwrap_or_default()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    assert_eq!(body(refused).await["errors"][0]["field"], "type");
}

#[tokio::test]
async fn stream_settings_are_validated_and_credentials_never_stored_in_clear() {
    let guarded = TestApp::spawn_with(Options {
        allow_private_destinations: false,
        ..Options::default()
    })
    .await;
    let organization = guarded.create_organization("Acme").await;
    for (request, field) in [
        (
            json!({"organization_id": organization, "type": "s4", "name": "x", "config": {}}),
            "type",
        ),
        (
            json!({"organization_id": organization, "type": "http", "name": "x", "config": {}}),
            "config.url",
        ),
        (
            json!({"organization_id": organization, "type": "http", "config": {"url": "https://siem.test"}}),
            "name",
        ),
        (
            json!({"organization_id": organization, "type": "http", "name": "x", "config": {"url": "http://127.0.0.1:8080/hook"}}),
            "config.url",
        ),
        (
            json!({"organization_id": organization, "type": "splunk", "name": "x", "config": {"url": "http://169.254.169.254/", "token": "t"}}),
            "config.url",
        ),
        (
            json!({"organization_id": organization, "type": "datadog", "name": "x", "config": {"site": "datadoghq.com"}}),
            "config.api_key",
        ),
    ] {
        let response = guarded.post("/audit_logs/streams", &request).await;
        assert_eq!(response.status(), 422, "{request}");
        assert_eq!(
            body(response).await["errors"][0]["field"],
            field,
            "{request}"
        );
    }

    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Splunk, "super-secret-hec-token", 0).await;
    create_stream(&app, json!({"organization_id": organization, "type": "splunk", "name": "S", "config": {"url": receiver.url, "token": "super-secret-hec-token"}}))
        .await;
    let stored = app.database.stored_bytes().await;
    assert!(!stored.is_empty());
    assert!(
        !stored.windows(22).any(|w| w == b"super-secret-hec-token"),
        "the token is encrypted at rest"
    );
}

/// The killed process's lease must run out before the restarted one may deliver.
const SHORT_LEASE: &[(&str, &str)] = &[("TRAILMARK_STREAM_LEASE_SECS", "1")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing() {
    let data_dir = tempfile::tempdir().expect("dir");
    let receiver = receivers::start(Kind::Http, SECRET, 0).await;
    let database = TestDatabase::create(data_dir.path()).await;
    let mut server = ServerProcess::start(data_dir.path(), &database, SHORT_LEASE);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
    };
    let organization: Value = post("/organizations", json!({"name": "Acme"}))
        .await
        .expect("org")
        .json()
        .await
        .expect("json");
    let organization = organization["id"].as_str().unwrap_or_default().to_owned();
    let created = post(
        "/audit_logs/streams",
        http_stream(&organization, &receiver, "ndjson"),
    )
    .await
    .expect("stream");
    assert_eq!(created.status(), 201);
    for n in 0..300 {
        let mut submitted = event("user.signed_in");
        submitted["metadata"] = json!({"n": n});
        let response = post(
            "/audit_logs/events",
            json!({"organization_id": organization, "event": submitted}),
        )
        .await
        .expect("event");
        assert_eq!(response.status(), 200);
    }
    server.kill();
    let before_restart = receiver.events().len();

    let mut restarted = ServerProcess::start(data_dir.path(), &database, SHORT_LEASE);
    // The record of the stream's creation (0), then the 300 events.
    receiver.wait_for(301).await;
    let mut sequences = receiver.sequences();
    let duplicates = sequences.len().saturating_sub(301);
    sequences.dedup();
    let mut unique = sequences.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique,
        (0..301).collect::<Vec<u64>>(),
        "every event arrived ({before_restart} before the kill, {duplicates} duplicates)"
    );
    restarted.kill();
}

/// Set when this test binary runs again inside a network namespace of its own.
const INSIDE_NETNS: &str = "TRAILMARK_TEST_INSIDE_NETNS";

/// Issue 10: a destination whose host does not resolve is refused with a code of its own
/// (`unresolvable_destination`), told apart from a refused address (`forbidden_destination`,
/// whose message names `--allow-private-destinations`). Name resolution must not leave the
/// machine in a test, so the check runs in a network namespace with loopback only (`unshare
/// -n`), where no name outside `/etc/hosts` resolves: the test runs itself again there.
#[tokio::test]
async fn issue_10_an_unresolvable_destination_gets_its_own_code() {
    const NAME: &str = "streams::issue_10_an_unresolvable_destination_gets_its_own_code";
    if std::env::var_os(INSIDE_NETNS).is_none() {
        let output = std::process::Command::new("unshare")
            .args(["-n", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
            .arg(std::env::current_exe().expect("the test binary"))
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(INSIDE_NETNS, "1")
            // PostgreSQL is outside the namespace; the check needs no particular backend.
            .env_remove("TRAILMARK_TEST_BACKEND")
            .output()
            .expect("unshare -n (needs root or CAP_SYS_ADMIN)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("resolution refusals checked"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let app = TestApp::spawn_with(Options {
        allow_private_destinations: false,
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let create = |url: &str| {
        json!({"organization_id": organization, "type": "http", "name": "SIEM",
               "config": {"url": url}})
    };
    let refused = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 422);
        body(response).await["errors"][0].clone()
    };
    for host in ["siem.trailmark-test.invalid", "no-such-host.example"] {
        let problem = refused(
            app.post(
                "/audit_logs/streams",
                &create(&format!("https://{host}/hook")),
            )
            .await,
        )
        .await;
        assert_eq!(problem["code"], "unresolvable_destination", "{problem}");
        assert_eq!(problem["field"], "config.url");
        assert!(
            problem["message"]
                .as_str()
                .unwrap_or_default()
                .contains(host),
            "{problem}"
        );
    }
    // A name that resolves (from /etc/hosts) to loopback is a refused address, not an
    // unresolvable one, and the message says how an operator allows it.
    let problem = refused(
        app.post("/audit_logs/streams", &create("http://localhost:9/hook"))
            .await,
    )
    .await;
    assert_eq!(problem["code"], "forbidden_destination", "{problem}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--allow-private-destinations"),
        "{problem}"
    );
    println!("resolution refusals checked");
}

/// The checkpoints among what a receiver accepted, once one covers `size` events (or all it
/// has after 10 s).
async fn checkpoints_covering(receiver: &Receiver, size: u64) -> Vec<Value> {
    let checkpoints = || -> Vec<Value> {
        receiver
            .events()
            .into_iter()
            .filter(|e| e["object"] == "ledger_checkpoint")
            .collect()
    };
    for _ in 0..400 {
        if checkpoints().iter().any(|c| c["tree_size"] == size) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    checkpoints()
}

#[tokio::test]
async fn every_stream_delivers_its_organizations_signed_checkpoints_strict_local_receivers() {
    let app = TestApp::spawn_with(Options {
        stream_checkpoint_every: std::time::Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let http = receivers::start(Kind::Http, SECRET, 0).await;
    let datadog = receivers::start(Kind::Datadog, "dd-key", 0).await;
    let splunk = receivers::start(Kind::Splunk, "hec-token", 0).await;
    let http_id = create_stream(&app, http_stream(&organization, &http, "json")).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    create_stream(
        &app,
        json!({"organization_id": organization, "type": "datadog", "name": "Datadog",
               "config": {"site": "datadoghq.eu", "api_key": "dd-key", "endpoint": datadog.url}}),
    )
    .await;
    create_stream(
        &app,
        json!({"organization_id": organization, "type": "splunk", "name": "Splunk",
               "config": {"url": splunk.url, "token": "hec-token"}}),
    )
    .await;
    ingest(&app, &organization, 0, 5).await;
    // The log: the records of the three streams' creation (0 to 2), then the 5 events. The HTTP
    // stream starts from the beginning, the others from `now`, after their own creation.
    const SIZE: u64 = 8;

    let key = body(app.get("/audit_logs/ledger/public_key").await).await;
    let verifier = trailmark_ledger::checkpoint::NoteVerifier::parse(
        key["verifier_key"].as_str().unwrap_or_default(),
    )
    .expect("key");
    for (name, receiver, first) in [
        ("http", &http, 0),
        ("datadog", &datadog, 2),
        ("splunk", &splunk, 3),
    ] {
        let checkpoints = checkpoints_covering(receiver, SIZE).await;
        let latest = checkpoints
            .iter()
            .find(|c| c["tree_size"] == SIZE)
            .unwrap_or_else(|| {
                panic!("{name} got no checkpoint of {SIZE} events: {checkpoints:?}")
            });
        assert_eq!(latest["organization_id"], organization.as_str(), "{name}");
        let signed = verifier
            .verify(latest["checkpoint"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{name}: the delivered checkpoint verifies: {e}"));
        assert_eq!(signed.size, SIZE, "{name}");
        assert_eq!(
            trailmark_ledger::encode_hash(&signed.root),
            latest["root_hash"].as_str().unwrap_or_default(),
            "{name}"
        );
        let sizes: Vec<u64> = checkpoints
            .iter()
            .filter_map(|c| c["tree_size"].as_u64())
            .collect();
        assert!(
            sizes.windows(2).all(|w| w[0] < w[1]),
            "{name}: each checkpoint once, growing: {sizes:?}"
        );
        assert!(
            receiver.violations().is_empty(),
            "{name}: {:?}",
            receiver.violations()
        );
        // Datadog and Splunk batch events for a second; checkpoints are not held back.
        for _ in 0..400 {
            if receiver.sequences().len() as u64 >= SIZE - first {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(
            receiver.sequences(),
            (first..SIZE).collect::<Vec<u64>>(),
            "{name}: the events, too"
        );
    }
    assert!(
        http.webhook_ids()
            .contains(&format!("{http_id}_checkpoint_{SIZE}")),
        "{:?}",
        http.webhook_ids()
    );
}

/// Issue 16 (filters): a stream sends only the events its filters match — actions by name or
/// `prefix.*`, actor types, target types — and its cursor still passes every event, so it is
/// caught up with nothing skipped that matches; a bad filter is refused naming its field.
#[tokio::test]
async fn issue_16_filtered_streams_send_only_matching_events_and_pass_the_rest() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Http, SECRET, 0).await;
    let mut request = http_stream(&organization, &receiver, "json");
    request["config"]["filters"] = json!({
        "actions": ["user.*", "document.deleted"],
        "actor_types": ["user"],
        "target_types": ["team"],
    });
    let created = create_stream(&app, request).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        created["config"]["filters"]["actions"],
        json!(["user.*", "document.deleted"])
    );
    let submitted = [
        ("user.signed_in", "user", "team", true),
        ("document.created", "user", "team", false),
        ("user.signed_in", "api_key", "team", false),
        ("document.deleted", "user", "team", true),
        ("user.invited", "user", "folder", false),
        ("username.changed", "user", "team", false),
        ("user.signed_out", "user", "team", true),
    ];
    for (n, (action, actor, target, _)) in submitted.iter().enumerate() {
        let mut event = event(action);
        event["actor"]["type"] = json!(actor);
        event["targets"][0]["type"] = json!(target);
        event["metadata"] = json!({"n": n});
        assert_eq!(
            app.create_event(&organization, &event, None).await.status(),
            200
        );
    }
    let caught_up = caught_up(&app, &id).await;
    assert_eq!(caught_up["lag_events"], 0, "{caught_up}");
    // The record of the stream's creation (0) and the seven events (1 to 7): the cursor passed
    // every one of them, sent or not.
    assert_eq!(caught_up["cursor"], 7, "{caught_up}");
    let wanted: Vec<&str> = submitted
        .iter()
        .filter(|(_, _, _, sent)| *sent)
        .map(|(action, ..)| *action)
        .collect();
    assert_eq!(receiver.actions(), wanted);
    assert_eq!(receiver.sequences(), [1, 4, 7]);

    let refused = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"config": {"filters": {"actions": ["us*er"], "kinds": []}}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(refused.status(), 422);
    let text = body(refused).await.to_string();
    assert!(
        text.contains("config.filters.actions") && text.contains("config.filters.kinds"),
        "{text}"
    );
}

/// Issue 16 (operator-wide stream): an unrestricted admin key makes a stream with no
/// organization; it receives every organization's events, each carrying its
/// `organization_id`, each log in its own order (a cursor per log), including organizations
/// made after it; `start: now` skips what every log already held. A key restricted to one
/// organization cannot make one, and no organization's list shows it.
#[tokio::test]
async fn issue_16_an_operator_wide_stream_delivers_every_organizations_log_in_order() {
    let app = TestApp::spawn().await;
    let acme = app.create_organization("Acme").await;
    let globex = app.create_organization("Globex").await;
    ingest(&app, &acme, 0, 3).await;
    ingest(&app, &globex, 0, 2).await;
    let everything = receivers::start(Kind::Http, SECRET, 0).await;
    let from_now = receivers::start(Kind::Http, SECRET, 0).await;
    let operator_stream = |receiver: &Receiver, start: &str| {
        json!({"type": "http", "name": "Operator SIEM", "start": start,
               "config": {"url": receiver.url, "signing_secret": SECRET}})
    };
    let created = create_stream(&app, operator_stream(&everything, "beginning")).await;
    assert_eq!(created["organization_id"], Value::Null, "{created}");
    let wide = created["id"].as_str().unwrap_or_default().to_owned();
    let later = create_stream(&app, operator_stream(&from_now, "now")).await;
    let later = later["id"].as_str().unwrap_or_default().to_owned();

    let initech = app.create_organization("Initech").await;
    ingest(&app, &acme, 3, 2).await;
    ingest(&app, &initech, 0, 2).await;

    // Acme: 5 events; Globex: 2; Initech: 2 (and no record of the streams' creation: an
    // operator-wide stream belongs to no organization's log).
    let events = everything.wait_for(9).await;
    assert_eq!(events.len(), 9, "{events:?}");
    for (organization, count) in [(&acme, 5), (&globex, 2), (&initech, 2)] {
        let sequences: Vec<u64> = events
            .iter()
            .filter(|e| e["organization_id"] == organization.as_str())
            .filter_map(|e| e["sequence"].as_u64())
            .collect();
        assert_eq!(
            sequences,
            (0..count).collect::<Vec<u64>>(),
            "{organization}"
        );
    }
    let caught_up = caught_up(&app, &wide).await;
    assert_eq!(caught_up["lag_events"], 0, "{caught_up}");

    // From `now`: only what came after its creation (Acme 3 and 4, Initech 0 and 1).
    let newer = from_now.wait_for(4).await;
    let mut seen: Vec<(String, u64)> = newer
        .iter()
        .map(|e| {
            (
                e["organization_id"].as_str().unwrap_or_default().to_owned(),
                e["sequence"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (acme.clone(), 3),
        (acme.clone(), 4),
        (initech.clone(), 0),
        (initech.clone(), 1),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    let listed = body(app.get("/audit_logs/streams").await).await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, [wide.as_str(), later.as_str()]);
    let acme_streams = body(
        app.get(&format!("/audit_logs/streams?organization_id={acme}"))
            .await,
    )
    .await;
    assert_eq!(acme_streams["data"], json!([]));

    let restricted = body(
        app.post(
            "/api_keys",
            &json!({"name": "Acme admin", "scope": "admin", "organization_id": acme}),
        )
        .await,
    )
    .await;
    let key = restricted["key"].as_str().unwrap_or_default();
    let refused = app
        .post_with_key(
            "/audit_logs/streams",
            key,
            &operator_stream(&everything, "now"),
        )
        .await;
    assert_eq!(refused.status(), 422);
    assert_eq!(body(refused).await["errors"][0]["field"], "organization_id");
    let hidden = app
        .client
        .get(app.url(&format!("/audit_logs/streams/{wide}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("get");
    assert_eq!(hidden.status(), 404);
}
