//! Live events (issue 14): `GET /audit_logs/events/stream` as Server-Sent Events — order, the
//! start (`after`, `Last-Event-ID`, the log's head), the search filters, organization
//! isolation and key scopes. Timing (heartbeats, wake-ups, a slow consumer) is tested on a
//! paused clock in `trailmark_app::live`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, TestApp, body, event};

/// One message of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// A `text/event-stream` read message by message (comments skipped).
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    /// Opens `url` with `key`; panics unless it answers 200 `text/event-stream`.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        key: &str,
        last_event_id: Option<&str>,
    ) -> SseClient {
        let mut request = client.get(url).bearer_auth(key);
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        let response = request.send().await.expect("stream");
        Self::from_response(response)
    }

    /// Reads `response`; panics unless it is 200 `text/event-stream`.
    pub fn from_response(response: reqwest::Response) -> SseClient {
        assert_eq!(response.status(), 200, "{}", response.url());
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{}",
            response.url()
        );
        SseClient {
            response,
            buffer: String::new(),
        }
    }

    /// The next message, or `None` when the server ended the stream. Panics after 10 s of
    /// nothing (a heartbeat comes every 15 s, so a test waiting on an event never sees one).
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut fields = false;
                for line in block.lines() {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "id" => message.id = Some(value.to_owned()),
                        "event" => message.event = Some(value.to_owned()),
                        "data" => message.data.push_str(value),
                        _ => continue,
                    }
                    fields = true;
                }
                if fields {
                    return Some(message);
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a message within 10 s")
                .expect("read the stream")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next `count` events' sequences.
    async fn ids(&mut self, count: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let message = self.next_event().await.expect("an event");
            ids.push(message.id.expect("id").parse().expect("a sequence"));
        }
        ids
    }
}

async fn post_event(app: &TestApp, organization: &str, action: &str, n: usize) -> Value {
    let mut submitted = event(action);
    submitted["metadata"] = json!({"n": n});
    submitted["actor"]["id"] = json!(format!("user_{}", n % 2));
    let response = app.create_event(organization, &submitted, None).await;
    assert_eq!(response.status(), 200);
    body(response).await
}

async fn open(app: &TestApp, query: &str, last: Option<&str>) -> SseClient {
    let url = app.url(&format!("/audit_logs/events/stream?{query}"));
    SseClient::open(&app.client, &url, ADMIN_KEY, last).await
}

#[tokio::test]
async fn new_events_arrive_in_log_order_as_the_search_shows_them() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    for n in 0..2 {
        post_event(&app, &organization, "user.signed_in", n).await;
    }
    // From the log's head: only what is appended from now on.
    let mut stream = open(&app, &format!("organization_id={organization}"), None).await;
    for n in 2..5 {
        post_event(&app, &organization, "user.signed_in", n).await;
    }
    let mut received = Vec::new();
    for _ in 0..3 {
        let message = stream.next_event().await.expect("an event");
        assert_eq!(message.event, None);
        received.push((
            message.id.expect("id"),
            serde_json::from_str::<Value>(&message.data).expect("json"),
        ));
    }
    let searched = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&order=asc&after=1"
        ))
        .await,
    )
    .await;
    let expected: Vec<(String, Value)> = searched["data"]
        .as_array()
        .expect("data")
        .iter()
        .enumerate()
        .map(|(i, e)| ((i + 2).to_string(), e.clone()))
        .collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_stream_resumes_after_after_or_the_last_event_id() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    for n in 0..5 {
        post_event(&app, &organization, "user.signed_in", n).await;
    }
    let mut stream = open(
        &app,
        &format!("organization_id={organization}&after=1"),
        None,
    )
    .await;
    assert_eq!(stream.ids(3).await, [2, 3, 4]);
    // A reconnecting EventSource sends the URL it first used and the last id it saw: the id wins.
    let query = format!("organization_id={organization}&after=0");
    let mut resumed = open(&app, &query, Some("3")).await;
    post_event(&app, &organization, "user.signed_in", 5).await;
    assert_eq!(resumed.ids(2).await, [4, 5]);
    assert_eq!(stream.ids(1).await, [5]);

    let bad = app
        .client
        .get(app.url(&format!("/audit_logs/events/stream?{query}")))
        .bearer_auth(ADMIN_KEY)
        .header("Last-Event-ID", "four")
        .send()
        .await
        .expect("stream");
    assert_eq!(bad.status(), 422);
    assert_eq!(body(bad).await["errors"][0]["field"], "Last-Event-ID");
}

