//! `trailmark-client` against a real Trailmark: every endpoint group, retries through a proxy
//! that fails on purpose, the background queue, and the offline proof check.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use trailmark_client::wire::{ExportRequest, LogStreamUpdate, NewLogStream, ReplayFrom};
use trailmark_client::{
    Actor, BackgroundConfig, BatchOutcome, Client, Error, Event, EventObject, Order, RetryPolicy,
    SearchQuery, Target, VerifyError,
};

use crate::helpers::{ADMIN_KEY, TestApp};

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(20),
        max_retry_after: std::time::Duration::from_millis(50),
    }
}

fn client(base: &str, max_attempts: u32) -> Client {
    Client::builder(base, ADMIN_KEY)
        .retry_policy(fast_retries(max_attempts))
        .build()
        .expect("client")
}

fn login(actor: &str) -> Event {
    Event::new("user.login", Actor::new("user", actor).named("Jon Smith"))
        .target(Target::new("team", "team_1"))
        .location("192.0.2.8")
        .user_agent("Firefox")
        .metadata("successful", true)
}

async fn all_events(client: &Client, organization_id: &str) -> Vec<EventObject> {
    let mut poller = client.poll(organization_id, None);
    let mut events = Vec::new();
    loop {
        let batch = poller.next_batch().await.expect("poll");
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
    }
}

/// Events go in one by one and in batches; search, polling and get read them back in log order.
#[tokio::test]
async fn events_round_trip_through_batches_search_and_polling() {
    let app = TestApp::spawn().await;
    let client = client(&app.base, 1);
    let org = client.create_organization("Acme").await.expect("org").id;

    let receipt = client
        .create_event(&org, &login("user_1"))
        .await
        .expect("event");
    assert_eq!(
        (receipt.sequence, receipt.organization_id.as_str()),
        (0, org.as_str())
    );

    let mut invalid = login("user_2");
    invalid.context.location = String::new();
    invalid.action = String::new();
    let outcomes = client
        .create_events(&org, &[login("user_2"), invalid, login("user_3")])
        .await
        .expect("batch");
    assert!(matches!(&outcomes[0], BatchOutcome::Stored(r) if r.sequence == 1));
    assert!(
        matches!(&outcomes[1], BatchOutcome::Rejected(r) if r.index == 1 && r.status == 422),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[2], BatchOutcome::Stored(r) if r.sequence == 2));

    let events = all_events(&client, &org).await;
    let actors: Vec<_> = events.iter().map(|e| e.actor.id.as_str()).collect();
    assert_eq!(actors, ["user_1", "user_2", "user_3"]);
    assert_eq!(events[0].id, receipt.id);
    assert_eq!(events[0].context.user_agent.as_deref(), Some("Firefox"));
    assert_eq!(events[0].targets, [Target::new("team", "team_1")]);
    assert_eq!(
        events[0].metadata.as_ref().expect("metadata")["successful"],
        json!(true)
    );

    let newest = client
        .search(&SearchQuery {
            actor_ids: vec!["user_3".into(), "user_1".into()],
            limit: Some(1),
            ..SearchQuery::organization(&org)
        })
        .await
        .expect("search");
    assert_eq!(newest.events[0].actor.id, "user_3");
    assert_eq!(newest.before, Some(2), "older matches remain");
    let rest = client
        .search(&SearchQuery {
            actor_ids: vec!["user_3".into(), "user_1".into()],
            order: Some(Order::Desc),
            before: newest.before,
            ..SearchQuery::organization(&org)
        })
        .await
        .expect("search");
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0].actor.id, "user_1");

    let got = client.get_event(&receipt.id).await.expect("get");
    assert_eq!(got, events[0]);
    let missing = client.get_event("event_01HZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(missing.expect_err("unknown").status(), Some(404));
}

