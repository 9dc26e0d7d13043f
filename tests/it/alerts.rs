//! Alerts (README "Alerts"): a stream failing longer than `--alert-after-secs`, and a failed
//! export, reach the operator's webhook signed, once per incident, and a stream's recovery once.
//! The webhook here is a strict local receiver: it checks the Standard Webhooks signature with
//! its own HMAC code (not Trailmark's) and the timestamp's freshness, and refuses anything else.
//! Three real binaries over one PostgreSQL database tell an incident once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use trailmark_app::alerts::AlertConfig;

use crate::helpers::{self, Options, ServerProcess, TestApp, TestDatabase, body, event};
use crate::receivers::{self, Kind};

const ALERT_SECRET: &str = "whsec_YWxlcnRzLWZvci10aGUtb3BlcmF0b3I=";
const STREAM_SECRET: &str = "whsec_dHJhaWxtYXJrLXRlc3Qtc2lnbmluZw==";

#[derive(Default)]
struct Seen {
    /// Bodies of the notifications acknowledged, in order.
    accepted: Vec<Value>,
    /// `webhook-id` of every request, answered or refused.
    ids: Vec<String>,
    /// Why requests were refused for their form (none expected).
    violations: Vec<String>,
    /// Answer this many well-formed requests with 500 first.
    fail_first: usize,
}

#[derive(Clone)]
struct Webhook {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Webhook {
    async fn start(fail_first: usize) -> Webhook {
        let seen = Arc::new(Mutex::new(Seen {
            fail_first,
            ..Seen::default()
        }));
        let app = axum::Router::new()
            .route("/alerts", post(receive))
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Webhook {
            url: format!("http://{address}/alerts"),
            seen,
        }
    }

    fn accepted(&self) -> Vec<Value> {
        self.seen
            .lock()
            .map(|s| s.accepted.clone())
            .unwrap_or_default()
    }

    fn of_type(&self, kind: &str) -> Vec<Value> {
        self.accepted()
            .into_iter()
            .filter(|n| n["type"] == kind)
            .collect()
    }

