//! The acknowledgement flow against a stand-in HEC receiver on loopback that, like a token with
//! indexer acknowledgement on, refuses requests without a channel and answers each batch with
//! an `ackId`; the test decides which ids it acknowledges. Timing runs on the paused clock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::*;
use crate::destination::{Context, Destination, Shared};

/// What the stand-in receiver saw.
#[derive(Default)]
struct Seen {
    /// Each batch: its channel and how many events it held.
    batches: Vec<(String, usize)>,
    /// When (since the test began, on the paused clock) each acknowledgement query came.
    polls: Vec<Duration>,
    /// The ids it acknowledges when asked.
    ackable: HashSet<u64>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A stand-in for a HEC endpoint with indexer acknowledgement on (`Splunk t0ken`).
async fn stand_in_receiver(start: Instant, seen: Arc<Mutex<Seen>>) -> String {
    let events = {
        let seen = Arc::clone(&seen);
        move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                if header(&headers, "authorization").as_deref() != Some("Splunk t0ken") {
                    return (
                        StatusCode::FORBIDDEN,
                        json!({"text": "Invalid token", "code": 4}).to_string(),
                    );
                }
                let Some(channel) = header(&headers, "x-splunk-request-channel") else {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({"text": "Data channel is missing", "code": 10}).to_string(),
                    );
                };
                let count = serde_json::Deserializer::from_slice(&body)
                    .into_iter::<Value>()
                    .count();
                let mut seen = seen.lock().expect("seen");
                seen.batches.push((channel, count));
                let ack = seen.batches.len() as u64 - 1;
                (
                    StatusCode::OK,
                    json!({"text": "Success", "code": 0, "ackId": ack}).to_string(),
                )
            }
        }
    };
    let acks = move |headers: HeaderMap, body: axum::body::Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            if header(&headers, "x-splunk-request-channel").is_none() {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"text": "Data channel is missing", "code": 10}).to_string(),
                );
            }
            let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut seen = seen.lock().expect("seen");
            seen.polls.push(start.elapsed());
            let answers: Map<String, Value> = asked["acks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .map(|id| (id.to_string(), Value::Bool(seen.ackable.contains(&id))))
                .collect();
            (StatusCode::OK, json!({"acks": answers}).to_string())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let app = axum::Router::new()
            .route("/services/collector/event", axum::routing::post(events))
            .route("/services/collector/ack", axum::routing::post(acks));
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

/// Runs `attempt` to its end, moving the paused clock in small steps (and giving real time to
/// the loopback requests between them); returns its outcome and the paused time it took.
async fn drive(attempt: impl Future<Output = Outcome> + Send + 'static) -> (Outcome, Duration) {
    let started = Instant::now();
    let task = tokio::spawn(attempt);
    while !task.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(120), "never ended");
        tokio::time::advance(Duration::from_millis(10)).await;
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
            .await
            .expect("sleep");
    }
    (task.await.expect("attempt"), started.elapsed())
}

/// A batch Splunk never acknowledges fails after [`ACK_TIMEOUT`] (polled every
/// [`ACK_POLL_INTERVAL`]), so the worker sends it again; the batch sent again, acknowledged,
/// is delivered. Both carry the stream's channel.
#[tokio::test(start_paused = true)]
async fn an_unacknowledged_batch_is_sent_again_after_the_timeout_stand_in_receiver() {
    // Time moves only when the test moves it: an always-ready task keeps the runtime from
    // jumping to the next timer while a loopback request is under way.
    let spinner = tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    });
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = stand_in_receiver(start, Arc::clone(&seen)).await;
    let mut public = json!({"url": url}).as_object().cloned().unwrap_or_default();
    let mut secrets = json!({"token": "t0ken"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let sink: Arc<dyn Sink> = Arc::from(
        Splunk
            .configure(&mut public, &mut secrets, &mut String::new)
            .expect("configured"),
    );
    let client = crate::net::client(true, &[]).expect("client");
    let shared = Arc::new(Shared::default());
    let events: Vec<Value> = (0..3)
        .map(|n| json!({"id": format!("event_{n}"), "sequence": n, "occurred_at": "2026-08-01T10:00:00.000Z"}))
        .collect();
    let attempt = || {
        let (sink, client, shared, events) = (
            Arc::clone(&sink),
            client.clone(),
            Arc::clone(&shared),
            events.clone(),
        );
        async move {
            let cx = Context {
                stream_id: "log_stream_01TEST",
                client: &client,
                allow_private: true,
                proxy: None,
                shared: &shared,
                clock: &crate::worker::Clock::default(),
                aws_default_chain: None,
                format: crate::format::EventFormat::Workos,
            };
            sink.send(&cx, &events).await
        }
    };

    let (first, took) = drive(attempt()).await;
    assert!(
        matches!(&first, Outcome::Retry { reason, .. } if reason.contains("did not acknowledge")),
        "{first:?}"
    );
    // The clock moves while a loopback request is under way (a step of `drive` per real
    // millisecond), so on a loaded machine an attempt polls fewer times on it. Whatever the
    // load: it never gives up before the timeout, and polls more than once, an interval apart.
    assert!(
        took >= ACK_TIMEOUT - ACK_POLL_INTERVAL,
        "gave up after {took:?}"
    );
    let polls = seen.lock().expect("seen").polls.clone();
    assert!(
        polls.len() >= 2
            && polls.len() as u32
                <= ACK_TIMEOUT.as_millis() as u32 / ACK_POLL_INTERVAL.as_millis() as u32,
        "{polls:?}"
    );
    for pair in polls.windows(2) {
        assert!(pair[1] - pair[0] >= ACK_POLL_INTERVAL, "{polls:?}");
    }

    seen.lock().expect("seen").ackable.insert(1);
    let (second, took) = drive(attempt()).await;
    assert_eq!(second, Outcome::Delivered(3));
    assert!(took < ACK_TIMEOUT, "acknowledged after {took:?}");
    let batches = seen.lock().expect("seen").batches.clone();
    assert_eq!(
        batches,
        [
            (channel("log_stream_01TEST"), 3),
            (channel("log_stream_01TEST"), 3)
        ],
        "the batch went twice, on the stream's channel"
    );
    spinner.abort();
}

#[test]
fn the_channel_is_a_uuid_of_the_stream_and_answers_are_read() {
    let channel = channel("log_stream_01TEST");
    assert_eq!(channel.len(), 36);
    assert_eq!(channel.as_bytes()[14], b'4', "version 4 layout: {channel}");
    assert_eq!(channel, super::channel("log_stream_01TEST"));
    assert_ne!(channel, super::channel("log_stream_02TEST"));
    assert_eq!(ack_id(r#"{"text":"Success","code":0,"ackId":7}"#), Some(7));
    assert_eq!(ack_id(r#"{"text":"Success","code":0}"#), None);
    assert!(is_acknowledged(r#"{"acks":{"7":true}}"#, 7));
    assert!(!is_acknowledged(r#"{"acks":{"7":false}}"#, 7));
    assert!(!is_acknowledged(r#"{"acks":{}}"#, 7));
    assert_eq!(
        ack_endpoint("https://hec.test:8088/services/collector/event"),
        "https://hec.test:8088/services/collector/ack"
    );
    assert_eq!(
        ack_endpoint("https://hec.test:8088/"),
        "https://hec.test:8088/services/collector/ack"
    );
}
