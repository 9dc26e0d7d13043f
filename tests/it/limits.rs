//! The limits that keep abusive or broken clients from hurting the service, over real sockets:
//! idle and half-sent connections are closed after their timeouts, a flood of idle sockets past
//! the connection cap leaves `/healthz` and real traffic served, shutdown ends within its grace
//! even with a half-sent request open, errors hyper answers before routing are JSON, and the
//! rate limits answer 429 as WorkOS does. Timeouts are configured short so the tests see them
//! happen; they assert what happens, never how fast.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trailmark_server::{Cidr, ConnectionLimits, RateLimits};

use crate::helpers::{ADMIN_KEY, Options, TestApp, body, event};

/// How long a test waits for something that must happen before calling it a failure.
const PATIENCE: Duration = Duration::from_secs(30);

fn short_timeouts() -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        ..ConnectionLimits::default()
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// The status and JSON body of a raw HTTP/1.1 answer.
fn parse_answer(text: &str) -> (u16, String, Value) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed_after_their_timeouts() {
    let app = TestApp::spawn_with(Options {
        connections: short_timeouts(),
        ..Options::default()
    })
    .await;
    // Nothing sent at all.
    let mut silent = connect(&app).await;
    assert_eq!(read_to_close(&mut silent).await, "");
    // Half a head, then nothing.
    let mut half = connect(&app).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: trailmark\r\nX-Slow: ")
        .await
        .expect("write");
    assert_eq!(read_to_close(&mut half).await, "");
    // A head sent a byte at a time, slower than the header timeout allows in all.
    let mut dribble = connect(&app).await;
    let mut closed = false;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: trailmark\r\n\r\n" {
        if dribble.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !closed {
        let answer = read_to_close(&mut dribble).await;
        assert!(
            !answer.contains("200 OK"),
            "a dribbled head was served: {answer}"
        );
    }
    // A kept-alive connection is closed once idle for the idle timeout, after its answer.
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: trailmark\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains(r#"{"status":"ok"}"#), "{answer}");
}

#[tokio::test]
async fn a_half_sent_body_is_answered_408_in_json_and_the_connection_closed() {
    let app = TestApp::spawn_with(Options {
        connections: short_timeouts(),
        ..Options::default()
    })
    .await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /organizations HTTP/1.1\r\nHost: trailmark\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": "
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let (status, head, body) = parse_answer(&read_to_close(&mut stream).await);
    assert_eq!(status, 408);
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    assert_eq!(body["code"], "request_timeout", "{body}");
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// Issue 1: more idle sockets than the cap (silent ones and half-sent heads) do not keep
/// `/healthz` or authenticated traffic out: the idlest connection makes room for a new one.
#[tokio::test]
async fn a_flood_of_idle_sockets_past_the_cap_leaves_healthz_and_traffic_served() {
    let cap = 32;
    let app = TestApp::spawn_with(Options {
        connections: ConnectionLimits {
            max_connections: cap,
            ..ConnectionLimits::default()
        },
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let mut flood = Vec::new();
    for n in 0..cap * 4 {
        let mut stream = connect(&app).await;
        if n % 2 == 1 {
            let _ = stream
                .write_all(b"POST /audit_logs/events HTTP/1.1\r\nHost: x\r\n")
                .await;
        }
        flood.push(stream);
    }
    // Fresh clients, as a load balancer's health check and an app would come.
    for _ in 0..3 {
        let client = reqwest::Client::new();
        let health = client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz under a flood");
        assert_eq!(health.status(), 200);
        let ingested = client
            .post(app.url("/audit_logs/events"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"organization_id": organization, "event": event("user.signed_in")}))
            .send()
            .await
            .expect("ingest under a flood");
        assert_eq!(ingested.status(), 200);
    }
    // The flood's oldest sockets were closed to make room.
    let mut closed = 0;
    for stream in &mut flood {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= cap * 3,
        "only {closed} of {} idle sockets were closed",
        cap * 4
    );
}

/// Issue 1: shutdown finishes within its grace period although a client holds a half-sent
/// head and another a half-sent body; the listener is gone afterwards.
#[tokio::test]
async fn shutdown_is_bounded_even_with_half_sent_requests_held_open() {
    let mut app = TestApp::spawn_with(Options {
        connections: ConnectionLimits {
            shutdown_grace: Duration::from_millis(500),
            ..ConnectionLimits::default()
        },
        ..Options::default()
    })
    .await;
    let mut head = connect(&app).await;
    head.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut body = connect(&app).await;
    body.write_all(
        format!(
            "POST /organizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    // The body's request has reached the application before shutdown starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let stopped = tokio::time::timeout(PATIENCE, app.shut_down()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "shutdown did not finish: {stopped:?}"
    );
    assert!(
        TcpStream::connect(&address).await.is_err(),
        "still listening"
    );
    read_to_close(&mut head).await;
    read_to_close(&mut body).await;
}

/// Issue 9: what hyper refuses before routing (a head or URI too large, a request that is not
/// HTTP) answers JSON like every other error; so do unknown paths, `/portal/*` API paths and
/// wrong methods.
#[tokio::test]
async fn protocol_errors_unknown_paths_and_methods_answer_workos_shaped_json() {
    let app = TestApp::spawn().await;
    let raw = |request: Vec<u8>| {
        let address = app.base.trim_start_matches("http://").to_owned();
        async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let _ = stream.write_all(&request).await;
            let mut received = Vec::new();
            let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received)).await;
            parse_answer(&String::from_utf8_lossy(&received))
        }
    };
    for (request, status, code) in [
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200_000)
            )
            .into_bytes(),
            431,
            "request_header_fields_too_large",
        ),
        (
            format!(
                "GET /audit_logs/events?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(70_000)
            )
            .into_bytes(),
            414,
            "uri_too_long",
        ),
        (b"HELLO WORLD\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
    ] {
        let (got, head, body) = raw(request).await;
        assert_eq!(got, status, "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("x-request-id: req_"), "{head}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].is_string(), "{body}");
    }

    // The Python SDK's revoke_link: an API path under /portal that Trailmark has not.
    let revoke = app
        .client
        .post(app.url("/portal/revoke_link"))
        .bearer_auth(ADMIN_KEY)
        .header("accept", "application/json")
        .json(&json!({"organization": "org_1"}))
        .send()
        .await
        .expect("request");
    assert_eq!(revoke.status(), 404);
    assert!(
        body(revoke).await["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/portal/revoke_link")
    );
    for method in [reqwest::Method::DELETE, reqwest::Method::PUT] {
        let response = app
            .client
            .request(method.clone(), app.url("/portal/no_such_page"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{method}");
        body(response).await;
    }
    // A browser asking for a page gets the portal's page.
    let page = app
        .client
        .get(app.url("/portal/no_such_page"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 404);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    for (method, path) in [
        (reqwest::Method::PATCH, "/organizations"),
        (reqwest::Method::DELETE, "/healthz"),
        (reqwest::Method::PUT, "/portal/generate_link"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 405, "{method} {path}");
        assert!(body(response).await["message"].is_string());
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn status_and_retry(response: reqwest::Response) -> (u16, Option<u64>, Value) {
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, body(response).await)
}

/// Issue 2: per address, WorkOS's answer past the limit (429, `rate_limit_exceeded`,
/// `Retry-After` in whole seconds); health probes are never limited.
#[tokio::test]
async fn requests_past_the_per_address_limit_get_workos_429_but_probes_never_do() {
    let app = TestApp::spawn_with(Options {
        rate_limits: RateLimits {
            per_address: 5,
            per_key: 0,
            trusted_proxies: Vec::new(),
        },
        ..Options::default()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(app.get("/openapi.json").await.status(), 200);
    }
    for path in ["/openapi.json", "/organizations", "/portal/events"] {
        let (status, retry, refused) = status_and_retry(app.get(path).await).await;
        assert_eq!(status, 429, "{path}");
        assert_eq!(refused["code"], "rate_limit_exceeded");
        // 5 a minute: a token every 12 s.
        assert!(retry.is_some_and(|s| (1..=12).contains(&s)), "{retry:?}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .contains("at most 5 a minute")
        );
    }
    for _ in 0..20 {
        assert_eq!(app.get("/healthz").await.status(), 200);
        assert_eq!(app.get("/readyz").await.status(), 200);
    }
    // Forged X-Forwarded-For changes nothing when no proxy is trusted.
    let forged = app
        .client
        .get(app.url("/openapi.json"))
        .header("x-forwarded-for", "192.0.2.77")
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), 429);
}

/// Issue 2: per API key, whatever the address; another key has its own budget.
#[tokio::test]
async fn requests_past_the_per_key_limit_get_429_and_other_keys_go_on() {
    let app = TestApp::spawn_with(Options {
        rate_limits: RateLimits {
            per_address: 0,
            per_key: 3,
            trusted_proxies: Vec::new(),
        },
        ..Options::default()
    })
    .await;
    let store = app.store();
    let other = "sk_test_other_read_key";
    store
        .insert_api_key(trailmark_store::ApiKeyRecord {
            id: "key_other".into(),
            hash: trailmark_domain::api_key::ApiKeySecret::new(other).hash(),
            scope: trailmark_domain::api_key::Scope::Read,
            organization_id: None,
            created_at: trailmark_domain::Timestamp::now(),
            name: "read key".into(),
            prefix: String::new(),
            expires_at: None,
            last_used_at: None,
        })
        .await
        .expect("key");
    for _ in 0..3 {
        assert_eq!(app.get("/organizations").await.status(), 200);
    }
    let (status, retry, refused) = status_and_retry(app.get("/organizations").await).await;
    assert_eq!(status, 429);
    assert_eq!(refused["code"], "rate_limit_exceeded");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("API key"),
        "{refused}"
    );
    assert!(retry.is_some_and(|s| s >= 1), "{retry:?}");
    let with_other = app
        .client
        .get(app.url("/organizations"))
        .bearer_auth(other)
        .send()
        .await
        .expect("request");
    assert_eq!(with_other.status(), 200);
    // Unauthenticated requests are not a key's: no key, no key limit.
    for _ in 0..5 {
        assert_eq!(app.get("/openapi.json").await.status(), 200);
    }
}

/// Issue 2: behind a trusted proxy, `X-Forwarded-For` names the client, so clients behind one
/// balancer do not share a budget.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = TestApp::spawn_with(Options {
        rate_limits: RateLimits {
            per_address: 2,
            per_key: 0,
            trusted_proxies: vec![Cidr::parse("127.0.0.0/8").expect("cidr")],
        },
        ..Options::default()
    })
    .await;
    let from = |client: &'static str| {
        app.client
            .get(app.url("/openapi.json"))
            .header("x-forwarded-for", client)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(from("192.0.2.1").await.expect("request").status(), 200);
    }
    assert_eq!(from("192.0.2.1").await.expect("request").status(), 429);
    assert_eq!(from("192.0.2.2").await.expect("request").status(), 200);
    // A hop the proxy did not write (the leftmost) cannot pick another client's budget.
    assert_eq!(
        from("192.0.2.9, 192.0.2.1")
            .await
            .expect("request")
            .status(),
        429
    );
}