    /// Waits (up to 30 s) until a notification of type `kind` was acknowledged.
    async fn wait_for(&self, kind: &str) -> Value {
        for _ in 0..1200 {
            if let Some(found) = self.of_type(kind).pop() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {kind} notification: {:?}", self.accepted());
    }
}

/// Checks a notification as a receiver following the README would, then records it.
async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let key = base64::engine::general_purpose::STANDARD
        .decode(ALERT_SECRET.trim_start_matches("whsec_"))
        .expect("base64");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() <= 300);
    let parsed = serde_json::from_slice::<Value>(&body);
    let Ok(mut seen) = seen.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    seen.ids.push(id.clone());
    let problem = if !header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
    {
        Some("bad webhook-signature".to_owned())
    } else if !fresh {
        Some(format!("stale webhook-timestamp {timestamp}"))
    } else if header("content-type") != "application/json" {
        Some(format!("content-type {}", header("content-type")))
    } else if !parsed.as_ref().is_ok_and(Value::is_object) {
        Some("the body is not a JSON object".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        seen.violations.push(problem);
        return StatusCode::UNAUTHORIZED;
    }
    if seen.fail_first > 0 {
        seen.fail_first -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Ok(notification) = parsed {
        seen.accepted.push(notification);
    }
    StatusCode::NO_CONTENT
}

fn alerting(webhook: &Webhook, after: Duration) -> Options {
    Options {
        alerts: AlertConfig {
            webhook: Some(webhook.url.clone()),
            secret: Some(ALERT_SECRET.into()),
            after,
            ..AlertConfig::default()
        },
        ..Options::default()
    }
}

/// A stream whose destination refuses its signature (401: `invalid`) for longer than
/// `--alert-after-secs` is one `stream.failing` notification, however long it lasts; once the
/// destination accepts it again, one `stream.recovered`. The webhook's first answer is a 500:
/// the notification is sent again, with the same `webhook-id`, until acknowledged.
#[tokio::test]
async fn a_stream_failing_too_long_is_told_once_and_its_recovery_once() {
    let webhook = Webhook::start(1).await;
    let app = TestApp::spawn_with(alerting(&webhook, Duration::from_secs(1))).await;
    let organization = app.create_organization("Acme").await;
    // The destination expects another secret than the stream signs with.
    let destination = receivers::start(Kind::Http, "whsec_b3RoZXItc2VjcmV0LWtleQ==", 0).await;
    let created = body(
        app.post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "SIEM",
                    "config": {"url": destination.url, "signing_secret": STREAM_SECRET}}),
        )
        .await,
    )
    .await;
    let stream_id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.create_event(&organization, &event("user.signed_in"), None)
            .await
            .status(),
        200
    );

    let failing = webhook.wait_for("stream.failing").await;
    assert_eq!(failing["stream_id"], stream_id.as_str());
    assert_eq!(failing["organization_id"], organization.as_str());
    assert_eq!(failing["state"], "invalid");
    assert!(
        failing["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{failing}"
    );
    let since = trailmark_domain::Timestamp::parse(failing["since"].as_str().expect("since"))
        .expect("a timestamp");
    let at = trailmark_domain::Timestamp::parse(failing["at"].as_str().expect("at"))
        .expect("a timestamp");
    assert!(
        at.unix_millis() - since.unix_millis() >= 1_000,
        "opened once it lasted --alert-after-secs: {failing}"
    );
    let incident = failing["incident_id"]
        .as_str()
        .expect("incident id")
        .to_owned();
    assert!(incident.starts_with("incident_"));
    let scraped = app.metrics().await;
    assert!(
        scraped.contains("trailmark_alert_incidents_open{kind=\"stream\"} 1"),
        "{scraped}"
    );

    destination.set_credential(STREAM_SECRET);
    let recovered = webhook.wait_for("stream.recovered").await;
    assert_eq!(recovered["incident_id"], incident.as_str());
    assert_eq!(recovered["stream_id"], stream_id.as_str());
    assert_eq!(recovered["state"], "active");
    assert_eq!(recovered["since"], failing["since"]);
    assert_eq!(
        destination.wait_for(1).await.len(),
        1,
        "delivered once fixed"
    );

    let seen = webhook
        .seen
        .lock()
        .map(|s| (s.ids.clone(), s.violations.clone()));
    let (ids, violations) = seen.expect("seen");
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(
        ids,
        [
            format!("{incident}_opened"),
            format!("{incident}_opened"),
            format!("{incident}_resolved")
        ],
        "the refused notification again, then the recovery"
    );
    assert_eq!(webhook.of_type("stream.failing").len(), 1);
    assert_eq!(webhook.of_type("stream.recovered").len(), 1);
    // Trailmark's own log holds the incident's opening and resolution, once each.
    let recorded: Vec<(String, String)> = app
        .stored_events(trailmark_app::console::TRAILMARK_LOG)
        .await
        .iter()
        .map(|e| {
            let object = e.to_object();
            (
                object["action"].as_str().unwrap_or_default().to_owned(),
                object["metadata"]["incident_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("trailmark.alert.opened".to_owned(), incident.clone()),
            ("trailmark.alert.resolved".to_owned(), incident.clone())
        ]
    );
    let scraped = app.metrics().await;
    for line in [
        "trailmark_alert_incidents_open{kind=\"stream\"} 0",
        "trailmark_alert_incidents_total{kind=\"stream\"} 1",
        "trailmark_alert_notifications_total{type=\"stream.failing\",outcome=\"failed\"} 1",
        "trailmark_alert_notifications_total{type=\"stream.failing\",outcome=\"sent\"} 1",
        "trailmark_alert_notifications_total{type=\"stream.recovered\",outcome=\"sent\"} 1",
    ] {
        assert!(scraped.contains(line), "{line} in {scraped}");
    }
}

/// An export that fails (here: its file would cross `--export-max-disk-bytes`) is one
/// `export.failed` notification.
#[tokio::test]
async fn a_failed_export_is_told_once() {
    let webhook = Webhook::start(0).await;
    let app = TestApp::spawn_with(Options {
        export_max_disk_bytes: 500,
        ..alerting(&webhook, Duration::from_secs(60))
    })
    .await;
    let organization = app.create_organization("Acme").await;
    for _ in 0..10 {
        app.create_event(&organization, &event("user.signed_in"), None)
            .await;
    }
    let created = body(
        app.post(
            "/audit_logs/exports",
            &json!({"organization_id": organization}),
        )
        .await,
    )
    .await;
    let export_id = created["id"].as_str().expect("id").to_owned();
    let failed = webhook.wait_for("export.failed").await;
    assert_eq!(failed["export_id"], export_id.as_str());
    assert_eq!(failed["organization_id"], organization.as_str());
    assert_eq!(failed["state"], "error");
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("--export-max-disk-bytes")),
        "{failed}"
    );
    let export = body(app.get(&format!("/audit_logs/exports/{export_id}")).await).await;
    assert_eq!(export["state"], "error");
    assert_eq!(webhook.accepted().len(), 1);
    let scraped = app.metrics().await;
    assert!(
        scraped.contains(
            "trailmark_alert_notifications_total{type=\"export.failed\",outcome=\"sent\"} 1"
        ),
        "{scraped}"
    );
}