#[tokio::test]
async fn the_search_filters_apply_to_a_stream() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let query = format!("organization_id={organization}&actions=user.*&actor_ids=user_1&after=");
    let mut stream = open(&app, &query, None).await;
    // The actor is user_1 for odd sequences.
    let actions = [
        "user.signed_in",
        "user.signed_out",
        "document.viewed",
        "user.signed_in",
        "document.viewed",
        "user.signed_out",
    ];
    for (n, action) in actions.iter().enumerate() {
        post_event(&app, &organization, action, n).await;
    }
    let mut messages = Vec::new();
    for _ in 0..3 {
        messages.push(stream.next_event().await.expect("an event"));
    }
    let seen: Vec<(String, String, String)> = messages
        .iter()
        .map(|m| {
            let data: Value = serde_json::from_str(&m.data).expect("json");
            (
                m.id.clone().expect("id"),
                data["action"].as_str().expect("action").to_owned(),
                data["actor"]["id"].as_str().expect("actor").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("1".into(), "user.signed_out".into(), "user_1".into()),
            ("3".into(), "user.signed_in".into(), "user_1".into()),
            ("5".into(), "user.signed_out".into(), "user_1".into()),
        ]
    );
    for bad in ["actions=", "q=ab", "limit=5", "range_start=yesterday"] {
        let response = app
            .get(&format!(
                "/audit_logs/events/stream?organization_id={organization}&{bad}"
            ))
            .await;
        assert_eq!(response.status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn read_keys_follow_their_own_organization_only() {
    let app = TestApp::spawn().await;
    let acme = app.create_organization("Acme").await;
    let globex = app.create_organization("Globex").await;
    let app = &app;
    let make = |scope: &str, organization: Option<&str>| {
        let asked = json!({"name": scope, "scope": scope, "organization_id": organization});
        async move {
            let response = app.post("/api_keys", &asked).await;
            assert_eq!(response.status(), 201);
            body(response).await["key"]
                .as_str()
                .expect("key")
                .to_owned()
        }
    };
    let acme_reader = make("read", Some(&acme)).await;
    let ingest = make("ingest", None).await;
    let status = |key: String, query: String| async move {
        app.client
            .get(app.url(&format!("/audit_logs/events/stream?{query}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("stream")
            .status()
            .as_u16()
    };
    assert_eq!(
        status(acme_reader.clone(), format!("organization_id={globex}")).await,
        403
    );
    assert_eq!(status(ingest, format!("organization_id={acme}")).await, 403);
    assert_eq!(
        status("sk_nobody".into(), format!("organization_id={acme}")).await,
        401
    );
    assert_eq!(
        status(
            ADMIN_KEY.into(),
            "organization_id=org_01J0000000000000000000000".into()
        )
        .await,
        404
    );
    assert_eq!(status(ADMIN_KEY.into(), String::new()).await, 422);

    // A restricted key needs no organization_id, and sees its own organization's events only.
    let url = app.url("/audit_logs/events/stream");
    let mut stream = SseClient::open(&app.client, &url, &acme_reader, None).await;
    post_event(app, &globex, "user.signed_in", 0).await;
    post_event(app, &acme, "user.signed_in", 1).await;
    let message = stream.next_event().await.expect("an event");
    let data: Value = serde_json::from_str(&message.data).expect("json");
    // Sequence 0 of Acme's log records the key's creation.
    assert_eq!(
        (message.id.as_deref(), &data["metadata"]["n"]),
        (Some("1"), &json!(1))
    );
}

/// A client that stops reading: ingest goes on at full speed, and once the client is 256 events
/// behind (past what the sockets hold) the server tells it where to resume and ends the stream.
/// (The reader's side of this is tested on a paused clock in `trailmark_app::live`.)
#[tokio::test]
async fn a_client_that_stops_reading_is_told_to_resume_and_never_holds_back_ingest() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small window, so the sockets hold few events.
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let mut connection = socket
        .connect(address.parse().expect("address"))
        .await
        .expect("connect");
    let request = format!(
        "GET /audit_logs/events/stream?organization_id={organization} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nConnection: close\r\n\r\n"
    );
    connection
        .write_all(request.as_bytes())
        .await
        .expect("request");
    // The answer's head arrives before any event: the stream starts at the log's head.
    let mut head = vec![0; 1024];
    let read = connection.read(&mut head).await.expect("head");
    assert!(String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200"));

    let mut posted = 0;
    // More than the server's socket may buffer (Linux grows a send buffer to 4 MiB at most,
    // tcp_wmem), the client's window and the stream's 256 events: ~13 MB.
    for round in 0..8 {
        let events: Vec<Value> = (0..1000)
            .map(|n| {
                let mut submitted = event("user.signed_in");
                submitted["metadata"] = json!({
                    "round": round,
                    "n": n,
                    "padding": "x".repeat(450),
                    "more_padding": "y".repeat(450),
                });
                submitted
            })
            .collect();
        let response = app
            .post(
                "/audit_logs/events/batch",
                &json!({"organization_id": organization, "events": events}),
            )
            .await;
        assert_eq!(response.status(), 200, "ingest is never held back");
        posted += 1000;
    }

    let mut text = String::new();
    let mut buffer = vec![0; 64 * 1024];
    // Heartbeats would keep a stream that never ended alive: bound the whole read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = tokio::time::timeout_at(deadline, connection.read(&mut buffer))
            .await
            .expect("the stream ends")
            .expect("read");
        if read == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    let ids: Vec<u64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .filter_map(|id| id.trim().parse().ok())
        .collect();
    let resume = text
        .split("\n\n")
        .find(|message| message.contains("event: resume"))
        .unwrap_or_else(|| panic!("no resume message in {} bytes", text.len()));
    let delivered = ids.len() - 1;
    assert!(delivered < posted, "the client fell behind");
    let last = ids[delivered - 1];
    assert!(resume.contains(&format!("id: {last}")), "{resume}");
    assert!(
        resume.contains(&format!("\"last_event_id\":\"{last}\"")),
        "{resume}"
    );
    assert_eq!(
        ids[..delivered],
        (0..delivered as u64).collect::<Vec<_>>()[..]
    );
}

#[tokio::test]
async fn one_key_may_hold_only_so_many_streams_and_the_next_is_told_to_retry() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let mut streams = Vec::new();
    for _ in 0..trailmark_app::live::STREAMS_PER_HOLDER {
        streams.push(open(&app, &format!("organization_id={organization}"), None).await);
    }
    let refused = app
        .client
        .get(app.url(&format!(
            "/audit_logs/events/stream?organization_id={organization}"
        )))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(body(refused).await["code"], "too_many_streams");
    // A closed stream gives its place back.
    drop(streams.pop());
    let mut reopened = None;
    for _ in 0..50 {
        let response = app
            .client
            .get(app.url(&format!(
                "/audit_logs/events/stream?organization_id={organization}"
            )))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("request");
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the place came back");
}