/// Schemas, exports (created, polled, downloaded) and the life of a log stream.
#[tokio::test]
async fn schemas_exports_and_streams() {
    let app = TestApp::spawn().await;
    let client = client(&app.base, 1);
    let org = client.create_organization("Acme").await.expect("org").id;

    let schema = client
        .create_schema("user.login", &json!({"targets": [{"type": "team"}]}))
        .await
        .expect("schema");
    assert_eq!(schema.version, 1);
    assert_eq!(
        client.list_schemas("user.login").await.expect("list").len(),
        1
    );
    let actions = client.list_actions().await.expect("actions");
    assert_eq!(actions[0].name, "user.login");
    let refused = client
        .create_event(&org, &login("u").target(Target::new("post", "p")))
        .await
        .expect_err("post is not in the schema");
    assert_eq!(refused.status(), Some(400));

    client
        .create_event(&org, &login("user_1"))
        .await
        .expect("event");
    let export = client
        .create_export(&ExportRequest {
            organization_id: org.clone(),
            range_start: Some("2000-01-01T00:00:00Z".into()),
            range_end: Some("2100-01-01T00:00:00Z".into()),
            format: Some("ndjson".into()),
            ..ExportRequest::default()
        })
        .await
        .expect("export");
    let mut ready = client.get_export(&export.id).await.expect("get export");
    while ready.state == "pending" {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        ready = client.get_export(&export.id).await.expect("get export");
    }
    assert_eq!(ready.state, "ready");
    let file =
        String::from_utf8(client.download_export(&ready).await.expect("download")).expect("utf-8");
    assert!(
        file.lines().next().expect("a line").contains("\"user_1\""),
        "{file}"
    );

    let stream = client
        .create_stream(&NewLogStream {
            organization_id: org.clone(),
            kind: "http".into(),
            name: "Receiver".into(),
            config: json!({"url": "http://127.0.0.1:9/hook", "format": "json"}),
            enabled: Some(false),
            start: None,
        })
        .await
        .expect("stream");
    assert_eq!((stream.kind.as_str(), stream.enabled), ("http", false));
    let renamed = client
        .update_stream(
            &stream.id,
            &LogStreamUpdate {
                name: Some("Renamed".into()),
                ..LogStreamUpdate::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(renamed.name, "Renamed");
    let listed = client.list_streams(&org).await.expect("list");
    assert_eq!(listed.len(), 1);
    let replayed = client
        .replay_stream(&stream.id, &ReplayFrom::Sequence(0))
        .await
        .expect("replay");
    assert_eq!(replayed.id, stream.id);
    let test = client.test_stream(&stream.id).await.expect("test event");
    assert!(!test.delivered, "nothing listens on port 9");
    client.delete_stream(&stream.id).await.expect("delete");
    let gone = client.get_stream(&stream.id).await.expect_err("deleted");
    assert_eq!(gone.status(), Some(404));
}

/// An event's inclusion proof verifies offline against the signed checkpoint; an altered
/// event, a proof for another event, or another key does not.
#[tokio::test]
async fn an_inclusion_proof_verifies_offline_and_tampering_is_caught() {
    let app = TestApp::spawn().await;
    let client = client(&app.base, 1);
    let org = client.create_organization("Acme").await.expect("org").id;
    let mut receipts = Vec::new();
    for n in 0..5 {
        receipts.push(
            client
                .create_event(&org, &login(&format!("user_{n}")))
                .await
                .expect("event"),
        );
    }
    let key = client.ledger_public_key().await.expect("key").verifier_key;
    let event = client.get_event(&receipts[3].id).await.expect("get");
    let proof = client
        .inclusion_proof(&org, &event.id, None)
        .await
        .expect("proof");
    let note = proof.checkpoint.clone().expect("a signed checkpoint");
    let checkpoint = trailmark_client::verify::verify_event_inclusion(&key, &note, &event, &proof)
        .expect("verifies");
    assert_eq!(checkpoint.size, 5);
    let latest = client.checkpoint(&org).await.expect("checkpoint");
    assert_eq!(latest.tree_size, 5);

    let mut altered_json = event.raw().clone();
    altered_json["actor"]["name"] = json!("Someone Else");
    let altered: EventObject = serde_json::from_value(altered_json).expect("event json");
    assert!(matches!(
        trailmark_client::verify::verify_event_inclusion(&key, &note, &altered, &proof),
        Err(VerifyError::LeafMismatch { .. })
    ));

    let other = client.get_event(&receipts[1].id).await.expect("get");
    assert!(matches!(
        trailmark_client::verify::verify_event_inclusion(&key, &note, &other, &proof),
        Err(VerifyError::Mismatch(_))
    ));

    let mut wrong_path = proof.clone();
    wrong_path.proof.swap(0, 1);
    assert!(matches!(
        trailmark_client::verify::verify_event_inclusion(&key, &note, &event, &wrong_path),
        Err(VerifyError::NotIncluded { .. })
    ));

    let stranger = trailmark_ledger::checkpoint::NoteSigner::new("trailmark.test", [9; 32])
        .expect("signer")
        .verifier_key();
    assert!(matches!(
        trailmark_client::verify::verify_event_inclusion(&stranger, &note, &event, &proof),
        Err(VerifyError::Ledger(_))
    ));

    let consistency = client
        .consistency_proof(&org, 2, 5)
        .await
        .expect("consistency");
    let hash = |text: &str| trailmark_ledger::decode_hash(text).expect("hash");
    let path: Vec<_> = consistency.proof.iter().map(|h| hash(h)).collect();
    assert!(trailmark_ledger::tree::verify_consistency(
        2,
        5,
        &hash(&consistency.first_root_hash),
        &hash(&consistency.second_root_hash),
        &path
    ));
}

/// What the failing proxy does with the next request.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Forwards it to Trailmark but answers the client 502: the answer is "lost".
    ForwardThenLose,
    /// Answers 429 with `Retry-After: 0` without forwarding.
    Refuse429,
    /// Answers 503 without forwarding.
    Refuse503,
}

/// A request as the proxy saw it: its path and its `Idempotency-Key`.
type Seen = (String, Option<String>);

#[derive(Clone)]
struct Proxy {
    target: String,
    steps: Arc<Mutex<VecDeque<Step>>>,
    /// Path and `Idempotency-Key` of every request the proxy received.
    seen: Arc<Mutex<Vec<Seen>>>,
    http: reqwest::Client,
}

/// A proxy in front of Trailmark that fails the first requests as scripted, then forwards.
async fn spawn_proxy(target: &str, steps: &[Step]) -> (String, Proxy) {
    let proxy = Proxy {
        target: target.to_owned(),
        steps: Arc::new(Mutex::new(steps.iter().copied().collect())),
        seen: Arc::default(),
        http: reqwest::Client::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, proxy)
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let key = parts
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    proxy
        .seen
        .lock()
        .expect("lock")
        .push((parts.uri.path().to_owned(), key));
    let step = proxy.steps.lock().expect("lock").pop_front();
    match step {
        Some(Step::Refuse429) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                "slow down",
            )
                .into_response();
        }
        Some(Step::Refuse503) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Some(Step::ForwardThenLose) | None => {}
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let mut upstream = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.target));
    for name in ["authorization", "content-type", "idempotency-key"] {
        if let Some(value) = parts.headers.get(name) {
            upstream = upstream.header(name, value.as_bytes());
        }
    }
    let answer = upstream.body(body).send().await.expect("Trailmark answers");
    if matches!(step, Some(Step::ForwardThenLose)) {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    let status = StatusCode::from_u16(answer.status().as_u16()).expect("status");
    let bytes = answer.bytes().await.expect("body");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .expect("response")
}