/// Three `trailmark serve` processes over one PostgreSQL database, each looking for incidents
/// every second: the failing stream is one `stream.failing` and one `stream.recovered`, not one
/// per instance. (Always on PostgreSQL, as `scale_out`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_over_one_database_tell_an_incident_once() {
    let webhook = Webhook::start(0).await;
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let env = [
        ("TRAILMARK_ALERT_WEBHOOK", webhook.url.as_str()),
        ("TRAILMARK_ALERT_WEBHOOK_SECRET", ALERT_SECRET),
        ("TRAILMARK_ALERT_AFTER_SECS", "1"),
        ("TRAILMARK_STREAM_LEASE_SECS", "1"),
    ];
    // The first starts alone, creating the key files the others read.
    let mut instances = vec![ServerProcess::start(data_dir.path(), &database, &env)];
    for _ in 0..2 {
        instances.push(ServerProcess::start(data_dir.path(), &database, &env));
    }
    let client = reqwest::Client::new();
    let base = instances[0].base.clone();
    let organization = helpers::organization(&client, &base).await;
    // Down (503: `error`, retried with a backoff as long as the outage so far) until told.
    let destination = receivers::start(Kind::Http, STREAM_SECRET, usize::MAX).await;
    let created = helpers::post(
        &client,
        &base,
        "/audit_logs/streams",
        json!({"organization_id": organization, "type": "http", "name": "SIEM",
               "config": {"url": destination.url, "signing_secret": STREAM_SECRET}}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let ingested = helpers::post(
        &client,
        &base,
        "/audit_logs/events",
        json!({"organization_id": organization, "event": event("user.signed_in")}),
    )
    .await;
    assert_eq!(ingested.status(), 200);

    let failing = webhook.wait_for("stream.failing").await;
    assert_eq!(failing["state"], "error");
    if let Ok(mut log) = destination.log.lock() {
        log.fail_first = 0;
    }
    let recovered = webhook.wait_for("stream.recovered").await;
    assert_eq!(recovered["incident_id"], failing["incident_id"]);
    // Every instance has looked at least twice since: none tells it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ids, violations) = webhook
        .seen
        .lock()
        .map(|s| (s.ids.clone(), s.violations.clone()))
        .expect("seen");
    assert!(violations.is_empty(), "{violations:?}");
    let incident = failing["incident_id"].as_str().expect("id");
    assert_eq!(
        ids,
        [format!("{incident}_opened"), format!("{incident}_resolved")]
    );
    for instance in &mut instances {
        instance.kill();
    }
}