/// Issue 1's own case, with the real binary: under an open-file limit of 256 (the connection cap
/// then defaults to three quarters of it), 400 idle sockets from one client, and `/healthz` and
/// ingest still answer.
#[tokio::test]
async fn the_binary_under_a_low_open_file_limit_serves_through_a_flood_of_idle_sockets() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = crate::helpers::TestDatabase::create(data_dir.path()).await;
    let server = crate::helpers::ServerProcess::start_after(
        "ulimit -n 256",
        data_dir.path(),
        &database,
        &[],
    );
    let address = server.base.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let organization = crate::helpers::organization(&client, &server.base).await;
    let mut flood = Vec::new();
    for n in 0..400 {
        match TcpStream::connect(&address).await {
            Ok(mut stream) => {
                if n % 3 == 0 {
                    let _ = stream.write_all(b"GET / HTTP/1.1\r\n").await;
                }
                flood.push(stream);
            }
            Err(error) => panic!("connection {n} refused: {error}"),
        }
    }
    for _ in 0..3 {
        let fresh = reqwest::Client::new();
        let health = fresh
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("healthz under a flood");
        assert_eq!(health.status(), 200);
        let ingested = crate::helpers::post(
            &fresh,
            &server.base,
            "/audit_logs/events",
            json!({"organization_id": organization, "event": event("user.signed_in")}),
        )
        .await;
        assert_eq!(ingested.status(), 200);
    }
    drop(flood);
}

/// A connection cap that does not fit the open-file limit stops `serve` with a message naming
/// both.
#[tokio::test]
async fn a_connection_cap_above_the_open_file_limit_is_refused_at_start() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "1000",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env("TRAILMARK_API_KEY", ADMIN_KEY)
        .output()
        .expect("run trailmark");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-connections 1000") && stderr.contains("open-file limit of 256"),
        "{stderr}"
    );
}