/// A lost answer, a 429 and a 503 are retried with the call's one idempotency key: the event
/// is stored once and the client gets the first answer.
#[tokio::test]
async fn retries_reuse_one_idempotency_key_and_store_the_event_once() {
    let app = TestApp::spawn().await;
    let direct = client(&app.base, 1);
    let org = direct.create_organization("Acme").await.expect("org").id;
    let (base, proxy) = spawn_proxy(
        &app.base,
        &[Step::ForwardThenLose, Step::Refuse429, Step::Refuse503],
    )
    .await;

    let receipt = client(&base, 5)
        .create_event(&org, &login("user_1"))
        .await
        .expect("acknowledged in the end");

    let seen = proxy.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let key = seen[0].1.clone().expect("an idempotency key");
    assert!(
        seen.iter().all(|(_, k)| k.as_deref() == Some(key.as_str())),
        "{seen:?}"
    );
    let stored = all_events(&direct, &org).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].id, receipt.id,
        "the retry replayed the first answer"
    );

    // A second logical call gets a key of its own.
    client(&base, 1)
        .create_event(&org, &login("user_2"))
        .await
        .expect("event");
    let second_key = proxy.seen.lock().expect("lock")[4].1.clone();
    assert!(second_key.is_some() && second_key != Some(key));
}

/// A 4xx is never retried; the attempts run out on a dead address.
#[tokio::test]
async fn client_errors_are_not_retried_and_connection_errors_are() {
    let app = TestApp::spawn().await;
    let org = client(&app.base, 1)
        .create_organization("Acme")
        .await
        .expect("org")
        .id;
    let (base, proxy) = spawn_proxy(&app.base, &[]).await;
    let mut invalid = login("user_1");
    invalid.action = String::new();
    let error = client(&base, 5)
        .create_event(&org, &invalid)
        .await
        .expect_err("invalid");
    assert!(
        matches!(
            error,
            Error::Api {
                status: 422,
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(proxy.seen.lock().expect("lock").len(), 1);

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let error = client(&dead, 3)
        .create_event(&org, &login("user_1"))
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(error, Error::Transport { attempts: 3, .. }),
        "{error:?}"
    );
}

/// The background queue refuses what does not fit (counted, never silent), sends the rest in
/// batches, counts Trailmark's rejections, and delivers everything queued on shutdown.
#[tokio::test]
async fn the_background_queue_batches_counts_drops_and_flushes_on_shutdown() {
    let app = TestApp::spawn().await;
    let direct = client(&app.base, 1);
    let org = direct.create_organization("Acme").await.expect("org").id;
    let (base, proxy) = spawn_proxy(&app.base, &[]).await;
    let queue = client(&base, 3).background(BackgroundConfig {
        capacity: 3,
        batch_size: 10,
        linger: std::time::Duration::from_millis(10),
    });
    let mut invalid = login("user_bad");
    invalid.action = String::new();
    // This test's runtime has one thread, so the queue's task cannot drain before the test
    // yields: exactly the first three fit.
    assert!(queue.send(&org, login("user_1")).is_ok());
    assert!(queue.send(&org, invalid).is_ok());
    assert!(queue.send(&org, login("user_2")).is_ok());
    let refused = queue.send(&org, login("user_3")).expect_err("full");
    assert_eq!(refused.action, "user.login");
    assert!(queue.send(&org, login("user_4")).is_err());
    assert_eq!(queue.stats().dropped(), 2);

    queue.flush().await;
    assert_eq!(queue.stats().sent(), 2);
    assert_eq!(queue.stats().rejected(), 1);
    let actors: Vec<_> = all_events(&direct, &org)
        .await
        .into_iter()
        .map(|e| e.actor.id)
        .collect();
    assert_eq!(actors, ["user_1", "user_2"]);

    queue.send(&org, login("user_5")).expect("room again");
    let stats = queue.shutdown().await;
    assert_eq!((stats.sent(), stats.dropped(), stats.failed()), (3, 2, 0));
    assert_eq!(all_events(&direct, &org).await.len(), 3);
    let seen = proxy.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "one batch call per flush: {seen:?}");
    assert!(
        seen.iter()
            .all(|(path, _)| path == "/audit_logs/events/batch")
    );
}
